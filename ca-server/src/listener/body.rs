//! A request body that must arrive whole within `server.body_read_timeout`
//! of the request's arrival — one deadline for the whole body, not per
//! chunk, so a client trickling a byte at a time cannot hold it open.
//! Hand-written because tower-http's `RequestBodyTimeoutLayer` restarts its
//! timer after every frame, which is exactly what a trickling client exploits.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use tokio::time::Sleep;

/// The error a body reports when its deadline passed; the HTTP layer answers
/// it `408 body_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the server's body read timeout")]
pub struct BodyTimedOut;

/// `inner` with one deadline for all of it.
struct Deadlined<B> {
    inner: B,
    deadline: Pin<Box<Sleep>>,
}

/// Wraps `body` so that it fails with [`BodyTimedOut`] once `timeout` has
/// passed from now. A body that is already complete is left alone.
pub fn with_deadline<B>(body: B, timeout: Duration) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<axum::BoxError>,
{
    if body.is_end_stream() {
        return Body::new(body);
    }
    Body::new(Deadlined {
        inner: body,
        deadline: Box::pin(tokio::time::sleep(timeout)),
    })
}

impl<B> http_body::Body for Deadlined<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
