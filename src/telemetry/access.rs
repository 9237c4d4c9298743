//! The access line: what it says about one request, filled in as the request goes and
//! written when its response body ends or is dropped.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use http::uri::PathAndQuery;
use http::{Method, StatusCode};

use super::ACCESS;
use crate::body::OnEnd;
use crate::metrics::Metrics;

/// A request id: the client's (validated: at most [`RequestId::MAX`] bytes of
/// `[A-Za-z0-9._:-]`) or 32 random hex digits. Held inline: no allocation per request.
#[derive(Clone, Copy)]
pub struct RequestId {
    len: u8,
    bytes: [u8; RequestId::MAX],
}

impl RequestId {
    pub const MAX: usize = 128;

    /// The client's id, if it is one we keep.
    pub fn from_client(id: &[u8]) -> Option<Self> {
        if id.is_empty()
            || id.len() > Self::MAX
            || !id
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        {
            return None;
        }
        let mut bytes = [0; Self::MAX];
        bytes[..id.len()].copy_from_slice(id);
        Some(Self {
            len: id.len() as u8,
            bytes,
        })
    }

    /// A new random id.
    pub fn random() -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = rand::random::<u128>();
        let mut bytes = [0; Self::MAX];
        for (i, b) in bytes[..32].iter_mut().enumerate() {
            *b = HEX[((n >> (124 - 4 * i)) & 0xf) as usize];
        }
        Self { len: 32, bytes }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("-")
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// What the access line says about one request; filled in as the request goes.
pub struct AccessLog {
    pub request_id: RequestId,
    pub route: Option<Arc<str>>,
    /// Who called, where callers are configured and the caller layer knew.
    pub caller: Option<Arc<str>>,
    pub method: Method,
    /// The request target; only its path is logged, never the query.
    pub target: Option<PathAndQuery>,
    pub status: StatusCode,
    pub error: Option<&'static str>,
    pub start: Instant,
    pub upstream_ms: Option<f64>,
    pub metrics: Option<Arc<Metrics>>,
}

/// By hand: the request target holds the query string, which is never shown.
impl fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessLog")
            .field("request_id", &self.request_id)
            .field("route", &self.route)
            .field("caller", &self.caller)
            .field("method", &self.method)
            .field("path", &self.target.as_ref().map(PathAndQuery::path))
            .field("status", &self.status)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl AccessLog {
    pub fn new(request_id: RequestId, method: Method, target: Option<PathAndQuery>) -> Self {
        Self {
            request_id,
            route: None,
            caller: None,
            method,
            target,
            status: StatusCode::OK,
            error: None,
            start: Instant::now(),
            upstream_ms: None,
            metrics: None,
        }
    }
}

impl AccessLog {
    /// What the access line says: only the path of the target, never its query.
    fn fields(&self, bytes: u64, complete: bool, duration_ms: f64) -> super::line::Fields<'_> {
        super::line::Fields {
            request_id: self.request_id.as_str(),
            route: self.route.as_deref().unwrap_or("-"),
            caller: self.caller.as_deref().unwrap_or("-"),
            method: self.method.as_str(),
            path: self.target.as_ref().map_or("/", PathAndQuery::path),
            status: self.status.as_u16(),
            error: self.error.unwrap_or("-"),
            duration_ms,
            upstream_ms: self.upstream_ms.unwrap_or(-1.0),
            bytes,
            complete,
        }
    }
}

impl OnEnd for AccessLog {
    fn body_ended(self: Box<Self>, bytes: u64, complete: bool) {
        let seconds = self.start.elapsed().as_secs_f64();
        let duration_ms = seconds * 1000.0;
        if let Some(m) = &self.metrics {
            m.request(
                self.route.as_ref(),
                self.caller.as_ref(),
                &self.method,
                self.status,
                seconds,
            );
        }
        let f = self.fields(bytes, complete, duration_ms);
        if super::line::enabled() {
            if tracing::enabled!(target: ACCESS, tracing::Level::INFO) {
                super::sink::SINK.append(|out| super::line::write(out, &f));
            }
            return;
        }
        // The text format: tracing's formatter, with the same fields.
        tracing::info!(
            target: ACCESS,
            request_id = f.request_id,
            route = f.route,
            caller = f.caller,
            method = f.method,
            path = f.path,
            status = f.status,
            error = f.error,
            duration_ms = f.duration_ms,
            upstream_ms = f.upstream_ms,
            bytes = f.bytes,
            complete = f.complete,
            "request"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_access_line_is_json_with_the_fields_of_the_spec() {
        let mut log = AccessLog::new(
            RequestId::from_client(b"req-1").unwrap(),
            Method::POST,
            Some(PathAndQuery::from_static("/services/v2/order?secret=1")),
        );
        log.route = Some(Arc::from("cc \"quoted\"\n"));
        log.caller = Some(Arc::from("billing"));
        log.status = StatusCode::CREATED;
        log.upstream_ms = Some(1.5004);
        let duration_ms = log.start.elapsed().as_secs_f64() * 1000.0;
        let mut out = Vec::new();
        super::super::line::write(&mut out, &log.fields(209, true, duration_ms));
        let text = String::from_utf8(out).unwrap();
        let a: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(a["target"], "access");
        assert_eq!(a["level"], "INFO");
        assert_eq!(a["message"], "request");
        assert_eq!(a["request_id"], "req-1");
        assert_eq!(a["route"], "cc \"quoted\"\n");
        assert_eq!(a["caller"], "billing");
        assert_eq!(a["method"], "POST");
        assert_eq!(a["path"], "/services/v2/order", "never the query");
        assert_eq!(a["status"], 201);
        assert_eq!(a["error"], "-");
        assert_eq!(a["upstream_ms"], 1.5);
        assert_eq!(a["bytes"], 209);
        assert_eq!(a["complete"], true);
        assert!(a["duration_ms"].as_f64().unwrap() >= 0.0);
        assert!(!text.contains("secret"), "never the query");
        let ts = a["timestamp"].as_str().unwrap();
        assert!(
            ts.len() == 27 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
            "RFC 3339 with microseconds: {ts}"
        );
    }

    #[test]
    fn debug_of_an_access_log_shows_no_query() {
        let log = AccessLog::new(
            RequestId::random(),
            Method::GET,
            Some(PathAndQuery::from_static("/a?secret=1")),
        );
        let shown = format!("{log:?}");
        assert!(
            shown.contains("\"/a\"") && !shown.contains("secret"),
            "{shown}"
        );
    }

    #[test]
    fn request_ids_are_kept_when_well_formed_else_made() {
        assert_eq!(
            RequestId::from_client(b"abc-1.2:3_4").unwrap().as_str(),
            "abc-1.2:3_4"
        );
        for bad in [&b""[..], b"a b", b"a\"b", &[b'a'; 129]] {
            assert!(RequestId::from_client(bad).is_none());
        }
        assert!(RequestId::from_client(&[b'a'; 128]).is_some());
        let (a, b) = (RequestId::random(), RequestId::random());
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.as_str(), b.as_str());
    }
}
