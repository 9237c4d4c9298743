//! Callers: the applications that share one sidecar, by name (`[[callers]]`): who a
//! request is ([`CallerId`]), why it could not be told ([`AuthFailure`]), the wrong tokens of
//! a connection ([`Strikes`]). The tokens a request presents are read in [`token`]; the
//! digests they are compared with are held in [`store::CallerStore`], which the caller layer
//! (`stack/caller.rs`) asks who a request is.

pub mod store;
pub mod token;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

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

/// Why a request's caller could not be accepted. Each is a `reason` of
/// `digicert_sidecar_caller_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No token where one is required.
    Missing,
    /// A token that is no caller's.
    Wrong,
    /// Credentials that are neither Bearer nor Basic `name:token`.
    Malformed,
    /// Basic credentials whose name is not the token's caller.
    NameMismatch,
    /// The connection presented too many wrong tokens; it is closed.
    TooMany,
}

impl AuthFailure {
    pub const ALL: [AuthFailure; 5] = [
        AuthFailure::Missing,
        AuthFailure::Wrong,
        AuthFailure::Malformed,
        AuthFailure::NameMismatch,
        AuthFailure::TooMany,
    ];

    /// The metric's `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Wrong => "wrong_token",
            AuthFailure::Malformed => "malformed",
            AuthFailure::NameMismatch => "name_mismatch",
            AuthFailure::TooMany => "too_many_wrong",
        }
    }

    /// One sentence for the answer's message. Never the token or the name presented.
    pub fn message(self) -> &'static str {
        match self {
            AuthFailure::Missing => {
                "this sidecar serves named callers: present your caller token as \
                 Proxy-Authorization (Bearer <token>, or Basic with your caller name and token) \
                 or, to a sidecar URL, Authorization: Bearer <token>"
            }
            AuthFailure::Wrong => "the caller token presented is not valid",
            AuthFailure::Malformed => {
                "the caller credentials are neither `Bearer <token>` nor Basic `name:token`"
            }
            AuthFailure::NameMismatch => {
                "the caller name in the Basic credentials is not the name of the token's caller"
            }
            AuthFailure::TooMany => {
                "too many wrong caller tokens on this connection; it is being closed"
            }
        }
    }

    /// Whether this failure counts against the connection.
    fn is_guess(self) -> bool {
        matches!(
            self,
            AuthFailure::Wrong | AuthFailure::NameMismatch | AuthFailure::Malformed
        )
    }
}

/// The wrong tokens one connection has presented. Made by the listener per connection.
#[derive(Debug, Default)]
pub struct Strikes(AtomicU32);

impl Strikes {
    fn exhausted(&self) -> bool {
        self.0.load(Ordering::Relaxed) >= MAX_WRONG_PER_CONNECTION
    }

    /// Count one wrong token; true when that was one too many.
    fn strike(&self) -> bool {
        self.0.fetch_add(1, Ordering::Relaxed) + 1 >= MAX_WRONG_PER_CONNECTION
    }
}
