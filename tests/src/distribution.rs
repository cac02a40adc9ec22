//! How a batch of requests spread over origins: the measurement behind the balancer and traffic-split
//! tests, kept in one place so both read shares the same way.

use crate::client::{send, Resp};
use crate::gateway::Gateway;
use futures_util::{stream, StreamExt};
use std::collections::HashMap;

/// Sends `n` GETs (8 in flight) to `path`, the i-th customised by `each(i, builder)`; returns origin → count
/// (the `x-origin` header of each answer). Every request must succeed.
pub async fn spread<F>(gw: &Gateway, path: &str, n: usize, each: F) -> HashMap<String, usize>
where
    F: Fn(usize, reqwest::RequestBuilder) -> reqwest::RequestBuilder,
{
    let results: Vec<Resp> = stream::iter(0..n)
        .map(|i| send(each(i, gw.request(reqwest::Method::GET, path))))
        .buffer_unordered(8)
        .collect()
        .await;
    let mut counts = HashMap::new();
    for r in results {
        assert_eq!(r.status, 200, "every request succeeds: {}", r.text());
        *counts
            .entry(r.origin().unwrap_or("?").to_string())
            .or_insert(0) += 1;
    }
    counts
}
