//! The client's request body on its way upstream: counted against the route's body limit, and with its
//! failures told apart from the upstream's.
//!
//! Why a wrapper rather than a check of `Content-Length` alone: chunked and HTTP/2 bodies announce no
//! length, so the limit can only be enforced as the bytes arrive. A body that goes over it, or whose
//! framing breaks mid-stream, fails the upstream exchange with a [`ClientBodyError`], which the proxy
//! answers as the client's fault (413, 400) instead of blaming the upstream with a 502 and a passive
//! health-check failure.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll};

#[derive(Debug, thiserror::Error)]
pub enum ClientBodyError {
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the request body broke off: {0}")]
    Broken(#[source] hyper::Error),
}

pub struct ClientBody {
    inner: Incoming,
    limit: u64,
    seen: u64,
}

impl ClientBody {
    pub fn new(inner: Incoming, limit: u64) -> Self {
        ClientBody {
            inner,
            limit,
            seen: 0,
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen = this.seen.saturating_add(data.len() as u64);
                    if this.seen > this.limit {
                        return Poll::Ready(Some(Err(ClientBodyError::TooLarge {
                            limit: this.limit,
                        })));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(ClientBodyError::Broken(e)))),
            other => other.map_err(ClientBodyError::Broken),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
