//! Zero-config: a one-route configuration built from `DIGICERT_*` environment variables,
//! for `docker run -e DIGICERT_DEVKEY_FILE=...` and other setups without a file.
//!
//! - `DIGICERT_DEVKEY` / `DIGICERT_DEVKEY_FILE`: a CertCentral route (`X-DC-DEVKEY`).
//! - `DIGICERT_API_KEY` / `DIGICERT_API_KEY_FILE`: a DigiCert ONE route (`x-api-key`).
//! - `DIGICERT_CLIENT_CERT_P12` + `DIGICERT_CLIENT_CERT_PASSWORD[_FILE]`: the DigiCert ONE
//!   route goes over mTLS to the `clientauth.` host (with `x-api-key` too if one is set,
//!   as Software Trust Manager wants).
//! - `DIGICERT_UPSTREAM` picks the host (another region: `https://certcentral.digicert.eu`,
//!   `https://one.ch.digicert.com`, `https://clientauth.one.nl.digicert.com`, …);
//!   `DIGICERT_CA_FILE` adds trust roots.

use super::ConfigError;
use super::raw::{RawApiKey, RawClientCert, RawConfig, RawRoute};

/// Where a secret is: `(Some(file), None)` or `(None, Some(variable))`.
type FileOrEnv = (Option<String>, Option<String>);

/// Build the zero-config raw configuration, or `None` if no credential variable is set.
/// `get` reads a variable (a parameter so tests need not touch the process environment).
pub fn from_env(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<RawConfig>, ConfigError> {
    let var = |k: &str| get(k).filter(|v| !v.is_empty());
    let key_source = |value_var: &str, file_var: &str| -> Result<Option<FileOrEnv>, ConfigError> {
        match (var(value_var), var(file_var)) {
            (Some(_), Some(_)) => Err(ConfigError::invalid(
                value_var,
                format!("set {value_var} or {file_var}, not both"),
            )),
            (Some(_), None) => Ok(Some((None, Some(value_var.to_string())))),
            (None, Some(file)) => Ok(Some((Some(file), None))),
            (None, None) => Ok(None),
        }
    };
    let devkey = key_source("DIGICERT_DEVKEY", "DIGICERT_DEVKEY_FILE")?;
    let api_key = key_source("DIGICERT_API_KEY", "DIGICERT_API_KEY_FILE")?;
    let p12 = var("DIGICERT_CLIENT_CERT_P12");
    let upstream = var("DIGICERT_UPSTREAM");
    let ca_file = var("DIGICERT_CA_FILE");

    let route = match (devkey, api_key, p12) {
        (None, None, None) => return Ok(None),
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(ConfigError::invalid(
                "DIGICERT_DEVKEY",
                "zero-config makes one route: set the CertCentral key or the DigiCert ONE \
                 credential, not both (use a configuration file for several routes)",
            ));
        }
        (Some((file, env)), None, None) => RawRoute {
            name: "certcentral".into(),
            path_prefix: "/".into(),
            upstream: upstream.unwrap_or_else(|| "https://www.digicert.com".into()),
            api_key: Some(RawApiKey {
                header: "X-DC-DEVKEY".into(),
                file,
                env,
                value: None,
            }),
            ca_file,
            ..Default::default()
        },
        (None, key, p12) => {
            let client_cert = p12
                .map(|file| {
                    let (password_file, password_env) = match key_source(
                        "DIGICERT_CLIENT_CERT_PASSWORD",
                        "DIGICERT_CLIENT_CERT_PASSWORD_FILE",
                    )? {
                        Some(pair) => pair,
                        None => {
                            return Err(ConfigError::invalid(
                                "DIGICERT_CLIENT_CERT_PASSWORD",
                                "DIGICERT_CLIENT_CERT_P12 needs DIGICERT_CLIENT_CERT_PASSWORD \
                                 or DIGICERT_CLIENT_CERT_PASSWORD_FILE",
                            ));
                        }
                    };
                    Ok(RawClientCert {
                        pkcs12_file: Some(file),
                        password_file,
                        password_env,
                        ..Default::default()
                    })
                })
                .transpose()?;
            let default_host = if client_cert.is_some() {
                "https://clientauth.one.digicert.com"
            } else {
                "https://one.digicert.com"
            };
            RawRoute {
                name: "digicert-one".into(),
                path_prefix: "/".into(),
                upstream: upstream.unwrap_or_else(|| default_host.into()),
                api_key: key.map(|(file, env)| RawApiKey {
                    header: "x-api-key".into(),
                    file,
                    env,
                    value: None,
                }),
                client_cert,
                ca_file,
                ..Default::default()
            }
        }
    };
    Ok(Some(RawConfig {
        routes: vec![route],
        ..Default::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<Option<RawConfig>, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        from_env(&move |k| map.get(k).cloned())
    }

    #[test]
    fn nothing_set_means_no_config() {
        assert!(env(&[]).unwrap().is_none());
    }

    #[test]
    fn devkey_gives_a_certcentral_route_reading_the_variable() {
        let raw = env(&[("DIGICERT_DEVKEY", "k")]).unwrap().unwrap();
        let r = &raw.routes[0];
        assert_eq!(r.upstream, "https://www.digicert.com");
        let k = r.api_key.as_ref().unwrap();
        assert_eq!(k.header, "X-DC-DEVKEY");
        assert_eq!(k.env.as_deref(), Some("DIGICERT_DEVKEY"));
    }

    #[test]
    fn p12_goes_to_clientauth_and_needs_a_password() {
        assert!(env(&[("DIGICERT_CLIENT_CERT_P12", "/a.p12")]).is_err());
        let raw = env(&[
            ("DIGICERT_CLIENT_CERT_P12", "/a.p12"),
            ("DIGICERT_CLIENT_CERT_PASSWORD_FILE", "/pw"),
            ("DIGICERT_API_KEY_FILE", "/key"),
        ])
        .unwrap()
        .unwrap();
        let r = &raw.routes[0];
        assert_eq!(r.upstream, "https://clientauth.one.digicert.com");
        assert!(r.api_key.is_some() && r.client_cert.is_some());
    }

    #[test]
    fn two_products_at_once_are_refused() {
        assert!(env(&[("DIGICERT_DEVKEY", "a"), ("DIGICERT_API_KEY", "b")]).is_err());
    }
}
