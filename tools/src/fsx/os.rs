//! What the workers share to make system calls and record their outcomes: paths as C
//! strings, a call's result as Ok or its errno, and the tally of (operation, outcome).

use crate::OpLog;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub fn cpath(p: &Path) -> CString {
    // Paths built here never contain NUL bytes.
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

pub fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// A system call's return value as Ok or its errno.
pub fn sys(r: i32) -> Result<(), i32> {
    if r == 0 { Ok(()) } else { Err(errno()) }
}

fn errno_name(e: i32) -> &'static str {
    match e {
        libc::ENOENT => "ENOENT",
        libc::EEXIST => "EEXIST",
        libc::ENOSPC => "ENOSPC",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::EISDIR => "EISDIR",
        libc::ENOTDIR => "ENOTDIR",
        libc::ENODATA => "ENODATA",
        libc::EINVAL => "EINVAL",
        libc::EPERM => "EPERM",
        libc::EMLINK => "EMLINK",
        libc::EIO => "EIO",
        _ => "other",
    }
}

/// (operation, outcome) -> count; the outcome is "ok" or the errno name.
#[derive(Default, serde::Serialize)]
#[serde(transparent)]
pub struct Outcomes(BTreeMap<String, u64>);

impl Outcomes {
    /// Records the outcome of operation `op`, failing (exit 1, with the log's tail) on any
    /// errno not in `allowed`.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        log: &mut OpLog,
        seed: u64,
        op: u64,
        what: &'static str,
        desc: String,
        r: Result<(), i32>,
        allowed: &[i32],
    ) {
        let res = match r {
            Ok(()) => "ok",
            Err(code) => {
                if !allowed.contains(&code) {
                    let e = io::Error::from_raw_os_error(code);
                    log.push(format!("{op}: {desc} -> {e}"));
                    log.fail(&format!("{desc}: unexpected error {e}"), seed, op);
                }
                errno_name(code)
            }
        };
        log.push(format!("{op}: {desc} -> {res}"));
        *self.0.entry(format!("{what} {res}")).or_default() += 1;
    }

    /// How many operations ended with `outcome` ("ok" or an errno name).
    pub fn ended(&self, outcome: &str) -> u64 {
        let suffix = format!(" {outcome}");
        self.0.iter().filter(|(k, _)| k.ends_with(&suffix)).map(|(_, v)| v).sum()
    }
}
