//! Response compression (`gzip`, `brotli`) negotiated per request: the right encoding or none, headers that
//! say so, bodies that decode to what the upstream sent, and streams that keep streaming.

use futures_util::StreamExt;
use std::io::{Read, Write};
use support::*;

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

fn unbrotli(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(b, 4096)
        .read_to_end(&mut out)
        .expect("valid brotli");
    out
}

async fn fixture(plugins: Value) -> (Gateway, Origin) {
    let o = origin("o").header("etag", "\"v1\"").start();
    let gw = gateway().start().await;
    gw.route_to("c", "/*", &o, plugins).await;
    (gw, o)
}

/// A client that never decodes by itself, so the test sees the wire bytes.
fn get(gw: &Gateway, path: &str, accept: Option<&str>) -> reqwest::RequestBuilder {
    let rb = client().get(gw.url(path));
    match accept {
        Some(a) => rb.header("accept-encoding", a),
        None => rb,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_is_negotiated_and_decodes_to_the_upstream_body() {
    let (gw, _o) =
        fixture(json!({"gzip": {"types": ["application/json"], "comp_level": 6, "vary": true}}))
            .await;
    let plain = send(get(&gw, "/doc", None)).await;
    assert_eq!(
        plain.header("content-encoding"),
        None,
        "no Accept-Encoding: identity"
    );
    assert!(plain.header("content-length").is_some());

    let zipped = send(get(&gw, "/doc", Some("gzip, deflate"))).await;
    assert_eq!(zipped.status, 200);
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    assert_eq!(
        zipped.header("content-length"),
        None,
        "the length changed, so it is not sent"
    );
    assert_eq!(zipped.header("vary"), Some("Accept-Encoding"));
    assert_eq!(
        zipped.header("etag"),
        Some("W/\"v1\""),
        "a strong validator is weakened"
    );
    let body: Value = serde_json::from_slice(&gunzip(&zipped.body)).unwrap();
    assert_eq!(body["path"], "/doc", "the upstream's JSON, intact");

    // q=0 refuses it.
    let refused = send(get(&gw, "/doc", Some("gzip;q=0"))).await;
    assert_eq!(refused.header("content-encoding"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brotli_is_preferred_when_both_are_configured_and_accepted() {
    let (gw, _o) = fixture(json!({"gzip": {"types": "*"}, "brotli": {"types": "*"}})).await;
    let br = send(get(&gw, "/x", Some("gzip, br"))).await;
    assert_eq!(br.header("content-encoding"), Some("br"));
    let body: Value = serde_json::from_slice(&unbrotli(&br.body)).unwrap();
    assert_eq!(body["path"], "/x");
    let gz = send(get(&gw, "/x", Some("gzip"))).await;
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    gunzip(&gz.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_must_not_be_compressed_is_not() {
    let (gw, o) = fixture(json!({"gzip": {"types": ["text/html"]}})).await;
    // Type not listed (the origin answers application/json).
    let r = send(get(&gw, "/x", Some("gzip"))).await;
    assert_eq!(r.header("content-encoding"), None);

    let (gw, _o2) = fixture(json!({"gzip": {"types": "*", "min_length": 100000}})).await;
    let r = send(get(&gw, "/x", Some("gzip"))).await;
    assert_eq!(
        r.header("content-encoding"),
        None,
        "shorter than min_length"
    );
    let big = send(get(&gw, "/x", Some("gzip")).header("x-stream-bytes", "200000")).await;
    assert_eq!(
        big.header("content-encoding"),
        Some("gzip"),
        "longer than min_length"
    );
    assert_eq!(gunzip(&big.body).len(), 200000);

    let (gw, _o3) = fixture(json!({"gzip": {"types": "*"}})).await;
    let head = send(
        client()
            .head(gw.url("/x"))
            .header("accept-encoding", "gzip"),
    )
    .await;
    assert_eq!(head.header("content-encoding"), None, "HEAD");
    drop(o);
    // An upstream that already encodes is left alone.
    let pre = origin("pre")
        .header("content-encoding", "gzip")
        .body("not really gzip")
        .start();
    gw.route_to("pre", "/pre", &pre, json!({"gzip": {"types": "*"}}))
        .await;
    let r = send(get(&gw, "/pre", Some("gzip"))).await;
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(
        &r.body[..],
        b"not really gzip",
        "passed through, not encoded twice"
    );
    // no-transform is respected.
    let nt = origin("nt").header("cache-control", "no-transform").start();
    gw.route_to("nt", "/nt", &nt, json!({"gzip": {"types": "*"}}))
        .await;
    assert_eq!(
        send(get(&gw, "/nt", Some("gzip")))
            .await
            .header("content-encoding"),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_stream_keeps_streaming() {
    let (gw, _o) = fixture(json!({"gzip": {"types": "*"}})).await;
    let started = Instant::now();
    let resp = get(&gw, "/drip", Some("gzip"))
        .header("x-drip", "5:300")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    let first_at = started.elapsed();
    decoder.write_all(&first).unwrap();
    decoder.flush().unwrap();
    assert_eq!(
        decoder.get_ref().as_slice(),
        b"chunk-0\n",
        "the first chunk decodes on its own"
    );
    while let Some(chunk) = stream.next().await {
        decoder.write_all(&chunk.unwrap()).unwrap();
    }
    let all = decoder.finish().unwrap();
    assert_eq!(
        String::from_utf8(all).unwrap(),
        "chunk-0\nchunk-1\nchunk-2\nchunk-3\nchunk-4\n"
    );
    assert!(
        first_at < Duration::from_millis(900) && started.elapsed() >= Duration::from_millis(1200),
        "first chunk at {first_at:?}, whole stream {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_compression_configs_are_refused_by_field() {
    let o = origin("o").start();
    let gw = gateway().start().await;
    let r = gw
        .admin()
        .put("routes", "1", json!({"uri": "/x", "plugins": {"gzip": {"comp_level": 12}}, "upstream": upstream(&[&o])}))
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.error_msg().unwrap().contains("plugins.gzip: comp_level"),
        "{:?}",
        r.error_msg()
    );
    let r = gw
        .admin()
        .put("global_rules", "1", json!({"plugins": {"gzip": {}}}))
        .await;
    assert_eq!(r.status, 400, "native plugins are per route");
}
