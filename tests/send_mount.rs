//! `hammer2 send | hammer2 receive` between two mounted filesystems (FUSE, image files, the
//! real binaries, a shell pipe): a tree made with cp, ln, mkfifo, setfattr, setfacl, chmod, chown,
//! touch and truncate on a one-device filesystem arrives whole on a two-device filesystem
//! with two copies, then an incremental stream carries the changes; the received snapshots
//! mount read-only and equal the sender's; a damaged stream is refused with one line and
//! exit status 8 and changes nothing, a cut one leaves the mirror hidden until it is
//! resumed; `fsck -n` is clean on both.

use hammer2_test_support as common;

use common::image::{exit_code, fsck, hammer2, hammer2_json, stderr, stdout};
use common::mount::{Image, Snap, sh, snapshot};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;

fn fsck_clean(img: &Image) {
    let o = fsck(std::iter::once(OsStr::new("-n")).chain(img.devices.iter().map(|d| d.as_os_str())));
    assert_eq!(exit_code(&o), 0, "fsck -n: {}{}", stdout(&o), stderr(&o));
}

/// What must be equal: everything but the stored size (each side compresses and places
/// blocks its own way).
fn tree(root: &Path) -> BTreeMap<PathBuf, Snap> {
    let mut t = snapshot(root);
    for s in t.values_mut() {
        s.blocks = 0;
    }
    t
}

/// Asserts two trees equal, naming only the entries that differ.
#[track_caller]
fn assert_same(got: &BTreeMap<PathBuf, Snap>, want: &BTreeMap<PathBuf, Snap>, what: &str) {
    let keys: std::collections::BTreeSet<&PathBuf> = got.keys().chain(want.keys()).collect();
    let diff: Vec<String> = keys
        .into_iter()
        .filter(|k| got.get(*k) != want.get(*k))
        .map(|k| format!("{}:\n  got  {:?}\n  want {:?}", k.display(), got.get(k), want.get(k)))
        .collect();
    assert!(diff.is_empty(), "{what}: {} entries differ:\n{}", diff.len(), diff.join("\n"));
}

fn snapshots(mnt: &Path) -> Vec<String> {
    let (code, j) = hammer2_json("pfs", ["list".as_ref(), mnt.as_os_str()]);
    assert_eq!(code, 0, "{j}");
    j["pfs"]
        .as_array()
        .expect("pfs list")
        .iter()
        .filter(|p| p["kind"] == "snapshot")
        .map(|p| p["name"].as_str().expect("name").to_string())
        .collect()
}

#[test]
fn send_and_receive_through_a_pipe_make_equal_snapshots() {
    let a_img = Image::by_mkfs(1, 512 * MIB, 1);
    let b_img = Image::by_mkfs(2, 512 * MIB, 2);
    let a = a_img.mount();
    let b = b_img.mount();
    let (am, bm) = (a.path.display().to_string(), b.path.display().to_string());
    sh(&format!(
        "set -e; cd {am}; mkdir -p src/deep/er; mkdir src/doc; \
         for i in $(seq 1 60); do head -c $((i * 997)) /dev/urandom > src/doc/f$i; done; \
         head -c 3000000 /dev/urandom > src/big; head -c 100 /dev/urandom > src/small; \
         truncate -s 50M src/sparse; dd if=/dev/urandom of=src/sparse bs=64k seek=100 count=2 conv=notrunc status=none; \
         ln src/big src/deep/big-link; ln -s ../big src/deep/to-big; mkfifo src/fifo; \
         setfattr -n user.colour -v blue src/small; chmod 4711 src/small; chown 1234:5678 src/deep; \
         setfacl -m u:1234:rw src/big; setfacl -d -m g:5678:rx src/deep; \
         touch -d '2001-02-03 04:05:06.789' src/big; sync"
    ));
    let o = hammer2(["snapshot".as_ref(), a.path.as_os_str(), "s1".as_ref()]);
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));

    // Full: through a pipe, as over ssh.
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("\"$0\" send {am} s1 | \"$0\" receive --json {bm}"))
        .arg0_hammer2()
        .output()
        .expect("pipe");
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("receive --json");
    assert_eq!(j["snapshot"], "s1", "{j}");
    assert!(j["bytes"].as_u64().unwrap() > 3_000_000 && j["records"].as_u64().unwrap() > 10, "{j}");
    assert!(stderr(&o).contains("sent s1 (full)"), "send's summary on stderr: {}", stderr(&o));
    let sent = tree(&a.path);
    let acl = |p: &str, name: &[u8]| sent[Path::new(p)].xattrs.iter().any(|(n, _)| n == name);
    assert!(acl("src/big", b"system.posix_acl_access") && acl("src/deep", b"system.posix_acl_default"), "ACLs set");
    assert_same(&tree(&b.path), &sent, "the receiving PFS equals the sent snapshot");
    assert_eq!(snapshots(&b.path), ["s1"]);

    // Incremental: changes made with real programs.
    sh(&format!(
        "set -e; cd {am}/src; dd if=/dev/urandom of=big bs=4k seek=10 count=1 conv=notrunc status=none; \
         rm small; mv deep/er renamed; truncate -s 1M sparse; echo new > deep/new; setfattr -x user.colour fifo 2>/dev/null || true; sync"
    ));
    let o = hammer2(["snapshot".as_ref(), a.path.as_os_str(), "s2".as_ref()]);
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    let stream = a_img.dir.path().join("s2.stream");
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("\"$0\" send --json --from s1 {am} s2 > {}", stream.display()))
        .arg0_hammer2()
        .output()
        .expect("send");
    assert!(o.status.success(), "{}", stderr(&o));
    let sj: serde_json::Value = serde_json::from_str(stderr(&o).trim()).expect("send --json on stderr");
    let size = std::fs::metadata(&stream).unwrap().len();
    assert_eq!(sj["bytes"].as_u64(), Some(size), "{sj}");
    assert!(size < 500_000, "the incremental stream carries the change, not the files: {sj}");

    // A damaged copy of it is refused, one line, exit 8, nothing changed; a cut one too,
    // and the mirror's files are hidden until the receive completes (SR8, SR11).
    let good = std::fs::read(&stream).unwrap();
    let before = tree(&b.path);
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 4;
    for (what, bytes, needle) in
        [("flipped", flipped, "corrupt"), ("truncated", good[..good.len() - 10].to_vec(), "truncated")]
    {
        let bad = b_img.dir.path().join(what);
        std::fs::write(&bad, &bytes).unwrap();
        let o = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("\"$0\" receive {bm} < {}", bad.display()))
            .arg0_hammer2()
            .output()
            .expect("receive");
        assert_eq!(exit_code(&o), 8, "{what}: {}", stderr(&o));
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{what}: one line: {err}");
        assert!(err.starts_with("hammer2 receive: ") && err.contains(needle), "{what}: {err}");
        if what == "truncated" {
            let o = std::process::Command::new("ls").arg(&b.path).output().expect("ls");
            assert!(!o.status.success() && stderr(&o).contains("busy"), "{what}: {}", stderr(&o));
        } else {
            assert_same(&tree(&b.path), &before, what);
        }
        assert_eq!(snapshots(&b.path), ["s1"], "{what}: no snapshot");
    }
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("\"$0\" receive {bm} < {}", stream.display()))
        .arg0_hammer2()
        .output()
        .expect("receive");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("received snapshot s2: "), "{}", stdout(&o));
    assert_same(&tree(&b.path), &tree(&a.path), "after the incremental");
    assert_eq!(snapshots(&b.path), ["s1", "s2"]);

    // Receiving the same incremental again: its base is gone here (the PFS holds s2).
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("\"$0\" receive {bm} again < {}", stream.display()))
        .arg0_hammer2()
        .output()
        .expect("receive");
    assert_eq!(exit_code(&o), 8, "{}", stderr(&o));
    assert!(stderr(&o).contains("does not hold the stream's base"), "{}", stderr(&o));

    // Bad input: one line each, exit 8, and the daemons keep serving.
    for (script, needle) in [
        (format!("\"$0\" send {am} nope > /dev/null"), "hammer2 send: no snapshot named \"nope\""),
        (format!("\"$0\" send {am} ROOT > /dev/null"), "writable PFS"),
        (format!("\"$0\" send --from s2 {am} s1 > /dev/null"), "not an older snapshot"),
        (format!("\"$0\" send {am} s2 | head -c 1000 > /dev/null"), "cannot write the stream"),
        (format!("\"$0\" receive {bm} < /dev/null"), "hammer2 receive: the stream is not a hammer2 send stream"),
        (format!("\"$0\" receive {bm} < /etc/passwd"), "not a hammer2 send stream"),
        (format!("\"$0\" receive /tmp x < {}", stream.display()), "not a mounted hammer2 filesystem"),
    ] {
        let o = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("set -o pipefail; {script}"))
            .arg0_hammer2()
            .output()
            .expect("run");
        let err = stderr(&o);
        assert_eq!(exit_code(&o), 8, "{script}: {err}");
        assert_eq!(err.lines().count(), 1, "{script}: one line: {err}");
        assert!(err.contains(needle), "{script}: {err}");
    }
    assert_eq!(snapshots(&b.path), ["s1", "s2"]);
    assert_same(&tree(&b.path), &tree(&a.path), "after the refusals");
    a.unmount();
    b.unmount();
    fsck_clean(&a_img);
    fsck_clean(&b_img);

    // The received snapshots mount read-only and equal the sender's.
    for s in ["s1", "s2"] {
        let a = a_img.mount_with(&format!("ro,pfs={s}"));
        let b = b_img.mount_with(&format!("ro,pfs={s}"));
        assert_same(&tree(&b.path), &tree(&a.path), s);
        a.unmount();
        b.unmount();
    }
}

/// `sh -c SCRIPT HAMMER2`: the script names the binary under test as `$0`.
trait Arg0 {
    fn arg0_hammer2(&mut self) -> &mut Self;
}

impl Arg0 for std::process::Command {
    fn arg0_hammer2(&mut self) -> &mut Self {
        self.arg(common::image::hammer2_bin())
    }
}

/// SR8, SR9 through the binaries: a stream cut in the middle (the pipe stopped) is applied
/// up to its last checkpoint; `receive` says so in one line with the token, `pfs list`
/// shows the same token (text and --json), and `send --resume-token TOKEN | receive
/// --resume` completes it into a snapshot equal to the sender's; fsck is clean, also
/// mid-receive. Deleting a snapshot while it is being sent is refused until the send ends.
#[test]
fn a_cut_stream_resumes_with_send_resume_token_through_a_pipe() {
    let a_img = Image::by_mkfs(1, 512 * MIB, 1);
    let b_img = Image::by_mkfs(1, 512 * MIB, 1);
    let a = a_img.mount();
    let b = b_img.mount();
    let (am, bm) = (a.path.display().to_string(), b.path.display().to_string());
    // About 48 MiB: three checkpoints at the default 16 MiB.
    sh(&format!(
        "set -e; cd {am}; mkdir d; for i in $(seq 1 12); do head -c 4000000 /dev/urandom > d/f$i; done; \
         mkdir e; for i in $(seq 1 50); do echo $i > e/small$i; done; sync"
    ));
    let o = hammer2(["snapshot".as_ref(), a.path.as_os_str(), "s1".as_ref()]);
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    let stream = a_img.dir.path().join("s1.stream");
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("\"$0\" send {am} s1 > {}", stream.display()))
        .arg0_hammer2()
        .output()
        .expect("send");
    assert!(o.status.success(), "{}", stderr(&o));
    let whole = std::fs::read(&stream).unwrap();
    let cut = b_img.dir.path().join("cut");
    std::fs::write(&cut, &whole[..whole.len() * 6 / 10]).unwrap();
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("\"$0\" receive {bm} < {}", cut.display()))
        .arg0_hammer2()
        .output()
        .expect("receive");
    let err = stderr(&o);
    assert_eq!(exit_code(&o), 8, "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("truncated") && err.contains("records are applied"), "{err}");
    let token = err.split("--resume-token ").nth(1).and_then(|t| t.split('\'').next()).expect("a token").to_string();
    assert!(token.len() > 100 && token.chars().all(|c| c.is_ascii_hexdigit()), "{token}");
    let (code, j) = hammer2_json("pfs", ["list".as_ref(), b.path.as_os_str()]);
    assert_eq!(code, 0, "{j}");
    let root = j["pfs"].as_array().unwrap().iter().find(|p| p["name"] == "ROOT").expect("ROOT").clone();
    assert_eq!(root["resume_token"], token.as_str(), "{j}");
    let o = hammer2(["pfs".as_ref(), "list".as_ref(), b.path.as_os_str()]);
    assert!(stdout(&o).contains(&format!("resume token {token}")), "{}", stdout(&o));
    assert!(snapshots(&b.path).is_empty(), "no snapshot of the part");
    // SR11: the part applied is not shown; `.snapshots` is.
    let o = std::process::Command::new("ls").arg(&b.path).output().expect("ls");
    assert!(!o.status.success() && stderr(&o).contains("busy"), "ls of the mirror: {}", stderr(&o));
    let o = std::process::Command::new("ls").arg(b.path.join(".snapshots")).output().expect("ls");
    assert!(o.status.success(), "ls .snapshots: {}", stderr(&o));
    // fsck is clean on a mirror mid-receive (its names are checked when it completes), and
    // the token survives the unmount.
    b.unmount();
    let o = fsck(std::iter::once(OsStr::new("-n")).chain(b_img.devices.iter().map(|d| d.as_os_str())));
    assert_eq!(exit_code(&o), 0, "fsck -n mid-receive: {}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("has a receive in progress"), "{}", stdout(&o));
    let b = b_img.mount();

    // A resumed stream without --resume is refused; with it, the rest completes it.
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("\"$0\" send --resume-token {token} {am} s1 | \"$0\" receive {bm}"))
        .arg0_hammer2()
        .output()
        .expect("pipe");
    assert_eq!(exit_code(&o), 8, "{}", stderr(&o));
    assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));
    let o = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; \"$0\" send --json --resume-token {token} {am} s1 | \"$0\" receive --json --resume {bm}"
        ))
        .arg0_hammer2()
        .output()
        .expect("pipe");
    assert!(o.status.success(), "{}", stderr(&o));
    let sj: serde_json::Value = serde_json::from_str(stderr(&o).trim()).expect("send --json on stderr");
    // The cut (at 60%) was past the first checkpoint (16 MiB): at least that is not sent again.
    assert!(sj["bytes"].as_u64().unwrap() < whole.len() as u64 - 15 * MIB, "the rest only: {sj}");
    let rj: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("receive --json");
    assert_eq!(rj["snapshot"], "s1", "{rj}");
    assert_same(&tree(&b.path), &tree(&a.path), "after the resumed receive");
    assert_eq!(snapshots(&b.path), ["s1"]);
    let (_, j) = hammer2_json("pfs", ["list".as_ref(), b.path.as_os_str()]);
    assert!(j["pfs"].as_array().unwrap().iter().all(|p| p["resume_token"].is_null()), "{j}");
    let o = hammer2(["receive".as_ref(), "--abandon".as_ref(), b.path.as_os_str()]);
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "no receive in progress\n");
    // A token of this stream is refused for another snapshot.
    let o = hammer2(["snapshot".as_ref(), a.path.as_os_str(), "s2".as_ref()]);
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("\"$0\" send --resume-token {token} {am} s2 > /dev/null"))
        .arg0_hammer2()
        .output()
        .expect("send");
    assert_eq!(exit_code(&o), 8, "{}", stderr(&o));
    assert!(stderr(&o).contains("another stream"), "{}", stderr(&o));

    // SR7: while a send reads s1 (held: its reader has taken one byte and waits), deleting
    // s1 is refused with one line; once the send ends, it is deleted.
    let fifo = a_img.dir.path().join("fifo");
    sh(&format!("mkfifo {}", fifo.display()));
    let mut sending = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("\"$0\" send {am} s1 > {}", fifo.display()))
        .arg0_hammer2()
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("send");
    let mut reader = std::fs::File::open(&fifo).expect("open the fifo");
    let mut first = [0u8; 1];
    std::io::Read::read_exact(&mut reader, &mut first).expect("the send started");
    let o = hammer2(["pfs".as_ref(), "delete".as_ref(), a.path.as_os_str(), "s1".as_ref()]);
    let err = stderr(&o);
    assert_eq!(exit_code(&o), 8, "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("is being sent"), "{err}");
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut rest).expect("the rest of the stream");
    assert!(sending.wait().expect("send").success(), "the send completed");
    assert_eq!(1 + rest.len(), whole.len(), "the whole stream was sent");
    let o = hammer2(["pfs".as_ref(), "delete".as_ref(), a.path.as_os_str(), "s1".as_ref()]);
    assert_eq!(exit_code(&o), 0, "deleted once the send ended: {}", stderr(&o));
    a.unmount();
    b.unmount();
    fsck_clean(&a_img);
    fsck_clean(&b_img);
}
