//! Facts about DigiCert's APIs that the rest of the sidecar acts on, kept in one place: the
//! hosts, the published rate windows, and how DigiCert says that it rejects a credential.
//! Nothing here depends on the rest of the crate.

use std::time::Duration;

/// Hosts of the CertCentral Services API, which get DigiCert's published rate windows.
pub const CERTCENTRAL_HOSTS: &[&str] = &["www.digicert.com", "certcentral.digicert.eu"];

/// DigiCert's published CertCentral limits, `(requests, per)`: 1000 per 3 minutes and 100
/// per 5 seconds, rolling.
pub const CERTCENTRAL_WINDOWS: [(u32, Duration); 2] = [
    (1000, Duration::from_secs(180)),
    (100, Duration::from_secs(5)),
];

/// Codes with which DigiCert says the credential itself is bad (not merely lacking a role).
const REJECTION_CODES: [&str; 2] = ["access_denied_invalid_key", "invalid_api_key"];

/// Error answers up to this size are read to see whether DigiCert rejected the credential.
pub const REJECTION_READ_LIMIT: u64 = 64 * 1024;

/// Whether a 401/403 body is DigiCert rejecting the credential, in any of its documented
/// shapes: `{"errors":[{"code":"access_denied|access_denied_invalid_key",…}]}` (CertCentral),
/// `{"errors":[{"code":"invalid_api_key"}]}` and `{"error":{"code":"invalid_api_key",…}}`
/// (DigiCert ONE).
pub fn is_rejection(body: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    let rejecting = |e: &serde_json::Value| {
        e["code"]
            .as_str()
            .is_some_and(|code| code.split('|').any(|c| REJECTION_CODES.contains(&c)))
    };
    value["errors"]
        .as_array()
        .is_some_and(|errors| errors.iter().any(rejecting))
        || rejecting(&value["error"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_are_recognised_by_code_in_every_shape() {
        assert!(is_rejection(
            br#"{"errors":[{"code":"access_denied_invalid_key","message":"x"}]}"#
        ));
        assert!(is_rejection(br#"{"errors":[{"code":"invalid_api_key"}]}"#));
        assert!(is_rejection(
            br#"{"errors":[{"code":"access_denied|access_denied_invalid_key"}]}"#
        ));
        assert!(is_rejection(
            br#"{"error":{"code":"invalid_api_key","message":"Invalid API key"}}"#
        ));
        assert!(!is_rejection(br#"{"errors":[{"code":"access_denied"}]}"#));
        assert!(!is_rejection(br#"{"error":{"code":"forbidden"}}"#));
        assert!(!is_rejection(br#"{"error":"invalid_api_key"}"#));
        assert!(!is_rejection(b"<html>forbidden</html>"));
    }
}
