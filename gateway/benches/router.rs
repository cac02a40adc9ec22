//! Router lookup cost for 10 vs 10,000 routes: it must stay flat, since the
//! exact map and the prefix trie never scan the route list.
//!
//! Only the crate name below differs between the scratch crate and the
//! gateway (`use sluice::router::...`).
use sluice::router::{RouteSpec, Router, VarSource};

use std::borrow::Cow;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use http::Method;
use serde_json::json;

/// Route `i`: even → prefix `/api/v1/svc{i}/items/*`, odd → exact
/// `/api/v1/svc{i}/items`; every 3rd limited to GET/POST, every 5th to a
/// host, every 7th gated by a vars expression. The two middle routes (the
/// benchmark targets) carry all three, so every size evaluates the same
/// conditions on a hit.
fn specs(n: usize) -> Vec<RouteSpec<usize>> {
    let full = |i: usize| i == n / 2 || i == n / 2 + 1;
    (0..n)
        .map(|i| {
            let uri = if i % 2 == 0 {
                format!("/api/v1/svc{i}/items/*")
            } else {
                format!("/api/v1/svc{i}/items")
            };
            let mut s = RouteSpec::new(i.to_string(), uri, i);
            if i % 3 == 0 || full(i) {
                s = s.methods([Method::GET, Method::POST]);
            }
            if i % 5 == 0 || full(i) {
                s = s.hosts([format!("svc{i}.example.com"), "*.internal".to_string()]);
            }
            if i % 7 == 0 || full(i) {
                s = s.vars(json!([["http_x_env", "==", "prod"], ["arg_page", ">", 0]]));
            }
            s
        })
        .collect()
}

/// Stands in for the gateway's lazy request-variable view.
struct Req;

impl VarSource for Req {
    fn var(&self, name: &str) -> Option<Cow<'_, str>> {
        match name {
            "http_x_env" => Some(Cow::Borrowed("prod")),
            "arg_page" => Some(Cow::Borrowed("3")),
            "remote_addr" => Some(Cow::Borrowed("10.1.2.3")),
            _ => None,
        }
    }
}

/// The middle route with the given parity (prefix = even, exact = odd).
fn middle(n: usize, even: bool) -> usize {
    let m = n / 2;
    if (m % 2 == 0) == even {
        m
    } else {
        m + 1
    }
}

fn bench_size(c: &mut Criterion, n: usize) {
    let router = match Router::build(specs(n)) {
        Ok(r) => r,
        Err(e) => panic!("bench routes must build: {e}"),
    };
    let (p, e) = (middle(n, true), middle(n, false));
    let prefix_path = format!("/api/v1/svc{p}/items/12345");
    let prefix_host = format!("svc{p}.example.com:8080");
    let exact_path = format!("/api/v1/svc{e}/items");
    let exact_host = format!("svc{e}.example.com");
    assert_eq!(
        router.find(&Method::GET, Some(&prefix_host), &prefix_path, &Req),
        Some(&p)
    );
    assert_eq!(
        router.find(&Method::GET, Some(&exact_host), &exact_path, &Req),
        Some(&e)
    );

    let mut g = c.benchmark_group(format!("router_{n}_routes"));
    g.bench_function("hit_prefix", |b| {
        b.iter(|| {
            router.find(
                black_box(&Method::GET),
                black_box(Some(prefix_host.as_str())),
                black_box(prefix_path.as_str()),
                &Req,
            )
        })
    });
    g.bench_function("hit_exact", |b| {
        b.iter(|| {
            router.find(
                black_box(&Method::GET),
                black_box(Some(exact_host.as_str())),
                black_box(exact_path.as_str()),
                &Req,
            )
        })
    });
    g.bench_function("miss", |b| {
        b.iter(|| {
            router.find(
                black_box(&Method::GET),
                black_box(Some("nowhere.example.com")),
                black_box("/api/v2/unknown/thing"),
                &Req,
            )
        })
    });
    g.bench_function("miss_deep", |b| {
        let path = format!("/api/v1/svc{p}/other/1");
        b.iter(|| {
            router.find(
                black_box(&Method::GET),
                black_box(Some("nowhere.example.com")),
                black_box(path.as_str()),
                &Req,
            )
        })
    });
    g.finish();
}

fn routers(c: &mut Criterion) {
    bench_size(c, 10);
    bench_size(c, 10_000);
}

criterion_group!(benches, routers);
criterion_main!(benches);
