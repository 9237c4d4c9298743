//! Caller identity as a layer, between the router and policy: who is calling
//! ([`crate::caller::CallerStore::identify`]), from a token in `Proxy-Authorization` (Bearer
//! or Basic `name:token`) or, in origin form, `Authorization: Bearer`, or from a Unix peer's
//! uid/gid. It tells the layers below ([`RequestCtx::caller`](super::ctx::RequestCtx)) and
//! names the caller on the way back, in the answer's [`Outcome`](super::ctx::Outcome) or in
//! the error ([`Refused`]), for the access line and the metrics. A missing or wrong token is
//! `caller_unauthenticated` (401 or 407), counted by reason; the tenth wrong token on one
//! connection closes it. The token headers are left for the credential layer to strip.
//!
//! Our own layer, not tower-http's `AsyncRequireAuthorizationLayer`: that one answers a
//! refusal with a ready-made response (so the refusal would skip our one error → response
//! function and the access line would lose its reason and route) and passes the inner
//! service's errors through untouched, where this layer must add the caller to them.
//! With no `[[callers]]` configured it only passes requests on.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::ctx::{Peer, ctx, ctx_mut, outcome_mut, routed};
use crate::caller::CallerStore;
use crate::caller::token::presented;
use crate::error::{ProxyError, Refused};
use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct CallerLayer {
    store: Arc<CallerStore>,
    metrics: Arc<Metrics>,
}

impl CallerLayer {
    pub fn new(store: Arc<CallerStore>, metrics: Arc<Metrics>) -> Self {
        Self { store, metrics }
    }
}

impl<S> Layer<S> for CallerLayer {
    type Service = Identify<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Identify {
            inner,
            store: self.store.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Identify<S> {
    inner: S,
    store: Arc<CallerStore>,
    metrics: Arc<Metrics>,
}

impl<S, B, RB> Service<Request<B>> for Identify<S>
where
    S: Service<Request<B>, Response = Response<RB>, Error = ProxyError>,
{
    type Response = Response<RB>;
    type Error = Refused;
    type Future = IdentifyFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Refused>> {
        self.inner.poll_ready(cx).map_err(Refused::from)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if !self.store.configured() {
            return IdentifyFuture::Inner {
                future: self.inner.call(req),
                caller: None,
            };
        }
        let proxy_form = match routed(&req) {
            Ok(r) => r.proxy_form,
            Err(e) => return IdentifyFuture::refused(e),
        };
        let c = ctx(&req);
        let unix_peer = match c.and_then(|c| c.peer) {
            Some(Peer::Unix { uid, gid }) => Some((uid, gid)),
            _ => None,
        };
        let strikes = c.and_then(|c| c.strikes.as_deref());
        let shown = presented(req.headers(), !proxy_form);
        match self.store.identify(&shown, unix_peer, strikes) {
            Ok(caller) => {
                let name = caller.name.clone();
                ctx_mut(&mut req).caller = Some(caller);
                IdentifyFuture::Inner {
                    future: self.inner.call(req),
                    caller: Some(name),
                }
            }
            Err(why) => {
                self.metrics.caller_rejected(why.as_str());
                tracing::debug!(reason = why.as_str(), "caller refused");
                IdentifyFuture::refused(ProxyError::CallerUnauthenticated { proxy_form, why })
            }
        }
    }
}

pin_project! {
    #[project = IdentifyProj]
    pub enum IdentifyFuture<F> {
        Refused { error: Option<ProxyError> },
        Inner { #[pin] future: F, caller: Option<Arc<str>> },
    }
}

impl<F> IdentifyFuture<F> {
    fn refused(error: ProxyError) -> Self {
        IdentifyFuture::Refused { error: Some(error) }
    }
}

impl<F, RB> Future for IdentifyFuture<F>
where
    F: Future<Output = Result<Response<RB>, ProxyError>>,
{
    type Output = Result<Response<RB>, Refused>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            IdentifyProj::Refused { error } => Poll::Ready(Err(Refused::from(
                error.take().unwrap_or(ProxyError::Internal),
            ))),
            IdentifyProj::Inner { future, caller } => {
                let result = ready!(future.poll(cx));
                let caller = caller.take();
                Poll::Ready(match result {
                    Ok(mut resp) => {
                        if caller.is_some() {
                            outcome_mut(&mut resp).caller = caller;
                        }
                        Ok(resp)
                    }
                    Err(error) => Err(Refused {
                        error,
                        route: None,
                        caller,
                    }),
                })
            }
        }
    }
}
