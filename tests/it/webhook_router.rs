//! The webhook in-process (`tower::ServiceExt::oneshot`), with cluster stores filled by the
//! test and real registries behind it: every kind, every mode, the credential rules.

use crate::support;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{LocalObjectReference, Namespace, Secret, ServiceAccount};
use kube::api::ObjectMeta;
use pullgate::cluster::ClusterWriters;
use pullgate::metrics::Metrics;
use pullgate::platform::Platform;
use pullgate::policy::{Exemptions, Mode, OnRegistryError};
use pullgate::webhook::{Webhook, WebhookConfig};
use rstest::rstest;
use serde_json::{Value, json};
use support::engine::{checker, docker_config_json};
use support::{
    Fault, FaultProxy, PushAuth, Registry, RegistryAuth, RegistryOpts, TestPki, push_oci_index,
    push_oci_manifest,
};
use tower::ServiceExt as _;

/// A public registry (anonymous) and a private one (htpasswd), behind fault proxies so the
/// tests can count requests and inject outages.
struct Env {
    _pki: TestPki,
    _public: Registry,
    _private: Registry,
    public: FaultProxy,
    private: FaultProxy,
}

impl Env {
    async fn start() -> Self {
        support::init();
        let pki = TestPki::new();
        let public_registry = Registry::start(RegistryOpts::tls(&pki)).await;
        let private_registry = Registry::start(
            RegistryOpts::tls(&pki).with_auth(RegistryAuth::htpasswd(&[("team", "team-pw")])),
        )
        .await;
        let t = public_registry.push_target(PushAuth::None);
        push_oci_manifest(&t, "team/web", "1.0").await;
        push_oci_index(&t, "team/arm", "1.0", &[("linux", "arm64", None)], false).await;
        let p = private_registry.push_target(PushAuth::basic("team", "team-pw"));
        push_oci_manifest(&p, "team/api", "2.0").await;
        let public = FaultProxy::for_registry(&public_registry).await;
        let private = FaultProxy::for_registry(&private_registry).await;
        Self {
            _pki: pki,
            _public: public_registry,
            _private: private_registry,
            public,
            private,
        }
    }

    fn web(&self) -> String {
        format!("{}/team/web:1.0", self.public.host())
    }

    fn typo(&self) -> String {
        format!("{}/team/web:1.1", self.public.host())
    }

    fn api(&self) -> String {
        format!("{}/team/api:2.0", self.private.host())
    }

    fn regcred(&self, user: &str, password: &str, namespace: &str) -> Secret {
        let json = docker_config_json(&[(&self.private.host(), user, password)]);
        Secret {
            metadata: meta("regcred", Some(namespace)),
            type_: Some("kubernetes.io/dockerconfigjson".into()),
            data: Some(BTreeMap::from([(
                ".dockerconfigjson".to_string(),
                ByteString(json.into_bytes()),
            )])),
            ..Default::default()
        }
    }

    fn webhook(&self, writers: &ClusterWriters, config: WebhookConfig) -> axum::Router {
        let c = checker(&[], &[self.public.host(), self.private.host()]);
        let webhook = Webhook::new(c, writers.state(false), config, Arc::new(Metrics::new()));
        pullgate::server::router(Arc::new(webhook))
    }
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(str::to_string),
        ..Default::default()
    }
}

fn config(mode: Mode) -> WebhookConfig {
    WebhookConfig {
        mode,
        ..WebhookConfig::default()
    }
}

fn pod_spec(images: &[(&str, &str)], secrets: &[&str]) -> Value {
    let containers: Vec<Value> = images
        .iter()
        .map(|(name, image)| json!({"name": name, "image": image}))
        .collect();
    let mut spec = json!({ "containers": containers });
    if !secrets.is_empty() {
        spec["imagePullSecrets"] = json!(
            secrets
                .iter()
                .map(|s| json!({"name": s}))
                .collect::<Vec<_>>()
        );
    }
    spec
}

/// An object of `kind` whose pod spec is `spec`, in `namespace`.
fn object(kind: &str, namespace: &str, spec: Value) -> Value {
    let template = json!({"metadata": {"labels": {"app": "x"}}, "spec": spec});
    let body = match kind {
        "Pod" => {
            return json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": namespace}, "spec": spec});
        }
        "PodTemplate" => {
            return json!({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t", "namespace": namespace}, "template": template});
        }
        "CronJob" => {
            json!({"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}})
        }
        _ => json!({"selector": {"matchLabels": {"app": "x"}}, "template": template}),
    };
    json!({"kind": kind, "metadata": {"name": "w", "namespace": namespace}, "spec": body})
}

fn review(
    kind: &str,
    namespace: &str,
    operation: &str,
    object: Value,
    old: Option<Value>,
) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("uid-{kind}-{operation}"),
            "kind": {"group": "", "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": "x"},
            "namespace": namespace,
            "name": "w",
            "operation": operation,
            "userInfo": {"username": "tester"},
            "object": object,
            "oldObject": old,
            "dryRun": false
        }
    })
}

async fn send(router: &axum::Router, body: &Value) -> Value {
    let request = Request::post("/validate?timeout=10s")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let response = router.clone().oneshot(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let answer: Value = serde_json::from_slice(&bytes).expect("JSON answer");
    assert_eq!(
        answer["response"]["uid"], body["request"]["uid"],
        "the uid is echoed"
    );
    answer["response"].clone()
}

fn allowed(r: &Value) -> bool {
    r["allowed"].as_bool().expect("allowed is a bool")
}

fn message(r: &Value) -> String {
    r["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn warnings(r: &Value) -> Vec<String> {
    r["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[rstest]
#[case::pod("Pod")]
#[case::deployment("Deployment")]
#[case::replica_set("ReplicaSet")]
#[case::stateful_set("StatefulSet")]
#[case::daemon_set("DaemonSet")]
#[case::job("Job")]
#[case::cron_job("CronJob")]
#[case::replication_controller("ReplicationController")]
#[case::pod_template("PodTemplate")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_is_denied_for_a_missing_tag_and_allowed_when_it_exists(#[case] kind: &str) {
    let env = Env::start().await;
    let router = env.webhook(&ClusterWriters::new(), config(Mode::Enforce));
    let good = send(
        &router,
        &review(
            kind,
            "default",
            "CREATE",
            object(kind, "default", pod_spec(&[("app", &env.web())], &[])),
            None,
        ),
    )
    .await;
    assert!(allowed(&good), "{good}");
    let bad = send(
        &router,
        &review(
            kind,
            "default",
            "CREATE",
            object(kind, "default", pod_spec(&[("app", &env.typo())], &[])),
            None,
        ),
    )
    .await;
    assert!(!allowed(&bad), "{bad}");
    assert_eq!(bad["status"]["code"], 403);
    assert_eq!(
        message(&bad),
        format!(
            "container \"app\" image \"{}\": tag \"1.1\" not found in {}/team/web (did you mean \"1.0\"?)",
            env.typo(),
            env.public.host()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_with_a_typo_tag_is_denied_in_enforce_and_warned_in_audit() {
    let env = Env::start().await;
    let body = review(
        "Deployment",
        "default",
        "CREATE",
        object(
            "Deployment",
            "default",
            pod_spec(&[("web", &env.typo())], &[]),
        ),
        None,
    );

    let enforce = send(
        &env.webhook(&ClusterWriters::new(), config(Mode::Enforce)),
        &body,
    )
    .await;
    assert!(!allowed(&enforce));

    let audit = send(
        &env.webhook(&ClusterWriters::new(), config(Mode::Audit)),
        &body,
    )
    .await;
    assert!(allowed(&audit), "{audit}");
    let w = warnings(&audit);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("container \"web\"") && w[0].contains("not-found"),
        "{w:?}"
    );
    assert!(w[0].chars().count() <= 120);
    let annotation: Value = serde_json::from_str(
        audit["auditAnnotations"]["findings"]
            .as_str()
            .expect("annotation"),
    )
    .expect("JSON");
    assert_eq!(annotation[0]["verdict"], "not-found");

    // The namespace label overrides the default mode, both ways.
    let mut writers = ClusterWriters::new();
    writers.add_namespace(labelled("relaxed", "audit"));
    writers.add_namespace(labelled("strict", "enforce"));
    writers.add_namespace(labelled("ignored", "off"));
    let router = env.webhook(&writers, config(Mode::Enforce));
    let in_ns = |ns: &str| {
        review(
            "Deployment",
            ns,
            "CREATE",
            object("Deployment", ns, pod_spec(&[("web", &env.typo())], &[])),
            None,
        )
    };
    assert!(allowed(&send(&router, &in_ns("relaxed")).await));
    assert!(!allowed(&send(&router, &in_ns("default")).await));
    let off = send(&router, &in_ns("ignored")).await;
    assert!(allowed(&off) && warnings(&off).is_empty());
    let router = env.webhook(&writers, config(Mode::Audit));
    assert!(!allowed(&send(&router, &in_ns("strict")).await));
}

fn labelled(name: &str, mode: &str) -> Namespace {
    let mut m = meta(name, None);
    m.labels = Some(BTreeMap::from([(
        "pullgate.dev/mode".to_string(),
        mode.to_string(),
    )]));
    Namespace {
        metadata: m,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_whose_service_account_holds_the_only_valid_secret_is_allowed() {
    let env = Env::start().await;
    let mut writers = ClusterWriters::new();
    writers.add_secret(env.regcred("team", "team-pw", "apps"));
    writers.add_service_account(ServiceAccount {
        metadata: meta("builder", Some("apps")),
        image_pull_secrets: Some(vec![LocalObjectReference {
            name: "regcred".into(),
        }]),
        ..Default::default()
    });
    let router = env.webhook(&writers, config(Mode::Enforce));
    let mut spec = pod_spec(&[("api", &env.api())], &[]);
    spec["serviceAccountName"] = json!("builder");
    let with_sa = send(
        &router,
        &review(
            "Deployment",
            "apps",
            "CREATE",
            object("Deployment", "apps", spec),
            None,
        ),
    )
    .await;
    assert!(allowed(&with_sa), "{with_sa}");

    // The default ServiceAccount has no secret: the same template is refused.
    let without = send(
        &router,
        &review(
            "Deployment",
            "apps",
            "CREATE",
            object("Deployment", "apps", pod_spec(&[("api", &env.api())], &[])),
            None,
        ),
    )
    .await;
    assert!(!allowed(&without));
    assert!(
        message(&without).contains("add an imagePullSecret"),
        "{}",
        message(&without)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_image_in_two_namespaces_with_different_secrets_gets_two_answers() {
    let env = Env::start().await;
    let mut writers = ClusterWriters::new();
    writers.add_secret(env.regcred("team", "team-pw", "alpha"));
    writers.add_secret(env.regcred("team", "stolen-guess", "beta"));
    let router = env.webhook(&writers, config(Mode::Enforce));
    let pod = |ns: &str| {
        review(
            "Pod",
            ns,
            "CREATE",
            object("Pod", ns, pod_spec(&[("api", &env.api())], &["regcred"])),
            None,
        )
    };
    let alpha = send(&router, &pod("alpha")).await;
    let beta = send(&router, &pod("beta")).await;
    assert!(allowed(&alpha), "{alpha}");
    assert!(!allowed(&beta), "{beta}");
    assert!(
        message(&beta).contains("secret regcred"),
        "{}",
        message(&beta)
    );
    // And again, now that alpha's verdict is cached.
    assert!(!allowed(&send(&router, &pod("beta")).await));
    assert!(allowed(&send(&router, &pod("alpha")).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_pull_secret_is_named_in_the_message() {
    let env = Env::start().await;
    let router = env.webhook(&ClusterWriters::new(), config(Mode::Enforce));
    let r = send(
        &router,
        &review(
            "Pod",
            "default",
            "CREATE",
            object(
                "Pod",
                "default",
                pod_spec(&[("api", &env.api())], &["regcred"]),
            ),
            None,
        ),
    )
    .await;
    assert!(!allowed(&r));
    assert!(
        message(&r).contains("imagePullSecret \"regcred\" does not exist"),
        "{}",
        message(&r)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_only_update_is_allowed_without_asking_the_registry() {
    let env = Env::start().await;
    let router = env.webhook(&ClusterWriters::new(), config(Mode::Enforce));
    let old = object("Pod", "default", pod_spec(&[("app", &env.typo())], &[]));
    let mut new = old.clone();
    new["metadata"]["labels"] = json!({"tier": "backend"});
    let r = send(&router, &review("Pod", "default", "UPDATE", new, Some(old))).await;
    assert!(allowed(&r), "{r}");
    assert_eq!(env.public.total_requests(), 0);

    // A changed image on UPDATE is checked.
    let old = object(
        "Deployment",
        "default",
        pod_spec(&[("app", &env.web())], &[]),
    );
    let new = object(
        "Deployment",
        "default",
        pod_spec(&[("app", &env.typo())], &[]),
    );
    assert!(!allowed(
        &send(
            &router,
            &review("Deployment", "default", "UPDATE", new, Some(old))
        )
        .await
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_container_with_a_missing_image_is_denied() {
    let env = Env::start().await;
    let router = env.webhook(&ClusterWriters::new(), config(Mode::Enforce));
    let old = object("Pod", "default", pod_spec(&[("app", &env.web())], &[]));
    let mut new = old.clone();
    new["spec"]["ephemeralContainers"] =
        json!([{"name": "debugger", "image": format!("{}/team/debug:1.0", env.public.host())}]);
    let mut body = review("Pod", "default", "UPDATE", new, Some(old));
    body["request"]["subResource"] = json!("ephemeralcontainers");
    let r = send(&router, &body).await;
    assert!(!allowed(&r));
    assert!(
        message(&r).starts_with("container \"debugger\""),
        "{}",
        message(&r)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_outage_is_allowed_with_a_warning_unless_told_to_deny() {
    let env = Env::start().await;
    env.public.set_fault_for("/v2/", Fault::status(503));
    let body = review(
        "Pod",
        "default",
        "CREATE",
        object("Pod", "default", pod_spec(&[("app", &env.web())], &[])),
        None,
    );
    let r = send(
        &env.webhook(&ClusterWriters::new(), config(Mode::Enforce)),
        &body,
    )
    .await;
    assert!(allowed(&r), "{r}");
    let w = warnings(&r);
    assert!(
        w.len() == 1 && w[0].contains("registry-unavailable"),
        "{w:?}"
    );

    let deny = WebhookConfig {
        on_registry_error: OnRegistryError::Deny,
        ..config(Mode::Enforce)
    };
    let r = send(&env.webhook(&ClusterWriters::new(), deny), &body).await;
    assert!(!allowed(&r));
    assert!(message(&r).contains("503"), "{}", message(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_reviews_get_the_same_verdict() {
    let env = Env::start().await;
    let router = env.webhook(&ClusterWriters::new(), config(Mode::Enforce));
    let mut body = review(
        "Pod",
        "default",
        "CREATE",
        object("Pod", "default", pod_spec(&[("app", &env.typo())], &[])),
        None,
    );
    body["request"]["dryRun"] = json!(true);
    assert!(!allowed(&send(&router, &body).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exemptions_skip_namespaces_images_and_never_pulled_containers() {
    let env = Env::start().await;
    let exemptions = Exemptions {
        namespaces: vec!["kube-system".into()],
        images: vec![format!("{}/team/*", env.public.host())],
    };
    let router = env.webhook(
        &ClusterWriters::new(),
        WebhookConfig {
            exemptions,
            ..config(Mode::Enforce)
        },
    );
    let typo = env.typo();
    let in_ns = |ns: &str, spec: Value| review("Pod", ns, "CREATE", object("Pod", ns, spec), None);
    assert!(allowed(
        &send(
            &router,
            &in_ns("kube-system", pod_spec(&[("app", "Invalid:Ref")], &[]))
        )
        .await
    ));
    assert!(allowed(
        &send(&router, &in_ns("default", pod_spec(&[("app", &typo)], &[]))).await
    ));
    let mut never = pod_spec(&[("app", "r.invalid/app:1")], &[]);
    never["containers"][0]["imagePullPolicy"] = json!("Never");
    assert!(allowed(&send(&router, &in_ns("default", never)).await));
    assert_eq!(env.public.total_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinds_and_operations_it_does_not_handle_are_allowed_untouched() {
    let env = Env::start().await;
    let router = env.webhook(&ClusterWriters::new(), config(Mode::Enforce));
    let cm =
        json!({"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"image": "Not A Ref"}});
    let r = send(&router, &review("ConfigMap", "default", "CREATE", cm, None)).await;
    assert!(allowed(&r) && warnings(&r).is_empty());
    let old = object("Pod", "default", pod_spec(&[("app", &env.typo())], &[]));
    let r = send(
        &router,
        &review("Pod", "default", "DELETE", Value::Null, Some(old)),
    )
    .await;
    assert!(allowed(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_references_are_denied_without_a_network_request() {
    let env = Env::start().await;
    let router = env.webhook(&ClusterWriters::new(), config(Mode::Enforce));
    let image = format!("{}/Team/Web:1.0", env.public.host());
    let r = send(
        &router,
        &review(
            "Pod",
            "default",
            "CREATE",
            object("Pod", "default", pod_spec(&[("app", &image)], &[])),
            None,
        ),
    )
    .await;
    assert!(!allowed(&r));
    assert!(message(&r).contains("must be lowercase"), "{}", message(&r));
    assert_eq!(env.public.total_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_selector_narrows_the_platforms_an_image_must_have() {
    let env = Env::start().await;
    let both = WebhookConfig {
        platforms: vec![Platform::linux_amd64()],
        ..config(Mode::Enforce)
    };
    let router = env.webhook(&ClusterWriters::new(), both);
    let arm = format!("{}/team/arm:1.0", env.public.host());
    let plain = send(
        &router,
        &review(
            "Pod",
            "default",
            "CREATE",
            object("Pod", "default", pod_spec(&[("app", &arm)], &[])),
            None,
        ),
    )
    .await;
    assert!(!allowed(&plain));
    assert!(
        message(&plain).contains("linux/arm64"),
        "lists what the image has: {}",
        message(&plain)
    );
    let mut spec = pod_spec(&[("app", &arm)], &[]);
    spec["nodeSelector"] = json!({"kubernetes.io/arch": "arm64"});
    let pinned = send(
        &router,
        &review(
            "Pod",
            "default",
            "CREATE",
            object("Pod", "default", spec),
            None,
        ),
    )
    .await;
    assert!(allowed(&pinned), "{pinned}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_registry_is_answered_within_the_review_timeout() {
    let env = Env::start().await;
    env.public.set_fault_for("/manifests/", Fault::Hang);
    let router = env.webhook(&ClusterWriters::new(), config(Mode::Enforce));
    let body = review(
        "Pod",
        "default",
        "CREATE",
        object("Pod", "default", pod_spec(&[("app", &env.web())], &[])),
        None,
    );
    let request = Request::post("/validate?timeout=2s")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let started = Instant::now();
    let response = router.oneshot(request).await.expect("response");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let answer: Value = serde_json::from_slice(&bytes).expect("JSON");
    assert_eq!(answer["response"]["allowed"], true);
    assert!(warnings(&answer["response"])[0].contains("timeout"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_bodies_get_a_400_with_a_reason() {
    let env = Env::start().await;
    let router = env.webhook(&ClusterWriters::new(), config(Mode::Enforce));
    for body in [
        "",
        "not json",
        "{}",
        "[1,2]",
        r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
    ] {
        let request = Request::post("/validate")
            .body(Body::from(body))
            .expect("request");
        let response = router.clone().oneshot(request).await.expect("response");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body:?}");
        let text = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert!(
            String::from_utf8_lossy(&text).contains("not an AdmissionReview"),
            "{body:?}"
        );
    }
    // A readable uid with a broken request is answered as a review, refusing with a reason.
    let broken = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u-9", "kind": {"kind": "Pod"}, "operation": "CREATE", "object": {"spec": {"containers": "nope"}}}});
    let r = send(&router, &broken).await;
    assert!(!allowed(&r));
    assert_eq!(r["status"]["code"], 400);
}
