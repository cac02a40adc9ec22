//! What one access-log line costs on the worker that finishes the request: the header clones the JSON
//! format needs, formatting the line (JSON and `combined`), and buffering it for the writer thread. `bench/run.sh` measures the whole effect under load (`sluice-accesslog*`).
use sluice::access_log::{AccessLog, Format, Record, Target};

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Version};
use std::hint::black_box;
use std::time::Duration;

/// What wrk sends and a small JSON API answers.
fn headers() -> (HeaderMap, HeaderMap) {
    let mut req = HeaderMap::new();
    req.insert("host", HeaderValue::from_static("127.0.0.1:9080"));
    req.insert("user-agent", HeaderValue::from_static("wrk/4.1.0"));
    req.insert("accept", HeaderValue::from_static("*/*"));
    let mut resp = HeaderMap::new();
    resp.insert("content-type", HeaderValue::from_static("application/json"));
    resp.insert("content-length", HeaderValue::from_static("1024"));
    resp.insert(
        "date",
        HeaderValue::from_static("Thu, 03 Dec 2026 16:00:00 GMT"),
    );
    (req, resp)
}

fn record(req: HeaderMap, resp: HeaderMap) -> Record {
    Record {
        started_unix_ms: 1_796_313_951_635,
        latency: Duration::from_micros(812),
        upstream_latency: Some(Duration::from_micros(640)),
        upstream: Some("127.0.0.1:8080".parse().unwrap()),
        client: "127.0.0.1:51234".parse().unwrap(),
        method: Method::GET,
        scheme: "http",
        host: Some(HeaderValue::from_static("127.0.0.1:9080")),
        uri: http::Uri::from_static("/bench?id=42"),
        version: Version::HTTP_11,
        request_headers: req,
        request_bytes: 0,
        status: StatusCode::OK,
        response_headers: resp,
        response_bytes: 1024,
        route_id: Some("1".to_string()),
        service_id: None,
        consumer: None,
        complete: true,
    }
}

fn lines(c: &mut Criterion) {
    let (req, resp) = headers();
    c.bench_function("request path: clone request + response headers", |b| {
        b.iter(|| black_box((req.clone(), resp.clone())))
    });
    for (name, format) in [("json", "json"), ("combined", "combined")] {
        let format: Format = format.parse().unwrap();
        let r = record(req.clone(), resp.clone());
        let mut out = Vec::with_capacity(4096);
        c.bench_function(&format!("format one {name} line"), |b| {
            b.iter(|| {
                out.clear();
                format.write(black_box(&r), &mut out);
                black_box(out.len())
            })
        });
    }
    let log = AccessLog::start(Target::File("/dev/null".into()), Format::Json).unwrap();
    c.bench_function(
        "request path: clone headers, format and buffer one json line",
        |b| b.iter(|| log.log(record(req.clone(), resp.clone()))),
    );
    log.close(Duration::from_secs(5));
}

criterion_group!(benches, lines);
criterion_main!(benches);
