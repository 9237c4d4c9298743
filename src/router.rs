//! The router: picks the route for a request on one listener, by longest path prefix, or
//! by upstream host for absolute-form requests (`GET https://www.digicert.com/...`, as sent
//! by a client whose `HTTP_PROXY` points here). It also computes the path to forward.

use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use http::uri::PathAndQuery;
use tokio::sync::Semaphore;

use crate::credential::CredentialStore;
use crate::error::ProxyError;
use crate::rate_limit::{Store, Windows};

/// A route as the request path sees it.
#[derive(Debug)]
pub struct RouteHandle {
    pub store: Arc<CredentialStore>,
    /// DigiCert's last verdict on the credential, from the probe.
    pub verdict: crate::credential::Verdict,
    /// The route's rolling windows, shared by all its callers; `None`: unlimited.
    pub limiter: Option<Windows>,
    /// The route's name, shared by the access line and the metric labels of each request.
    pub label: Arc<str>,
    /// Slots for requests at DigiCert at once (`rate_limit.max_in_flight`).
    pub in_flight: Arc<Semaphore>,
}

impl RouteHandle {
    /// `fleet`: the `[rate_limit_store]` (and the lease of a request in it), if configured.
    pub fn new(store: CredentialStore, fleet: Option<(&Arc<Store>, Duration)>) -> Self {
        let store = Arc::new(store);
        let lease = fleet.map(|f| f.1).unwrap_or_default();
        Self {
            limiter: Windows::for_route(&store, fleet.map(|f| f.0), lease),
            label: Arc::from(store.route().name.as_str()),
            in_flight: Arc::new(Semaphore::new(store.route().rate_limit.max_in_flight)),
            store,
            verdict: Default::default(),
        }
    }
}

impl RouteHandle {
    pub fn config(&self) -> &crate::config::Route {
        self.store.route()
    }

    pub fn name(&self) -> &str {
        &self.store.route().name
    }
}

/// The routes of one listener, longest prefix first.
#[derive(Debug)]
pub struct Router {
    routes: Vec<Arc<RouteHandle>>,
}

impl Router {
    pub fn new(mut routes: Vec<Arc<RouteHandle>>) -> Self {
        routes.sort_by_key(|r| std::cmp::Reverse(r.config().path_prefix.len()));
        Self { routes }
    }

    /// This listener's routes, longest prefix first.
    pub fn routes(&self) -> &[Arc<RouteHandle>] {
        &self.routes
    }

    /// Upstream host names of this listener's routes.
    pub fn upstream_hosts(&self) -> impl Iterator<Item = &str> {
        self.routes
            .iter()
            .map(|r| r.config().upstream.host.as_str())
    }

    /// The route for `uri`, and the path-and-query to send upstream. `proxy_host` is the
    /// host of an absolute-form request: only routes to that upstream host may serve it.
    pub fn select(
        &self,
        uri: &Uri,
        proxy_host: Option<&str>,
    ) -> Result<(&Arc<RouteHandle>, PathAndQuery), ProxyError> {
        let path = uri.path();
        let by_host = proxy_host.map(|h| {
            h.trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase()
        });
        if let Some(host) = &by_host
            && !self
                .routes
                .iter()
                .any(|r| r.config().upstream.host == *host)
        {
            return Err(ProxyError::HostDenied(format!(
                "{host} is not the upstream of any route; the sidecar is not an open proxy"
            )));
        }
        let route = self
            .routes
            .iter()
            .filter(|r| {
                by_host
                    .as_ref()
                    .is_none_or(|h| r.config().upstream.host == *h)
            })
            .find(|r| prefix_matches(&r.config().path_prefix, path))
            .ok_or_else(|| ProxyError::NoRoute(path.to_string()))?;
        let cfg = route.config();
        let rest = if cfg.strip_prefix && cfg.path_prefix != "/" {
            match &path[cfg.path_prefix.len()..] {
                "" => "/",
                rest => rest,
            }
        } else {
            path
        };
        if cfg.upstream.base_path.is_empty() && rest.len() == path.len() {
            // Forwarded as the client sent it: share its bytes.
            let same = uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/"));
            return Ok((route, same));
        }
        let mut forward = String::with_capacity(cfg.upstream.base_path.len() + rest.len() + 64);
        forward.push_str(&cfg.upstream.base_path);
        forward.push_str(rest);
        if let Some(q) = uri.query() {
            forward.push('?');
            forward.push_str(q);
        }
        let forward = PathAndQuery::try_from(forward)
            .map_err(|_| ProxyError::BadRequest("the request path cannot be forwarded".into()))?;
        Ok((route, forward))
    }
}

/// `/one` serves `/one` and `/one/...`, not `/onex`.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::prefix_matches;

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(prefix_matches("/", "/anything"));
        assert!(prefix_matches("/one", "/one"));
        assert!(prefix_matches("/one", "/one/x"));
        assert!(!prefix_matches("/one", "/onex"));
        assert!(!prefix_matches("/one", "/"));
    }
}
