//! The order of the request path, as a client sees it: a request the door refuses never
//! reaches routing or policy; one the policy refuses never reaches the credential, the rate
//! windows or DigiCert. And request ids: kept, made, echoed.

use crate::support::*;

/// A route on `/services` that allows only reading users, limited to one request a minute.
fn guarded(w: &World) -> String {
    format!(
        "{}{}",
        w.server_toml(),
        w.certcentral_route("cc", "/services").replace(
            NO_RATE_LIMIT,
            "[routes.rate_limit]\nwindows = [{ requests = 1, per = \"1m\" }]\nmax_wait = \"0s\"\n[routes.policy]\nallow = [\"GET /services/v2/user/**\"]\n",
        )
    )
}

#[tokio::test]
async fn the_door_answers_before_router_and_policy() {
    let w = World::new().await;
    let s = Running::start(&guarded(&w)).await;
    // Denied by policy and unroutable alike, but the door speaks first.
    for (path, headers, status, reason) in [
        ("/services/v2/order/%2e%2e/x", &[][..], 400, "bad_request"),
        ("/elsewhere/../x", &[][..], 400, "bad_request"),
        (
            "/services/v2/order",
            &[("origin", "https://evil.example")][..],
            403,
            "browser_denied",
        ),
        (
            "/elsewhere",
            &[("x_dc_devkey", "k")][..],
            400,
            "bad_request",
        ),
    ] {
        let got = get(&s.url(path), headers).await;
        assert_eq!(got.status, status, "{path}: {}", got.text());
        assert_eq!(got.sidecar_error(), Some(reason), "{path}");
    }
    // Then the router, then the policy.
    assert_eq!(
        get(&s.url("/elsewhere"), &[]).await.sidecar_error(),
        Some("no_route")
    );
    assert_eq!(
        get(&s.url("/services/v2/order/1"), &[])
            .await
            .sidecar_error(),
        Some("policy_denied")
    );
    assert!(w.mock.seen().is_empty(), "nothing refused reached DigiCert");
    s.stop().await;
}

#[tokio::test]
async fn a_policy_refusal_never_reaches_credential_windows_or_digicert() {
    let w = World::new().await;
    let s = Running::start(&guarded(&w)).await;
    for _ in 0..5 {
        let got = get(
            &s.url("/services/v2/order/certificate/1"),
            &[("x-dc-devkey", "client")],
        )
        .await;
        assert_eq!(got.sidecar_error(), Some("policy_denied"), "{}", got.text());
    }
    assert!(w.mock.seen().is_empty());
    // The one request the window allows a minute is still there: refused requests did not
    // take it.
    let got = get(&s.url("/services/v2/user/me"), &[]).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(w.mock.seen().len(), 1);
    let got = get(&s.url("/services/v2/user/me"), &[]).await;
    assert_eq!(got.sidecar_error(), Some("rate_limited"));
    s.stop().await;
}

#[tokio::test]
async fn request_ids_are_kept_made_and_echoed() {
    let w = World::new().await;
    let s = Running::certcentral(&w).await;
    let got = get(
        &s.url("/services/v2/user/me"),
        &[("x-request-id", "job-42.a:b")],
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.headers["x-request-id"], "job-42.a:b");
    for sent in [&[][..], &[("x-request-id", "bad id\"")][..]] {
        let got = get(&s.url("/services/v2/user/me"), sent).await;
        let id = got.headers["x-request-id"].to_str().unwrap().to_string();
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    }
    // Refusals carry one too, so a client can quote it.
    let got = get(&s.url("/a/../b"), &[]).await;
    assert_eq!(got.status, 400);
    assert!(got.headers.contains_key("x-request-id"));
    s.stop().await;
}
