//! Stage two of the configuration: the checked, typed form. `TryFrom<RawConfig>` is the
//! only way in, and its errors name the key and what to do.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::HeaderName;
use http::uri::{Authority, Uri};

use super::ConfigError;
use super::raw::{RawApiKey, RawClientCert, RawConfig, RawRoute, RawServer};
use crate::policy::AllowRule;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: Server,
    pub log: Log,
    pub routes: Vec<Route>,
}

/// `[server]`, checked.
#[derive(Debug, Clone)]
pub struct Server {
    pub listen: ListenAddr,
    pub allow_non_loopback: bool,
    /// `None` when the admin listener is `"off"`.
    pub admin: Option<SocketAddr>,
    pub request_timeout: Duration,
    pub header_read_timeout: Duration,
    pub body_idle_timeout: Duration,
    pub connect_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_request_body: u64,
    pub max_connections: usize,
    /// 1: a single-threaded runtime; more: a work-stealing runtime with this many workers.
    pub worker_threads: usize,
    pub shutdown_grace: Duration,
    pub unix_socket_mode: u32,
}

/// More worker threads than this is a typo, not a plan.
pub const MAX_WORKER_THREADS: usize = 256;

/// `[log]`, checked.
#[derive(Debug, Clone)]
pub struct Log {
    pub format: LogFormat,
    pub level: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Where a listener binds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

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

/// Where a secret is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

impl std::fmt::Display for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::File(p) => write!(f, "file {}", p.display()),
            SecretSource::Env(v) => write!(f, "env {v}"),
        }
    }
}

/// A header credential: which header, and where its value comes from.
#[derive(Debug, Clone)]
pub struct ApiKeySource {
    pub header: HeaderName,
    pub source: SecretSource,
}

/// A client certificate for mTLS to the upstream.
#[derive(Debug, Clone)]
pub enum ClientCertSource {
    Pkcs12 {
        file: PathBuf,
        password: SecretSource,
    },
    Pem {
        cert_file: PathBuf,
        key_file: PathBuf,
    },
}

impl ClientCertSource {
    /// The files whose change means the certificate must be reloaded.
    pub fn files(&self) -> Vec<PathBuf> {
        match self {
            ClientCertSource::Pkcs12 { file, password } => {
                let mut v = vec![file.clone()];
                if let SecretSource::File(p) = password {
                    v.push(p.clone());
                }
                v
            }
            ClientCertSource::Pem {
                cert_file,
                key_file,
            } => vec![cert_file.clone(), key_file.clone()],
        }
    }
}

/// `[routes.policy]`, checked. An empty policy allows everything.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// `None`: every method and path is allowed.
    pub allow: Option<Vec<AllowRule>>,
    pub unix_peer_uids: Option<Vec<u32>>,
    pub unix_peer_gids: Option<Vec<u32>>,
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

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        let server = server(&raw.server)?;
        let log = Log {
            format: match raw.log.format.as_str() {
                "json" => LogFormat::Json,
                "text" => LogFormat::Text,
                other => {
                    return Err(ConfigError::invalid(
                        "log.format",
                        format!("`{other}` is not a log format; use \"json\" or \"text\""),
                    ));
                }
            },
            level: raw.log.level.clone(),
        };
        if super::log_filter::parse_filter(&log.level).is_err() {
            return Err(ConfigError::invalid(
                "log.level",
                format!(
                    "`{}` is not a level or filter; use e.g. \"info\"",
                    log.level
                ),
            ));
        }
        if raw.routes.is_empty() {
            return Err(ConfigError::invalid(
                "routes",
                "no [[routes]] configured: add at least one route",
            ));
        }
        let mut names = HashSet::new();
        let mut places = HashSet::new();
        let mut routes = Vec::with_capacity(raw.routes.len());
        for (i, r) in raw.routes.iter().enumerate() {
            let route = route(i, r, &server)?;
            if !names.insert(route.name.clone()) {
                return Err(ConfigError::invalid(
                    format!("routes[{i}].name"),
                    format!("route name `{}` is used twice", route.name),
                ));
            }
            let listener = route.listen.clone().unwrap_or(server.listen.clone());
            if !places.insert((listener.clone(), route.path_prefix.clone())) {
                return Err(ConfigError::invalid(
                    format!("routes[{i}].path_prefix"),
                    format!(
                        "another route already serves path_prefix `{}` on {listener}",
                        route.path_prefix
                    ),
                ));
            }
            if server.admin.is_some_and(|a| a.port() != 0)
                && server.admin.map(ListenAddr::Tcp).as_ref() == Some(&listener)
            {
                return Err(ConfigError::invalid(
                    format!("routes[{i}].listen"),
                    "the admin listener and a route listener share an address",
                ));
            }
            routes.push(route);
        }
        Ok(Config {
            server,
            log,
            routes,
        })
    }
}

fn server(raw: &RawServer) -> Result<Server, ConfigError> {
    let listen = listen_addr("server.listen", &raw.listen, raw.allow_non_loopback)?;
    let admin = match raw.admin.trim() {
        "off" | "" => None,
        a => Some(a.parse::<SocketAddr>().map_err(|_| {
            ConfigError::invalid(
                "server.admin",
                format!(
                    "`{a}` is not an address; use host:port like \"127.0.0.1:9901\" or \"off\""
                ),
            )
        })?),
    };
    if admin.is_some_and(|a| a.port() != 0) && admin.map(ListenAddr::Tcp) == Some(listen.clone()) {
        return Err(ConfigError::invalid(
            "server.admin",
            "the admin listener must not share server.listen's address",
        ));
    }
    let mode = u32::from_str_radix(raw.unix_socket_mode.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| {
            ConfigError::invalid(
                "server.unix_socket_mode",
                format!(
                    "`{}` is not an octal file mode like \"0660\"",
                    raw.unix_socket_mode
                ),
            )
        })?;
    let positive = |key: &str, d: Duration| {
        if d.is_zero() {
            Err(ConfigError::invalid(key, "must be greater than zero"))
        } else {
            Ok(d)
        }
    };
    let max_header_bytes = usize::try_from(raw.max_header_bytes.as_u64())
        .ok()
        .filter(|n| (8 * 1024..=16 * 1024 * 1024).contains(n))
        .ok_or_else(|| {
            ConfigError::invalid("server.max_header_bytes", "must be between 8KiB and 16MiB")
        })?;
    if raw.max_connections == 0 {
        return Err(ConfigError::invalid(
            "server.max_connections",
            "must be at least 1",
        ));
    }
    if !(1..=MAX_WORKER_THREADS).contains(&raw.worker_threads) {
        return Err(ConfigError::invalid(
            "server.worker_threads",
            format!("must be between 1 and {MAX_WORKER_THREADS}"),
        ));
    }
    Ok(Server {
        listen,
        allow_non_loopback: raw.allow_non_loopback,
        admin,
        request_timeout: positive("server.request_timeout", raw.request_timeout)?,
        header_read_timeout: positive("server.header_read_timeout", raw.header_read_timeout)?,
        body_idle_timeout: positive("server.body_idle_timeout", raw.body_idle_timeout)?,
        connect_timeout: positive("server.connect_timeout", raw.connect_timeout)?,
        max_header_bytes,
        max_request_body: raw.max_request_body.as_u64(),
        max_connections: raw.max_connections,
        worker_threads: raw.worker_threads,
        shutdown_grace: raw.shutdown_grace,
        unix_socket_mode: mode,
    })
}

/// Parse a listen address; TCP off loopback only with `allow_non_loopback`.
fn listen_addr(key: &str, text: &str, allow_non_loopback: bool) -> Result<ListenAddr, ConfigError> {
    if let Some(path) = text.strip_prefix("unix:") {
        if path.is_empty() || !path.starts_with('/') {
            return Err(ConfigError::invalid(
                key,
                "a Unix socket needs an absolute path, e.g. \"unix:/run/digicert-sidecar/sock\"",
            ));
        }
        return Ok(ListenAddr::Unix(PathBuf::from(path)));
    }
    let addr: SocketAddr = text.parse().map_err(|_| {
        ConfigError::invalid(
            key,
            format!("`{text}` is not an address; use \"127.0.0.1:8080\" or \"unix:/path\""),
        )
    })?;
    if !addr.ip().is_loopback() && !allow_non_loopback {
        return Err(ConfigError::invalid(
            key,
            format!(
                "{addr} is not a loopback address: any host that reaches it could use the \
                 DigiCert credential; listen on 127.0.0.1 or a Unix socket, or set \
                 server.allow_non_loopback = true if the network in front is trusted"
            ),
        ));
    }
    Ok(ListenAddr::Tcp(addr))
}

fn route(i: usize, r: &RawRoute, server: &Server) -> Result<Route, ConfigError> {
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
    let policy = match &r.policy {
        None => Policy::default(),
        Some(p) => Policy {
            allow: p
                .allow
                .as_ref()
                .map(|rules| {
                    rules
                        .iter()
                        .enumerate()
                        .map(|(j, rule)| {
                            AllowRule::parse(rule).map_err(|e| {
                                ConfigError::invalid(key(&format!("policy.allow[{j}]")), e)
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?,
            unix_peer_uids: p.unix_peer_uids.clone(),
            unix_peer_gids: p.unix_peer_gids.clone(),
        },
    };
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
            RateLimit {
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
    Ok(Route {
        name,
        path_prefix,
        strip_prefix: r.strip_prefix,
        listen,
        upstream,
        ca_file: r.ca_file.as_ref().map(PathBuf::from),
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

fn secret_source(
    key: &dyn Fn(&str) -> String,
    file_key: &str,
    file: &Option<String>,
    env_key: &str,
    env: &Option<String>,
) -> Result<SecretSource, ConfigError> {
    match (file, env) {
        (Some(f), None) if !f.is_empty() => Ok(SecretSource::File(PathBuf::from(f))),
        (None, Some(e)) if !e.is_empty() => Ok(SecretSource::Env(e.clone())),
        (Some(_), Some(_)) => Err(ConfigError::invalid(
            key(file_key),
            format!("set either {file_key} or {env_key}, not both"),
        )),
        _ => Err(ConfigError::invalid(
            key(file_key),
            format!("set {file_key} (a path) or {env_key} (a variable name)"),
        )),
    }
}

fn api_key(key: &dyn Fn(&str) -> String, a: &RawApiKey) -> Result<ApiKeySource, ConfigError> {
    if a.value.is_some() {
        return Err(ConfigError::invalid(
            key("api_key.value"),
            "secret values are not allowed in the configuration; put the key in a file \
             (api_key.file) or an environment variable (api_key.env)",
        ));
    }
    let header = HeaderName::from_bytes(a.header.as_bytes()).map_err(|_| {
        ConfigError::invalid(
            key("api_key.header"),
            format!(
                "`{}` is not a header name; use \"X-DC-DEVKEY\" or \"x-api-key\"",
                a.header
            ),
        )
    })?;
    let source = secret_source(key, "api_key.file", &a.file, "api_key.env", &a.env)?;
    Ok(ApiKeySource { header, source })
}

fn client_cert(
    key: &dyn Fn(&str) -> String,
    c: &RawClientCert,
) -> Result<ClientCertSource, ConfigError> {
    if c.password.is_some() {
        return Err(ConfigError::invalid(
            key("client_cert.password"),
            "secret values are not allowed in the configuration; use client_cert.password_file \
             or client_cert.password_env",
        ));
    }
    match (&c.pkcs12_file, &c.cert_file, &c.key_file) {
        (Some(p12), None, None) => Ok(ClientCertSource::Pkcs12 {
            file: PathBuf::from(p12),
            password: secret_source(
                key,
                "client_cert.password_file",
                &c.password_file,
                "client_cert.password_env",
                &c.password_env,
            )?,
        }),
        (None, Some(cert), Some(k)) => {
            if c.password_file.is_some() || c.password_env.is_some() {
                return Err(ConfigError::invalid(
                    key("client_cert.password_file"),
                    "a password goes with pkcs12_file; PEM keys must be unencrypted",
                ));
            }
            Ok(ClientCertSource::Pem {
                cert_file: PathBuf::from(cert),
                key_file: PathBuf::from(k),
            })
        }
        _ => Err(ConfigError::invalid(
            key("client_cert"),
            "set pkcs12_file (+ password_file or password_env), or cert_file + key_file (PEM)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::from_toml_str;

    const BASE: &str = r#"
[server]
listen = "127.0.0.1:0"
admin = "off"
[[routes]]
name = "cc"
upstream = "https://www.digicert.com"
[routes.api_key]
header = "X-DC-DEVKEY"
file = "/run/secrets/devkey"
"#;

    #[test]
    fn a_minimal_route_is_valid_and_gets_certcentral_windows() {
        let c = from_toml_str(BASE).unwrap();
        assert_eq!(c.routes[0].rate_limit.windows.len(), 2);
        assert_eq!(c.routes[0].upstream.host, "www.digicert.com");
        assert_eq!(c.routes[0].upstream.port, 443);
    }

    #[test]
    fn worker_threads_default_to_one_and_are_bounded() {
        assert_eq!(from_toml_str(BASE).unwrap().server.worker_threads, 1);
        let with = |n: &str| {
            BASE.replace(
                "admin = \"off\"",
                &format!("admin = \"off\"\nworker_threads = {n}"),
            )
        };
        assert_eq!(from_toml_str(&with("4")).unwrap().server.worker_threads, 4);
        for bad in ["0", "257"] {
            let err = from_toml_str(&with(bad)).unwrap_err().to_string();
            assert!(err.contains("server.worker_threads"), "{err}");
        }
    }

    #[test]
    fn max_in_flight_defaults_and_is_bounded() {
        let c = from_toml_str(BASE).unwrap();
        assert_eq!(c.routes[0].rate_limit.max_in_flight, 32);
        let with = |n: &str| format!("{BASE}[routes.rate_limit]\nmax_in_flight = {n}\n");
        let c = from_toml_str(&with("4")).unwrap();
        assert_eq!(c.routes[0].rate_limit.max_in_flight, 4);
        assert!(c.routes[0].rate_limit.windows.is_empty());
        for bad in ["0", "10001"] {
            let err = from_toml_str(&with(bad)).unwrap_err().to_string();
            assert!(err.contains("max_in_flight"), "{err}");
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = from_toml_str(&BASE.replace("admin", "admn"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("admn"), "{err}");
    }

    #[test]
    fn inline_secrets_are_refused() {
        let err = from_toml_str(&BASE.replace("file = \"/run/secrets/devkey\"", "value = \"abc\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not allowed"), "{err}");
        assert!(!err.contains("abc"), "{err}");
    }

    #[test]
    fn non_loopback_needs_opt_in() {
        let t = BASE.replace("127.0.0.1:0", "0.0.0.0:8080");
        assert!(
            from_toml_str(&t)
                .unwrap_err()
                .to_string()
                .contains("loopback")
        );
        let t = t.replace(
            "admin = \"off\"",
            "admin = \"off\"\nallow_non_loopback = true",
        );
        assert!(from_toml_str(&t).is_ok());
    }

    #[test]
    fn plain_http_upstreams_are_refused() {
        let t = BASE.replace("https://www", "http://www");
        assert!(from_toml_str(&t).unwrap_err().to_string().contains("https"));
    }

    #[test]
    fn sizes_and_durations_are_human() {
        let t = BASE.replace(
            "admin = \"off\"",
            "admin = \"off\"\nmax_header_bytes = \"32KiB\"\nrequest_timeout = \"2m\"",
        );
        let c = from_toml_str(&t).unwrap();
        assert_eq!(c.server.max_header_bytes, 32 * 1024);
        assert_eq!(c.server.request_timeout.as_secs(), 120);
    }

    #[test]
    fn empty_windows_turn_limiting_off() {
        let t = format!("{BASE}[routes.rate_limit]\nwindows = []\n");
        assert!(
            from_toml_str(&t).unwrap().routes[0]
                .rate_limit
                .windows
                .is_empty()
        );
    }
}
