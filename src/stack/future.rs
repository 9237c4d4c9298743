//! The futures the layers share, named so that the stack compiles to one call chain with no
//! boxed future per layer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

pin_project! {
    /// A check that ran before the inner service: either its refusal, or the inner call.
    #[project = CheckedProj]
    pub enum Checked<F, E> {
        Refused { error: Option<E> },
        Inner { #[pin] future: F },
    }
}

impl<F, E> Checked<F, E> {
    pub fn refused(error: impl Into<E>) -> Self {
        Checked::Refused {
            error: Some(error.into()),
        }
    }

    pub fn inner(future: F) -> Self {
        Checked::Inner { future }
    }
}

impl<F, T, E> Future for Checked<F, E>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            CheckedProj::Refused { error } => match error.take() {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            },
            CheckedProj::Inner { future } => future.poll(cx),
        }
    }
}
