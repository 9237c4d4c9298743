//! The mock's request handlers: DigiCert's answers, status codes and error bodies.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};

use super::{Rejection, RejectionShape, Seen, State};
use crate::body::{ProxyBody, full};

pub(crate) struct Ctx {
    pub state: Arc<State>,
    pub clientauth: bool,
    pub client_subject: Option<String>,
}

pub(crate) async fn handle(
    ctx: Arc<Ctx>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let path = req.uri().path().to_string();
    if let Ok(mut seen) = ctx.state.seen.lock() {
        seen.push(Seen {
            at: Instant::now(),
            method: req.method().to_string(),
            path: path.clone(),
            clientauth: ctx.clientauth,
            client_subject: ctx.client_subject.clone(),
        });
    }
    let devkey = check(req.headers(), "x-dc-devkey", &ctx.state.devkeys);
    let api_key = check(req.headers(), "x-api-key", &ctx.state.api_keys);
    let cert = ctx.clientauth
        && ctx.client_subject.as_ref().is_some_and(|subject| {
            ctx.state
                .client_subjects
                .lock()
                .map(|accepted| accepted.as_ref().is_none_or(|a| a.contains(subject)))
                .unwrap_or(false)
        });

    let resp = if let Some(rest) = path.strip_prefix("/_test/") {
        if devkey == Key::Valid || api_key == Key::Valid || cert {
            test_endpoint(&ctx, rest, req).await
        } else if ctx.clientauth {
            one_denied(&ctx)
        } else {
            certcentral_denied(&ctx, devkey)
        }
    } else if path.starts_with("/services/v2/") {
        match devkey {
            Key::Valid => certcentral(req.method(), &path),
            other => certcentral_denied(&ctx, other),
        }
    } else if path.starts_with("/signingmanager/") {
        if cert && api_key == Key::Valid {
            ok(json!({"items": [{"id": "kp-1", "alias": "release-signing", "keyType": "RSA"}]}))
        } else {
            one_denied(&ctx)
        }
    } else if cert || api_key == Key::Valid {
        digicert_one(req.method(), &path, ctx.client_subject.as_deref())
    } else {
        one_denied(&ctx)
    };
    Ok(resp)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Missing,
    Invalid,
    Valid,
}

fn check(headers: &HeaderMap, name: &str, accepted: &std::sync::Mutex<Vec<String>>) -> Key {
    let values: Vec<_> = headers.get_all(name).iter().collect();
    match values.as_slice() {
        [] => Key::Missing,
        [one] => {
            let good = accepted
                .lock()
                .map(|a| a.iter().any(|k| k.as_bytes() == one.as_bytes()))
                .unwrap_or(false);
            if good { Key::Valid } else { Key::Invalid }
        }
        _ => Key::Invalid,
    }
}

fn json_response(status: StatusCode, body: Value) -> Response<ProxyBody> {
    let mut resp = Response::new(full(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn ok(body: Value) -> Response<ProxyBody> {
    json_response(StatusCode::OK, body)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<ProxyBody> {
    json_response(
        status,
        json!({"errors": [{"code": code, "message": message}]}),
    )
}

fn certcentral_denied(ctx: &Ctx, key: Key) -> Response<ProxyBody> {
    if key == Key::Missing {
        return error(StatusCode::FORBIDDEN, "access_denied", "Access denied.");
    }
    let r = rejection(ctx);
    let code = match r.shape {
        RejectionShape::PipedCode => "access_denied|access_denied_invalid_key",
        _ => "access_denied_invalid_key",
    };
    rejected(
        StatusCode::FORBIDDEN,
        json!({"errors": [{"code": code, "message": "Invalid API key."}]}),
        r.chunked,
    )
}

fn one_denied(ctx: &Ctx) -> Response<ProxyBody> {
    let r = rejection(ctx);
    let body = match r.shape {
        RejectionShape::ErrorObject => {
            json!({"error": {"code": "invalid_api_key", "message": "Invalid API key"}})
        }
        _ => json!({"errors": [{"code": "invalid_api_key", "message": "Invalid API key"}]}),
    };
    rejected(StatusCode::UNAUTHORIZED, body, r.chunked)
}

fn rejection(ctx: &Ctx) -> Rejection {
    ctx.state
        .rejection
        .lock()
        .map(|r| r[usize::from(ctx.clientauth)])
        .unwrap_or_default()
}

/// A rejection with a `Content-Length`, or chunked in two pieces split inside the JSON.
fn rejected(status: StatusCode, body: Value, chunked: bool) -> Response<ProxyBody> {
    if !chunked {
        return json_response(status, body);
    }
    let text = Bytes::from(body.to_string());
    let half = text.len() / 2;
    let parts = [text.slice(..half), text.slice(half..)];
    let frames = stream::iter(
        parts
            .into_iter()
            .map(|p| Ok::<_, crate::body::BoxError>(Frame::data(p))),
    );
    let mut resp = Response::new(StreamBody::new(frames).boxed_unsync());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn not_found() -> Response<ProxyBody> {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "The requested resource was not found.",
    )
}

fn certcentral(method: &Method, path: &str) -> Response<ProxyBody> {
    let segs: Vec<&str> = path
        .trim_start_matches("/services/v2/")
        .split('/')
        .collect();
    match (method, segs.as_slice()) {
        (&Method::GET, ["user", "me"]) => ok(json!({
            "id": 1001, "username": "demo.user", "first_name": "Demo", "last_name": "User",
            "email": "demo.user@example.com", "status": "active",
            "container": {"id": 50, "name": "Demo Org"},
            "access_roles": [{"id": 1, "name": "Administrator"}]
        })),
        (&Method::GET, ["user"]) => ok(json!({"users": [{"id": 1001, "username": "demo.user"}],
            "page": {"total": 1, "limit": 1000, "offset": 0}})),
        (&Method::GET, ["order", "certificate"]) => ok(json!({
            "orders": [{"id": 123456, "status": "issued", "product": {"name_id": "ssl_basic"},
                "certificate": {"common_name": "www.example.com"}}],
            "page": {"total": 1, "limit": 1000, "offset": 0}
        })),
        (&Method::GET, ["order", "certificate", id]) => match id.parse::<u64>() {
            Ok(id) => ok(json!({"id": id, "status": "issued",
                "certificate": {"common_name": "www.example.com"}})),
            Err(_) => not_found(),
        },
        (&Method::POST, ["order", "certificate", product]) => json_response(
            StatusCode::CREATED,
            json!({"id": 123457, "requests": [{"id": 555, "status": "pending"}], "product": product}),
        ),
        _ => not_found(),
    }
}

fn digicert_one(method: &Method, path: &str, subject: Option<&str>) -> Response<ProxyBody> {
    match (method, path) {
        (&Method::GET, "/account/api/v1/user") => ok(json!({
            "id": "7f7e1e2c-0000-4000-8000-000000000001",
            "name": subject.unwrap_or("demo-api-user"), "status": "ACTIVE",
            "authentication": if subject.is_some() { "client_certificate" } else { "api_key" }
        })),
        (&Method::GET, "/mpki/api/v1/certificate") => ok(json!({
            "items": [{"serial_number": "0A1B2C", "status": "issued", "common_name": "device-1"}],
            "total": 1
        })),
        _ => not_found(),
    }
}

async fn test_endpoint(ctx: &Ctx, rest: &str, req: Request<Incoming>) -> Response<ProxyBody> {
    let query = req.uri().query().unwrap_or("").to_string();
    let param = |name: &str| -> Option<u64> {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.parse().ok())
    };
    match rest {
        "echo" => ok(echo(ctx, &req)),
        "slow" => {
            let _serving = Serving::start(&ctx.state);
            tokio::time::sleep(Duration::from_millis(param("ms").unwrap_or(1000))).await;
            ok(json!({"slept_ms": param("ms").unwrap_or(1000)}))
        }
        "bytes" => {
            let n = param("n").unwrap_or(0);
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let body = stream::unfold(n, move |left| {
                let chunk = chunk.clone();
                async move {
                    if left == 0 {
                        return None;
                    }
                    let take = left.min(chunk.len() as u64);
                    let frame = Frame::data(chunk.slice(..take as usize));
                    Some((Ok::<_, crate::body::BoxError>(frame), left - take))
                }
            });
            let mut resp = Response::new(StreamBody::new(body).boxed_unsync());
            resp.headers_mut()
                .insert(header::CONTENT_LENGTH, header::HeaderValue::from(n));
            resp
        }
        "upload" => {
            let mut body = req.into_body();
            let mut n: u64 = 0;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => n += f.data_ref().map(|d| d.len() as u64).unwrap_or(0),
                    Err(_) => return error(StatusCode::BAD_REQUEST, "bad_request", "Body broken."),
                }
            }
            ok(json!({"bytes": n}))
        }
        "flaky" => {
            // Fail `fail` times (per `id`) with `status`, then answer 200.
            let id = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("id="))
                .unwrap_or("")
                .to_string();
            let fail = param("fail").unwrap_or(1) as u32;
            let served = {
                let mut flaky = ctx.state.flaky.lock().unwrap_or_else(|p| p.into_inner());
                let n = flaky.entry(id).or_insert(0);
                *n += 1;
                *n
            };
            if served <= fail {
                let code = param("status").unwrap_or(503) as u16;
                let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                let mut resp = error(status, "service_unavailable", "Try again later.");
                if let Some(secs) = param("retry_after") {
                    resp.headers_mut()
                        .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
                }
                resp
            } else {
                ok(json!({"served": served}))
            }
        }
        "reflect" => {
            // A careless server that echoes the credential in response headers.
            let mut resp = ok(json!({"reflected": true}));
            for name in ["x-dc-devkey", "x-api-key"] {
                if let Some(v) = req.headers().get(name) {
                    resp.headers_mut().insert("x-debug-credential", v.clone());
                    if let Ok(text) = v.to_str()
                        && let Ok(value) = header::HeaderValue::from_str(&format!(
                            "Key realm=\"api\", key=\"{text}\""
                        ))
                    {
                        resp.headers_mut().insert(header::WWW_AUTHENTICATE, value);
                    }
                }
            }
            resp
        }
        s if s.starts_with("status/") => {
            let code = s["status/".len()..].parse::<u16>().unwrap_or(500);
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp = match code {
                429 => error(status, "request_limit_exceeded", "Request limit exceeded."),
                503 => error(status, "service_unavailable", "Service unavailable."),
                _ => error(status, "mock_status", "Status requested by the test."),
            };
            if let Some(secs) = param("retry_after") {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
            }
            resp
        }
        _ => not_found(),
    }
}

/// What the upstream saw, with credential values replaced by whether they were right.
fn echo(ctx: &Ctx, req: &Request<Incoming>) -> Value {
    let mut headers = serde_json::Map::new();
    for name in req.headers().keys() {
        let values: Vec<Value> = req
            .headers()
            .get_all(name)
            .iter()
            .map(|v| {
                let accepted = match name.as_str() {
                    "x-dc-devkey" => Some(&ctx.state.devkeys),
                    "x-api-key" => Some(&ctx.state.api_keys),
                    "authorization" | "proxy-authorization" => return json!("[present]"),
                    _ => None,
                };
                match accepted {
                    Some(keys) => {
                        let good = keys
                            .lock()
                            .map(|k| k.iter().any(|k| k.as_bytes() == v.as_bytes()))
                            .unwrap_or(false);
                        json!(if good { "[valid]" } else { "[invalid]" })
                    }
                    None => json!(String::from_utf8_lossy(v.as_bytes())),
                }
            })
            .collect();
        headers.insert(name.as_str().to_string(), Value::Array(values));
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    json!({
        "method": req.method().as_str(),
        "path": req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        "version": format!("{:?}", req.version()),
        "host": host,
        "headers": headers,
        "client_subject": ctx.client_subject,
    })
}

/// Counts a `/_test/slow` request as being served until dropped (answered or cancelled).
struct Serving<'a>(&'a State);

impl<'a> Serving<'a> {
    fn start(state: &'a State) -> Self {
        let now = state.slow_now.fetch_add(1, Ordering::SeqCst) + 1;
        state.slow_max.fetch_max(now, Ordering::SeqCst);
        Self(state)
    }
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        self.0.slow_now.fetch_sub(1, Ordering::SeqCst);
    }
}
