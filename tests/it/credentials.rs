//! The sidecar attaches the route's credential and nothing the client sent.

use bytes::Bytes;
use digicert_sidecar::mock::MockOptions;

use crate::support::*;

#[tokio::test]
async fn certcentral_key_replaces_every_client_credential_header() {
    let w = World::new().await;
    let s = Running::certcentral(&w).await;
    let got = get(
        &s.url("/_test/echo"),
        &[
            ("X-DC-DEVKEY", "client-key"),
            ("x-dc-devkey", "another"),
            ("X-Api-Key", "client-api-key"),
            ("Authorization", "Bearer client"),
            ("proxy-authorization", "Basic eDp5"),
        ],
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text());
    let echo = got.json();
    let headers = echo["headers"].as_object().unwrap();
    assert_eq!(headers["x-dc-devkey"], serde_json::json!(["[valid]"]));
    for gone in ["x-api-key", "authorization", "proxy-authorization"] {
        assert!(
            !headers.contains_key(gone),
            "{gone} reached the upstream: {echo}"
        );
    }
    // A real CertCentral call works too.
    let me = get(&s.url("/services/v2/user/me"), &[]).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["username"], "demo.user");
    s.stop().await;
}

#[tokio::test]
async fn digicert_one_key_goes_in_x_api_key() {
    let w = World::new().await;
    let s = Running::start(&format!("{}{}", w.server_toml(), w.one_route("one", "/"))).await;
    let got = get(&s.url("/_test/echo"), &[("x-api-key", "nope")]).await;
    let echo = got.json();
    assert_eq!(echo["headers"]["x-api-key"], serde_json::json!(["[valid]"]));
    assert!(echo["headers"].get("x-dc-devkey").is_none());
    let user = get(&s.url("/account/api/v1/user"), &[]).await;
    assert_eq!(user.status, 200);
    assert_eq!(user.json()["authentication"], "api_key");
    s.stop().await;
}

#[tokio::test]
async fn mtls_with_a_pkcs12_file_as_digicert_issues_it() {
    let w = World::new().await;
    let s = Running::start(&format!("{}{}", w.server_toml(), w.mtls_route("mtls", "/"))).await;
    let got = get(&s.url("/_test/echo"), &[("x-api-key", "client-supplied")]).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let echo = got.json();
    assert_eq!(
        echo["client_subject"],
        "CN=demo-service-user, O=Example Service Users"
    );
    assert!(
        echo["headers"].get("x-api-key").is_none(),
        "no key on a pure mTLS route: {echo}"
    );
    s.stop().await;
}

#[tokio::test]
async fn mtls_with_a_legacy_3des_pkcs12_and_with_pem() {
    let w = World::new().await;
    let legacy = w.write(
        "legacy.p12",
        &w.mock.client.to_pkcs12(P12_PASSWORD, true).unwrap(),
    );
    let pem = format!(
        "[[routes]]\nname = \"pem\"\npath_prefix = \"/pem\"\nstrip_prefix = true\nupstream = \"{}\"\nca_file = \"{}\"\n[routes.client_cert]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        w.mock.clientauth_url(),
        w.ca.display(),
        w.cert_pem.display(),
        w.key_pem.display()
    );
    let toml = format!(
        "{}{}{pem}",
        w.server_toml(),
        w.mtls_route("legacy", "/legacy")
            .replace(&w.p12.display().to_string(), &legacy.display().to_string())
            .replace(
                "path_prefix = \"/legacy\"",
                "path_prefix = \"/legacy\"\nstrip_prefix = true"
            ),
    );
    let s = Running::start(&toml).await;
    for prefix in ["/legacy", "/pem"] {
        let got = get(&s.url(&format!("{prefix}/account/api/v1/user")), &[]).await;
        assert_eq!(got.status, 200, "{prefix}: {}", got.text());
        assert_eq!(got.json()["authentication"], "client_certificate");
    }
    s.stop().await;
}

#[tokio::test]
async fn software_trust_manager_gets_key_and_certificate() {
    let w = World::new().await;
    let route = format!(
        "{}[routes.api_key]\nheader = \"x-api-key\"\nfile = \"{}\"\n",
        w.mtls_route("stm", "/signingmanager"),
        w.api_key.display()
    );
    let s = Running::start(&format!("{}{}", w.server_toml(), route)).await;
    let got = get(&s.url("/signingmanager/api/v1/keypairs"), &[]).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json()["items"][0]["alias"], "release-signing");
    s.stop().await;

    // Without the key, DigiCert ONE says 401 invalid_api_key, and that passes through.
    let route = w.mtls_route("stm", "/signingmanager");
    let s = Running::start(&format!("{}{}", w.server_toml(), route)).await;
    let got = get(&s.url("/signingmanager/api/v1/keypairs"), &[]).await;
    assert_eq!(got.status, 401);
    assert_eq!(got.json()["errors"][0]["code"], "invalid_api_key");
    assert_eq!(got.sidecar_error(), None);
    s.stop().await;
}

#[tokio::test]
async fn digicert_answers_pass_through_unchanged() {
    let w = World::with(MockOptions {
        devkey: "the-real-key".into(),
        api_key: API_KEY.into(),
        http1_only: false,
    })
    .await;
    // The sidecar holds a key DigiCert does not accept.
    w.write("devkey", b"an-old-key\n");
    let s = Running::certcentral(&w).await;
    let got = get(&s.url("/services/v2/user/me"), &[]).await;
    assert_eq!(got.status, 403);
    assert_eq!(got.json()["errors"][0]["code"], "access_denied_invalid_key");
    assert_eq!(got.sidecar_error(), None);

    w.write("devkey", b"the-real-key\n");
    let s2 = Running::certcentral(&w).await;
    for (status, code) in [
        (429, "request_limit_exceeded"),
        (503, "service_unavailable"),
    ] {
        let got = send(
            &h1_client(),
            "POST",
            &s2.url(&format!("/_test/status/{status}?retry_after=7")),
            &[],
            Bytes::from_static(b"{}"),
        )
        .await;
        assert_eq!(got.status, status);
        assert_eq!(got.json()["errors"][0]["code"], code);
        assert_eq!(got.headers["retry-after"], "7");
        assert_eq!(got.sidecar_error(), None);
    }
    s.stop().await;
    s2.stop().await;
}
