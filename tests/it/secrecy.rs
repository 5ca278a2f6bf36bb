//! No secret leaves its tenant: distinctive passwords and the tokens issued for them appear
//! in no log line (at the most verbose level), message, warning, audit annotation, metric
//! or error — in the webhook and in `pullgate check`.

use crate::support;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::Request;
use base64::Engine as _;
use http_body_util::BodyExt as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use pullgate::cluster::ClusterWriters;
use pullgate::metrics::Metrics;
use pullgate::policy::Mode;
use pullgate::webhook::{Webhook, WebhookConfig};
use serde_json::{Value, json};
use support::engine::docker_config_json;
use support::{
    ADMIN_PASSWORD, ADMIN_USER, PushAuth, Registry, RegistryAuth, RegistryOpts, TestPki,
    TokenIssuer, TokenIssuerOpts, push_oci_manifest,
};
use tower::ServiceExt as _;

const TOKEN_USER: &str = "tenant-a-robot";
const TOKEN_PASSWORD: &str = "pw-TOKEN-7d3f9c2e-do-not-leak";
const BASIC_USER: &str = "tenant-b-robot";
const BASIC_PASSWORD: &str = "pw-BASIC-41b8a0f5-do-not-leak";
const WRONG_PASSWORD: &str = "pw-WRONG-c0ffee99-do-not-leak";

/// Set in the child process that runs [`scenario`] alone.
const CHILD: &str = "PULLGATE_SECRECY_CHILD";

/// Every log line of this process, at TRACE. Only ever installed in the child process:
/// tracing decides once per call site and process whether anyone listens, so a capture
/// beside other tests would race them.
fn capture_logs() -> Arc<Mutex<Vec<u8>>> {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = buffer.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || Capture(sink.clone()))
        .init();
    buffer
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything that must not appear anywhere.
fn forbidden() -> Vec<String> {
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    let mut out = vec![
        TOKEN_PASSWORD.to_string(),
        BASIC_PASSWORD.to_string(),
        WRONG_PASSWORD.to_string(),
        ADMIN_PASSWORD.to_string(),
    ];
    for (user, pass) in [
        (TOKEN_USER, TOKEN_PASSWORD),
        (BASIC_USER, BASIC_PASSWORD),
        (BASIC_USER, WRONG_PASSWORD),
    ] {
        out.push(b64(format!("{user}:{pass}")));
    }
    out
}

fn assert_clean(what: &str, text: &str) {
    for secret in forbidden() {
        assert!(
            !text.contains(&secret),
            "{what} contains a secret ({secret})"
        );
    }
    // JWTs (the tokens the token server issued) start with a base64 '{"' header.
    assert!(
        !text.contains("eyJ"),
        "{what} contains what looks like a bearer token"
    );
}

fn secret(name: &str, namespace: &str, config: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some(BTreeMap::from([(
            ".dockerconfigjson".to_string(),
            ByteString(config.as_bytes().to_vec()),
        )])),
        ..Default::default()
    }
}

fn review(namespace: &str, images: &[&str]) -> Value {
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, img)| json!({"name": format!("c{i}"), "image": img}))
        .collect();
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("uid-{namespace}"),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "object": {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"imagePullSecrets": [{"name": "regcred"}], "containers": containers}},
            "oldObject": null
        }
    })
}

/// The scenario below runs alone in a child process of this test binary, with a
/// process-wide subscriber that sees every log line of every thread.
#[test]
fn credentials_appear_in_no_log_message_warning_metric_or_error() {
    let out = Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--exact", "secrecy::scenario", "--ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(CHILD, "1")
        .output()
        .expect("run the scenario in its own process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "the scenario ran: {stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run alone, in its own process, by credentials_appear_in_no_log_message_warning_metric_or_error"]
async fn scenario() {
    assert!(
        std::env::var_os(CHILD).is_some(),
        "runs only as the child of credentials_appear_in_no_log_message_warning_metric_or_error"
    );
    let logs = capture_logs();
    support::init();
    let pki = TestPki::new();
    let issuer = TokenIssuer::start(TokenIssuerOpts {
        tls: Some(&pki),
        ..Default::default()
    })
    .await;
    let token_registry =
        Registry::start(RegistryOpts::tls(&pki).with_auth(issuer.registry_auth())).await;
    let basic_registry = Registry::start(
        RegistryOpts::tls(&pki).with_auth(RegistryAuth::htpasswd(&[(BASIC_USER, BASIC_PASSWORD)])),
    )
    .await;
    push_oci_manifest(
        &token_registry.push_target(PushAuth::basic(ADMIN_USER, ADMIN_PASSWORD)),
        "team/app",
        "1.0",
    )
    .await;
    push_oci_manifest(
        &basic_registry.push_target(PushAuth::basic(BASIC_USER, BASIC_PASSWORD)),
        "team/app",
        "1.0",
    )
    .await;
    issuer.add_pull_only_user(TOKEN_USER, TOKEN_PASSWORD, &["team/*"]);
    let (th, bh) = (
        token_registry.host().to_string(),
        basic_registry.host().to_string(),
    );

    let mut writers = ClusterWriters::new();
    writers.add_secret(secret(
        "regcred",
        "good",
        &docker_config_json(&[
            (&th, TOKEN_USER, TOKEN_PASSWORD),
            (&bh, BASIC_USER, BASIC_PASSWORD),
        ]),
    ));
    writers.add_secret(secret(
        "regcred",
        "bad",
        &docker_config_json(&[
            (&th, TOKEN_USER, WRONG_PASSWORD),
            (&bh, BASIC_USER, WRONG_PASSWORD),
        ]),
    ));
    let metrics = Arc::new(Metrics::new());
    let checker = support::engine::checker(&[pki.ca_pem()], &[]);
    for mode in [Mode::Enforce, Mode::Audit] {
        let webhook = Webhook::new(
            checker.clone(),
            writers.state(false),
            WebhookConfig {
                mode,
                ..WebhookConfig::default()
            },
            metrics.clone(),
        );
        let router = pullgate::server::router(Arc::new(webhook));
        let images = [
            format!("{th}/team/app:1.0"),
            format!("{bh}/team/app:1.0"),
            format!("{th}/team/app:nope"),
            format!("{bh}/team/other:1"),
        ];
        let images: Vec<&str> = images.iter().map(String::as_str).collect();
        for ns in ["good", "bad"] {
            let request = Request::post("/validate?timeout=10s")
                .header("content-type", "application/json")
                .body(Body::from(review(ns, &images).to_string()))
                .expect("request");
            let response = router.clone().oneshot(request).await.expect("response");
            let body = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            let text = String::from_utf8_lossy(&body).to_string();
            assert!(text.contains("\"uid\""), "{text}");
            assert_clean(&format!("the {mode:?} answer in namespace {ns}"), &text);
        }
    }
    assert_clean("the metrics", &metrics.encode());

    // The CLI, at the most verbose log level, with a wrong and a right secret.
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong = dir.path().join("wrong.json");
    std::fs::write(
        &wrong,
        docker_config_json(&[
            (&th, TOKEN_USER, WRONG_PASSWORD),
            (&bh, BASIC_USER, WRONG_PASSWORD),
        ]),
    )
    .expect("write");
    let right = dir.path().join("right.json");
    std::fs::write(
        &right,
        docker_config_json(&[
            (&th, TOKEN_USER, TOKEN_PASSWORD),
            (&bh, BASIC_USER, BASIC_PASSWORD),
        ]),
    )
    .expect("write");
    let ca = pki.ca_pem().display().to_string();
    for secret_file in [&wrong, &right] {
        let args = vec![
            "--log-level".to_string(),
            "trace".into(),
            "check".into(),
            "--registry-ca".into(),
            ca.clone(),
            "--pull-secret".into(),
            secret_file.display().to_string(),
            "--image".into(),
            format!("{th}/team/app:1.0"),
            "--image".into(),
            format!("{bh}/team/app:1.0"),
            "-o".into(),
            "json".into(),
        ];
        let out = tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_pullgate"))
                .args(&args)
                .output()
                .expect("run")
        })
        .await
        .expect("join");
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            stderr.contains("TRACE") || stderr.contains("DEBUG"),
            "the CLI logged at the verbose levels: {stderr}"
        );
        assert_clean(
            "pullgate check's output",
            &String::from_utf8_lossy(&out.stdout),
        );
        assert_clean("pullgate check's log", &stderr);
    }

    // A bad secret file is named, not quoted.
    let broken = dir.path().join("broken.json");
    std::fs::write(
        &broken,
        format!(r#"{{"auths":{{"{bh}":{{"auth":"{WRONG_PASSWORD}"}}}}}}"#),
    )
    .expect("write");
    let args = vec![
        "check".to_string(),
        "--image".into(),
        "nginx".into(),
        "--pull-secret".into(),
        broken.display().to_string(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_pullgate"))
            .args(&args)
            .output()
            .expect("run")
    })
    .await
    .expect("join");
    assert_eq!(out.status.code(), Some(2));
    assert_clean(
        "the error for a broken pull secret",
        &String::from_utf8_lossy(&out.stderr),
    );

    let captured = String::from_utf8_lossy(&logs.lock().expect("logs")).to_string();
    assert!(
        captured.contains("review"),
        "the webhook logged its reviews"
    );
    assert!(
        captured.contains("TRACE"),
        "the libraries logged at TRACE too"
    );
    assert_clean("the webhook's log", &captured);
}
