//! Benchmark upstream: answers every request with `200 OK` and a fixed body (1 KiB by default), over
//! HTTP/1.1 with keep-alive or HTTP/2 with prior knowledge (h2c, told apart by the first bytes, for the
//! HTTP/2-upstream scenario). The same server stands behind every contender in
//! `bench/run.sh`, so its cost is identical for all of them.
//!
//! Usage: `bench-upstream [--listen 127.0.0.1:0] [--threads 1] [--body-bytes 1024]`.
//! Prints `listening <addr>` on stdout once bound, so a caller can pass port 0 and read the port.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use tokio::net::TcpListener;

struct Args {
    listen: SocketAddr,
    threads: usize,
    body_bytes: usize,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        listen: "127.0.0.1:0".parse()?,
        threads: 1,
        body_bytes: 1024,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => args.listen = value()?.parse().context("--listen")?,
            "--threads" => args.threads = value()?.parse().context("--threads")?,
            "--body-bytes" => args.body_bytes = value()?.parse().context("--body-bytes")?,
            "-h" | "--help" => {
                println!("bench-upstream [--listen ADDR] [--threads N] [--body-bytes N]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    if args.threads == 0 {
        bail!("--threads must be at least 1");
    }
    Ok(args)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?
        .block_on(serve(args))
}

async fn serve(args: Args) -> Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening {addr}")?;
        out.flush()?;
    }

    let body = Bytes::from(vec![b'x'; args.body_bytes]);
    let content_type = HeaderValue::from_static("text/plain");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            // Out of file descriptors and the like: keep serving the connections we have.
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        let content_type = content_type.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
                let mut resp = Response::new(Full::new(body.clone()));
                resp.headers_mut()
                    .insert(CONTENT_TYPE, content_type.clone());
                async move { Ok::<_, Infallible>(resp) }
            });
            // Errors are client disconnects mid-request; nothing to report in a benchmark.
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
