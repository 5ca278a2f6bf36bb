//! SARIF 2.1.0 (OASIS): one rule per failing verdict word, one result per failing image, at
//! the line and column of its image field. Columns count Unicode code points, as the
//! positions do (`columnKind`), not SARIF's default UTF-16 code units.

use serde_json::{Value, json};

use super::{Report, Row, describe};
use crate::cli::input::Location;
use crate::verdict::Verdict;

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// The verdicts a result can carry: every one that is not fine.
fn rule_verdicts() -> Vec<Verdict> {
    Verdict::ALL.into_iter().filter(|v| !v.is_ok()).collect()
}

fn level(v: Verdict) -> &'static str {
    if v.is_definitive_failure() {
        "error"
    } else {
        "warning"
    }
}

/// `not-found` → `NotFound`: SARIF's `reportingDescriptor.name` is an identifier.
fn rule_name(v: Verdict) -> String {
    v.as_str()
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn rule(v: Verdict) -> Value {
    let definitive = if v.is_definitive_failure() {
        "The pull would fail: enforce mode denies it."
    } else {
        "Indeterminate: allowed with a warning unless --on-registry-error=deny."
    };
    json!({
        "id": v.as_str(),
        "name": rule_name(v),
        "shortDescription": {"text": format!("Image verdict {v}")},
        "fullDescription": {"text": format!("{} {definitive}", describe(v))},
        "help": {"text": format!("{} {definitive}", describe(v))},
        "defaultConfiguration": {"level": level(v)},
    })
}

/// A path as a URI reference (RFC 3986): relative paths stay relative to the repository
/// root GitHub resolves them against; absolute ones become `file://` URIs.
pub fn uri(path: &str) -> String {
    let path = path.replace('\\', "/");
    let trimmed = path.trim_start_matches("./");
    let mut out = String::new();
    for b in trimmed.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    if trimmed.starts_with('/') {
        format!("file://{out}")
    } else {
        out
    }
}

fn physical(location: &Location) -> Value {
    let mut p = json!({"artifactLocation": {"uri": uri(&location.file)}});
    if let Some(pos) = location.position {
        p["region"] = json!({"startLine": pos.line, "startColumn": pos.column});
    }
    p
}

fn result(row: &Row, rules: &[Verdict]) -> Option<Value> {
    let v = row.finding.verdict;
    let index = rules.iter().position(|r| *r == v)?;
    let mut location = json!({});
    if let Some(l) = row.location.as_ref().filter(|l| !l.is_stdin()) {
        location["physicalLocation"] = physical(l);
    }
    let mut name = row.context.join("/");
    if let Some(c) = &row.finding.container {
        name = if name.is_empty() {
            c.clone()
        } else {
            format!("{name}/{c}")
        };
    }
    if !name.is_empty() {
        location["logicalLocations"] = json!([{"fullyQualifiedName": name, "kind": "resource"}]);
    }
    let mut result = json!({
        "ruleId": v.as_str(),
        "ruleIndex": index,
        "level": level(v),
        "message": {"text": format!("{}: {}", row.subject(), row.finding.message)},
        "locations": [location],
        "properties": {
            "image": row.finding.image,
            "reference": row.finding.reference,
            "container": row.finding.container,
        },
    });
    let related: Vec<Value> = row
        .pull_secrets
        .iter()
        .filter(|s| !s.location.is_stdin())
        .enumerate()
        .map(|(i, s)| {
            json!({
                "id": i,
                "physicalLocation": physical(&s.location),
                "message": {"text": format!("imagePullSecrets: {}", s.name)},
            })
        })
        .collect();
    if !related.is_empty() {
        result["relatedLocations"] = Value::Array(related);
    }
    Some(result)
}

pub fn render(report: &Report<'_>) -> String {
    let rules = rule_verdicts();
    let results: Vec<Value> = report
        .rows
        .iter()
        .filter_map(|r| result(r, &rules))
        .collect();
    let log = json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "pullgate",
                "version": env!("CARGO_PKG_VERSION"),
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "rules": rules.iter().map(|v| rule(*v)).collect::<Vec<_>>(),
            }},
            "automationDetails": {"id": format!("pullgate/{}/", report.command)},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    });
    let mut text = serde_json::to_string_pretty(&log).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::relative("k8s/web.yaml", "k8s/web.yaml")]
    #[case::dot_slash("./k8s/web.yaml", "k8s/web.yaml")]
    #[case::spaces_and_percent("my app/100%.yaml", "my%20app/100%25.yaml")]
    #[case::absolute("/tmp/k8s/web.yaml", "file:///tmp/k8s/web.yaml")]
    #[case::windows_separators("k8s\\web.yaml", "k8s/web.yaml")]
    #[case::non_ascii("k8s/é.yaml", "k8s/%C3%A9.yaml")]
    fn paths_become_uri_references(#[case] path: &str, #[case] expected: &str) {
        assert_eq!(uri(path), expected);
    }

    #[rstest]
    #[case(Verdict::NotFound, "NotFound")]
    #[case(Verdict::NoMatchingPlatform, "NoMatchingPlatform")]
    #[case(Verdict::Timeout, "Timeout")]
    fn rule_names_are_identifiers(#[case] v: Verdict, #[case] name: &str) {
        assert_eq!(rule_name(v), name);
    }

    #[test]
    fn one_rule_per_failing_verdict_word() {
        let ids: Vec<&str> = rule_verdicts().iter().map(|v| v.as_str()).collect();
        assert_eq!(
            ids,
            [
                "not-found",
                "unauthorized",
                "no-matching-platform",
                "not-an-image",
                "invalid-reference",
                "blocked-registry",
                "invalid-pull-secret",
                "registry-unavailable",
                "rate-limited",
                "timeout"
            ]
        );
    }
}
