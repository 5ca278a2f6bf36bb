//! Reports: an aligned table for a person (colour only on a terminal), JSON for scripts,
//! and the formats CI systems read: GitHub workflow commands, SARIF 2.1.0 and JUnit XML.

mod github;
mod junit;
mod sarif;

use std::io::{IsTerminal as _, Write as _};

use clap::ValueEnum;

use super::input::{Location, SecretReference};
use crate::verdict::{Finding, Verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// An aligned table with a summary line.
    Table,
    /// One JSON array of findings.
    Json,
    /// GitHub Actions workflow commands: an annotation per failing image.
    Github,
    /// SARIF 2.1.0, for code scanning.
    Sarif,
    /// JUnit XML, one test case per image (GitLab, Jenkins).
    Junit,
}

/// One line of a report: a finding and what it belongs to (`context`, one cell per
/// context header: a workload for `check`, namespace/kind/name for `audit`).
#[derive(Debug, Clone)]
pub struct Row {
    pub context: Vec<String>,
    pub finding: Finding,
    /// Where the image is written, for `check -f`.
    pub location: Option<Location>,
    /// The workload's `imagePullSecrets` references, as written.
    pub pull_secrets: Vec<SecretReference>,
}

impl Row {
    pub fn new(context: Vec<String>, finding: Finding) -> Self {
        Self {
            context,
            finding,
            location: None,
            pull_secrets: Vec::new(),
        }
    }

    /// What the finding is about, for a line that stands alone (an annotation, a test
    /// case): `Deployment/web container "web" image "nginx:latset"`.
    pub fn subject(&self) -> String {
        let f = &self.finding;
        let mut parts: Vec<String> = Vec::new();
        if !self.context.is_empty() {
            parts.push(self.context.join("/"));
        }
        if let Some(c) = &f.container {
            parts.push(format!("container {c:?}"));
        } else if let Some(v) = &f.volume {
            parts.push(format!("volume {v:?}"));
        }
        parts.push(format!(
            "image {:?}",
            crate::verdict::excerpt(&f.image, 200)
        ));
        parts.join(" ")
    }
}

/// What to print: the rows shown, the findings the summary counts (audit shows fewer rows
/// than it counts), and the JSON the caller shaped.
#[derive(Debug)]
pub struct Report<'a> {
    /// `check` or `audit`: names the JUnit suite and the SARIF run.
    pub command: &'a str,
    pub context_headers: &'a [&'a str],
    pub rows: &'a [Row],
    pub counted: &'a [Finding],
    /// Start a new group when this context column changes (audit: the namespace).
    pub group_by: Option<usize>,
    /// Appended to the summary line, e.g. how many rows were left out.
    pub note: Option<String>,
    pub json: &'a serde_json::Value,
}

/// Print a report to stdout.
pub fn print(report: &Report<'_>, format: Output) -> std::io::Result<()> {
    let stdout = std::io::stdout();
    let colour = stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut out = stdout.lock();
    out.write_all(render(report, format, colour).as_bytes())?;
    out.flush()
}

/// A report as text.
pub fn render(report: &Report<'_>, format: Output, colour: bool) -> String {
    match format {
        Output::Json => {
            let mut text = serde_json::to_string_pretty(report.json).unwrap_or_default();
            text.push('\n');
            text
        }
        Output::Table => {
            // Nothing to list (an audit of a healthy cluster): the summary says it all.
            let mut text = if report.rows.is_empty() {
                String::new()
            } else {
                table(report, colour)
            };
            text.push_str(&summary_line(report));
            text.push('\n');
            text
        }
        Output::Github => github::render(report),
        Output::Sarif => sarif::render(report),
        Output::Junit => junit::render(report),
    }
}

/// `3 images: 1 pullable, 2 not-found` and the report's note.
pub fn summary_line(report: &Report<'_>) -> String {
    let mut line = super::summary(report.counted);
    if let Some(note) = &report.note {
        line.push_str("; ");
        line.push_str(note);
    }
    line
}

/// The table as text; `colour` adds ANSI colours to the verdict column. A LOCATION column
/// (`file:line`) comes first when any row has one; the container column is shown with the
/// context columns.
pub fn table(report: &Report<'_>, colour: bool) -> String {
    let (context_headers, rows) = (report.context_headers, report.rows);
    let located = rows.iter().any(|r| r.location.is_some());
    let mut header: Vec<&str> = Vec::new();
    if located {
        header.push("LOCATION");
    }
    header.extend(context_headers);
    if !context_headers.is_empty() {
        header.push("CONTAINER");
    }
    header.extend(["IMAGE", "VERDICT", "MESSAGE"]);
    let dash = || "-".to_string();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let f = &r.finding;
            let mut line: Vec<String> = Vec::new();
            if located {
                line.push(r.location.as_ref().map_or_else(dash, ToString::to_string));
            }
            line.extend(
                (0..context_headers.len()).map(|i| r.context.get(i).cloned().unwrap_or_else(dash)),
            );
            if !context_headers.is_empty() {
                let volume = f.volume.as_ref().map(|v| format!("volume {v}"));
                line.push(f.container.clone().or(volume).unwrap_or_else(dash));
            }
            let message = match &f.note {
                Some(note) => format!("{} (warning: {note})", f.message),
                None => f.message.clone(),
            };
            line.extend([f.image.clone(), f.verdict.to_string(), one_line(&message)]);
            line
        })
        .collect();
    let columns = header.len();
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let verdict_column = columns - 2;
    let mut text = String::new();
    let mut push_line = |line: &[String], verdict: Option<Verdict>| {
        for (i, cell) in line.iter().enumerate() {
            if i + 1 == columns {
                text.push_str(cell);
                break;
            }
            let pad = widths[i] - cell.chars().count() + 2;
            match verdict {
                Some(v) if colour && i == verdict_column => {
                    text.push_str(&format!("\x1b[{}m{cell}\x1b[0m", ansi(v)));
                }
                _ => text.push_str(cell),
            }
            text.push_str(&" ".repeat(pad));
        }
        text.push('\n');
    };
    push_line(
        &header.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
        None,
    );
    let mut previous_group: Option<&str> = None;
    for (row, line) in rows.iter().zip(&cells) {
        if let Some(g) = report.group_by {
            let group = row.context.get(g).map(String::as_str);
            if previous_group.is_some() && group != previous_group {
                push_line(&[], None);
            }
            previous_group = group;
        }
        push_line(line, Some(row.finding.verdict));
    }
    text
}

fn ansi(v: Verdict) -> &'static str {
    if v.is_ok() {
        "32"
    } else if v.is_indeterminate() {
        "33"
    } else {
        "31"
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// What each verdict word means, for a person reading a CI report (README "Verdicts").
pub fn describe(v: Verdict) -> &'static str {
    match v {
        Verdict::Pullable => "The manifest resolved.",
        Verdict::NotFound => "The tag, digest or repository does not exist.",
        Verdict::Unauthorized => {
            "Every matching credential (or anonymous access) was refused by the registry."
        }
        Verdict::NoMatchingPlatform => "The image index has no entry for the pods' platforms.",
        Verdict::NotAnImage => {
            "The reference names content containerd does not run as a container image (a Helm chart, a signature, an OCI artifact)."
        }
        Verdict::InvalidPullSecret => {
            "An imagePullSecret the kubelet cannot decode: every pull of the pod fails until it is fixed."
        }
        Verdict::InvalidReference => {
            "The string is not a valid image reference (the kubelet says InvalidImageName)."
        }
        Verdict::BlockedRegistry => "The registry's address is refused by policy.",
        Verdict::RegistryUnavailable => {
            "The registry could not be reached (DNS, connection, TLS or HTTP 5xx): the pull may or may not work."
        }
        Verdict::RateLimited => {
            "The registry answered 429 Too Many Requests: the pull may or may not work."
        }
        Verdict::Timeout => "The registry did not answer in time: the pull may or may not work.",
        Verdict::Exempt => "Not checked (imagePullPolicy Never, or an exempt image).",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(workload: Option<&str>, image: &str, verdict: Verdict) -> Row {
        Row::new(
            workload.map(str::to_string).into_iter().collect(),
            Finding {
                image: image.into(),
                reference: None,
                container: Some("app".into()),
                volume: None,
                verdict,
                digest: None,
                message: "msg".into(),
                note: None,
                node_copies: None,
            },
        )
    }

    fn report<'a>(headers: &'a [&'a str], rows: &'a [Row]) -> Report<'a> {
        static NULL: serde_json::Value = serde_json::Value::Null;
        Report {
            command: "check",
            context_headers: headers,
            rows,
            counted: &[],
            group_by: None,
            note: None,
            json: &NULL,
        }
    }

    #[test]
    fn table_columns_are_aligned() {
        let rows = [
            row(Some("Pod/a"), "nginx", Verdict::Pullable),
            row(
                Some("Deployment/web"),
                "r.io/long/image:1",
                Verdict::NotFound,
            ),
        ];
        let t = table(&report(&["WORKLOAD"], &rows), false);
        let lines: Vec<&str> = t.lines().collect();
        let col = |l: &str| {
            l.find("VERDICT")
                .or_else(|| l.find("pullable"))
                .or_else(|| l.find("not-found"))
        };
        assert_eq!(col(lines[0]), col(lines[1]));
        assert_eq!(col(lines[1]), col(lines[2]));
        assert!(!t.contains('\x1b'));
        assert!(!t.contains("LOCATION"), "no column without locations");
    }

    #[test]
    fn located_rows_lead_with_file_and_line() {
        let mut located = row(Some("Pod/a"), "nginx", Verdict::NotFound);
        located.location = Some(Location {
            file: "k8s/a.yaml".into(),
            position: Some(crate::cli::input::Position {
                line: 12,
                column: 14,
            }),
        });
        let rows = [located, row(None, "busybox", Verdict::Pullable)];
        let t = table(&report(&["WORKLOAD"], &rows), false);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("LOCATION"), "{t}");
        assert!(lines[1].starts_with("k8s/a.yaml:12 "), "{t}");
        assert!(lines[2].starts_with("- "), "{t}");
    }

    #[test]
    fn groups_are_separated_by_a_blank_line() {
        let rows = [
            row(Some("prod"), "a", Verdict::NotFound),
            row(Some("prod"), "b", Verdict::NotFound),
            row(Some("staging"), "c", Verdict::Timeout),
        ];
        let mut r = report(&["NAMESPACE"], &rows);
        r.group_by = Some(0);
        let t = table(&r, false);
        let blank: Vec<usize> = t
            .lines()
            .enumerate()
            .filter(|(_, l)| l.trim().is_empty())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(blank, [3], "{t}");
    }

    #[test]
    fn colour_only_when_asked() {
        let rows = [row(None, "nginx", Verdict::Timeout)];
        assert!(table(&report(&[], &rows), true).contains("\x1b[33m"));
    }
}
