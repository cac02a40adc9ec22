//! What a client may send and how long it may take, applied by every proxy listener.
//!
//! Each default is finite, because an unbounded one is a resource the first careless or hostile client
//! takes: a head that never ends, a body that never ends, a connection that idles forever, an HTTP/2
//! connection that opens and resets streams as fast as the socket allows. Where the answer is an HTTP status
//! the client gets the specific one (431 head too large, 414 URI too long, 413 body too large) and a body
//! refused for its size never reaches an upstream.
//!
//! | limit | default | why this value |
//! |---|---|---|
//! | head size (request line + headers) | 60 KiB | above what large cookies and JWTs need (nginx's 4 × 8 KiB buffers, Envoy's 60 KiB) |
//! | header count | 100 | hyper's and Envoy's default; a legitimate client rarely sends 30 |
//! | URI (path + query) | 8 KiB | nginx's `large_client_header_buffers` line limit; longer is an attack or a bug |
//! | body | 1 GiB | finite, yet above every upload an API usually takes; per route: `client-control.max_body_size` |
//! | head read time | 30 s | slowloris guard; also how long an HTTP/1.1 keep-alive connection may wait for its next request |
//! | idle connection | 60 s | a connection with no request in flight is closed after this (HTTP/2 gets a GOAWAY) |
//! | connections per listener | 16384 | past it new connections are closed at once rather than queued without bound |
//! | HTTP/2 concurrent streams | 128 | nginx's and Envoy's order of magnitude; more streams per client add no fairness |
//!
//! HTTP/2 flood limits are fixed here rather than flags: [`H2_MAX_PENDING_ACCEPT_RESET_STREAMS`] caps streams a
//! client opens and resets before the server sees them (CVE-2023-44487, "rapid reset": past it the connection
//! gets GOAWAY `ENHANCE_YOUR_CALM`), [`H2_MAX_LOCAL_ERROR_RESET_STREAMS`] caps streams a client makes the server
//! reset ("MadeYouReset"), and the header list, frame and send buffer sizes bound what one stream may hold.

use std::time::Duration;

/// Limits on client requests and connections; see the module docs for the defaults and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// Request line plus header fields, in bytes (HTTP/1.1); the header list (HTTP/2, RFC 7540 §6.5.2 sizing).
    pub max_head_bytes: usize,
    pub max_headers: usize,
    pub max_uri_bytes: usize,
    pub max_body_bytes: u64,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub h2_max_concurrent_streams: u32,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            max_head_bytes: 60 << 10,
            max_headers: 100,
            max_uri_bytes: 8 << 10,
            max_body_bytes: 1 << 30,
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 16384,
            h2_max_concurrent_streams: 128,
        }
    }
}

/// Streams a client may open and reset before the server accepted them, per connection.
pub const H2_MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;
/// Streams the server may reset because of client errors, per connection.
pub const H2_MAX_LOCAL_ERROR_RESET_STREAMS: usize = 256;
/// Largest frame payload we accept (the protocol's minimum maximum; larger frames buy nothing for an API).
pub const H2_MAX_FRAME_SIZE: u32 = 16 << 10;
/// Bytes buffered per stream for sending before the stream's writer is made to wait.
pub const H2_MAX_SEND_BUF: usize = 256 << 10;
/// How often an idle-looking HTTP/2 connection is pinged, and how long the ping may go unanswered.
pub const H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
pub const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
