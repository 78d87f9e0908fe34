//! Prometheus metrics: HTTP request latencies by route, action durations by kind and
//! outcome, and runs by status (read from the store at scrape time, so it is right after a
//! restart too).

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    kind: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    http: Family<HttpLabels, Histogram>,
    actions: Family<ActionLabels, Histogram>,
    runs: Family<StatusLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let http = Family::<HttpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let actions = Family::<ActionLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 2.0, 18))
        });
        let runs = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "ferry_http_request_duration_seconds",
            "HTTP request latency",
            http.clone(),
        );
        registry.register(
            "ferry_action_duration_seconds",
            "Duration of run actions",
            actions.clone(),
        );
        registry.register("ferry_runs", "Stored runs by status", runs.clone());
        Metrics {
            registry: Mutex::new(registry),
            http,
            actions,
            runs,
        }
    }
}

impl Metrics {
    pub fn observe_http(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let labels = HttpLabels {
            method: method.to_owned(),
            route: route.to_owned(),
            status,
        };
        self.http
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    pub fn observe_action(&self, kind: &str, outcome: &str, elapsed: Duration) {
        let labels = ActionLabels {
            kind: kind.to_owned(),
            outcome: outcome.to_owned(),
        };
        self.actions
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Renders the text exposition format, with run counts as given.
    pub fn render(&self, run_counts: &[(ferry_core::RunStatus, i64)]) -> String {
        for status in ferry_core::RunStatus::ALL {
            let count = run_counts
                .iter()
                .find(|(s, _)| s == status)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            self.runs
                .get_or_create(&StatusLabels {
                    status: status.as_str().to_owned(),
                })
                .set(count);
        }
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }
}
