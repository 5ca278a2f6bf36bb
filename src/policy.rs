//! Findings × mode × failure policy → a decision (ARCHITECTURE.md §4). Pure functions.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::verdict::{Finding, Verdict, excerpt};

/// The namespace label that overrides `--mode`.
pub const MODE_LABEL: &str = "pullgate.dev/mode";
/// Warnings longer than this are cut: kubectl prints them one per line and the apiserver
/// drops very long ones.
pub const MAX_WARNING_LEN: usize = 120;
/// Image strings are quoted up to this length in answers (an image string is user input).
const MAX_QUOTED_IMAGE: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Mode {
    /// Deny definitive failures.
    Enforce,
    /// Never deny; report every finding as a warning and an audit annotation.
    Audit,
    /// Do not check.
    Off,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
            Mode::Off => "off",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "enforce" => Ok(Mode::Enforce),
            "audit" => Ok(Mode::Audit),
            "off" => Ok(Mode::Off),
            other => Err(format!("unknown mode {other:?} (enforce, audit or off)")),
        }
    }
}

/// What an indeterminate verdict (registry down, 429, timeout) does in enforce mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnRegistryError {
    /// Admit, with a warning: an outage must not stop a cluster from scheduling.
    Allow,
    /// Deny, as for a definitive failure.
    Deny,
}

/// Namespaces and images that are never checked.
#[derive(Debug, Clone, Default)]
pub struct Exemptions {
    pub namespaces: Vec<String>,
    /// Globs over the image as written and its normalized reference; `*` matches any run
    /// of characters (including `/`), e.g. `registry.internal/*` or `*:debug`.
    pub images: Vec<String>,
}

impl Exemptions {
    pub fn namespace(&self, namespace: &str) -> bool {
        self.namespaces.iter().any(|n| n == namespace)
    }

    pub fn image(&self, image: &str, normalized: Option<&str>) -> Option<&str> {
        self.images
            .iter()
            .find(|pattern| {
                wildcard(pattern, image) || normalized.is_some_and(|n| wildcard(pattern, n))
            })
            .map(String::as_str)
    }
}

/// `*` matches any run of characters; everything else is literal.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

/// The answer to one review.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    pub allowed: bool,
    /// Why it was denied (`None` when allowed).
    pub message: Option<String>,
    pub warnings: Vec<String>,
    pub audit_annotations: BTreeMap<String, String>,
}

impl Decision {
    pub fn allow() -> Self {
        Self {
            allowed: true,
            ..Self::default()
        }
    }

    /// `allowed`, `denied` or `warned`, for logs and metrics.
    pub fn label(&self) -> &'static str {
        match (self.allowed, self.warnings.is_empty()) {
            (false, _) => "denied",
            (true, true) => "allowed",
            (true, false) => "warned",
        }
    }
}

/// Decide on the findings of one object.
pub fn decide(mode: Mode, on_registry_error: OnRegistryError, findings: &[Finding]) -> Decision {
    if mode == Mode::Off {
        return Decision::allow();
    }
    let failing: Vec<&Finding> = findings.iter().filter(|f| !f.verdict.is_ok()).collect();
    if failing.is_empty() {
        return Decision::allow();
    }
    let blocks = |f: &&Finding| {
        f.verdict.is_definitive_failure()
            || (f.verdict.is_indeterminate() && on_registry_error == OnRegistryError::Deny)
    };
    let mut decision = Decision::allow();
    let denying: Vec<&Finding> = failing.iter().copied().filter(blocks).collect();
    if mode == Mode::Enforce && !denying.is_empty() {
        decision.allowed = false;
        let lines: Vec<String> = denying.iter().map(|f| describe(f)).collect();
        decision.message = Some(lines.join("; "));
        // Warn about what is wrong but did not decide the denial (an outage next to a typo).
        decision.warnings = failing
            .iter()
            .filter(|f| !blocks(f))
            .map(|f| warning(f))
            .collect();
    } else {
        decision.warnings = failing.iter().map(|f| warning(f)).collect();
    }
    if mode == Mode::Audit {
        decision.audit_annotations = audit_annotations(&failing);
    }
    decision
}

/// `container "web" image "nginx:latset": tag "latset" not found in docker.io/library/nginx
/// (did you mean "latest"?)`.
pub fn describe(f: &Finding) -> String {
    let image = excerpt(&f.image, MAX_QUOTED_IMAGE);
    match &f.container {
        Some(c) => format!("container {c:?} image {image:?}: {}", f.message),
        None => format!("image {image:?}: {}", f.message),
    }
}

/// One short line per finding: `pullgate: container "web": not-found: tag "latset" …`.
pub fn warning(f: &Finding) -> String {
    let who = match &f.container {
        Some(c) => format!("container {c:?}"),
        None => format!("image {:?}", excerpt(&f.image, MAX_QUOTED_IMAGE)),
    };
    excerpt(
        &format!("pullgate: {who}: {}: {}", f.verdict, f.message),
        MAX_WARNING_LEN,
    )
}

/// `findings` → a compact JSON list of the non-pullable findings (the apiserver prefixes
/// the key with the webhook's name).
fn audit_annotations(failing: &[&Finding]) -> BTreeMap<String, String> {
    let entries: Vec<serde_json::Value> = failing
        .iter()
        .map(|f| {
            serde_json::json!({
                "container": f.container,
                "image": excerpt(&f.image, MAX_QUOTED_IMAGE),
                "verdict": f.verdict,
                "message": f.message,
            })
        })
        .collect();
    let mut out = BTreeMap::new();
    out.insert(
        "findings".to_string(),
        serde_json::Value::Array(entries).to_string(),
    );
    out
}

/// Verdict counts for a log line: `not-found=1,pullable=2`.
pub fn verdict_counts(findings: &[Finding]) -> String {
    let mut counts: BTreeMap<Verdict, usize> = BTreeMap::new();
    for f in findings {
        *counts.entry(f.verdict).or_default() += 1;
    }
    counts
        .iter()
        .map(|(v, n)| format!("{v}={n}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn f(verdict: Verdict) -> Finding {
        Finding {
            image: "nginx:latset".into(),
            reference: Some("docker.io/library/nginx:latset".into()),
            container: Some("web".into()),
            verdict,
            digest: None,
            message:
                "tag \"latset\" not found in docker.io/library/nginx (did you mean \"latest\"?)"
                    .into(),
            note: None,
        }
    }

    #[rstest]
    #[case::enforce_definitive(Mode::Enforce, OnRegistryError::Allow, Verdict::NotFound, false, 0)]
    #[case::enforce_indeterminate_allow(
        Mode::Enforce,
        OnRegistryError::Allow,
        Verdict::Timeout,
        true,
        1
    )]
    #[case::enforce_indeterminate_deny(
        Mode::Enforce,
        OnRegistryError::Deny,
        Verdict::RegistryUnavailable,
        false,
        0
    )]
    #[case::audit_never_denies(Mode::Audit, OnRegistryError::Deny, Verdict::Unauthorized, true, 1)]
    #[case::off_allows_silently(Mode::Off, OnRegistryError::Deny, Verdict::NotFound, true, 0)]
    #[case::pullable_is_quiet(Mode::Enforce, OnRegistryError::Deny, Verdict::Pullable, true, 0)]
    #[case::exempt_is_quiet(Mode::Enforce, OnRegistryError::Deny, Verdict::Exempt, true, 0)]
    fn decisions_follow_mode_and_failure_policy(
        #[case] mode: Mode,
        #[case] on_error: OnRegistryError,
        #[case] verdict: Verdict,
        #[case] allowed: bool,
        #[case] warnings: usize,
    ) {
        let d = decide(mode, on_error, &[f(verdict)]);
        assert_eq!(d.allowed, allowed);
        assert_eq!(d.warnings.len(), warnings);
        assert_eq!(d.message.is_some(), !allowed);
    }

    #[test]
    fn denial_message_names_container_image_and_fix() {
        let d = decide(
            Mode::Enforce,
            OnRegistryError::Allow,
            &[f(Verdict::NotFound)],
        );
        assert_eq!(
            d.message.as_deref(),
            Some(
                "container \"web\" image \"nginx:latset\": tag \"latset\" not found in docker.io/library/nginx (did you mean \"latest\"?)"
            )
        );
    }

    #[test]
    fn audit_mode_annotates_every_failure() {
        let d = decide(
            Mode::Audit,
            OnRegistryError::Allow,
            &[f(Verdict::NotFound), f(Verdict::Pullable)],
        );
        let findings: serde_json::Value =
            serde_json::from_str(&d.audit_annotations["findings"]).expect("json");
        assert_eq!(findings.as_array().map(Vec::len), Some(1));
        assert_eq!(findings[0]["verdict"], "not-found");
    }

    #[test]
    fn warnings_are_short() {
        let mut long = f(Verdict::NotFound);
        long.message = "x".repeat(500);
        let w = warning(&long);
        assert_eq!(w.chars().count(), MAX_WARNING_LEN);
    }

    #[rstest]
    #[case("registry.internal/*", "registry.internal/team/app:1", true)]
    #[case("*:debug", "r.io/app:debug", true)]
    #[case("*/tools/*", "r.io/tools/x:1", true)]
    #[case("nginx", "nginx", true)]
    #[case("nginx", "nginx:1", false)]
    #[case("a*b*c", "abc", true)]
    #[case("a*b*c", "ac", false)]
    fn image_wildcards(#[case] pattern: &str, #[case] image: &str, #[case] expected: bool) {
        assert_eq!(wildcard(pattern, image), expected);
    }
}
