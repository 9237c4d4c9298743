//! Callers: the applications that share one sidecar, by name (`[[callers]]`): who a
//! request is ([`CallerId`]), why it could not be told ([`AuthFailure`]), the wrong tokens of
//! a connection ([`Strikes`]). The tokens a request presents are read in [`token`]; the
//! digests they are compared with are held in [`store::CallerStore`], which the caller layer
//! (`stack/caller.rs`) asks who a request is.

pub mod store;
pub mod token;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::Poll;

use futures_util::task::AtomicWaker;

pub use crate::error::AuthFailure;
pub use store::{CallerError, CallerStore};

/// Wrong tokens one connection may present; the answer to the last of them closes it.
pub const MAX_WRONG_PER_CONNECTION: u32 = 10;

/// Tokens shorter than this are accepted, with a warning.
const MIN_TOKEN_LEN: usize = 16;

/// Who a request is, once the caller layer has looked.
#[derive(Debug, Clone)]
pub struct CallerId {
    /// The caller's name, or [`ANONYMOUS`]: the value of the `caller` label.
    pub name: Arc<str>,
    /// The caller's position in `[[callers]]`; `None` for an anonymous request.
    pub index: Option<usize>,
}

/// The wrong tokens one connection has presented. Made by the listener per connection,
/// which closes the connection once they are too many ([`Strikes::exhausted_signal`]).
#[derive(Debug, Default)]
pub struct Strikes {
    count: AtomicU32,
    /// The connection's task, woken by the strike that was one too many. An atomic waker,
    /// not a `Notify`: the listener polls the signal on every wake-up of the connection, and
    /// registering the same waker again costs two atomics, not a lock.
    out: AtomicWaker,
}

impl Strikes {
    fn exhausted(&self) -> bool {
        self.count.load(Ordering::Relaxed) >= MAX_WRONG_PER_CONNECTION
    }

    /// Count one wrong token; true when that was one too many.
    fn strike(&self) -> bool {
        let out = self.count.fetch_add(1, Ordering::Relaxed) + 1 >= MAX_WRONG_PER_CONNECTION;
        if out {
            self.out.wake();
        }
        out
    }

    /// Resolves once the connection has presented too many wrong tokens.
    pub fn exhausted_signal(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.exhausted() {
                return Poll::Ready(());
            }
            self.out.register(cx.waker());
            // A strike between the check and the registration woke no one: look again.
            if self.exhausted() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}
