//! The fixed-newstyle handshake: what the client says to get from "connected" to
//! "transmission" on one export, and what it learns (size, transmission flags, block sizes).
//!
//! NBD_OPT_GO is asked first, with NBD_INFO_BLOCK_SIZE; a server too old to know it
//! (NBD_REP_ERR_UNSUP) gets NBD_OPT_EXPORT_NAME instead. Every length the server sends is
//! checked before it is used: bad bytes are an error, never a panic or a huge allocation.

use super::proto::*;
use std::io::{self, Read, Write};

/// What the server told about the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Export {
    pub size: u64,
    /// Transmission flags (`TFLAG_*`).
    pub flags: u16,
    /// Smallest request alignment the server wants (1 when it did not say).
    pub min_block: u32,
    /// Largest payload of one request (32 MiB, the protocol's default, when it did not say).
    pub max_block: u32,
}

/// The default maximum payload when the server names none (proto.md: 32 MiB).
pub const DEFAULT_MAX_BLOCK: u32 = 32 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("not an NBD server (bad greeting)")]
    NotNbd,
    #[error("the server speaks the old-style protocol, which has no export names")]
    Oldstyle,
    #[error("the server does not speak the fixed-newstyle protocol")]
    NotFixedNewstyle,
    #[error("the server refused export '{export}': {error}{}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Refused { export: String, error: String, message: String },
    #[error("the server sent a malformed handshake ({0})")]
    Malformed(&'static str),
}

/// Longest option reply we accept: the ones we ask for are a few bytes; a name or
/// description (which we ignore) is at most 4 KiB by the spec.
const MAX_REPLY_DATA: u32 = 64 << 10;
/// Option replies to one NBD_OPT_GO before the server is taken to be misbehaving.
const MAX_REPLIES: usize = 64;

/// Runs the handshake for `export` on a fresh connection.
pub fn negotiate<S: Read + Write>(s: &mut S, export: &str) -> Result<Export, HandshakeError> {
    if read_u64(s)? != NBDMAGIC {
        return Err(HandshakeError::NotNbd);
    }
    match read_u64(s)? {
        IHAVEOPT => {}
        OLDSTYLE_MAGIC => return Err(HandshakeError::Oldstyle),
        _ => return Err(HandshakeError::NotNbd),
    }
    let hflags = read_u16(s)?;
    if hflags & FLAG_FIXED_NEWSTYLE == 0 {
        return Err(HandshakeError::NotFixedNewstyle);
    }
    let no_zeroes = hflags & FLAG_NO_ZEROES != 0;
    let cflags = u32::from(FLAG_FIXED_NEWSTYLE) | if no_zeroes { u32::from(FLAG_NO_ZEROES) } else { 0 };
    s.write_all(&cflags.to_be_bytes())?;

    let name = export.as_bytes();
    let mut go = Vec::with_capacity(name.len() + 8);
    go.extend_from_slice(&(name.len() as u32).to_be_bytes());
    go.extend_from_slice(name);
    go.extend_from_slice(&1u16.to_be_bytes());
    go.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    send_option(s, OPT_GO, &go)?;

    let mut size_flags = None;
    let mut blocks = None;
    for _ in 0..MAX_REPLIES {
        let (rep, data) = read_option_reply(s, OPT_GO)?;
        match rep {
            REP_ACK => {
                let (size, flags) = size_flags.ok_or(HandshakeError::Malformed("no NBD_INFO_EXPORT before the ACK"))?;
                let (min_block, max_block) = blocks.unwrap_or((1, DEFAULT_MAX_BLOCK));
                return Ok(Export { size, flags, min_block, max_block });
            }
            REP_INFO => {
                let kind =
                    u16::from_be_bytes(take::<2>(&data, 0).ok_or(HandshakeError::Malformed("short NBD_REP_INFO"))?);
                match kind {
                    INFO_EXPORT => {
                        let (Some(size), Some(flags), 12) = (take::<8>(&data, 2), take::<2>(&data, 10), data.len())
                        else {
                            return Err(HandshakeError::Malformed("bad NBD_INFO_EXPORT"));
                        };
                        size_flags = Some((u64::from_be_bytes(size), u16::from_be_bytes(flags)));
                    }
                    INFO_BLOCK_SIZE => {
                        let (Some(min), Some(max), 14) = (take::<4>(&data, 2), take::<4>(&data, 10), data.len()) else {
                            return Err(HandshakeError::Malformed("bad NBD_INFO_BLOCK_SIZE"));
                        };
                        let (min, max) = (u32::from_be_bytes(min), u32::from_be_bytes(max));
                        if min == 0 || !min.is_power_of_two() || max < min {
                            return Err(HandshakeError::Malformed("impossible block sizes"));
                        }
                        blocks = Some((min, max));
                    }
                    // Names and descriptions: nothing we need.
                    _ => {}
                }
            }
            REP_ERR_UNSUP => return export_name(s, export, no_zeroes),
            r if r & REP_FLAG_ERROR != 0 => {
                return Err(HandshakeError::Refused {
                    export: export.to_string(),
                    error: option_error_name(r),
                    message: String::from_utf8_lossy(&data).trim().to_string(),
                });
            }
            // A reply type this client does not know, to an option it sent: ignored, as the
            // spec asks of clients.
            _ => {}
        }
    }
    Err(HandshakeError::Malformed("too many option replies"))
}

/// The fallback for servers without NBD_OPT_GO: the server answers with the export's size
/// and flags, or closes the connection when there is no such export.
fn export_name<S: Read + Write>(s: &mut S, export: &str, no_zeroes: bool) -> Result<Export, HandshakeError> {
    send_option(s, OPT_EXPORT_NAME, export.as_bytes())?;
    let size = read_u64(s).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => HandshakeError::Refused {
            export: export.to_string(),
            error: "the server closed the connection".into(),
            message: "no such export?".into(),
        },
        _ => HandshakeError::Io(e),
    })?;
    let flags = read_u16(s)?;
    if !no_zeroes {
        let mut zeroes = [0u8; 124];
        s.read_exact(&mut zeroes)?;
    }
    Ok(Export { size, flags, min_block: 1, max_block: DEFAULT_MAX_BLOCK })
}

fn send_option<S: Write>(s: &mut S, option: u32, data: &[u8]) -> io::Result<()> {
    let mut msg = Vec::with_capacity(16 + data.len());
    msg.extend_from_slice(&IHAVEOPT.to_be_bytes());
    msg.extend_from_slice(&option.to_be_bytes());
    msg.extend_from_slice(&(data.len() as u32).to_be_bytes());
    msg.extend_from_slice(data);
    s.write_all(&msg)?;
    s.flush()
}

fn read_option_reply<S: Read>(s: &mut S, option: u32) -> Result<(u32, Vec<u8>), HandshakeError> {
    if read_u64(s)? != OPTION_REPLY_MAGIC {
        return Err(HandshakeError::Malformed("bad option reply magic"));
    }
    if read_u32(s)? != option {
        return Err(HandshakeError::Malformed("a reply to an option that was not sent"));
    }
    let rep = read_u32(s)?;
    let len = read_u32(s)?;
    if len > MAX_REPLY_DATA {
        return Err(HandshakeError::Malformed("option reply too long"));
    }
    let mut data = vec![0u8; len as usize];
    s.read_exact(&mut data)?;
    Ok((rep, data))
}

fn take<const N: usize>(data: &[u8], at: usize) -> Option<[u8; N]> {
    data.get(at..at + N)?.try_into().ok()
}

fn read_u64<S: Read>(s: &mut S) -> io::Result<u64> {
    let mut b = [0u8; 8];
    s.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

fn read_u32<S: Read>(s: &mut S) -> io::Result<u32> {
    let mut b = [0u8; 4];
    s.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn read_u16<S: Read>(s: &mut S) -> io::Result<u16> {
    let mut b = [0u8; 2];
    s.read_exact(&mut b)?;
    Ok(u16::from_be_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server's side of the conversation, played from bytes; what the client sends is kept.
    struct Script {
        from_server: io::Cursor<Vec<u8>>,
        to_server: Vec<u8>,
    }
    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.from_server.read(buf)
        }
    }
    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.to_server.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn greeting(flags: u16) -> Vec<u8> {
        [&NBDMAGIC.to_be_bytes()[..], &IHAVEOPT.to_be_bytes(), &flags.to_be_bytes()].concat()
    }

    fn reply(option: u32, rep: u32, data: &[u8]) -> Vec<u8> {
        [
            &OPTION_REPLY_MAGIC.to_be_bytes()[..],
            &option.to_be_bytes(),
            &rep.to_be_bytes(),
            &(data.len() as u32).to_be_bytes(),
            data,
        ]
        .concat()
    }

    fn info_export(size: u64, flags: u16) -> Vec<u8> {
        reply(OPT_GO, REP_INFO, &[&INFO_EXPORT.to_be_bytes()[..], &size.to_be_bytes(), &flags.to_be_bytes()].concat())
    }

    fn info_blocks(min: u32, pref: u32, max: u32) -> Vec<u8> {
        let d = [&INFO_BLOCK_SIZE.to_be_bytes()[..], &min.to_be_bytes(), &pref.to_be_bytes(), &max.to_be_bytes()];
        reply(OPT_GO, REP_INFO, &d.concat())
    }

    fn run(server: Vec<u8>, export: &str) -> (Result<Export, HandshakeError>, Vec<u8>) {
        let mut s = Script { from_server: io::Cursor::new(server), to_server: Vec::new() };
        let r = negotiate(&mut s, export);
        (r, s.to_server)
    }

    fn good_server() -> Vec<u8> {
        [
            greeting(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES),
            reply(OPT_GO, REP_INFO, &[0, 1, b'x']), // a name: ignored
            info_export(1 << 30, TFLAG_HAS_FLAGS | TFLAG_SEND_FLUSH),
            info_blocks(1, 4096, 1 << 20),
            reply(OPT_GO, REP_ACK, &[]),
        ]
        .concat()
    }

    #[test]
    fn opt_go_learns_size_flags_and_block_sizes() {
        let (r, sent) = run(good_server(), "h2");
        let e = r.unwrap();
        assert_eq!(
            e,
            Export { size: 1 << 30, flags: TFLAG_HAS_FLAGS | TFLAG_SEND_FLUSH, min_block: 1, max_block: 1 << 20 }
        );
        // Client flags, then NBD_OPT_GO naming the export and asking for block sizes.
        let want = [
            &3u32.to_be_bytes()[..],
            &IHAVEOPT.to_be_bytes(),
            &OPT_GO.to_be_bytes(),
            &10u32.to_be_bytes(),
            &2u32.to_be_bytes(),
            b"h2",
            &1u16.to_be_bytes(),
            &INFO_BLOCK_SIZE.to_be_bytes(),
        ]
        .concat();
        assert_eq!(sent, want);
    }

    #[test]
    fn a_refusal_carries_the_error_name_and_the_servers_message() {
        let server = [greeting(FLAG_FIXED_NEWSTYLE), reply(OPT_GO, REP_FLAG_ERROR | 6, b"no export 'x'")].concat();
        let e = run(server, "x").0.unwrap_err().to_string();
        assert!(e.contains("NBD_REP_ERR_UNKNOWN") && e.contains("no export 'x'") && e.contains("'x'"), "{e}");
    }

    #[test]
    fn a_server_without_opt_go_gets_export_name() {
        let mut server = [greeting(FLAG_FIXED_NEWSTYLE), reply(OPT_GO, REP_ERR_UNSUP, &[])].concat();
        server.extend_from_slice(&(8u64 << 20).to_be_bytes());
        server.extend_from_slice(&TFLAG_HAS_FLAGS.to_be_bytes());
        server.extend_from_slice(&[0u8; 124]);
        let (r, sent) = run(server, "e");
        assert_eq!(r.unwrap().size, 8 << 20);
        assert!(sent.ends_with(&[&OPT_EXPORT_NAME.to_be_bytes()[..], &1u32.to_be_bytes(), b"e"].concat()));
    }

    #[test]
    fn old_or_foreign_servers_are_named() {
        let old = [&NBDMAGIC.to_be_bytes()[..], &OLDSTYLE_MAGIC.to_be_bytes()].concat();
        assert!(matches!(run(old, "").0, Err(HandshakeError::Oldstyle)));
        assert!(matches!(run(b"SSH-2.0-OpenSSH_9.6\r\n".to_vec(), "").0, Err(HandshakeError::NotNbd)));
        assert!(matches!(run(greeting(0), "").0, Err(HandshakeError::NotFixedNewstyle)));
    }

    #[test]
    fn malformed_replies_are_errors() {
        let cases = [
            // ACK without the export's size.
            [greeting(1), reply(OPT_GO, REP_ACK, &[])].concat(),
            // Info of the wrong length.
            [greeting(1), reply(OPT_GO, REP_INFO, &[0, 0, 1, 2, 3]), reply(OPT_GO, REP_ACK, &[])].concat(),
            // Block sizes that make no sense.
            [greeting(1), info_export(4096, 1), info_blocks(3, 4096, 8192)].concat(),
            [greeting(1), info_export(4096, 1), info_blocks(4096, 4096, 512)].concat(),
            // A reply to another option, a huge length, a bad magic.
            [greeting(1), reply(OPT_EXPORT_NAME, REP_ACK, &[])].concat(),
            [greeting(1), reply(OPT_GO, REP_INFO, &[]).into_iter().take(20).chain((u32::MAX).to_be_bytes()).collect()]
                .concat(),
            [greeting(1), vec![0u8; 20]].concat(),
        ];
        for (i, c) in cases.into_iter().enumerate() {
            assert!(run(c, "e").0.is_err(), "case {i} was accepted");
        }
    }

    #[test]
    fn every_truncation_of_a_good_conversation_is_an_error() {
        let full = good_server();
        for n in 0..full.len() {
            assert!(run(full[..n].to_vec(), "e").0.is_err(), "{n} bytes were enough");
        }
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_after_a_greeting_never_panic(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = run([greeting(3), tail.clone()].concat(), "e");
            let _ = run(tail, "e");
        }
    }
}
