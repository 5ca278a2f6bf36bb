//! One admission review, end to end (ARCHITECTURE.md §2): decode → mode and exemptions →
//! credentials from the cluster stores → checker → decision → AdmissionReview answer.
//! Transport-free, so tests drive it in-process and the server only adds HTTP and TLS.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::admission::{self, ReviewError, Subject};
use crate::checker::{Checker, ImageSpec};
use crate::cluster::ClusterState;
use crate::credentials;
use crate::metrics::Metrics;
use crate::platform::Platform;
use crate::policy::{self, Decision, Exemptions, Mode, OnRegistryError};
use crate::reference::Reference;
use crate::scheduling;
use crate::verdict::Finding;

/// What a reply needs besides the registry: modes, exemptions, platforms, deadline.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub mode: Mode,
    pub on_registry_error: OnRegistryError,
    pub exemptions: Exemptions,
    /// `--platform`: the platforms pods run on when no watched node satisfies a pod's
    /// constraints (or nodes are not watched).
    pub platforms: Vec<Platform>,
    /// `--watch-nodes`: the cluster state has a Node store; platforms come from the nodes
    /// a pod's constraints admit, and node `status.images` can spare a pod a failure.
    pub watch_nodes: bool,
    /// Upper bound of the time spent on one review, whatever `?timeout=` allows.
    pub max_check_time: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Enforce,
            on_registry_error: OnRegistryError::Allow,
            exemptions: Exemptions {
                namespaces: vec!["kube-system".to_string()],
                images: Vec::new(),
            },
            platforms: vec![Platform::linux_amd64()],
            watch_nodes: false,
            max_check_time: Duration::from_secs(9),
        }
    }
}

/// The HTTP-free webhook.
pub struct Webhook {
    checker: Checker,
    cluster: ClusterState,
    config: WebhookConfig,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The answer to one POST: a review (HTTP 200, its JSON body) or a reason (HTTP 400).
#[derive(Debug)]
pub enum Reply {
    Review(Vec<u8>),
    BadRequest(String),
}

impl Webhook {
    pub fn new(
        checker: Checker,
        cluster: ClusterState,
        config: WebhookConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            checker,
            cluster,
            config,
            metrics,
        }
    }

    pub fn cluster(&self) -> &ClusterState {
        &self.cluster
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn checker(&self) -> &Checker {
        &self.checker
    }

    /// Answer one review body. `timeout` is the apiserver's `?timeout=`: the reply must
    /// leave before it, so the checks get that minus a safety margin.
    pub async fn review(&self, body: &[u8], timeout: Option<Duration>) -> Reply {
        let started = Instant::now();
        let deadline = started + check_budget(timeout, self.config.max_check_time);
        let subject = match admission::decode(body) {
            Ok(s) => s,
            Err(e @ ReviewError::Undecodable(_)) => {
                let reason = e.to_string();
                tracing::warn!(%reason, "undecodable admission review");
                self.metrics
                    .review("unknown", "unknown", "invalid", "none", started.elapsed());
                return Reply::BadRequest(reason);
            }
            Err(ReviewError::Invalid { uid, reason }) => {
                tracing::warn!(%uid, %reason, "invalid admission request");
                self.metrics
                    .review("unknown", "unknown", "invalid", "none", started.elapsed());
                return Reply::Review(admission::respond_invalid(&uid, &reason));
            }
        };
        let (mode, findings, decision) = self.judge(&subject, deadline).await;
        let elapsed = started.elapsed();
        for f in &findings {
            self.metrics.finding(f.verdict);
        }
        self.metrics.review(
            &subject.kind,
            subject.operation.as_str(),
            decision.label(),
            mode,
            elapsed,
        );
        // One line per review that denies, warns or annotates; a clean allow (most of a
        // busy cluster's reviews, already counted by the metrics) at debug, so that the
        // warm path does not format and write a line for each.
        macro_rules! review_line {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    uid = %subject.uid,
                    namespace = %subject.namespace,
                    kind = %subject.kind,
                    name = %subject.name,
                    operation = subject.operation.as_str(),
                    dry_run = subject.dry_run,
                    mode,
                    decision = decision.label(),
                    images = findings.len(),
                    verdicts = %policy::VerdictCounts(&findings),
                    duration_ms = elapsed.as_secs_f64() * 1000.0,
                    "review"
                )
            };
        }
        if review_log_level(&decision) == tracing::Level::DEBUG {
            review_line!(tracing::Level::DEBUG);
        } else {
            review_line!(tracing::Level::INFO);
        }
        Reply::Review(admission::respond(&subject.uid, &decision))
    }

    /// Mode, findings and decision for a decoded review. `dryRun` reviews are judged like
    /// real ones: `kubectl apply --dry-run=server` must show the real verdict.
    async fn judge(
        &self,
        subject: &Subject,
        deadline: Instant,
    ) -> (&'static str, Vec<Finding>, Decision) {
        let Some(workload) = &subject.workload else {
            return ("none", Vec::new(), Decision::allow());
        };
        if self.config.exemptions.namespace(&subject.namespace) {
            return ("exempt", Vec::new(), Decision::allow());
        }
        let mode = self
            .cluster
            .namespace_mode(&subject.namespace)
            .unwrap_or(self.config.mode);
        if mode == Mode::Off || subject.images.is_empty() {
            return (mode.as_str(), Vec::new(), Decision::allow());
        }

        let (keyring, problems) =
            credentials::pod_keyring(&self.cluster, &subject.namespace, workload);
        let constraints = self.cluster.constraints(workload);
        let placement = self.cluster.placement(&constraints, &self.config.platforms);
        let specs: Vec<ImageSpec> = subject
            .images
            .iter()
            .map(|c| {
                let mut spec = c.to_spec();
                if spec.exempt.is_none() && !self.config.exemptions.images.is_empty() {
                    let normalized = Reference::parse(&c.image).ok().map(|r| r.to_string());
                    if let Some(pattern) = self
                        .config
                        .exemptions
                        .image(&c.image, normalized.as_deref())
                    {
                        spec.exempt = Some(format!("image matches --exempt-image {pattern:?}"));
                    }
                }
                spec
            })
            .collect();
        let findings = credentials::check_placed_pod(
            &self.checker,
            &self.cluster,
            &subject.images,
            &specs,
            &keyring,
            &problems,
            &placement,
            deadline,
        )
        .await;
        let on_error = self.config.on_registry_error;
        let mut decision = if workload.mirror {
            policy::decide_mirror_pod(mode, on_error, &findings)
        } else {
            policy::decide(mode, on_error, &findings)
        };
        // Only then are the known platforms gathered (it reads every node).
        if placement.basis == scheduling::Basis::Unknown
            && let Some(warning) = placement.warning(&self.known_platforms())
        {
            decision.warnings.push(warning);
        }
        (mode.as_str(), findings, decision)
    }

    /// The platforms a pod is judged against when no node is known to admit it.
    fn known_platforms(&self) -> Vec<Platform> {
        let mut known = self.config.platforms.clone();
        for p in self.cluster.node_platforms() {
            if !known.contains(&p) {
                known.push(p);
            }
        }
        known
    }
}

/// Time for the checks: the apiserver's timeout minus a margin for the reply (a fifth,
/// between 200 ms and 1 s), capped by `max`.
pub fn check_budget(timeout: Option<Duration>, max: Duration) -> Duration {
    match timeout {
        Some(t) => {
            let margin = (t / 5).clamp(Duration::from_millis(200), Duration::from_secs(1));
            t.saturating_sub(margin).min(max)
        }
        None => max,
    }
}

/// Go's `time.Duration` strings as the apiserver appends them (`10s`, `1m30s`, `500ms`).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_end == 0 {
            return None;
        }
        let value: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += value * scale;
    }
    (total.is_finite() && total <= 86_400.0).then(|| Duration::from_secs_f64(total))
}

/// A review's log line is `info` when it denies, warns or annotates, `debug` for a clean
/// allow.
fn review_log_level(decision: &Decision) -> tracing::Level {
    if decision.allowed && decision.warnings.is_empty() && decision.audit_annotations.is_empty() {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_allows_log_at_debug() {
        assert_eq!(review_log_level(&Decision::allow()), tracing::Level::DEBUG);
        let mut warned = Decision::allow();
        warned.warnings.push("new nodes will fail".into());
        assert_eq!(review_log_level(&warned), tracing::Level::INFO);
        let mut annotated = Decision::allow();
        annotated
            .audit_annotations
            .insert("images.pullgate.dev/findings".into(), "[]".into());
        assert_eq!(review_log_level(&annotated), tracing::Level::INFO);
        let denied = Decision {
            allowed: false,
            message: Some("not found".into()),
            ..Decision::default()
        };
        assert_eq!(review_log_level(&denied), tracing::Level::INFO);
    }

    #[test]
    fn budget_leaves_a_margin_for_the_reply() {
        let max = Duration::from_secs(9);
        assert_eq!(
            check_budget(Some(Duration::from_secs(10)), max),
            Duration::from_secs(9)
        );
        assert_eq!(
            check_budget(Some(Duration::from_secs(2)), max),
            Duration::from_millis(1600)
        );
        assert_eq!(check_budget(Some(Duration::from_secs(30)), max), max);
        assert_eq!(check_budget(None, max), max);
        assert_eq!(
            check_budget(Some(Duration::from_millis(100)), max),
            Duration::ZERO
        );
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("s"), None);
        assert_eq!(parse_go_duration(""), None);
        assert_eq!(parse_go_duration("9999999h"), None);
    }
}
