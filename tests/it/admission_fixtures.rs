//! Every AdmissionReview captured from a real kube-apiserver v1.28.7 (tests/data, copied
//! from the shared fixtures) decodes into the subject pullgate must judge.

use pullgate::admission::{Operation, decode};
use rstest::rstest;

const APP: &str = "registry.example.com/team/app:1.0";
const TASK: &str = "registry.example.com/team/task:0.9";
const INIT: &str = "registry.example.com/tools/init:1.2.3";
const LATEST: &str = "registry.example.com/team/app:latest";
const NGINX: &str = "docker.io/library/nginx@sha256:0000000000000000000000000000000000000000000000000000000000000000";

fn load(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/data/admission-reviews/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[rstest]
#[case::pod_full("pod-create-full.json", "Pod", Operation::Create, None, false, &[INIT, LATEST, NGINX], &["regcred", "other-regcred"])]
#[case::pod_full_dry_run("pod-create-full-dryrun-server.json", "Pod", Operation::Create, None, true, &[INIT, LATEST, NGINX], &["regcred", "other-regcred"])]
#[case::pod_server_side_apply("pod-create-server-side-apply.json", "Pod", Operation::Create, None, false, &[INIT, LATEST, NGINX], &["regcred", "other-regcred"])]
#[case::pod_label_update_checks_nothing("pod-update-label.json", "Pod", Operation::Update, None, false, &[], &["regcred", "other-regcred"])]
#[case::pod_label_update_dry_run("pod-update-label-dryrun-server.json", "Pod", Operation::Update, None, true, &[], &["regcred", "other-regcred"])]
#[case::ephemeral_container_only_the_new_image("pod-ephemeralcontainers-update-kubectl-debug.json", "Pod", Operation::Update, Some("ephemeralcontainers"), false, &["registry.example.com/tools/debug:1.0"], &["regcred", "other-regcred"])]
#[case::pod_sa_secrets_already_merged("pod-create-sa-imagepullsecrets-merged.json", "Pod", Operation::Create, None, false, &[APP], &["sa-regcred", "sa-regcred-2"])]
#[case::pod_own_secrets_win("pod-create-sa-imagepullsecrets-pod-own-wins.json", "Pod", Operation::Create, None, false, &[APP], &["pod-own-regcred"])]
#[case::pod_in_labeled_namespace("pod-create-in-labeled-namespace.json", "Pod", Operation::Create, None, false, &[APP], &[])]
#[case::pod_kubectl_run("pod-create-kubectl-run.json", "Pod", Operation::Create, None, false, &[APP], &[])]
#[case::pod_by_replicaset("pod-create-by-replicaset-controller.json", "Pod", Operation::Create, None, false, &["registry.example.com/team/migrate:2.0", "registry.example.com/team/web:3.1"], &["regcred"])]
#[case::pod_by_job("pod-create-by-job-controller.json", "Pod", Operation::Create, None, false, &[TASK], &[])]
#[case::pod_by_job_from_cronjob("pod-create-by-job-controller-from-cronjob.json", "Pod", Operation::Create, None, false, &[TASK], &["regcred"])]
#[case::pod_by_statefulset("pod-create-by-statefulset-controller.json", "Pod", Operation::Create, None, false, &["registry.example.com/team/db:15"], &[])]
#[case::pod_by_daemonset("pod-create-by-daemonset-controller.json", "Pod", Operation::Create, None, false, &["registry.example.com/infra/agent:5"], &[])]
#[case::deployment("deployment-create.json", "Deployment", Operation::Create, None, false, &["registry.example.com/team/migrate:2.0", "registry.example.com/team/web:3.1"], &["regcred"])]
#[case::deployment_set_image_checks_only_the_new_one("deployment-update-set-image.json", "Deployment", Operation::Update, None, false, &["registry.example.com/team/web:3.2"], &["regcred"])]
#[case::replicaset("replicaset-create-by-deployment-controller.json", "ReplicaSet", Operation::Create, None, false, &["registry.example.com/team/migrate:2.0", "registry.example.com/team/web:3.1"], &["regcred"])]
#[case::replicaset_rollout("replicaset-create-by-deployment-controller-rollout.json", "ReplicaSet", Operation::Create, None, false, &["registry.example.com/team/migrate:2.0", "registry.example.com/team/web:3.2"], &["regcred"])]
#[case::job("job-create.json", "Job", Operation::Create, None, false, &[TASK], &[])]
#[case::job_by_cronjob("job-create-by-cronjob-controller.json", "Job", Operation::Create, None, false, &[TASK], &["regcred"])]
#[case::cronjob("cronjob-create.json", "CronJob", Operation::Create, None, false, &[TASK], &["regcred"])]
#[case::cronjob_suspend_checks_nothing("cronjob-update-suspend.json", "CronJob", Operation::Update, None, false, &[], &["regcred"])]
#[case::statefulset("statefulset-create.json", "StatefulSet", Operation::Create, None, false, &["registry.example.com/team/db:15"], &[])]
#[case::daemonset("daemonset-create.json", "DaemonSet", Operation::Create, None, false, &["registry.example.com/infra/agent:5"], &[])]
fn captured_review_decodes(
    #[case] file: &str,
    #[case] kind: &str,
    #[case] operation: Operation,
    #[case] sub_resource: Option<&str>,
    #[case] dry_run: bool,
    #[case] images: &[&str],
    #[case] secrets: &[&str],
) {
    let subject = decode(&load(file)).expect("a captured review decodes");
    assert_eq!(subject.kind, kind);
    assert_eq!(subject.operation, operation);
    assert_eq!(subject.sub_resource.as_deref(), sub_resource);
    assert_eq!(subject.dry_run, dry_run);
    assert!(!subject.uid.is_empty());
    assert!(
        !subject.name.is_empty(),
        "the name is known even for generated names"
    );
    let checked: Vec<&str> = subject.images.iter().map(|c| c.image.as_str()).collect();
    assert_eq!(checked, images);
    let workload = subject
        .workload
        .expect("every captured kind has a pod spec");
    assert_eq!(workload.pull_secret_names(), secrets);
}

#[test]
fn every_fixture_is_covered() {
    let dir = format!(
        "{}/tests/data/admission-reviews",
        env!("CARGO_MANIFEST_DIR")
    );
    let count = std::fs::read_dir(&dir)
        .expect("fixtures directory")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .count();
    assert_eq!(count, 25, "a fixture was added: give it a case above");
}

#[test]
fn namespace_comes_from_the_request() {
    let subject = decode(&load("pod-create-in-labeled-namespace.json")).expect("decodes");
    assert_eq!(subject.namespace, "team-a");
}

#[test]
fn init_containers_come_first_and_keep_their_names() {
    let subject = decode(&load("pod-create-full.json")).expect("decodes");
    let names: Vec<&str> = subject.images.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["init-setup", "app", "sidecar"]);
}
