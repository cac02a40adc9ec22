//! Reading the gateway's metrics listener: [`Gateway::scrape`] fetches `/metrics` and [`Scrape::value`]
//! reads one sample by name and labels. Start the gateway with `.wait_for_listener("metrics")`.

use crate::client::{send, Resp};
use crate::gateway::Gateway;

/// One `/metrics` exposition.
#[derive(Debug, Clone)]
pub struct Scrape(pub String);

impl Scrape {
    /// The sample `name` whose labels include every `labels` pair (exact values); `None` when absent.
    /// Panics if more than one sample matches, so a test never reads an ambiguous series.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let mut found = self.0.lines().filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            let have: Vec<&str> = rest.split(',').collect();
            (metric == name && wanted.iter().all(|w| have.contains(&w.as_str())))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        });
        let first = found.next();
        assert!(
            found.next().is_none(),
            "{name} {labels:?} matches more than one sample"
        );
        first
    }

    /// [`Self::value`], 0 when absent (a counter that has not moved yet).
    pub fn count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or(0.0)
    }
}

impl Gateway {
    /// GET `path` on the metrics listener.
    pub async fn metrics_get(&self, path: &str) -> Resp {
        let addr = self
            .listener("metrics")
            .expect("metrics listener: start the gateway with .wait_for_listener(\"metrics\")");
        send(crate::client::client().get(format!("http://{addr}{path}"))).await
    }

    /// Scrapes `/metrics`, asserting a 200.
    pub async fn scrape(&self) -> Scrape {
        let r = self.metrics_get("/metrics").await;
        assert_eq!(r.status, 200, "{}", r.text());
        Scrape(r.text())
    }
}
