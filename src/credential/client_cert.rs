//! The client certificate for mTLS to DigiCert ONE's `clientauth.` hosts: a PKCS#12 file and
//! its password, as DigiCert issues it to a service user, or a PEM certificate and key.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use p12_keystore::{KeyStore, Pkcs12ImportPolicy};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use secrecy::ExposeSecret;

use super::{CredentialError, read_bytes, read_secret, read_secret_bytes};
use crate::config::ClientCertSource;

/// A loaded certificate chain and private key, checked to belong together.
#[derive(Clone)]
pub struct ClientCert {
    key: Arc<CertifiedKey>,
    subject: String,
    not_after: SystemTime,
}

impl ClientCert {
    /// Read, decrypt and check the certificate from its source.
    pub fn load(source: &ClientCertSource) -> Result<Self, CredentialError> {
        match source {
            ClientCertSource::Pkcs12 { file, password } => {
                let data = read_secret_bytes(file)?;
                let password = read_secret(password)?;
                Self::from_pkcs12(&data, password.expose_secret(), file)
            }
            ClientCertSource::Pem {
                cert_file,
                key_file,
            } => {
                let pem_err = |path: &Path, reason: String| CredentialError::Pem {
                    path: path.to_path_buf(),
                    reason,
                };
                let cert_pem = read_bytes(cert_file)?;
                let chain = CertificateDer::pem_slice_iter(&cert_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| pem_err(cert_file, format!("not PEM certificates ({e})")))?;
                if chain.is_empty() {
                    return Err(pem_err(cert_file, "holds no CERTIFICATE block".into()));
                }
                let key_pem = read_secret_bytes(key_file)?;
                let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
                    pem_err(
                        key_file,
                        "holds no unencrypted private key (PKCS#8, PKCS#1 or SEC1 PEM)".into(),
                    )
                })?;
                Self::from_parts(chain, key, &cert_file.display().to_string())
            }
        }
    }

    /// Decrypt a PKCS#12 archive and take its private key and certificate chain.
    pub fn from_pkcs12(data: &[u8], password: &str, path: &Path) -> Result<Self, CredentialError> {
        let store = KeyStore::from_pkcs12(data, password, Pkcs12ImportPolicy::Relaxed).map_err(
            |e| match e {
                p12_keystore::error::Error::MacError(_) => CredentialError::Pkcs12Password {
                    path: path.to_path_buf(),
                },
                other => CredentialError::Pkcs12 {
                    path: path.to_path_buf(),
                    reason: other.to_string(),
                },
            },
        )?;
        let (_, chain) = store
            .private_key_chain()
            .ok_or_else(|| CredentialError::Pkcs12 {
                path: path.to_path_buf(),
                reason: "holds no private key with its certificate".into(),
            })?;
        let certs: Vec<CertificateDer<'static>> = chain
            .certs()
            .iter()
            .map(|c| CertificateDer::from(c.as_der().to_vec()))
            .collect();
        if certs.is_empty() {
            return Err(CredentialError::Pkcs12 {
                path: path.to_path_buf(),
                reason: "holds a private key but no certificate for it".into(),
            });
        }
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(chain.key().as_der().to_vec()));
        Self::from_parts(certs, key, &path.display().to_string())
    }

    /// Check that `key` belongs to the first certificate of `chain` and wrap both.
    pub fn from_parts(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        what: &str,
    ) -> Result<Self, CredentialError> {
        let provider = rustls::crypto::ring::default_provider();
        let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => CredentialError::KeyMismatch {
                what: what.to_string(),
            },
            other => CredentialError::Certificate {
                what: what.to_string(),
                reason: format!("unusable private key ({other})"),
            },
        })?;
        let leaf = certified
            .end_entity_cert()
            .map_err(|e| CredentialError::Certificate {
                what: what.to_string(),
                reason: e.to_string(),
            })?;
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| {
            CredentialError::Certificate {
                what: what.to_string(),
                reason: format!("cannot parse the certificate ({e})"),
            }
        })?;
        let not_after_secs = parsed.validity().not_after.timestamp();
        let not_after = if not_after_secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(not_after_secs as u64)
        } else {
            UNIX_EPOCH
        };
        Ok(Self {
            subject: parsed.subject().to_string(),
            not_after,
            key: Arc::new(certified),
        })
    }

    /// The chain and key, for the TLS client.
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        self.key.clone()
    }

    /// The certificate's subject, e.g. `CN=svc-issuer, O=Example`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// When the certificate stops being valid.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Whether the certificate has expired at `now`.
    pub fn expired_at(&self, now: SystemTime) -> bool {
        now > self.not_after
    }

    /// Whether two certificates are the same chain (to tell whether a reload changed it).
    pub fn same_as(&self, other: &ClientCert) -> bool {
        self.key.cert == other.key.cert
    }

    /// `notAfter` as an RFC 3339 date, for humans.
    pub fn not_after_display(&self) -> String {
        humantime::format_rfc3339_seconds(self.not_after).to_string()
    }
}

impl std::fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCert")
            .field("subject", &self.subject)
            .field("not_after", &self.not_after_display())
            .field("key", &"[redacted]")
            .finish()
    }
}
