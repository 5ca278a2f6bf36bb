//! `pullgate audit`: every Pod not owned by a controller and every workload with a pod
//! template in a live cluster, checked with the webhook's engine and credential rules.
//!
//! Pull secrets and ServiceAccounts (and Nodes) are read first into the same stores the
//! webhook uses, so [`credentials::pod_keyring`] answers identically for both. Workloads
//! are then streamed: each list page becomes [`Target`]s (the objects themselves are
//! dropped) that enter a bounded queue, checked `concurrency` at a time while the next
//! pages are read. Memory holds one page, the queue and the findings, never every object.
//! Each unique (image, credentials, platforms) is probed once: the checker's verdict cache
//! answers its repeats.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{Stream, StreamExt as _};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    Node, Pod, PodTemplate, ReplicationController, Secret, ServiceAccount,
};
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::api::ListParams;
use kube::{Api, Client, Resource, ResourceExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::checker::Checker;
use crate::cluster::{ClusterState, ClusterWriters};
use crate::credentials;
use crate::platform::Platform;
use crate::verdict::Finding;
use crate::workload::{Workload, pod_images};

/// Objects per list page.
const PAGE_SIZE: u32 = 500;
/// Pages per list at most (500 × 2000 = a million objects): a bound, not a limit anyone meets.
const MAX_PAGES: usize = 2000;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot list {kind}: {source}")]
    List { kind: String, source: kube::Error },
    #[error(transparent)]
    Workload(Box<crate::workload::WorkloadError>),
}

/// One workload to audit.
#[derive(Debug, Clone)]
pub struct Target {
    pub namespace: String,
    pub workload: Workload,
}

/// One container's result, with where it lives.
#[derive(Debug, Clone, Serialize)]
pub struct AuditFinding {
    pub namespace: String,
    pub kind: String,
    pub name: String,
    #[serde(flatten)]
    pub finding: Finding,
}

#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Workloads checked at once (the registry client also bounds requests per registry).
    pub concurrency: usize,
    /// Time for one workload's images.
    pub timeout: Duration,
    /// The platforms pods run on when no node is known to admit them.
    pub platforms: Vec<Platform>,
}

/// How far an audit is: workloads checked, and listed so far (the listing runs ahead of
/// the checks by at most a page and the queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub checked: usize,
    pub listed: usize,
}

/// The APIs to list `K` through: all namespaces, or each named one.
fn apis<K>(client: &Client, namespaces: &[String]) -> Vec<Api<K>>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    if namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    }
}

/// List every object of `K` through `api`, page by page, handing each page to `each`
/// (which may fail) before the next is read.
async fn for_each_page<K, F>(
    api: &Api<K>,
    field_selector: Option<&str>,
    mut each: F,
) -> Result<(), AuditError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    F: AsyncFnMut(Vec<K>) -> Result<(), AuditError>,
{
    let mut params = ListParams::default().limit(PAGE_SIZE);
    if let Some(fields) = field_selector {
        params = params.fields(fields);
    }
    for _ in 0..MAX_PAGES {
        let page = api.list(&params).await.map_err(|source| AuditError::List {
            kind: K::kind(&()).to_string(),
            source,
        })?;
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        each(page.items).await?;
        match next {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    Ok(())
}

/// Every object of `K` through `api` (small lists only: RuntimeClasses, Nodes, secrets).
async fn list_all<K>(api: &Api<K>, field_selector: Option<&str>) -> Result<Vec<K>, AuditError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    for_each_page(api, field_selector, async |items| {
        out.extend(items);
        Ok(())
    })
    .await?;
    Ok(out)
}

/// Pull secrets, ServiceAccounts and, with `with_nodes`, Nodes of the cluster, in the
/// webhook's stores (each page is added as it comes; the stores slim what they keep).
/// RuntimeClasses are added by [`load_runtime_classes`] when a template names one.
pub async fn snapshot(
    client: &Client,
    namespaces: &[String],
    with_nodes: bool,
) -> Result<ClusterWriters, AuditError> {
    let mut writers = ClusterWriters::new();
    for ty in ["kubernetes.io/dockerconfigjson", "kubernetes.io/dockercfg"] {
        let fields = format!("type={ty}");
        for api in apis::<Secret>(client, namespaces) {
            for_each_page(&api, Some(&fields), async |items| {
                items.into_iter().for_each(|s| writers.add_secret(s));
                Ok(())
            })
            .await?;
        }
    }
    for api in apis::<ServiceAccount>(client, namespaces) {
        for_each_page(&api, None, async |items| {
            items
                .into_iter()
                .for_each(|s| writers.add_service_account(s));
            Ok(())
        })
        .await?;
    }
    if with_nodes {
        for node in list_all(&Api::<Node>::all(client.clone()), None).await? {
            writers.add_node(node);
        }
    }
    Ok(writers)
}

/// Add the cluster's RuntimeClasses to `writers`. They only narrow where templates run:
/// without them (a user who may not list them) the audit goes on, as the webhook would
/// with none defined.
pub async fn load_runtime_classes(client: &Client, writers: &mut ClusterWriters) {
    match list_all(&Api::<RuntimeClass>::all(client.clone()), None).await {
        Ok(classes) => classes
            .into_iter()
            .for_each(|r| writers.add_runtime_class(r)),
        Err(e) => {
            tracing::warn!(error = %e, "RuntimeClasses not read; templates are judged without them")
        }
    }
}

/// Does `target`, a template, name a RuntimeClass? (A Pod already carries its
/// RuntimeClass's nodeSelector.)
pub fn needs_runtime_classes(target: &Target) -> bool {
    target.workload.kind != "Pod" && target.workload.spec.runtime_class_name.is_some()
}

/// The workloads of one list page: every object not managed by a controller (a
/// Deployment's ReplicaSets and a CronJob's Jobs are audited through their owner), as
/// [`Target`]s. The objects are consumed.
pub fn targets_of<K>(objects: Vec<K>) -> Result<Vec<Target>, AuditError>
where
    K: Resource<DynamicType = ()> + Serialize,
{
    let kind = K::kind(&()).to_string();
    let mut out = Vec::new();
    for object in objects {
        let controlled = object
            .meta()
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.controller == Some(true));
        if controlled {
            continue;
        }
        let namespace = object.namespace().unwrap_or_default();
        let value = serde_json::to_value(&object).unwrap_or_default();
        drop(object);
        let workload =
            Workload::of_kind(&kind, &value).map_err(|e| AuditError::Workload(Box::new(e)))?;
        if let Some(workload) = workload {
            out.push(Target {
                namespace,
                workload,
            });
        }
    }
    Ok(out)
}

/// Where listed targets go: the queue to the checks, and what listing needs on the way.
struct Lister<'a> {
    client: &'a Client,
    writers: &'a mut ClusterWriters,
    runtime_classes_loaded: bool,
    queue: mpsc::Sender<Target>,
    listed: &'a AtomicUsize,
}

impl Lister<'_> {
    /// Queue one page's targets, reading the RuntimeClasses first when one names one.
    async fn send(&mut self, targets: Vec<Target>) {
        if !self.runtime_classes_loaded && targets.iter().any(needs_runtime_classes) {
            load_runtime_classes(self.client, self.writers).await;
            self.runtime_classes_loaded = true;
        }
        for target in targets {
            self.listed.fetch_add(1, Ordering::SeqCst);
            // An error only means the checks are gone (never while they run).
            if self.queue.send(target).await.is_err() {
                return;
            }
        }
    }

    async fn kind<K>(&mut self, namespaces: &[String]) -> Result<(), AuditError>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Serialize
            + std::fmt::Debug,
    {
        for api in apis::<K>(self.client, namespaces) {
            for_each_page(&api, None, async |items| {
                let targets = targets_of(items)?;
                self.send(targets).await;
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    /// Every workload kind, in the order the report lists them.
    async fn all(&mut self, namespaces: &[String]) -> Result<(), AuditError> {
        self.kind::<Pod>(namespaces).await?;
        self.kind::<Deployment>(namespaces).await?;
        self.kind::<ReplicaSet>(namespaces).await?;
        self.kind::<StatefulSet>(namespaces).await?;
        self.kind::<DaemonSet>(namespaces).await?;
        self.kind::<Job>(namespaces).await?;
        self.kind::<CronJob>(namespaces).await?;
        self.kind::<ReplicationController>(namespaces).await?;
        self.kind::<PodTemplate>(namespaces).await?;
        Ok(())
    }
}

/// Audit the cluster behind `client`: read its credentials (and Nodes, with `with_nodes`),
/// then list every workload page by page while checking them, `options.concurrency` at a
/// time, calling `progress` after each. Findings come back in listing order.
pub async fn audit(
    client: &Client,
    checker: &Checker,
    namespaces: &[String],
    with_nodes: bool,
    options: &AuditOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Vec<AuditFinding>, AuditError> {
    let mut writers = snapshot(client, namespaces, with_nodes).await?;
    let cluster = writers.state(with_nodes);
    let listed = AtomicUsize::new(0);
    // A page ahead of the checks, at most.
    let (queue, mut pending) = mpsc::channel::<Target>(PAGE_SIZE as usize);
    let mut lister = Lister {
        client,
        writers: &mut writers,
        runtime_classes_loaded: false,
        queue,
        listed: &listed,
    };
    let listing = async move {
        let result = lister.all(namespaces).await;
        // Dropping the lister closes the queue: the checks end after the last target.
        drop(lister);
        result
    };
    let targets = futures::stream::poll_fn(move |cx| pending.poll_recv(cx));
    let report = |checked: usize| {
        progress(Progress {
            checked,
            listed: listed.load(Ordering::SeqCst),
        })
    };
    let checking = run(checker, &cluster, targets, options, &report);
    let (listing, findings) = futures::join!(listing, checking);
    listing?;
    Ok(findings)
}

/// Check every target of `targets`, `options.concurrency` at a time, calling
/// `progress(checked)` after each. Results come back in target order.
pub async fn run(
    checker: &Checker,
    cluster: &ClusterState,
    targets: impl Stream<Item = Target>,
    options: &AuditOptions,
    progress: &(dyn Fn(usize) + Sync),
) -> Vec<AuditFinding> {
    let done = AtomicUsize::new(0);
    let mut out = Vec::new();
    let mut results = std::pin::pin!(
        targets
            .map(|target| {
                let done = &done;
                async move {
                    let w = &target.workload;
                    let (keyring, problems) =
                        credentials::pod_keyring(cluster, &target.namespace, w);
                    let images = pod_images(&w.spec);
                    let specs: Vec<_> = images.iter().map(|c| c.to_spec()).collect();
                    // The webhook's rules: the nodes the workload's pods can land on, and
                    // the copies of its images those nodes already hold.
                    let placement = cluster.placement(&cluster.constraints(w), &options.platforms);
                    let deadline = Instant::now() + options.timeout;
                    let findings = credentials::check_placed_pod(
                        checker, cluster, &images, &specs, &keyring, &problems, &placement,
                        deadline,
                    )
                    .await;
                    progress(done.fetch_add(1, Ordering::SeqCst) + 1);
                    findings
                        .into_iter()
                        .map(|finding| AuditFinding {
                            namespace: target.namespace.clone(),
                            kind: w.kind.clone(),
                            name: w.name.clone(),
                            finding,
                        })
                        .collect::<Vec<_>>()
                }
            })
            .buffered(options.concurrency.max(1))
    );
    while let Some(findings) = results.next().await {
        out.extend(findings);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    use crate::cache::{CacheConfig, VerdictCache};
    use crate::registry::{Registry, RegistryConfig};

    const DEPLOYMENTS: usize = 2000;

    /// Deployments only, `limit` / `continue` as the apiserver pages; every other list empty.
    async fn list(
        axum::extract::State(pages): axum::extract::State<Arc<Mutex<usize>>>,
        request: axum::extract::Request,
    ) -> axum::Json<serde_json::Value> {
        let query = request.uri().query().unwrap_or_default().to_string();
        let get = |k: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                .and_then(|v| v.parse::<usize>().ok())
        };
        let (limit, offset) = (
            get("limit").unwrap_or(usize::MAX),
            get("continue").unwrap_or(0),
        );
        let total = if request.uri().path().ends_with("/deployments") {
            *pages.lock().expect("lock") += 1;
            DEPLOYMENTS
        } else {
            0
        };
        let end = total.min(offset.saturating_add(limit));
        let items: Vec<serde_json::Value> = (offset..end)
            .map(|i| serde_json::json!({
                "metadata": {"name": format!("d{i}"), "namespace": format!("ns-{}", i % 9)},
                "spec": {"selector": {}, "template": {"spec": {"containers": [
                    {"name": "app", "image": "registry.invalid/app:1", "imagePullPolicy": "Never"}
                ]}}}
            }))
            .collect();
        let mut metadata = serde_json::json!({"resourceVersion": "1"});
        if end < total {
            metadata["continue"] = serde_json::json!(end.to_string());
            metadata["remainingItemCount"] = serde_json::json!(total - end);
        }
        axum::Json(
            serde_json::json!({"kind": "List", "apiVersion": "v1", "metadata": metadata, "items": items}),
        )
    }

    /// The listing runs at most a page (and the queue) ahead of the checks: objects are
    /// never all held, and every page is read, in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn workloads_are_checked_while_later_pages_are_listed() {
        crate::install_crypto_provider();
        let pages = Arc::new(Mutex::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let app = axum::Router::new().fallback(list).with_state(pages.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let config = kube::Config::new(url.parse().expect("url"));
        let client = Client::try_from(config).expect("client");
        let registry = Registry::new(RegistryConfig::default()).expect("registry");
        let checker = Checker::new(
            std::sync::Arc::new(registry),
            VerdictCache::new(CacheConfig::default()),
        );
        let options = AuditOptions {
            concurrency: 4,
            timeout: Duration::from_secs(5),
            platforms: vec![Platform::linux_amd64()],
        };
        let most_ahead = AtomicUsize::new(0);
        let findings = audit(&client, &checker, &[], false, &options, &|p: Progress| {
            most_ahead.fetch_max(p.listed - p.checked, Ordering::SeqCst);
            // Checks slower than the listing, as against real registries.
            std::thread::sleep(Duration::from_millis(1));
        })
        .await
        .expect("audit");
        server.abort();

        assert_eq!(findings.len(), DEPLOYMENTS, "every page is read");
        assert_eq!(
            *pages.lock().expect("lock"),
            DEPLOYMENTS / PAGE_SIZE as usize
        );
        let names: Vec<&str> = findings.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            (names[0], names[DEPLOYMENTS - 1]),
            ("d0", "d1999"),
            "in listing order"
        );
        let ahead = most_ahead.load(Ordering::SeqCst);
        assert!(
            ahead <= 2 * PAGE_SIZE as usize + options.concurrency,
            "listed {ahead} workloads ahead of the checks"
        );
    }
}
