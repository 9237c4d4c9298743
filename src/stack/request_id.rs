//! Request ids: a client's well-formed `x-request-id` is kept; a malformed one is dropped and,
//! like a missing one, replaced by 32 random hex digits (tower-http's `SetRequestId` with
//! [`MakeId`]). tower-http's `PropagateRequestId` copies it into the response, unless
//! DigiCert sent its own.

use http::Request;
use http::header::{HeaderName, HeaderValue};
use tower_http::request_id::{MakeRequestId, RequestId as TowerRequestId};

use crate::telemetry::RequestId;

/// Header carrying the request id.
/// (A static name: inserting it and cloning it for the upstream allocate nothing.)
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Drop a client's `x-request-id` that is not one we keep (see [`RequestId::from_client`]).
pub fn drop_malformed<B>(mut req: Request<B>) -> Request<B> {
    if req
        .headers()
        .get(&REQUEST_ID)
        .is_some_and(|v| RequestId::from_client(v.as_bytes()).is_none())
    {
        req.headers_mut().remove(&REQUEST_ID);
    }
    req
}

/// Makes a random id for a request that came without one.
#[derive(Debug, Clone, Copy, Default)]
pub struct MakeId;

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, _req: &Request<B>) -> Option<TowerRequestId> {
        let id = RequestId::random();
        HeaderValue::from_str(id.as_str())
            .ok()
            .map(TowerRequestId::new)
    }
}
