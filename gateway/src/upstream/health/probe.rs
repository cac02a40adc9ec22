//! One active probe: connect (and for `http`/`https`, send `GET http_path` and read the status line).
//!
//! Written over a bare socket rather than the proxy's pooled client on purpose: a probe must measure a
//! fresh connection to the node, must not take or poison pooled connections, and needs only the status.

use super::Observation;
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where and how to probe one node.
pub(crate) struct Target {
    pub addr: SocketAddr,
    /// The whole request, built once; `None` for a `tcp` probe.
    pub request: Option<Vec<u8>>,
    /// For `https` probes.
    pub tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

/// Runs the probe within `timeout`; never fails, every problem is an [`Observation`].
pub(crate) async fn run(target: &Target, timeout: Duration) -> Observation {
    match tokio::time::timeout(timeout, exchange(target)).await {
        Ok(obs) => obs,
        Err(_) => Observation::Timeout,
    }
}

async fn exchange(target: &Target) -> Observation {
    let Ok(tcp) = TcpStream::connect(target.addr).await else {
        return Observation::TcpFailure;
    };
    let Some(request) = &target.request else {
        return Observation::Connected;
    };
    let _ = tcp.set_nodelay(true);
    match &target.tls {
        None => status_of(tcp, request).await,
        Some((config, name)) => {
            let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
            match connector.connect(name.clone(), tcp).await {
                Ok(stream) => status_of(stream, request).await,
                Err(_) => Observation::TcpFailure,
            }
        }
    }
}

async fn status_of(mut io: impl AsyncRead + AsyncWrite + Unpin, request: &[u8]) -> Observation {
    if io.write_all(request).await.is_err() || io.flush().await.is_err() {
        return Observation::TcpFailure;
    }
    let mut buf = [0u8; 64];
    let mut len = 0;
    // The status line is short; 12 bytes ("HTTP/1.1 200") are enough to parse it.
    while len < 12 {
        match io.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => return Observation::TcpFailure,
            Ok(n) => len += n,
        }
    }
    parse_status(&buf[..len]).map_or(Observation::TcpFailure, Observation::Status)
}

/// `HTTP/1.x NNN ...` → NNN.
fn parse_status(head: &[u8]) -> Option<u16> {
    let rest = head.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    if rest.get(1) != Some(&b' ') || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// The probe request: HTTP/1.0 with `Connection: close`, so the node closes after answering and no
/// probe connection lingers.
pub(crate) fn request(path: &str, host: &str, headers: &[String]) -> Vec<u8> {
    let mut r =
        format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: sluice-healthcheck\r\n");
    for h in headers {
        if let Some((name, value)) = h.split_once(':') {
            r.push_str(&format!("{}: {}\r\n", name.trim(), value.trim()));
        }
    }
    r.push_str("Connection: close\r\n\r\n");
    r.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_parsing() {
        assert_eq!(parse_status(b"HTTP/1.1 503 Service Unavailable"), Some(503));
        assert_eq!(parse_status(b"HTTP/1.0 200 OK\r\n"), Some(200));
        assert_eq!(parse_status(b"HTTP/2 200"), None);
        assert_eq!(parse_status(b"HTTP/1.1 2x0 OK"), None);
    }

    #[test]
    fn request_carries_host_and_extra_headers() {
        let r = request("/health", "svc.local", &["X-Probe: yes".into()]);
        let r = String::from_utf8(r).unwrap_or_default();
        assert!(
            r.starts_with("GET /health HTTP/1.0\r\nHost: svc.local\r\n"),
            "{r}"
        );
        assert!(r.contains("\r\nX-Probe: yes\r\n"), "{r}");
        assert!(r.ends_with("Connection: close\r\n\r\n"), "{r}");
    }
}
