//! The fleet store (Redis) in which sidecars that share a key count its windows together:
//! one connection (the `redis` crate's `ConnectionManager`, which multiplexes and reconnects),
//! the windows script, and whether the store answers.
//!
//! Every call is bounded by `timeout`. The first failure starts an outage: one warning line,
//! `rate_limit_store_up` 0, and from then on requests go straight to the `on_error` fallback
//! (no request waits on a dead store) while one background task probes the store with
//! backoff. Its first answer ends the outage: one line, the gauge back to 1.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::ExposeSecret;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{OnError, RateLimitStore};
use crate::metrics::Metrics;

/// How a call that took longer than `timeout` is described.
const NO_ANSWER: &str = "no answer within";

/// The windows script (see its header for the protocol).
const SCRIPT: &str = include_str!("script.lua");

/// Why the store could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("rate_limit_store password: {0}")]
    Password(#[from] crate::credential::CredentialError),
    #[error("rate_limit_store.ca_file {path}: {source}")]
    CaFile {
        path: String,
        source: std::io::Error,
    },
    #[error("rate_limit_store: {0}")]
    Client(String),
}

/// The store and its health, shared by every route of the sidecar.
pub struct Store {
    conn: ConnectionManager,
    script: redis::Script,
    pub(super) config: RateLimitStore,
    metrics: Arc<Metrics>,
    up: AtomicBool,
    probing: AtomicBool,
    /// When the last outage ended, as ms since `started` (0: none yet).
    recovered_ms: AtomicU64,
    /// When the current outage began (for its end line).
    outage_began: std::sync::Mutex<Option<Instant>>,
    started: Instant,
    /// Unique member names: this process's random id and a counter.
    instance: String,
    seq: AtomicU64,
    stop: CancellationToken,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("url", &self.config.url)
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

/// The script's answer to an admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    Admitted {
        epoch: i64,
    },
    /// Every window needs `wait` before a slot frees; `busy`: a full window waits on a
    /// request in flight, whose finish time is not known yet.
    Wait {
        wait: Duration,
        busy: bool,
    },
    /// The store's epoch is not the one this sidecar saw last: seed, then admit again.
    Epoch(i64),
}

/// The `redis` client for the configuration: password and trust roots read now.
fn client(config: &RateLimitStore) -> Result<redis::Client, StoreError> {
    use redis::IntoConnectionInfo;
    let mut info = config
        .url
        .as_str()
        .into_connection_info()
        .map_err(|e| StoreError::Client(e.to_string()))?;
    if let Some(source) = &config.password {
        let password = crate::credential::read_secret(source)?;
        let settings = info
            .redis_settings()
            .clone()
            .set_password(password.expose_secret());
        info = info.set_redis_settings(settings);
    }
    match &config.ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|source| StoreError::CaFile {
                path: path.display().to_string(),
                source,
            })?;
            redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )
        }
        None => redis::Client::open(info),
    }
    .map_err(|e| StoreError::Client(e.to_string()))
}

impl Store {
    /// Set up the connection (lazily: a store that is down does not stop the start).
    pub fn new(
        config: &RateLimitStore,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> Result<Arc<Self>, StoreError> {
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout.max(Duration::from_millis(250))))
            .set_response_timeout(Some(config.timeout))
            // The probe below retries with its own backoff; a request never waits on more
            // than one attempt.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(100));
        let conn = ConnectionManager::new_lazy_with_config(client(config)?, manager)
            .map_err(|e| StoreError::Client(e.to_string()))?;
        metrics.store_up(false);
        Ok(Arc::new(Self {
            conn,
            script: redis::Script::new(SCRIPT),
            config: config.clone(),
            metrics,
            up: AtomicBool::new(false),
            probing: AtomicBool::new(false),
            recovered_ms: AtomicU64::new(0),
            outage_began: std::sync::Mutex::new(None),
            started: Instant::now(),
            instance: format!("{:016x}", rand::random::<u64>()),
            seq: AtomicU64::new(0),
            stop,
        }))
    }

    /// Connect for the first time, waiting at most `timeout`; if the store does not answer,
    /// start as in an outage (the fallback serves, a probe keeps trying).
    pub async fn connect(self: &Arc<Self>) {
        // The first connection (TCP, TLS, AUTH) may take longer than one call may: give it
        // half a second before calling it an outage.
        let until = Instant::now() + Duration::from_millis(500);
        let mut answer = self.ping().await;
        while answer.as_ref().is_err_and(|e| e.starts_with(NO_ANSWER)) && Instant::now() < until {
            answer = self.ping().await;
        }
        match answer {
            Ok(()) => {
                self.up.store(true, Ordering::Release);
                self.metrics.store_up(true);
                tracing::info!(store = %self.config.url, "rate limit store answered; windows are counted there");
            }
            Err(e) => self.failed(None, &e),
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub fn on_error(&self) -> OnError {
        self.config.on_error
    }

    /// Whether this sidecar's last outage ended less than `window` ago.
    pub(super) fn warming(&self, window: Duration) -> bool {
        let at = self.recovered_ms.load(Ordering::Acquire);
        at != 0 && self.started.elapsed() < Duration::from_millis(at) + window
    }

    /// A member name no other request of the fleet uses.
    pub(super) fn member(&self) -> String {
        format!(
            "{}:{}",
            self.instance,
            self.seq.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// The keys of a budget, both with the budget as their Redis Cluster hash tag.
    pub(super) fn keys(&self, budget: &str) -> [String; 2] {
        let p = &self.config.key_prefix;
        [
            format!("{p}:{{{budget}}}:requests"),
            format!("{p}:{{{budget}}}:epoch"),
        ]
    }

    /// Is the store usable? The script itself, on a key no budget uses, doing nothing (a
    /// release of no request): a store that answers PING but cannot run the script (an old
    /// Redis, a proxy that refuses EVALSHA) is not up, or every request would start an outage.
    async fn ping(&self) -> Result<(), String> {
        let args = ["release", "0", "0", "0", "0", "probe"].map(String::from);
        self.call(&self.keys("probe"), &args).await.map(drop)
    }

    /// Run the script once, within `timeout`.
    pub(super) async fn call(
        &self,
        keys: &[String; 2],
        args: &[String],
    ) -> Result<Vec<i64>, String> {
        let mut invocation = self.script.key(&keys[0]);
        invocation.key(&keys[1]);
        for a in args {
            invocation.arg(a);
        }
        let mut conn = self.conn.clone();
        let call = invocation.invoke_async::<Vec<i64>>(&mut conn);
        match tokio::time::timeout(self.config.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(describe(&e)),
            Err(_) => Err(format!("{NO_ANSWER} {:?}", self.config.timeout)),
        }
    }

    /// The script's answer to `admit` or `seed`.
    pub(super) fn answer(v: &[i64]) -> Result<Answer, String> {
        match v {
            [1, epoch, ..] => Ok(Answer::Admitted { epoch: *epoch }),
            [0, wait, busy, ..] => Ok(Answer::Wait {
                wait: Duration::from_millis(u64::try_from(*wait).unwrap_or(0)),
                busy: *busy != 0,
            }),
            [2, epoch, ..] => Ok(Answer::Epoch(*epoch)),
            other => Err(format!("unexpected answer from the script: {other:?}")),
        }
    }

    /// When the last outage ended (ms since start; 0: none).
    pub(super) fn recovered_ms(&self) -> u64 {
        self.recovered_ms.load(Ordering::Acquire)
    }

    /// A call failed: count it and, if the store was up, start an outage.
    pub(super) fn failed(self: &Arc<Self>, route: Option<&str>, error: &str) {
        if let Some(route) = route {
            self.metrics.store_error(route);
        }
        let was_up = self.up.swap(false, Ordering::AcqRel);
        let begins = match self.outage_began.lock() {
            Ok(mut began) if began.is_none() => {
                *began = Some(Instant::now());
                true
            }
            Ok(_) => false,
            Err(_) => was_up,
        };
        if begins {
            self.metrics.store_up(false);
            tracing::warn!(store = %self.config.url, error, on_error = %self.config.on_error, "rate limit store unreachable: an outage begins; the windows fall back to on_error until it answers again");
        }
        if !self.probing.swap(true, Ordering::AcqRel) {
            let this = self.clone();
            tokio::spawn(async move { this.probe().await });
        }
    }

    /// Probe the store with backoff until it answers (or the sidecar stops).
    async fn probe(self: Arc<Self>) {
        let mut delay = Duration::from_millis(50);
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(jitter(delay)) => {}
            }
            if self.ping().await.is_ok() {
                break;
            }
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        let began = self.outage_began.lock().ok().and_then(|mut g| g.take());
        let ms = u64::try_from(self.started.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        self.recovered_ms.store(ms, Ordering::Release);
        self.probing.store(false, Ordering::Release);
        self.up.store(true, Ordering::Release);
        self.metrics.store_up(true);
        tracing::info!(store = %self.config.url, outage = ?began.map(|b| b.elapsed()), "rate limit store answers again; the outage is over");
    }

    /// `check`: does the store answer? Within `timeout` (at least 1 s, a human is waiting).
    pub async fn check(config: &RateLimitStore) -> Result<Duration, String> {
        let client = client(config).map_err(|e| e.to_string())?;
        let limit = config.timeout.max(Duration::from_secs(1));
        let started = Instant::now();
        let answer = tokio::time::timeout(limit, async {
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| describe(&e))?;
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .map_err(|e| describe(&e))
        })
        .await;
        match answer {
            Ok(Ok(_)) => Ok(started.elapsed()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("no answer within {limit:?}")),
        }
    }
}

/// `check`'s lines for the store: whether it answered (a store that does not answer is said,
/// but is no problem: the sidecar starts and falls back to `on_error`), and a password that
/// cannot be read (the sidecar would not start).
pub fn report(config: &RateLimitStore, text: &mut String, problems: &mut Vec<String>) {
    use std::fmt::Write as _;
    let _ = writeln!(
        text,
        "rate limit store: {} (on_error = {}, timeout {:?})",
        config.url, config.on_error, config.timeout
    );
    if let Some(source) = &config.password
        && let Err(e) = crate::credential::read_secret(source)
    {
        problems.push(format!("rate_limit_store: password: {e}"));
        return;
    }
    // Its own thread and runtime: `check` may be called with or without one.
    let cfg = config.clone();
    let answer = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?
            .block_on(Store::check(&cfg))
    })
    .join()
    .unwrap_or_else(|_| Err("the check failed".into()));
    let _ = match answer {
        Ok(took) => writeln!(text, "  answered in {} ms", took.as_millis()),
        Err(e) => writeln!(
            text,
            "  did NOT answer: {e}; the sidecar still starts, and limits by on_error until it answers"
        ),
    };
}

/// A `redis` error in words that never include the password (the crate never prints it;
/// this keeps to the kind and the detail).
fn describe(e: &redis::RedisError) -> String {
    let mut text = e.to_string();
    text.truncate(200);
    text
}

fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.5 + rand::random::<f64>())
}
