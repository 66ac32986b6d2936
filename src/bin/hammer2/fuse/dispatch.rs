//! What a transport needs of whatever serves the requests it carries: `devfuse.rs` and
//! `uring.rs` take any [`Dispatch`], so that the floor (`tools/src/fuse_floor.rs`) runs on
//! exactly the transports hammer2 runs on.

use super::proto::{Errno, Reply, Request};

/// The answer for what serving a request gave: its reply body (encoded into `out`), or an
/// error, which replaces whatever part of an answer was encoded.
pub fn answer(out: &mut Reply, served: Result<(), Errno>) -> Answer {
    match served {
        Ok(()) => Answer::Done,
        Err(e) => {
            out.clear();
            Answer::Error(e)
        }
    }
}

/// What the transport sends back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Success: the body is what was encoded into the reply buffer.
    Done,
    Error(Errno),
    /// Nothing (FORGET, BATCH_FORGET, INTERRUPT).
    Nothing,
}

pub trait Dispatch: Send + Sync + 'static {
    /// Serves one request, its answer's body encoded into `out`.
    fn dispatch(&self, req: &Request, out: &mut Reply) -> Answer;
    /// Whether INIT has been answered with a version we speak (a newer kernel first gets
    /// our major alone, and sends INIT again).
    fn initialized(&self) -> bool;
    /// Whether the INIT reply negotiated FUSE over io_uring: the kernel then holds every
    /// request until the queues have registered.
    fn ring_negotiated(&self) -> bool;
}
