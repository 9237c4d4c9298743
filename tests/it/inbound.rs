//! The way in: HTTP/1.1 keep-alive, h2c with prior knowledge, Unix sockets.

use std::os::unix::fs::PermissionsExt;

use crate::support::*;

#[tokio::test]
async fn h2c_with_prior_knowledge() {
    let w = World::new().await;
    let s = Running::certcentral(&w).await;
    let client = h2c_client();
    for _ in 0..3 {
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
    let echo = send(
        &client,
        "GET",
        &s.url("/_test/echo"),
        &[("x-dc-devkey", "mine")],
        Default::default(),
    )
    .await
    .json();
    assert_eq!(
        echo["headers"]["x-dc-devkey"],
        serde_json::json!(["[valid]"])
    );
    s.stop().await;
}

#[tokio::test]
async fn http1_keep_alive_reuses_the_connection() {
    let w = World::new().await;
    let s = Running::certcentral(&w).await;
    let stream = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for _ in 0..5 {
        let req = http::Request::builder()
            .uri("/services/v2/user/me")
            .header("host", "localhost")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let got = read(sender.send_request(req).await.unwrap()).await;
        assert_eq!(got.status, 200);
    }
    s.stop().await;
}

#[tokio::test]
async fn unix_socket_with_its_file_mode() {
    let w = World::new().await;
    let sock = w.path("sidecar.sock");
    let toml = format!(
        "[server]\nlisten = \"unix:{}\"\nadmin = \"off\"\nunix_socket_mode = \"0600\"\n{}",
        sock.display(),
        w.certcentral_route("cc", "/")
    );
    let s = Running::start(&toml).await;
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let got = get_unix(&sock, "/services/v2/user/me").await;
    assert_eq!(got.status, 200, "{}", got.text());
    s.stop().await;
    assert!(!sock.exists(), "the socket file is removed at shutdown");
}
