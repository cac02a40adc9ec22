//! Admin API client: `/apisix/admin/<resource>[/<id>]` with `X-API-KEY`, replies parsed as JSON.

use reqwest::Method;
use serde_json::Value;
use std::time::Duration;

#[derive(Clone)]
pub struct Admin {
    base: String,
    key: Option<String>,
    http: reqwest::Client,
}

/// An admin API reply: status, raw text and parsed JSON (`Value::Null` when not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub text: String,
    pub json: Value,
}

impl Reply {
    /// `error_msg` of an error reply.
    pub fn error_msg(&self) -> Option<&str> {
        self.json.get("error_msg").and_then(Value::as_str)
    }
    /// `value` of a one-object reply (`Null` if absent).
    pub fn value(&self) -> &Value {
        self.json.get("value").unwrap_or(&Value::Null)
    }
    /// `key` of a one-object reply.
    pub fn key(&self) -> Option<&str> {
        self.json.get("key").and_then(Value::as_str)
    }
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
    /// Panics unless the status is 2xx; returns self for chaining.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert!(
            self.is_success(),
            "admin call failed: {} {}",
            self.status,
            self.text
        );
        self
    }
}

impl Admin {
    /// A client for the admin listener at `addr` sending `key` (none: no header at all).
    pub fn new(addr: std::net::SocketAddr, key: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("admin client");
        Admin {
            base: format!("http://{addr}/apisix/admin"),
            key,
            http,
        }
    }

    /// The same client with another key (`None`: no `X-API-KEY` header).
    pub fn with_key(&self, key: Option<&str>) -> Admin {
        Admin {
            key: key.map(str::to_string),
            ..self.clone()
        }
    }

    /// `http://ADMIN/apisix/admin/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    pub async fn put(&self, res: &str, id: &str, body: Value) -> Reply {
        self.json(Method::PUT, &format!("{res}/{id}"), &body).await
    }
    pub async fn post(&self, res: &str, body: Value) -> Reply {
        self.json(Method::POST, res, &body).await
    }
    pub async fn patch(&self, res: &str, id: &str, body: Value) -> Reply {
        self.json(Method::PATCH, &format!("{res}/{id}"), &body)
            .await
    }
    /// GET `path` relative to `/apisix/admin`: `"routes"` lists, `"routes/1"` reads one.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }
    pub async fn delete(&self, res: &str, id: &str) -> Reply {
        self.send(Method::DELETE, &format!("{res}/{id}"), None)
            .await
    }

    async fn json(&self, method: Method, path: &str, body: &Value) -> Reply {
        self.send(method, path, Some(body.to_string())).await
    }

    /// Any method and path with a raw body sent as `application/json` (for malformed-JSON tests).
    pub async fn send(&self, method: Method, path: &str, body: Option<String>) -> Reply {
        let mut rb = self.http.request(method, self.url(path));
        if let Some(k) = &self.key {
            rb = rb.header("X-API-KEY", k);
        }
        if let Some(b) = body {
            rb = rb.header("content-type", "application/json").body(b);
        }
        let r = rb
            .send()
            .await
            .unwrap_or_else(|e| panic!("admin request {path} failed: {e:#}"));
        Reply::read(r).await
    }

    /// `PUT <path>` with a binary body of the given content type (plugin uploads).
    pub async fn put_bytes(&self, path: &str, content_type: &str, body: Vec<u8>) -> Reply {
        let mut rb = self.http.put(self.url(path));
        if let Some(k) = &self.key {
            rb = rb.header("X-API-KEY", k);
        }
        let r = rb
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("admin request {path} failed: {e:#}"));
        Reply::read(r).await
    }
}

impl Reply {
    async fn read(r: reqwest::Response) -> Reply {
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = r.text().await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            content_type,
            text,
            json,
        }
    }
}
