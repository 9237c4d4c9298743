//! Stage two of the configuration: the checked, typed form. `TryFrom<RawConfig>` is the
//! only way in, and its errors name the key and what to do. Each part is checked in its own
//! file: [`super::server`], [`super::route`], [`super::secrets`].

use std::collections::HashSet;

use super::ConfigError;
use super::egress::{Egress, egress};
use super::raw::RawConfig;
use super::route::{Route, route};
use super::server::{ListenAddr, Log, LogFormat, Server, server};
use super::store::{RateLimitStore, store};

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: Server,
    pub log: Log,
    pub egress: Egress,
    pub routes: Vec<Route>,
    /// `[rate_limit_store]`: the fleet's shared windows; `None`: each sidecar counts alone.
    pub rate_limit_store: Option<RateLimitStore>,
    /// `[[callers]]` and `server.require_caller`.
    pub callers: super::Callers,
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
        let egress = egress(&raw.egress)?;
        let mut names = HashSet::new();
        let mut places = HashSet::new();
        let mut routes = Vec::with_capacity(raw.routes.len());
        for (i, r) in raw.routes.iter().enumerate() {
            let route = route(i, r, &server, &egress)?;
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
        let rate_limit_store = raw.rate_limit_store.as_ref().map(store).transpose()?;
        let callers = super::callers::callers(&raw.callers, raw.server.require_caller)?;
        super::callers::check_routes(&callers, &routes, &server.listen)?;
        Ok(Config {
            server,
            log,
            egress,
            routes,
            rate_limit_store,
            callers,
        })
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::from_toml_str;

    /// A minimal valid configuration, for the tests of every config part.
    pub(in crate::config) const BASE: &str = r#"
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
