//! Bodies in flight: the one boxed body type the proxy hands around, and [`Guarded`], which
//! streams a body through while enforcing a size limit and an idle timeout, counting its
//! bytes and reporting (for the access log) when it ends or is dropped.

use std::cell::Cell;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

/// Errors inside a body, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every request and response the proxy builds or forwards.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

mod outgoing;
pub use outgoing::{Outgoing, Prefixed};

/// A body of fixed bytes.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pin_project! {
    /// A body that keeps `held` (a slot) until the body has given its last frame or failed,
    /// or is dropped (the client went away): the slot is free as soon as the upstream body
    /// is all read, even if the client is slow to take it.
    pub struct Holding<B, T> {
        #[pin]
        body: B,
        held: Option<T>,
    }
}

impl<B, T> Holding<B, T> {
    pub fn new(body: B, held: T) -> Self {
        Self {
            body,
            held: Some(held),
        }
    }
}

impl<B: Body, T> Body for Holding<B, T> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let polled = this.body.poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.held.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Why a guarded body was cut short.
#[derive(Debug, Clone, Copy, thiserror::Error)]
pub enum BodyError {
    /// More bytes than the limit.
    #[error("body is larger than the limit of {0} bytes")]
    TooLarge(u64),
    /// No bytes for longer than the idle timeout.
    #[error("body stalled for longer than {0:?}")]
    Idle(Duration),
    /// The body underneath failed (bad chunked framing, connection cut).
    #[error("the body is malformed or was cut off")]
    Broken,
}

/// Told how a body ended: `bytes` passed, and whether it reached its end cleanly.
pub trait OnEnd: Send + 'static {
    fn body_ended(self: Box<Self>, bytes: u64, complete: bool);
}

pin_project! {
    /// A body passed through with a limit, an idle timeout and an end-of-body report.
    pub struct Guarded<B> {
        #[pin]
        inner: B,
        idle_timeout: Option<Duration>,
        idle: Option<Pin<Box<Sleep>>>,
        limit: Option<u64>,
        fault: Option<Arc<OnceLock<BodyError>>>,
        tail: Tail,
    }
}

struct Tail {
    bytes: u64,
    // A Cell because `is_end_stream(&self)` is where hyper learns that a body is done
    // without polling it to `None`.
    complete: Cell<bool>,
    on_end: Option<Box<dyn OnEnd>>,
}

impl Drop for Tail {
    fn drop(&mut self) {
        if let Some(on_end) = self.on_end.take() {
            on_end.body_ended(self.bytes, self.complete.get());
        }
    }
}

impl<B> Guarded<B> {
    /// Wrap `inner`. `None` turns a guard off.
    pub fn new(
        inner: B,
        limit: Option<u64>,
        idle_timeout: Option<Duration>,
        on_end: Option<Box<dyn OnEnd>>,
    ) -> Self {
        Self {
            inner,
            idle_timeout,
            idle: None,
            limit,
            fault: None,
            tail: Tail {
                bytes: 0,
                complete: Cell::new(false),
                on_end,
            },
        }
    }
}

impl<B> Guarded<B> {
    /// Also record why the body was cut short in `fault`: once the body is handed to the
    /// HTTP client, its error may reach the caller only as "stream reset".
    pub fn with_fault(mut self, fault: Arc<OnceLock<BodyError>>) -> Self {
        self.fault = Some(fault);
        self
    }
}

fn fail(fault: &Option<Arc<OnceLock<BodyError>>>, err: BodyError) -> BoxError {
    if let Some(f) = fault {
        let _ = f.set(err);
    }
    err.into()
}

impl<B> Body for Guarded<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.tail.bytes += data.len() as u64;
                    if let Some(limit) = *this.limit
                        && this.tail.bytes > limit
                    {
                        return Poll::Ready(Some(Err(fail(
                            this.fault,
                            BodyError::TooLarge(limit),
                        ))));
                    }
                }
                if let (Some(idle), Some(t)) = (this.idle.as_mut(), *this.idle_timeout) {
                    idle.as_mut().reset(Instant::now() + t);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                if let Some(f) = this.fault {
                    let _ = f.set(BodyError::Broken);
                }
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.tail.complete.set(true);
                Poll::Ready(None)
            }
            Poll::Pending => {
                let Some(t) = *this.idle_timeout else {
                    return Poll::Pending;
                };
                let idle = this
                    .idle
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(t)));
                ready!(idle.as_mut().poll(cx));
                Poll::Ready(Some(Err(fail(this.fault, BodyError::Idle(t)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end {
            self.tail.complete.set(true);
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Record(Arc<Mutex<Option<(u64, bool)>>>);
    impl OnEnd for Record {
        fn body_ended(self: Box<Self>, bytes: u64, complete: bool) {
            *self.0.lock().unwrap() = Some((bytes, complete));
        }
    }

    #[tokio::test]
    async fn counts_bytes_and_reports_a_clean_end() {
        let seen = Arc::new(Mutex::new(None));
        let b = Guarded::new(
            Full::new(Bytes::from_static(b"hello")),
            Some(10),
            None,
            Some(Box::new(Record(seen.clone()))),
        );
        let out = b.collect().await.unwrap().to_bytes();
        assert_eq!(&out[..], b"hello");
        assert_eq!(*seen.lock().unwrap(), Some((5, true)));
    }

    #[tokio::test]
    async fn a_slot_is_let_go_at_the_last_frame_not_when_the_body_is_dropped() {
        let slot = Arc::new(());
        let (mut tx, body) = http_body_util::channel::Channel::<Bytes, BoxError>::new(2);
        let mut b = Holding::new(body, slot.clone());
        tx.send_data(Bytes::from_static(b"a")).await.unwrap();
        drop(tx);
        assert!(b.frame().await.unwrap().is_ok());
        assert_eq!(Arc::strong_count(&slot), 2, "held while frames remain");
        assert!(b.frame().await.is_none());
        assert_eq!(
            Arc::strong_count(&slot),
            1,
            "let go at the end, body still alive"
        );
        drop(b);

        let held = Holding::new(Full::new(Bytes::from_static(b"x")), slot.clone());
        assert_eq!(Arc::strong_count(&slot), 2);
        drop(held);
        assert_eq!(Arc::strong_count(&slot), 1, "let go when dropped unread");
    }

    #[tokio::test]
    async fn refuses_more_than_the_limit() {
        let b = Guarded::new(Full::new(Bytes::from_static(b"hello")), Some(4), None, None);
        let err = b.collect().await.unwrap_err();
        assert!(err.downcast_ref::<BodyError>().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_times_out() {
        let (_tx, body) = http_body_util::channel::Channel::<Bytes, BoxError>::new(1);
        let b = Guarded::new(body, None, Some(Duration::from_secs(3)), None);
        let err = b.collect().await.unwrap_err();
        assert!(matches!(
            err.downcast_ref::<BodyError>(),
            Some(BodyError::Idle(_))
        ));
    }
}
