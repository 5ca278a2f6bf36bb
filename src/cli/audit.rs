//! `pullgate audit`: what in a live cluster would no longer pull.

use std::io::{IsTerminal as _, Write as _};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use super::output::{self, Output, Report, Row};
use super::{EngineArgs, OutputArgs, PlatformArgs, Status, parse_seconds};
use crate::audit::{self, AuditFinding, AuditOptions};
use crate::verdict::Finding;

/// Which findings make `audit` exit non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// 1 for a definitive failure; registry trouble alone exits 0.
    Definitive,
    /// 1 for a definitive failure, else 3 for an indeterminate one (as `check` does).
    Any,
    /// 0 whenever the audit ran: for reports that must not fail a job.
    None,
}

impl FailOn {
    pub fn status(self, findings: &[Finding]) -> Status {
        match (self, Status::of(findings)) {
            (FailOn::None, _) | (FailOn::Definitive, Status::Indeterminate) => Status::Ok,
            (_, status) => status,
        }
    }
}

/// Above this many workloads, a terminal gets a progress line…
const PROGRESS_THRESHOLD: usize = 20;
/// …redrawn this often at most.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// The progress line on stderr, on a terminal only, redrawn at most every
/// [`PROGRESS_EVERY`].
struct ProgressLine {
    terminal: bool,
    state: Mutex<(Option<Instant>, audit::Progress)>,
}

impl ProgressLine {
    fn new(terminal: bool) -> Self {
        Self {
            terminal,
            state: Mutex::new((
                None,
                audit::Progress {
                    checked: 0,
                    listed: 0,
                },
            )),
        }
    }

    fn update(&self, progress: audit::Progress) {
        if !self.terminal {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.1 = progress;
        if progress.listed <= PROGRESS_THRESHOLD
            || state.0.is_some_and(|at| at.elapsed() < PROGRESS_EVERY)
        {
            return;
        }
        state.0 = Some(Instant::now());
        let _ = write!(
            std::io::stderr().lock(),
            "\raudit: {} of {} listed workloads checked",
            progress.checked,
            progress.listed
        );
    }

    /// The final count, ending the line (when one was drawn).
    fn finish(&self) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if self.terminal && state.0.is_some() {
            let _ = writeln!(
                std::io::stderr().lock(),
                "\raudit: {} workloads checked            ",
                state.1.checked
            );
        }
    }
}

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
    /// Read the Nodes: a workload's platforms are those of the nodes its nodeSelector,
    /// node affinity and os admit, and images those nodes already hold are reported as such.
    #[arg(
        long,
        visible_alias = "watch-nodes",
        env = "PULLGATE_PLATFORMS_FROM_NODES"
    )]
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
    /// The table lists every image, pullable and exempt ones too (by default only those
    /// that would not pull; JSON and JUnit always hold every image).
    #[arg(long, env = "PULLGATE_AUDIT_ALL")]
    pub all: bool,
    /// Exit status for scripts: `any` 1 for a definitive failure, else 3 for registry
    /// trouble; `definitive` 1 only for a definitive failure; `none` always 0.
    #[arg(
        long,
        value_enum,
        value_name = "WHEN",
        env = "PULLGATE_FAIL_ON",
        default_value = "any"
    )]
    pub fail_on: FailOn,
    #[command(flatten)]
    pub engine: EngineArgs,
}

impl AuditArgs {
    pub async fn run(self) -> anyhow::Result<Status> {
        let client = kube::Client::try_default()
            .await
            .context("no cluster: set KUBECONFIG (or ~/.kube/config), or run in a cluster")?;
        let checker = self.engine.checker()?;
        let progress = ProgressLine::new(std::io::stderr().is_terminal());
        let options = AuditOptions {
            concurrency: self.concurrency,
            timeout: self.timeout,
            platforms: self.platform.platforms.clone(),
        };
        let results = audit::audit(
            &client,
            &checker,
            &self.namespaces,
            self.platforms_from_nodes,
            &options,
            &|p| progress.update(p),
        )
        .await?;
        progress.finish();

        // Only JSON prints it: a table of a large cluster needs no second copy of it all.
        let json = if self.output.output == Output::Json {
            serde_json::to_value(&results).context("encoding the report")?
        } else {
            serde_json::Value::Null
        };
        let findings: Vec<Finding> = results.iter().map(|r| r.finding.clone()).collect();
        let (rows, hidden) = rows(&results, self.all || self.output.output != Output::Table);
        let note = (hidden > 0)
            .then(|| format!("{hidden} pullable or exempt not shown (--all lists every image)"));
        let report = Report {
            command: "audit",
            context_headers: &["NAMESPACE", "KIND", "NAME"],
            rows: &rows,
            counted: &findings,
            group_by: Some(0),
            note,
            json: &json,
        };
        output::print(&report, self.output.output).context("writing the report")?;
        Ok(self.fail_on.status(&findings))
    }
}

/// The rows to show, grouped by namespace (in order of first appearance, workloads in audit
/// order within), and how many were left out: without `all`, only images that would not
/// pull.
fn rows(results: &[AuditFinding], all: bool) -> (Vec<Row>, usize) {
    let mut namespaces: Vec<&str> = Vec::new();
    for r in results {
        if !namespaces.contains(&r.namespace.as_str()) {
            namespaces.push(&r.namespace);
        }
    }
    let shown = |r: &&AuditFinding| all || !r.finding.verdict.is_ok();
    let rows: Vec<Row> = namespaces
        .iter()
        .flat_map(|ns| results.iter().filter(move |r| r.namespace == *ns))
        .filter(shown)
        .map(|r| {
            Row::new(
                vec![r.namespace.clone(), r.kind.clone(), r.name.clone()],
                r.finding.clone(),
            )
        })
        .collect();
    let hidden = results.len() - rows.len();
    (rows, hidden)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Verdict;
    use rstest::rstest;

    fn found(namespace: &str, name: &str, verdict: Verdict) -> AuditFinding {
        AuditFinding {
            namespace: namespace.into(),
            kind: "Deployment".into(),
            name: name.into(),
            finding: Finding {
                image: "r.io/x:1".into(),
                reference: None,
                container: Some("app".into()),
                volume: None,
                verdict,
                digest: None,
                message: String::new(),
                note: None,
                node_copies: None,
            },
        }
    }

    fn names(rows: &[Row]) -> Vec<String> {
        rows.iter().map(|r| r.context.join("/")).collect()
    }

    #[test]
    fn by_default_only_what_would_not_pull_is_shown_grouped_by_namespace() {
        let results = [
            found("a", "ok", Verdict::Pullable),
            found("b", "gone", Verdict::NotFound),
            found("a", "down", Verdict::Timeout),
            found("a", "never", Verdict::Exempt),
            found("b", "fine", Verdict::Pullable),
        ];
        let (rows, hidden) = rows(&results, false);
        assert_eq!(names(&rows), ["a/Deployment/down", "b/Deployment/gone"]);
        assert_eq!(hidden, 3);
        let (rows, hidden) = super::rows(&results, true);
        assert_eq!(rows.len(), 5);
        assert_eq!(hidden, 0);
        assert_eq!(
            names(&rows)[..3],
            ["a/Deployment/ok", "a/Deployment/down", "a/Deployment/never"]
        );
    }

    #[rstest]
    #[case::any_definitive(FailOn::Any, &[Verdict::NotFound, Verdict::Timeout], Status::Failure)]
    #[case::any_indeterminate(FailOn::Any, &[Verdict::Timeout], Status::Indeterminate)]
    #[case::any_clean(FailOn::Any, &[Verdict::Pullable], Status::Ok)]
    #[case::definitive_fails(FailOn::Definitive, &[Verdict::Unauthorized], Status::Failure)]
    #[case::definitive_ignores_outages(FailOn::Definitive, &[Verdict::RateLimited], Status::Ok)]
    #[case::none_never_fails(FailOn::None, &[Verdict::NotFound], Status::Ok)]
    fn fail_on_decides_the_exit_status(
        #[case] fail_on: FailOn,
        #[case] verdicts: &[Verdict],
        #[case] status: Status,
    ) {
        let findings: Vec<Finding> = verdicts
            .iter()
            .map(|v| found("a", "x", *v).finding)
            .collect();
        assert_eq!(fail_on.status(&findings), status);
    }
}
