//! TLS, both ways: terminating HTTPS for clients with certificates from `ssls` objects ([`listener`]), and
//! originating TLS to `scheme: "https"` upstreams ([`upstream`]).
//!
//! rustls with the ring provider throughout ([`keys::provider`]), TLS 1.2 and 1.3 only. PEM parsing and the
//! key/certificate match check live in [`keys`] so the admin API's validation and the listener load
//! certificates the same way: a write that passes validation always compiles for the listener.

pub mod keys;
pub mod listener;
pub mod upstream;

pub use keys::KeyError;
pub use listener::{compile_ssl, AcceptError, TlsAcceptor};
pub use upstream::{client_config, UpstreamTlsSpec};
