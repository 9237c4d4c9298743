//! Metrics: the Prometheus families of SPEC.md, kept in one registry and rendered as text
//! by the admin listener. No label ever holds a header value, a path or a secret: only route
//! names, methods from a fixed set, status codes and fixed reason words.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use http::{Method, StatusCode};
use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `reason` of `digicert_sidecar_caller_rejected_total` for a known caller that a route
/// does not list (`caller_denied`); the other reasons are those of `AuthFailure`.
pub const CALLER_DENIED: &str = "denied";

/// Labels of the per-request families. Built for every request, so nothing in it
/// allocates: the route and caller names are shared, the method is one of a fixed set.
/// `caller` is there only where callers are configured.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct RequestLabels {
    pub route: Arc<str>,
    pub caller: Option<Arc<str>>,
    pub method: &'static str,
    pub status: u16,
}

/// By hand: a label that is not there (`caller` without callers) is left out, not empty.
impl EncodeLabelSet for RequestLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> std::fmt::Result {
        ("route", &*self.route).encode(encoder.encode_label())?;
        if let Some(c) = &self.caller {
            ("caller", &**c).encode(encoder.encode_label())?;
        }
        ("method", self.method).encode(encoder.encode_label())?;
        ("status", self.status).encode(encoder.encode_label())
    }
}

/// `route`, and `caller` where callers are configured.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct RouteCallerLabels {
    pub route: Arc<str>,
    pub caller: Option<Arc<str>>,
}

impl EncodeLabelSet for RouteCallerLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> std::fmt::Result {
        ("route", &*self.route).encode(encoder.encode_label())?;
        match &self.caller {
            Some(c) => ("caller", &**c).encode(encoder.encode_label()),
            None => Ok(()),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallerReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub route: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub route: String,
    pub result: String,
}

type DurationFamily = Family<RouteLabel, Histogram, fn() -> Histogram>;

/// Every metric the sidecar exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: DurationFamily,
    upstream_errors: Family<ReasonLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    not_after: Family<RouteLabel, Gauge<i64, AtomicI64>>,
    rejected: Family<RouteLabel, Counter>,
    rate_limited: Family<RouteCallerLabels, Counter>,
    caller_rejected: Family<CallerReasonLabel, Counter>,
    /// `Some(anonymous)` where callers are configured: the `caller` label is on.
    caller_label: Option<Arc<str>>,
    /// The configured callers' names, then `anonymous`: the values of the `caller` label.
    caller_names: Vec<Arc<str>>,
    retries: Family<RouteLabel, Counter>,
    valid: Family<RouteLabel, Gauge<i64, AtomicI64>>,
    /// The fleet store's families, registered only when one is configured.
    store_up: Gauge<i64, AtomicI64>,
    store_errors: Family<RouteLabel, Counter>,
    store: bool,
    /// The route label of requests no route took.
    unrouted: Arc<str>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn duration_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ])
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let duration: DurationFamily = Family::new_with_constructor(duration_histogram);
        let upstream_errors = Family::<ReasonLabels, Counter>::default();
        let reloads = Family::<ResultLabels, Counter>::default();
        let not_after = Family::<RouteLabel, Gauge<i64, AtomicI64>>::default();
        let rejected = Family::<RouteLabel, Counter>::default();
        let rate_limited = Family::<RouteCallerLabels, Counter>::default();
        let caller_rejected = Family::<CallerReasonLabel, Counter>::default();
        let retries = Family::<RouteLabel, Counter>::default();
        let valid = Family::<RouteLabel, Gauge<i64, AtomicI64>>::default();
        // prometheus-client appends `_total` to counters.
        registry.register(
            "digicert_sidecar_requests",
            "Requests answered, by route, method and status",
            requests.clone(),
        );
        registry.register(
            "digicert_sidecar_request_duration_seconds",
            "Time from request to the end of the response body",
            duration.clone(),
        );
        registry.register(
            "digicert_sidecar_upstream_errors",
            "Failures talking to DigiCert, by reason (upstream_unreachable, upstream_tls, upstream_protocol, upstream_timeout)",
            upstream_errors.clone(),
        );
        registry.register(
            "digicert_sidecar_credential_reloads",
            "Credential reloads, by result (success, unchanged, error)",
            reloads.clone(),
        );
        registry.register(
            "digicert_sidecar_client_cert_not_after_seconds",
            "Expiry (notAfter) of the route's client certificate, Unix seconds",
            not_after.clone(),
        );
        registry.register(
            "digicert_sidecar_credential_rejected",
            "Answers in which DigiCert rejected the route's credential (401/403 auth errors)",
            rejected.clone(),
        );
        registry.register(
            "digicert_sidecar_rate_limited",
            "Requests refused with 429 by the sidecar's own rate limit",
            rate_limited.clone(),
        );
        registry.register(
            "digicert_sidecar_caller_rejected",
            "Requests refused because their caller token was missing, wrong or malformed, by reason",
            caller_rejected.clone(),
        );
        registry.register(
            "digicert_sidecar_retries",
            "Upstream attempts beyond the first",
            retries.clone(),
        );
        registry.register(
            "digicert_sidecar_credential_valid",
            "1 if DigiCert accepted the credential at the last probe, 0 if it rejected it",
            valid.clone(),
        );
        Self {
            registry,
            requests,
            duration,
            upstream_errors,
            reloads,
            not_after,
            rejected,
            rate_limited,
            caller_rejected,
            caller_label: None,
            caller_names: Vec::new(),
            retries,
            valid,
            store_up: Gauge::default(),
            store_errors: Family::default(),
            store: false,
            unrouted: Arc::from("none"),
        }
    }

    /// Export the fleet store's families (`[rate_limit_store]` is configured).
    pub fn register_store(&mut self) {
        self.store = true;
        self.registry.register(
            "digicert_sidecar_rate_limit_store_up",
            "1 while the rate limit store answers, 0 during an outage (the windows use on_error)",
            self.store_up.clone(),
        );
        self.registry.register(
            "digicert_sidecar_rate_limit_store_errors",
            "Rate limit store calls that failed or took longer than its timeout",
            self.store_errors.clone(),
        );
    }

    pub fn store_up(&self, up: bool) {
        self.store_up.set(i64::from(up));
    }

    pub fn store_error(&self, route: &str) {
        self.store_errors.get_or_create(&route_label(route)).inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Label requests by caller: `names` are the configured callers (their counters start
    /// at 0), and a request without one is `anonymous`.
    pub fn label_callers(&mut self, names: &[Arc<str>]) {
        let anonymous: Arc<str> = Arc::from(crate::config::ANONYMOUS);
        self.caller_names = names.to_vec();
        self.caller_names.push(anonymous.clone());
        self.caller_label = Some(anonymous);
        let reasons = crate::error::AuthFailure::ALL.map(|why| why.as_str());
        for reason in reasons.into_iter().chain([CALLER_DENIED]) {
            let _ = self
                .caller_rejected
                .get_or_create(&CallerReasonLabel { reason });
        }
    }

    /// The `caller` label of a request: `None` where callers are not configured.
    fn caller_of(&self, caller: Option<&Arc<str>>) -> Option<Arc<str>> {
        let anonymous = self.caller_label.as_ref()?;
        Some(caller.unwrap_or(anonymous).clone())
    }

    /// One answered request; `route` is `None` when no route took it, `caller` when no
    /// caller was identified.
    pub fn request(
        &self,
        route: Option<&Arc<str>>,
        caller: Option<&Arc<str>>,
        method: &Method,
        status: StatusCode,
        seconds: f64,
    ) {
        let route = route.unwrap_or(&self.unrouted);
        self.requests
            .get_or_create(&RequestLabels {
                route: route.clone(),
                caller: self.caller_of(caller),
                method: method_label(method),
                status: status.as_u16(),
            })
            .inc();
        self.duration
            .get_or_create(&RouteLabel {
                route: route.clone(),
            })
            .observe(seconds);
    }

    pub fn upstream_error(&self, route: &str, reason: &str) {
        self.upstream_errors
            .get_or_create(&ReasonLabels {
                route: route.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn reload(&self, route: &str, result: &str) {
        self.reloads
            .get_or_create(&ResultLabels {
                route: route.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    pub fn cert_not_after(&self, route: &str, unix_seconds: i64) {
        self.not_after
            .get_or_create(&route_label(route))
            .set(unix_seconds);
    }

    pub fn rejected(&self, route: &str) {
        self.rejected.get_or_create(&route_label(route)).inc();
    }

    pub fn rate_limited(&self, route: &str, caller: Option<&Arc<str>>) {
        self.rate_limited
            .get_or_create(&RouteCallerLabels {
                route: Arc::from(route),
                caller: self.caller_of(caller),
            })
            .inc();
    }

    /// A caller refused for `reason` (an [`crate::error::AuthFailure`]); never token text.
    pub fn caller_rejected(&self, reason: &'static str) {
        self.caller_rejected
            .get_or_create(&CallerReasonLabel { reason })
            .inc();
    }

    pub fn retry(&self, route: &str) {
        self.retries.get_or_create(&route_label(route)).inc();
    }

    pub fn credential_valid(&self, route: &str, valid: bool) {
        self.valid
            .get_or_create(&route_label(route))
            .set(i64::from(valid));
    }

    /// Make a route's counters appear (at 0) from the start, so alerts on `increase()` work.
    pub fn register_route(&self, route: &str) {
        let r = route_label(route);
        let _ = self.rejected.get_or_create(&r);
        if self.caller_label.is_none() {
            let _ = self.rate_limited.get_or_create(&RouteCallerLabels {
                route: r.route.clone(),
                caller: None,
            });
        }
        for caller in &self.caller_names {
            let _ = self.rate_limited.get_or_create(&RouteCallerLabels {
                route: r.route.clone(),
                caller: Some(caller.clone()),
            });
        }
        let _ = self.retries.get_or_create(&r);
        if self.store {
            let _ = self.store_errors.get_or_create(&r);
        }
        for result in ["success", "error"] {
            let _ = self.reloads.get_or_create(&ResultLabels {
                route: route.to_string(),
                result: result.to_string(),
            });
        }
    }
}

fn route_label(route: &str) -> RouteLabel {
    RouteLabel {
        route: Arc::from(route),
    }
}

/// The methods the door lets through by name, anything else as `OTHER`, so the label set
/// stays small.
fn method_label(method: &Method) -> &'static str {
    crate::door::ALLOWED_METHODS
        .iter()
        .find(|m| *m == method)
        .map_or("OTHER", Method::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caller_label_is_there_only_where_callers_are_configured() {
        let m = Metrics::new();
        m.register_route("cc");
        m.request(
            Some(&Arc::from("cc")),
            Some(&Arc::from("x")),
            &Method::GET,
            StatusCode::OK,
            0.0,
        );
        m.rate_limited("cc", None);
        let text = m.render();
        assert!(!text.contains("caller="), "{text}");
        assert!(
            text.contains("digicert_sidecar_rate_limited_total{route=\"cc\"} 1"),
            "{text}"
        );

        let mut m = Metrics::new();
        m.label_callers(&[Arc::from("billing")]);
        m.register_route("cc");
        m.request(
            Some(&Arc::from("cc")),
            Some(&Arc::from("billing")),
            &Method::GET,
            StatusCode::OK,
            0.0,
        );
        m.request(
            Some(&Arc::from("cc")),
            None,
            &Method::GET,
            StatusCode::UNAUTHORIZED,
            0.0,
        );
        m.rate_limited("cc", Some(&Arc::from("billing")));
        m.caller_rejected("wrong_token");
        let text = m.render();
        for sample in [
            "digicert_sidecar_requests_total{route=\"cc\",caller=\"billing\",method=\"GET\",status=\"200\"} 1",
            "digicert_sidecar_requests_total{route=\"cc\",caller=\"anonymous\",method=\"GET\",status=\"401\"} 1",
            "digicert_sidecar_rate_limited_total{route=\"cc\",caller=\"billing\"} 1",
            "digicert_sidecar_rate_limited_total{route=\"cc\",caller=\"anonymous\"} 0",
            "digicert_sidecar_caller_rejected_total{reason=\"wrong_token\"} 1",
            "digicert_sidecar_caller_rejected_total{reason=\"too_many_wrong\"} 0",
        ] {
            assert!(text.contains(sample), "{sample} missing:\n{text}");
        }
        assert!(!text.contains("rate_limited_total{route=\"cc\"}"), "{text}");
    }

    #[test]
    fn names_are_those_of_the_spec() {
        let m = Metrics::new();
        m.register_route("cc");
        m.request(
            Some(&Arc::from("cc")),
            None,
            &Method::GET,
            StatusCode::OK,
            0.01,
        );
        m.request(
            None,
            None,
            &Method::CONNECT,
            StatusCode::METHOD_NOT_ALLOWED,
            0.0,
        );
        m.upstream_error("cc", "upstream_tls");
        m.cert_not_after("cc", 1_900_000_000);
        m.credential_valid("cc", true);
        let text = m.render();
        for name in [
            "digicert_sidecar_requests_total{route=\"cc\",method=\"GET\",status=\"200\"} 1",
            "digicert_sidecar_requests_total{route=\"none\",method=\"OTHER\",status=\"405\"} 1",
            "digicert_sidecar_request_duration_seconds_bucket",
            "digicert_sidecar_upstream_errors_total{route=\"cc\",reason=\"upstream_tls\"} 1",
            "digicert_sidecar_credential_reloads_total{route=\"cc\",result=\"error\"} 0",
            "digicert_sidecar_client_cert_not_after_seconds{route=\"cc\"} 1900000000",
            "digicert_sidecar_credential_rejected_total{route=\"cc\"} 0",
            "digicert_sidecar_rate_limited_total{route=\"cc\"} 0",
            "digicert_sidecar_retries_total{route=\"cc\"} 0",
            "digicert_sidecar_credential_valid{route=\"cc\"} 1",
        ] {
            assert!(text.contains(name), "{name} missing:\n{text}");
        }
        assert!(!text.contains("store"), "no store families without a store");
    }

    #[test]
    fn store_families_when_a_store_is_configured() {
        let mut m = Metrics::new();
        m.register_store();
        m.register_route("cc");
        m.store_up(true);
        let text = m.render();
        assert!(
            text.contains("digicert_sidecar_rate_limit_store_up 1"),
            "{text}"
        );
        assert!(
            text.contains("digicert_sidecar_rate_limit_store_errors_total{route=\"cc\"} 0"),
            "{text}"
        );
        m.store_error("cc");
        assert!(
            m.render()
                .contains("digicert_sidecar_rate_limit_store_errors_total{route=\"cc\"} 1")
        );
    }
}
