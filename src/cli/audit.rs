//! `pullgate audit`: what in a live cluster would no longer pull.

use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use super::output::{self, Row};
use super::{EngineArgs, OutputArgs, PlatformArgs, Status, parse_seconds};
use crate::audit::{self, AuditOptions};

/// Above this many workloads, a terminal gets a progress line.
const PROGRESS_THRESHOLD: usize = 20;

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Namespace to audit (repeatable; default: all namespaces).
    #[arg(
        short = 'n',
        long = "namespace",
        value_name = "NAME",
        env = "PULLGATE_AUDIT_NAMESPACE",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,
    #[command(flatten)]
    pub platform: PlatformArgs,
    /// Use the nodes' os/arch labels as the platform set.
    #[arg(long, env = "PULLGATE_PLATFORMS_FROM_NODES")]
    pub platforms_from_nodes: bool,
    /// Workloads checked at once.
    #[arg(
        long,
        value_name = "N",
        env = "PULLGATE_AUDIT_CONCURRENCY",
        default_value = "8"
    )]
    pub concurrency: usize,
    /// Time for one workload's images, in seconds; unfinished checks are `timeout`.
    #[arg(long, value_name = "SECONDS", env = "PULLGATE_TIMEOUT", default_value = "30", value_parser = parse_seconds)]
    pub timeout: Duration,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
}

impl AuditArgs {
    pub async fn run(self) -> anyhow::Result<Status> {
        let client = kube::Client::try_default()
            .await
            .context("no cluster: set KUBECONFIG (or ~/.kube/config), or run in a cluster")?;
        let checker = self.engine.checker()?;
        let cluster = audit::snapshot(&client, &self.namespaces, self.platforms_from_nodes).await?;
        let targets = audit::targets(&client, &self.namespaces).await?;
        let show_progress = std::io::stderr().is_terminal() && targets.len() > PROGRESS_THRESHOLD;
        let progress = |done: usize, total: usize| {
            if show_progress {
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\raudit: {done}/{total} workloads");
                if done == total {
                    let _ = writeln!(err);
                }
            }
        };
        let options = AuditOptions {
            concurrency: self.concurrency,
            timeout: self.timeout,
            platforms: self.platform.platforms.clone(),
        };
        let results = audit::run(&checker, &cluster, targets, &options, &progress).await;

        let rows: Vec<Row> = results
            .iter()
            .map(|r| Row {
                context: vec![r.namespace.clone(), r.kind.clone(), r.name.clone()],
                finding: r.finding.clone(),
            })
            .collect();
        let json = serde_json::to_value(&results).context("encoding the report")?;
        output::print(
            &["NAMESPACE", "KIND", "NAME"],
            &rows,
            self.output.output,
            &json,
        )
        .context("writing the report")?;
        let findings: Vec<_> = results.into_iter().map(|r| r.finding).collect();
        Ok(Status::of(&findings))
    }
}
