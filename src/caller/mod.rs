//! Callers: the applications that share one sidecar, by name (`[[callers]]`): who a
//! request is ([`CallerId`]), why it could not be told ([`AuthFailure`]), the wrong tokens of
//! a connection ([`Strikes`]). The tokens a request presents are read in [`token`]; the
//! digests they are compared with are held in [`store::CallerStore`], which the caller layer
//! (`stack/caller.rs`) asks who a request is.

pub mod store;
pub mod token;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

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
    out: tokio::sync::Notify,
}

impl Strikes {
    fn exhausted(&self) -> bool {
        self.count.load(Ordering::Relaxed) >= MAX_WRONG_PER_CONNECTION
    }

    /// Count one wrong token; true when that was one too many.
    fn strike(&self) -> bool {
        let out = self.count.fetch_add(1, Ordering::Relaxed) + 1 >= MAX_WRONG_PER_CONNECTION;
        if out {
            // Kept as a permit if the listener is not waiting yet.
            self.out.notify_one();
        }
        out
    }

    /// Resolves once the connection has presented too many wrong tokens.
    pub async fn exhausted_signal(&self) {
        self.out.notified().await;
    }
}
