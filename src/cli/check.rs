//! `pullgate check`: the engine without a cluster, for CI pipelines and people.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokio::time::Instant;

use super::input::{Inputs, PullSecret};
use super::output::{self, Row};
use super::{EngineArgs, OutputArgs, PlatformArgs, Status, parse_seconds};
use crate::checker::ImageSpec;
use crate::cluster::SecretProblem;
use crate::credentials;
use crate::keyring::Keyring;
use crate::workload::{Workload, container_images};

/// Images checked with one set of credentials: `--image`s, or one workload: (workload label,
/// images, keyring, the named secrets that were not given or cannot be decoded).
type Group = (Option<String>, Vec<ImageSpec>, Keyring, Vec<SecretProblem>);

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Image reference to check (repeatable).
    #[arg(
        long = "image",
        value_name = "REF",
        env = "PULLGATE_IMAGE",
        value_delimiter = ','
    )]
    pub images: Vec<String>,
    /// Kubernetes YAML to check: a file, a directory, or - for stdin (repeatable;
    /// multi-document; Pods, workloads with a pod template, Lists).
    #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-")]
    pub files: Vec<PathBuf>,
    /// Pull secret: a docker config JSON file, or a Secret manifest with data or stringData
    /// (repeatable; order kept, as in imagePullSecrets).
    #[arg(
        long = "pull-secret",
        value_name = "FILE",
        env = "PULLGATE_PULL_SECRET",
        value_delimiter = ','
    )]
    pub pull_secrets: Vec<PathBuf>,
    #[command(flatten)]
    pub platform: PlatformArgs,
    /// Give up on the registries after this many seconds; unfinished checks are `timeout`.
    #[arg(long, value_name = "SECONDS", env = "PULLGATE_TIMEOUT", default_value = "30", value_parser = parse_seconds)]
    pub timeout: Duration,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
}

impl CheckArgs {
    /// Run the check; errors are bad usage or unreadable input (exit status 2).
    pub async fn run(self) -> anyhow::Result<Status> {
        if self.images.is_empty() && self.files.is_empty() {
            anyhow::bail!("nothing to check: give --image REF or -f FILE|DIR|-");
        }
        let mut inputs = Inputs::default();
        for path in &self.pull_secrets {
            inputs.add_pull_secret_file(path)?;
        }
        for path in &self.files {
            inputs.add_manifests(path)?;
        }
        let checker = self.engine.checker()?;
        let deadline = Instant::now() + self.timeout;

        let mut groups: Vec<Group> = Vec::new();
        if !self.images.is_empty() {
            // Images on the command line use every pull secret given, in order.
            let secrets: Vec<&PullSecret> = inputs.secrets.iter().collect();
            let specs = self
                .images
                .iter()
                .map(|i| ImageSpec::new(None, i))
                .collect();
            let (keyring, problems) = credentials_of(&secrets, &inputs.configs, Vec::new());
            groups.push((None, specs, keyring, problems));
        }
        for workload in &inputs.workloads {
            let (secrets, missing) = resolve_secrets(&inputs, workload);
            let specs = container_images(&workload.spec)
                .iter()
                .map(|c| c.to_spec())
                .collect();
            let label = format!("{}/{}", workload.kind, workload.name);
            let (keyring, problems) = credentials_of(&secrets, &inputs.configs, missing);
            groups.push((Some(label), specs, keyring, problems));
        }

        // The webhook's own rules, a Secret the kubelet cannot decode included.
        let checks = groups.iter().map(|(_, specs, keyring, problems)| {
            credentials::check_pod(
                &checker,
                specs,
                keyring,
                problems,
                &self.platform.platforms,
                deadline,
            )
        });
        let results = futures::future::join_all(checks).await;

        let mut rows = Vec::new();
        for ((workload, _, _, _), findings) in groups.into_iter().zip(results) {
            for finding in findings {
                rows.push(Row {
                    context: workload.clone().into_iter().collect(),
                    finding,
                });
            }
        }
        let findings: Vec<_> = rows.iter().map(|r| r.finding.clone()).collect();
        let headers: &[&str] = if inputs.workloads.is_empty() {
            &[]
        } else {
            &["WORKLOAD"]
        };
        let json = serde_json::to_value(&findings).context("encoding the report")?;
        output::print(headers, &rows, self.output.output, &json).context("writing the report")?;
        Ok(Status::of(&findings))
    }
}

/// The workload's imagePullSecrets (else, as the apiserver does for Pods, those of its
/// ServiceAccount when that is among the manifests), resolved by name; the names not
/// found come back separately so the message can say so.
fn resolve_secrets<'a>(
    inputs: &'a Inputs,
    workload: &Workload,
) -> (Vec<&'a PullSecret>, Vec<String>) {
    let ns = workload.namespace.as_deref();
    let mut names = workload.pull_secret_names();
    if names.is_empty()
        && let Some(sa) = inputs.service_account_secrets(ns, workload.service_account())
    {
        names = sa.to_vec();
    }
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in names {
        match inputs.secret(ns, &name) {
            Some(s) => found.push(s),
            None => missing.push(name),
        }
    }
    (found, missing)
}

/// The keyring of the given secrets and docker config files, and what the webhook would
/// say of the rest: names not given (as a Secret the cluster does not have), and Secrets
/// the kubelet cannot decode.
fn credentials_of(
    secrets: &[&PullSecret],
    configs: &[PullSecret],
    missing: Vec<String>,
) -> (Keyring, Vec<SecretProblem>) {
    let mut keyring = Keyring::new();
    let mut problems: Vec<SecretProblem> =
        missing.into_iter().map(SecretProblem::Missing).collect();
    let named = secrets.iter().map(|s| (*s, "secret"));
    let files = configs.iter().map(|c| (c, "pull secret file"));
    for (secret, what) in named.chain(files) {
        match &secret.config {
            Ok(config) => keyring.add(&format!("{what} {}", secret.name), config),
            Err(reason) => problems.push(SecretProblem::Rejected {
                name: secret.name.clone(),
                reason: reason.clone(),
            }),
        }
    }
    (keyring, problems)
}
