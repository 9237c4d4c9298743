//! Errors the sidecar makes: DigiCert's JSON shape plus `x-digicert-sidecar-error`.

use std::time::Duration;

use bytes::Bytes;

use crate::support::*;

fn assert_sidecar_error(got: &Got, status: u16, reason: &str) {
    assert_eq!(got.status, status, "{}", got.text());
    assert_eq!(got.sidecar_error(), Some(reason));
    let body = got.json();
    assert_eq!(body["errors"][0]["code"], format!("sidecar_{reason}"));
    assert!(!body["errors"][0]["message"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn no_route_is_404() {
    let w = World::new().await;
    let s = Running::start(&format!(
        "{}{}",
        w.server_toml(),
        w.certcentral_route("cc", "/services")
    ))
    .await;
    assert_sidecar_error(
        &get(&s.url("/account/api/v1/user"), &[]).await,
        404,
        "no_route",
    );
    s.stop().await;
}

#[tokio::test]
async fn refused_connections_are_502_upstream_unreachable() {
    let w = World::new().await;
    let route = w
        .certcentral_route("cc", "/")
        .replace(&w.mock.url(), &format!("https://127.0.0.1:{}", free_port()));
    let s = Running::start(&format!("{}{}", w.server_toml(), route)).await;
    assert_sidecar_error(
        &get(&s.url("/services/v2/user/me"), &[]).await,
        502,
        "upstream_unreachable",
    );
    s.stop().await;
}

#[tokio::test]
async fn an_untrusted_certificate_is_502_upstream_tls_and_nothing_is_sent() {
    let w = World::new().await;
    let route = w
        .certcentral_route("cc", "/")
        .replace(&format!("ca_file = \"{}\"\n", w.ca.display()), "");
    let s = Running::start(&format!("{}{}", w.server_toml(), route)).await;
    let got = get(&s.url("/services/v2/user/me"), &[]).await;
    assert_sidecar_error(&got, 502, "upstream_tls");
    assert!(got.text().contains("not trusted"), "{}", got.text());
    assert!(
        w.mock.seen().is_empty(),
        "a request reached an unverified server"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_slow_upstream_is_504_upstream_timeout() {
    let w = World::new().await;
    let toml = w
        .certcentral_toml()
        .replace("request_timeout = \"5s\"", "request_timeout = \"300ms\"");
    let s = Running::start(&toml).await;
    let started = std::time::Instant::now();
    assert_sidecar_error(
        &get(&s.url("/_test/slow?ms=3000"), &[]).await,
        504,
        "upstream_timeout",
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    s.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_whether_declared_or_streamed() {
    let w = World::new().await;
    let toml = format!(
        "{}max_request_body = \"1KiB\"\n{}",
        w.server_toml(),
        w.certcentral_route("cc", "/")
    );
    let s = Running::start(&toml).await;
    let big = Bytes::from(vec![b'a'; 4096]);
    let got = send(&h1_client(), "POST", &s.url("/_test/upload"), &[], big).await;
    assert_sidecar_error(&got, 413, "body_too_large");
    assert!(
        w.mock.seen().is_empty(),
        "a declared oversize body never leaves"
    );

    let ok = send(
        &h1_client(),
        "POST",
        &s.url("/_test/upload"),
        &[],
        Bytes::from(vec![b'a'; 1000]),
    )
    .await;
    assert_eq!(ok.json()["bytes"], 1000);

    // Chunked, no length: cut off when the limit is crossed.
    let mut req = b"POST /_test/upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..4 {
        req.extend_from_slice(b"400\r\n");
        req.extend_from_slice(&[b'b'; 0x400]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let answer = raw(s.addr(), req).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("sidecar_body_too_large"), "{answer}");
    s.stop().await;
}

#[tokio::test]
async fn connect_and_trace_are_405() {
    let w = World::new().await;
    let s = Running::certcentral(&w).await;
    let got = send(
        &h1_client(),
        "TRACE",
        &s.url("/services/v2/user/me"),
        &[],
        Bytes::new(),
    )
    .await;
    assert_sidecar_error(&got, 405, "method_not_allowed");
    assert!(w.mock.seen().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn heads_over_the_limits_are_431_in_digicerts_shape() {
    let w = World::new().await;
    let toml = format!(
        "{}max_header_bytes = \"16KiB\"\n{}",
        w.server_toml(),
        w.certcentral_route("cc", "/")
    );
    let s = Running::start(&toml).await;
    let mut many = String::new();
    for i in 0..101 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    let big = format!("x-big: {}\r\n", "a".repeat(17 * 1024));
    for extra in [many, big] {
        let req = format!(
            "GET /services/v2/user/me HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n"
        );
        let answer = raw(s.addr(), req).await;
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
        assert!(answer.contains("sidecar_headers_too_large"), "{answer}");
    }
    assert!(w.mock.seen().is_empty());
    s.stop().await;
}
