//! `pullgate audit` against a Kubernetes API served to the test (plain HTTP on 127.0.0.1,
//! list endpoints with pagination and field selectors, as kube-apiserver answers them) and
//! real registries.

use crate::support;
use std::process::Output;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::response::IntoResponse;
use base64::Engine as _;
use serde_json::{Value, json};
use support::engine::docker_config_json;
use support::{
    FaultProxy, PushAuth, Registry, RegistryAuth, RegistryOpts, TestPki, push_oci_manifest,
};

/// Objects by resource plural (`pods`, `deployments`, …).
#[derive(Clone, Default)]
pub(crate) struct FakeApi {
    objects: Arc<Mutex<Vec<(String, Value)>>>,
    list_calls: Arc<Mutex<Vec<String>>>,
}

impl FakeApi {
    pub(crate) fn add(&self, resource: &str, object: Value) {
        self.objects
            .lock()
            .expect("lock")
            .push((resource.to_string(), object));
    }
}

/// `GET /api/v1[/namespaces/NS]/RESOURCE` and `/apis/GROUP/VERSION[/namespaces/NS]/RESOURCE`.
async fn list(State(api): State<FakeApi>, request: Request) -> axum::response::Response {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    api.list_calls
        .lock()
        .expect("lock")
        .push(format!("{path}?{query}"));
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match parts.first() {
        Some(&"api") => &parts[2..],
        Some(&"apis") => &parts[3..],
        _ => return (axum::http::StatusCode::NOT_FOUND, "not found").into_response(),
    };
    let (namespace, resource) = match rest {
        ["namespaces", ns, resource] => (Some(ns.to_string()), resource.to_string()),
        [resource] => (None, resource.to_string()),
        _ => return (axum::http::StatusCode::NOT_FOUND, "not found").into_response(),
    };
    let params: Vec<(String, String)> = url_pairs(&query);
    let get = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let type_selector =
        get("fieldSelector").and_then(|f| f.strip_prefix("type=").map(str::to_string));
    let limit: usize = get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(usize::MAX);
    let offset: usize = get("continue").and_then(|c| c.parse().ok()).unwrap_or(0);

    let matching: Vec<Value> = api
        .objects
        .lock()
        .expect("lock")
        .iter()
        .filter(|(r, o)| {
            *r == resource
                && namespace
                    .as_deref()
                    .is_none_or(|ns| o["metadata"]["namespace"] == ns)
                && type_selector.as_deref().is_none_or(|t| o["type"] == t)
        })
        .map(|(_, o)| o.clone())
        .collect();
    let page: Vec<Value> = matching.iter().skip(offset).take(limit).cloned().collect();
    let next = offset + page.len();
    let mut metadata = json!({"resourceVersion": "100"});
    if next < matching.len() {
        metadata["continue"] = json!(next.to_string());
        metadata["remainingItemCount"] = json!(matching.len() - next);
    }
    axum::Json(json!({"apiVersion": "v1", "kind": "List", "metadata": metadata, "items": page}))
        .into_response()
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                v.replace("%3D", "=").replace("%2F", "/").replace('+', " "),
            )
        })
        .collect()
}

pub(crate) async fn serve(api: FakeApi) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let app = axum::Router::new().fallback(list).with_state(api);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, task)
}

pub(crate) fn meta(name: &str, namespace: &str) -> Value {
    json!({"name": name, "namespace": namespace, "uid": format!("uid-{name}")})
}

pub(crate) fn pod_spec(image: &str, secrets: &[&str], sa: Option<&str>) -> Value {
    let mut spec = json!({"containers": [{"name": "app", "image": image}]});
    if !secrets.is_empty() {
        spec["imagePullSecrets"] = json!(
            secrets
                .iter()
                .map(|s| json!({"name": s}))
                .collect::<Vec<_>>()
        );
    }
    if let Some(sa) = sa {
        spec["serviceAccountName"] = json!(sa);
    }
    spec
}

pub(crate) fn template(spec: Value) -> Value {
    json!({"metadata": {"labels": {"app": "x"}}, "spec": spec})
}

async fn pullgate(args: Vec<String>, kubeconfig: String) -> Output {
    support::cli::pullgate(args, vec![("KUBECONFIG".to_string(), kubeconfig)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lists_what_would_not_pull_with_the_webhooks_credential_rules() {
    support::init();
    let pki = TestPki::new();
    let public = Registry::start(RegistryOpts::tls(&pki)).await;
    let private = Registry::start(
        RegistryOpts::tls(&pki).with_auth(RegistryAuth::htpasswd(&[("ops", "ops-pw")])),
    )
    .await;
    push_oci_manifest(&public.push_target(PushAuth::None), "team/web", "1.0").await;
    push_oci_manifest(
        &private.push_target(PushAuth::basic("ops", "ops-pw")),
        "team/api",
        "2.0",
    )
    .await;
    let (web, api_image) = (
        format!("{}/team/web:1.0", public.host()),
        format!("{}/team/api:2.0", private.host()),
    );
    let gone = format!("{}/team/web:0.9", public.host());

    let api = FakeApi::default();
    let config = docker_config_json(&[(private.host(), "ops", "ops-pw")]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(config);
    api.add("secrets", json!({"metadata": meta("regcred", "prod"), "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": b64}}));
    api.add(
        "secrets",
        json!({"metadata": meta("opaque", "prod"), "type": "Opaque", "data": {}}),
    );
    api.add(
        "serviceaccounts",
        json!({"metadata": meta("builder", "prod"), "imagePullSecrets": [{"name": "regcred"}]}),
    );
    api.add(
        "serviceaccounts",
        json!({"metadata": meta("default", "prod")}),
    );
    api.add("deployments", json!({"metadata": meta("web", "prod"), "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": template(pod_spec(&web, &[], None))}}));
    api.add(
        "pods",
        json!({"metadata": meta("stale", "prod"), "spec": pod_spec(&gone, &[], None)}),
    );
    let mut owned = meta("web-abc-1", "prod");
    owned["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc", "uid": "u", "controller": true}]);
    api.add(
        "pods",
        json!({"metadata": owned, "spec": pod_spec(&gone, &[], None)}),
    );
    api.add("cronjobs", json!({"metadata": meta("nightly", "prod"), "spec": {"schedule": "0 0 * * *", "jobTemplate": {"spec": {"template": template(pod_spec(&api_image, &["regcred"], None))}}}}));
    api.add("statefulsets", json!({"metadata": meta("db", "prod"), "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "x"}}, "template": template(pod_spec(&api_image, &[], None))}}));
    api.add("daemonsets", json!({"metadata": meta("agent", "prod"), "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": template(pod_spec(&api_image, &[], Some("builder")))}}));
    api.add("deployments", json!({"metadata": meta("elsewhere", "staging"), "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": template(pod_spec(&gone, &[], None))}}));
    let (url, _server) = serve(api.clone()).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {url}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\ncurrent-context: test\nusers:\n- name: test\n  user:\n    token: not-a-real-token\n"
        ),
    )
    .expect("kubeconfig");
    let kubeconfig = kubeconfig.display().to_string();
    let ca = pki.ca_pem().display().to_string();

    let out = pullgate(
        ["audit", "-n", "prod", "--registry-ca", &ca, "-o", "json"]
            .map(String::from)
            .to_vec(),
        kubeconfig.clone(),
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let rows: Vec<Value> =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let got: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (s("kind"), s("name"), s("verdict"))
        })
        .collect();
    let expect = |k: &str, n: &str, v: &str| (k.to_string(), n.to_string(), v.to_string());
    assert_eq!(
        got,
        vec![
            expect("Pod", "stale", "not-found"),
            expect("Deployment", "web", "pullable"),
            expect("StatefulSet", "db", "unauthorized"),
            expect("DaemonSet", "agent", "pullable"),
            expect("CronJob", "nightly", "pullable"),
        ],
        "controller-owned pods are skipped; templates use their ServiceAccount's secrets"
    );
    assert!(rows.iter().all(|r| r["namespace"] == "prod"));
    assert!(
        rows[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("did you mean \"1.0\""))
    );
    let calls = api.list_calls.lock().expect("lock").clone();
    assert!(
        calls.iter().any(|c| c.contains("fieldSelector=type")),
        "pull secrets are listed by type: {calls:?}"
    );
    assert!(
        calls.iter().all(|c| c.contains("/namespaces/prod/")),
        "only the named namespace: {calls:?}"
    );

    // The table, over all namespaces.
    let out = pullgate(
        ["audit", "--registry-ca", &ca].map(String::from).to_vec(),
        kubeconfig,
    )
    .await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    let header = table.lines().next().unwrap_or_default();
    for column in [
        "NAMESPACE",
        "KIND",
        "NAME",
        "CONTAINER",
        "IMAGE",
        "VERDICT",
        "MESSAGE",
    ] {
        assert!(header.contains(column), "{header}");
    }
    assert!(
        table.contains("staging") && table.contains("elsewhere"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("6 images:")),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_without_a_cluster_exits_two_with_a_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-kubeconfig").display().to_string();
    let out = pullgate(vec!["audit".into()], missing).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no cluster"));
}

/// A kubeconfig in `dir` for the API served at `url`.
pub(crate) fn kubeconfig(dir: &std::path::Path, url: &str) -> String {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {url}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\ncurrent-context: test\nusers:\n- name: test\n  user:\n    token: not-a-real-token\n"
        ),
    )
    .expect("kubeconfig");
    path.display().to_string()
}

/// Two namespaces: `b` with a Pod whose tag is gone and a pullable Deployment, `a` with a
/// pullable Deployment and one on a registry that refuses connections.
pub(crate) async fn two_namespaces(registry: &Registry) -> FakeApi {
    let web = format!("{}/team/web:1.0", registry.host());
    let gone = format!("{}/team/web:0.9", registry.host());
    let down = format!(
        "127.0.0.1:{}/team/web:1.0",
        support::free_port(support::LOCALHOST)
    );
    let deployment = |name: &str, ns: &str, image: &str| json!({"metadata": meta(name, ns), "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": template(pod_spec(image, &[], None))}});
    let api = FakeApi::default();
    api.add(
        "pods",
        json!({"metadata": meta("gone", "b"), "spec": pod_spec(&gone, &[], None)}),
    );
    api.add("deployments", deployment("ok", "b", &web));
    api.add("deployments", deployment("ok2", "a", &web));
    api.add("deployments", deployment("down", "a", &down));
    api
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_table_lists_what_would_not_pull_by_namespace_and_fail_on_sets_the_exit_status() {
    support::init();
    let pki = TestPki::new();
    let registry = Registry::start(RegistryOpts::tls(&pki)).await;
    push_oci_manifest(&registry.push_target(PushAuth::None), "team/web", "1.0").await;
    let (url, _server) = serve(two_namespaces(&registry).await).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = kubeconfig(dir.path(), &url);
    let ca = pki.ca_pem().display().to_string();
    let audit = |extra: &[&str]| {
        let mut argv: Vec<String> = ["audit", "--registry-ca", &ca, "--timeout", "10"]
            .map(String::from)
            .to_vec();
        argv.extend(extra.iter().map(|s| s.to_string()));
        pullgate(argv, kubeconfig.clone())
    };
    let rows = |o: &Output| -> Vec<String> {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .collect()
    };

    let out = audit(&[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        rows(&out),
        ["b Pod gone", "", "a Deployment down", "4 images: 2",],
        "failures only, a blank line between namespaces"
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.lines().last().is_some_and(|l| l
            == "4 images: 2 pullable, 1 not-found, 1 registry-unavailable; 2 pullable or exempt not shown (--all lists every image)"),
        "{table}"
    );

    let out = audit(&["--all"]).await;
    assert_eq!(
        rows(&out),
        [
            "b Pod gone",
            "b Deployment ok",
            "",
            "a Deployment ok2",
            "a Deployment down",
            "4 images: 2",
        ]
    );

    let out = audit(&["-o", "json"]).await;
    let all: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(all.len(), 4, "JSON holds every finding");

    // Exit status by --fail-on: namespace a has registry trouble only, b a deleted tag.
    for (extra, code) in [
        (&["-n", "a"][..], 3),
        (&["-n", "a", "--fail-on", "definitive"][..], 0),
        (&["-n", "b", "--fail-on", "definitive"][..], 1),
        (&["-n", "b", "--fail-on", "none"][..], 0),
        (&["--fail-on", "any"][..], 1),
    ] {
        let out = audit(extra).await;
        assert_eq!(
            out.status.code(),
            Some(code),
            "{extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = audit(&["--fail-on", "sometimes"]).await;
    assert_eq!(out.status.code(), Some(2), "a bad choice is bad usage");
}

/// More workloads than one list page holds (500), over few images: every page is read
/// (the `continue` token followed to the end), every workload reported, and each unique
/// image probed once, however many workloads name it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_follows_every_page_and_probes_each_unique_image_once() {
    support::init();
    let registry = Registry::start(RegistryOpts::plain()).await;
    let target = registry.push_target(PushAuth::None);
    push_oci_manifest(&target, "team/web", "1.0").await;
    push_oci_manifest(&target, "team/api", "2.0").await;
    let proxy = FaultProxy::for_registry(&registry).await;
    let images = [
        format!("{}/team/web:1.0", proxy.host()),
        format!("{}/team/api:2.0", proxy.host()),
        format!("{}/team/web:0.9", proxy.host()),
    ];
    const DEPLOYMENTS: usize = 1201;
    let api = FakeApi::default();
    for i in 0..DEPLOYMENTS {
        let ns = format!("ns-{}", i % 7);
        api.add("deployments", json!({"metadata": meta(&format!("d{i}"), &ns), "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": template(pod_spec(&images[i % 3], &[], None))}}));
    }
    api.add(
        "pods",
        json!({"metadata": meta("bare", "ns-0"), "spec": pod_spec(&images[0], &[], None)}),
    );
    let (url, _server) = serve(api.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = kubeconfig(dir.path(), &url);
    proxy.reset_counters();

    let out = pullgate(
        ["audit", "--insecure-registry", &proxy.host(), "-o", "json"]
            .map(String::from)
            .to_vec(),
        kubeconfig,
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let rows: Vec<Value> =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(rows.len(), DEPLOYMENTS + 1, "every workload of every page");
    let count = |verdict: &str| rows.iter().filter(|r| r["verdict"] == verdict).count();
    assert_eq!(count("not-found"), DEPLOYMENTS / 3);
    assert_eq!(count("pullable"), DEPLOYMENTS + 1 - DEPLOYMENTS / 3);
    let names: std::collections::HashSet<&str> =
        rows.iter().filter_map(|r| r["name"].as_str()).collect();
    assert!(names.contains("d0") && names.contains("d1200") && names.contains("bare"));

    let calls = api.list_calls.lock().expect("lock").clone();
    let pages: Vec<&String> = calls
        .iter()
        .filter(|c| c.contains("/deployments?"))
        .collect();
    assert_eq!(pages.len(), 3, "500 + 500 + 201: {pages:?}");
    assert!(pages[1].contains("continue=500") && pages[2].contains("continue=1000"));

    for image in [
        "team/web/manifests/1.0",
        "team/api/manifests/2.0",
        "team/web/manifests/0.9",
    ] {
        let path = format!("/v2/{image}");
        let probes = proxy.requests().iter().filter(|r| r.path == path).count();
        assert_eq!(probes, 1, "{path} asked once: {:?}", proxy.requests());
    }
}
