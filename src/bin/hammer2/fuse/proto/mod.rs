//! The FUSE protocol of our own: requests decoded from a byte buffer, replies encoded into a
//! caller's buffer. Both transports (/dev/fuse in `devfuse.rs`, the ring in `uring.rs`) go
//! through it into one dispatch (`ops.rs`), so a request is served by the same code
//! whatever carried it. DESIGN §12 says why this is ours and not a crate's.

pub mod abi;
pub mod reply;
pub mod request;
#[cfg(test)]
mod tests;

pub use reply::{Errno, Reply, out_header};
pub use request::{Body, Malformed, Op, Request, decode};
