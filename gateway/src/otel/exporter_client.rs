//! The OTLP exporter's HTTP client: [`crate::http_client`] on a small runtime of its own.
//!
//! The SDK's batch processor exports from its own thread, outside any tokio runtime, and awaits the
//! client's future there; so the request runs on this client's runtime and the future only waits on a
//! oneshot channel, which works under any executor.

use bytes::Bytes;
use http_body_util::Full;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use std::time::Duration;

pub struct Client {
    /// `None` only once dropped.
    runtime: Option<tokio::runtime::Runtime>,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("otlp::Client").finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(timeout: Duration) -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sluice-otlp")
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        Ok(Client {
            runtime: Some(runtime),
            timeout,
        })
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // The exporter may be dropped on an async worker, where dropping a runtime would block.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for Client {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let timeout = self.timeout;
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| HttpError::from("the OTLP client is shut down"))?;
        runtime.spawn(async move {
            let _ = tx.send(crate::http_client::send(request.map(Full::new), timeout).await);
        });
        rx.await
            .map_err(|_| HttpError::from("the OTLP client runtime stopped"))?
            .map_err(HttpError::from)
    }
}
