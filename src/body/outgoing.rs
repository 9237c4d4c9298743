//! Bodies the proxy builds: the request body on its way to DigiCert ([`Outgoing`]) and an
//! answer whose first bytes were already read ([`Prefixed`]).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::{BoxError, ProxyBody};

pin_project! {
    /// A request body on its way to DigiCert: held in memory (small; can be sent again, on
    /// a retry or with a reloaded credential) or streamed through (sent once).
    #[project = OutgoingProj]
    pub enum Outgoing {
        Held { bytes: Option<Bytes> },
        Streamed { #[pin] body: ProxyBody },
    }
}

impl Outgoing {
    /// A body of these bytes, which can be sent again.
    pub fn held(bytes: Bytes) -> Self {
        Outgoing::Held { bytes: Some(bytes) }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Outgoing::Held { bytes: None }
    }

    /// A body streamed through once.
    pub fn streamed(body: ProxyBody) -> Self {
        Outgoing::Streamed { body }
    }

    /// Another copy to send again, if the body is held.
    pub fn try_clone(&self) -> Option<Self> {
        match self {
            Outgoing::Held { bytes } => Some(Outgoing::Held {
                bytes: bytes.clone(),
            }),
            Outgoing::Streamed { .. } => None,
        }
    }
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outgoing::Held { bytes } => {
                write!(f, "Held({} bytes)", bytes.as_ref().map_or(0, Bytes::len))
            }
            Outgoing::Streamed { .. } => f.write_str("Streamed"),
        }
    }
}

impl Body for Outgoing {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            OutgoingProj::Held { bytes } => Poll::Ready(
                bytes
                    .take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            OutgoingProj::Streamed { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Outgoing::Held { bytes } => bytes.as_ref().is_none_or(Bytes::is_empty),
            Outgoing::Streamed { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Outgoing::Held { bytes } => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Outgoing::Streamed { body } => body.size_hint(),
        }
    }
}

pin_project! {
    /// `prefix`, then the rest of a body whose first bytes were already read.
    pub struct Prefixed<B> {
        prefix: Option<Bytes>,
        #[pin]
        rest: B,
    }
}

impl<B> Prefixed<B> {
    pub fn new(prefix: Bytes, rest: B) -> Self {
        Self {
            prefix: Some(prefix).filter(|p| !p.is_empty()),
            rest,
        }
    }
}

impl<B: Body<Data = Bytes>> Body for Prefixed<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        if let Some(prefix) = this.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        this.rest.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.rest.size_hint();
        let extra = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        hint.set_lower(hint.lower() + extra);
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + extra);
        }
        hint
    }
}
