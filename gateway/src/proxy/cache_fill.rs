//! Tees a proxied response body into the response cache (`cache.store-response` from a plugin).
//!
//! The body goes to the client chunk by chunk as always; a copy accumulates beside it and is stored only
//! when the stream ends cleanly and stayed under [`MAX_FILL`]. Storing at the end, from the body the
//! client actually received, means a truncated upstream response is never cached, and the plugin never
//! has to see (or copy through the guest) the body at all. The fill lock travels with the body, so
//! requests waiting on this key wake exactly when the entry is stored or the attempt is abandoned.

use super::body::{BoxError, ResponseBody};
use crate::plugin::services::CachedResponse;
use crate::plugin::state::PendingStore;
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Largest body stored. Hits hand the body to the plugin through its linear memory (32 MiB per
/// instance), so entries stay well below that.
pub const MAX_FILL: usize = 4 << 20;

pub struct CacheFillBody {
    inner: ResponseBody,
    store: Option<PendingStore>,
    buf: BytesMut,
}

impl CacheFillBody {
    pub fn new(inner: ResponseBody, store: PendingStore) -> Self {
        CacheFillBody {
            inner,
            store: Some(store),
            buf: BytesMut::new(),
        }
    }

    fn keep(&mut self, data: &Bytes) {
        if self.store.is_none() {
            return;
        }
        if self.buf.len() + data.len() > MAX_FILL {
            // Too big to cache: give up now (releasing the fill lock) rather than buffer the rest.
            self.store = None;
            self.buf = BytesMut::new();
            return;
        }
        self.buf.extend_from_slice(data);
    }

    fn commit(&mut self) {
        let Some(store) = self.store.take() else {
            return;
        };
        let entry = CachedResponse {
            status: store.status,
            headers: store.headers,
            body: std::mem::take(&mut self.buf).freeze(),
        };
        if let Err(e) = store.cache.put(&store.key, entry, store.ttl) {
            tracing::debug!(key = %store.key.replace('\0', "/"), "response not cached: {e}");
        }
        // `store.lock` drops here, after the entry is in: waiters wake to a hit.
    }
}

impl Body for CacheFillBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.keep(data);
                }
                if this.inner.is_end_stream() {
                    this.commit();
                }
            }
            Poll::Ready(None) => this.commit(),
            // A failed stream is never cached; dropping the store releases the lock.
            Poll::Ready(Some(Err(_))) => this.store = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
