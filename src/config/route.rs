//! One `[[routes]]` entry, checked: its upstream, policy, rate limits, probe and retries.

use std::path::PathBuf;
use std::time::Duration;

use http::uri::{Authority, Uri};

use super::ConfigError;
use super::egress::{Egress, EgressPath};
use super::raw::RawRoute;
use super::secrets::{ApiKeySource, ClientCertSource, api_key, client_cert};
use super::server::{ListenAddr, Server, listen_addr};
use crate::policy::AllowRule;

/// One route, checked.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub path_prefix: String,
    pub strip_prefix: bool,
    /// A listener of the route's own; `None` means the `[server] listen` one.
    pub listen: Option<ListenAddr>,
    pub upstream: Upstream,
    pub ca_file: Option<PathBuf>,
    /// How the route leaves: directly or through a proxy.
    pub egress: EgressPath,
    pub api_key: Option<ApiKeySource>,
    pub client_cert: Option<ClientCertSource>,
    pub policy: Policy,
    pub rate_limit: RateLimit,
    pub probe: Option<Probe>,
    pub retry: Retry,
}

/// The HTTPS origin a route forwards to.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `host[:port]` as it goes into `Host` / `:authority`.
    pub authority: Authority,
    /// Host name alone (no port, no brackets), for SNI and absolute-form matching.
    pub host: String,
    pub port: u16,
    /// Path the upstream URL carried, without a trailing slash ("" for none).
    pub base_path: String,
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "https://{}{}", self.authority, self.base_path)
    }
}

/// `[routes.policy]`, checked. An empty policy allows everything.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// `None`: every method and path is allowed.
    pub allow: Option<Vec<AllowRule>>,
    pub unix_peer_uids: Option<Vec<u32>>,
    pub unix_peer_gids: Option<Vec<u32>>,
    /// `None`: any caller (and, unless callers are required, anonymous requests).
    pub callers: Option<Vec<String>>,
    /// Extra rules of one caller, on top of `allow`.
    pub caller_allow: Vec<(String, Vec<AllowRule>)>,
}

/// `[routes.rate_limit]`, checked. No windows: no limit on the rate.
#[derive(Debug, Clone)]
pub struct RateLimit {
    pub windows: Vec<RateWindow>,
    /// How long a request may wait for a window slot or an in-flight slot before 429.
    pub max_wait: Duration,
    /// Requests of the route at DigiCert at once; more wait. It also bounds the route's
    /// upstream HTTP/1.1 connections (one per request in flight) and their memory.
    pub max_in_flight: usize,
    /// The name of the windows in the fleet store (`[rate_limit_store]`); `None`: derived
    /// from the credential.
    pub budget: Option<String>,
    /// The most of each window one caller may take; `None`: no per-caller share.
    pub caller_share: Option<f64>,
}

/// Default of `rate_limit.max_in_flight`: far above what DigiCert's rate windows let one
/// credential use, low enough to bound connections (and memory) under a burst.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 32;
const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(5);

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            windows: Vec::new(),
            max_wait: DEFAULT_MAX_WAIT,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            budget: None,
            caller_share: None,
        }
    }
}

/// One rolling window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateWindow {
    pub requests: u32,
    pub per: Duration,
}

/// `[routes.probe]`, checked.
#[derive(Debug, Clone)]
pub struct Probe {
    pub path: String,
    pub interval: Duration,
}

/// `[routes.retry]`, checked. `attempts` counts the first try: 1 means no retry.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
}

impl Default for Retry {
    fn default() -> Self {
        Self { attempts: 1 }
    }
}

/// DigiCert's published CertCentral limits as windows.
pub fn certcentral_windows() -> Vec<RateWindow> {
    crate::digicert::CERTCENTRAL_WINDOWS
        .iter()
        .map(|&(requests, per)| RateWindow { requests, per })
        .collect()
}

pub(super) fn route(
    i: usize,
    r: &RawRoute,
    server: &Server,
    egress: &Egress,
) -> Result<Route, ConfigError> {
    let key = |k: &str| format!("routes[{i}].{k}");
    let name = r.name.trim().to_string();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(ConfigError::invalid(
            key("name"),
            "a route needs a name of letters, digits, '-', '_' or '.'",
        ));
    }
    let key = |k: &str| format!("routes[{i}] ({name}).{k}");
    if !r.path_prefix.starts_with('/') {
        return Err(ConfigError::invalid(
            key("path_prefix"),
            "must start with '/'",
        ));
    }
    let path_prefix = if r.path_prefix.len() > 1 {
        r.path_prefix.trim_end_matches('/').to_string()
    } else {
        r.path_prefix.clone()
    };
    let listen = r
        .listen
        .as_deref()
        .map(|l| listen_addr(&key("listen"), l, server.allow_non_loopback))
        .transpose()?;
    let upstream = upstream(&key("upstream"), &r.upstream)?;
    let api_key = r.api_key.as_ref().map(|a| api_key(&key, a)).transpose()?;
    let client_cert = r
        .client_cert
        .as_ref()
        .map(|c| client_cert(&key, c))
        .transpose()?;
    if api_key.is_none() && client_cert.is_none() {
        return Err(ConfigError::invalid(
            key("api_key"),
            "a route needs a credential: [routes.api_key], [routes.client_cert], or both",
        ));
    }
    let rules = |k: &str, rules: &[String]| {
        rules
            .iter()
            .enumerate()
            .map(|(j, rule)| {
                AllowRule::parse(rule)
                    .map_err(|e| ConfigError::invalid(key(&format!("{k}[{j}]")), e))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let policy = match &r.policy {
        None => Policy::default(),
        Some(p) => Policy {
            allow: p
                .allow
                .as_ref()
                .map(|a| rules("policy.allow", a))
                .transpose()?,
            unix_peer_uids: p.unix_peer_uids.clone(),
            unix_peer_gids: p.unix_peer_gids.clone(),
            callers: p.callers.clone(),
            caller_allow: p
                .caller_allow
                .iter()
                .map(|(n, a)| Ok((n.clone(), rules(&format!("policy.caller_allow.{n}"), a)?)))
                .collect::<Result<Vec<_>, ConfigError>>()?,
        },
    };
    if policy.allow.is_none()
        && let Some((n, _)) = policy.caller_allow.first()
    {
        return Err(ConfigError::invalid(
            key(&format!("policy.caller_allow.{n}")),
            "adds to policy.allow, which is not set (so every call is allowed already); set \
             policy.allow to what every caller of the route may do",
        ));
    }
    let rate_limit = match &r.rate_limit {
        Some(rl) => {
            for (j, w) in rl.windows.iter().enumerate() {
                if w.requests == 0 || w.per.is_zero() {
                    return Err(ConfigError::invalid(
                        key(&format!("rate_limit.windows[{j}]")),
                        "requests and per must both be greater than zero",
                    ));
                }
            }
            let max_in_flight = rl.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT);
            if !(1..=10_000).contains(&max_in_flight) {
                return Err(ConfigError::invalid(
                    key("rate_limit.max_in_flight"),
                    "must be between 1 and 10000",
                ));
            }
            if let Some(b) = &rl.budget
                && !super::store::valid_budget(b)
            {
                return Err(ConfigError::invalid(
                    key("rate_limit.budget"),
                    "1 to 64 letters, digits, '-', '_' or '.'",
                ));
            }
            let caller_share = match rl.caller_share {
                None => None,
                Some(x) if x > 0.0 && x <= 1.0 && !rl.windows.is_empty() => Some(x),
                Some(x) if x > 0.0 && x <= 1.0 => {
                    return Err(ConfigError::invalid(
                        key("rate_limit.caller_share"),
                        "shares the route's windows, and it has none; set rate_limit.windows",
                    ));
                }
                Some(x) => {
                    return Err(ConfigError::invalid(
                        key("rate_limit.caller_share"),
                        format!(
                            "{x} is outside (0, 1]: it is the most of each window that one caller may take, e.g. 0.5"
                        ),
                    ));
                }
            };
            RateLimit {
                budget: rl.budget.clone(),
                caller_share,
                windows: rl
                    .windows
                    .iter()
                    .map(|w| RateWindow {
                        requests: w.requests,
                        per: w.per,
                    })
                    .collect(),
                max_wait: rl.max_wait.unwrap_or(DEFAULT_MAX_WAIT),
                max_in_flight,
            }
        }
        None if crate::digicert::CERTCENTRAL_HOSTS.contains(&upstream.host.as_str()) => RateLimit {
            windows: certcentral_windows(),
            ..RateLimit::default()
        },
        None => RateLimit::default(),
    };
    let probe = r
        .probe
        .as_ref()
        .map(|p| {
            if !p.path.starts_with('/') {
                return Err(ConfigError::invalid(
                    key("probe.path"),
                    "must start with '/'",
                ));
            }
            if p.interval < Duration::from_secs(1) {
                return Err(ConfigError::invalid(
                    key("probe.interval"),
                    "must be at least 1s",
                ));
            }
            Ok(Probe {
                path: p.path.clone(),
                interval: p.interval,
            })
        })
        .transpose()?;
    let retry = match &r.retry {
        None => Retry::default(),
        Some(rt) if (1..=10).contains(&rt.attempts) => Retry {
            attempts: rt.attempts,
        },
        Some(_) => {
            return Err(ConfigError::invalid(
                key("retry.attempts"),
                "must be between 1 (no retry) and 10",
            ));
        }
    };
    let ca_file = r
        .ca_file
        .as_ref()
        .map(|f| super::paths::file_path(&key("ca_file"), f))
        .transpose()?;
    let own_proxy = r
        .egress_proxy
        .as_deref()
        .map(|p| super::egress::setting(&key("egress_proxy"), p))
        .transpose()?;
    let egress = super::egress::path(
        &key("egress_proxy"),
        own_proxy.as_ref(),
        egress,
        &upstream.authority,
        &|name| std::env::var(name).ok(),
    )?;
    Ok(Route {
        name,
        path_prefix,
        strip_prefix: r.strip_prefix,
        listen,
        upstream,
        ca_file,
        egress,
        api_key,
        client_cert,
        policy,
        rate_limit,
        probe,
        retry,
    })
}

fn upstream(key: &str, text: &str) -> Result<Upstream, ConfigError> {
    let uri: Uri = text.parse().map_err(|_| {
        ConfigError::invalid(
            key,
            format!("`{text}` is not a URL like \"https://www.digicert.com\""),
        )
    })?;
    if uri.scheme_str() != Some("https") {
        return Err(ConfigError::invalid(
            key,
            format!("`{text}` must be an https:// URL: the credential never travels in plain text"),
        ));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| ConfigError::invalid(key, format!("`{text}` has no host")))?;
    if authority.as_str().contains('@') {
        return Err(ConfigError::invalid(
            key,
            "user information in the URL is not allowed",
        ));
    }
    if uri.query().is_some() {
        return Err(ConfigError::invalid(
            key,
            "the upstream URL must not have a query",
        ));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    Ok(Upstream {
        port: authority.port_u16().unwrap_or(443),
        host,
        authority,
        base_path: uri.path().trim_end_matches('/').to_string(),
    })
}
