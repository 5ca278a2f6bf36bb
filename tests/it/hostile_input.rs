//! Hostile and malformed admission requests: each is answered with a reason, in bounded
//! time and memory, and the server keeps serving.

use crate::support;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use pullgate::cluster::ClusterWriters;
use pullgate::metrics::Metrics;
use pullgate::webhook::{Webhook, WebhookConfig};
use serde_json::{Value, json};
use support::engine::checker;
use support::{PushAuth, Registry, RegistryOpts, push_oci_manifest, tag_existing};
use tower::ServiceExt as _;

fn router(insecure: &[String]) -> axum::Router {
    let webhook = Webhook::new(
        checker(&[], insecure),
        ClusterWriters::new().state(false),
        WebhookConfig::default(),
        Arc::new(Metrics::new()),
    );
    pullgate::server::router(Arc::new(webhook))
}

fn pod_review(containers: Vec<Value>) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "hostile",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "default",
            "operation": "CREATE",
            "object": {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}},
            "oldObject": null
        }
    })
}

async fn post(router: &axum::Router, body: impl Into<Body>) -> (StatusCode, Vec<u8>) {
    let request = Request::post("/validate?timeout=10s")
        .header("content-type", "application/json")
        .body(body.into())
        .expect("request");
    let response = router.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, bytes.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_with_ten_thousand_containers_is_answered_in_bounded_time() {
    support::init();
    let registry = Registry::start(RegistryOpts::plain()).await;
    let t = registry.push_target(PushAuth::None);
    push_oci_manifest(&t, "team/app", "0").await;
    for i in 1..20 {
        tag_existing(&t, "team/app", "0", &i.to_string()).await;
    }
    let host = registry.host().to_string();
    // 10,000 containers over 25 distinct tags (20 exist): the checker probes each once.
    let containers: Vec<Value> = (0..10_000)
        .map(|i| json!({"name": format!("c{i}"), "image": format!("{host}/team/app:{}", i % 25)}))
        .collect();
    let body = pod_review(containers).to_string();
    let r = router(&[host]);
    let started = Instant::now();
    let (status, bytes) = post(&r, body).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::OK);
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let answer: Value = serde_json::from_slice(&bytes).expect("JSON");
    assert_eq!(answer["response"]["allowed"], false);
    let message = answer["response"]["status"]["message"]
        .as_str()
        .expect("message");
    assert!(
        message.contains("tag \"20\" not found"),
        "{}",
        &message[..200.min(message.len())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_mebibyte_image_string_is_invalid_and_not_echoed_back() {
    support::init();
    let r = router(&[]);
    let image = format!("registry.example.com/{}", "a".repeat(1024 * 1024));
    let (status, bytes) = post(
        &r,
        pod_review(vec![json!({"name": "big", "image": image})]).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        bytes.len() < 4096,
        "answer of {} bytes echoes the input",
        bytes.len()
    );
    let answer: Value = serde_json::from_slice(&bytes).expect("JSON");
    assert_eq!(answer["response"]["allowed"], false);
    assert!(
        answer["response"]["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("invalid image reference"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_json_is_refused_without_a_stack_overflow() {
    support::init();
    let r = router(&[]);
    let depth = 100_000;
    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let (status, bytes) = post(&r, nested).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        String::from_utf8_lossy(&bytes).contains("not an AdmissionReview"),
        "{}",
        String::from_utf8_lossy(&bytes)
    );

    // Nested inside an otherwise valid review.
    let mut review = pod_review(vec![json!({"name": "c", "image": "nginx"})]).to_string();
    let deep = format!("{}1{}", "{\"a\":".repeat(5000), "}".repeat(5000));
    review = review.replacen("\"oldObject\":null", &format!("\"oldObject\":{deep}"), 1);
    let (status, _) = post(&r, review).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_refused_with_a_reason() {
    support::init();
    let r = router(&[]);
    let mut body = pod_review(vec![json!({"name": "c", "image": "nginx"})])
        .to_string()
        .into_bytes();
    let at = body.iter().position(|b| *b == b'n').expect("a letter");
    body[at] = 0xff;
    let (status, bytes) = post(&r, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!bytes.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_refused_and_the_server_keeps_serving() {
    support::init();
    let r = router(&[]);
    let (status, _) = post(&r, vec![b' '; pullgate::server::BODY_LIMIT + 1]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // An UPDATE review close to the limit (object + oldObject) is still accepted.
    let filler = "x".repeat(3 * 1024 * 1024);
    let mut review = pod_review(vec![json!({"name": "c", "image": "Bad:Ref"})]);
    review["request"]["object"]["metadata"]["annotations"] = json!({"big": filler});
    let (status, _) = post(&r, review.to_string()).await;
    assert_eq!(status, StatusCode::OK);
}
