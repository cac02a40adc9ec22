//! `support`: the test DSL for Sluice's integration tests.
//!
//! Every test runs the real `sluice` binary against real HTTP servers on `127.0.0.1:0`, so a test reads like the
//! behaviour it checks:
//!
//! ```text
//! let a = origin("a").start();                                   // a real upstream, records what it receives
//! let gw = gateway().start().await;                              // the real binary, fresh data dir, ephemeral ports
//! gw.put_ok("routes", "1", json!({"uri": "/hi", "upstream": upstream(&[&a])})).await;
//! let r = gw.get("/hi").await;                                   // proxied request
//! assert_eq!((r.status, r.origin()), (200, Some("a")));
//! ```
//!
//! Recipe for a new test file:
//! 0. Tests live in `tests/tests/it/<area>.rs`, each a module of the one test binary `it` (declare it in
//!    `tests/tests/it/main.rs`); run one area with `cargo test -p sluice-tests --test it <area>::`.
//! 1. `use support::*;` and `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]`.
//! 2. Start the origins you need with [`origin`]; each runs on its own background runtime and stops on drop.
//! 3. Start a gateway with [`gateway`]; it is killed on drop, and its log tail is printed when the test panics.
//! 4. Configure it through [`Gateway::admin`] / [`Gateway::put_ok`], then send traffic with [`Gateway::get`],
//!    [`Gateway::request`] + [`send`], or your own [`client`]/[`h2c_client`].
//! 5. For what the gateway sends elsewhere (logger plugin batches, OTLP spans), point it at a [`collector`].
//! 6. For HTTPS, see [`tls`]: certificates made with rcgen, [`tls::TlsClient`] against [`Gateway::https_addr`],
//!    and [`OriginBuilder::tls`] for an HTTPS upstream.
//! 6. For several nodes, start an [`Etcd`] (and a [`Redis`] for shared counters) and give each gateway
//!    `--config-store` [`Etcd::store_url`]; a [`TcpProxy`] in between can cut one node off etcd.
//! 7. For service discovery, start a [`dns_server`] (zone `test.`), give the gateway `--dns-resolver`
//!    [`DnsServer::addr`], and change its records while the test runs.
//!
//! The binary is found at `$SLUICE_BIN`, else `<target dir>/debug/sluice`; build it first with
//! `cargo build -p sluice --bins`.

mod admin;
mod client;
mod cluster;
mod collector;
mod distribution;
mod dns;
mod gateway;
mod metrics;
mod origin;
mod pattern;
mod plugins;
mod raw;
pub mod tls;
mod util;

pub use admin::{Admin, Reply};
pub use client::{client, h2c_client, send, try_send, Resp};
pub use cluster::{free_port, Etcd, Redis, TcpProxy};
pub use collector::{collector, Collector, Posted};
pub use distribution::spread;
pub use dns::{dns_server, DnsRecordType, DnsServer, Srv};
pub use gateway::{gateway, parse_listening, sluice_bin, Gateway, GatewayBuilder};
pub use metrics::Scrape;
pub use origin::{origin, Origin, OriginBuilder, Record};
pub use pattern::{pattern_stream, PatternCheck, PATTERN_PERIOD};
pub use plugins::plugin_wasm;
pub use raw::{parse_responses, raw, read_exchange, RawExchange, RawResponse};
pub use util::{blackhole, closed_port, eventually, nodes, upstream, Blackhole};

pub use serde_json::{json, Value};
pub use std::time::{Duration, Instant};
