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

/// Decide on the findings of one object. A definitive failure denies in enforce mode
/// unless nodes the pod can land on already hold the image (`node_copies`): those run it,
/// so the pod works there, and the warning says new nodes will not. Every note (platforms
/// an image lacks among those the pod may land on) is a warning, in every mode.
pub fn decide(mode: Mode, on_registry_error: OnRegistryError, findings: &[Finding]) -> Decision {
    if mode == Mode::Off {
        return Decision::allow();
    }
    let failing: Vec<&Finding> = findings.iter().filter(|f| !f.verdict.is_ok()).collect();
    let blocks = |f: &Finding| {
        (f.verdict.is_definitive_failure() && f.node_copies.is_none())
            || (f.verdict.is_indeterminate() && on_registry_error == OnRegistryError::Deny)
    };
    let denying: Vec<&Finding> = if mode == Mode::Enforce {
        failing.iter().copied().filter(|f| blocks(f)).collect()
    } else {
        Vec::new()
    };
    let mut decision = Decision::allow();
    if !denying.is_empty() {
        decision.allowed = false;
        let lines: Vec<String> = denying.iter().map(|f| describe(f)).collect();
        decision.message = Some(lines.join("; "));
    }
    for f in findings {
        // What is wrong but did not decide a denial (an outage next to a typo) is a warning.
        if !f.verdict.is_ok() && !denying.iter().any(|d| std::ptr::eq(*d, f)) {
            decision.warnings.push(warning(f));
        }
        if let Some(note) = &f.note {
            decision.warnings.push(note_warning(f, note));
        }
    }
    if mode == Mode::Audit && !failing.is_empty() {
        decision.audit_annotations = audit_annotations(&failing);
    }
    decision
}

/// A mirror pod is the API copy of a static pod the kubelet already runs from a manifest
/// on its disk (`kubernetes.io/config.mirror`): refusing it changes nothing on the node,
/// so it is never denied; what would be denied is reported as warnings.
pub fn decide_mirror_pod(
    mode: Mode,
    on_registry_error: OnRegistryError,
    findings: &[Finding],
) -> Decision {
    let mode = if mode == Mode::Enforce {
        Mode::Audit
    } else {
        mode
    };
    let mut decision = decide(mode, on_registry_error, findings);
    if !decision.warnings.is_empty() {
        decision.warnings.insert(
            0,
            "pullgate: mirror pod of a static pod: its node runs it from a local manifest, so it is not denied"
                .to_string(),
        );
    }
    decision
}

/// `container "web" image "nginx:latset": tag "latset" not found in docker.io/library/nginx
/// (did you mean "latest"?)`; `volume "data" image "…": …` for an image volume.
pub fn describe(f: &Finding) -> String {
    let image = excerpt(&f.image, MAX_QUOTED_IMAGE);
    match (&f.container, &f.volume) {
        (Some(c), _) => format!("container {c:?} image {image:?}: {}", f.message),
        (None, Some(v)) => format!("volume {v:?} image {image:?}: {}", f.message),
        (None, None) => format!("image {image:?}: {}", f.message),
    }
}

/// One short line per finding: `pullgate: container "web": not-found: tag "latset" …`;
/// for an image nodes already hold, how many of the pod's nodes will still run it.
pub fn warning(f: &Finding) -> String {
    let who = f.subject(MAX_QUOTED_IMAGE);
    let text = match &f.node_copies {
        Some(copies) => node_copies_text(f, copies),
        None => format!("{}: {}", f.verdict, f.message),
    };
    excerpt(&format!("pullgate: {who}: {text}"), MAX_WARNING_LEN)
}

/// `not-found; 2 of 7 eligible nodes hold it and will run it; new nodes will fail`
/// (eligible: the nodes the pod can land on). For `unauthorized` on kubelets that re-check
/// credentials (1.35+, KEP-2535) the copy is no promise: say so instead.
fn node_copies_text(f: &Finding, copies: &crate::verdict::NodeCopies) -> String {
    let held = format!(
        "{} of {} eligible nodes hold it",
        copies.holding, copies.eligible
    );
    if copies.recheck_credentials > 0 {
        format!(
            "{}; {held}; kubelets 1.35+ re-check credentials (KEP-2535)",
            f.verdict
        )
    } else {
        format!("{}; {held} and will run it; new nodes will fail", f.verdict)
    }
}

/// A note, named by its container or volume: `pullgate: container "web": may land on a
/// linux/arm64 node, where the image has no manifest (it has linux/amd64)`. The warning
/// already says whose image it is, so the reference (often most of the 120 characters)
/// is not repeated.
pub fn note_warning(f: &Finding, note: &str) -> String {
    let note = match f.reference.as_deref().filter(|r| !r.is_empty()) {
        Some(reference) => note.replace(reference, "the image"),
        None => note.to_string(),
    };
    excerpt(
        &format!("pullgate: {}: {note}", f.subject(MAX_QUOTED_IMAGE)),
        MAX_WARNING_LEN,
    )
}

/// `findings` → a compact JSON list of the non-pullable findings (the apiserver prefixes
/// the key with the webhook's name).
fn audit_annotations(failing: &[&Finding]) -> BTreeMap<String, String> {
    let entries: Vec<serde_json::Value> = failing
        .iter()
        .map(|f| {
            let mut entry = serde_json::json!({
                "container": f.container,
                "image": excerpt(&f.image, MAX_QUOTED_IMAGE),
                "verdict": f.verdict,
                "message": f.message,
            });
            if let Some(volume) = &f.volume {
                entry["volume"] = serde_json::json!(volume);
            }
            if let Some(copies) = &f.node_copies {
                entry["node_copies"] = serde_json::json!(copies);
            }
            entry
        })
        .collect();
    let mut out = BTreeMap::new();
    out.insert(
        "findings".to_string(),
        serde_json::Value::Array(entries).to_string(),
    );
    out
}

/// Verdict counts for a log line, in verdict order (`pullable=2,not-found=1`), written
/// straight into it.
pub struct VerdictCounts<'a>(pub &'a [Finding]);

impl std::fmt::Display for VerdictCounts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut order = Verdict::ALL;
        order.sort_unstable();
        let mut counts = [0usize; Verdict::ALL.len()];
        for finding in self.0 {
            if let Some(i) = order.iter().position(|v| *v == finding.verdict) {
                counts[i] += 1;
            }
        }
        let mut first = true;
        for (v, n) in order.iter().zip(counts).filter(|(_, n)| *n > 0) {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{v}={n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::NodeCopies;
    use rstest::rstest;

    fn f(verdict: Verdict) -> Finding {
        Finding {
            image: "nginx:latset".into(),
            reference: Some("docker.io/library/nginx:latset".into()),
            container: Some("web".into()),
            volume: None,
            verdict,
            digest: None,
            message:
                "tag \"latset\" not found in docker.io/library/nginx (did you mean \"latest\"?)"
                    .into(),
            note: None,
            node_copies: None,
        }
    }

    #[test]
    fn verdict_counts_follow_the_verdict_order() {
        let findings = [
            f(Verdict::Timeout),
            f(Verdict::NotFound),
            f(Verdict::Pullable),
            f(Verdict::NotFound),
        ];
        assert_eq!(
            VerdictCounts(&findings).to_string(),
            "pullable=1,not-found=2,timeout=1"
        );
        assert_eq!(VerdictCounts(&[]).to_string(), "");
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

    fn held(verdict: Verdict, holding: usize, eligible: usize, recheck: usize) -> Finding {
        Finding {
            node_copies: Some(NodeCopies {
                holding,
                eligible,
                recheck_credentials: recheck,
            }),
            ..f(verdict)
        }
    }

    #[rstest]
    #[case::enforce(Mode::Enforce, 1)]
    #[case::audit(Mode::Audit, 1)]
    #[case::off(Mode::Off, 0)]
    fn a_note_is_a_warning_in_every_mode_that_checks(#[case] mode: Mode, #[case] warnings: usize) {
        let noted = Finding {
            note: Some(
                "may land on a linux/arm64 node, where docker.io/library/nginx:latset has no manifest (it has linux/amd64)"
                    .into(),
            ),
            ..f(Verdict::Pullable)
        };
        let d = decide(mode, OnRegistryError::Allow, &[noted]);
        assert!(d.allowed);
        assert_eq!(d.warnings.len(), warnings);
        if let Some(w) = d.warnings.first() {
            assert!(
                w.starts_with("pullgate: container \"web\": may land on a linux/arm64 node"),
                "{w}"
            );
            assert!(w.chars().count() <= MAX_WARNING_LEN);
        }
    }

    #[test]
    fn a_note_on_a_denied_finding_still_warns() {
        let denied = Finding {
            note: Some("on a linux/arm64 node: blob missing".into()),
            ..f(Verdict::NotFound)
        };
        let d = decide(Mode::Enforce, OnRegistryError::Allow, &[denied]);
        assert!(!d.allowed);
        assert_eq!(
            d.warnings,
            ["pullgate: container \"web\": on a linux/arm64 node: blob missing"]
        );
    }

    #[rstest]
    #[case::not_found(Verdict::NotFound)]
    #[case::unauthorized(Verdict::Unauthorized)]
    #[case::no_matching_platform(Verdict::NoMatchingPlatform)]
    #[case::not_an_image(Verdict::NotAnImage)]
    #[case::invalid_pull_secret(Verdict::InvalidPullSecret)]
    fn images_nodes_already_hold_are_admitted_with_a_warning(#[case] verdict: Verdict) {
        let d = decide(
            Mode::Enforce,
            OnRegistryError::Deny,
            &[held(verdict, 2, 7, 0)],
        );
        assert!(d.allowed, "{d:?}");
        assert_eq!(
            d.warnings,
            [format!(
                "pullgate: container \"web\": {verdict}; 2 of 7 eligible nodes hold it and will run it; new nodes will fail"
            )]
        );
        assert!(
            d.warnings[0].chars().count() <= MAX_WARNING_LEN,
            "{}",
            d.warnings[0]
        );
    }

    #[test]
    fn a_held_image_does_not_excuse_another_that_fails() {
        let d = decide(
            Mode::Enforce,
            OnRegistryError::Allow,
            &[held(Verdict::NotFound, 1, 3, 0), f(Verdict::NotFound)],
        );
        assert!(!d.allowed);
        assert_eq!(d.warnings.len(), 1);
        assert!(
            d.warnings[0].contains("1 of 3 eligible nodes"),
            "{:?}",
            d.warnings
        );
    }

    #[test]
    fn unauthorized_on_kubelets_that_recheck_credentials_says_so() {
        let d = decide(
            Mode::Enforce,
            OnRegistryError::Allow,
            &[held(Verdict::Unauthorized, 2, 7, 1)],
        );
        assert!(d.allowed);
        assert_eq!(
            d.warnings,
            [
                "pullgate: container \"web\": unauthorized; 2 of 7 eligible nodes hold it; kubelets 1.35+ re-check credentials (KEP-2535)"
            ]
        );
    }

    #[test]
    fn audit_annotations_carry_the_volume_and_the_node_copies() {
        let volume = Finding {
            container: None,
            volume: Some("data".into()),
            ..held(Verdict::NotFound, 2, 3, 0)
        };
        let d = decide(Mode::Audit, OnRegistryError::Allow, &[volume]);
        let findings: serde_json::Value =
            serde_json::from_str(&d.audit_annotations["findings"]).expect("json");
        assert_eq!(findings[0]["volume"], "data");
        assert_eq!(findings[0]["node_copies"]["holding"], 2);
    }

    #[test]
    fn a_volume_is_named_as_a_volume() {
        let volume = Finding {
            container: None,
            volume: Some("data".into()),
            ..f(Verdict::NotFound)
        };
        let d = decide(
            Mode::Enforce,
            OnRegistryError::Allow,
            std::slice::from_ref(&volume),
        );
        assert!(
            d.message
                .as_deref()
                .is_some_and(|m| m.starts_with("volume \"data\" image \"nginx:latset\": tag")),
            "{d:?}"
        );
        assert!(warning(&volume).starts_with("pullgate: volume \"data\": not-found"));
    }

    #[rstest]
    #[case::enforce(Mode::Enforce)]
    #[case::audit(Mode::Audit)]
    fn a_mirror_pod_is_never_denied_and_says_why(#[case] mode: Mode) {
        let d = decide_mirror_pod(
            mode,
            OnRegistryError::Deny,
            &[f(Verdict::NotFound), f(Verdict::Timeout)],
        );
        assert!(d.allowed);
        assert_eq!(d.message, None);
        assert_eq!(d.warnings.len(), 3);
        assert!(d.warnings[0].contains("mirror pod"), "{:?}", d.warnings);
        assert!(
            d.warnings
                .iter()
                .all(|w| w.chars().count() <= MAX_WARNING_LEN)
        );
    }

    #[test]
    fn a_clean_mirror_pod_gets_no_warning() {
        let d = decide_mirror_pod(
            Mode::Enforce,
            OnRegistryError::Deny,
            &[f(Verdict::Pullable)],
        );
        assert_eq!(d, Decision::allow());
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
