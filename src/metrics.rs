//! Prometheus metrics (prefix `pullgate_`). Labels never carry credentials, and registry
//! hosts (which any Pod author chooses) are capped so they cannot blow up cardinality.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
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

/// Label values are `'static` where they can be, so that counting a review allocates
/// nothing: the review kinds pullgate handles, operations, decisions, modes, verdicts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReviewLabels {
    kind: Cow<'static, str>,
    operation: &'static str,
    decision: &'static str,
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    registry: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    result: &'static str,
}

/// The kind as a label value, without a copy for the kinds pullgate handles.
fn kind_label(kind: &str) -> Cow<'static, str> {
    const KNOWN: [&str; 10] = [
        "Pod",
        "Deployment",
        "ReplicaSet",
        "StatefulSet",
        "DaemonSet",
        "Job",
        "CronJob",
        "ReplicationController",
        "PodTemplate",
        "unknown",
    ];
    match KNOWN.iter().find(|k| **k == kind) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(kind.to_string()),
    }
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
    certificate_expiry: Gauge,
    cluster_synced: Gauge,
    /// Asked at each scrape: whether the cluster stores have their initial list.
    cluster_ready: OnceLock<ReadyProbe>,
    registries_seen: Mutex<HashSet<String>>,
}

type ReadyProbe = Box<dyn Fn() -> bool + Send + Sync>;

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

/// Upper bounds of `pullgate_review_duration_seconds`: 5 µs steps up to 30 µs and finer
/// ones to 150 µs, where the warm path lives (its target is a p99 of 50 µs), then the
/// former 25 µs × 2ⁿ bounds from 200 µs to ~13 s, which the alert and dashboards read.
fn review_buckets() -> impl Iterator<Item = f64> {
    const FINE_MICROS: [u32; 12] = [5, 10, 15, 20, 25, 30, 40, 50, 60, 75, 100, 150];
    FINE_MICROS
        .into_iter()
        .map(|us| f64::from(us) / 1e6)
        .chain(exponential_buckets(0.000_025, 2.0, 20).skip(3))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("pullgate");
        let reviews = Family::<ReviewLabels, Counter>::default();
        let findings = Family::<VerdictLabels, Counter>::default();
        let registry_requests = Family::<RequestLabels, Counter>::default();
        let cache_lookups = Family::<LookupLabels, Counter>::default();
        let cache_entries = Gauge::default();
        let review_seconds = Histogram::new(review_buckets());
        let probe_seconds = Family::<VerdictLabels, Histogram>::new_with_constructor(
            probe_histogram as fn() -> Histogram,
        );
        let certificate_expiry = Gauge::default();
        let cluster_synced = Gauge::default();
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
        registry.register(
            "serving_certificate_expiration_timestamp_seconds",
            "notAfter of the serving certificate in use, as Unix time (set at each load)",
            certificate_expiry.clone(),
        );
        registry.register(
            "cluster_synced",
            "1 once the pull-secret, ServiceAccount, Namespace (and Node) stores hold their initial list",
            cluster_synced.clone(),
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
            certificate_expiry,
            cluster_synced,
            cluster_ready: OnceLock::new(),
            registries_seen: Mutex::new(HashSet::new()),
        }
    }

    pub fn review(
        &self,
        kind: &str,
        operation: &'static str,
        decision: &'static str,
        mode: &'static str,
        elapsed: Duration,
    ) {
        self.reviews
            .get_or_create(&ReviewLabels {
                kind: kind_label(kind),
                operation,
                decision,
                mode,
            })
            .inc();
        self.review_seconds.observe(elapsed.as_secs_f64());
    }

    pub fn finding(&self, verdict: Verdict) {
        self.findings
            .get_or_create(&VerdictLabels {
                verdict: verdict.as_str(),
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

    /// The serving certificate's notAfter, in Unix seconds (the TLS loader calls this at
    /// each load, so a renewal shows at once).
    pub fn set_certificate_expiry(&self, not_after: i64) {
        self.certificate_expiry.set(not_after);
    }

    /// Where `cluster_synced` comes from: asked at each scrape. Set once; later calls are
    /// ignored.
    pub fn observe_cluster_ready(&self, ready: impl Fn() -> bool + Send + Sync + 'static) {
        let _ = self.cluster_ready.set(Box::new(ready));
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        if let Some(ready) = self.cluster_ready.get() {
            self.cluster_synced.set(i64::from(ready()));
        }
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
            .get_or_create(&LookupLabels { result })
            .inc();
    }

    fn probe(&self, verdict: Verdict, elapsed: Duration) {
        self.probe_seconds
            .get_or_create(&VerdictLabels {
                verdict: verdict.as_str(),
            })
            .observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_is_asked_at_each_scrape() {
        let m = Metrics::new();
        let ready = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let probe = ready.clone();
        m.observe_cluster_ready(move || probe.load(std::sync::atomic::Ordering::SeqCst));
        assert!(m.encode().contains("\npullgate_cluster_synced 0\n"));
        ready.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(m.encode().contains("\npullgate_cluster_synced 1\n"));
    }

    #[test]
    fn certificate_expiry_is_a_unix_timestamp_gauge() {
        let m = Metrics::new();
        m.set_certificate_expiry(1_900_000_000);
        let text = m.encode();
        assert!(
            text.contains("pullgate_serving_certificate_expiration_timestamp_seconds 1900000000"),
            "{text}"
        );
    }

    #[test]
    fn review_buckets_resolve_the_warm_path_and_keep_the_old_bounds() {
        let bounds: Vec<f64> = review_buckets().collect();
        assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{bounds:?}");
        let micros = |b: f64| (b * 1e6).round() as u64;
        let below_50: Vec<u64> = bounds
            .iter()
            .map(|b| micros(*b))
            .filter(|u| *u <= 50)
            .collect();
        assert_eq!(below_50, [5, 10, 15, 20, 25, 30, 40, 50]);
        // Every former bound (25 µs × 2ⁿ) is still one, up to the last (~13.1 s).
        for old in exponential_buckets(0.000_025, 2.0, 20) {
            assert!(
                bounds.iter().any(|b| (b - old).abs() < 1e-12),
                "{old} is no longer a bound"
            );
        }
        let m = Metrics::new();
        m.review(
            "Pod",
            "CREATE",
            "allowed",
            "enforce",
            Duration::from_micros(12),
        );
        let text = m.encode();
        assert!(
            text.contains("pullgate_review_duration_seconds_bucket{le=\"0.00001\"} 0\n")
                && text.contains("pullgate_review_duration_seconds_bucket{le=\"0.000015\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("kind=\"Pod\""), "{text}");
    }

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
