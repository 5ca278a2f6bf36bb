//! Which pull secrets a pod will have, as the kubelet will see them (ARCHITECTURE.md §3): the spec's
//! own `imagePullSecrets`; for a pod *template* that lists none, its ServiceAccount's (the
//! apiserver merges those into Pods before any webhook runs, but never into templates).
//! Shared by the webhook and `pullgate audit`, so both apply the same rules.

use crate::cluster::{ClusterState, SecretProblem};
use crate::keyring::Keyring;
use crate::workload::Workload;

/// The keyring of `workload` in `namespace`, and the named secrets that gave nothing
/// (missing, wrong type, unreadable): the kubelet skips those and pulls on.
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

/// Say which named secrets were skipped, on the findings they may explain.
pub fn note_problems(findings: &mut [crate::verdict::Finding], problems: &[SecretProblem]) {
    if problems.is_empty() {
        return;
    }
    let notes: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let notes = notes.join("; ");
    for f in findings.iter_mut().filter(|f| {
        matches!(
            f.verdict,
            crate::verdict::Verdict::Unauthorized | crate::verdict::Verdict::NotFound
        )
    }) {
        f.message = format!("{} ({notes})", f.message);
    }
}
