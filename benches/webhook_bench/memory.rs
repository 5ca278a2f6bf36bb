//! The memory benchmark's child process: the webhook as `pullgate serve --no-cluster`
//! builds it, then its state — a verdict cache with 100,000 entries and pull-secret stores
//! with 10,000 `kubernetes.io/dockerconfigjson` Secrets — filled from the library, with
//! `VmRSS` read before and after.
//!
//! Run as a separate process (the bench re-executes itself with
//! `PULLGATE_BENCH_MODE=memory`) so that nothing else the bench allocated is counted.

use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::Parser as _;
use k8s_openapi::api::core::v1::Secret;
use pullgate::cache::CacheKey;
use pullgate::cli::{Cli, Command};
use pullgate::cluster::ClusterWriters;
use pullgate::keyring::Credential;
use pullgate::metrics::Metrics;
use pullgate::platform::Platform;
use pullgate::reference::Reference;
use pullgate::verdict::{Outcome, Verdict};
use pullgate::webhook::{Webhook, WebhookConfig};
use serde_json::json;

use crate::serve::rss_kib;
use crate::support;

pub const VERDICTS: usize = 100_000;
pub const SECRETS: usize = 10_000;

/// Registry hosts, teams: a cluster of many teams sharing a few dozen registries.
const REGISTRIES: usize = 40;
const NAMESPACES: usize = 500;

fn registry(i: usize) -> String {
    format!("registry-{}.corp.example.com", i % REGISTRIES)
}

/// What the child prints (one JSON line on stdout).
pub fn run() -> anyhow::Result<()> {
    support::init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let self_status = "/proc/self/status";
    let started = Instant::now();
    let report = runtime.block_on(async {
        // The engine exactly as `pullgate serve --no-cluster` builds it (registry client
        // with the system roots, metrics, the default cache bounds).
        let cli = Cli::try_parse_from(["pullgate", "serve", "--no-cluster"])?;
        let Command::Serve(serve) = cli.command else {
            anyhow::bail!("not the serve command");
        };
        let metrics = Arc::new(Metrics::new());
        let checker = serve.engine.checker_with_metrics(metrics.clone())?;
        let baseline = rss_kib(self_status)?;
        // The secret store first, on a heap the verdict cache has not grown and freed
        // into (its reallocations would leave holes the secrets then fill, hiding them).
        let mut writers = ClusterWriters::new();
        for i in 0..SECRETS {
            writers.add_secret(secret(i)?);
        }
        let state = writers.state(false);
        let secrets = state.pull_secret_count();
        // The stores answer as the webhook asks them.
        state
            .pull_secret(&format!("team-{}", 7 % NAMESPACES), "regcred-7")
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let after_secrets = rss_kib(self_status)?;
        let cache = checker.cache().clone();
        let platforms = [Platform::linux_amd64()];
        for i in 0..VERDICTS {
            // 3 of 4 verdicts were obtained with a pull secret, the rest anonymously.
            let team = i % NAMESPACES;
            let image = format!(
                "{}/team-{team}/service-{}:v1.{}.{}",
                registry(i),
                i / 8,
                i % 8,
                i % 97
            );
            let reference = Reference::parse(&image)?;
            let credentials = if i % 4 == 3 {
                Vec::new()
            } else {
                vec![Credential {
                    source: format!("secret regcred-{team}"),
                    key: registry(i),
                    username: format!("robot$team-{team}+ci"),
                    password: support::hex(&support::random_bytes(20)),
                }]
            };
            let key = CacheKey::new(
                &reference,
                &credentials,
                &platforms,
                pullgate::registry::ImageUse::Container,
            );
            // Mostly pullable (a digest and a message each), one in ten not-found with a
            // suggestion, as a busy cluster's cache holds.
            let outcome = if i % 10 == 9 {
                Outcome::new(
                    Verdict::NotFound,
                    format!(
                        "tag \"v1.{}.{}\" not found in {image} (did you mean \"v1.{}.0\"?)",
                        i % 8,
                        i % 97,
                        i % 8
                    ),
                )
            } else {
                Outcome::pullable(pullgate::digest::Digest::sha256_of(image.as_bytes()))
            };
            cache.get_or_probe(key, || async move { outcome }).await;
        }
        cache.run_pending_tasks().await;
        let entries = cache.entry_count();

        let after_cache = rss_kib(self_status)?;
        let cache_secs = started.elapsed().as_secs_f64();
        let webhook = Webhook::new(checker, state, WebhookConfig::default(), metrics);
        // Keep everything alive until measured.
        drop(webhook);
        drop(writers);
        drop(cache);
        anyhow::Ok(json!({
            "baseline_kib": baseline,
            "after_cache_kib": after_cache,
            "after_secrets_kib": after_secrets,
            "entries": entries,
            "secrets": secrets,
            "cache_fill_secs": cache_secs,
        }))
    })?;
    println!("{report}");
    Ok(())
}

/// A pull secret as the apiserver serves it to a watch (managed fields and the
/// last-applied annotation are stripped by pullgate's reflector, so they are left out).
fn secret(i: usize) -> anyhow::Result<Secret> {
    let team = i % NAMESPACES;
    let user = format!("robot$team-{team}+puller-{i}");
    let password = support::hex(&support::random_bytes(24));
    let auth = STANDARD.encode(format!("{user}:{password}"));
    let config = json!({
        "auths": {
            registry(i): { "username": user, "password": password, "auth": auth }
        }
    })
    .to_string();
    let value = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {
            "name": format!("regcred-{i}"),
            "namespace": format!("team-{team}"),
            "uid": format!("{}-{}-{}-{}-{}",
                support::hex(&support::random_bytes(4)),
                support::hex(&support::random_bytes(2)),
                support::hex(&support::random_bytes(2)),
                support::hex(&support::random_bytes(2)),
                support::hex(&support::random_bytes(6))),
            "resourceVersion": format!("{}", 1_000_000 + i),
            "creationTimestamp": "2026-01-15T08:30:00Z",
            "labels": {
                "app.kubernetes.io/managed-by": "external-secrets",
                "team": format!("team-{team}"),
            },
        },
        "data": { ".dockerconfigjson": STANDARD.encode(config) },
    });
    Ok(serde_json::from_value(value)?)
}
