//! `pullgate serve`: the admission webhook.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use super::{EngineArgs, PlatformArgs, parse_seconds};
use crate::certs;
use crate::cluster::ClusterState;
use crate::metrics::Metrics;
use crate::policy::{Exemptions, Mode, OnRegistryError};
use crate::server::{self, Ops, ServeOptions, tls::ReloadingCert};
use crate::webhook::{Webhook, WebhookConfig};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// HTTPS address for POST /validate.
    #[arg(
        long,
        value_name = "ADDR",
        env = "PULLGATE_LISTEN",
        default_value = "0.0.0.0:8443"
    )]
    pub listen: SocketAddr,
    /// Serving certificate (PEM chain), re-read when its content changes.
    #[arg(
        long,
        value_name = "FILE",
        env = "PULLGATE_TLS_CERT",
        default_value = "certs/tls.crt"
    )]
    pub tls_cert: PathBuf,
    /// Serving key (PEM), re-read with the certificate.
    #[arg(
        long,
        value_name = "FILE",
        env = "PULLGATE_TLS_KEY",
        default_value = "certs/tls.key"
    )]
    pub tls_key: PathBuf,
    /// Development: create a self-signed CA and serving certificate for localhost and
    /// 127.0.0.1 at --tls-cert / --tls-key when they are missing (CA next to them, ca.crt).
    #[arg(long, env = "PULLGATE_DEV")]
    pub dev: bool,
    /// Plain-HTTP address for /healthz, /readyz and /metrics.
    #[arg(
        long,
        value_name = "ADDR",
        env = "PULLGATE_METRICS_LISTEN",
        default_value = "0.0.0.0:9090"
    )]
    pub metrics_listen: SocketAddr,
    /// Default mode; a namespace label pullgate.dev/mode overrides it.
    #[arg(long, value_enum, env = "PULLGATE_MODE", default_value = "enforce")]
    pub mode: Mode,
    /// What an indeterminate verdict (registry down, 429, timeout) does in enforce mode.
    #[arg(
        long,
        value_enum,
        env = "PULLGATE_ON_REGISTRY_ERROR",
        default_value = "allow"
    )]
    pub on_registry_error: OnRegistryError,
    #[command(flatten)]
    pub platform: PlatformArgs,
    /// Watch Nodes: a pod's platforms are those of the nodes its nodeSelector, node
    /// affinity and os admit, and an IfNotPresent image the nodes it can land on already
    /// hold is admitted with a warning even when the registry no longer serves it.
    #[arg(long, env = "PULLGATE_WATCH_NODES")]
    pub watch_nodes: bool,
    /// The former name of --watch-nodes.
    #[arg(long, hide = true, env = "PULLGATE_PLATFORMS_FROM_NODES")]
    pub platforms_from_nodes: bool,
    /// Namespace never checked (repeatable; replaces the default).
    #[arg(
        long = "exempt-namespace",
        value_name = "NAME",
        env = "PULLGATE_EXEMPT_NAMESPACE",
        value_delimiter = ',',
        default_value = "kube-system"
    )]
    pub exempt_namespaces: Vec<String>,
    /// Image never checked: a glob over the image as written or normalized, `*` matching
    /// anything (repeatable), e.g. `registry.internal/*`.
    #[arg(
        long = "exempt-image",
        value_name = "GLOB",
        env = "PULLGATE_EXEMPT_IMAGE",
        value_delimiter = ','
    )]
    pub exempt_images: Vec<String>,
    /// Most time spent on one review, in seconds (the apiserver's ?timeout= minus a margin
    /// lowers it).
    #[arg(long, value_name = "SECONDS", env = "PULLGATE_MAX_CHECK_TIME", default_value = "9", value_parser = parse_seconds)]
    pub max_check_time: Duration,
    /// How often the certificate files are compared for new content, in seconds.
    #[arg(long, value_name = "SECONDS", env = "PULLGATE_CERT_RELOAD_INTERVAL", default_value = "10", value_parser = parse_seconds)]
    pub cert_reload_interval: Duration,
    /// A client must send request headers within this many seconds.
    #[arg(long, value_name = "SECONDS", env = "PULLGATE_HEADER_READ_TIMEOUT", default_value = "5", value_parser = parse_seconds)]
    pub header_read_timeout: Duration,
    /// Open HTTPS connections at most.
    #[arg(
        long,
        value_name = "N",
        env = "PULLGATE_MAX_CONNECTIONS",
        default_value = "1024"
    )]
    pub max_connections: usize,
    /// On SIGTERM, time given to in-flight reviews, in seconds.
    #[arg(long, value_name = "SECONDS", env = "PULLGATE_DRAIN_TIMEOUT", default_value = "25", value_parser = parse_seconds)]
    pub drain_timeout: Duration,
    /// Do not look for a cluster (no pull secrets, no namespace labels).
    #[arg(long, env = "PULLGATE_NO_CLUSTER")]
    pub no_cluster: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
}

impl ServeArgs {
    /// What the webhook is told by these flags (also the profile driver's configuration).
    pub fn webhook_config(&self) -> WebhookConfig {
        WebhookConfig {
            mode: self.mode,
            on_registry_error: self.on_registry_error,
            exemptions: Exemptions {
                namespaces: self.exempt_namespaces.clone(),
                images: self.exempt_images.clone(),
            },
            platforms: self.platform.platforms.clone(),
            watch_nodes: self.watch_nodes || self.platforms_from_nodes,
            max_check_time: self.max_check_time,
        }
    }

    pub async fn run(self) -> anyhow::Result<()> {
        let shutdown = server::shutdown_signal().context("installing the SIGTERM handler")?;
        if self.dev {
            ensure_dev_certs(&self.tls_cert, &self.tls_key)?;
        }
        let cert =
            ReloadingCert::load(&self.tls_cert, &self.tls_key).context("serving certificate")?;
        let tls = cert.server_config().context("TLS configuration")?;
        let _reloader = cert.spawn_reloader(self.cert_reload_interval);

        let watch_nodes = self.watch_nodes || self.platforms_from_nodes;
        let cluster = connect_cluster(self.no_cluster, watch_nodes).await;
        let metrics = Arc::new(Metrics::new());
        cert.report_expiry_to(metrics.clone());
        let stores = cluster.clone();
        metrics.observe_cluster_ready(move || stores.is_ready());
        let checker = self.engine.checker_with_metrics(metrics.clone())?;
        let config = self.webhook_config();
        let webhook = Arc::new(Webhook::new(checker, cluster, config, metrics));

        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .with_context(|| format!("cannot listen on {}", self.listen))?;
        let ops_listener = tokio::net::TcpListener::bind(self.metrics_listen)
            .await
            .with_context(|| format!("cannot listen on {}", self.metrics_listen))?;
        let serving = Arc::new(AtomicBool::new(true));
        let ops = server::ops_router(Ops {
            webhook: webhook.clone(),
            serving: serving.clone(),
        });
        let (ops_stop, ops_stopped) = tokio::sync::oneshot::channel::<()>();
        let ops_task = tokio::spawn(async move {
            let _ = axum::serve(ops_listener, ops)
                .with_graceful_shutdown(async {
                    let _ = ops_stopped.await;
                })
                .await;
        });
        tracing::info!(
            listen = %self.listen,
            metrics = %self.metrics_listen,
            mode = %self.mode,
            on_registry_error = ?self.on_registry_error,
            "pullgate serving admission reviews on https://{}/validate",
            self.listen
        );

        let options = ServeOptions {
            header_read_timeout: self.header_read_timeout,
            max_connections: self.max_connections,
            drain_timeout: self.drain_timeout,
            ..ServeOptions::default()
        };
        let flag = serving.clone();
        server::serve_tls(
            listener,
            tls,
            server::router(webhook),
            options,
            async move {
                shutdown.await;
                tracing::info!("shutdown requested; no longer accepting connections");
                flag.store(false, Ordering::SeqCst);
            },
        )
        .await;
        let _ = ops_stop.send(());
        let _ = ops_task.await;
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// Find the cluster as kube does (`KUBECONFIG`, then in-cluster). Without one, serve with
/// no pull secrets and say so.
async fn connect_cluster(no_cluster: bool, with_nodes: bool) -> ClusterState {
    if no_cluster {
        tracing::warn!(
            "--no-cluster: no pull secrets, ServiceAccounts or namespace labels will be read"
        );
        return ClusterState::disconnected();
    }
    match tokio::time::timeout(Duration::from_secs(10), kube::Client::try_default()).await {
        Ok(Ok(client)) => {
            tracing::info!(
                watch_nodes = with_nodes,
                "cluster found; starting reflectors for pull secrets, ServiceAccounts, Namespaces and RuntimeClasses"
            );
            ClusterState::start(client, with_nodes)
        }
        Ok(Err(e)) => {
            tracing::warn!(reason = %e, "no kubeconfig and not in a cluster: serving with no pull secrets (private images will be reported unauthorized)");
            ClusterState::disconnected()
        }
        Err(_) => {
            tracing::warn!("cluster configuration timed out: serving with no pull secrets");
            ClusterState::disconnected()
        }
    }
}

/// `make run`: self-signed certificates for local use, written once.
fn ensure_dev_certs(cert: &Path, key: &Path) -> anyhow::Result<()> {
    if cert.exists() && key.exists() {
        return Ok(());
    }
    let names = ["localhost", "127.0.0.1", "::1"].map(String::from);
    let generated = certs::generate(&names, 365).context("generating development certificates")?;
    let ca = cert.with_file_name("ca.crt");
    certs::write_file(&ca, &generated.ca_cert_pem, false)?;
    certs::write_file(cert, &generated.cert_pem, false)?;
    certs::write_file(key, &generated.key_pem, true)?;
    tracing::info!(cert = %cert.display(), ca = %ca.display(), "wrote self-signed development certificates");
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use clap::Parser as _;

    fn watches_nodes(args: &[&str]) -> bool {
        let cli = Cli::try_parse_from(["pullgate", "serve"].iter().chain(args))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        match cli.command {
            Command::Serve(s) => s.watch_nodes || s.platforms_from_nodes,
            _ => panic!("not serve"),
        }
    }

    #[test]
    fn watch_nodes_keeps_its_former_name() {
        assert!(watches_nodes(&["--watch-nodes"]));
        assert!(watches_nodes(&["--platforms-from-nodes"]));
        assert!(!watches_nodes(&[]));
    }
}
