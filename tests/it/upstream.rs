//! The way out: Host, path and query, routing by prefix and listener, pooling and ALPN.

use digicert_sidecar::mock::MockOptions;

use crate::support::*;

#[tokio::test]
async fn host_path_and_query_reach_the_upstream() {
    let w = World::new().await;
    let s = Running::certcentral(&w).await;
    let got = get(
        &s.url("/_test/echo?limit=5&filters%5Bstatus%5D=issued"),
        &[("host", "localhost")],
    )
    .await;
    let echo = got.json();
    assert_eq!(
        echo["path"],
        "/_test/echo?limit=5&filters%5Bstatus%5D=issued"
    );
    assert_eq!(echo["host"], format!("localhost:{}", w.mock.addr.port()));
    assert!(echo["headers"]["x-request-id"][0].as_str().unwrap().len() >= 16);
    s.stop().await;
}

#[tokio::test]
async fn a_client_request_id_is_kept() {
    let w = World::new().await;
    let s = Running::certcentral(&w).await;
    let got = get(&s.url("/_test/echo"), &[("x-request-id", "abc-123")]).await;
    assert_eq!(
        got.json()["headers"]["x-request-id"],
        serde_json::json!(["abc-123"])
    );
    s.stop().await;
}

#[tokio::test]
async fn longest_prefix_wins_and_strip_prefix_strips() {
    let w = World::new().await;
    let toml = format!(
        "{}{}{}",
        w.certcentral_toml(),
        w.one_route("one", "/one").replace(
            "path_prefix = \"/one\"",
            "path_prefix = \"/one\"\nstrip_prefix = true"
        ),
        w.mtls_route("mtls", "/one/mtls").replace(
            "path_prefix = \"/one/mtls\"",
            "path_prefix = \"/one/mtls\"\nstrip_prefix = true"
        ),
    );
    let s = Running::start(&toml).await;
    let cc = get(&s.url("/_test/echo"), &[]).await.json();
    assert_eq!(cc["headers"]["x-dc-devkey"], serde_json::json!(["[valid]"]));
    let one = get(&s.url("/one/_test/echo"), &[]).await.json();
    assert_eq!(one["path"], "/_test/echo");
    assert_eq!(one["headers"]["x-api-key"], serde_json::json!(["[valid]"]));
    let mtls = get(&s.url("/one/mtls/_test/echo"), &[]).await.json();
    assert_eq!(mtls["path"], "/_test/echo");
    assert!(mtls["client_subject"].is_string());
    // `/onex` is not under `/one`: it falls to the CertCentral route, whose X-DC-DEVKEY
    // DigiCert ONE paths do not take (401 from the mock, not a sidecar error).
    let other = get(&s.url("/onex/account/api/v1/user"), &[]).await;
    assert_eq!(other.status, 401);
    assert_eq!(other.json()["errors"][0]["code"], "invalid_api_key");
    assert_eq!(other.sidecar_error(), None);
    s.stop().await;
}

#[tokio::test]
async fn a_route_with_its_own_listener() {
    let w = World::new().await;
    let port = free_port();
    let toml = format!(
        "{}{}",
        w.certcentral_toml(),
        w.one_route("one", "/").replace(
            "path_prefix = \"/\"",
            &format!("path_prefix = \"/\"\nlisten = \"127.0.0.1:{port}\"")
        ),
    );
    let s = Running::start(&toml).await;
    assert_eq!(s.addrs.len(), 2);
    let main = get(&s.url("/_test/echo"), &[]).await.json();
    assert!(main["headers"].get("x-dc-devkey").is_some());
    let own = get(&format!("http://127.0.0.1:{port}/_test/echo"), &[])
        .await
        .json();
    assert!(own["headers"].get("x-api-key").is_some());
    assert!(own["headers"].get("x-dc-devkey").is_none());
    s.stop().await;
}

#[tokio::test]
async fn one_hundred_sequential_requests_use_at_most_two_tls_connections() {
    let w = World::new().await;
    let s = Running::start(&format!(
        "{}{}",
        w.certcentral_toml(),
        w.mtls_route("mtls", "/mtls").replace(
            "path_prefix = \"/mtls\"",
            "path_prefix = \"/mtls\"\nstrip_prefix = true"
        )
    ))
    .await;
    let client = h1_client();
    for _ in 0..100 {
        let got = send(
            &client,
            "GET",
            &s.url("/services/v2/user/me"),
            &[],
            Default::default(),
        )
        .await;
        assert_eq!(got.status, 200);
    }
    let header_route = w.mock.tls_connections();
    assert!(
        header_route <= 2,
        "{header_route} TLS connections for 100 requests"
    );
    for _ in 0..100 {
        let got = send(
            &client,
            "GET",
            &s.url("/mtls/account/api/v1/user"),
            &[],
            Default::default(),
        )
        .await;
        assert_eq!(got.status, 200);
    }
    let mtls_route = w.mock.tls_connections() - header_route;
    eprintln!(
        "upstream TLS connections for 100 sequential requests: header route {header_route}, mTLS route {mtls_route}"
    );
    assert!(
        mtls_route <= 2,
        "{mtls_route} mTLS connections for 100 requests"
    );
    s.stop().await;
}

#[tokio::test]
async fn alpn_picks_h2_when_offered_and_http1_otherwise() {
    let w = World::new().await;
    let s = Running::certcentral(&w).await;
    assert_eq!(
        get(&s.url("/_test/echo"), &[]).await.json()["version"],
        "HTTP/2.0"
    );
    s.stop().await;

    let w = World::with(MockOptions {
        devkey: DEVKEY.into(),
        api_key: API_KEY.into(),
        http1_only: true,
    })
    .await;
    let s = Running::certcentral(&w).await;
    let echo = get(&s.url("/_test/echo"), &[]).await.json();
    assert_eq!(echo["version"], "HTTP/1.1");
    assert_eq!(
        echo["headers"]["x-dc-devkey"],
        serde_json::json!(["[valid]"])
    );
    s.stop().await;
}

#[tokio::test]
async fn an_http1_upstream_reuses_connections_sequentially_and_under_concurrency() {
    let w = World::with(MockOptions {
        http1_only: true,
        ..Default::default()
    })
    .await;
    let s = Running::certcentral(&w).await;
    let client = h1_client();
    // Bodies read to the end, answers without a body (HEAD), and an error answer read
    // for a rejection: each gives its connection back.
    for i in 0..60 {
        let (method, path) = match i % 3 {
            0 => ("GET", "/services/v2/user/me"),
            1 => ("HEAD", "/services/v2/user/me"),
            _ => ("GET", "/services/v2/nothing-here"),
        };
        let got = send(&client, method, &s.url(path), &[], Default::default()).await;
        assert!(
            got.status == 200 || got.status == 404,
            "{method} {path}: {}",
            got.status
        );
    }
    let sequential = w.mock.tls_connections();
    assert!(
        sequential <= 2,
        "{sequential} TLS connections for 60 sequential requests"
    );
    // 16 clients at once: at most one connection each, reused for their next requests.
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let url = s.url("/services/v2/user/me");
        tasks.push(tokio::spawn(async move {
            let client = h1_client();
            for _ in 0..10 {
                let got = send(&client, "GET", &url, &[], Default::default()).await;
                assert_eq!(got.status, 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let concurrent = w.mock.tls_connections() - sequential;
    eprintln!(
        "HTTP/1.1 upstream: {sequential} connections for 60 sequential requests, {concurrent} for 16 x 10 concurrent"
    );
    assert!(
        concurrent <= 16,
        "{concurrent} connections for 16 concurrent clients"
    );
    s.stop().await;
}
