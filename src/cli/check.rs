//! `pullgate check`: the engine without a cluster, for CI pipelines and people.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokio::time::Instant;

use super::input::{ImageField, Inputs, Location, Manifest, PullSecret};
use super::output::{self, Report, Row};
use super::{EngineArgs, OutputArgs, PlatformArgs, Status, parse_seconds};
use crate::checker::ImageSpec;
use crate::cluster::SecretProblem;
use crate::credentials;
use crate::keyring::Keyring;
use crate::platform::Platform;
use crate::scheduling::{self, Constraints};
use crate::verdict::{Finding, Verdict};
use crate::workload::{Workload, pod_images};

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
    /// Kubernetes YAML or JSON to check: a file, a directory, or - for stdin (repeatable;
    /// multi-document; Pods, workloads with a pod template, Lists). Findings name the file,
    /// line and column of each image.
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
            groups.push(Group {
                manifest: None,
                specs,
                keyring,
                problems,
                missing: Vec::new(),
                platforms: self.platform.platforms.clone(),
            });
        }
        for manifest in &inputs.workloads {
            let (secrets, missing) = resolve_secrets(&inputs, &manifest.workload);
            let specs = pod_images(&manifest.workload.spec)
                .iter()
                .map(|c| c.to_spec())
                .collect();
            let (keyring, problems) = credentials_of(&secrets, &inputs.configs, missing.clone());
            // The webhook's rule without nodes: the --platform set, narrowed (or pinned
            // elsewhere) by the spec's nodeSelector, node affinity and os.
            let constraints = Constraints::of(&manifest.workload.spec);
            let platforms =
                scheduling::without_nodes(&constraints, &self.platform.platforms).platforms;
            groups.push(Group {
                manifest: Some(manifest),
                specs,
                keyring,
                problems,
                missing,
                platforms,
            });
        }

        // The webhook's own rules, a Secret the kubelet cannot decode included.
        let checks = groups.iter().map(|g| {
            credentials::check_pod(
                &checker,
                &g.specs,
                &g.keyring,
                &g.problems,
                &g.platforms,
                deadline,
            )
        });
        let results = futures::future::join_all(checks).await;

        let mut rows = Vec::new();
        for (group, findings) in groups.into_iter().zip(results) {
            rows.extend(group.rows(findings));
        }
        let findings: Vec<_> = rows.iter().map(|r| r.finding.clone()).collect();
        let headers: &[&str] = if inputs.workloads.is_empty() {
            &[]
        } else {
            &["WORKLOAD"]
        };
        let json = serde_json::to_value(rows.iter().map(JsonRow::of).collect::<Vec<_>>())
            .context("encoding the report")?;
        let report = Report {
            command: "check",
            context_headers: headers,
            rows: &rows,
            counted: &findings,
            group_by: None,
            note: None,
            json: &json,
        };
        output::print(&report, self.output.output).context("writing the report")?;
        Ok(Status::of(&findings))
    }
}

/// Images checked with one set of credentials: the `--image`s, or one workload.
struct Group<'a> {
    manifest: Option<&'a Manifest>,
    specs: Vec<ImageSpec>,
    keyring: Keyring,
    /// What the webhook would say of the named secrets that give nothing: not given (as
    /// a Secret the cluster does not have), or not decodable by the kubelet.
    problems: Vec<SecretProblem>,
    /// imagePullSecrets named but given neither in `-f` nor `--pull-secret`.
    missing: Vec<String>,
    /// The platforms its pods may run on.
    platforms: Vec<Platform>,
}

impl Group<'_> {
    /// The report's rows: each finding with where its image is written and the pull-secret
    /// references that explain it (all of them for `unauthorized`, the missing ones always).
    fn rows(&self, findings: Vec<Finding>) -> Vec<Row> {
        let Some(manifest) = self.manifest else {
            return findings
                .into_iter()
                .map(|f| Row::new(Vec::new(), f))
                .collect();
        };
        let w = &manifest.workload;
        let label = format!("{}/{}", w.kind, w.name);
        let locations = locate(&findings, &manifest.images);
        findings
            .into_iter()
            .zip(locations)
            .map(|(finding, location)| {
                let unauthorized = finding.verdict == Verdict::Unauthorized;
                let pull_secrets = manifest
                    .pull_secrets
                    .iter()
                    .filter(|s| unauthorized || self.missing.contains(&s.name))
                    .cloned()
                    .collect();
                Row {
                    context: vec![label.clone()],
                    finding,
                    location,
                    pull_secrets,
                }
            })
            .collect()
    }
}

/// Pair each finding with the image field it came from: same kind (container or image
/// volume), name and image string first, then the same image string, each field used
/// once. Matching by what was written keeps every location right whatever order the
/// engine reports findings in.
fn locate(findings: &[Finding], fields: &[ImageField]) -> Vec<Option<Location>> {
    let mut used = vec![false; fields.len()];
    let mut take = |pred: &dyn Fn(&ImageField) -> bool| {
        let i = (0..fields.len()).find(|&i| !used[i] && pred(&fields[i]))?;
        used[i] = true;
        Some(fields[i].location.clone())
    };
    findings
        .iter()
        .map(|f| {
            take(&|field: &ImageField| {
                let named = if field.list == "volumes" {
                    &f.volume
                } else {
                    &f.container
                };
                field.image == f.image && named.as_deref() == Some(field.name.as_str())
            })
            .or_else(|| take(&|field: &ImageField| field.image == f.image))
        })
        .collect()
}

/// `--output json`: the finding as before (`image`, `reference`, `container`,
/// `verdict`, `digest`, `message`) plus where the image is written; `null` for `--image`.
#[derive(serde::Serialize)]
struct JsonRow<'a> {
    #[serde(flatten)]
    finding: &'a Finding,
    file: Option<&'a str>,
    line: Option<usize>,
    column: Option<usize>,
}

impl<'a> JsonRow<'a> {
    fn of(row: &'a Row) -> Self {
        let l = row.location.as_ref();
        Self {
            finding: &row.finding,
            file: l.map(|l| l.file.as_str()),
            line: l.and_then(Location::line),
            column: l.and_then(Location::column),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::input::Position;

    fn field(name: &str, image: &str, line: usize) -> ImageField {
        ImageField {
            list: if name.starts_with("vol-") {
                "volumes"
            } else {
                "containers"
            },
            name: name.into(),
            image: image.into(),
            location: Location {
                file: "a.yaml".into(),
                position: Some(Position { line, column: 1 }),
            },
        }
    }

    fn finding(container: Option<&str>, image: &str) -> Finding {
        Finding {
            image: image.into(),
            reference: None,
            container: container.map(str::to_string),
            volume: None,
            verdict: Verdict::Pullable,
            digest: None,
            message: String::new(),
            note: None,
            node_copies: None,
        }
    }

    fn lines(found: Vec<Option<Location>>) -> Vec<Option<usize>> {
        found
            .iter()
            .map(|l| l.as_ref().and_then(Location::line))
            .collect()
    }

    #[test]
    fn findings_are_matched_to_fields_by_name_and_image_whatever_their_order() {
        let fields = [
            field("init", "a", 1),
            field("web", "b", 2),
            field("side", "a", 3),
        ];
        let findings = [
            finding(Some("side"), "a"),
            finding(Some("web"), "b"),
            finding(Some("init"), "a"),
        ];
        assert_eq!(
            lines(locate(&findings, &fields)),
            [Some(3), Some(2), Some(1)]
        );
    }

    #[test]
    fn an_unknown_name_falls_back_to_the_image_string_once() {
        let fields = [field("models", "r.io/m:1", 7)];
        let findings = [
            finding(Some("renamed"), "r.io/m:1"),
            finding(Some("other"), "r.io/m:1"),
            finding(None, "unrelated"),
        ];
        assert_eq!(lines(locate(&findings, &fields)), [Some(7), None, None]);
    }

    #[test]
    fn an_image_volume_finds_its_volume_field_not_a_container_of_the_same_name() {
        let fields = [field("vol-a", "r.io/m:1", 3), field("vol-a", "r.io/m:1", 9)];
        let fields = [
            ImageField {
                list: "containers",
                ..fields[0].clone()
            },
            fields[1].clone(),
        ];
        let volume = Finding {
            volume: Some("vol-a".into()),
            ..finding(None, "r.io/m:1")
        };
        let container = finding(Some("vol-a"), "r.io/m:1");
        assert_eq!(
            lines(locate(&[volume, container], &fields)),
            [Some(9), Some(3)]
        );
    }
}
