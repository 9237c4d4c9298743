//! Head limits, before anything reads the request: more header bytes than
//! `max_header_bytes` or more than [`MAX_HEADERS`] fields get the JSON 431, and a declared
//! `Content-Length` over `max_request_body` the JSON 413, at once. (hyper's own limits, set
//! higher in `listener.rs`, are the backstop for heads too large to parse at all; a body
//! without a declared length is counted as it streams, in `hold_body.rs`.)
//!
//! Our own layer: tower-http's `RequestBodyLimitLayer` answers a declared oversize body with
//! its own plain-text 413, not DigiCert's error shape, and has no header limit.

use std::task::{Context, Poll};

use http::{Request, header};
use tower::{Layer, Service};

use super::future::Checked;
use crate::error::ProxyError;

/// At most this many header fields in a request.
pub const MAX_HEADERS: usize = 100;

#[derive(Debug, Clone, Copy)]
pub struct HeadLimitsLayer {
    pub max_header_bytes: usize,
    pub max_request_body: u64,
}

impl<S> Layer<S> for HeadLimitsLayer {
    type Service = HeadLimits<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HeadLimits {
            inner,
            limits: *self,
        }
    }
}

#[derive(Debug, Clone)]
pub struct HeadLimits<S> {
    inner: S,
    limits: HeadLimitsLayer,
}

impl<S, B> Service<Request<B>> for HeadLimits<S>
where
    S: Service<Request<B>>,
    S::Error: From<ProxyError>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Checked<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match check(&req, &self.limits) {
            Ok(()) => Checked::inner(self.inner.call(req)),
            Err(e) => Checked::refused(e),
        }
    }
}

fn check<B>(req: &Request<B>, limits: &HeadLimitsLayer) -> Result<(), ProxyError> {
    if req.headers().len() > MAX_HEADERS {
        return Err(ProxyError::HeadersTooLarge);
    }
    let line = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().len())
        .unwrap_or(1)
        + 16;
    let fields: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if line + fields > limits.max_header_bytes {
        return Err(ProxyError::HeadersTooLarge);
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_request_body) {
        return Err(ProxyError::BodyTooLarge(limits.max_request_body));
    }
    Ok(())
}
