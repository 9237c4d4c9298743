//! The pooled, keep-alive HTTPS client to one route's upstream. HTTPS only: there is no
//! plaintext fallback, and redirects are never followed (hyper's client does not).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ClientConfig;
use tokio::net::TcpStream;

use crate::body::ProxyBody;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A cheap-to-clone handle on one connection pool.
#[derive(Clone)]
pub struct UpstreamClient {
    inner: Client<TimeoutConnector, ProxyBody>,
}

impl UpstreamClient {
    /// A pool whose connections use `tls` and give up connecting (TCP + TLS) after
    /// `connect_timeout`.
    pub fn new(tls: ClientConfig, connect_timeout: Duration) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_keepalive(Some(Duration::from_secs(60)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_all_versions()
            .wrap_connector(http);
        let connector = TimeoutConnector {
            inner: https,
            timeout: connect_timeout,
        };
        let inner = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_timeout(Duration::from_secs(10))
            .http2_adaptive_window(true)
            .retry_canceled_requests(false)
            .build(connector);
        Self { inner }
    }

    /// Send one request; resolves when the response head arrives.
    pub fn send(
        &self,
        req: Request<ProxyBody>,
    ) -> impl Future<Output = Result<Response<Incoming>, hyper_util::client::legacy::Error>> + use<>
    {
        self.inner.request(req)
    }
}

/// The connect phase (TCP and TLS handshake) took longer than `connect_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("connecting to the upstream timed out")]
pub struct ConnectTimeout;

/// Puts a deadline on TCP connect + TLS handshake together.
#[derive(Clone)]
struct TimeoutConnector {
    inner: HttpsConnector<HttpConnector>,
    timeout: Duration,
}

impl tower::Service<Uri> for TimeoutConnector {
    type Response = MaybeHttpsStream<TokioIo<TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(result) => result,
                Err(_) => Err(Box::new(ConnectTimeout) as BoxError),
            }
        })
    }
}
