//! `[rate_limit_store]`, checked: the shared store (Redis) in which a fleet of sidecars that
//! use one key count DigiCert's windows together, and what to do when it does not answer.

use std::path::PathBuf;
use std::time::Duration;

use super::ConfigError;
use super::paths::file_path;
use super::raw::RawRateLimitStore;
use super::secrets::{SecretSource, secret_source};

/// `[rate_limit_store]`, checked. Holds where the password comes from, never the password.
#[derive(Debug, Clone)]
pub struct RateLimitStore {
    /// `redis://host:port/db` or `rediss://…`, with no password in it (so it may be shown).
    pub url: String,
    pub password: Option<SecretSource>,
    /// Trust roots for a `rediss://` store instead of the built-in web PKI roots.
    pub ca_file: Option<PathBuf>,
    pub key_prefix: String,
    /// A store call slower than this counts as an error.
    pub timeout: Duration,
    pub on_error: OnError,
}

impl RateLimitStore {
    /// Whether the store is reached over TLS.
    pub fn tls(&self) -> bool {
        self.url.starts_with("rediss://")
    }
}

/// What a route's windows do while the store is unreachable or slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Keep this sidecar's share of each window: `requests / fleet_size`, rounded down, at
    /// least 1.
    Local { fleet_size: u32 },
    /// Stop limiting (DigiCert's own 429 still passes through).
    Open,
    /// Refuse with 429.
    Closed,
}

impl std::fmt::Display for OnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OnError::Local { fleet_size } => write!(f, "local (1/{fleet_size} of each window)"),
            OnError::Open => f.write_str("open (no limit)"),
            OnError::Closed => f.write_str("closed (429)"),
        }
    }
}

/// A budget name: it goes into a store key, between the braces of a Redis Cluster hash tag.
pub fn valid_budget(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

pub(super) fn store(raw: &RawRateLimitStore) -> Result<RateLimitStore, ConfigError> {
    let key = |k: &str| format!("rate_limit_store.{k}");
    if raw.password.is_some() {
        return Err(ConfigError::invalid(
            key("password"),
            "secret values are not allowed in the configuration; use \
             rate_limit_store.password_file or rate_limit_store.password_env",
        ));
    }
    let url = redis::parse_redis_url(&raw.url)
        .filter(|u| matches!(u.scheme(), "redis" | "rediss"))
        .ok_or_else(|| {
            ConfigError::invalid(
                key("url"),
                "not a store URL like \"redis://redis.example:6379/0\" or \"rediss://…\"",
            )
        })?;
    // The URL is shown by `check` and in log lines, so a password may not hide in it. The
    // message does not repeat the URL, which would print the password.
    if url.password().is_some() {
        return Err(ConfigError::invalid(
            key("url"),
            "a password in the URL is not allowed; put it in a file \
             (rate_limit_store.password_file) or an environment variable \
             (rate_limit_store.password_env)",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::invalid(key("url"), "the URL has no host"));
    }
    let password = match (&raw.password_file, &raw.password_env) {
        (None, None) => None,
        _ => Some(secret_source(
            &key,
            "password_file",
            &raw.password_file,
            "password_env",
            &raw.password_env,
        )?),
    };
    let ca_file = raw
        .ca_file
        .as_ref()
        .map(|f| file_path(&key("ca_file"), f))
        .transpose()?;
    if ca_file.is_some() && url.scheme() != "rediss" {
        return Err(ConfigError::invalid(
            key("ca_file"),
            "trust roots are for a TLS store: use a rediss:// URL",
        ));
    }
    if raw.key_prefix.is_empty()
        || raw.key_prefix.len() > 64
        || raw.key_prefix.contains(['{', '}'])
        || raw
            .key_prefix
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ConfigError::invalid(
            key("key_prefix"),
            "1 to 64 characters, without spaces or braces (braces are the hash tag)",
        ));
    }
    if raw.timeout.is_zero() || raw.timeout > Duration::from_secs(10) {
        return Err(ConfigError::invalid(
            key("timeout"),
            "must be between 1ms and 10s: it bounds every store call on the request path",
        ));
    }
    let on_error = match (raw.on_error.as_str(), raw.fleet_size) {
        ("local", Some(n)) if (1..=10_000).contains(&n) => OnError::Local { fleet_size: n },
        ("local", Some(_)) => {
            return Err(ConfigError::invalid(
                key("fleet_size"),
                "must be between 1 and 10000",
            ));
        }
        ("local", None) => {
            return Err(ConfigError::invalid(
                key("fleet_size"),
                "on_error = \"local\" (the default) needs fleet_size, the number of sidecars \
                 that share the key: each keeps 1/fleet_size of every window while the store \
                 is down",
            ));
        }
        ("open", _) => OnError::Open,
        ("closed", _) => OnError::Closed,
        (other, _) => {
            return Err(ConfigError::invalid(
                key("on_error"),
                format!("`{other}` is not a choice; use \"local\", \"open\" or \"closed\""),
            ));
        }
    };
    Ok(RateLimitStore {
        url: url.to_string(),
        password,
        ca_file,
        key_prefix: raw.key_prefix.clone(),
        timeout: raw.timeout,
        on_error,
    })
}

#[cfg(test)]
mod tests {
    use super::super::from_toml_str;
    use super::*;

    use super::super::validated::tests::BASE;

    fn with(store: &str) -> Result<super::super::Config, String> {
        from_toml_str(&format!("{BASE}[rate_limit_store]\n{store}\n")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_store_with_defaults() {
        let c = with("url = \"redis://127.0.0.1:6379/0\"\nfleet_size = 4").unwrap();
        let s = c.rate_limit_store.unwrap();
        assert_eq!(s.on_error, OnError::Local { fleet_size: 4 });
        assert_eq!(s.timeout, Duration::from_millis(50));
        assert_eq!(s.key_prefix, "digicert-sidecar");
        assert!(!s.tls());
        assert!(s.password.is_none());
        assert!(from_toml_str(BASE).unwrap().rate_limit_store.is_none());
    }

    #[test]
    fn local_needs_fleet_size() {
        let err = with("url = \"redis://r:6379\"").unwrap_err();
        assert!(err.starts_with("rate_limit_store.fleet_size:"), "{err}");
        let c = with("url = \"redis://r:6379\"\non_error = \"open\"").unwrap();
        assert_eq!(c.rate_limit_store.unwrap().on_error, OnError::Open);
        let err = with("url = \"redis://r:6379\"\non_error = \"maybe\"").unwrap_err();
        assert!(err.contains("rate_limit_store.on_error"), "{err}");
    }

    #[test]
    fn a_password_in_the_url_or_inline_is_refused_without_echoing_it() {
        for store in [
            "url = \"redis://:canary-pw@r:6379\"\nfleet_size = 2",
            "url = \"rediss://user:canary-pw@r:6379\"\nfleet_size = 2",
            "url = \"redis://r:6379\"\npassword = \"canary-pw\"\nfleet_size = 2",
        ] {
            let err = with(store).unwrap_err();
            assert!(err.contains("not allowed"), "{err}");
            assert!(!err.contains("canary-pw"), "{err}");
        }
    }

    #[test]
    fn urls_timeouts_and_prefixes_are_checked() {
        for (store, key) in [
            ("url = \"http://r:6379\"\nfleet_size = 2", "url"),
            (
                "url = \"redis://r\"\nfleet_size = 2\ntimeout = \"0s\"",
                "timeout",
            ),
            ("url = \"redis://r\"\nfleet_size = 0", "fleet_size"),
            (
                "url = \"redis://r\"\nfleet_size = 2\nkey_prefix = \"a{b}\"",
                "key_prefix",
            ),
            (
                "url = \"redis://r\"\nfleet_size = 2\nca_file = \"/ca.pem\"",
                "ca_file",
            ),
        ] {
            let err = with(store).unwrap_err();
            assert!(err.contains(&format!("rate_limit_store.{key}")), "{err}");
        }
        let c = with("url = \"rediss://r:6380\"\nfleet_size = 2\nca_file = \"/ca.pem\"\npassword_env = \"P\"").unwrap();
        let s = c.rate_limit_store.unwrap();
        assert!(s.tls());
        assert_eq!(s.password, Some(SecretSource::Env("P".into())));
    }

    #[test]
    fn budgets_are_names() {
        let t = format!("{BASE}[routes.rate_limit]\nbudget = \"cc-prod\"\n");
        let c = from_toml_str(&t).unwrap();
        assert_eq!(c.routes[0].rate_limit.budget.as_deref(), Some("cc-prod"));
        let err = from_toml_str(&t.replace("cc-prod", "a}b"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("rate_limit.budget"), "{err}");
        assert!(valid_budget("key-0123abcd"));
        assert!(!valid_budget(""));
    }
}
