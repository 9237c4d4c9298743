//! The request path of one listener, as a stack of tower layers. The order is written once,
//! in [`build`], and reads top to bottom as a request flows:
//!
//! | layer | file | what it does |
//! |---|---|---|
//! | sensitive headers | tower-http | client credential headers never show in `Debug` |
//! | request id | tower-http + [`request_id`] | keep a good `x-request-id`, else make one; echo it |
//! | rescue | [`rescue`] | errors → DigiCert-shaped answers; access line and metrics |
//! | catch panic | tower-http | a bug answers 500 `sidecar_internal`, the connection lives |
//! | head limits | [`head_limits`] | 431 / 413 before anything reads the request |
//! | door | [`door`] | methods, paths, header names, `Host`, browsers |
//! | router | [`route`] | the route, by listener and longest prefix or absolute form |
//! | caller | [`caller`] | who is calling: a token, or a Unix peer's uid/gid; 401 / 407 |
//! | policy | [`policy`] | the route's callers and allow-list (+ the caller's), Unix peer uid/gid |
//! | hold body | [`hold_body`] | size and idle limits; small bodies kept to send again |
//! | deadline | [`deadline`] + tower `Timeout` | `request_timeout` for all that follows |
//! | credential | [`credential`] | strip, then set; reload and once more if DigiCert rejects it |
//! | in flight | [`in_flight`] | `max_in_flight` slots, held until the answer's body ends |
//! | retry | tower `Retry` + [`retry`] | idempotent retries, backoff, `Retry-After` |
//! | caller share | [`caller_share`] | one caller's share of the route's windows, per attempt |
//! | rate windows | [`rate_window`] | DigiCert's rolling windows, per attempt |
//! | upstream | [`upstream`] | the pooled HTTPS connection of the credential in force |
//!
//! The rate windows sit below the retry layer so that every attempt that reaches DigiCert
//! counts in them; the in-flight slot sits above it, held for the whole request. A caller's
//! share is checked just before the route's windows, so a caller over its share waits
//! without holding room in them; a shared (fleet) limit is the rate-window layer with
//! another counter behind it.
//!
//! Each layer is generic over the one below it, so the stack is one monomorphised call
//! chain: no boxed service, and a boxed future only at the very bottom (hyper's send future
//! has no name) and on the slow paths (waiting for a slot, a rejected credential).

pub mod caller;
pub mod caller_share;
pub mod credential;
pub mod ctx;
pub mod deadline;
pub mod door;
pub mod future;
pub mod head_limits;
pub mod hold_body;
pub mod in_flight;
pub mod policy;
pub mod rate_window;
pub mod request_id;
pub mod rescue;
pub mod retry;
pub mod route;
pub mod upstream;

use std::any::Any;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use tower::ServiceBuilder;
use tower::retry::{Retry, RetryLayer};
use tower::util::MapRequest;
use tower_http::catch_panic::{CatchPanic, CatchPanicLayer, ResponseForPanic};
use tower_http::request_id::{
    PropagateRequestId, PropagateRequestIdLayer, SetRequestId, SetRequestIdLayer,
};
use tower_http::sensitive_headers::{SetSensitiveRequestHeaders, SetSensitiveRequestHeadersLayer};

use crate::body::ProxyBody;
use crate::caller::CallerStore;
use crate::config::Server;
use crate::door::Door;
use crate::error::ProxyError;
use crate::headers::CREDENTIAL_HEADERS;
use crate::metrics::Metrics;
use crate::router::Router;

pub use ctx::{Peer, RequestCtx};

/// Everything below the rescue layer that knows the route.
type Routed = route::RouteSelect<
    caller::Identify<
        policy::PolicyCheck<
            hold_body::HoldBody<
                deadline::WithDeadline<
                    credential::AttachCredential<
                        in_flight::InFlight<
                            Retry<
                                retry::RetryPolicy,
                                caller_share::CallerShare<
                                    rate_window::RateWindows<upstream::SendUpstream>,
                                >,
                            >,
                        >,
                    >,
                >,
            >,
        >,
    >,
>;

type DropMalformedId = fn(Request<Incoming>) -> Request<Incoming>;

/// The whole request path of one listener: what [`build`] returns.
pub type Stack = SetSensitiveRequestHeaders<
    MapRequest<
        SetRequestId<
            PropagateRequestId<
                rescue::Rescue<
                    CatchPanic<head_limits::HeadLimits<door::DoorCheck<Routed>>, PanicAnswer>,
                >,
            >,
            request_id::MakeId,
        >,
        DropMalformedId,
    >,
>;

/// The request path for the routes of one listener, in order.
pub fn build(
    router: Router,
    mut allowed_hosts: Vec<String>,
    server: &Server,
    callers: Arc<CallerStore>,
    metrics: Arc<Metrics>,
) -> Stack {
    allowed_hosts.extend(router.upstream_hosts().map(str::to_string));
    let shares = caller_share::Shares::new(router.routes(), callers.names().len());
    let drop_malformed: DropMalformedId = request_id::drop_malformed;
    ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new(CREDENTIAL_HEADERS))
        .map_request(drop_malformed)
        .layer(SetRequestIdLayer::new(
            request_id::REQUEST_ID,
            request_id::MakeId,
        ))
        .layer(PropagateRequestIdLayer::new(request_id::REQUEST_ID))
        .layer(rescue::RescueLayer::new(
            metrics.clone(),
            server.body_idle_timeout,
        ))
        .layer(CatchPanicLayer::custom(PanicAnswer))
        .layer(head_limits::HeadLimitsLayer {
            max_header_bytes: server.max_header_bytes,
            max_request_body: server.max_request_body,
        })
        .layer(door::DoorLayer::new(Door { allowed_hosts }))
        .layer(route::RouteLayer::new(router))
        .layer(caller::CallerLayer::new(callers, metrics.clone()))
        .layer(policy::PolicyLayer::new(metrics.clone()))
        .layer(hold_body::HoldBodyLayer {
            limit: server.max_request_body,
            idle_timeout: server.body_idle_timeout,
            within: server.request_timeout,
        })
        .layer(deadline::DeadlineLayer {
            timeout: server.request_timeout,
        })
        .layer(credential::CredentialLayer::new(metrics.clone()))
        .layer(in_flight::InFlightLayer::new(metrics.clone()))
        .layer(RetryLayer::new(retry::RetryPolicy::new(metrics.clone())))
        .layer(caller_share::CallerShareLayer::new(shares, metrics.clone()))
        .layer(rate_window::RateWindowLayer::new(metrics))
        .service(upstream::SendUpstream)
}

/// The answer to a request whose handling panicked: the JSON 500, and one error line (no
/// panic message: it could quote request data).
#[derive(Debug, Clone, Copy, Default)]
pub struct PanicAnswer;

impl ResponseForPanic for PanicAnswer {
    type ResponseBody = ProxyBody;

    fn response_for_panic(&mut self, _err: Box<dyn Any + Send + 'static>) -> Response<ProxyBody> {
        tracing::error!("a request handler panicked; answering 500 (this is a bug)");
        ProxyError::Internal.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tower::{Service, ServiceExt};

    /// The order of the layers is the order of the request's steps: pinned here, from the
    /// type [`build`] returns, so a reordering cannot pass unnoticed.
    #[test]
    fn the_layers_are_in_the_order_of_the_request_path() {
        let name = std::any::type_name::<Stack>();
        let order = [
            "SetSensitiveRequestHeaders<",
            "MapRequest<",
            "SetRequestId<",
            "PropagateRequestId<",
            "rescue::Rescue<",
            "CatchPanic<",
            "head_limits::HeadLimits<",
            "door::DoorCheck<",
            "route::RouteSelect<",
            "caller::Identify<",
            "policy::PolicyCheck<",
            "hold_body::HoldBody<",
            "deadline::WithDeadline<",
            "credential::AttachCredential<",
            "in_flight::InFlight<",
            "retry::Retry<",
            "caller_share::CallerShare<",
            "rate_window::RateWindows<",
            "upstream::SendUpstream",
        ];
        let mut at = 0;
        for layer in order {
            let found = name[at..]
                .find(layer)
                .unwrap_or_else(|| panic!("{layer} missing or out of order in {name}"));
            at += found + layer.len();
        }
    }

    #[tokio::test]
    async fn a_panic_is_a_json_500_not_a_dropped_connection() {
        let mut svc = ServiceBuilder::new()
            .layer(CatchPanicLayer::custom(PanicAnswer))
            .service(tower::service_fn(|_req: Request<()>| async {
                if true {
                    panic!("canary-panic-text");
                }
                Ok::<_, std::convert::Infallible>(Response::new(crate::body::empty()))
            }));
        let resp = svc
            .ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap();
        assert_eq!(resp.status(), 500);
        assert_eq!(resp.headers()[crate::error::ERROR_HEADER], "internal");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["errors"][0]["code"], "sidecar_internal");
        assert!(!String::from_utf8_lossy(&body).contains("canary"));
    }
}
