//! The control channel of a mounted filesystem: a Unix socket per mount, through which
//! `hammer2 info|scrub|resync MOUNTPOINT` reach the daemon that owns the devices.
//!
//! Protocol: the client sends one JSON line, `{"op":"info"|"scrub"|"resync"|"readonly"|
//! "readwrite"|"scrubpause"|"scrubresume"|"scrubcancel"}` (readonly and readwrite from the
//! mount helper's remount), with `"rate":BYTES_PER_SECOND` for scrub and resync, or
//! `{"op":"status"}`, `{"op":"clear"}` (optionally with `"device":"PATH"`), or
//! `{"op":"pfscreate"|"pfsdelete","name":"NAME"}`, `{"op":"pfslist"}`,
//! `{"op":"snapshot"|"snapshotwritable"}` (optionally with `"name":"NAME"`), or
//! `{"op":"send","name":"SNAPSHOT"}` (optionally with `"from":"BASE"`) and
//! `{"op":"receive"}` (optionally with `"name":"NAME"`), each sent with one descriptor
//! (SCM_RIGHTS: the stream's output, or the checked stream to read), or
//! `{"op":"deviceonline"|"deviceoffline","device":"SPEC"}`, `{"op":"deviceadd","devices":[SPEC...]}`, `{"op":"deviceremove","device":"SPEC"}`, `{"op":"devicereplace","device":"OLD","devices":["NEW"]}` (the daemon opens SPEC itself: a
//! descriptor cannot travel over the socket without SCM_RIGHTS, and the daemon holds the
//! device's claim); the daemon
//! answers with progress lines `{"progress":{...}}` and one final line, `{"done":{...}}`
//! or `{"error":"..."}`. The socket is open only to the daemon's own user (and root): scrub
//! and resync write to the devices.

pub mod client;
pub mod fdpass;
pub mod server;

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where the control sockets of the daemons run by user `uid` live: root's in /run/hammer2;
/// another user's (a mount made through fusermount3) in that user's runtime directory
/// (/run/user/UID/hammer2) when the login manager made one, else in /tmp/hammer2-UID. The
/// daemon makes the directory 0700, and both sides accept it only owned by `uid` and closed
/// to everyone else ([`trusted_dir`]): anyone can make a directory under /tmp.
pub fn socket_dir(uid: u32) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    if uid == 0 {
        return PathBuf::from("/run/hammer2");
    }
    let runtime = PathBuf::from(format!("/run/user/{uid}"));
    if std::fs::metadata(&runtime).is_ok_and(|m| m.is_dir() && m.uid() == uid) {
        return runtime.join("hammer2");
    }
    PathBuf::from(format!("/tmp/hammer2-{uid}"))
}

/// The socket of the mount at `mountpoint` (an absolute, canonical path) whose daemon runs
/// as `uid`.
pub fn socket_path(mountpoint: &Path, uid: u32) -> PathBuf {
    let h = hammer2_format::dirent::name_hash(mountpoint.as_os_str().as_encoded_bytes());
    socket_dir(uid).join(format!("{h:016x}.sock"))
}

/// Why `dir` cannot hold the sockets of user `uid`'s daemons, if it cannot: it must be a
/// directory (not a link), owned by `uid`, with no access for group or others.
pub fn trusted_dir(dir: &Path, uid: u32) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !m.is_dir() || m.uid() != uid || m.mode() & 0o077 != 0 {
        return Err(format!(
            "{} is not a private directory of user {uid} (owner {}, mode {:o}): refused for control sockets",
            dir.display(),
            m.uid(),
            m.mode() & 0o7777
        ));
    }
    Ok(())
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Info,
    Scrub,
    Resync,
    /// `mount -o remount,ro`: commit everything, then refuse changes.
    ReadOnly,
    /// `mount -o remount,rw`: take changes again.
    ReadWrite,
    /// `scrub --pause|--resume|--cancel`: tell the running scrub.
    ScrubPause,
    ScrubResume,
    ScrubCancel,
    /// `resync --pause|--resume|--cancel`: tell the running resync.
    ResyncPause,
    ResyncResume,
    ResyncCancel,
    /// `hammer2 device online`: take the device named by `Request::device` back.
    DeviceOnline,
    /// `hammer2 device offline`: take the member device named by `Request::device` out.
    DeviceOffline,
    /// `hammer2 device add`: add the devices named by `Request::devices`.
    DeviceAdd,
    /// `hammer2 device remove`: move every copy off the member named by `Request::device`,
    /// then remove it (progress lines while it runs).
    DeviceRemove,
    /// `hammer2 device replace`: `Request::devices[0]` takes the place of the member named
    /// by `Request::device`.
    DeviceReplace,
    /// `hammer2 device rebalance` (and `device add --rebalance`): move copies onto the member
    /// named by `Request::device` until it holds its share (progress lines while it runs).
    DeviceRebalance,
    /// `hammer2 status MOUNTPOINT`: overall state, actions, the running scan, devices.
    Status,
    /// `hammer2 clear`: reset the error counters of `Request::device`, or of every device.
    Clear,
    /// `hammer2 pfs create`: a new empty PFS named `Request::name`.
    PfsCreate,
    /// `hammer2 pfs list`: every PFS and snapshot.
    PfsList,
    /// `hammer2 pfs delete`: the PFS or snapshot `Request::name`.
    PfsDelete,
    /// `hammer2 snapshot`: a snapshot of the mounted PFS, named `Request::name` or by default.
    Snapshot,
    /// `hammer2 snapshot --writable`: a clone of a snapshot of the mounted PFS.
    SnapshotWritable,
    /// `hammer2 send`: the stream of snapshot `Request::name` (from `Request::from`),
    /// written to the descriptor passed with the request (SCM_RIGHTS).
    Send,
    /// `hammer2 receive`: the stream read from the descriptor passed with the request
    /// (the client's checked spool), applied to the mounted PFS, snapshot `Request::name`.
    Receive,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct Request {
    pub op: Op,
    /// The device a device operation names (a path as the client resolved it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The devices `device add` names (paths as the client resolved them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// `--rate` of a scrub or resync, in bytes per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u64>,
    /// The PFS or snapshot a PFS operation names (a snapshot: None takes the default name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `hammer2 send --from`: the base snapshot of an incremental stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// `hammer2 send --resume-token`: the token of the receive to continue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_token: Option<String>,
    /// `hammer2 receive --resume`: a resumed stream is accepted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resume: bool,
    /// `hammer2 receive --abandon`: give up the interrupted receive (no stream).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abandon: bool,
}

impl From<Op> for Request {
    fn from(op: Op) -> Request {
        Request {
            op,
            device: None,
            devices: Vec::new(),
            rate: None,
            name: None,
            from: None,
            resume_token: None,
            resume: false,
            abandon: false,
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Default)]
pub struct Progress {
    /// Bytes done, of `total` (0: not known).
    pub bytes: u64,
    #[serde(default)]
    pub total: u64,
    pub message: String,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct Done {
    /// The command's exit status.
    pub exit: i32,
    /// The report as text and as JSON.
    pub text: String,
    pub json: serde_json::Value,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Reply {
    Progress(Progress),
    Done(Done),
    Error(String),
}
