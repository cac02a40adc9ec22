//! Accepting on a proxy listener: Nagle off, a back-off on accept errors, and a slot under the
//! listener's connection limit for every connection admitted.

use super::connection::Slots;
use crate::limits::ClientLimits;
use crate::proxy::Conn;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;

pub struct ProxyListener {
    name: &'static str,
    listener: TcpListener,
    slots: Slots,
    /// The address the listener was configured with, if a socket cannot tell its own.
    configured: SocketAddr,
}

impl ProxyListener {
    pub fn new(
        name: &'static str,
        listener: TcpListener,
        limits: &ClientLimits,
        configured: SocketAddr,
    ) -> Self {
        ProxyListener {
            name,
            listener,
            slots: Slots::new(limits),
            configured,
        }
    }

    /// The next admitted connection. A failed accept backs off briefly (so running out of file descriptors
    /// never spins), and a connection past the limit is closed at once: queueing it would hold memory
    /// without bound, and a client told "no" can retry elsewhere.
    pub async fn admit(&self) -> (TcpStream, Conn, OwnedSemaphorePermit) {
        let (stream, client, slot) = loop {
            let (stream, client) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(listener = self.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match self.slots.take() {
                Some(slot) => break (stream, client, slot),
                None => {
                    tracing::warn!(listener = self.name, %client, "connection limit reached; closing a new connection");
                }
            }
        };
        // Proxied writes are small and latency-bound.
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(self.configured);
        let conn = Conn {
            client,
            local,
            scheme: self.name,
        };
        (stream, conn, slot)
    }
}
