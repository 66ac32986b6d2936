//! NBD URIs (the standard syntax of the NBD project's `doc/uri.md`):
//!
//! - `nbd://host[:port][/export]` (TCP, port 10809 by default; `[::1]` for IPv6),
//! - `nbd+unix:///[export]?socket=/path` (a Unix socket on this machine).
//!
//! The export name is the path without its leading `/`, percent-decoded. The TLS forms
//! (`nbds://`, `nbds+unix://`) are recognised and refused: connecting in clear to a server
//! the user asked to reach over TLS would hand the data to whoever is on the wire.

use percent_encoding::percent_decode_str;
use std::fmt;
use std::path::PathBuf;

/// The port the NBD protocol registered (IANA).
pub const DEFAULT_PORT: u16 = 10809;

/// Where the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Tcp { host: String, port: u16 },
    Unix { socket: PathBuf },
}

/// A parsed `nbd://` or `nbd+unix://` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NbdUri {
    pub endpoint: Endpoint,
    pub export: String,
    /// The URI as given, for messages.
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error("{0}: TLS is not supported yet (use nbd:// or nbd+unix://, over a trusted network or an SSH tunnel)")]
    Tls(String),
    #[error("{uri}: {why}")]
    Bad { uri: String, why: &'static str },
}

/// True when `s` is meant as an NBD URI (any `nbd` scheme, supported or not): such a
/// device spec is never taken for a path.
pub fn looks_like_nbd(s: &str) -> bool {
    ["nbd://", "nbd+unix://", "nbds://", "nbds+unix://", "nbd+vsock://", "nbds+vsock://"]
        .iter()
        .any(|p| s.len() >= p.len() && s[..p.len()].eq_ignore_ascii_case(p))
}

impl NbdUri {
    pub fn parse(s: &str) -> Result<NbdUri, UriError> {
        let bad = |why| UriError::Bad { uri: s.to_string(), why };
        let (scheme, rest) = s.split_once("://").ok_or_else(|| bad("not an NBD URI (nbd://HOST[:PORT]/EXPORT)"))?;
        let scheme = scheme.to_ascii_lowercase();
        match scheme.as_str() {
            "nbds" | "nbds+unix" | "nbds+vsock" => return Err(UriError::Tls(s.to_string())),
            "nbd" | "nbd+unix" => {}
            "nbd+vsock" => return Err(bad("vsock is not supported")),
            _ => return Err(bad("not an NBD URI (nbd://HOST[:PORT]/EXPORT)")),
        }
        // RFC 3986 order: authority, path, query, fragment.
        let rest = match rest.split_once('#') {
            Some((r, _)) => r,
            None => rest,
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let export = percent_decode_str(path.strip_prefix('/').unwrap_or(path))
            .decode_utf8()
            .map_err(|_| bad("the export name is not UTF-8"))?
            .into_owned();
        if export.len() > 4096 {
            return Err(bad("the export name is longer than 4096 bytes"));
        }
        let mut socket = None;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "socket" => {
                    let v = percent_decode_str(v).decode_utf8().map_err(|_| bad("the socket path is not UTF-8"))?;
                    socket = Some(PathBuf::from(v.into_owned()));
                }
                // TLS parameters make no sense without TLS; anything else we do not know
                // might change what the user meant, so it is refused rather than ignored.
                _ => return Err(bad("unknown query parameter (only socket= is understood)")),
            }
        }
        let endpoint = if scheme == "nbd+unix" {
            if !authority.is_empty() {
                return Err(bad("nbd+unix:// takes no host (nbd+unix:///EXPORT?socket=PATH)"));
            }
            let socket = socket.ok_or_else(|| bad("nbd+unix:// needs ?socket=PATH"))?;
            if !socket.is_absolute() {
                return Err(bad("the socket path must be absolute"));
            }
            Endpoint::Unix { socket }
        } else {
            if socket.is_some() {
                return Err(bad("socket= belongs to nbd+unix:// URIs"));
            }
            let (host, port) = split_host_port(authority).ok_or_else(|| bad("bad host or port"))?;
            if host.is_empty() {
                return Err(bad("nbd:// needs a host (nbd://HOST[:PORT]/EXPORT)"));
            }
            Endpoint::Tcp { host, port }
        };
        Ok(NbdUri { endpoint, export, text: s.to_string() })
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`; user info is not part of NBD URIs.
fn split_host_port(a: &str) -> Option<(String, u16)> {
    if a.contains('@') {
        return None;
    }
    let (host, port) = if let Some(r) = a.strip_prefix('[') {
        let (h, after) = r.split_once(']')?;
        match after {
            "" => (h, None),
            p => (h, Some(p.strip_prefix(':')?)),
        }
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        }
    };
    if host.contains(['[', ']', ':']) && !a.starts_with('[') {
        return None;
    }
    let port = match port {
        None | Some("") => DEFAULT_PORT,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0)?,
    };
    let host = percent_decode_str(host).decode_utf8().ok()?.into_owned();
    Some((host, port))
}

impl fmt::Display for NbdUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> Endpoint {
        Endpoint::Tcp { host: host.into(), port }
    }

    #[test]
    fn the_standard_forms_parse() {
        let u = NbdUri::parse("nbd://backup.lan/h2").unwrap();
        assert_eq!((u.endpoint, u.export.as_str()), (tcp("backup.lan", DEFAULT_PORT), "h2"));
        let u = NbdUri::parse("nbd://127.0.0.1:10900/a%20b").unwrap();
        assert_eq!((u.endpoint, u.export.as_str()), (tcp("127.0.0.1", 10900), "a b"));
        let u = NbdUri::parse("NBD://[::1]:7/").unwrap();
        assert_eq!((u.endpoint, u.export.as_str()), (tcp("::1", 7), ""));
        let u = NbdUri::parse("nbd://host").unwrap();
        assert_eq!(u.export, "");
        let u = NbdUri::parse("nbd+unix:///disk?socket=/run/nbd%20x.sock").unwrap();
        assert_eq!(u.endpoint, Endpoint::Unix { socket: "/run/nbd x.sock".into() });
        assert_eq!(u.export, "disk");
        assert_eq!(u.to_string(), "nbd+unix:///disk?socket=/run/nbd%20x.sock");
    }

    #[test]
    fn tls_is_refused_with_its_own_message() {
        for s in ["nbds://h/e", "nbds+unix:///e?socket=/s"] {
            let e = NbdUri::parse(s).unwrap_err();
            assert!(e.to_string().contains("TLS is not supported yet"), "{e}");
        }
    }

    #[test]
    fn bad_uris_are_errors() {
        for s in [
            "nbd:///e",
            "nbd://h:0/e",
            "nbd://h:99999/e",
            "nbd://h:x/e",
            "nbd://u@h/e",
            "nbd://::1/e",
            "nbd://[::1/e",
            "nbd+unix:///e",
            "nbd+unix://h/e?socket=/s",
            "nbd+unix:///e?socket=rel",
            "nbd://h/e?socket=/s",
            "nbd://h/e?tls-certificates=/x",
            "nbd://h/%ff",
            "http://h/e",
            "nbd+vsock://1/e",
            "nbd:h",
        ] {
            assert!(NbdUri::parse(s).is_err(), "{s} parsed");
        }
    }

    #[test]
    fn only_nbd_schemes_look_like_nbd() {
        assert!(looks_like_nbd("nbd://h/e") && looks_like_nbd("NBDS+UNIX:///e") && looks_like_nbd("nbd+unix:///"));
        assert!(!looks_like_nbd("/dev/sdb") && !looks_like_nbd("nbd.img") && !looks_like_nbd("nbd:/x"));
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(s in "(nbds?(\\+unix)?://)?[ -~]{0,40}") {
            let _ = NbdUri::parse(&s);
        }
    }
}
