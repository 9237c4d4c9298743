//! Where a route's secrets come from: a file or an environment variable, never the value.

use std::path::PathBuf;

use http::HeaderName;

use super::ConfigError;
use super::paths::file_path;
use super::raw::{RawApiKey, RawClientCert};

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

pub(super) fn secret_source(
    key: &dyn Fn(&str) -> String,
    file_key: &str,
    file: &Option<String>,
    env_key: &str,
    env: &Option<String>,
) -> Result<SecretSource, ConfigError> {
    match (file, env) {
        (Some(f), None) if !f.is_empty() => Ok(SecretSource::File(file_path(&key(file_key), f)?)),
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

pub(super) fn api_key(
    key: &dyn Fn(&str) -> String,
    a: &RawApiKey,
) -> Result<ApiKeySource, ConfigError> {
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

pub(super) fn client_cert(
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
            file: file_path(&key("client_cert.pkcs12_file"), p12)?,
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
                cert_file: file_path(&key("client_cert.cert_file"), cert)?,
                key_file: file_path(&key("client_cert.key_file"), k)?,
            })
        }
        _ => Err(ConfigError::invalid(
            key("client_cert"),
            "set pkcs12_file (+ password_file or password_env), or cert_file + key_file (PEM)",
        )),
    }
}
