//! The door as a layer: every request passes [`crate::door::Door`]'s checks (methods, header
//! names, paths, `Host`, browsers) before it is routed.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use tower::{Layer, Service};

use super::future::Checked;
use crate::door::Door;
use crate::error::ProxyError;

#[derive(Debug, Clone)]
pub struct DoorLayer {
    door: Arc<Door>,
}

impl DoorLayer {
    pub fn new(door: Door) -> Self {
        Self {
            door: Arc::new(door),
        }
    }
}

impl<S> Layer<S> for DoorLayer {
    type Service = DoorCheck<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DoorCheck {
            inner,
            door: self.door.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DoorCheck<S> {
    inner: S,
    door: Arc<Door>,
}

impl<S, B> Service<Request<B>> for DoorCheck<S>
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
        match self.door.check(&req) {
            Ok(()) => Checked::inner(self.inner.call(req)),
            Err(e) => Checked::refused(e),
        }
    }
}
