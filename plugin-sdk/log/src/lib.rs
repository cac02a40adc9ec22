//! What the Sluice access log and its logger plugins share.
//!
//! - [`entry`]: one request's log entry in APISIX's format, as JSON. The gateway writes it to its access
//!   log (natively, from the proxy's own records) and the logger plugins build it inside the guest (from
//!   the WIT `request`/`response` imports and `response.completion`); one serializer keeps both
//!   byte-for-byte alike, so a pipeline that parses one parses the other.
//! - [`sink_rules`]: what a `log-sink` destination and batch policy may be. The gateway enforces them and
//!   the SDK's native test host mirrors them, from this one definition.
//!
//! Why a crate of its own: both sides need the same code, and one side is a guest. Hence the constraints:
//! no I/O and nothing that needs an operating system, so it builds for `wasm32-unknown-unknown`.

pub mod entry;
pub mod sink_rules;

pub use entry::{Entry, HeaderPairs, NoHeaders, Request, Response};
