//! Routing as a layer: pick the route ([`crate::router::Router`]), tell the layers below it
//! ([`Routed`] in the request's context), and name the route on the way back, in the
//! answer's [`Outcome`](super::ctx::Outcome) or in the error ([`Refused`]), for the access line and metrics.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response, Version};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::ctx::{Routed, ctx_mut, outcome_mut};
use crate::error::{ProxyError, Refused};
use crate::router::Router;

#[derive(Debug, Clone)]
pub struct RouteLayer {
    router: Arc<Router>,
}

impl RouteLayer {
    pub fn new(router: Router) -> Self {
        Self {
            router: Arc::new(router),
        }
    }
}

impl<S> Layer<S> for RouteLayer {
    type Service = RouteSelect<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RouteSelect {
            inner,
            router: self.router.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RouteSelect<S> {
    inner: S,
    router: Arc<Router>,
}

impl<S, B, RB> Service<Request<B>> for RouteSelect<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<Refused>,
{
    type Response = Response<RB>;
    type Error = Refused;
    type Future = RouteFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Refused>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // In HTTP/1 a URI with an authority is a proxy request (absolute form); in h2 every
        // request carries `:authority`, which plays the part of `Host`.
        let proxy_host = (req.version() < Version::HTTP_2)
            .then(|| req.uri().host())
            .flatten();
        let (route, forward) = match self.router.select(req.uri(), proxy_host) {
            Ok((route, forward)) => (route.clone(), forward),
            Err(e) => return RouteFuture::Refused { error: Some(e) },
        };
        let label = route.label.clone();
        let proxy_form = proxy_host.is_some();
        ctx_mut(&mut req).routed = Some(Routed {
            route,
            forward,
            proxy_form,
        });
        RouteFuture::Inner {
            future: self.inner.call(req),
            label: Some(label),
        }
    }
}

pin_project! {
    #[project = RouteFutureProj]
    pub enum RouteFuture<F> {
        Refused { error: Option<ProxyError> },
        Inner { #[pin] future: F, label: Option<Arc<str>> },
    }
}

impl<F, RB, E> Future for RouteFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<Refused>,
{
    type Output = Result<Response<RB>, Refused>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            RouteFutureProj::Refused { error } => Poll::Ready(Err(Refused::from(
                error.take().unwrap_or(ProxyError::Internal),
            ))),
            RouteFutureProj::Inner { future, label } => {
                let result = ready!(future.poll(cx));
                let label = label.take();
                Poll::Ready(match result {
                    Ok(mut resp) => {
                        outcome_mut(&mut resp).route = label;
                        Ok(resp)
                    }
                    Err(error) => {
                        let mut refused: Refused = error.into();
                        refused.route = label;
                        Err(refused)
                    }
                })
            }
        }
    }
}
