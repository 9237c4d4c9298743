//! Configuration: where it is read from ([`load`]), its raw serde shape ([`raw`]), the
//! zero-config environment form ([`env`]) and the validated form every other module uses.
//!
//! The validated config says *where* secrets come from (a file, an environment variable),
//! never what they are: secrets are read by `credential` into `secrecy` types.

mod callers;
mod egress;
pub mod env;
pub mod log_filter;
mod paths;
pub mod raw;
mod route;
mod secrets;
mod server;
mod store;
mod validated;

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};

pub use callers::{ANONYMOUS, Caller, Callers, TokenSource};
pub use egress::{
    Egress, EgressPath, ProxyAuth, ProxyRoute, ProxySetting, intercept as egress_intercept,
};
pub use route::{
    DEFAULT_MAX_IN_FLIGHT, Policy, Probe, RateLimit, RateWindow, Retry, Route, Upstream,
    certcentral_windows,
};
pub use secrets::{ApiKeySource, ClientCertSource, SecretSource};
pub use server::{ListenAddr, Log, LogFormat, MAX_WORKER_THREADS, Server};
pub use store::{OnError, RateLimitStore, valid_budget};
pub use validated::Config;

/// The environment variable naming the configuration file when `--config` is not given.
pub const CONFIG_ENV: &str = "DIGICERT_SIDECAR_CONFIG";
/// Prefix of the environment variables that override keys of the file.
pub const ENV_PREFIX: &str = "DIGICERT_SIDECAR_";

/// A configuration that cannot be used. Each variant names the key (and file) at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or parsed, or a key is unknown or of the wrong type.
    #[error("{0}")]
    Parse(String),
    /// A key has a value that cannot work; the message says which and how to fix it.
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
    /// Neither a file nor the zero-config environment variables were given.
    #[error(
        "no configuration: pass --config FILE, set {CONFIG_ENV}, or set DIGICERT_DEVKEY[_FILE], \
         DIGICERT_API_KEY[_FILE] or DIGICERT_CLIENT_CERT_P12 for a one-route setup"
    )]
    Missing,
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Where the configuration came from, for messages and for `check`.
#[derive(Debug, Clone)]
pub enum Origin {
    File(PathBuf),
    Environment,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::Environment => f.write_str("environment (zero-config)"),
        }
    }
}

/// Resolve which configuration to use: `--config`, then `DIGICERT_SIDECAR_CONFIG`, then
/// the zero-config environment variables.
pub fn load(cli_path: Option<&Path>) -> Result<(Config, Origin), ConfigError> {
    let path = cli_path
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os(CONFIG_ENV).map(PathBuf::from));
    match path {
        Some(path) => Ok((load_file(&path)?, Origin::File(path))),
        None => {
            let raw = env::from_env(&|k| std::env::var(k).ok())?.ok_or(ConfigError::Missing)?;
            Ok((
                from_figment(Figment::from(Serialized::defaults(raw)))?,
                Origin::Environment,
            ))
        }
    }
}

/// Load a TOML file, with `DIGICERT_SIDECAR_*` overrides, and validate it.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    if !path.is_file() {
        return Err(ConfigError::Parse(format!(
            "configuration file {} does not exist or is not a file",
            path.display()
        )));
    }
    from_figment(Figment::from(Toml::file_exact(path)))
}

/// Parse a TOML string (tests, fuzzing) with no environment overrides.
pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
    let raw: raw::RawConfig = Figment::from(Toml::string(text))
        .extract()
        .map_err(|e| ConfigError::Parse(describe_figment_error(e)))?;
    Config::try_from(raw)
}

fn from_figment(base: Figment) -> Result<Config, ConfigError> {
    // Only nested keys (`SECTION__KEY`): DIGICERT_SIDECAR_CONFIG names the file, and
    // Kubernetes adds DIGICERT_SIDECAR_PORT & co. for a Service named digicert-sidecar.
    let env = Env::prefixed(ENV_PREFIX)
        .split("__")
        .filter(|key| key.as_str().contains('.'));
    let raw: raw::RawConfig = base
        .merge(env)
        .extract()
        .map_err(|e| ConfigError::Parse(describe_figment_error(e)))?;
    Config::try_from(raw)
}

/// Figment errors can be several; give one line each, naming the key and its source.
fn describe_figment_error(err: figment::Error) -> String {
    err.into_iter()
        .map(|e| {
            let mut line = e.kind.to_string();
            if !e.path.is_empty() {
                line = format!("{line} (key `{}`)", e.path.join("."));
            }
            if let Some(m) = &e.metadata {
                line = match &m.source {
                    // The path as given, not relative to the working directory.
                    Some(figment::Source::File(path)) => format!("{line} in {}", path.display()),
                    Some(src) => format!("{line} in {src}"),
                    None => format!("{line} in {}", m.name),
                };
            }
            line
        })
        .collect::<Vec<_>>()
        .join("; ")
}
