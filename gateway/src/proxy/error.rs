//! Every answer the gateway gives on its own, declared once: kind → status and `error_msg`.
//!
//! Bodies follow APISIX's JSON shape. They never contain upstream addresses or internal error text;
//! those go to the log, where the operator (not the client) reads them.

use super::body::ResponseBody;
use http::{header, HeaderValue, Response, StatusCode};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyError {
    /// The path climbs above `/` or cannot be represented after normalisation.
    BadPath,
    RouteNotFound,
    /// The route has no upstream and no plugin answered.
    NoUpstream,
    /// No node accepted a connection (after retries).
    UpstreamUnreachable,
    /// Connecting or waiting for the response head took longer than the configured timeout.
    UpstreamTimeout,
    /// The upstream broke the exchange (reset, malformed response).
    UpstreamFailed,
    /// A plugin trapped, overran its deadline or its memory (details are in the log, not the body).
    PluginFailed,
    /// Framing a proxy must not forward (see `framing.rs`).
    AmbiguousFraming,
    /// The request body's framing broke mid-stream (or the client went away while sending it).
    BrokenBody,
    /// The body is over the route's (or the listener's) limit.
    BodyTooLarge,
    /// Path and query are over `--max-uri-size`.
    UriTooLong,
    /// More header fields than `--max-headers`.
    TooManyHeaders,
    /// An HTTP/1.1 head over `--max-header-size`.
    HeadTooLarge,
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadPath => StatusCode::BAD_REQUEST,
            ProxyError::RouteNotFound => StatusCode::NOT_FOUND,
            ProxyError::NoUpstream => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::UpstreamUnreachable | ProxyError::UpstreamFailed => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::PluginFailed => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::AmbiguousFraming | ProxyError::BrokenBody => StatusCode::BAD_REQUEST,
            ProxyError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::UriTooLong => StatusCode::URI_TOO_LONG,
            ProxyError::TooManyHeaders | ProxyError::HeadTooLarge => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
        }
    }

    /// The client caused it: no upstream is blamed (no retry, no passive health-check failure).
    pub fn is_client_fault(&self) -> bool {
        matches!(
            self,
            ProxyError::AmbiguousFraming | ProxyError::BrokenBody | ProxyError::BodyTooLarge
        )
    }

    /// The answer leaves request bytes unread or untrustworthy, so the connection must not carry another
    /// request: anything still on it could be parsed as one.
    fn closes_connection(&self) -> bool {
        self.is_client_fault()
    }

    pub fn message(&self) -> &'static str {
        match self {
            ProxyError::BadPath => "400 Bad Request: invalid path",
            ProxyError::RouteNotFound => "404 Route Not Found",
            ProxyError::NoUpstream => "503 Service Unavailable: the route has no upstream",
            ProxyError::UpstreamUnreachable => "502 Bad Gateway: no upstream node could be reached",
            ProxyError::UpstreamFailed => "502 Bad Gateway: the upstream failed to answer",
            ProxyError::UpstreamTimeout => {
                "504 Gateway Timeout: the upstream did not answer in time"
            }
            ProxyError::PluginFailed => "500 Internal Server Error",
            ProxyError::AmbiguousFraming => {
                "400 Bad Request: ambiguous message framing (Transfer-Encoding/Content-Length)"
            }
            ProxyError::BrokenBody => {
                "400 Bad Request: the request body is malformed or incomplete"
            }
            ProxyError::BodyTooLarge => "413 Request Entity Too Large",
            ProxyError::UriTooLong => "414 Request-URI Too Large",
            ProxyError::TooManyHeaders | ProxyError::HeadTooLarge => {
                "431 Request Header Fields Too Large"
            }
        }
    }

    pub fn to_response(&self) -> Response<ResponseBody> {
        let body = serde_json::json!({ "error_msg": self.message() }).to_string();
        let mut resp = Response::new(ResponseBody::local(body));
        *resp.status_mut() = self.status();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.closes_connection() {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_matches_apisix() {
        let r = ProxyError::RouteNotFound.to_response();
        assert_eq!(r.status(), 404);
        assert_eq!(ProxyError::RouteNotFound.message(), "404 Route Not Found");
    }
}
