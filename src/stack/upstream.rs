//! The end of the stack: send the request through the connection pool of the credential
//! snapshot its context carries, and say what a failure means. The one boxed
//! future per request is here: hyper's `send_request` future has no name to hold it by.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body_util::BodyExt;
use tower::Service;

use super::ctx::ctx;
use crate::body::{Outgoing, ProxyBody};
use crate::error::ProxyError;

#[derive(Debug, Clone, Copy, Default)]
pub struct SendUpstream;

impl Service<Request<Outgoing>> for SendUpstream {
    type Response = Response<ProxyBody>;
    type Error = ProxyError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, ProxyError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Outgoing>) -> Self::Future {
        let (live, fault) = match ctx(&req) {
            Some(c) => (c.live.clone(), c.fault.clone()),
            None => (None, None),
        };
        Box::pin(async move {
            let Some(live) = live else {
                return Err(ProxyError::Internal);
            };
            match live.client.send(req).await {
                Ok(resp) => Ok(resp.map(|b| b.map_err(Into::into).boxed_unsync())),
                Err(e) => {
                    // A body the sidecar cut short may reach us only as "stream reset".
                    if let Some(cut) = fault.as_ref().and_then(|f| f.0.get()) {
                        return Err(ProxyError::from_request_body(*cut));
                    }
                    Err(e.to_proxy_error())
                }
            }
        })
    }
}
