//! `pullgate check` end to end: the real binary against real registries.

use crate::support;
use std::path::Path;
use std::process::Output;

use serde_json::Value;
use support::engine::docker_config_json;
use support::{
    PushAuth, Registry, RegistryAuth, RegistryOpts, TestPki, push_oci_index, push_oci_manifest,
    tag_existing,
};

/// Run the binary off the async runtime (the registries live on it).
async fn pullgate(args: Vec<String>, stdin: Option<String>) -> Output {
    let mut cmd = support::cli::command();
    cmd.args(args);
    support::cli::run(cmd, stdin).await
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

fn json(o: &Output) -> Vec<Value> {
    serde_json::from_slice::<Value>(&o.stdout)
        .unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}",
                String::from_utf8_lossy(&o.stdout)
            )
        })
        .as_array()
        .expect("a JSON array")
        .clone()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

struct Env {
    _pki: TestPki,
    public: Registry,
    private: Registry,
    dir: tempfile::TempDir,
}

impl Env {
    async fn start() -> Self {
        support::init();
        let pki = TestPki::new();
        let public = Registry::start(RegistryOpts::tls(&pki)).await;
        let private = Registry::start(
            RegistryOpts::tls(&pki).with_auth(RegistryAuth::htpasswd(&[("ci", "ci-pw")])),
        )
        .await;
        let t = public.push_target(PushAuth::None);
        push_oci_manifest(&t, "library/web", "1.0").await;
        tag_existing(&t, "library/web", "1.0", "latest").await;
        push_oci_index(
            &t,
            "library/armonly",
            "1.0",
            &[("linux", "arm64", None)],
            false,
        )
        .await;
        push_oci_manifest(
            &private.push_target(PushAuth::basic("ci", "ci-pw")),
            "team/api",
            "2.0",
        )
        .await;
        Self {
            _pki: pki,
            public,
            private,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn ca(&self) -> String {
        self.public
            .ca_pem_path()
            .expect("tls")
            .display()
            .to_string()
    }

    fn write(&self, name: &str, content: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).expect("write");
        path.display().to_string()
    }
}

/// The six finding fields (ARCHITECTURE.md §8), and where the image is written (`null` for `--image`).
const FIELDS: [&str; 9] = [
    "image",
    "reference",
    "container",
    "verdict",
    "digest",
    "message",
    "file",
    "line",
    "column",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pullable_images_exit_zero_with_the_documented_json_shape() {
    let env = Env::start().await;
    let image = format!("{}/library/web:1.0", env.public.host());
    let out = pullgate(
        args(&[
            "check",
            "--image",
            &image,
            "--registry-ca",
            &env.ca(),
            "-o",
            "json",
        ]),
        None,
    )
    .await;
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let rows = json(&out);
    assert_eq!(rows.len(), 1);
    let row = rows[0].as_object().expect("object");
    let mut keys: Vec<&str> = row.keys().map(String::as_str).collect();
    keys.sort();
    let mut expected = FIELDS.to_vec();
    expected.sort();
    assert_eq!(keys, expected);
    assert_eq!(row["verdict"], "pullable");
    assert_eq!(row["image"], image.as_str());
    assert_eq!(row["reference"], image.as_str());
    assert!(row["container"].is_null());
    assert!(row["file"].is_null() && row["line"].is_null() && row["column"].is_null());
    assert!(
        row["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_document_yaml_of_several_kinds_is_checked_per_container() {
    let env = Env::start().await;
    let (public, private) = (
        env.public.host().to_string(),
        env.private.host().to_string(),
    );
    let regcred = docker_config_json(&[(&private, "ci", "ci-pw")]);
    let yaml = format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: regcred, namespace: prod}}
type: kubernetes.io/dockerconfigjson
stringData:
  .dockerconfigjson: '{regcred}'
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: ignored}}
data: {{a: b}}
---
apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: prod}}
spec:
  containers:
  - {{name: web, image: "{public}/library/web:1.0"}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: typo, namespace: prod}}
spec:
  selector: {{matchLabels: {{app: typo}}}}
  template:
    metadata: {{labels: {{app: typo}}}}
    spec:
      initContainers:
      - {{name: init, image: "{public}/library/web:latset"}}
      containers:
      - {{name: main, image: "{public}/library/armonly:1.0"}}
---
apiVersion: batch/v1
kind: CronJob
metadata: {{name: nightly, namespace: prod}}
spec:
  schedule: "0 0 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          imagePullSecrets: [{{name: regcred}}]
          containers:
          - {{name: task, image: "{private}/team/api:2.0"}}
---
apiVersion: v1
kind: List
items:
- apiVersion: batch/v1
  kind: Job
  metadata: {{name: local, namespace: prod}}
  spec:
    template:
      spec:
        restartPolicy: Never
        containers:
        - {{name: local, image: "{private}/team/api:2.0", imagePullPolicy: Never}}
- apiVersion: apps/v1
  kind: StatefulSet
  metadata: {{name: nocred, namespace: prod}}
  spec:
    serviceName: x
    selector: {{matchLabels: {{app: x}}}}
    template:
      metadata: {{labels: {{app: x}}}}
      spec:
        imagePullSecrets: [{{name: missing}}]
        containers:
        - {{name: db, image: "{private}/team/api:2.0"}}
"#
    );
    let file = env.write("all.yaml", &yaml);
    let out = pullgate(
        args(&[
            "check",
            "-f",
            &file,
            "--registry-ca",
            &env.ca(),
            "-o",
            "json",
        ]),
        None,
    )
    .await;
    assert_eq!(code(&out), 1, "{}", String::from_utf8_lossy(&out.stderr));
    let rows = json(&out);
    let verdicts: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["container"].as_str().unwrap_or("-"),
                r["verdict"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            ("web", "pullable"),
            ("init", "not-found"),
            ("main", "no-matching-platform"),
            ("task", "pullable"),
            ("local", "exempt"),
            ("db", "unauthorized"),
        ]
    );
    assert!(
        rows[1]["message"]
            .as_str()
            .is_some_and(|m| m.contains("did you mean \"latest\""))
    );
    let db = rows[5]["message"].as_str().expect("message");
    assert!(db.contains("\"missing\""), "names the missing secret: {db}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_secret_flag_takes_a_docker_config_or_a_secret_manifest() {
    let env = Env::start().await;
    let private = env.private.host().to_string();
    let image = format!("{private}/team/api:2.0");
    let plain = env.write(
        "config.json",
        &docker_config_json(&[(&private, "ci", "ci-pw")]),
    );
    let out = pullgate(
        args(&[
            "check",
            "--image",
            &image,
            "--pull-secret",
            &plain,
            "--registry-ca",
            &env.ca(),
        ]),
        None,
    )
    .await;
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));

    use base64::Engine as _;
    let data = base64::engine::general_purpose::STANDARD
        .encode(docker_config_json(&[(&private, "ci", "ci-pw")]));
    let manifest = env.write(
        "secret.yaml",
        &format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: regcred}}\ntype: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {data}\n"),
    );
    let out = pullgate(
        args(&[
            "check",
            "--image",
            &image,
            "--pull-secret",
            &manifest,
            "--registry-ca",
            &env.ca(),
        ]),
        None,
    )
    .await;
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));

    let out = pullgate(
        args(&["check", "--image", &image, "--registry-ca", &env.ca()]),
        None,
    )
    .await;
    assert_eq!(code(&out), 1);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("IMAGE"), "{table}");
    assert!(
        table.contains("unauthorized") && table.contains("add an imagePullSecret"),
        "{table}"
    );
    assert!(!table.contains('\x1b'), "no colour when not a terminal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_indeterminate_failures_exit_three() {
    support::init();
    let closed = format!("127.0.0.1:{}", support::free_port(support::LOCALHOST));
    let out = pullgate(
        args(&[
            "check",
            "--image",
            &format!("{closed}/app:1"),
            "--timeout",
            "5",
        ]),
        None,
    )
    .await;
    assert_eq!(code(&out), 3, "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("registry-unavailable"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_from_stdin() {
    let env = Env::start().await;
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n  - {{name: c, image: \"{}/library/web\"}}\n",
        env.public.host()
    );
    let out = pullgate(
        args(&["check", "-f", "-", "--registry-ca", &env.ca(), "-o", "json"]),
        Some(yaml),
    )
    .await;
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        json(&out)[0]["reference"],
        format!("{}/library/web:latest", env.public.host()).as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_usage_and_unreadable_input_exit_two_with_a_reason() {
    support::init();
    let dir = tempfile::tempdir().expect("tempdir");
    let bad_yaml = dir.path().join("bad.yaml");
    std::fs::write(&bad_yaml, "kind: Pod\nspec: [unclosed\n").expect("write");
    let scalar = dir.path().join("scalar.yaml");
    std::fs::write(&scalar, "just text\n").expect("write");
    let bad_secret = dir.path().join("secret.json");
    std::fs::write(&bad_secret, r#"{"auths":{"r.io":{"auth":"%%%"}}}"#).expect("write");
    let missing = Path::new("/nonexistent/pods.yaml").display().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (args(&["check"]), "nothing to check"),
        (args(&["check", "-f", &missing]), "cannot read"),
        (
            args(&["check", "-f", &bad_yaml.display().to_string()]),
            "not valid YAML",
        ),
        (
            args(&["check", "-f", &scalar.display().to_string()]),
            "not a Kubernetes object",
        ),
        (
            args(&[
                "check",
                "--image",
                "nginx",
                "--pull-secret",
                &bad_secret.display().to_string(),
            ]),
            "auth",
        ),
        (
            args(&["check", "--image", "nginx", "--platform", "linux"]),
            "invalid platform",
        ),
        (
            args(&["check", "--image", "nginx", "--timeout", "soon"]),
            "not a duration",
        ),
        (args(&["check", "--no-such-flag"]), "unexpected argument"),
        (
            args(&["check", "--image", "nginx", "--registry-ca", &missing]),
            "CA bundle",
        ),
    ];
    for (argv, reason) in cases {
        let out = pullgate(argv.clone(), None).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(&out), 2, "{argv:?}: {stderr}");
        assert!(
            stderr.contains(reason),
            "{argv:?} should say {reason:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_lists_every_flag_with_its_environment_variable() {
    let out = pullgate(args(&["check", "--help"]), None).await;
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--image",
        "--pull-secret",
        "--platform",
        "--registry-ca",
        "--insecure-registry",
        "--timeout",
        "--output",
    ] {
        assert!(help.contains(flag), "{flag} missing from help");
    }
    for var in [
        "PULLGATE_IMAGE",
        "PULLGATE_PULL_SECRET",
        "PULLGATE_PLATFORM",
        "PULLGATE_REGISTRY_CA",
        "PULLGATE_TIMEOUT",
    ] {
        assert!(help.contains(var), "{var} missing from help");
    }
}
