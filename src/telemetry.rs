//! Logs: the tracing subscriber (JSON by default, to stderr) and the one access line each
//! request gets when its response body ends or is dropped. An access line holds the request
//! id, route, method, path without query, status, durations and bytes: never a header value
//! other than the request id, never a body, never a query string.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;

use http::{Method, StatusCode};
use tracing_subscriber::EnvFilter;

use crate::body::OnEnd;
use crate::config::LogFormat;
use crate::metrics::Metrics;

/// Install the global subscriber. `RUST_LOG`, when set, overrides `level`.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // A second init (tests, `demo` after `run` set one up) keeps the first subscriber.
    drop(result);
}

/// What the access line says about one request; filled in as the request goes.
#[derive(Debug)]
pub struct AccessLog {
    pub request_id: String,
    pub route: Option<String>,
    pub method: Method,
    pub path: String,
    pub status: StatusCode,
    pub error: Option<&'static str>,
    pub start: Instant,
    pub upstream_ms: Option<f64>,
    pub metrics: Option<Arc<Metrics>>,
}

impl AccessLog {
    pub fn new(request_id: String, method: Method, path: &str) -> Self {
        Self {
            request_id,
            route: None,
            method,
            path: path.to_string(),
            status: StatusCode::OK,
            error: None,
            start: Instant::now(),
            upstream_ms: None,
            metrics: None,
        }
    }
}

impl OnEnd for AccessLog {
    fn body_ended(self: Box<Self>, bytes: u64, complete: bool) {
        let seconds = self.start.elapsed().as_secs_f64();
        let duration_ms = seconds * 1000.0;
        if let Some(m) = &self.metrics {
            m.request(
                self.route.as_deref().unwrap_or("none"),
                &self.method,
                self.status,
                seconds,
            );
        }
        tracing::info!(
            target: "access",
            request_id = %self.request_id,
            route = self.route.as_deref().unwrap_or("-"),
            method = %self.method,
            path = %self.path,
            status = self.status.as_u16(),
            error = self.error.unwrap_or("-"),
            duration_ms,
            upstream_ms = self.upstream_ms.unwrap_or(-1.0),
            bytes,
            complete,
            "request"
        );
    }
}
