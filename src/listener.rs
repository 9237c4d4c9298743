//! Listeners: accept on TCP or a Unix socket, cap concurrent connections, serve HTTP/1.1
//! and h2c (prior knowledge) with the `[server]` limits, and drain on shutdown.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use std::cell::RefCell;
use std::task::{Context, Poll, Waker};

use futures_util::future::Either;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulConnection, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower::util::Oneshot;
use tower::{Service, ServiceExt};

use crate::config::{ListenAddr, Server};
use crate::conn_guard::ConnGuard;
use crate::stack::{Peer, Stack};
use crate::systemd::Passed;

/// A bound listening socket. A Unix socket file we made is removed when this is dropped.
pub enum Bound {
    Tcp(TcpListener),
    Unix(UnixListener, SocketFile),
}

/// A Unix socket's path; removed on drop unless systemd owns the socket.
pub struct SocketFile {
    path: PathBuf,
    ours: bool,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if self.ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Bound {
    /// Bind `addr`. A stale Unix socket file is replaced; any other file there is an error.
    pub async fn bind(addr: &ListenAddr, unix_mode: u32) -> io::Result<Self> {
        match addr {
            ListenAddr::Tcp(a) => Ok(Bound::Tcp(TcpListener::bind(a).await?)),
            ListenAddr::Unix(path) => {
                remove_stale_socket(path)?;
                let listener = UnixListener::bind(path)?;
                let file = SocketFile {
                    path: path.clone(),
                    ours: true,
                };
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(unix_mode))?;
                Ok(Bound::Unix(listener, file))
            }
            ListenAddr::Systemd(name) => Self::passed(name),
        }
    }

    /// The socket systemd passed as `name` (`FileDescriptorName=`). Its mode, owner and
    /// file belong to the .socket unit: they are neither changed nor removed here.
    fn passed(name: &str) -> io::Result<Self> {
        match crate::systemd::take_socket(name)? {
            Passed::Tcp(l) => {
                l.set_nonblocking(true)?;
                Ok(Bound::Tcp(TcpListener::from_std(l)?))
            }
            Passed::Unix(l) => {
                l.set_nonblocking(true)?;
                let path = l
                    .local_addr()?
                    .as_pathname()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from(format!("@systemd:{name}")));
                let file = SocketFile { path, ours: false };
                Ok(Bound::Unix(UnixListener::from_std(l)?, file))
            }
        }
    }

    /// The address actually bound (the port chosen for `:0`).
    pub fn local_addr(&self) -> ListenAddr {
        match self {
            Bound::Tcp(l) => l
                .local_addr()
                .map(ListenAddr::Tcp)
                .unwrap_or_else(|_| ListenAddr::Unix(PathBuf::from("?"))),
            Bound::Unix(_, file) => ListenAddr::Unix(file.path.clone()),
        }
    }
}

fn remove_stale_socket(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The HTTP server settings every connection uses.
fn http_builder(server: &Server) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        // A client that shuts down its sending side still gets its answer.
        .half_close(true)
        .header_read_timeout(server.header_read_timeout)
        // Above the limits `stack/head_limits.rs` enforces with a JSON 431, so that heads just over
        // them get the DigiCert-shaped answer; these are the hard backstop.
        .max_buf_size(server.max_header_bytes.saturating_mul(2).max(16 * 1024))
        .max_headers(2 * crate::stack::head_limits::MAX_HEADERS);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(100)
        .max_header_list_size(
            u32::try_from(server.max_header_bytes.saturating_mul(2)).unwrap_or(u32::MAX),
        )
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(64)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    builder
}

/// What the accept loops of all listeners share.
pub struct Shared {
    pub builder: auto::Builder<TokioExecutor>,
    pub connections: Arc<Semaphore>,
    /// How long a new connection may take to show which protocol it speaks.
    pub first_bytes: Duration,
    /// How long writes to a client may stall (it stopped reading) before it is dropped.
    pub write_stall: Duration,
}

impl Shared {
    pub fn new(server: &Server) -> Self {
        Self {
            builder: http_builder(server),
            connections: Arc::new(Semaphore::new(server.max_connections)),
            first_bytes: server.header_read_timeout,
            write_stall: server.body_idle_timeout,
        }
    }

    /// One inbound connection as every listener serves it: guarded by [`ConnGuard`], each
    /// request handed to the listener's `stack`, with the peer in its extensions.
    pub fn connection<IO>(
        &self,
        io: IO,
        peer: Peer,
        stack: Stack,
        strikes: Arc<crate::caller::Strikes>,
    ) -> impl GracefulConnection<Error = Box<dyn std::error::Error + Send + Sync>> + '_
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // Wrong caller tokens are counted per connection. The answer to the tenth closes an
        // HTTP/1.1 connection (`Connection: close`); on h2, which has no such header, every
        // later request on the connection is refused without a look at its token, and the
        // accept loop closes the connection (`spawn_conn`).
        let service = ConnService {
            stack: RefCell::new(stack),
            peer,
            strikes,
        };
        let io = ConnGuard::new(io, self.first_bytes, self.write_stall);
        self.builder.serve_connection(TokioIo::new(io), service)
    }
}

/// The stack as one connection's hyper service. The connection owns its copy of the stack
/// and calls it in place: no copy of the stack per request (a dozen reference counts up and
/// down) and no `Oneshot` moving the stack and the request into a new future. Every layer is
/// ready at once; one that is not (none today) gets a copy of the stack and waits in
/// `Oneshot` as before.
struct ConnService {
    /// hyper calls `&self` from the connection's task only, never twice at once.
    stack: RefCell<Stack>,
    peer: Peer,
    strikes: Arc<crate::caller::Strikes>,
}

type Call =
    Either<<Stack as Service<Request<Incoming>>>::Future, Oneshot<Stack, Request<Incoming>>>;

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = <Stack as Service<Request<Incoming>>>::Response;
    type Error = <Stack as Service<Request<Incoming>>>::Error;
    type Future = Call;

    fn call(&self, mut req: Request<Incoming>) -> Call {
        req.extensions_mut()
            .insert(crate::stack::RequestCtx::of_connection(
                self.peer,
                &self.strikes,
            ));
        let mut stack = self.stack.borrow_mut();
        let mut cx = Context::from_waker(Waker::noop());
        match stack.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => Either::Left(stack.call(req)),
            _ => Either::Right(stack.clone().oneshot(req)),
        }
    }
}

/// How long a connection that presented too many wrong caller tokens lives on, for its last
/// answer to go out.
const TOO_MANY_WRONG_LINGER: Duration = Duration::from_millis(250);

/// Accept until `stop` turns true. Each connection is watched by a graceful-shutdown
/// watcher that `new_watcher` makes.
pub async fn accept_loop(
    bound: Bound,
    stack: Stack,
    shared: Arc<Shared>,
    new_watcher: impl Fn() -> Watcher,
    stop: CancellationToken,
) {
    loop {
        let permit = tokio::select! {
            p = shared.connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = stop.cancelled() => return,
        };
        let accepted = tokio::select! {
            a = accept(&bound) => a,
            _ = stop.cancelled() => return,
        };
        match accepted {
            Ok(Conn::Tcp(stream, peer)) => {
                let _ = stream.set_nodelay(true);
                spawn_conn(stream, peer, &stack, &shared, new_watcher(), permit);
            }
            Ok(Conn::Unix(stream, peer)) => {
                spawn_conn(stream, peer, &stack, &shared, new_watcher(), permit);
            }
            Err(e) => {
                // Out of file descriptors and the like: back off rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

enum Conn {
    Tcp(tokio::net::TcpStream, Peer),
    Unix(tokio::net::UnixStream, Peer),
}

async fn accept(bound: &Bound) -> io::Result<Conn> {
    match bound {
        Bound::Tcp(l) => {
            let (s, addr) = l.accept().await?;
            Ok(Conn::Tcp(s, Peer::Tcp(addr)))
        }
        Bound::Unix(l, _) => {
            let (s, _) = l.accept().await?;
            let cred = s.peer_cred()?;
            Ok(Conn::Unix(
                s,
                Peer::Unix {
                    uid: cred.uid(),
                    gid: cred.gid(),
                },
            ))
        }
    }
}

fn spawn_conn<IO>(
    io: IO,
    peer: Peer,
    stack: &Stack,
    shared: &Arc<Shared>,
    watcher: Watcher,
    permit: OwnedSemaphorePermit,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let stack = stack.clone();
    let shared = shared.clone();
    tokio::spawn(async move {
        let strikes = Arc::new(crate::caller::Strikes::default());
        let conn = shared.connection(io, peer, stack, strikes.clone());
        let watched = watcher.watch(conn);
        tokio::pin!(watched);
        let ended = tokio::select! {
            ended = &mut watched => ended,
            _ = strikes.exhausted_signal() => {
                // The answer to the last wrong token gets a moment to go out (an HTTP/1.1
                // connection closes itself after it); then the connection is dropped.
                match tokio::time::timeout(TOO_MANY_WRONG_LINGER, &mut watched).await {
                    Ok(ended) => ended,
                    Err(_) => {
                        tracing::info!(?peer, "closed a connection after too many wrong caller tokens");
                        Ok(())
                    }
                }
            }
        };
        if let Err(e) = ended {
            tracing::debug!(error = %e, "connection ended with an error");
        }
        drop(permit);
    });
}
