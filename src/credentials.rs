//! Which pull secrets a pod will have, as the kubelet will see them (ARCHITECTURE.md §3): the spec's
//! own `imagePullSecrets`; for a pod *template* that lists none, its ServiceAccount's (the
//! apiserver merges those into Pods before any webhook runs, but never into templates).
//! Shared by the webhook, `pullgate audit` and `pullgate check`, so all apply the same rules.

use tokio::time::Instant;

use crate::checker::{Checker, ImageSpec};
use crate::cluster::{ClusterState, SecretProblem};
use crate::keyring::Keyring;
use crate::platform::Platform;
use crate::reference::Reference;
use crate::scheduling::{self, Placement};
use crate::verdict::{Finding, Verdict};
use crate::workload::{PodImage, Workload};

/// The keyring of `workload` in `namespace`, and the named secrets that gave nothing
/// (missing, wrong type, no data: the kubelet skips those and pulls on) or that the
/// kubelet cannot decode (which fails every pull: see [`check_pod`]), in
/// `imagePullSecrets` order.
pub fn pod_keyring(
    cluster: &ClusterState,
    namespace: &str,
    workload: &Workload,
) -> (Keyring, Vec<SecretProblem>) {
    let mut names = workload.pull_secret_names();
    if names.is_empty() && workload.kind != "Pod" {
        names = cluster
            .service_account_pull_secrets(namespace, workload.service_account())
            .unwrap_or_default();
    }
    let mut keyring = Keyring::new();
    let mut problems = Vec::new();
    for name in names {
        match cluster.pull_secret(namespace, &name) {
            Ok(config) => keyring.add(&format!("secret {name}"), &config),
            Err(problem) => problems.push(problem),
        }
    }
    (keyring, problems)
}

/// The secret that makes the kubelet's `MakeDockerKeyring` fail: the first, in
/// `imagePullSecrets` order, that it cannot decode (`secrets.go` returns at the first).
pub fn rejected(problems: &[SecretProblem]) -> Option<&SecretProblem> {
    problems.iter().find(|p| p.fails_every_pull())
}

/// Check a pod's images with its keyring, as the kubelet would pull them.
///
/// When one of its secrets cannot be decoded, the kubelet builds no keyring at all and
/// every pull of the pod fails with that error, before any registry is contacted and
/// whatever registry the image is on (v1.28 `kuberuntime_image.go PullImage`, newest
/// `image_manager.go makeLookupPullCredentialsFunc`, both called only for an image that
/// is pulled). So then every image that would be pulled is `invalid-pull-secret`, with no
/// probe; `imagePullPolicy: Never` and exempt images stay exempt, and a malformed name is
/// still `invalid-reference` (the kubelet reports `InvalidImageName` first).
pub async fn check_pod(
    checker: &Checker,
    specs: &[ImageSpec],
    keyring: &Keyring,
    problems: &[SecretProblem],
    platforms: &[Platform],
    deadline: Instant,
) -> Vec<Finding> {
    if let Some(problem) = rejected(problems) {
        return specs
            .iter()
            .map(|spec| rejected_finding(spec, problem))
            .collect();
    }
    let mut findings = checker.check(specs, keyring, platforms, deadline).await;
    note_problems(&mut findings, problems);
    findings
}

/// The webhook's rules for one pod in the cluster, shared with `pullgate audit`:
/// [`check_pod`] on the platforms the pod can run on, then the copies of its images that
/// the nodes it can land on already hold (an `IfNotPresent` failure they spare).
/// `images` are the pod's images, `specs` what is checked of them, in the same order.
#[allow(clippy::too_many_arguments)]
pub async fn check_placed_pod(
    checker: &Checker,
    cluster: &ClusterState,
    images: &[PodImage],
    specs: &[ImageSpec],
    keyring: &Keyring,
    problems: &[SecretProblem],
    placement: &Placement,
    deadline: Instant,
) -> Vec<Finding> {
    let mut findings = check_pod(
        checker,
        specs,
        keyring,
        problems,
        &placement.platforms,
        deadline,
    )
    .await;
    if let Some(eligible) = placement.eligible() {
        scheduling::mark_node_copies(&mut findings, images, eligible, |key| {
            cluster.holders(eligible, key)
        });
    }
    findings
}

fn rejected_finding(spec: &ImageSpec, problem: &SecretProblem) -> Finding {
    let finding = |reference: Option<&Reference>, verdict, message| Finding {
        image: spec.image.clone(),
        reference: reference.map(ToString::to_string),
        container: spec.container.clone(),
        volume: spec.volume.clone(),
        verdict,
        digest: None,
        message,
        note: None,
        node_copies: None,
    };
    if let Some(reason) = &spec.exempt {
        return finding(None, Verdict::Exempt, reason.clone());
    }
    match Reference::parse(&spec.image) {
        Err(e) => finding(
            None,
            Verdict::InvalidReference,
            format!("invalid image reference: {e}"),
        ),
        Ok(reference) => finding(
            Some(&reference),
            Verdict::InvalidPullSecret,
            // The consequence first: warnings are cut at 120 characters.
            match problem {
                SecretProblem::Rejected { name, reason } => format!(
                    "imagePullSecret {name:?} cannot be decoded by the kubelet, which fails every image pull of this pod until it is fixed: {reason}"
                ),
                other => other.to_string(),
            },
        ),
    }
}

/// Say which named secrets were skipped, on the findings they may explain.
pub fn note_problems(findings: &mut [Finding], problems: &[SecretProblem]) {
    if problems.is_empty() {
        return;
    }
    let notes: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let notes = notes.join("; ");
    for f in findings
        .iter_mut()
        .filter(|f| matches!(f.verdict, Verdict::Unauthorized | Verdict::NotFound))
    {
        f.message = format!("{} ({notes})", f.message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::{ConfigFormat, DockerConfig};

    fn rejected_problem(name: &str) -> SecretProblem {
        let reason = DockerConfig::parse(
            br#"{"auths":{"r.io":{"auth":"c2VjcmV0"}}}"#,
            ConfigFormat::DockerConfigJson,
        )
        .expect_err("no colon in auth");
        SecretProblem::Rejected {
            name: name.to_string(),
            reason,
        }
    }

    #[test]
    fn the_first_secret_the_kubelet_cannot_decode_is_the_one_that_fails_the_pod() {
        let problems = [
            SecretProblem::Missing("gone".into()),
            rejected_problem("first"),
            rejected_problem("second"),
        ];
        assert_eq!(rejected(&problems), Some(&problems[1]));
        assert_eq!(rejected(&problems[..1]), None);
    }

    #[test]
    fn a_rejected_secret_fails_every_pulled_image_and_names_itself_not_its_content() {
        let problem = rejected_problem("regcred");
        let mut never = ImageSpec::new(Some("cache"), "r.io/cache:1");
        never.exempt = Some("imagePullPolicy is Never: the image is never pulled".into());
        let specs = [
            ImageSpec::new(Some("app"), "r.io/app:1"),
            ImageSpec::new(Some("hub"), "nginx"),
            never,
            ImageSpec::new(Some("bad"), "r.io/app@sha256:bad"),
        ];
        let findings: Vec<Finding> = specs
            .iter()
            .map(|s| rejected_finding(s, &problem))
            .collect();
        let verdicts: Vec<Verdict> = findings.iter().map(|f| f.verdict).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::InvalidPullSecret,
                Verdict::InvalidPullSecret,
                Verdict::Exempt,
                Verdict::InvalidReference,
            ]
        );
        let message = &findings[0].message;
        assert!(
            message.contains("\"regcred\"") && message.contains("every image pull"),
            "{message}"
        );
        assert!(
            !message.contains("c2VjcmV0") && !message.contains("secret:"),
            "{message}"
        );
        assert_eq!(
            findings[1].reference.as_deref(),
            Some("docker.io/library/nginx:latest")
        );
    }
}
