//! JUnit XML (the Ant/Surefire shape GitLab and Jenkins read): one suite per workload, one
//! test case per image. A definitive failure is a `<failure>`. An indeterminate verdict
//! (registry down, 429, timeout) is `<skipped>`, not `<error>`: the image was not found
//! wanting, it was not judged. GitLab and Jenkins count an `<error>` as a failed test,
//! which would fail a report that pullgate itself exits 3 for and that the webhook admits
//! by default. Exempt images are `<skipped>` too (not checked, with the reason).

use std::collections::BTreeMap;

use super::{Report, Row};

/// Text and attribute values: the five XML escapes, and characters XML 1.0 forbids
/// (control characters a registry message could carry) replaced.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[derive(Default)]
struct Counts {
    tests: usize,
    failures: usize,
    skipped: usize,
}

impl Counts {
    fn add(&mut self, row: &Row) {
        self.tests += 1;
        let v = row.finding.verdict;
        if v.is_definitive_failure() {
            self.failures += 1;
        } else if !matches!(v, crate::verdict::Verdict::Pullable) {
            self.skipped += 1;
        }
    }

    fn attributes(&self) -> String {
        format!(
            "tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\"",
            self.tests, self.failures, self.skipped
        )
    }
}

fn testcase(row: &Row, suite: &str) -> String {
    let f = &row.finding;
    let mut name = match &f.container {
        Some(c) => format!("container {c}: {}", f.image),
        None => f.image.clone(),
    };
    if name.is_empty() {
        name = "(no image)".to_string();
    }
    let mut attributes = format!("name=\"{}\" classname=\"{}\"", escape(&name), escape(suite));
    if let Some(l) = &row.location {
        attributes.push_str(&format!(" file=\"{}\"", escape(&l.file)));
        if let Some(line) = l.line() {
            attributes.push_str(&format!(" line=\"{line}\""));
        }
    }
    let text = match &row.location {
        Some(l) => format!("{l}: {}: {}", row.subject(), f.message),
        None => format!("{}: {}", row.subject(), f.message),
    };
    let message = format!("{}: {}", f.verdict, f.message);
    let body = if f.verdict.is_definitive_failure() {
        format!(
            "      <failure message=\"{}\" type=\"{}\">{}</failure>\n",
            escape(&message),
            f.verdict,
            escape(&text)
        )
    } else if f.verdict.is_ok() && f.verdict != crate::verdict::Verdict::Exempt {
        String::new()
    } else {
        format!("      <skipped message=\"{}\"/>\n", escape(&message))
    };
    if body.is_empty() {
        format!("    <testcase {attributes}/>\n")
    } else {
        format!("    <testcase {attributes}>\n{body}    </testcase>\n")
    }
}

pub fn render(report: &Report<'_>) -> String {
    // One suite per workload (its context), in the order first seen.
    let mut order: Vec<String> = Vec::new();
    let mut suites: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
    for row in report.rows {
        let suite = if row.context.is_empty() {
            "images".to_string()
        } else {
            row.context.join("/")
        };
        if !suites.contains_key(&suite) {
            order.push(suite.clone());
        }
        suites.entry(suite).or_default().push(row);
    }
    let mut total = Counts::default();
    let mut body = String::new();
    for name in &order {
        let rows = suites.get(name).map(Vec::as_slice).unwrap_or_default();
        let mut counts = Counts::default();
        let mut cases = String::new();
        for row in rows {
            counts.add(row);
            total.add(row);
            cases.push_str(&testcase(row, &format!("pullgate.{}", name)));
        }
        body.push_str(&format!(
            "  <testsuite name=\"{}\" {}>\n{cases}  </testsuite>\n",
            escape(name),
            counts.attributes()
        ));
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"pullgate {}\" {}>\n{body}</testsuites>\n",
        escape(report.command),
        total.attributes()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::markup("<a href=\"x\">&'", "&lt;a href=&quot;x&quot;&gt;&amp;&apos;")]
    #[case::newlines_survive_attributes("a\nb", "a&#10;b")]
    #[case::control_characters_are_replaced("bell\u{7}", "bell\u{FFFD}")]
    fn text_is_escaped_for_xml(#[case] raw: &str, #[case] escaped: &str) {
        assert_eq!(escape(raw), escaped);
    }
}
