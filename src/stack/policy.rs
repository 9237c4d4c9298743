//! Policy as a layer: the route's callers (`policy.callers`), its allow-list (method + path
//! glob, see [`crate::policy`]) plus the caller's own rules (`policy.caller_allow`) and, on a
//! Unix socket, the peer's uid/gid. A refused request never reaches the credential. Caller
//! refusals here (no caller on a route that names its callers; a caller it does not list)
//! are counted in `digicert_sidecar_caller_rejected_total`, like those of the caller layer.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use tower::{Layer, Service};

use super::ctx::{Peer, ctx, routed};
use super::future::Checked;
use crate::caller::AuthFailure;
use crate::error::ProxyError;
use crate::metrics::Metrics;
use crate::policy;

#[derive(Debug, Clone)]
pub struct PolicyLayer {
    metrics: Arc<Metrics>,
}

impl PolicyLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for PolicyLayer {
    type Service = PolicyCheck<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PolicyCheck {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PolicyCheck<S> {
    inner: S,
    metrics: Arc<Metrics>,
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
        match check(&req, &self.metrics) {
            Ok(()) => Checked::inner(self.inner.call(req)),
            Err(e) => Checked::refused(e),
        }
    }
}

fn check<B>(req: &Request<B>, metrics: &Metrics) -> Result<(), ProxyError> {
    let routed = routed(req)?;
    let cfg = routed.route.config();
    let caller = ctx(req).and_then(|c| c.caller.as_ref());
    if let Some(names) = &cfg.policy.callers {
        match caller {
            Some(c) if c.index.is_some() => {
                if !names.iter().any(|n| **n == *c.name) {
                    tracing::warn!(route = %cfg.name, caller = %c.name, "caller not listed by the route");
                    metrics.caller_rejected(crate::metrics::CALLER_DENIED);
                    return Err(ProxyError::CallerDenied {
                        caller: c.name.to_string(),
                        route: cfg.name.clone(),
                    });
                }
            }
            // The route serves named callers only.
            _ => {
                metrics.caller_rejected(AuthFailure::Missing.as_str());
                return Err(ProxyError::CallerUnauthenticated {
                    proxy_form: routed.proxy_form,
                    why: AuthFailure::Missing,
                });
            }
        }
    }
    let own_rules = caller.and_then(|c| {
        cfg.policy
            .caller_allow
            .iter()
            .find(|(n, _)| **n == *c.name)
            .map(|(_, rules)| rules.as_slice())
    });
    if !policy::allows(cfg.policy.allow.as_deref(), req.method(), req.uri().path())
        && !own_rules.is_some_and(|r| policy::allows(Some(r), req.method(), req.uri().path()))
    {
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
