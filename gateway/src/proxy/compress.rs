//! Response compression on the way out (the `gzip` and `brotli` plugins; rules in
//! [`crate::native::compression`]): the headers a compressed response needs, and a body that encodes each
//! chunk as it passes, flushing after every one so a streamed response keeps streaming.

use super::body::{BoxError, ResponseBody};
use crate::native::compression::{Encoding, Params};
use brotli::enc::backward_references::BrotliEncoderMode;
use brotli::enc::BrotliEncoderParams;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Compresses `resp` with `encoding` when the response qualifies (see the module docs of
/// [`crate::native::compression`]); otherwise returns it unchanged.
pub fn maybe(resp: Response<ResponseBody>, encoding: &Encoding) -> Response<ResponseBody> {
    let h = resp.headers();
    let status = resp.status();
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let encoded = h
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    let no_transform = h
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("no-transform"));
    let content_type = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let too_short = resp
        .body()
        .size_hint()
        .exact()
        .is_some_and(|n| n < encoding.min_length);
    if bodiless
        || encoded
        || no_transform
        || too_short
        || resp.body().is_end_stream()
        || !encoding.types.matches(content_type)
    {
        return resp;
    }
    let (mut head, body) = resp.into_parts();
    head.headers.remove(header::CONTENT_LENGTH);
    head.headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(encoding.params.token()),
    );
    if encoding.vary && !varies_on_accept_encoding(&head.headers) {
        head.headers
            .append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    // The bytes change, so a strong validator would lie; nginx weakens it the same way.
    if let Some(etag) = head.headers.get(header::ETAG) {
        if !etag.as_bytes().starts_with(b"W/") {
            let mut weak = b"W/".to_vec();
            weak.extend_from_slice(etag.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&weak) {
                head.headers.insert(header::ETAG, v);
            }
        }
    }
    let body = ResponseBody::Compressed(Box::new(CompressBody::new(body, encoding.params)));
    Response::from_parts(head, body)
}

fn varies_on_accept_encoding(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("accept-encoding") || t.trim() == "*")
}

enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
}

impl Encoder {
    fn new(params: Params) -> Self {
        match params {
            Params::Gzip { level } => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(level),
            )),
            Params::Brotli {
                quality,
                lgwin,
                lgblock,
                mode,
            } => {
                let params = BrotliEncoderParams {
                    quality: quality as i32,
                    lgwin: lgwin as i32,
                    lgblock: lgblock as i32,
                    mode: match mode {
                        1 => BrotliEncoderMode::BROTLI_MODE_TEXT,
                        2 => BrotliEncoderMode::BROTLI_MODE_FONT,
                        _ => BrotliEncoderMode::BROTLI_MODE_GENERIC,
                    },
                    ..BrotliEncoderParams::default()
                };
                Encoder::Brotli(Box::new(brotli::CompressorWriter::with_params(
                    Vec::new(),
                    16 << 10,
                    &params,
                )))
            }
        }
    }

    /// Encodes `data` and returns everything the encoder can emit so far (a sync flush).
    fn push(&mut self, data: &[u8]) -> std::io::Result<Bytes> {
        let out = match self {
            Encoder::Gzip(e) => {
                e.write_all(data)?;
                e.flush()?;
                e.get_mut()
            }
            Encoder::Brotli(e) => {
                e.write_all(data)?;
                e.flush()?;
                e.get_mut()
            }
        };
        Ok(Bytes::from(std::mem::take(out)))
    }

    /// Ends the stream: the encoder's last bytes and its trailer.
    fn finish(self) -> std::io::Result<Bytes> {
        let out = match self {
            Encoder::Gzip(e) => e.finish()?,
            Encoder::Brotli(e) => e.into_inner(),
        };
        Ok(Bytes::from(out))
    }
}

pub struct CompressBody {
    inner: ResponseBody,
    encoder: Option<Encoder>,
    /// Trailers seen after the data, held back until the encoder's last bytes are out.
    trailers: Option<Frame<Bytes>>,
}

impl CompressBody {
    fn new(inner: ResponseBody, params: Params) -> Self {
        CompressBody {
            inner,
            encoder: Some(Encoder::new(params)),
            trailers: None,
        }
    }

    fn finish(&mut self) -> Result<Option<Frame<Bytes>>, BoxError> {
        match self.encoder.take() {
            Some(e) => Ok(Some(Frame::data(e.finish()?))),
            None => Ok(self.trailers.take()),
        }
    }
}

impl Body for CompressBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let Some(encoder) = this.encoder.as_mut() else {
                return Poll::Ready(this.trailers.take().map(Ok));
            };
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        let out = encoder.push(&data)?;
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Err(trailers) => {
                        this.trailers = Some(trailers);
                        return Poll::Ready(this.finish().transpose());
                    }
                },
                Poll::Ready(None) => return Poll::Ready(this.finish().transpose()),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.encoder.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn roundtrip(params: Params, chunks: &[&[u8]]) -> Vec<u8> {
        let mut e = Encoder::new(params);
        let mut wire = Vec::new();
        for c in chunks {
            let out = e.push(c).unwrap();
            assert!(!out.is_empty(), "every chunk is flushed out at once");
            wire.extend_from_slice(&out);
        }
        wire.extend_from_slice(&e.finish().unwrap());
        let mut plain = Vec::new();
        match params {
            Params::Gzip { .. } => {
                flate2::read::GzDecoder::new(&wire[..])
                    .read_to_end(&mut plain)
                    .unwrap();
            }
            Params::Brotli { .. } => {
                brotli::Decompressor::new(&wire[..], 4096)
                    .read_to_end(&mut plain)
                    .unwrap();
            }
        }
        plain
    }

    #[test]
    fn chunked_encoding_decodes_to_the_original() {
        let chunks: [&[u8]; 3] = [b"hello ", b"streaming ", b"world"];
        for params in [
            Params::Gzip { level: 6 },
            Params::Brotli {
                quality: 5,
                lgwin: 19,
                lgblock: 0,
                mode: 1,
            },
        ] {
            assert_eq!(roundtrip(params, &chunks), b"hello streaming world");
        }
    }
}
