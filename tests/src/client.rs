//! Clients for proxied requests: plain HTTP/1.1 and h2c (HTTP/2 with prior knowledge). Neither reads proxy
//! settings from the environment, and neither decompresses (reqwest is built without those features).

use bytes::Bytes;
use http::HeaderMap;
use std::time::Duration;

/// An HTTP/1.1 client with keep-alive, no proxy, a 60 s overall timeout per request.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

/// An h2c (HTTP/2 prior knowledge, cleartext) client.
pub fn h2c_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("h2c client")
}

/// A fully read response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    /// The `x-origin` header: which test origin answered.
    pub fn origin(&self) -> Option<&str> {
        self.header("x-origin")
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The body parsed as JSON (`Value::Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    /// `(status, origin)` for compact assertions.
    pub fn hit(&self) -> (u16, Option<&str>) {
        (self.status, self.origin())
    }
}

/// Sends a request and reads the whole response; panics on a transport error (with the error chain).
pub async fn send(rb: reqwest::RequestBuilder) -> Resp {
    match try_send(rb).await {
        Ok(r) => r,
        Err(e) => panic!("request failed: {e:#}"),
    }
}

/// Sends a request and reads the whole response.
pub async fn try_send(rb: reqwest::RequestBuilder) -> anyhow::Result<Resp> {
    let r = rb.send().await?;
    let status = r.status().as_u16();
    let version = r.version();
    let headers = r.headers().clone();
    let body = r.bytes().await?;
    Ok(Resp {
        status,
        version,
        headers,
        body,
    })
}
