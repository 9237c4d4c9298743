//! Stage one of the configuration: the TOML/environment shape, as serde reads it.
//!
//! Every struct denies unknown fields so a typo is an error that names the key. Nothing
//! here is validated beyond its type; `validated.rs` turns this into [`super::Config`].

use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub egress: RawEgress,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// `[rate_limit_store]`: the fleet's shared windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_store: Option<RawRateLimitStore>,
    /// `[[callers]]`: the applications that share this sidecar, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub callers: Vec<RawCaller>,
}

/// One `[[callers]]` entry: a name, and how the caller proves it (a token from a file, an
/// environment variable or its SHA-256 digest; or, on a Unix socket, its uid/gid).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCaller {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// Hex SHA-256 digest of the token: the token itself need not be on this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unix_uids: Vec<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unix_gids: Vec<u32>,
    /// Present only so that an inline token is refused with a clear message.
    #[serde(default, skip_serializing)]
    pub token: Option<serde::de::IgnoredAny>,
}

/// `require_caller`: `"auto"` (required once any `[[callers]]` exists), `true` or `false`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum RawRequireCaller {
    #[default]
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "true")]
    Yes,
    #[serde(rename = "false")]
    No,
}

impl<'de> Deserialize<'de> for RawRequireCaller {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Bool(bool),
            Text(String),
        }
        match Either::deserialize(d)? {
            Either::Bool(true) => Ok(Self::Yes),
            Either::Bool(false) => Ok(Self::No),
            Either::Text(t) => match t.as_str() {
                "auto" => Ok(Self::Auto),
                "true" => Ok(Self::Yes),
                "false" => Ok(Self::No),
                other => Err(serde::de::Error::custom(format!(
                    "`{other}` is not \"auto\", true or false"
                ))),
            },
        }
    }
}

/// `[egress]`: the way out to DigiCert, directly or through a corporate proxy.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawEgress {
    /// `"env"` (default: `HTTPS_PROXY`/`ALL_PROXY`/`NO_PROXY`), `"none"`, or a proxy URL
    /// (`http://proxy.corp:3128`, `https://proxy.corp:3129`) without a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// Host suffixes, IP addresses and CIDR ranges reached directly, added to `NO_PROXY`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_proxy: Vec<String>,
    /// A file holding `user:password` for `Proxy-Authorization: Basic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_auth_file: Option<String>,
    /// An environment variable holding `user:password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_auth_env: Option<String>,
    /// Trust roots (PEM) for an `https://` proxy itself, besides the built-in ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_ca_file: Option<String>,
}

/// `[server]`: listeners, limits and timeouts shared by every route.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    /// `host:port`, `unix:/path/to/socket` or `systemd:NAME` (a socket systemd passed).
    pub listen: String,
    /// A TCP listen address off loopback is refused unless this is true.
    pub allow_non_loopback: bool,
    /// `host:port` of the admin listener, or `"off"`.
    pub admin: String,
    /// `POST /quitquitquit` on the admin listener, from a loopback peer, starts a graceful
    /// exit (for Jobs whose sidecar must end with the main container).
    pub admin_shutdown: bool,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub body_idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    pub max_header_bytes: ByteSize,
    pub max_request_body: ByteSize,
    pub max_connections: usize,
    /// Threads serving requests. 1 (the default) runs everything on one thread.
    pub worker_threads: usize,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Octal file mode of a Unix listening socket, e.g. `"0660"`.
    pub unix_socket_mode: String,
    /// Whether every request must name its caller (see `[[callers]]`).
    pub require_caller: RawRequireCaller,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            allow_non_loopback: false,
            admin: "127.0.0.1:9901".into(),
            admin_shutdown: false,
            request_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_header_bytes: ByteSize::kib(64),
            max_request_body: ByteSize::mib(10),
            max_connections: 1024,
            worker_threads: 1,
            shutdown_grace: Duration::from_secs(25),
            unix_socket_mode: "0660".into(),
            require_caller: RawRequireCaller::Auto,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    /// `"json"` or `"text"`.
    pub format: String,
    /// A tracing filter: `"info"`, `"debug"`, `"digicert_sidecar=trace"`…
    pub level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: "json".into(),
            level: "info".into(),
        }
    }
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: String,
    #[serde(default = "default_prefix")]
    pub path_prefix: String,
    #[serde(default)]
    pub strip_prefix: bool,
    /// A listener of this route's own (`host:port` or `unix:/path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    pub upstream: String,
    /// Extra trust roots (PEM) for the upstream, besides the bundled web PKI roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// This route's own `[egress] proxy`: `"env"`, `"none"` or a proxy URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_proxy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<RawApiKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<RawClientCert>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<RawPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RawRateLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<RawProbe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RawRetry>,
}

fn default_prefix() -> String {
    "/".into()
}

/// `[routes.api_key]`: where the header credential comes from. Never the value itself.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKey {
    pub header: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Present only so that an inline secret is refused with a clear message.
    #[serde(default, skip_serializing)]
    pub value: Option<serde::de::IgnoredAny>,
}

/// `[routes.client_cert]`: PKCS#12 + password, or PEM certificate + key.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientCert {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkcs12_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// Present only so that an inline password is refused with a clear message.
    #[serde(default, skip_serializing)]
    pub password: Option<serde::de::IgnoredAny>,
}

/// `[routes.policy]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unix_peer_uids: Option<Vec<u32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unix_peer_gids: Option<Vec<u32>>,
    /// Only these named callers may use the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callers: Option<Vec<String>>,
    /// Extra allow rules for one caller, on top of `allow`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub caller_allow: std::collections::BTreeMap<String, Vec<String>>,
}

/// `[routes.rate_limit]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    #[serde(default)]
    pub windows: Vec<RawWindow>,
    #[serde(default, with = "humantime_serde::option")]
    pub max_wait: Option<Duration>,
    /// At most this many requests of the route at DigiCert at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<usize>,
    /// The name of the route's windows in the fleet store; default: derived from a SHA-256
    /// of the credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<String>,
    /// The most of each window that one caller may take (0 < x <= 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_share: Option<f64>,
}

/// One rate window: `{ requests = 100, per = "5s" }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    pub requests: u32,
    #[serde(with = "humantime_serde")]
    pub per: Duration,
}

/// `[routes.probe]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    pub path: String,
    #[serde(default = "default_probe_interval", with = "humantime_serde")]
    pub interval: Duration,
}

fn default_probe_interval() -> Duration {
    Duration::from_secs(300)
}

/// `[routes.retry]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub attempts: u32,
}

/// `[rate_limit_store]`: where a fleet of sidecars counts DigiCert's windows together.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimitStore {
    /// `redis://host:port/db` or `rediss://host:port/db`; no password in it.
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// Trust roots (PEM) for a `rediss://` store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// A store call slower than this counts as an error.
    #[serde(default = "default_store_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// `"local"` (default), `"open"` or `"closed"`.
    #[serde(default = "default_on_error")]
    pub on_error: String,
    /// How many sidecars share the key; each keeps 1/fleet_size while the store is down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_size: Option<u32>,
    /// Present only so that an inline password is refused with a clear message.
    #[serde(default, skip_serializing)]
    pub password: Option<serde::de::IgnoredAny>,
}

fn default_key_prefix() -> String {
    "digicert-sidecar".into()
}

fn default_store_timeout() -> Duration {
    Duration::from_millis(50)
}

fn default_on_error() -> String {
    "local".into()
}
