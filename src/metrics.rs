//! Prometheus metrics (prefix `pullgate_`). Labels never carry credentials, and registry
//! hosts (which any Pod author chooses) are capped so they cannot blow up cardinality.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::cache::Lookup;
use crate::checker::Observer;
use crate::verdict::Verdict;

/// Distinct registry label values kept; later registries are counted as `other`.
const MAX_REGISTRY_LABELS: usize = 64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReviewLabels {
    kind: String,
    operation: String,
    decision: String,
    mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    registry: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    result: String,
}

pub struct Metrics {
    registry: Registry,
    reviews: Family<ReviewLabels, Counter>,
    findings: Family<VerdictLabels, Counter>,
    registry_requests: Family<RequestLabels, Counter>,
    cache_lookups: Family<LookupLabels, Counter>,
    cache_entries: Gauge,
    review_seconds: Histogram,
    probe_seconds: Family<VerdictLabels, Histogram>,
    registries_seen: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn probe_histogram() -> Histogram {
    // 1 ms … ~16 s
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("pullgate");
        let reviews = Family::<ReviewLabels, Counter>::default();
        let findings = Family::<VerdictLabels, Counter>::default();
        let registry_requests = Family::<RequestLabels, Counter>::default();
        let cache_lookups = Family::<LookupLabels, Counter>::default();
        let cache_entries = Gauge::default();
        // 25 µs … ~13 s: the warm path lives in the first buckets.
        let review_seconds = Histogram::new(exponential_buckets(0.000_025, 2.0, 20));
        let probe_seconds = Family::<VerdictLabels, Histogram>::new_with_constructor(
            probe_histogram as fn() -> Histogram,
        );
        registry.register("reviews", "Admission reviews answered", reviews.clone());
        registry.register("findings", "Image findings by verdict", findings.clone());
        registry.register(
            "registry_requests",
            "HTTP exchanges with registries and token servers, by registry and status",
            registry_requests.clone(),
        );
        registry.register(
            "cache_lookups",
            "Verdict cache lookups by result",
            cache_lookups.clone(),
        );
        registry.register(
            "cache_entries",
            "Verdicts in the cache",
            cache_entries.clone(),
        );
        registry.register(
            "review_duration_seconds",
            "Time to answer one admission review",
            review_seconds.clone(),
        );
        registry.register(
            "probe_duration_seconds",
            "Time of one registry probe, by verdict",
            probe_seconds.clone(),
        );
        Self {
            registry,
            reviews,
            findings,
            registry_requests,
            cache_lookups,
            cache_entries,
            review_seconds,
            probe_seconds,
            registries_seen: Mutex::new(HashSet::new()),
        }
    }

    pub fn review(
        &self,
        kind: &str,
        operation: &str,
        decision: &str,
        mode: &str,
        elapsed: Duration,
    ) {
        self.reviews
            .get_or_create(&ReviewLabels {
                kind: kind.to_string(),
                operation: operation.to_string(),
                decision: decision.to_string(),
                mode: mode.to_string(),
            })
            .inc();
        self.review_seconds.observe(elapsed.as_secs_f64());
    }

    pub fn finding(&self, verdict: Verdict) {
        self.findings
            .get_or_create(&VerdictLabels {
                verdict: verdict.to_string(),
            })
            .inc();
    }

    pub fn registry_request(&self, registry: &str, status: &str) {
        let registry = self.registry_label(registry);
        self.registry_requests
            .get_or_create(&RequestLabels {
                registry,
                status: status.to_string(),
            })
            .inc();
    }

    fn registry_label(&self, registry: &str) -> String {
        let mut seen = self
            .registries_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if seen.contains(registry) {
            return registry.to_string();
        }
        if seen.len() < MAX_REGISTRY_LABELS {
            seen.insert(registry.to_string());
            return registry.to_string();
        }
        "other".to_string()
    }

    pub fn set_cache_entries(&self, n: u64) {
        self.cache_entries.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Observer for Metrics {
    fn cache_lookup(&self, lookup: Lookup) {
        let result = match lookup {
            Lookup::Hit => "hit",
            Lookup::Miss => "miss",
        };
        self.cache_lookups
            .get_or_create(&LookupLabels {
                result: result.to_string(),
            })
            .inc();
    }

    fn probe(&self, verdict: Verdict, elapsed: Duration) {
        self.probe_seconds
            .get_or_create(&VerdictLabels {
                verdict: verdict.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_labels_are_capped() {
        let m = Metrics::new();
        for i in 0..(MAX_REGISTRY_LABELS + 10) {
            m.registry_request(&format!("r{i}.example.com"), "200");
        }
        let text = m.encode();
        assert!(text.contains("registry=\"other\""));
        assert!(text.contains("pullgate_registry_requests_total"));
    }
}
