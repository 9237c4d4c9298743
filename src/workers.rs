//! Thread per core: `[server] worker_threads = N` serves connections on N threads, each with a
//! single-threaded tokio runtime of its own. The thread that runs [`crate::Sidecar::serve`]
//! is worker 0 (it also accepts, and runs admin, reloads and probes); workers 1..N are
//! started here.
//!
//! Why not tokio's work-stealing runtime: there a request's task, its upstream connection's
//! task and the timers they wait on move between threads, and every hand-over is a
//! cross-thread wake-up. Measured, two work-stealing workers spent 27.7 µs of CPU per request
//! against 23.1 µs on one thread (docs/performance.md). Here a connection is handed to one
//! worker when it is accepted (the one with the fewest open connections) and never moves:
//! its requests, its upstream connections (each worker has its own slot in every pool, see
//! [`current`]) and its timers all live on that thread.
//!
//! A connection changes threads once: the accepted socket leaves worker 0's reactor
//! (`into_std`) and joins the chosen worker's (`from_std`) on its first poll there.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

thread_local! {
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

/// The most workers any sidecar in this process has started (at least 1).
static COUNT: AtomicUsize = AtomicUsize::new(1);

/// This thread's worker number: 0 for the thread that serves (and any thread not started
/// here), 1.. for the workers. Pools keep one slot of connections per worker, indexed so.
pub fn current() -> usize {
    CURRENT.with(Cell::get)
}

/// How many slots a pool made now needs: the most workers started in this process.
pub fn count() -> usize {
    COUNT.load(Ordering::Relaxed)
}

/// Workers 1..N, each a thread driving a single-threaded runtime until dropped.
pub struct Workers {
    others: Vec<Worker>,
    /// Open connections per worker, worker 0 first: where the next connection goes.
    open: Arc<[AtomicUsize]>,
}

struct Worker {
    handle: Handle,
    /// Dropped to stop the worker.
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// The worker a connection was given to; counts it as open until dropped.
pub struct Assigned {
    open: Arc<[AtomicUsize]>,
    index: usize,
}

impl Drop for Assigned {
    fn drop(&mut self) {
        self.open[self.index].fetch_sub(1, Ordering::Relaxed);
    }
}

impl Workers {
    /// Start workers 1..`n` (none for `n` = 1: the serving thread is the only worker).
    pub fn start(n: usize) -> io::Result<Self> {
        let n = n.max(1);
        COUNT.fetch_max(n, Ordering::Relaxed);
        let mut others = Vec::with_capacity(n - 1);
        for index in 1..n {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("sidecar-w{index}"))
                .spawn(move || {
                    CURRENT.with(|c| c.set(index));
                    // Resolves when `stop` is sent or dropped; then every connection still
                    // on the runtime is dropped. A name lookup still running on the blocking
                    // pool is not waited for long.
                    let _ = runtime.block_on(stopped);
                    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
                })?;
            others.push(Worker {
                handle,
                stop: Some(stop),
                thread: Some(thread),
            });
        }
        Ok(Self {
            others,
            open: (0..n).map(|_| AtomicUsize::new(0)).collect(),
        })
    }

    /// How many workers serve, the serving thread included.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Never empty: the serving thread is always a worker.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Run `conn` on the worker with the fewest open connections (the lowest number on a
    /// tie). On worker 0 the stream stays as it is; on another it moves to that worker's
    /// reactor first. A stream that cannot move is closed (it is logged).
    pub fn spawn<S, F, Fut>(&self, stream: S, conn: F)
    where
        S: Movable,
        F: FnOnce(S, Assigned) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let index = self.least_busy();
        self.open[index].fetch_add(1, Ordering::Relaxed);
        let assigned = Assigned {
            open: self.open.clone(),
            index,
        };
        if index == 0 {
            tokio::spawn(conn(stream, assigned));
            return;
        }
        let moved = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "could not hand a connection to a worker; closed it");
                return;
            }
        };
        self.others[index - 1].handle.spawn(async move {
            match S::from_std(moved) {
                Ok(stream) => conn(stream, assigned).await,
                Err(e) => {
                    tracing::warn!(error = %e, "a worker could not take a connection; closed it")
                }
            }
        });
    }

    fn least_busy(&self) -> usize {
        let mut best = 0;
        let mut fewest = usize::MAX;
        for (i, open) in self.open.iter().enumerate() {
            let n = open.load(Ordering::Relaxed);
            if n < fewest {
                best = i;
                fewest = n;
            }
        }
        best
    }
}

impl Drop for Workers {
    /// Stop every worker and wait for its thread: the connections still on it are closed.
    fn drop(&mut self) {
        for w in &mut self.others {
            drop(w.stop.take());
        }
        for w in &mut self.others {
            if let Some(t) = w.thread.take()
                && t.join().is_err()
            {
                tracing::error!("a worker thread panicked");
            }
        }
    }
}

/// A stream that can leave one runtime's reactor and join another's.
pub trait Movable: Sized + Send + 'static {
    type Std: Send + 'static;
    fn into_std(self) -> io::Result<Self::Std>;
    /// Registers with the reactor of the runtime it is called on.
    fn from_std(std: Self::Std) -> io::Result<Self>;
}

impl Movable for tokio::net::TcpStream {
    type Std = std::net::TcpStream;
    fn into_std(self) -> io::Result<Self::Std> {
        tokio::net::TcpStream::into_std(self)
    }
    fn from_std(std: Self::Std) -> io::Result<Self> {
        tokio::net::TcpStream::from_std(std)
    }
}

impl Movable for tokio::net::UnixStream {
    type Std = std::os::unix::net::UnixStream;
    fn into_std(self) -> io::Result<Self::Std> {
        tokio::net::UnixStream::into_std(self)
    }
    fn from_std(std: Self::Std) -> io::Result<Self> {
        tokio::net::UnixStream::from_std(std)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_go_to_the_least_busy_worker_and_each_runs_on_its_thread() {
        let workers = Workers::start(3).unwrap();
        assert_eq!(workers.len(), 3);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut clients = Vec::new();
        for _ in 0..6 {
            clients.push(tokio::net::TcpStream::connect(addr).await.unwrap());
            let (stream, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            workers.spawn(stream, move |stream, assigned| async move {
                // The stream works on the worker's own reactor.
                let mut buf = [0u8; 1];
                stream.readable().await.unwrap();
                let _ = stream.try_read(&mut buf);
                let _ = tx.send((assigned.index, current(), std::thread::current().id()));
                // Held open (counted) until the client closes.
                let _ = stream.readable().await;
                drop(assigned);
            });
        }
        use tokio::io::AsyncWriteExt;
        for c in &mut clients {
            c.write_all(b"x").await.unwrap();
        }
        let mut seen = Vec::new();
        for _ in 0..6 {
            seen.push(rx.recv().await.unwrap());
        }
        seen.sort_by_key(|s| s.0);
        let per_worker: Vec<usize> = (0..3)
            .map(|w| seen.iter().filter(|s| s.0 == w).count())
            .collect();
        assert_eq!(per_worker, [2, 2, 2], "{seen:?}");
        for (assigned, running_on, _) in &seen {
            assert_eq!(assigned, running_on);
        }
        let threads: std::collections::HashSet<_> = seen.iter().map(|s| s.2).collect();
        assert_eq!(threads.len(), 3);
        drop(clients);
        drop(workers);
    }
}
