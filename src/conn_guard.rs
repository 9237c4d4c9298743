//! Deadlines on an inbound connection that hyper's own timers do not cover: a client that
//! opens a connection and sends nothing (or only part of the h2 preface) before hyper has
//! even chosen HTTP/1 or h2, and a client that stops reading its answer (writes stall
//! forever, holding a connection slot and an upstream stream).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Bytes after which hyper has surely chosen its protocol (the h2 preface is 24).
const DETECTED_AFTER: usize = 24;

/// An inbound stream with a first-bytes deadline and a write-stall deadline.
pub struct ConnGuard<IO> {
    io: IO,
    /// Until the protocol is known: when the first bytes must have arrived.
    first_bytes: Option<Pin<Box<Sleep>>>,
    seen: usize,
    prefix: [u8; 4],
    write_stall: Duration,
    /// Made on the first stall and re-armed at each new one.
    stalled: Option<Pin<Box<Sleep>>>,
    stall_armed: bool,
}

impl<IO> ConnGuard<IO> {
    pub fn new(io: IO, first_bytes_within: Duration, write_stall: Duration) -> Self {
        Self {
            io,
            first_bytes: Some(Box::pin(tokio::time::sleep(first_bytes_within))),
            seen: 0,
            prefix: [0; 4],
            write_stall,
            stalled: None,
            stall_armed: false,
        }
    }

    fn note_read(&mut self, bytes: &[u8]) {
        let take = self.prefix.len().saturating_sub(self.seen).min(bytes.len());
        self.prefix[self.seen.min(4)..self.seen.min(4) + take].copy_from_slice(&bytes[..take]);
        self.seen += bytes.len();
        let h1_line_done = self.seen >= 4 && &self.prefix != b"PRI " && bytes.contains(&b'\n');
        if self.seen >= DETECTED_AFTER || h1_line_done {
            self.first_bytes = None;
        }
    }

    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let t = self.write_stall;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(t)));
        if !self.stall_armed {
            sleep.as_mut().reset(Instant::now() + t);
            self.stall_armed = true;
        }
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client stopped reading",
        )))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for ConnGuard<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.first_bytes.is_some() {
                    this.note_read(&buf.filled()[before..]);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let expired = this
                    .first_bytes
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if expired {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no request within header_read_timeout",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<IO> ConnGuard<IO> {
    /// Pass a write-side poll through; while it is pending, run the stall deadline.
    fn guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(r) => {
                self.stall_armed = false;
                Poll::Ready(r)
            }
            Poll::Pending => {
                ready!(self.poll_stall(cx))?;
                Poll::Pending
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for ConnGuard<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, data);
        this.guard(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.guard(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.guard(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_cut_off() {
        let (_client, server) = tokio::io::duplex(64);
        let mut g = ConnGuard::new(server, Duration::from_secs(1), Duration::from_secs(5));
        let mut buf = [0u8; 8];
        let err = g.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn once_a_request_line_arrived_reads_may_wait() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut g = ConnGuard::new(server, Duration::from_secs(1), Duration::from_secs(5));
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        assert!(g.read(&mut buf).await.unwrap() > 0);
        let waited = tokio::time::timeout(Duration::from_secs(10), g.read(&mut buf)).await;
        assert!(waited.is_err(), "no deadline once the protocol is known");
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_h2_preface_is_cut_off() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut g = ConnGuard::new(server, Duration::from_secs(1), Duration::from_secs(5));
        client.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        assert!(g.read(&mut buf).await.unwrap() > 0);
        assert_eq!(
            g.read(&mut buf).await.unwrap_err().kind(),
            io::ErrorKind::TimedOut
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_is_cut_off() {
        let (_client, server) = tokio::io::duplex(16);
        let mut g = ConnGuard::new(server, Duration::from_secs(1), Duration::from_secs(2));
        let big = vec![0u8; 1024];
        let err = g.write_all(&big).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
