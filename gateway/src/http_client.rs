//! One-shot HTTP/1.1 requests to a URL, for what the gateway itself sends out: plugin log batches
//! ([`crate::log_sink`]) and OTLP spans ([`crate::otel`]).
//!
//! One connection per request: these go out every few seconds at most, so a pool would mostly hold idle
//! sockets. `https` URLs are verified against the system roots, like `https` upstreams with `tls.verify`
//! on (`SSL_CERT_FILE` trusts a private CA). The timeout covers the whole exchange: resolve, connect,
//! handshake, send, and read the answer (whose body is capped).

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Largest answer body read back.
const MAX_ANSWER: usize = 1 << 20;

fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            crate::tls::upstream::client_config(&crate::tls::upstream::UpstreamTlsSpec {
                verify: true,
                ..Default::default()
            })
            .map_err(|e| e.to_string())
        })
        .clone()
}

/// Sends `req` (its URI absolute: `http://` or `https://`) and returns the answer, whatever its status.
pub async fn send(
    req: http::Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<http::Response<Bytes>, String> {
    tokio::time::timeout(timeout, exchange(req))
        .await
        .unwrap_or_else(|_| Err(format!("timed out after {timeout:?}")))
}

async fn exchange(mut req: http::Request<Full<Bytes>>) -> Result<http::Response<Bytes>, String> {
    let uri = req.uri().clone();
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("{uri}: not an http:// or https:// URL")),
    };
    let host = uri.host().ok_or_else(|| format!("{uri}: no host"))?;
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    // `[::1]` in a URI is `::1` to the resolver.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addr = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| format!("resolving {bare}: {e}"))?
        .next()
        .ok_or_else(|| format!("{bare} resolves to no address"))?;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    // Origin form on the wire, with the authority as `Host`.
    let authority = uri.authority().map_or(host, |a| a.as_str());
    let host_value = http::HeaderValue::from_str(authority).map_err(|e| e.to_string())?;
    req.headers_mut().insert(http::header::HOST, host_value);
    *req.uri_mut() = uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .parse()
        .map_err(|e| format!("{uri}: {e}"))?;
    if https {
        let name = rustls::pki_types::ServerName::try_from(bare.to_string())
            .map_err(|e| format!("server name {bare}: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(tls_config()?)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
        over(TokioIo::new(stream), req).await
    } else {
        over(TokioIo::new(tcp), req).await
    }
}

async fn over<IO>(io: IO, req: http::Request<Full<Bytes>>) -> Result<http::Response<Bytes>, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let (parts, body) = resp.into_parts();
    let body = Limited::new(body, MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
        .to_bytes();
    Ok(http::Response::from_parts(parts, body))
}
