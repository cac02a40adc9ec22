//! Request framing the gateway refuses before anything is routed or forwarded (RFC 9112 §6).
//!
//! hyper already refuses most malformed heads (signs, lists and hex in `Content-Length`, differing repeated
//! lengths, whitespace before a colon, control characters, obs-fold, HTTP/1.0 with `Transfer-Encoding`,
//! codings other than a final `chunked`) and bad chunk framing, with 400. What it accepts and we refuse is
//! `Transfer-Encoding` other than exactly one `chunked` (`chunked, chunked`, `gzip, chunked`, two header
//! lines): we do not decode other codings, and a repeated `chunked` is double framing, a known smuggling
//! vector when two parsers on the path disagree. The answer is 400 with `Connection: close`, so the bytes
//! after the head are never parsed as a next request.
//!
//! One ambiguity never reaches us: `Content-Length` together with `Transfer-Encoding`. hyper drops the
//! length before handing over the head, reads the body as chunked and closes the connection after the
//! response (RFC 9112 §6.3 allows that instead of a 400), so nothing behind the request can be smuggled;
//! tests/tests/it/smuggling.rs holds it to that.

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::request::Parts;
use http::Version;

/// True when the request's framing is one a proxy must not forward.
pub fn is_ambiguous(parts: &Parts) -> bool {
    if parts.version >= Version::HTTP_2 {
        // HTTP/2 frames bodies itself; the h2 layer already refuses `Transfer-Encoding` in requests.
        return false;
    }
    let h = &parts.headers;
    let mut te = h.get_all(TRANSFER_ENCODING).iter();
    let lengths = h.get_all(CONTENT_LENGTH).iter().count();
    match (te.next(), te.next()) {
        // Defensive: hyper never hands over a head with both, or with repeated lengths.
        (None, _) => lengths > 1,
        (Some(only), None) => {
            lengths > 0
                || !only
                    .to_str()
                    .is_ok_and(|v| v.trim().eq_ignore_ascii_case("chunked"))
        }
        (Some(_), Some(_)) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().uri("/").version(Version::HTTP_11);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn one_chunked_or_one_length_is_fine() {
        assert!(!is_ambiguous(&parts(&[])));
        assert!(!is_ambiguous(&parts(&[("transfer-encoding", "chunked")])));
        assert!(!is_ambiguous(&parts(&[("transfer-encoding", "Chunked ")])));
        assert!(!is_ambiguous(&parts(&[("content-length", "5")])));
    }

    #[test]
    fn mixed_repeated_or_foreign_framing_is_ambiguous() {
        for h in [
            vec![("transfer-encoding", "chunked"), ("content-length", "5")],
            vec![("transfer-encoding", "chunked, chunked")],
            vec![("transfer-encoding", "gzip, chunked")],
            vec![
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
            vec![("content-length", "5"), ("content-length", "5")],
        ] {
            assert!(is_ambiguous(&parts(&h)), "{h:?}");
        }
    }
}
