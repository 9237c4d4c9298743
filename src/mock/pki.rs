//! A throw-away certificate authority for the DigiCert mock, the demo and the tests: server
//! certificates for `localhost`, client certificates as DigiCert issues them to service
//! users, and the PKCS#12 files those come in.

use p12_keystore::{
    Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// A certificate authority made at run time.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM: what a client adds to its trust roots.
    pub cert_pem: String,
    /// The CA certificate, DER.
    pub cert_der: Vec<u8>,
}

/// A certificate and its private key.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    /// PKCS#8, PEM.
    pub key_pem: String,
    /// PKCS#8, DER.
    pub key_der: Vec<u8>,
    /// The issuing CA's certificate, DER (for chains and PKCS#12 files).
    pub ca_der: Vec<u8>,
}

impl std::fmt::Debug for Leaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leaf").finish_non_exhaustive()
    }
}

/// Errors making test certificates (they come from rcgen or the PKCS#12 writer).
pub type PkiError = Box<dyn std::error::Error + Send + Sync>;

impl TestCa {
    /// A new CA named `name`, valid from yesterday for ten years.
    pub fn new(name: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "digicert-sidecar test PKI");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(3650);
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A TLS server certificate for `names` (DNS names or IP addresses).
    pub fn server_cert(&self, names: &[&str]) -> Result<Leaf, PkiError> {
        self.server_cert_until(names, None)
    }

    /// [`Self::server_cert`] expiring at `not_after` (default: in a year); a time in the
    /// past makes an expired certificate.
    pub fn server_cert_until(
        &self,
        names: &[&str],
        not_after: Option<OffsetDateTime>,
    ) -> Result<Leaf, PkiError> {
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("server"),
        );
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params, not_after)
    }

    /// A client certificate for a DigiCert ONE service user, expiring at `not_after`
    /// (default: in a year).
    pub fn client_cert(
        &self,
        cn: &str,
        not_after: Option<OffsetDateTime>,
    ) -> Result<Leaf, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Example Service Users");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, not_after)
    }

    fn sign(
        &self,
        mut params: CertificateParams,
        not_after: Option<OffsetDateTime>,
    ) -> Result<Leaf, PkiError> {
        let key = KeyPair::generate()?;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = not_after.unwrap_or(now + Duration::days(365));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
            ca_der: self.cert_der.clone(),
        })
    }
}

impl Leaf {
    /// The certificate, its CA and its key as a password-protected PKCS#12 file, like the
    /// `.p12` DigiCert ONE hands out for a service user. `legacy` uses 3DES (PBES1) as
    /// older tools do; otherwise AES-256 (PBES2).
    pub fn to_pkcs12(&self, password: &str, legacy: bool) -> Result<Vec<u8>, PkiError> {
        let chain = PrivateKeyChain::new(
            b"1".as_slice(),
            PrivateKey::from_der(&self.key_der)?,
            [
                Certificate::from_der(&self.cert_der)?,
                Certificate::from_der(&self.ca_der)?,
            ],
        );
        let mut store = KeyStore::new();
        store.add_entry("service-user", KeyStoreEntry::PrivateKeyChain(chain));
        let mut writer = store.writer(password);
        if legacy {
            writer =
                writer.encryption_algorithm(EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc);
        }
        Ok(writer.write()?)
    }
}
