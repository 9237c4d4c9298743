//! Credentials: the header key and the client certificate of each route, read from where
//! the configuration says ([`api_key`], [`client_cert`]) and published through a
//! [`store::CredentialStore`] that request handling reads and reloads swap atomically.
//!
//! Secrets live in `secrecy` types, header values are marked sensitive, and every type that
//! holds key material has a hand-written `Debug` that prints none of it.

pub mod api_key;
pub mod client_cert;
pub mod proxy;
pub mod store;
pub mod trust;
pub mod verdict;
pub mod watch;

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::config::SecretSource;

pub use api_key::ApiKey;
pub use client_cert::ClientCert;
pub use store::{CredentialStore, Live};
pub use verdict::Verdict;

/// Why a credential could not be loaded. Messages name the route's file or variable and the
/// problem, never the secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("environment variable {0} is not set")]
    EnvMissing(String),
    #[error("{0} is empty")]
    Empty(String),
    #[error("the key in {0} has characters that cannot go in an HTTP header")]
    NotHeaderSafe(String),
    #[error("{}: wrong PKCS#12 password, or the file is damaged", path.display())]
    Pkcs12Password { path: PathBuf },
    #[error("{}: not a usable PKCS#12 file: {reason}", path.display())]
    Pkcs12 { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    Pem { path: PathBuf, reason: String },
    #[error("{what}: the private key does not belong to the certificate")]
    KeyMismatch { what: String },
    #[error("{what}: {reason}")]
    Certificate { what: String, reason: String },
    #[error("{0}: cannot read the trust roots: {1}")]
    CaFile(String, String),
}

/// Read a secret from its source. A trailing newline (as `echo` and editors leave) is trimmed.
pub fn read_secret(source: &SecretSource) -> Result<SecretString, CredentialError> {
    let text = match source {
        SecretSource::Env(var) => Zeroizing::new(
            std::env::var(var).map_err(|_| CredentialError::EnvMissing(var.clone()))?,
        ),
        SecretSource::File(path) => {
            warn_if_exposed(path);
            Zeroizing::new(read_text(path)?)
        }
    };
    let trimmed = text.trim_end_matches(['\n', '\r']);
    if trimmed.is_empty() {
        return Err(CredentialError::Empty(source.to_string()));
    }
    Ok(SecretString::from(trimmed.to_owned()))
}

/// Read a file holding key material (a PKCS#12 archive, a PEM key): like [`read_bytes`],
/// and warn if every user of the host may read it.
pub fn read_secret_bytes(path: &Path) -> Result<Zeroizing<Vec<u8>>, CredentialError> {
    warn_if_exposed(path);
    read_bytes(path)
}

/// A secret file readable by "other" is readable by every local user: say so.
fn warn_if_exposed(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o004 != 0
    {
        tracing::warn!(
            file = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "a secret file is readable by every user of this host; make it 0400 or 0440"
        );
    }
}

/// Read a whole file into memory that is wiped when dropped.
pub fn read_bytes(path: &Path) -> Result<Zeroizing<Vec<u8>>, CredentialError> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|source| CredentialError::Read {
            path: path.to_path_buf(),
            source,
        })
}

fn read_text(path: &Path) -> Result<String, CredentialError> {
    let bytes = read_bytes(path)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| CredentialError::Pem {
        path: path.to_path_buf(),
        reason: "is not UTF-8 text".into(),
    })
}
