//! Reports: an aligned table for a person (colour only on a terminal), or JSON.

use std::io::{IsTerminal as _, Write as _};

use clap::ValueEnum;

use crate::verdict::{Finding, Verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// One line of a report: a finding and what it belongs to (`context`, one cell per
/// context header: a workload for `check`, namespace/kind/name for `audit`).
#[derive(Debug, Clone)]
pub struct Row {
    pub context: Vec<String>,
    pub finding: Finding,
}

/// Print a report. JSON is `json` (the caller decides its shape); the table has the
/// context columns, then container, image, verdict and message, and a summary line.
pub fn print(
    context_headers: &[&str],
    rows: &[Row],
    format: Output,
    json: &serde_json::Value,
) -> std::io::Result<()> {
    let stdout = std::io::stdout();
    let colour = stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut out = stdout.lock();
    match format {
        Output::Json => {
            serde_json::to_writer_pretty(&mut out, json)?;
            writeln!(out)?;
        }
        Output::Table => {
            out.write_all(table(context_headers, rows, colour).as_bytes())?;
            let findings: Vec<Finding> = rows.iter().map(|r| r.finding.clone()).collect();
            writeln!(out, "{}", super::summary(&findings))?;
        }
    }
    out.flush()
}

/// The table as text; `colour` adds ANSI colours to the verdict column. The container
/// column is shown with the context columns.
pub fn table(context_headers: &[&str], rows: &[Row], colour: bool) -> String {
    let mut header: Vec<&str> = context_headers.to_vec();
    if !context_headers.is_empty() {
        header.push("CONTAINER");
    }
    header.extend(["IMAGE", "VERDICT", "MESSAGE"]);
    let dash = || "-".to_string();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let f = &r.finding;
            let mut line: Vec<String> = (0..context_headers.len())
                .map(|i| r.context.get(i).cloned().unwrap_or_else(dash))
                .collect();
            if !context_headers.is_empty() {
                line.push(f.container.clone().unwrap_or_else(dash));
            }
            line.extend([f.image.clone(), f.verdict.to_string(), one_line(&f.message)]);
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
    for (row, line) in rows.iter().zip(&cells) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(workload: Option<&str>, image: &str, verdict: Verdict) -> Row {
        Row {
            context: workload.map(str::to_string).into_iter().collect(),
            finding: Finding {
                image: image.into(),
                reference: None,
                container: Some("app".into()),
                verdict,
                digest: None,
                message: "msg".into(),
                note: None,
            },
        }
    }

    #[test]
    fn table_columns_are_aligned() {
        let t = table(
            &["WORKLOAD"],
            &[
                row(Some("Pod/a"), "nginx", Verdict::Pullable),
                row(
                    Some("Deployment/web"),
                    "r.io/long/image:1",
                    Verdict::NotFound,
                ),
            ],
            false,
        );
        let lines: Vec<&str> = t.lines().collect();
        let col = |l: &str| {
            l.find("VERDICT")
                .or_else(|| l.find("pullable"))
                .or_else(|| l.find("not-found"))
        };
        assert_eq!(col(lines[0]), col(lines[1]));
        assert_eq!(col(lines[1]), col(lines[2]));
        assert!(!t.contains('\x1b'));
    }

    #[test]
    fn colour_only_when_asked() {
        assert!(table(&[], &[row(None, "nginx", Verdict::Timeout)], true).contains("\x1b[33m"));
    }
}
