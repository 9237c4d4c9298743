//! `digicert-sidecar wait`: poll the admin listener's `/readyz` until it answers 200 or a
//! timeout passes, for an application's entrypoint (`digicert-sidecar wait && exec app`).

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

/// How often `/readyz` is asked.
const POLL: Duration = Duration::from_millis(100);
/// The most of an answer's body shown in the last-seen line.
const SHOWN_BODY: usize = 200;

/// Poll `http://{admin}/readyz` until it answers 200 (`Ok`) or `timeout` passes (`Err` with
/// one line saying what was last seen).
pub async fn until_ready(admin: &str, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let seen = match tokio::time::timeout(left.max(POLL), readyz(admin)).await {
            Ok(Ok((200, _))) => return Ok(()),
            Ok(Ok((status, body))) => format!("/readyz answered {status}: {body}"),
            Ok(Err(e)) => e,
            Err(_) => format!(
                "no answer from {admin} within {}",
                humantime::format_duration(timeout)
            ),
        };
        if Instant::now() + POLL > deadline {
            return Err(format!(
                "not ready after {}: {seen}",
                humantime::format_duration(timeout)
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One `GET /readyz`: the status and the start of the body, or why there was no answer.
async fn readyz(admin: &str) -> Result<(u16, String), String> {
    let stream = tokio::net::TcpStream::connect(admin)
        .await
        .map_err(|e| format!("cannot connect to {admin}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{admin}: {e}"))?;
    tokio::spawn(conn);
    let req = Request::get("/readyz")
        .header(http::header::HOST, admin)
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("--admin {admin}: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("{admin}: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body[..body.len().min(SHOWN_BODY)])
        .trim()
        .replace('\n', " ");
    Ok((status, text))
}
