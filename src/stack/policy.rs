//! Policy as a layer: the route's allow-list (method + path glob, see [`crate::policy`]) and,
//! on a Unix socket, the caller's uid/gid. A refused request never reaches the credential.

use std::task::{Context, Poll};

use http::Request;
use tower::{Layer, Service};

use super::ctx::{Peer, ctx, routed};
use super::future::Checked;
use crate::error::ProxyError;
use crate::policy;

#[derive(Debug, Clone, Copy, Default)]
pub struct PolicyLayer;

impl<S> Layer<S> for PolicyLayer {
    type Service = PolicyCheck<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PolicyCheck { inner }
    }
}

#[derive(Debug, Clone)]
pub struct PolicyCheck<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for PolicyCheck<S>
where
    S: Service<Request<B>, Error = ProxyError>,
{
    type Response = S::Response;
    type Error = ProxyError;
    type Future = Checked<S::Future, ProxyError>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match check(&req) {
            Ok(()) => Checked::inner(self.inner.call(req)),
            Err(e) => Checked::refused(e),
        }
    }
}

fn check<B>(req: &Request<B>) -> Result<(), ProxyError> {
    let cfg = routed(req)?.route.config();
    if !policy::allows(cfg.policy.allow.as_deref(), req.method(), req.uri().path()) {
        tracing::warn!(route = %cfg.name, method = %req.method(), path = %req.uri().path(), "denied by policy");
        return Err(ProxyError::PolicyDenied {
            route: cfg.name.clone(),
            method: req.method().clone(),
            path: req.uri().path().to_string(),
        });
    }
    if let Some(Peer::Unix { uid, gid }) = ctx(req).and_then(|c| c.peer)
        && !policy::peer_allowed(
            cfg.policy.unix_peer_uids.as_deref(),
            cfg.policy.unix_peer_gids.as_deref(),
            uid,
            gid,
        )
    {
        return Err(ProxyError::PeerDenied(format!(
            "uid {uid} (gid {gid}) may not use route {}",
            cfg.name
        )));
    }
    Ok(())
}
