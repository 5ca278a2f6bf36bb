//! Section 6: `pullgate audit` of a large cluster. An in-bench Kubernetes API serves
//! [`WORKLOADS`] workloads over [`NAMESPACES`] namespaces in pages (`limit` / `continue`,
//! `metadata.remainingItemCount`, as kube-apiserver answers), their images ([`IMAGES`]
//! unique references) live on two real `docker-registry` processes (one anonymous, one
//! htpasswd with two users) behind counting [`FaultProxy`]s. The release binary is run
//! once; its wall time, peak RSS and the requests the proxies saw are the row.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use axum::extract::{Request, State};
use axum::response::IntoResponse;
use base64::Engine as _;
use futures::StreamExt as _;
use serde_json::{Value, json};

use crate::report::Row;
use crate::support::{
    self, FaultProxy, PushAuth, PushTarget, Registry, RegistryAuth, RegistryOpts, push_oci_manifest,
};

pub const WORKLOADS: usize = 50_000;
pub const NAMESPACES: usize = 2_000;
pub const IMAGES: usize = 5_000;
/// Images `0..PUBLIC` are on the anonymous registry, the rest on the private one.
pub const PUBLIC: usize = 4_000;
const PUBLIC_TAGS: usize = 16;
const PRIVATE_TAGS: usize = 10;
/// Every 50th image's tag is never pushed: `not-found`.
const MISSING_EVERY: usize = 50;
const USERS: [(&str, &str); 2] = [("team-a", "pw-a"), ("team-b", "pw-b")];
const WALL_TARGET: Duration = Duration::from_secs(60);
/// `pullgate audit --concurrency` default: workloads checked at once, so also the most
/// first-contact requests that can reach a registry before its challenge is known.
const AUDIT_CONCURRENCY: usize = 8;
const RSS_TARGET_MIB: f64 = 256.0;
/// The audit is killed past this.
const AUDIT_LIMIT: Duration = Duration::from_secs(600);
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The credentials a namespace's pods pull with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Creds {
    /// No `regcred` Secret in the namespace (pods name it anyway).
    Anonymous,
    User(usize),
}

fn creds(namespace: usize) -> Creds {
    if namespace % 10 == 9 {
        Creds::Anonymous
    } else {
        Creds::User(namespace % 2)
    }
}

/// Where image `j` lives: (private?, repository, tag, pushed?).
fn image(j: usize) -> (bool, String, String, bool) {
    let pushed = j % MISSING_EVERY != MISSING_EVERY - 1;
    if j < PUBLIC {
        (
            false,
            format!("public/app-{}", j / PUBLIC_TAGS),
            format!("v{}", j % PUBLIC_TAGS),
            pushed,
        )
    } else {
        let k = j - PUBLIC;
        (
            true,
            format!("private/svc-{}", k / PRIVATE_TAGS),
            format!("v{}", k % PRIVATE_TAGS),
            pushed,
        )
    }
}

/// Workload `i`: its namespace, kind (resource plural) and the images of its containers.
fn workload(i: usize) -> (usize, &'static str, Vec<usize>) {
    let namespace = i % NAMESPACES;
    let kind = match i % 20 {
        0..=11 => "deployments",
        12..=14 => "statefulsets",
        15 => "daemonsets",
        16 | 17 => "cronjobs",
        _ => "pods",
    };
    // Every image at least once, then spread.
    let main = if i < IMAGES {
        i
    } else {
        (i * 7919 + 13) % IMAGES
    };
    let mut images = vec![main];
    if i.is_multiple_of(4) {
        images.push((main * 31 + 7) % IMAGES);
    }
    (namespace, kind, images)
}

/// What the audit must report: unique (image, credentials) pairs and verdict counts.
struct Expected {
    pairs: usize,
    containers: usize,
    not_found: usize,
    unauthorized: usize,
    by_kind: BTreeMap<&'static str, usize>,
}

fn expected() -> Expected {
    let mut pairs = HashSet::new();
    let mut e = Expected {
        pairs: 0,
        containers: 0,
        not_found: 0,
        unauthorized: 0,
        by_kind: BTreeMap::new(),
    };
    for i in 0..WORKLOADS {
        let (ns, kind, images) = workload(i);
        *e.by_kind.entry(kind).or_default() += 1;
        for j in images {
            let (private, _, _, pushed) = image(j);
            let c = if private { creds(ns) } else { Creds::Anonymous };
            pairs.insert((j, c));
            e.containers += 1;
            if private && c == Creds::Anonymous {
                e.unauthorized += 1;
            } else if !pushed {
                e.not_found += 1;
            }
        }
    }
    e.pairs = pairs.len();
    e
}

// ---------------------------------------------------------------------------------------
// The Kubernetes API
// ---------------------------------------------------------------------------------------

/// Lists served by the fake API, and how it was asked.
pub struct FakeCluster {
    /// Image hosts: the anonymous and the private registry's proxies.
    hosts: [String; 2],
    /// Workload indices by resource plural, in list order.
    by_kind: BTreeMap<&'static str, Vec<usize>>,
    pub lists: AtomicUsize,
    pub pages: AtomicUsize,
    pub items: AtomicUsize,
}

impl FakeCluster {
    fn new(hosts: [String; 2]) -> Self {
        let mut by_kind: BTreeMap<&'static str, Vec<usize>> = BTreeMap::new();
        for i in 0..WORKLOADS {
            by_kind.entry(workload(i).1).or_default().push(i);
        }
        Self {
            hosts,
            by_kind,
            lists: AtomicUsize::new(0),
            pages: AtomicUsize::new(0),
            items: AtomicUsize::new(0),
        }
    }

    fn image_ref(&self, j: usize) -> String {
        let (private, repo, tag, _) = image(j);
        format!("{}/{repo}:{tag}", self.hosts[usize::from(private)])
    }

    /// Workload `i` as the apiserver returns it: with the bulk a real object carries
    /// (last-applied annotation, managed fields, env, probes, status), ~3 KB of JSON.
    fn object(&self, i: usize) -> Value {
        let (ns, kind, images) = workload(i);
        let name = format!("app-{i}");
        let containers: Vec<Value> = images
            .iter()
            .enumerate()
            .map(|(k, j)| {
                json!({
                    "name": if k == 0 { "app".to_string() } else { format!("sidecar-{k}") },
                    "image": self.image_ref(*j),
                    "imagePullPolicy": "IfNotPresent",
                    "ports": [{"containerPort": 8080, "protocol": "TCP", "name": "http"}],
                    "env": (0..8).map(|e| json!({"name": format!("SETTING_{e}"), "value": format!("value-{e}-{i}")})).collect::<Vec<_>>(),
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File"
                })
            })
            .collect();
        let pod_spec = json!({
            "containers": containers,
            "imagePullSecrets": [{"name": "regcred"}],
            "restartPolicy": if kind == "cronjobs" { "OnFailure" } else { "Always" },
            "dnsPolicy": "ClusterFirst",
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "terminationGracePeriodSeconds": 30
        });
        let labels = json!({"app": name, "team": format!("team-{}", ns % 50)});
        let template = json!({"metadata": {"labels": labels}, "spec": pod_spec});
        let (api_version, kind_name, spec) = match kind {
            "pods" => ("v1", "Pod", pod_spec.clone()),
            "cronjobs" => (
                "batch/v1",
                "CronJob",
                json!({"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": template}}}),
            ),
            "deployments" => (
                "apps/v1",
                "Deployment",
                json!({"replicas": 2, "selector": {"matchLabels": {"app": name}}, "template": template}),
            ),
            "statefulsets" => (
                "apps/v1",
                "StatefulSet",
                json!({"serviceName": name, "selector": {"matchLabels": {"app": name}}, "template": template}),
            ),
            _ => (
                "apps/v1",
                "DaemonSet",
                json!({"selector": {"matchLabels": {"app": name}}, "template": template}),
            ),
        };
        let applied = json!({"apiVersion": api_version, "kind": kind_name,
            "metadata": {"name": name, "namespace": format!("ns-{ns}"), "labels": labels}, "spec": spec});
        json!({
            "apiVersion": api_version,
            "kind": kind_name,
            "metadata": {
                "name": name,
                "namespace": format!("ns-{ns}"),
                "uid": format!("00000000-0000-4000-8000-{i:012}"),
                "resourceVersion": format!("{}", 1000 + i),
                "generation": 3,
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": labels,
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": applied.to_string(),
                    "deployment.kubernetes.io/revision": "3"
                },
                "managedFields": [
                    {"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": api_version,
                     "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                     "fieldsV1": {"f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}, "f:labels": {".": {}, "f:app": {}, "f:team": {}}}, "f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:image": {}, "f:env": {}, "f:ports": {}, "f:resources": {}}}}}}}},
                    {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": api_version,
                     "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1", "subresource": "status",
                     "fieldsV1": {"f:status": {"f:conditions": {}, "f:observedGeneration": {}, "f:replicas": {}}}}
                ]
            },
            "spec": spec,
            "status": {"observedGeneration": 3, "replicas": 2, "readyReplicas": 2,
                "conditions": [{"type": "Available", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability."}]}
        })
    }

    /// The `regcred` pull secret of namespace `ns`, when it has one.
    fn secret(&self, ns: usize) -> Option<Value> {
        let Creds::User(u) = creds(ns) else {
            return None;
        };
        let (user, password) = USERS[u];
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let config = json!({"auths": {self.hosts[1].clone(): {"username": user, "password": password, "auth": auth}}});
        Some(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "regcred", "namespace": format!("ns-{ns}"), "uid": format!("secret-{ns}"), "resourceVersion": "7"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(config.to_string())}
        }))
    }

    /// One list call: `(items, continue, remainingItemCount)`.
    fn page(
        &self,
        resource: &str,
        type_selector: Option<&str>,
        limit: usize,
        offset: usize,
    ) -> (Vec<Value>, Option<usize>, usize) {
        let total;
        let items: Vec<Value> = match resource {
            "secrets" => {
                if type_selector.is_some_and(|t| t != "kubernetes.io/dockerconfigjson") {
                    total = 0;
                    Vec::new()
                } else {
                    let all: Vec<usize> = (0..NAMESPACES)
                        .filter(|ns| creds(*ns) != Creds::Anonymous)
                        .collect();
                    total = all.len();
                    all.iter()
                        .skip(offset)
                        .take(limit)
                        .filter_map(|ns| self.secret(*ns))
                        .collect()
                }
            }
            "serviceaccounts" => {
                total = NAMESPACES;
                (offset..NAMESPACES.min(offset.saturating_add(limit)))
                    .map(|ns| json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": format!("ns-{ns}"), "uid": format!("sa-{ns}")}}))
                    .collect()
            }
            other => match self.by_kind.get(other) {
                Some(all) => {
                    total = all.len();
                    all.iter()
                        .skip(offset)
                        .take(limit)
                        .map(|i| self.object(*i))
                        .collect()
                }
                None => {
                    total = 0;
                    Vec::new()
                }
            },
        };
        let next = offset + items.len();
        let remaining = total.saturating_sub(next);
        (items, (remaining > 0).then_some(next), remaining)
    }
}

/// `GET /api/v1/RESOURCE` and `/apis/GROUP/VERSION/RESOURCE` (all namespaces).
async fn list(State(api): State<Arc<FakeCluster>>, request: Request) -> axum::response::Response {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let resource = match parts.as_slice() {
        ["api", _, resource] | ["apis", _, _, resource] => resource.to_string(),
        _ => return (axum::http::StatusCode::NOT_FOUND, "not found").into_response(),
    };
    let params: Vec<(String, String)> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("%3D", "=").replace("%2F", "/")))
        .collect();
    let get = |k: &str| params.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    let limit: usize = get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(usize::MAX);
    let offset = match get("continue") {
        None => 0,
        Some(token) => match decode_continue(token) {
            Some(o) => o,
            None => {
                return (axum::http::StatusCode::BAD_REQUEST, "bad continue token").into_response();
            }
        },
    };
    if offset == 0 {
        api.lists.fetch_add(1, Ordering::Relaxed);
    }
    api.pages.fetch_add(1, Ordering::Relaxed);
    let type_selector = get("fieldSelector").and_then(|f| f.strip_prefix("type="));
    let (items, next, remaining) = api.page(&resource, type_selector, limit, offset);
    api.items.fetch_add(items.len(), Ordering::Relaxed);
    let mut metadata = json!({"resourceVersion": "123456"});
    if let Some(next) = next {
        metadata["continue"] = json!(encode_continue(next));
        metadata["remainingItemCount"] = json!(remaining);
    }
    axum::Json(json!({"apiVersion": "v1", "kind": "List", "metadata": metadata, "items": items}))
        .into_response()
}

/// An opaque token as the apiserver's (base64 of a small JSON document).
fn encode_continue(offset: usize) -> String {
    base64::engine::general_purpose::URL_SAFE.encode(
        json!({"v": "meta.k8s.io/v1", "rv": 123456, "start": offset.to_string()}).to_string(),
    )
}

fn decode_continue(token: &str) -> Option<usize> {
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(token.replace("%3D", "="))
        .ok()?;
    let doc: Value = serde_json::from_slice(&bytes).ok()?;
    doc["start"].as_str()?.parse().ok()
}

async fn serve_api(api: Arc<FakeCluster>) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind((support::LOCALHOST, 0)).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new().fallback(list).with_state(api);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, task))
}

/// Aborts the API server task when dropped.
struct Abort(tokio::task::JoinHandle<()>);

impl Drop for Abort {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// ---------------------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------------------

/// A registry, its push target, and the user for raw manifest PUTs.
type Pushing<'a> = (&'a Registry, &'a PushTarget, Option<(&'a str, &'a str)>);

/// Push every repository's first tag as an OCI image, and every other tag as its own
/// manifest (a distinct digest: an annotation names the tag) over the same blobs.
async fn push_images(registries: [Pushing<'_>; 2]) {
    let mut repos: BTreeMap<(bool, String), Vec<String>> = BTreeMap::new();
    for j in 0..IMAGES {
        let (private, repo, tag, pushed) = image(j);
        if pushed {
            repos.entry((private, repo)).or_default().push(tag);
        }
    }
    let firsts: Vec<(bool, String, Value)> = futures::stream::iter(&repos)
        .map(|((private, repo), tags)| async move {
            let target = registries[usize::from(*private)].1;
            push_oci_manifest(target, repo, &tags[0]).await;
            let first = support::fetch_manifest(target, repo, &tags[0]).await;
            (*private, repo.clone(), first.json())
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut jobs = [Vec::new(), Vec::new()];
    for (private, repo, first) in firsts {
        for tag in &repos[&(private, repo.clone())][1..] {
            let mut doc = first.clone();
            doc["annotations"] = json!({"org.opencontainers.image.version": tag});
            jobs[usize::from(private)].push((repo.clone(), tag.clone(), doc.to_string()));
        }
    }
    for (k, jobs) in jobs.into_iter().enumerate() {
        let (registry, _, auth) = registries[k];
        put_manifests(&registry.base_url(), auth, jobs, 32).await;
    }
}

/// `PUT` each `(repository, tag, OCI manifest)` over one keep-alive client, `concurrency`
/// at a time (the harness's push helpers open a client per push: too slow for thousands).
pub async fn put_manifests(
    base_url: &str,
    auth: Option<(&str, &str)>,
    jobs: Vec<(String, String, String)>,
    concurrency: usize,
) {
    let client = support::http_client(None);
    futures::stream::iter(jobs)
        .for_each_concurrent(concurrency, |(repo, tag, body)| {
            let client = client.clone();
            async move {
                let mut request = client
                    .put(format!("{base_url}/v2/{repo}/manifests/{tag}"))
                    .header("content-type", OCI_MANIFEST)
                    .body(body);
                if let Some((user, password)) = auth {
                    request = request.basic_auth(user, Some(password));
                }
                let response = request.send().await.expect("manifest PUT");
                assert!(
                    response.status().is_success(),
                    "PUT {repo}:{tag}: {}",
                    response.status()
                );
            }
        })
        .await;
}

// ---------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------

/// The kibibytes of `VmHWM` in a `/proc/*/status` file.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

struct Measured {
    wall: Duration,
    /// wait4's `ru_maxrss` through GNU time when installed, else the last `VmHWM` polled.
    peak_kib: u64,
    peak_source: &'static str,
    exit: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Run `argv` with `env`, at most [`AUDIT_LIMIT`]: wall time and peak RSS.
fn run_measured(argv: &[String], env: &[(&str, String)], dir: &Path) -> anyhow::Result<Measured> {
    let gnu_time = Path::new("/usr/bin/time");
    let rusage_path = dir.join("audit.rusage");
    let (out_path, err_path) = (dir.join("audit.out"), dir.join("audit.err"));
    let mut command = if gnu_time.is_file() {
        let mut c = Command::new(gnu_time);
        c.arg("-f").arg("%M").arg("-o").arg(&rusage_path).args(argv);
        c
    } else {
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]);
        c
    };
    let started = Instant::now();
    let mut child = command
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?)
        .spawn()
        .with_context(|| format!("starting {}", argv[0]))?;
    let deadline = started + AUDIT_LIMIT;
    let mut polled = 0;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("pullgate audit still running after {AUDIT_LIMIT:?}; killed");
        }
        polled = polled.max(vm_hwm_kib(child.id()).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(20));
    };
    let wall = started.elapsed();
    let (peak_kib, peak_source) = match std::fs::read_to_string(&rusage_path)
        .ok()
        .and_then(|t| t.lines().last()?.trim().parse().ok())
    {
        Some(kib) => (kib, "wait4 ru_maxrss (GNU time %M)"),
        None => (polled, "/proc/<pid>/status VmHWM, polled every 20 ms"),
    };
    Ok(Measured {
        wall,
        peak_kib,
        peak_source,
        exit: status.code(),
        stdout: std::fs::read_to_string(&out_path)?,
        stderr: std::fs::read_to_string(&err_path)?,
    })
}

/// Manifest paths asked more than once, by (method, with Authorization?), for the log.
fn repeats(proxies: &[&FaultProxy]) -> String {
    let mut by_path: BTreeMap<(String, String, bool), usize> = BTreeMap::new();
    for p in proxies {
        for r in p.requests() {
            if r.path.contains("/manifests/") {
                *by_path
                    .entry((r.path.clone(), r.method.clone(), r.has_auth()))
                    .or_default() += 1;
            }
        }
    }
    let mut paths: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for ((path, method, auth), n) in &by_path {
        paths
            .entry(path)
            .or_default()
            .push(format!("{n}×{method}{}", if *auth { "+auth" } else { "" }));
    }
    let repeated: Vec<String> = paths
        .iter()
        .filter(|(path, _)| {
            by_path
                .iter()
                .filter(|((p, _, _), _)| p == *path)
                .map(|(_, n)| n)
                .sum::<usize>()
                > 1
        })
        .map(|(path, how)| format!("{path} {}", how.join(" ")))
        .collect();
    format!(
        "{} manifest paths asked more than once; e.g. {:?}",
        repeated.len(),
        &repeated[..repeated.len().min(5)]
    )
}

/// What the proxies saw: `(manifest requests, blob requests, /v2/ pings, all)`.
fn requests(proxies: &[&FaultProxy]) -> (usize, usize, usize, usize) {
    let mut counts = (0, 0, 0, 0);
    for p in proxies {
        for r in p.requests() {
            if r.path.contains("/manifests/") {
                counts.0 += 1;
            } else if r.path.contains("/blobs/") {
                counts.1 += 1;
            } else if r.path == "/v2/" {
                counts.2 += 1;
            }
            counts.3 += 1;
        }
    }
    counts
}

/// The section: pushes, serves, runs `pullgate audit`, checks its summary, one row.
pub async fn run(bin: &Path, work: &Path) -> anyhow::Result<(Vec<Row>, String)> {
    let public = Registry::start(RegistryOpts::plain()).await;
    let private =
        Registry::start(RegistryOpts::plain().with_auth(RegistryAuth::htpasswd(&USERS))).await;
    let pushed = Instant::now();
    push_images([
        (&public, &public.push_target(PushAuth::None), None),
        (
            &private,
            &private.push_target(PushAuth::basic(USERS[0].0, USERS[0].1)),
            Some(USERS[0]),
        ),
    ])
    .await;
    let public_proxy = FaultProxy::for_registry(&public).await;
    let private_proxy = FaultProxy::for_registry(&private).await;
    println!(
        "audit at scale: pushed {IMAGES} images (less every {MISSING_EVERY}th) in {:.1} s",
        pushed.elapsed().as_secs_f64()
    );
    let api = Arc::new(FakeCluster::new([
        public_proxy.host(),
        private_proxy.host(),
    ]));
    let (url, task) = serve_api(api.clone()).await?;
    let _api_task = Abort(task);
    let dir = work.join("audit-scale");
    std::fs::create_dir_all(&dir)?;
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: bench\n  cluster:\n    server: {url}\ncontexts:\n- name: bench\n  context:\n    cluster: bench\n    user: bench\ncurrent-context: bench\nusers:\n- name: bench\n  user:\n    token: not-a-real-token\n"
        ),
    )?;
    let argv: Vec<String> = vec![
        bin.display().to_string(),
        "audit".into(),
        "--insecure-registry".into(),
        public_proxy.host(),
        "--insecure-registry".into(),
        private_proxy.host(),
    ];
    let expect = expected();
    public_proxy.reset_counters();
    private_proxy.reset_counters();
    let dir2 = dir.clone();
    let argv2 = argv.clone();
    let env = vec![("KUBECONFIG", kubeconfig.display().to_string())];
    let m = tokio::task::spawn_blocking(move || run_measured(&argv2, &env, &dir2)).await??;
    let (manifests, blobs, pings, all) = requests(&[&public_proxy, &private_proxy]);
    let summary = m.stdout.lines().last().unwrap_or_default().to_string();
    println!("  {}", repeats(&[&public_proxy, &private_proxy]));
    println!(
        "  {:.1} s, peak RSS {:.1} MiB ({}), exit {:?}; {} list calls, {} pages, {} objects; registry requests: {manifests} manifest, {blobs} blob, {pings} /v2/, {all} in all; {} unique (image, credentials) pairs\n  {summary}",
        m.wall.as_secs_f64(),
        m.peak_kib as f64 / 1024.0,
        m.peak_source,
        m.exit,
        api.lists.load(Ordering::Relaxed),
        api.pages.load(Ordering::Relaxed),
        api.items.load(Ordering::Relaxed),
        expect.pairs
    );
    let want = format!("{} images:", expect.containers);
    ensure!(
        m.exit == Some(1) && summary.starts_with(&want),
        "unexpected audit result (exit {:?}): {summary}\n{}",
        m.exit,
        m.stderr
    );
    for (n, verdict) in [
        (expect.not_found, "not-found"),
        (expect.unauthorized, "unauthorized"),
        (
            expect.containers - expect.not_found - expect.unauthorized,
            "pullable",
        ),
    ] {
        ensure!(
            summary.contains(&format!("{n} {verdict}")),
            "expected {n} {verdict}: {summary}"
        );
    }
    let mib = m.peak_kib as f64 / 1024.0;
    let kinds: Vec<String> = expect
        .by_kind
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    let row = Row::new(
        "6",
        format!(
            "**`pullgate audit`: {} workloads, {} namespaces, {} unique images**",
            crate::thousands(WORKLOADS as f64),
            crate::thousands(NAMESPACES as f64),
            crate::thousands(IMAGES as f64)
        ),
        format!(
            "**{:.1} s, peak RSS {mib:.1} MiB; {manifests} manifest requests for {} unique (image, credentials) pairs**; \
             + {blobs} blob requests (`--verify-blobs`: config GET + layer HEAD, once per repository and credentials), \
             {pings} `/v2/` pings, {all} registry requests in all; {} list calls, {} pages; {} containers: {}",
            m.wall.as_secs_f64(),
            crate::thousands(expect.pairs as f64),
            api.lists.load(Ordering::Relaxed),
            api.pages.load(Ordering::Relaxed),
            crate::thousands(expect.containers as f64),
            summary
                .split_once(": ")
                .map_or(summary.as_str(), |(_, s)| s)
                .split(';')
                .next()
                .unwrap_or_default(),
        ),
    )
    .target(
        format!(
            "≤ {} s, ≤ {RSS_TARGET_MIB} MiB, manifest requests = unique pairs (+ the htpasswd \
             registry's first-contact 401s, sent before its challenge is known: at most one per \
             audit worker)",
            WALL_TARGET.as_secs()
        ),
        m.wall <= WALL_TARGET
            && mib <= RSS_TARGET_MIB
            && manifests >= expect.pairs
            && manifests <= expect.pairs + AUDIT_CONCURRENCY,
    );
    let command = format!(
        "KUBECONFIG=… {} ({} kinds: {}; peak RSS by {})",
        argv.join(" "),
        expect.by_kind.len(),
        kinds.join(", "),
        m.peak_source
    );
    Ok((vec![row], command))
}
