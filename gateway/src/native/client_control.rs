//! `client-control`: APISIX's per-route `client_max_body_size`. `max_body_size` in bytes; 0 lifts the limit
//! for the route, as nginx's `client_max_body_size 0` does. A body announced larger (`Content-Length`) is
//! answered 413 before any plugin or upstream runs; a streamed one is cut off with 413 once it passes the
//! limit (see `proxy/client_body.rs`).

use super::entry;
use crate::config::{ConfigError, Plugins};
use serde::Deserialize;

pub const NAME: &str = "client-control";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conf {
    max_body_size: Option<u64>,
}

/// The route's body limit in bytes, if its `client-control` sets one.
pub fn compile(plugins: &Plugins) -> Result<Option<u64>, ConfigError> {
    let Some(conf) = entry::<Conf>(plugins, NAME)? else {
        return Ok(None);
    };
    Ok(conf
        .max_body_size
        .map(|n| if n == 0 { u64::MAX } else { n }))
}
