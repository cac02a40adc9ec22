//! `raw()`: HTTP/1.1 over a bare TCP socket, for what a well-behaved client library will not send
//! (smuggling and framing attacks, oversized heads, slow clients) and for reading exactly what came back.
//!
//! [`RawExchange`] parses the bytes the gateway answered into responses (framed by `Content-Length`,
//! `chunked` or the close) and tells whether the gateway closed the connection afterwards.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One response as it came off the wire.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// Header names lower-cased, in wire order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Everything one connection gave back.
#[derive(Debug)]
pub struct RawExchange {
    pub responses: Vec<RawResponse>,
    /// The gateway closed the connection (EOF or reset) before the read deadline.
    pub closed: bool,
    /// Bytes after the last complete response (a truncated one), if any.
    pub trailing: Vec<u8>,
}

impl RawExchange {
    pub fn statuses(&self) -> Vec<u16> {
        self.responses.iter().map(|r| r.status).collect()
    }
}

/// Writes `bytes` to `addr` in one go, then reads until the peer closes or nothing arrives for `idle`.
pub async fn raw(addr: SocketAddr, bytes: &[u8], idle: Duration) -> RawExchange {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    // A reset during the write means the gateway already answered and closed: read what it sent.
    let _ = tcp.write_all(bytes).await;
    read_exchange(&mut tcp, idle).await
}

/// Reads until EOF, a reset, or `idle` without a byte, and parses what arrived.
pub async fn read_exchange(tcp: &mut TcpStream, idle: Duration) -> RawExchange {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let closed = loop {
        match tokio::time::timeout(idle, tcp.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break false,
        }
    };
    let (responses, rest) = parse_responses(&buf, closed);
    RawExchange {
        responses,
        closed,
        trailing: rest.to_vec(),
    }
}

/// Splits `buf` into responses; returns them and the unparsed rest.
pub fn parse_responses(mut buf: &[u8], closed: bool) -> (Vec<RawResponse>, &[u8]) {
    let mut out = Vec::new();
    while let Some((resp, used)) = parse_one(buf, closed) {
        out.push(resp);
        buf = &buf[used..];
        if used == 0 {
            break;
        }
    }
    (out, buf)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_one(buf: &[u8], closed: bool) -> Option<(RawResponse, usize)> {
    let head_end = find(buf, b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let get = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let rest = &buf[head_end..];
    let bodiless = status < 200 || status == 204 || status == 304;
    let (body, used) = if bodiless {
        (Vec::new(), 0)
    } else if let Some(len) = get("content-length") {
        let len: usize = len.parse().ok()?;
        if rest.len() < len {
            return None;
        }
        (rest[..len].to_vec(), len)
    } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else if closed {
        (rest.to_vec(), rest.len())
    } else {
        return None;
    };
    Some((
        RawResponse {
            status,
            headers,
            body,
        },
        head_end + used,
    ))
}

fn dechunk(mut rest: &[u8]) -> Option<(Vec<u8>, usize)> {
    let start = rest.len();
    let mut body = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            let trailer_end = find(rest, b"\r\n")?;
            // Trailers, if any, end with an empty line; without trailers the next line is that line.
            let end = if trailer_end == 0 {
                2
            } else {
                find(rest, b"\r\n\r\n")? + 4
            };
            rest = &rest[end..];
            return Some((body, start - rest.len()));
        }
        if rest.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}
