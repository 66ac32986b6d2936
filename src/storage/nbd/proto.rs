//! The NBD protocol's numbers (the NBD project's `doc/proto.md`): magics, options, reply
//! types, commands, flags and the errno values a server answers with.

pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943; // "NBDMAGIC"
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054; // "IHAVEOPT"
pub const OLDSTYLE_MAGIC: u64 = 0x0000_4202_8186_1253;
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

// Handshake flags (server) and client flags.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
pub const FLAG_NO_ZEROES: u16 = 1 << 1;

// Options.
pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_GO: u32 = 7;

// Option replies.
pub const REP_ACK: u32 = 1;
pub const REP_INFO: u32 = 3;
pub const REP_FLAG_ERROR: u32 = 1 << 31;
pub const REP_ERR_UNSUP: u32 = REP_FLAG_ERROR | 1;

// Information types (NBD_OPT_GO / NBD_REP_INFO).
pub const INFO_EXPORT: u16 = 0;
pub const INFO_BLOCK_SIZE: u16 = 3;

// Transmission flags.
pub const TFLAG_HAS_FLAGS: u16 = 1 << 0;
pub const TFLAG_READ_ONLY: u16 = 1 << 1;
pub const TFLAG_SEND_FLUSH: u16 = 1 << 2;
pub const TFLAG_SEND_TRIM: u16 = 1 << 5;

// Commands.
pub const CMD_READ: u16 = 0;
pub const CMD_WRITE: u16 = 1;
pub const CMD_DISC: u16 = 2;
pub const CMD_FLUSH: u16 = 3;
pub const CMD_TRIM: u16 = 4;

/// Bytes of a request header and of a simple reply header.
pub const REQUEST_LEN: usize = 28;
pub const REPLY_LEN: usize = 16;

/// The name of an option reply error, for messages.
pub fn option_error_name(rep: u32) -> String {
    match rep & !REP_FLAG_ERROR {
        1 => "NBD_REP_ERR_UNSUP (the server does not support this)".into(),
        2 => "NBD_REP_ERR_POLICY (refused by the server's policy)".into(),
        3 => "NBD_REP_ERR_INVALID".into(),
        4 => "NBD_REP_ERR_PLATFORM".into(),
        5 => "NBD_REP_ERR_TLS_REQD (the server requires TLS)".into(),
        6 => "NBD_REP_ERR_UNKNOWN (no such export)".into(),
        7 => "NBD_REP_ERR_SHUTDOWN (the server is shutting down)".into(),
        8 => "NBD_REP_ERR_BLOCK_SIZE_REQD".into(),
        9 => "NBD_REP_ERR_TOO_BIG".into(),
        n => format!("option reply error {n}"),
    }
}

/// The protocol's errno values, with their names; anything else is EINVAL by the spec.
pub fn errno_name(e: u32) -> (&'static str, i32) {
    match e {
        1 => ("EPERM", libc::EPERM),
        5 => ("EIO", libc::EIO),
        12 => ("ENOMEM", libc::ENOMEM),
        22 => ("EINVAL", libc::EINVAL),
        28 => ("ENOSPC", libc::ENOSPC),
        75 => ("EOVERFLOW", libc::EOVERFLOW),
        95 => ("ENOTSUP", libc::ENOTSUP),
        108 => ("ESHUTDOWN", libc::ESHUTDOWN),
        _ => ("EINVAL", libc::EINVAL),
    }
}
