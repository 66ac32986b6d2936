//! Engine errors. Every variant maps to one errno for the VOP layer and reads as one clear
//! line at the command line.

use hammer2_format::DecodeError;
use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("file name too long")]
    NameTooLong,
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("no space left on device")]
    NoSpace,
    #[error("too many links")]
    TooManyLinks,
    #[error("operation not permitted")]
    NotPermitted,
    #[error("read-only filesystem")]
    ReadOnly,
    #[error("file too large")]
    FileTooBig,
    #[error("no such attribute")]
    NoAttr,
    #[error("result does not fit the buffer")]
    Range,
    #[error("argument list too long")]
    TooBig,
    #[error("no data or hole at or after the offset")]
    NoSeekTarget,
    #[error("operation not supported")]
    NotSupported,
    #[error("device or resource busy: {0}")]
    Busy(String),
    #[error("no good copy of {what} block (inode {inum:?}, offset {offset:?}): {detail}")]
    Unrecoverable { what: &'static str, inum: Option<u64>, offset: Option<u64>, detail: String },
    #[error("filesystem is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Mount(String),
    /// A feature that needs format version 2 on a version-1 filesystem (`upgrade.rs`).
    #[error("this filesystem is format version 1; 'hammer2 upgrade' converts it (see FORMAT-V2)")]
    FormatVersion1,
    #[error("I/O error on {device}: {source}")]
    DeviceIo { device: String, source: io::Error },
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("bad on-disk structure: {0}")]
    Decode(#[from] DecodeError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The errno a VOP caller should see.
    pub fn errno(&self) -> i32 {
        match self {
            Error::NotFound => libc::ENOENT,
            Error::Exists => libc::EEXIST,
            Error::NotDir => libc::ENOTDIR,
            Error::IsDir => libc::EISDIR,
            Error::NotEmpty => libc::ENOTEMPTY,
            Error::NameTooLong => libc::ENAMETOOLONG,
            Error::Invalid(_) => libc::EINVAL,
            Error::NoSpace => libc::ENOSPC,
            Error::TooManyLinks => libc::EMLINK,
            Error::NotPermitted => libc::EPERM,
            Error::ReadOnly => libc::EROFS,
            Error::FileTooBig => libc::EFBIG,
            Error::NoAttr => libc::ENODATA,
            Error::Range => libc::ERANGE,
            Error::TooBig => libc::E2BIG,
            Error::NoSeekTarget => libc::ENXIO,
            Error::NotSupported => libc::EOPNOTSUPP,
            Error::Busy(_) => libc::EBUSY,
            Error::Unrecoverable { .. } | Error::Corrupt(_) | Error::Decode(_) => libc::EIO,
            Error::Mount(_) => libc::EINVAL,
            Error::FormatVersion1 => libc::EOPNOTSUPP,
            Error::DeviceIo { .. } => libc::EIO,
            Error::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Error {
        Error::Invalid(msg.into())
    }
}
