//! The request body on its way in: counted against `max_request_body`, cut off after
//! `body_idle_timeout` without bytes, and — when it is small ([`REPLAY_LIMIT`]) — read into
//! memory, so that the request can be sent again (a retry, a reloaded credential). A larger
//! body streams through once. An empty body costs nothing.
//!
//! Our own layer: tower-http's `RequestBodyLimitLayer` limits size only; this one also needs
//! the idle timeout, the replayable copy, and the reason a body failed, which the upstream
//! connection may report only as a reset stream ([`BodyFault`]).

use std::future::Future;
use std::pin::Pin;

use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http::request::Parts;
use http_body::Body;
use http_body_util::BodyExt;
use http_body_util::combinators::Collect;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::{Layer, Service};

use super::ctx::{BodyFault, RequestCtx};
use crate::body::{BoxError, Guarded, Outgoing};
use crate::error::ProxyError;

/// Request bodies up to this size are held in memory so the request can be sent again.
pub const REPLAY_LIMIT: u64 = 64 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct HoldBodyLayer {
    pub limit: u64,
    pub idle_timeout: Duration,
    /// How long a small body may take to arrive in full.
    pub within: Duration,
}

impl<S> Layer<S> for HoldBodyLayer {
    type Service = HoldBody<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HoldBody {
            inner,
            settings: *self,
        }
    }
}

#[derive(Debug, Clone)]
pub struct HoldBody<S> {
    inner: S,
    settings: HoldBodyLayer,
}

impl<S, B> Service<Request<B>> for HoldBody<S>
where
    S: Service<Request<Outgoing>, Error = ProxyError> + Clone,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = ProxyError;
    type Future = HoldFuture<S, S::Future, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        if body.is_end_stream() {
            let req = Request::from_parts(parts, Outgoing::empty());
            return HoldFuture::Calling {
                future: self.inner.call(req),
            };
        }
        let fault = BodyFault::default();
        let small = body.size_hint().upper().is_some_and(|n| n <= REPLAY_LIMIT);
        let s = self.settings;
        let body = Guarded::new(body, Some(s.limit), Some(s.idle_timeout), None)
            .with_fault(fault.0.clone());
        if !small {
            parts.extensions.get_or_insert_default::<RequestCtx>().fault = Some(fault);
            let req = Request::from_parts(parts, Outgoing::streamed(body.boxed_unsync()));
            return HoldFuture::Calling {
                future: self.inner.call(req),
            };
        }
        // The service was made ready for this call; a clone takes its place.
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        HoldFuture::Collecting {
            collect: body.collect(),
            timeout: tokio::time::sleep(s.within),
            parts: Some(parts),
            service: Some(service),
            fault,
        }
    }
}

pin_project! {
    #[project = HoldProj]
    pub enum HoldFuture<S, F, B>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        Collecting {
            #[pin] collect: Collect<Guarded<B>>,
            #[pin] timeout: Sleep,
            parts: Option<Parts>,
            service: Option<S>,
            fault: BodyFault,
        },
        Calling { #[pin] future: F },
    }
}

impl<S, F, B, R> Future for HoldFuture<S, F, B>
where
    S: Service<Request<Outgoing>, Future = F, Error = ProxyError>,
    F: Future<Output = Result<R, ProxyError>>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Output = Result<R, ProxyError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project() {
                HoldProj::Calling { future } => return future.poll(cx),
                HoldProj::Collecting {
                    collect,
                    timeout,
                    parts,
                    service,
                    fault,
                } => {
                    let collected = match collect.poll(cx) {
                        Poll::Ready(c) => c,
                        Poll::Pending => {
                            ready!(timeout.poll(cx));
                            return Poll::Ready(Err(ProxyError::BadRequest(
                                "the request body came too slowly".into(),
                            )));
                        }
                    };
                    let bytes = match collected {
                        Ok(c) => c.to_bytes(),
                        Err(_) => {
                            return Poll::Ready(Err(match fault.0.get() {
                                Some(e) => ProxyError::from_request_body(*e),
                                None => ProxyError::BadRequest("the request body broke off".into()),
                            }));
                        }
                    };
                    let (Some(parts), Some(mut service)) = (parts.take(), service.take()) else {
                        return Poll::Ready(Err(ProxyError::Internal));
                    };
                    service.call(Request::from_parts(parts, Outgoing::held(bytes)))
                }
            };
            self.set(HoldFuture::Calling { future: next });
        }
    }
}
