//! What the layers of one request tell the layers below them, and what comes back up with the
//! answer. Each is a single entry in the message's extensions: every entry of its own would
//! be an allocation per request.

use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use http::{Request, Response};
use tokio::time::Instant;

use http::uri::PathAndQuery;

use crate::body::BodyError;
use crate::caller::{CallerId, Strikes};
use crate::credential::Live;
use crate::error::ProxyError;
use crate::router::RouteHandle;

/// The route a request is on, and the path-and-query to send upstream.
#[derive(Debug, Clone)]
pub struct Routed {
    pub route: Arc<RouteHandle>,
    pub forward: PathAndQuery,
    /// The request is in absolute form: the client takes the sidecar for its HTTP proxy.
    pub proxy_form: bool,
}

/// Why a streamed request body was cut short, if it was (the upstream connection may report
/// it only as a reset stream).
#[derive(Debug, Clone, Default)]
pub struct BodyFault(pub Arc<std::sync::OnceLock<BodyError>>);

/// Who is on the other end of an inbound connection.
#[derive(Debug, Clone, Copy)]
pub enum Peer {
    Tcp(SocketAddr),
    Unix { uid: u32, gid: u32 },
}

/// The request's context, filled in on the way down.
#[derive(Debug, Clone, Default)]
pub struct RequestCtx {
    /// Set by the listener.
    pub peer: Option<Peer>,
    /// Set by the router.
    pub routed: Option<Routed>,
    /// Set by the deadline layer: when the request must have its answer.
    pub deadline: Option<Instant>,
    /// Set by the credential layer: the credential snapshot this attempt uses (its key was
    /// attached; its connection pool sends the request).
    pub live: Option<Arc<Live>>,
    /// Set for a streamed body: why it was cut short, if it was.
    pub fault: Option<BodyFault>,
    /// Set by the caller layer when `[[callers]]` are configured: who is calling.
    pub caller: Option<CallerId>,
    /// Set by the listener: the wrong caller tokens of the request's connection.
    pub strikes: Option<Arc<Strikes>>,
}

impl RequestCtx {
    /// A context for the requests of a connection, with the connection's strike count.
    pub fn of_connection(peer: Peer, strikes: &Arc<Strikes>) -> Self {
        Self {
            peer: Some(peer),
            strikes: Some(strikes.clone()),
            ..Self::default()
        }
    }
}

/// The request's context (empty if nothing set it).
pub fn ctx<B>(req: &Request<B>) -> Option<&RequestCtx> {
    req.extensions().get::<RequestCtx>()
}

/// The request's context, to fill in.
pub fn ctx_mut<B>(req: &mut Request<B>) -> &mut RequestCtx {
    req.extensions_mut().get_or_insert_default::<RequestCtx>()
}

/// The route of a request, or the error of a stack built out of order.
pub fn routed<B>(req: &Request<B>) -> Result<&Routed, ProxyError> {
    ctx(req)
        .and_then(|c| c.routed.as_ref())
        .ok_or(ProxyError::Internal)
}

/// The request's deadline; a stack built without the deadline layer has none.
pub fn deadline<B>(req: &Request<B>) -> Instant {
    ctx(req)
        .and_then(|c| c.deadline)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
}

/// What the access line learns from below, in the answer's extensions.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The route that answered (set by the router).
    pub route: Option<Arc<str>>,
    /// How long the exchange with DigiCert took, retries included.
    pub upstream: Option<Duration>,
    /// Who called (set by the caller layer where callers are configured).
    pub caller: Option<Arc<str>>,
}

/// The answer's outcome, to fill in.
pub fn outcome_mut<B>(resp: &mut Response<B>) -> &mut Outcome {
    resp.extensions_mut().get_or_insert_default::<Outcome>()
}
