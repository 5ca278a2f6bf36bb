//! Pull secrets read as the kubelet reads them, against a real htpasswd registry: what Go
//! decodes is pullable (the old serde/base64 reading refused much of it), and a secret
//! the kubelet cannot decode fails the whole pod without a single registry request.

use crate::support;
use std::collections::BTreeMap;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_body_util::BodyExt as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use pullgate::cluster::ClusterWriters;
use pullgate::credentials;
use pullgate::metrics::Metrics;
use pullgate::platform::Platform;
use pullgate::policy::Mode;
use pullgate::verdict::{Finding, Verdict};
use pullgate::webhook::{Webhook, WebhookConfig};
use pullgate::workload::{Workload, container_images};
use serde_json::{Value, json};
use support::engine::checker;
use support::{FaultProxy, PushAuth, Registry, RegistryAuth, RegistryOpts, push_oci_manifest};
use tokio::time::Instant;
use tower::ServiceExt as _;

const USER: &str = "team";
/// 14 bytes of `user:password`: its base64 ends in one `=`, so unpadded differs.
const PASSWORD: &str = "s3cret-pw";

/// A private registry behind htpasswd, reached through a proxy that counts requests.
struct Env {
    _registry: Registry,
    proxy: FaultProxy,
}

impl Env {
    async fn start() -> Self {
        support::init();
        let registry = Registry::start(
            RegistryOpts::plain().with_auth(RegistryAuth::htpasswd(&[(USER, PASSWORD)])),
        )
        .await;
        push_oci_manifest(
            &registry.push_target(PushAuth::basic(USER, PASSWORD)),
            "team/api",
            "2.0",
        )
        .await;
        let proxy = FaultProxy::for_registry(&registry).await;
        Self {
            _registry: registry,
            proxy,
        }
    }

    fn host(&self) -> String {
        self.proxy.host()
    }

    fn image(&self) -> String {
        format!("{}/team/api:2.0", self.host())
    }

    fn checker(&self) -> pullgate::checker::Checker {
        checker(&[], &[self.host()])
    }
}

fn pull_secret(name: &str, ty: &str, content: &[u8]) -> Secret {
    let key = if ty == "kubernetes.io/dockercfg" {
        ".dockercfg"
    } else {
        ".dockerconfigjson"
    };
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("team".into()),
            ..Default::default()
        },
        type_: Some(ty.into()),
        data: Some(BTreeMap::from([(
            key.to_string(),
            ByteString(content.to_vec()),
        )])),
        ..Default::default()
    }
}

fn pod(containers: Value, secrets: &[&str]) -> Value {
    let refs: Vec<Value> = secrets.iter().map(|s| json!({"name": s})).collect();
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "team"},
           "spec": {"containers": containers, "imagePullSecrets": refs}})
}

/// The findings the webhook's credential path gives `pod` with `secrets` in the cluster.
async fn findings_for(env: &Env, secrets: Vec<Secret>, pod: &Value) -> Vec<Finding> {
    let mut writers = ClusterWriters::new();
    for s in secrets {
        writers.add_secret(s);
    }
    let cluster = writers.state(false);
    let workload = Workload::from_object(pod)
        .expect("a pod")
        .expect("with a spec");
    let (keyring, problems) = credentials::pod_keyring(&cluster, "team", &workload);
    let specs: Vec<_> = container_images(&workload.spec)
        .iter()
        .map(|c| c.to_spec())
        .collect();
    credentials::check_pod(
        &env.checker(),
        &specs,
        &keyring,
        &problems,
        &[Platform::linux_amd64()],
        Instant::now() + Duration::from_secs(20),
    )
    .await
}

/// `auth` for the registry's user, as Go's StdEncoding writes it.
fn auth() -> String {
    STANDARD.encode(format!("{USER}:{PASSWORD}"))
}

/// The same `auth` with the unused low bits of its last character set: Go ignores them.
fn auth_with_trailing_bits() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bytes = auth().trim_end_matches('=').as_bytes().to_vec();
    let last = bytes.pop().expect("non-empty");
    let index = ALPHABET.iter().position(|&c| c == last).expect("base64");
    bytes.push(ALPHABET[index | 1]);
    let flipped = String::from_utf8(bytes).expect("ASCII");
    assert_ne!(format!("{flipped}="), auth(), "the low bits were zero");
    format!("{flipped}=")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_the_kubelet_decodes_are_pullable_however_they_are_written() {
    let env = Env::start().await;
    let h = env.host();
    let (u, p) = (USER, PASSWORD);
    let crlf_auth = {
        let a = auth();
        format!("{}\\r\\n{}", &a[..8], &a[8..])
    };
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let json_cases: Vec<(&str, &str, String)> = vec![
        (
            "field names in capitals",
            "json",
            format!(r#"{{"AUTHS":{{"{h}":{{"UserName":"{u}","PASSWORD":"{p}"}}}}}}"#),
        ),
        (
            "a long s folds to s",
            "json",
            format!(
                "{{\"auth\u{17F}\":{{\"{h}\":{{\"u\u{17F}ername\":\"{u}\",\"pa\u{17F}\u{17F}word\":\"{p}\"}}}}}}"
            ),
        ),
        (
            "line breaks inside auth",
            "json",
            format!(r#"{{"auths":{{"{h}":{{"auth":"{crlf_auth}"}}}}}}"#),
        ),
        (
            "unpadded auth",
            "json",
            format!(
                r#"{{"auths":{{"{h}":{{"auth":"{}"}}}}}}"#,
                auth().trim_end_matches('=')
            ),
        ),
        (
            "non-zero trailing bits in auth",
            "json",
            format!(
                r#"{{"auths":{{"{h}":{{"auth":"{}"}}}}}}"#,
                auth_with_trailing_bits()
            ),
        ),
        (
            "auth padded and followed by a newline",
            "json",
            format!(r#"{{"auths":{{"{h}":{{"auth":"{}\n"}}}}}}"#, auth()),
        ),
        (
            "userinfo in the key",
            "json",
            format!(
                r#"{{"auths":{{"https://robot@{h}/v2/":{{"username":"{u}","password":"{p}"}}}}}}"#
            ),
        ),
        (
            "a query in the key",
            "json",
            format!(r#"{{"auths":{{"{h}?ignored":{{"username":"{u}","password":"{p}"}}}}}}"#),
        ),
        (
            "a fragment in the key",
            "json",
            format!(r##"{{"auths":{{"{h}/team#x":{{"username":"{u}","password":"{p}"}}}}}}"##),
        ),
        (
            "a percent-escaped path in the key",
            "json",
            format!(r#"{{"auths":{{"{h}/te%61m":{{"username":"{u}","password":"{p}"}}}}}}"#),
        ),
        (
            "a duplicate auths object merges",
            "json",
            format!(
                r#"{{"auths":{{"other.io":{{}}}},"auths":{{"{h}":{{"username":"{u}","password":"{p}"}}}}}}"#
            ),
        ),
        (
            "a null entry for another registry",
            "json",
            format!(
                r#"{{"auths":{{"other.io":null,"{h}":{{"username":"{u}","password":"{p}"}}}}}}"#
            ),
        ),
        (
            "nesting deeper than serde_json allows",
            "json",
            format!(r#"{{"x":{deep},"auths":{{"{h}":{{"username":"{u}","password":"{p}"}}}}}}"#),
        ),
        (
            "legacy dockercfg in capitals",
            "cfg",
            format!(r#"{{"{h}":{{"AUTH":"{}"}}}}"#, auth()),
        ),
    ];
    let mut cases: Vec<(String, &str, Vec<u8>)> = json_cases
        .into_iter()
        .map(|(name, ty, doc)| (name.to_string(), ty, doc.into_bytes()))
        .collect();
    // Go replaces invalid UTF-8 inside strings; serde_json refused the whole document.
    let mut invalid_utf8 =
        format!(r#"{{"auths":{{"{h}":{{"username":"{u}","password":"{p}","email":""#).into_bytes();
    invalid_utf8.extend_from_slice(b"\xff\xfe\"}}}");
    cases.push((
        "invalid UTF-8 in the email".to_string(),
        "json",
        invalid_utf8,
    ));

    let image = env.image();
    let mut failures = Vec::new();
    for (name, ty, content) in cases {
        let ty = if ty == "cfg" {
            "kubernetes.io/dockercfg"
        } else {
            "kubernetes.io/dockerconfigjson"
        };
        let spec = pod(json!([{"name": "api", "image": image}]), &["regcred"]);
        let findings = findings_for(&env, vec![pull_secret("regcred", ty, &content)], &spec).await;
        if findings[0].verdict != Verdict::Pullable {
            failures.push(format!(
                "{name}: {} {}",
                findings[0].verdict, findings[0].message
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(env.proxy.total_requests() > 0, "the registry was asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_without_credentials_still_counts_as_the_match() {
    let env = Env::start().await;
    let content = format!(
        r#"{{"auths":{{"{}":{{"identitytoken":"t"}}}}}}"#,
        env.host()
    );
    let spec = pod(json!([{"name": "api", "image": env.image()}]), &["regcred"]);
    let findings = findings_for(
        &env,
        vec![pull_secret(
            "regcred",
            "kubernetes.io/dockerconfigjson",
            content.as_bytes(),
        )],
        &spec,
    )
    .await;
    assert_eq!(
        findings[0].verdict,
        Verdict::Unauthorized,
        "{}",
        findings[0].message
    );
    // The empty entry was the credential tried: no "add an imagePullSecret" hint.
    assert!(
        findings[0].message.contains("tried secret regcred"),
        "{}",
        findings[0].message
    );
}

/// Content the apiserver stores (a JSON object) but the kubelet cannot decode.
fn rejected_content(host: &str) -> Vec<u8> {
    // `auth` decodes to "no-colon": decodeDockerConfigFieldAuth refuses it.
    format!(
        r#"{{"auths":{{"{host}":{{"auth":"{}"}}}}}}"#,
        STANDARD.encode("no-colon")
    )
    .into_bytes()
}

async fn send(router: &axum::Router, object: Value) -> Value {
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "uid-1",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "team",
            "name": "p",
            "operation": "CREATE",
            "userInfo": {"username": "tester"},
            "object": object,
            "dryRun": false
        }
    });
    let request = Request::post("/validate?timeout=10s")
        .header("content-type", "application/json")
        .body(Body::from(review.to_string()))
        .expect("request");
    let response = router.clone().oneshot(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    serde_json::from_slice::<Value>(&bytes).expect("JSON")["response"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_the_kubelet_rejects_denies_the_pod_without_a_registry_request() {
    let env = Env::start().await;
    let good = format!(
        r#"{{"auths":{{"{}":{{"username":"{USER}","password":"{PASSWORD}"}}}}}}"#,
        env.host()
    );
    let mut writers = ClusterWriters::new();
    writers.add_secret(pull_secret(
        "good",
        "kubernetes.io/dockerconfigjson",
        good.as_bytes(),
    ));
    writers.add_secret(pull_secret(
        "broken",
        "kubernetes.io/dockerconfigjson",
        &rejected_content(&env.host()),
    ));
    let webhook = Webhook::new(
        env.checker(),
        writers.state(false),
        WebhookConfig {
            mode: Mode::Enforce,
            ..WebhookConfig::default()
        },
        Arc::new(Metrics::new()),
    );
    let router = pullgate::server::router(Arc::new(webhook));
    let containers = json!([
        {"name": "api", "image": env.image()},
        {"name": "hub", "image": format!("{}/team/other:1", env.host())},
        {"name": "local", "image": "cache.internal/x:1", "imagePullPolicy": "Never"}
    ]);

    // A good secret before the broken one does not help: the kubelet stops at the error.
    let answer = send(&router, pod(containers.clone(), &["good", "broken"])).await;
    assert_eq!(answer["allowed"], false, "{answer}");
    let message = answer["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("imagePullSecret \"broken\" cannot be decoded by the kubelet")
            && message.contains("every image pull of this pod")
            && message.contains("\"api\"")
            && message.contains("\"hub\"")
            && !message.contains("\"local\""),
        "{message}"
    );
    assert!(!message.contains(&STANDARD.encode("no-colon")), "{message}");
    assert_eq!(
        env.proxy.total_requests(),
        0,
        "no request reaches the registry"
    );

    // Without the broken secret, the same pod is checked against the registry.
    let answer = send(
        &router,
        pod(json!([{"name": "api", "image": env.image()}]), &["good"]),
    )
    .await;
    assert_eq!(answer["allowed"], true, "{answer}");
    assert!(env.proxy.total_requests() > 0);
}

/// Run the binary off the async runtime.
async fn pullgate(args: Vec<String>) -> Output {
    support::cli::pullgate(args, Vec::new()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_gives_invalid_pull_secret_for_a_manifest_secret_and_bad_input_for_a_flag() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = STANDARD.encode(rejected_content(&env.host()));
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: regcred}}\ntype: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {data}\n"
    );
    let deployment = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: api}}\nspec:\n  selector: {{matchLabels: {{app: api}}}}\n  template:\n    metadata: {{labels: {{app: api}}}}\n    spec:\n      imagePullSecrets: [{{name: regcred}}]\n      containers: [{{name: api, image: \"{}\"}}]\n",
        env.image()
    );
    let manifests = dir.path().join("app.yaml");
    std::fs::write(&manifests, format!("{secret}---\n{deployment}")).expect("write");
    let secret_file = dir.path().join("secret.yaml");
    std::fs::write(&secret_file, &secret).expect("write");
    let common = [
        "--insecure-registry".to_string(),
        env.host(),
        "--output".into(),
        "json".into(),
    ];

    let mut args = vec![
        "check".to_string(),
        "-f".into(),
        manifests.display().to_string(),
    ];
    args.extend(common.iter().cloned());
    let out = pullgate(args).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(rows[0]["verdict"], "invalid-pull-secret", "{rows}");
    assert!(
        rows[0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("\"regcred\""),
        "{rows}"
    );
    assert_eq!(
        env.proxy.total_requests(),
        0,
        "no request reaches the registry"
    );

    let mut args = vec![
        "check".to_string(),
        "--image".into(),
        env.image(),
        "--pull-secret".into(),
        secret_file.display().to_string(),
    ];
    args.extend(common.iter().cloned());
    let out = pullgate(args).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("regcred") && stderr.contains("\"auth\""),
        "{stderr}"
    );
}
