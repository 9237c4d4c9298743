//! The name of a route's windows in the fleet store: `budget` as configured, or one derived
//! from a SHA-256 of the credential, so that every sidecar holding the same key shares its
//! windows without being told, and the store never sees the key.

use crate::credential::Live;

/// Domain separation: these digests name budgets and nothing else.
const CONTEXT: &[u8] = b"digicert-sidecar budget v1\0";

/// `configured`, or `key-<hex>` from the credential: the API key if the route has one (it
/// is what DigiCert counts), else the client certificate (public, DER).
pub fn budget_name(configured: Option<&str>, live: &Live) -> String {
    if let Some(name) = configured {
        return name.to_string();
    }
    let digest = match (&live.api_key, &live.client_cert) {
        (Some(key), _) => key.digest(CONTEXT),
        (None, Some(cert)) => {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            ctx.update(CONTEXT);
            ctx.update(b"client certificate\0");
            if let Some(der) = cert.certified_key().cert.first() {
                ctx.update(der.as_ref());
            }
            ctx.finish()
        }
        (None, None) => ring::digest::digest(&ring::digest::SHA256, CONTEXT),
    };
    let hex: String = digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("key-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::ApiKey;
    use http::HeaderName;
    use secrecy::SecretString;

    fn key(k: &str) -> ApiKey {
        ApiKey::new(
            HeaderName::from_static("x-dc-devkey"),
            SecretString::from(k.to_string()),
            "t",
        )
        .unwrap()
    }

    #[test]
    fn the_default_names_the_key_without_showing_it() {
        let a = key("canary-key-0123456789").digest(CONTEXT);
        let b = key("canary-key-0123456789").digest(CONTEXT);
        let c = key("another-key-0123456789").digest(CONTEXT);
        assert_eq!(a.as_ref(), b.as_ref());
        assert_ne!(a.as_ref(), c.as_ref());
        assert!(crate::config::valid_budget(
            "key-0123456789abcdef0123456789abcdef"
        ));
    }
}
