//! Integration tests: the real `sluice` binary over real sockets, one module per area.
//!
//! One test binary rather than one per file: each binary links reqwest, hyper and rustls again, and
//! twenty of them cost minutes of linking and gigabytes of disk on every CI run.
mod admin_api;
mod api_breaker;
mod bad_input;
mod balancing;
mod builtin_auth;
mod builtin_cache;
mod builtin_limits;
mod builtin_traffic;
mod cli;
mod cluster_etcd;
mod cluster_redis;
mod compression;
mod config_swap;
mod discovery;
mod grpc;
mod harness;
mod health_checks;
mod keepalive;
mod limits;
mod logging;
mod metrics;
mod persistence;
mod plugins;
mod routing;
mod smuggling;
mod streaming;
mod tls;
mod tracing;
mod traffic_split;
mod upstream_failures;
mod websocket;
