//! Where pods can run and what their nodes already hold (ARCHITECTURE.md §3), end to end:
//! AdmissionReviews in the apiserver's shape (captured ones, and ones built in their shape
//! under `tests/data/admission-reviews/built/`) against a real registry, with Nodes fed
//! through the cluster writers as the Node watch feeds them.

use crate::support;
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use pullgate::cluster::ClusterWriters;
use pullgate::metrics::Metrics;
use pullgate::platform::Platform;
use pullgate::webhook::{Reply, Webhook, WebhookConfig};
use serde_json::{Value, json};
use support::engine::checker;
use support::{
    PushAuth, PushTarget, Registry, RegistryOpts, delete_manifest, push_blob, push_manifest_raw,
    push_oci_index,
};

/// The host every fixture names; replaced by the test registry's.
const FIXTURE_REGISTRY: &str = "registry.example.com";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// One plain-HTTP registry holding single-platform and multi-platform indexes, a tag that
/// was deleted, and an OCI artifact (a model) that only an image volume can use.
struct Env {
    registry: Registry,
}

impl Env {
    async fn start() -> Self {
        support::init();
        let registry = Registry::start(RegistryOpts::plain()).await;
        let t = registry.push_target(PushAuth::None);
        let amd64 = [("linux", "amd64", None)];
        push_oci_index(&t, "team/amd64-only", "1.0", &amd64, false).await;
        push_oci_index(
            &t,
            "team/arm64-only",
            "1.0",
            &[("linux", "arm64", None)],
            false,
        )
        .await;
        push_oci_index(
            &t,
            "team/multi",
            "1.0",
            &[("linux", "amd64", None), ("linux", "arm64", None)],
            true,
        )
        .await;
        push_oci_index(&t, "infra/agent", "5", &amd64, false).await;
        // Pushed, pulled by the nodes, then deleted from the registry.
        let gone = push_oci_index(&t, "team/gone", "1.0", &amd64, false).await;
        delete_manifest(&t, "team/gone", &gone).await;
        push_artifact(&t, "team/models", "v1").await;
        Self { registry }
    }

    fn host(&self) -> &str {
        self.registry.host()
    }

    fn image(&self, path: &str) -> String {
        format!("{}/{path}", self.host())
    }

    /// A fixture with its registry host pointed at the test registry.
    fn fixture(&self, name: &str) -> Value {
        let path = format!(
            "{}/tests/data/admission-reviews/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text.replace(FIXTURE_REGISTRY, self.host())).expect("JSON")
    }

    /// The review's answer from a webhook over `writers` (`watch_nodes` as configured).
    async fn answer(
        &self,
        writers: &ClusterWriters,
        config: WebhookConfig,
        review: &Value,
    ) -> Value {
        let state = writers.state(config.watch_nodes);
        let webhook = Webhook::new(
            checker(&[], &[self.host().to_string()]),
            state,
            config,
            Arc::new(Metrics::new()),
        );
        let body = review.to_string();
        match webhook
            .review(body.as_bytes(), Some(Duration::from_secs(10)))
            .await
        {
            Reply::Review(body) => {
                let v: Value = serde_json::from_slice(&body).expect("a JSON review");
                assert_eq!(v["response"]["uid"], review["request"]["uid"]);
                v["response"].clone()
            }
            Reply::BadRequest(reason) => panic!("bad request: {reason}"),
        }
    }
}

/// An OCI artifact as ORAS pushes one: an empty config and a model file as its one blob.
async fn push_artifact(t: &PushTarget, repo: &str, tag: &str) {
    let config = b"{}".to_vec();
    let model = b"weights".to_vec();
    let (config_size, model_size) = (config.len(), model.len());
    let config_digest = push_blob(t, repo, config).await;
    let model_digest = push_blob(t, repo, model).await;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.model.v1",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.example.model.weights.v1", "digest": model_digest, "size": model_size}]
    });
    push_manifest_raw(
        t,
        repo,
        tag,
        OCI_MANIFEST,
        manifest.to_string().into_bytes(),
    )
    .await;
}

fn node(name: &str, arch: &str, labels: &[(&str, &str)], images: &[String]) -> Node {
    let mut all: BTreeMap<String, String> = BTreeMap::from([
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), arch.to_string()),
        ("kubernetes.io/hostname".to_string(), name.to_string()),
    ]);
    all.extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": all},
        "status": {
            "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "6.1.0",
                "osImage": "Debian GNU/Linux 12", "containerRuntimeVersion": "containerd://2.1.4",
                "kubeletVersion": "v1.34.2", "kubeProxyVersion": "", "operatingSystem": "linux",
                "architecture": arch},
            "images": images.iter().map(|n| json!({"names": [n], "sizeBytes": 1000})).collect::<Vec<_>>()
        }
    }))
    .expect("a node")
}

fn nodes(list: Vec<Node>) -> ClusterWriters {
    let mut w = ClusterWriters::new();
    for n in list {
        w.add_node(n);
    }
    w
}

fn watching() -> WebhookConfig {
    WebhookConfig {
        watch_nodes: true,
        ..WebhookConfig::default()
    }
}

fn configured(platforms: &[&str]) -> WebhookConfig {
    WebhookConfig {
        platforms: platforms
            .iter()
            .map(|p| p.parse::<Platform>().expect("platform"))
            .collect(),
        ..WebhookConfig::default()
    }
}

fn allowed(r: &Value) -> bool {
    r["allowed"].as_bool().expect("allowed is a bool")
}

fn message(r: &Value) -> &str {
    r["status"]["message"].as_str().unwrap_or_default()
}

fn warnings(r: &Value) -> Vec<String> {
    r["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn set_image(review: &mut Value, pointer: &str, image: &str) {
    *review
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{pointer} in the review")) = json!(image);
}

const POD_IMAGE: &str = "/request/object/spec/containers/0/image";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_affinity_terms_are_ored_and_not_in_excludes_on_pseudo_nodes() {
    let env = Env::start().await;
    let config = || configured(&["linux/amd64", "linux/arm64"]);
    let mut review = env.fixture("built/pod-create-node-affinity-terms.json");
    let amd64_only = env.answer(&ClusterWriters::new(), config(), &review).await;
    assert!(!allowed(&amd64_only));
    assert!(
        message(&amd64_only).contains("no match for platform linux/arm64"),
        "only arm64 satisfies a term: {}",
        message(&amd64_only)
    );
    set_image(&mut review, POD_IMAGE, &env.image("team/arm64-only:1.0"));
    let arm64_only = env.answer(&ClusterWriters::new(), config(), &review).await;
    assert!(allowed(&arm64_only), "{arm64_only}");
    assert!(warnings(&arm64_only).is_empty(), "{arm64_only}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_affinity_in_not_in_and_exists_are_evaluated_on_every_node() {
    let env = Env::start().await;
    let accel = [("example.com/accelerator", "tpu")];
    let writers = || {
        nodes(vec![
            node("amd-1", "amd64", &[], &[]),
            // Exists holds, but NotIn amd64 does not: the second term refuses it.
            node("amd-gpu", "amd64", &accel, &[]),
            node("arm-1", "arm64", &[], &[]),
            node("s390-gpu", "s390x", &accel, &[]),
        ])
    };
    let mut review = env.fixture("built/pod-create-node-affinity-terms.json");
    let denied = env.answer(&writers(), watching(), &review).await;
    assert!(!allowed(&denied));
    assert!(
        message(&denied).contains("no match for platform linux/arm64 or linux/s390x"),
        "{}",
        message(&denied)
    );
    set_image(&mut review, POD_IMAGE, &env.image("team/multi:1.0"));
    let warned = env.answer(&writers(), watching(), &review).await;
    assert!(allowed(&warned), "{warned}");
    let w = warnings(&warned);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("pullgate: container \"app\": may land on a linux/s390x node"),
        "{w:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windows_pod_is_denied_a_linux_only_image_with_or_without_nodes() {
    let env = Env::start().await;
    let review = env.fixture("built/pod-create-os-windows.json");
    let alone = env
        .answer(
            &ClusterWriters::new(),
            configured(&["linux/amd64"]),
            &review,
        )
        .await;
    assert!(!allowed(&alone));
    assert!(
        message(&alone).contains("no match for platform windows/amd64"),
        "{}",
        message(&alone)
    );
    let mut windows = node("win-1", "amd64", &[], &[]);
    if let Some(labels) = windows.metadata.labels.as_mut() {
        labels.insert("kubernetes.io/os".into(), "windows".into());
    }
    let mixed = nodes(vec![node("linux-1", "arm64", &[], &[]), windows]);
    let on_nodes = env.answer(&mixed, watching(), &review).await;
    assert!(!allowed(&on_nodes));
    assert!(
        message(&on_nodes).contains("windows/amd64"),
        "{}",
        message(&on_nodes)
    );
    // Only Linux nodes: the pod would stay Pending; the images must still run on Windows.
    let linux = nodes(vec![node("linux-1", "arm64", &[], &[])]);
    let pending = env.answer(&linux, watching(), &review).await;
    assert!(!allowed(&pending));
    assert!(
        message(&pending).contains("windows/"),
        "{}",
        message(&pending)
    );
}

/// The captured DaemonSet pod: the controller pins it to one node with `matchFields`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemonset_pod_is_judged_on_its_one_node() {
    let env = Env::start().await;
    let review = env.fixture("pod-create-by-daemonset-controller.json");
    let arm_node = nodes(vec![
        node("fake-node-1", "arm64", &[], &[]),
        node("other", "amd64", &[], &[]),
    ]);
    let denied = env.answer(&arm_node, watching(), &review).await;
    assert!(!allowed(&denied));
    assert!(
        message(&denied).contains("no match for platform linux/arm64"),
        "{}",
        message(&denied)
    );
    let amd_node = nodes(vec![
        node("fake-node-1", "amd64", &[], &[]),
        node("other", "arm64", &[], &[]),
    ]);
    let fine = env.answer(&amd_node, watching(), &review).await;
    assert!(allowed(&fine), "{fine}");
    assert!(warnings(&fine).is_empty(), "{fine}");
    // The DaemonSet itself runs everywhere: its multi-arch gap is a warning.
    let daemonset = env.fixture("daemonset-create.json");
    let warned = env.answer(&arm_node, watching(), &daemonset).await;
    assert!(allowed(&warned), "{warned}");
    assert!(
        warnings(&warned)
            .iter()
            .any(|w| w.contains("may land on a linux/arm64 node")),
        "{warned}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_that_allows_amd64_and_arm64_gets_a_warning_for_an_amd64_only_image() {
    let env = Env::start().await;
    let review = env.fixture("built/deployment-create-affinity-amd64-arm64.json");
    let both = nodes(vec![
        node("amd-1", "amd64", &[], &[]),
        node("arm-1", "arm64", &[], &[]),
    ]);
    for (writers, config) in [
        (both, watching()),
        (
            ClusterWriters::new(),
            configured(&["linux/amd64", "linux/arm64"]),
        ),
    ] {
        let r = env.answer(&writers, config, &review).await;
        assert!(allowed(&r), "{r}");
        let w = warnings(&r);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("pullgate: container \"app\": may land on a linux/arm64 node, where"),
            "{w:?}"
        );
        assert!(w[0].chars().count() <= 120);
    }
}

/// `team/gone:1.0` was deleted from the registry; nodes that pulled it still report it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_if_not_present_image_held_by_eligible_nodes_is_admitted_with_a_warning() {
    let env = Env::start().await;
    let gone = env.image("team/gone:1.0");
    let web = [("example.com/pool", "web")];
    let batch = [("example.com/pool", "batch")];
    let held = || vec![gone.clone()];
    let review = env.fixture("built/pod-create-node-held-image.json");

    let two_of_three = nodes(vec![
        node("web-1", "amd64", &web, &held()),
        node("web-2", "amd64", &web, &held()),
        node("web-3", "amd64", &web, &[]),
        node("batch-1", "amd64", &batch, &held()),
    ]);
    let admitted = env.answer(&two_of_three, watching(), &review).await;
    assert!(allowed(&admitted), "{admitted}");
    assert_eq!(
        warnings(&admitted),
        [
            "pullgate: container \"app\": not-found; 2 of 3 eligible nodes hold it and will run it; new nodes will fail"
        ]
    );

    // Only a node the pod cannot land on has it.
    let elsewhere = nodes(vec![
        node("web-1", "amd64", &web, &[]),
        node("batch-1", "amd64", &batch, &held()),
    ]);
    let denied = env.answer(&elsewhere, watching(), &review).await;
    assert!(!allowed(&denied));
    assert!(
        message(&denied).contains("team/gone"),
        "{}",
        message(&denied)
    );

    // Always pulls whatever the node has.
    let mut always = review.clone();
    always["request"]["object"]["spec"]["containers"][0]["imagePullPolicy"] = json!("Always");
    let pulled = env.answer(&two_of_three, watching(), &always).await;
    assert!(!allowed(&pulled), "{pulled}");

    // Without --watch-nodes there is no evidence.
    let blind = env
        .answer(&two_of_three, WebhookConfig::default(), &review)
        .await;
    assert!(!allowed(&blind));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_pod_is_never_denied_but_says_what_would_not_pull() {
    let env = Env::start().await;
    let review = env.fixture("built/pod-create-mirror.json");
    let r = env
        .answer(&ClusterWriters::new(), WebhookConfig::default(), &review)
        .await;
    assert!(allowed(&r), "{r}");
    let w = warnings(&r);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].contains("mirror pod"), "{w:?}");
    assert!(
        w[1].starts_with("pullgate: container \"node-exporter\": not-found"),
        "{w:?}"
    );
    // The same pod without the annotation is an ordinary pod.
    let mut plain = review.clone();
    if let Some(a) = plain["request"]["object"]["metadata"]["annotations"].as_object_mut() {
        a.remove("kubernetes.io/config.mirror");
    }
    let denied = env
        .answer(&ClusterWriters::new(), WebhookConfig::default(), &plain)
        .await;
    assert!(!allowed(&denied));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_mounts_as_an_image_volume_and_a_missing_one_is_named_by_its_volume() {
    let env = Env::start().await;
    let mut review = env.fixture("built/pod-create-image-volume.json");
    let ok = env
        .answer(&ClusterWriters::new(), WebhookConfig::default(), &review)
        .await;
    assert!(allowed(&ok), "{ok}");
    assert!(warnings(&ok).is_empty(), "{ok}");

    let missing = env.image("team/models:v9");
    set_image(
        &mut review,
        "/request/object/spec/volumes/0/image/reference",
        &missing,
    );
    let denied = env
        .answer(&ClusterWriters::new(), WebhookConfig::default(), &review)
        .await;
    assert!(!allowed(&denied));
    assert!(
        message(&denied).starts_with(&format!("volume \"models\" image \"{missing}\": ")),
        "{}",
        message(&denied)
    );

    // The same artifact as a container's image is not something containerd runs.
    let mut as_container = env.fixture("built/pod-create-image-volume.json");
    set_image(&mut as_container, POD_IMAGE, &env.image("team/models:v1"));
    let refused = env
        .answer(
            &ClusterWriters::new(),
            WebhookConfig::default(),
            &as_container,
        )
        .await;
    assert!(!allowed(&refused));
    assert!(
        message(&refused).starts_with("container \"app\""),
        "{}",
        message(&refused)
    );
    assert!(
        message(&refused).contains("not a container image"),
        "{}",
        message(&refused)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_checks_the_changed_image_volume_only() {
    let env = Env::start().await;
    let review = env.fixture("built/deployment-update-image-volume.json");
    let r = env
        .answer(&ClusterWriters::new(), WebhookConfig::default(), &review)
        .await;
    assert!(!allowed(&r));
    let m = message(&r);
    assert!(m.starts_with("volume \"models\" image"), "{m}");
    assert!(m.contains("team/models:v2"), "{m}");
    assert!(
        !m.contains("team/gone"),
        "the unchanged container image is not judged again: {m}"
    );
}

/// `pullgate check -f`: the same rules without a cluster, findings located in the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_applies_affinity_and_locates_image_volumes() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("deploy.yaml");
    let yaml = format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: infer
spec:
  selector:
    matchLabels: {{app: infer}}
  template:
    metadata:
      labels: {{app: infer}}
    spec:
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
              - matchExpressions:
                  - {{key: kubernetes.io/arch, operator: In, values: [arm64]}}
      containers:
        - name: app
          image: {amd}
      volumes:
        - name: models
          image:
            reference: {model}
"#,
        amd = env.image("team/amd64-only:1.0"),
        model = env.image("team/models:v1"),
    );
    std::fs::write(&path, yaml).expect("write");
    let args = [
        "check".to_string(),
        "-f".to_string(),
        path.display().to_string(),
        "--insecure-registry".to_string(),
        env.host().to_string(),
        "-o".to_string(),
        "json".to_string(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_pullgate"))
            .args(&args)
            .env_remove("PULLGATE_PLATFORM")
            .output()
            .expect("run pullgate")
    })
    .await
    .expect("join");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["container"], "app");
    assert_eq!(
        rows[0]["verdict"], "no-matching-platform",
        "the affinity pins arm64"
    );
    assert_eq!(rows[0]["line"], 20);
    assert_eq!(rows[1]["volume"], "models");
    assert_eq!(rows[1]["container"], Value::Null);
    assert_eq!(rows[1]["verdict"], "pullable", "{:?}", rows[1]);
    assert_eq!(
        (rows[1]["line"].clone(), rows[1]["column"].clone()),
        (json!(24), json!(24))
    );
}
