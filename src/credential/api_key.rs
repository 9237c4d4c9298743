//! The header credential: `X-DC-DEVKEY` for CertCentral, `x-api-key` for DigiCert ONE.

use http::{HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

use super::{CredentialError, read_secret};
use crate::config::ApiKeySource;

/// A loaded key, ready to attach. The value is a sensitive `HeaderValue` (HPACK never
/// indexes it) built once per load, not per request.
#[derive(Clone)]
pub struct ApiKey {
    header: HeaderName,
    value: HeaderValue,
    secret: SecretString,
}

impl ApiKey {
    /// Read and check the key from its source.
    pub fn load(source: &ApiKeySource) -> Result<Self, CredentialError> {
        let secret = read_secret(&source.source)?;
        Self::new(source.header.clone(), secret, &source.source.to_string())
    }

    /// Wrap a key already read. `origin` names where it came from, for errors.
    pub fn new(
        header: HeaderName,
        secret: SecretString,
        origin: &str,
    ) -> Result<Self, CredentialError> {
        let text = secret.expose_secret();
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(CredentialError::NotHeaderSafe(origin.to_string()));
        }
        let mut value = HeaderValue::from_str(text)
            .map_err(|_| CredentialError::NotHeaderSafe(origin.to_string()))?;
        value.set_sensitive(true);
        Ok(Self {
            header,
            value,
            secret,
        })
    }

    /// The header this key goes into.
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// The value to attach, marked sensitive.
    pub fn header_value(&self) -> &HeaderValue {
        &self.value
    }

    /// Whether `bytes` contains the key (to redact a response header echoing it).
    pub fn appears_in(&self, bytes: &[u8]) -> bool {
        let key = self.secret.expose_secret().as_bytes();
        let Some((&first, rest)) = key.split_first() else {
            return false;
        };
        // Only where the first byte matches is the rest compared: every answer's headers
        // go through here, and most values do not hold the key's first byte often.
        let last_start = match bytes.len().checked_sub(key.len()) {
            Some(n) => n,
            None => return false,
        };
        bytes[..=last_start]
            .iter()
            .enumerate()
            .any(|(i, &b)| b == first && bytes[i + 1..i + key.len()] == *rest)
    }

    /// SHA-256 of `context`, the header name and the key: names the key (the fleet store's
    /// default budget) without revealing it.
    pub fn digest(&self, context: &[u8]) -> ring::digest::Digest {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(context);
        ctx.update(self.header.as_str().as_bytes());
        ctx.update(b"\0");
        ctx.update(self.secret.expose_secret().as_bytes());
        ctx.finish()
    }

    /// Whether two keys are the same secret (to tell whether a reload changed anything).
    pub fn same_secret(&self, other: &ApiKey) -> bool {
        self.header == other.header && self.secret.expose_secret() == other.secret.expose_secret()
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("header", &self.header)
            .field("value", &"[redacted]")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_key() {
        let k = ApiKey::new(
            HeaderName::from_static("x-api-key"),
            SecretString::from("supersecret-canary"),
            "test",
        )
        .unwrap();
        let shown = format!("{k:?} {:?} {:#?}", k.header_value(), k);
        assert!(!shown.contains("supersecret"), "{shown}");
        assert!(k.header_value().is_sensitive());
    }

    #[test]
    fn keys_with_spaces_or_controls_are_refused_without_echoing_them() {
        let err = ApiKey::new(
            HeaderName::from_static("x-api-key"),
            SecretString::from("abc def"),
            "file /k",
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains("abc"), "{err}");
    }

    #[test]
    fn echo_detection() {
        let k = ApiKey::new(
            HeaderName::from_static("x-api-key"),
            SecretString::from("K123"),
            "t",
        )
        .unwrap();
        assert!(k.appears_in(b"your key K123 is bad"));
        assert!(!k.appears_in(b"K12"));
        for (value, found) in [
            (&b"K123"[..], true),
            (b"xK123", true),
            (b"K12K123", true),
            (b"KK12 K123", true),
            (b"K12 K1234", true),
            (b"", false),
            (b"K1 23", false),
            (b"k123", false),
            (b"KKKK", false),
        ] {
            assert_eq!(
                k.appears_in(value),
                found,
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
    }
}
