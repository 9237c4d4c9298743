//! DigiCert's answers as they really come: a rejected credential in each documented shape
//! (`errors` array, CertCentral's piped code, DigiCert ONE's `error` object), with a
//! `Content-Length` or chunked (HTTP/1.1) / unsized (h2), is recognised by the real sidecar:
//! counted, reloaded and retried, and seen by the probe.

use std::time::Duration;

use digicert_sidecar::mock::{MockOptions, Rejection, RejectionShape};

use crate::support::*;

const SHAPES: [(RejectionShape, bool); 6] = [
    (RejectionShape::ErrorsArray, false),
    (RejectionShape::ErrorsArray, true),
    (RejectionShape::PipedCode, false),
    (RejectionShape::PipedCode, true),
    (RejectionShape::ErrorObject, false),
    (RejectionShape::ErrorObject, true),
];

async fn every_shape_is_counted_as_a_rejection(http1_only: bool) {
    let w = World::with(MockOptions {
        devkey: DEVKEY.into(),
        api_key: API_KEY.into(),
        http1_only,
    })
    .await;
    let toml = with_admin(&format!(
        "{}{}{}",
        w.certcentral_toml(),
        w.one_route("one", "/account"),
        NO_RATE_LIMIT
    ));
    let s = Running::start(&toml).await;
    assert_eq!(get(&s.url("/services/v2/user/me"), &[]).await.status, 200);
    assert_eq!(get(&s.url("/account/api/v1/user"), &[]).await.status, 200);
    w.mock.set_devkeys(&["revoked"]);
    w.mock.set_api_keys(&["revoked"]);
    let mut expected = 0.0;
    for (shape, chunked) in SHAPES {
        w.mock.set_rejection(false, Rejection { shape, chunked });
        expected += 1.0;
        for (route, path, status) in [
            ("cc", "/services/v2/user/me", 403),
            ("one", "/account/api/v1/user", 401),
        ] {
            let got = get(&s.url(path), &[]).await;
            assert_eq!(
                got.status,
                status,
                "{shape:?} chunked={chunked}: {}",
                got.text()
            );
            assert_eq!(
                got.sidecar_error(),
                None,
                "DigiCert's answer passes through"
            );
            let counted = s
                .metric(&format!(
                    "digicert_sidecar_credential_rejected_total{{route=\"{route}\"}}"
                ))
                .await;
            // CertCentral has no `error` object shape: ErrorObject words it as ErrorsArray.
            assert_eq!(
                counted, expected,
                "route {route}, {shape:?} chunked={chunked} (http1_only={http1_only})"
            );
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn every_rejection_shape_and_framing_is_recognised_over_h2() {
    every_shape_is_counted_as_a_rejection(false).await;
}

#[tokio::test]
async fn every_rejection_shape_and_framing_is_recognised_over_http1_chunked() {
    every_shape_is_counted_as_a_rejection(true).await;
}

#[tokio::test]
async fn a_chunked_error_object_rejection_reloads_retries_and_turns_readiness() {
    let w = World::with(MockOptions {
        devkey: DEVKEY.into(),
        api_key: API_KEY.into(),
        http1_only: true,
    })
    .await;
    w.mock.set_rejection(
        false,
        Rejection {
            shape: RejectionShape::ErrorObject,
            chunked: true,
        },
    );
    let (hidden, link) = w.unwatched_key(API_KEY);
    let route = w.one_route("one", "/").replace(
        &w.api_key.display().to_string(),
        &link.display().to_string(),
    );
    let probe = "[routes.probe]\npath = \"/account/api/v1/user\"\ninterval = \"1s\"\n";
    let s = Running::start(&with_admin(&format!("{}{route}{probe}", w.server_toml()))).await;
    assert_eq!(get(&s.url("/account/api/v1/user"), &[]).await.status, 200);

    std::fs::write(&hidden, "replacement-key\n").unwrap();
    w.mock.set_api_keys(&["replacement-key"]);
    let got = get(&s.url("/account/api/v1/user"), &[]).await;
    assert_eq!(
        got.status,
        200,
        "retried with the reloaded key: {}",
        got.text()
    );
    assert_eq!(
        s.metric("digicert_sidecar_credential_reloads_total{route=\"one\",result=\"success\"}")
            .await,
        1.0
    );

    w.mock.set_api_keys(&["someone-else"]);
    assert!(
        eventually(Duration::from_secs(5), || async {
            s.admin("/readyz").await.status == 503
        })
        .await,
        "the probe sees the chunked rejection"
    );
    s.stop().await;
}
