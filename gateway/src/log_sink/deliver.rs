//! Delivering one batch: an HTTP POST through [`crate::http_client`] (a delivery succeeds only on a 2xx
//! answer within the destination's timeout) or an append to a file.

use super::{Concat, Destination, HttpTarget};
use bytes::Bytes;
use http_body_util::Full;
use std::io::Write as _;
use std::path::PathBuf;

pub(super) enum Delivery {
    Http(HttpTarget),
    File(PathBuf),
}

impl std::fmt::Display for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Delivery::Http(target) => write!(f, "{}", target.uri),
            Delivery::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The batch as one body: a JSON array or newline-terminated lines.
fn body(batch: &[String], concat: Concat) -> Bytes {
    let len: usize = batch.iter().map(|e| e.len() + 1).sum::<usize>() + 2;
    let mut out = Vec::with_capacity(len);
    match concat {
        Concat::JsonArray => {
            out.push(b'[');
            for (i, e) in batch.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(e.as_bytes());
            }
            out.push(b']');
        }
        Concat::NewLine => {
            for e in batch {
                out.extend_from_slice(e.as_bytes());
                out.push(b'\n');
            }
        }
    }
    Bytes::from(out)
}

impl Delivery {
    pub fn new(destination: &Destination) -> Self {
        match destination {
            Destination::Http(target) => Delivery::Http(target.clone()),
            Destination::File(path) => Delivery::File(path.clone()),
        }
    }

    pub async fn send(&self, batch: &[String]) -> Result<(), String> {
        match self {
            Delivery::Http(target) => post(target, body(batch, target.concat)).await,
            Delivery::File(path) => {
                let path = path.clone();
                let lines = body(batch, Concat::NewLine);
                tokio::task::spawn_blocking(move || append(&path, &lines))
                    .await
                    .map_err(|e| format!("file write task: {e}"))?
            }
        }
    }
}

fn append(path: &std::path::Path, lines: &[u8]) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    // Opened per batch, so a file that logrotate moved away is recreated on the next batch.
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
    file.write_all(lines)
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

async fn post(target: &HttpTarget, body: Bytes) -> Result<(), String> {
    let content_type = match target.concat {
        Concat::JsonArray => "application/json",
        Concat::NewLine => "text/plain",
    };
    let mut req = http::Request::post(target.uri.clone())
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(body))
        .map_err(|e| format!("building the request: {e}"))?;
    if let Some(auth) = &target.authorization {
        req.headers_mut()
            .insert(http::header::AUTHORIZATION, auth.clone());
    }
    let answer = crate::http_client::send(req, target.timeout).await?;
    if answer.status().is_success() {
        Ok(())
    } else {
        Err(format!("the endpoint answered {}", answer.status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_a_json_array_or_lines() {
        let batch = vec![r#"{"a":1}"#.to_string(), r#"{"b":2}"#.to_string()];
        assert_eq!(
            &body(&batch, Concat::JsonArray)[..],
            br#"[{"a":1},{"b":2}]"#
        );
        assert_eq!(
            &body(&batch, Concat::NewLine)[..],
            b"{\"a\":1}\n{\"b\":2}\n"
        );
    }
}
