//! GitHub Actions workflow commands: `::error` for each definitive failure, `::warning` for
//! each indeterminate one, with the file, line and column GitHub pins the annotation to.
//! Escaping follows the runner's own (actions/toolkit `packages/core/src/command.ts`
//! `escapeData` / `escapeProperty`): a message can never end the command or start another.

use super::{Report, Row, summary_line};

/// `%`, CR and LF in a command's message.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Also `:` and `,` in a property value (they separate properties).
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// One command, or `None` for a finding that needs no annotation (pullable or exempt
/// without a note).
pub fn command(row: &Row) -> Option<String> {
    let verdict = row.finding.verdict;
    let note = row.finding.note.as_deref().filter(|_| verdict.is_ok());
    let level = if verdict.is_definitive_failure() {
        "error"
    } else if verdict.is_indeterminate() || note.is_some() {
        "warning"
    } else {
        return None;
    };
    let mut properties: Vec<(&str, String)> = Vec::new();
    // stdin is no file of the repository: the annotation then goes to the run, unpinned.
    if let Some(location) = row.location.as_ref().filter(|l| !l.is_stdin()) {
        properties.push(("file", location.file.clone()));
        if let Some(p) = location.position {
            properties.push(("line", p.line.to_string()));
            properties.push(("col", p.column.to_string()));
        }
    }
    properties.push(("title", format!("pullgate: {verdict}")));
    let properties: Vec<String> = properties
        .into_iter()
        .map(|(k, v)| format!("{k}={}", escape_property(&v)))
        .collect();
    let message = match note {
        // A pullable image with something to know: an image that lacks some platforms.
        Some(note) => format!("{}: {note}", row.subject()),
        None => format!("{}: {}", row.subject(), row.finding.message),
    };
    Some(format!(
        "::{level} {}::{}",
        properties.join(","),
        escape_data(&message)
    ))
}

/// Every annotation, then the summary line as plain log text.
pub fn render(report: &Report<'_>) -> String {
    let mut text = String::new();
    for row in report.rows {
        if let Some(line) = command(row) {
            text.push_str(&line);
            text.push('\n');
        }
    }
    text.push_str(&summary_line(report));
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::input::{Location, Position};
    use crate::verdict::{Finding, Verdict};
    use rstest::rstest;

    #[rstest]
    #[case::percent_first("100%", "100%25")]
    #[case::newlines("a\r\nb", "a%0D%0Ab")]
    #[case::already_escaped_stays_literal("%0A", "%250A")]
    #[case::colons_and_commas_are_data("a: b, c", "a: b, c")]
    fn data_escaping_matches_the_runner(#[case] raw: &str, #[case] escaped: &str) {
        assert_eq!(escape_data(raw), escaped);
    }

    #[rstest]
    #[case::separators("k8s/a,b:c.yaml", "k8s/a%2Cb%3Ac.yaml")]
    #[case::newline_cannot_end_the_command("x\n::error::y", "x%0A%3A%3Aerror%3A%3Ay")]
    fn property_escaping_matches_the_runner(#[case] raw: &str, #[case] escaped: &str) {
        assert_eq!(escape_property(raw), escaped);
    }

    fn row(verdict: Verdict, file: &str) -> Row {
        let mut row = Row::new(
            vec!["Deployment/web".into()],
            Finding {
                image: "nginx:latset".into(),
                reference: Some("docker.io/library/nginx:latset".into()),
                container: Some("web".into()),
                volume: None,
                verdict,
                digest: None,
                message: "tag \"latset\" not found\n(did you mean \"latest\"?)".into(),
                note: None,
                node_copies: None,
            },
        );
        row.location = Some(Location {
            file: file.into(),
            position: Some(Position {
                line: 12,
                column: 16,
            }),
        });
        row
    }

    #[test]
    fn definitive_failures_are_errors_pinned_to_the_image_field() {
        assert_eq!(
            command(&row(Verdict::NotFound, "k8s/web.yaml")).as_deref(),
            Some(
                "::error file=k8s/web.yaml,line=12,col=16,title=pullgate%3A not-found::Deployment/web container \"web\" image \"nginx:latset\": tag \"latset\" not found%0A(did you mean \"latest\"?)"
            )
        );
    }

    #[test]
    fn a_pullable_image_with_a_note_is_a_warning_saying_it() {
        let mut r = row(Verdict::Pullable, "a.yaml");
        r.finding.note =
            Some("may land on a linux/arm64 node, where the image has no manifest".into());
        let line = command(&r).expect("a warning");
        assert!(
            line.starts_with("::warning ") && line.ends_with("has no manifest"),
            "{line}"
        );
    }

    #[rstest]
    #[case::indeterminate_warns(Verdict::Timeout, Some("::warning "))]
    #[case::pullable_is_silent(Verdict::Pullable, None)]
    #[case::exempt_is_silent(Verdict::Exempt, None)]
    fn levels_follow_the_verdict(#[case] verdict: Verdict, #[case] prefix: Option<&str>) {
        let line = command(&row(verdict, "a.yaml"));
        assert_eq!(
            line.as_deref().map(|l| &l[..prefix.map_or(0, str::len)]),
            prefix
        );
    }

    #[test]
    fn stdin_annotations_are_not_pinned_to_a_file() {
        let line = command(&row(Verdict::NotFound, "-")).expect("an error");
        assert!(line.starts_with("::error title="), "{line}");
    }
}
