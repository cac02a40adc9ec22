//! Which requests may be sent again after they reached a node that then failed, and the copy to send.
//!
//! A request that never left (connect failed, or a pooled connection handed it back unsent) is always
//! retried. One that was sent is re-sent only when both hold:
//! - its method is idempotent per RFC 9110 §9.2.2 (GET, HEAD, OPTIONS, TRACE, PUT, DELETE), or the upstream
//!   sets `retry_non_idempotent: true` (a Sluice extension; APISIX/nginx never re-send POST, PATCH, ...
//!   by default because the first node may already have acted on them);
//! - it has no body: bodies are streamed to the node, not buffered, so a sent body cannot be sent again.
//!
//! Only a broken exchange (connection reset or closed before the response head) is re-sent; a read
//! timeout is not, since the node may still be working on it.

use crate::proxy::body::UpstreamRequestBody;
use http::request::Parts;
use http::{HeaderMap, Method, Request, Uri, Version};
use http_body_util::{BodyExt, Empty};

/// RFC 9110 §9.2.2.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// What is needed to build the request again.
pub struct Replay {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

impl Replay {
    /// `Some` when a sent copy of this request may be sent again (see the module docs).
    pub fn capture(parts: &Parts, body_is_empty: bool, allow_non_idempotent: bool) -> Option<Self> {
        let allowed = is_idempotent(&parts.method) || allow_non_idempotent;
        (allowed && body_is_empty).then(|| Replay {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
        })
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    /// A fresh copy with an empty body; the caller sets `Host` per node as for the first send.
    pub fn request(&self) -> Request<UpstreamRequestBody> {
        let mut r = Request::new(Empty::new().map_err(|e| match e {}).boxed_unsync());
        *r.method_mut() = self.method.clone();
        *r.uri_mut() = self.uri.clone();
        *r.version_mut() = self.version;
        *r.headers_mut() = self.headers.clone();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: Method) -> Parts {
        let (p, ()) = Request::builder()
            .method(method)
            .uri("/x?y=1")
            .header("a", "b")
            .body(())
            .unwrap_or_default()
            .into_parts();
        p
    }

    #[test]
    fn only_idempotent_bodiless_requests_are_replayable_by_default() {
        assert!(Replay::capture(&parts(Method::GET), true, false).is_some());
        assert!(Replay::capture(&parts(Method::PUT), true, false).is_some());
        assert!(Replay::capture(&parts(Method::POST), true, false).is_none());
        assert!(Replay::capture(&parts(Method::PATCH), true, false).is_none());
        assert!(Replay::capture(&parts(Method::GET), false, false).is_none());
        assert!(Replay::capture(&parts(Method::POST), true, true).is_some());
        assert!(Replay::capture(&parts(Method::POST), false, true).is_none());
    }

    #[test]
    fn the_copy_keeps_method_uri_and_headers() {
        let r = Replay::capture(&parts(Method::DELETE), true, false)
            .map(|r| r.request())
            .expect("replayable");
        assert_eq!(r.method(), Method::DELETE);
        assert_eq!(r.uri(), "/x?y=1");
        assert_eq!(r.headers()["a"], "b");
    }
}
