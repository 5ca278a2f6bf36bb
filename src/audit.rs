//! `pullgate audit`: every Pod not owned by a controller and every workload with a pod
//! template in a live cluster, checked with the webhook's engine and credential rules.
//!
//! The cluster is read once (paginated lists) into the same stores the webhook uses, so
//! [`credentials::pod_keyring`] answers identically for both.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
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

/// List every object of `K` (all namespaces, or each named one), page by page.
async fn list<K>(
    client: &Client,
    namespaces: &[String],
    field_selector: Option<&str>,
) -> Result<Vec<K>, AuditError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
{
    let apis: Vec<Api<K>> = if namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    };
    let mut out = Vec::new();
    for api in apis {
        out.extend(list_pages(&api, field_selector).await?);
    }
    Ok(out)
}

async fn list_pages<K>(api: &Api<K>, field_selector: Option<&str>) -> Result<Vec<K>, AuditError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
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
        out.extend(page.items);
        match next {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    Ok(out)
}

/// Pull secrets, ServiceAccounts (and RuntimeClasses, and Nodes) of the cluster, in the
/// webhook's stores. RuntimeClasses are read only when a template names one
/// ([`needs_runtime_classes`]): a Pod already carries its RuntimeClass's nodeSelector.
pub async fn snapshot(
    client: &Client,
    namespaces: &[String],
    with_nodes: bool,
    with_runtime_classes: bool,
) -> Result<ClusterState, AuditError> {
    let mut writers = ClusterWriters::new();
    for ty in ["kubernetes.io/dockerconfigjson", "kubernetes.io/dockercfg"] {
        for secret in list::<Secret>(client, namespaces, Some(&format!("type={ty}"))).await? {
            writers.add_secret(secret);
        }
    }
    for sa in list::<ServiceAccount>(client, namespaces, None).await? {
        writers.add_service_account(sa);
    }
    // RuntimeClasses only narrow where templates run: without them (a user who may not
    // list them) the audit goes on, as the webhook would with none defined.
    if with_runtime_classes {
        match list_pages(&Api::<RuntimeClass>::all(client.clone()), None).await {
            Ok(classes) => classes
                .into_iter()
                .for_each(|r| writers.add_runtime_class(r)),
            Err(e) => {
                tracing::warn!(error = %e, "RuntimeClasses not read; templates are judged without them")
            }
        }
    }
    if with_nodes {
        for node in list_pages(&Api::<Node>::all(client.clone()), None).await? {
            writers.add_node(node);
        }
    }
    Ok(writers.state(with_nodes))
}

/// Does a template among `targets` name a RuntimeClass?
pub fn needs_runtime_classes(targets: &[Target]) -> bool {
    targets
        .iter()
        .any(|t| t.workload.kind != "Pod" && t.workload.spec.runtime_class_name.is_some())
}

/// Every Pod not owned by a controller, and every workload with a pod template that is not
/// itself managed by a controller (a Deployment's ReplicaSets and a CronJob's Jobs are
/// audited through their owner).
pub async fn targets(client: &Client, namespaces: &[String]) -> Result<Vec<Target>, AuditError> {
    let mut out = Vec::new();
    collect::<Pod>(&mut out, list(client, namespaces, None).await?)?;
    collect::<Deployment>(&mut out, list(client, namespaces, None).await?)?;
    collect::<ReplicaSet>(&mut out, list(client, namespaces, None).await?)?;
    collect::<StatefulSet>(&mut out, list(client, namespaces, None).await?)?;
    collect::<DaemonSet>(&mut out, list(client, namespaces, None).await?)?;
    collect::<Job>(&mut out, list(client, namespaces, None).await?)?;
    collect::<CronJob>(&mut out, list(client, namespaces, None).await?)?;
    collect::<ReplicationController>(&mut out, list(client, namespaces, None).await?)?;
    collect::<PodTemplate>(&mut out, list(client, namespaces, None).await?)?;
    Ok(out)
}

fn collect<K>(out: &mut Vec<Target>, objects: Vec<K>) -> Result<(), AuditError>
where
    K: Resource<DynamicType = ()> + Serialize,
{
    let kind = K::kind(&()).to_string();
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
        let workload =
            Workload::of_kind(&kind, &value).map_err(|e| AuditError::Workload(Box::new(e)))?;
        if let Some(workload) = workload {
            out.push(Target {
                namespace,
                workload,
            });
        }
    }
    Ok(())
}

/// Check every target, `options.concurrency` at a time, calling `progress(done, total)`
/// after each. Results come back in target order.
pub async fn run(
    checker: &Checker,
    cluster: &ClusterState,
    targets: Vec<Target>,
    options: &AuditOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Vec<AuditFinding> {
    let total = targets.len();
    let done = AtomicUsize::new(0);
    let results: Vec<Vec<AuditFinding>> = futures::stream::iter(targets)
        .map(|target| {
            let done = &done;
            async move {
                let w = &target.workload;
                let (keyring, problems) = credentials::pod_keyring(cluster, &target.namespace, w);
                let images = pod_images(&w.spec);
                let specs: Vec<_> = images.iter().map(|c| c.to_spec()).collect();
                // The webhook's rules: the nodes the workload's pods can land on, and the
                // copies of its images those nodes already hold.
                let placement = cluster.placement(&cluster.constraints(w), &options.platforms);
                let deadline = Instant::now() + options.timeout;
                let findings = credentials::check_placed_pod(
                    checker, cluster, &images, &specs, &keyring, &problems, &placement, deadline,
                )
                .await;
                progress(done.fetch_add(1, Ordering::SeqCst) + 1, total);
                findings
                    .into_iter()
                    .map(|finding| AuditFinding {
                        namespace: target.namespace.clone(),
                        kind: w.kind.clone(),
                        name: w.name.clone(),
                        finding,
                    })
                    .collect()
            }
        })
        .buffered(options.concurrency.max(1))
        .collect()
        .await;
    results.into_iter().flatten().collect()
}
