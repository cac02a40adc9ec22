//! Sluice: a WebAssembly-programmable API gateway.
//!
//! A request flows one way through these modules:
//! [`server`] (listeners) → [`proxy`] (the request path) → [`router`] (which route) → plugin phases
//! `rewrite`/`access` ([`chain`] of [`plugin`] instances) → [`upstream`] + [`balancer`] (which healthy node,
//! pooled connection) → `header_filter` → client → access log, [`metrics`] and `log` phase.
//! Configuration enters through [`admin`], is typed by [`config`], persisted by [`store`] and compiled
//! into the immutable [`snapshot`] the request path reads; [`catalog`] turns each `plugins` map entry into a
//! configured plugin once per config version. [`tls`] terminates HTTPS (certificates from `ssls`)
//! and originates TLS to `https` upstreams. [`native`] lists the APISIX plugins served natively rather than
//! as Wasm ([`traffic_split`] chooses the upstream; `client-control` bounds the body as it streams), and
//! [`limits`] what a client may send and for how long, with the reasons for each default. [`cluster`] keeps
//! a node's snapshot in step with an etcd store shared by several nodes.
//!
//! What the gateway tells operators leaves the request path through bounded buffers: [`access_log`] (one
//! line per request, formatted by the worker, written by its own thread), [`log_sink`] (batched deliveries for logger plugins) and
//! [`otel`] (request spans over OTLP); [`http_client`] sends the last two's HTTP. [`metrics`] counts in
//! place (atomics) and is encoded only when scraped.

pub mod access_log;
pub mod admin;
pub mod balancer;
pub mod builtins;
pub mod catalog;
pub mod chain;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod consumers;
pub mod http_client;
pub mod limits;
pub mod log_sink;
pub mod logging;
pub mod metrics;
pub mod native;
pub mod otel;
pub mod plugin;
pub mod proxy;
pub mod request_vars;
pub mod router;
pub mod server;
pub mod settings;
pub mod snapshot;
pub mod store;
pub mod tls;
pub mod traffic_split;
pub mod upstream;
