//! Cluster state (ARCHITECTURE.md §7): kube reflectors started once, read by every review.
//! Pull secrets of both types (field selectors), ServiceAccounts, Namespaces,
//! RuntimeClasses, and Nodes with `--watch-nodes`. With no cluster, every store is empty
//! and ready.

mod nodes;
mod secrets;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{
    ContainerImage, Namespace, Node, NodeStatus, NodeSystemInfo, Secret, ServiceAccount,
};
use k8s_openapi::api::node::v1::{RuntimeClass, Scheduling};
use kube::api::ObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, Resource, ResourceExt as _};

pub use nodes::{NodeIndex, NodeStats};
pub use secrets::SecretStore;

use crate::keyring::{ConfigFormat, DockerConfig, KeyringError};
use crate::platform::Platform;
use crate::policy::{MODE_LABEL, Mode};
use crate::scheduling::{self, Constraints, Eligible, KubeletVersion, Placement};
use crate::workload::Workload;

const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
const DOCKER_CFG: &str = "kubernetes.io/dockercfg";

/// Why a named pull secret gave no credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretProblem {
    /// The kubelet logs `FailedToRetrieveImagePullSecret` and pulls without it.
    #[error("imagePullSecret {0:?} does not exist")]
    Missing(String),
    #[error("imagePullSecret {0:?} has type {1:?}, not a pull secret type")]
    WrongType(String, String),
    #[error("imagePullSecret {0:?} has no {1} key")]
    NoData(String, &'static str),
    /// The kubelet cannot decode it: `MakeDockerKeyring` returns the error, and every
    /// image pull of the pod fails with it (`kuberuntime_image.go PullImage` at v1.28,
    /// `image_manager.go makeLookupPullCredentialsFunc` since).
    #[error("imagePullSecret {name:?} cannot be decoded by the kubelet: {reason}")]
    Rejected { name: String, reason: KeyringError },
}

impl SecretProblem {
    /// Does this problem fail every pull of the pod, rather than leave one secret out?
    pub fn fails_every_pull(&self) -> bool {
        matches!(self, SecretProblem::Rejected { .. })
    }
}

/// The reflector stores, shared and cheap to clone.
#[derive(Clone)]
pub struct ClusterState {
    /// Secrets of either pull-secret type, from two field-selected watches, decoded.
    secrets: [SecretStore; 2],
    service_accounts: Store<ServiceAccount>,
    namespaces: Store<Namespace>,
    runtime_classes: Store<RuntimeClass>,
    nodes: Option<NodeIndex>,
    ready: Arc<AtomicBool>,
    connected: bool,
}

impl std::fmt::Debug for ClusterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterState")
            .field("connected", &self.connected)
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

/// Writers for filling the stores by hand (tests, `make run` without a cluster).
pub struct ClusterWriters {
    pub secrets: SecretStore,
    pub service_accounts: Writer<ServiceAccount>,
    pub namespaces: Writer<Namespace>,
    pub runtime_classes: Writer<RuntimeClass>,
    /// Shared with every state made from these writers: a node added later is seen.
    pub nodes: NodeIndex,
}

impl ClusterWriters {
    pub fn new() -> Self {
        let nodes = NodeIndex::default();
        nodes.mark_synced();
        let secrets = SecretStore::default();
        secrets.mark_synced();
        Self {
            secrets,
            service_accounts: Writer::default(),
            namespaces: Writer::default(),
            runtime_classes: Writer::default(),
            nodes,
        }
    }

    /// The state these writers feed; ready at once (there is no initial list to wait for).
    /// `with_nodes` is `--watch-nodes`.
    pub fn state(&self, with_nodes: bool) -> ClusterState {
        ClusterState {
            secrets: [self.secrets.clone(), SecretStore::default()],
            service_accounts: self.service_accounts.as_reader(),
            namespaces: self.namespaces.as_reader(),
            runtime_classes: self.runtime_classes.as_reader(),
            nodes: with_nodes.then(|| self.nodes.clone()),
            ready: Arc::new(AtomicBool::new(true)),
            connected: false,
        }
    }

    pub fn add_secret(&mut self, s: Secret) {
        self.secrets.apply(watcher::Event::Apply(s));
    }

    pub fn add_service_account(&mut self, s: ServiceAccount) {
        self.service_accounts
            .apply_watcher_event(&watcher::Event::Apply(s));
    }

    pub fn add_namespace(&mut self, n: Namespace) {
        self.namespaces
            .apply_watcher_event(&watcher::Event::Apply(n));
    }

    pub fn add_runtime_class(&mut self, mut r: RuntimeClass) {
        r.slim();
        self.runtime_classes
            .apply_watcher_event(&watcher::Event::Apply(r));
    }

    /// Add or replace a Node, slimmed as the watch slims it.
    pub fn add_node(&mut self, mut n: Node) {
        n.slim();
        self.nodes.insert(&n);
    }

    pub fn delete_node(&mut self, name: &str) {
        self.nodes.remove(name);
    }
}

impl Default for ClusterWriters {
    fn default() -> Self {
        Self::new()
    }
}

impl ClusterState {
    /// No cluster: no pull secrets, no namespace labels, ready at once.
    pub fn disconnected() -> Self {
        ClusterWriters::new().state(false)
    }

    /// Start the reflectors on `client`; [`ClusterState::is_ready`] turns true once every
    /// store has its initial list.
    pub fn start(client: Client, with_nodes: bool) -> Self {
        let all = |field: &str| watcher::Config::default().fields(field);
        let secrets = [
            watch_secrets(
                Api::<Secret>::all(client.clone()),
                all(&format!("type={DOCKER_CONFIG_JSON}")),
            ),
            watch_secrets(
                Api::<Secret>::all(client.clone()),
                all(&format!("type={DOCKER_CFG}")),
            ),
        ];
        let service_accounts = reflect(
            Api::<ServiceAccount>::all(client.clone()),
            watcher::Config::default(),
        );
        let namespaces = reflect(
            Api::<Namespace>::all(client.clone()),
            watcher::Config::default(),
        );
        let runtime_classes = reflect(
            Api::<RuntimeClass>::all(client.clone()),
            watcher::Config::default(),
        );
        let nodes = with_nodes.then(|| watch_nodes(Api::<Node>::all(client)));

        let ready = Arc::new(AtomicBool::new(false));
        let state = Self {
            secrets,
            service_accounts,
            namespaces,
            runtime_classes,
            nodes,
            ready: ready.clone(),
            connected: true,
        };
        let waiting = state.clone();
        tokio::spawn(async move {
            waiting.secrets[0].wait_until_synced().await;
            waiting.secrets[1].wait_until_synced().await;
            let all_ready = waiting.service_accounts.wait_until_ready().await.is_ok()
                && waiting.namespaces.wait_until_ready().await.is_ok()
                && waiting.runtime_classes.wait_until_ready().await.is_ok();
            if let Some(nodes) = &waiting.nodes {
                nodes.wait_until_synced().await;
                let stats = nodes.stats();
                tracing::info!(
                    nodes = stats.nodes,
                    image_names = stats.image_names,
                    heap_bytes = stats.heap_bytes,
                    "node store synced"
                );
            }
            if all_ready {
                tracing::info!("cluster stores synced");
                ready.store(true, Ordering::SeqCst);
            }
        });
        state
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// The docker config of pull secret `name` in `namespace`, read as the kubelet does:
    /// only the key that matches the secret's type (decoded when the Secret arrived).
    pub fn pull_secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Arc<DockerConfig>, SecretProblem> {
        self.secrets
            .iter()
            .find_map(|store| store.get(namespace, name))
            .unwrap_or_else(|| Err(SecretProblem::Missing(name.to_string())))
    }

    /// `imagePullSecrets` of a ServiceAccount, if it exists.
    pub fn service_account_pull_secrets(&self, namespace: &str, name: &str) -> Option<Vec<String>> {
        let sa = self
            .service_accounts
            .get(&ObjectRef::new(name).within(namespace))?;
        Some(
            sa.image_pull_secrets
                .iter()
                .flatten()
                .map(|r| r.name.clone())
                .filter(|n| !n.is_empty())
                .collect(),
        )
    }

    /// The namespace's `pullgate.dev/mode` label, when set to a valid mode.
    pub fn namespace_mode(&self, namespace: &str) -> Option<Mode> {
        let ns = self.namespaces.get(&ObjectRef::new(namespace))?;
        ns.labels().get(MODE_LABEL)?.parse().ok()
    }

    /// The Node store, with `--watch-nodes`.
    pub fn nodes(&self) -> Option<&NodeIndex> {
        self.nodes.as_ref()
    }

    /// The distinct `kubernetes.io/os` / `kubernetes.io/arch` pairs of the nodes; empty
    /// when nodes are not watched or carry no labels.
    pub fn node_platforms(&self) -> Vec<Platform> {
        self.nodes
            .as_ref()
            .map(NodeIndex::platforms)
            .unwrap_or_default()
    }

    /// `scheduling.nodeSelector` of RuntimeClass `name`, if it exists and has one.
    pub fn runtime_class_node_selector(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.runtime_classes
            .get(&ObjectRef::new(name))?
            .scheduling
            .as_ref()?
            .node_selector
            .clone()
    }

    /// The platforms a pod with `constraints` can run on (ARCHITECTURE.md §3): with the
    /// nodes watched, those of the nodes its constraints admit; when none does (the pod
    /// would stay Pending until an autoscaler adds a node) or nodes are not watched, the
    /// `configured` platforms (and the nodes') it may run on, or those it pins outside them.
    pub fn placement(&self, constraints: &Constraints, configured: &[Platform]) -> Placement {
        let Some(nodes) = &self.nodes else {
            return scheduling::without_nodes(constraints, configured);
        };
        if let Some(eligible) = nodes.eligible(constraints) {
            return Placement::on_nodes(eligible);
        }
        let mut known = configured.to_vec();
        for p in nodes.platforms() {
            if !known.contains(&p) {
                known.push(p);
            }
        }
        scheduling::without_nodes(constraints, &known)
    }

    /// Where a workload's pods may run. A Pod's `nodeSelector` already holds its
    /// RuntimeClass's (the RuntimeClass admission plugin runs before validating webhooks);
    /// a template's does not, so it is merged here as the plugin will merge it into each
    /// Pod. An unknown RuntimeClass adds nothing (the apiserver will refuse those Pods).
    pub fn constraints(&self, workload: &Workload) -> Constraints {
        let mut constraints = Constraints::of(&workload.spec);
        if workload.kind != "Pod"
            && let Some(name) = workload.spec.runtime_class_name.as_deref()
            && let Some(selector) = self.runtime_class_node_selector(name)
        {
            constraints.merge_runtime_class(&selector);
        }
        constraints
    }

    /// The kubelet versions of the `eligible` nodes whose `status.images` names `key`.
    pub fn holders(&self, eligible: &Eligible, key: &str) -> Vec<Option<KubeletVersion>> {
        self.nodes
            .as_ref()
            .map(|n| n.holders(eligible, key))
            .unwrap_or_default()
    }

    /// How many pull secrets the stores hold (for the start-up log and memory checks).
    pub fn pull_secret_count(&self) -> usize {
        self.secrets.iter().map(SecretStore::len).sum()
    }
}

/// Read a Secret as a pull secret, as `secrets.go secretsToTrackedDockerConfigs` does:
/// the type decides the key (`kubernetes.io/dockerconfigjson` → `.dockerconfigjson`,
/// `kubernetes.io/dockercfg` → `.dockercfg`); a missing or empty value is skipped; a
/// value that does not decode is the error that fails the pod's pulls.
pub fn docker_config_of(secret: &Secret) -> Result<DockerConfig, SecretProblem> {
    let name = secret.name_any();
    let ty = secret.type_.clone().unwrap_or_default();
    let (format, key) = match ty.as_str() {
        DOCKER_CONFIG_JSON => (ConfigFormat::DockerConfigJson, ".dockerconfigjson"),
        DOCKER_CFG => (ConfigFormat::DockerCfg, ".dockercfg"),
        _ => return Err(SecretProblem::WrongType(name, ty)),
    };
    let data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .filter(|b| !b.0.is_empty())
        .ok_or_else(|| SecretProblem::NoData(name.clone(), key))?;
    DockerConfig::parse(&data.0, format).map_err(|reason| SecretProblem::Rejected { name, reason })
}

/// Cut an object down to what pullgate reads, before it enters a store: a cluster may
/// hold ten thousand pull secrets, and a Node's status lists every image it has.
pub trait Slim {
    fn slim(&mut self);
}

/// Keep name and namespace (the store's key), the resource version and, when asked, the
/// labels named in `labels` (`None`: every label).
fn slim_meta(meta: &mut ObjectMeta, labels: Option<&[&str]>) {
    let kept = meta.labels.take().map(|mut all| {
        if let Some(labels) = labels {
            all.retain(|k, _| labels.contains(&k.as_str()));
        }
        all
    });
    *meta = ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        resource_version: meta.resource_version.take(),
        labels: kept.filter(|l| !l.is_empty()),
        ..ObjectMeta::default()
    };
}

impl Slim for ServiceAccount {
    fn slim(&mut self) {
        slim_meta(&mut self.metadata, Some(&[]));
        self.secrets = None;
        self.automount_service_account_token = None;
    }
}

impl Slim for Namespace {
    fn slim(&mut self) {
        slim_meta(&mut self.metadata, Some(&[MODE_LABEL]));
        self.spec = None;
        self.status = None;
    }
}

impl Slim for Node {
    /// Every label (node affinity may name any), the name, four fields of `nodeInfo`
    /// and the names of `status.images`; conditions, addresses, capacity and the rest go.
    fn slim(&mut self) {
        slim_meta(&mut self.metadata, None);
        self.spec = None;
        self.status = self.status.take().map(|s| NodeStatus {
            node_info: s.node_info.map(|i| NodeSystemInfo {
                operating_system: i.operating_system,
                architecture: i.architecture,
                kubelet_version: i.kubelet_version,
                container_runtime_version: i.container_runtime_version,
                ..NodeSystemInfo::default()
            }),
            images: s.images.map(|images| {
                images
                    .into_iter()
                    .map(|i| ContainerImage {
                        names: i.names,
                        size_bytes: None,
                    })
                    .collect()
            }),
            ..NodeStatus::default()
        });
    }
}

impl Slim for RuntimeClass {
    /// Only `scheduling.nodeSelector` is read (merged into pod templates).
    fn slim(&mut self) {
        slim_meta(&mut self.metadata, Some(&[]));
        self.handler = String::new();
        self.overhead = None;
        self.scheduling = self.scheduling.take().map(|s| Scheduling {
            node_selector: s.node_selector,
            tolerations: None,
        });
    }
}

/// The Node watch feeding a [`NodeIndex`]: slimmed objects, applied as they come, a
/// re-list swapped in whole.
fn watch_nodes(api: Api<Node>) -> NodeIndex {
    let index = NodeIndex::default();
    let target = index.clone();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|node: &mut Node| node.slim())
        .for_each(move |event| {
            match event {
                Ok(event) => target.apply(event),
                Err(e) => tracing::warn!(kind = "Node", error = %e, "watch error; retrying"),
            }
            futures::future::ready(())
        });
    tokio::spawn(stream);
    index
}

/// A pull-secret watch feeding a [`SecretStore`]: each Secret decoded as it arrives.
fn watch_secrets(api: Api<Secret>, config: watcher::Config) -> SecretStore {
    let store = SecretStore::default();
    let target = store.clone();
    let stream = watcher(api, config)
        .default_backoff()
        .for_each(move |event| {
            match event {
                Ok(event) => target.apply(event),
                Err(e) => tracing::warn!(kind = "Secret", error = %e, "watch error; retrying"),
            }
            futures::future::ready(())
        });
    tokio::spawn(stream);
    store
}

/// A reflector whose objects are [`Slim`]med before they are stored.
fn reflect<K>(api: Api<K>, config: watcher::Config) -> Store<K>
where
    K: Resource<DynamicType = ()>
        + Slim
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let kind = K::kind(&()).to_string();
    let stream = watcher(api, config)
        .default_backoff()
        .modify(|object: &mut K| object.slim())
        .reflect(writer)
        .for_each(move |event| {
            if let Err(e) = event {
                tracing::warn!(kind = %kind, error = %e, "watch error; retrying");
            }
            futures::future::ready(())
        });
    tokio::spawn(stream);
    reader
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use kube::api::ObjectMeta;
    use std::collections::BTreeMap;

    fn secret(name: &str, ty: &str, key: &str, content: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            type_: Some(ty.into()),
            data: Some(BTreeMap::from([(
                key.to_string(),
                ByteString(content.as_bytes().to_vec()),
            )])),
            ..Default::default()
        }
    }

    #[test]
    fn secret_is_read_by_the_key_its_type_names() {
        let json = r#"{"auths":{"r.io":{"username":"u","password":"p"}}}"#;
        assert!(
            docker_config_of(&secret("a", DOCKER_CONFIG_JSON, ".dockerconfigjson", json)).is_ok()
        );
        assert_eq!(
            docker_config_of(&secret("a", DOCKER_CONFIG_JSON, ".dockercfg", json)),
            Err(SecretProblem::NoData("a".into(), ".dockerconfigjson"))
        );
        assert!(matches!(
            docker_config_of(&secret("a", "Opaque", ".dockerconfigjson", json)),
            Err(SecretProblem::WrongType(..))
        ));
        assert!(matches!(
            docker_config_of(&secret("a", DOCKER_CFG, ".dockercfg", r#"{"r.io":"x"}"#)),
            Err(SecretProblem::Rejected { .. })
        ));
        assert_eq!(
            docker_config_of(&secret("a", DOCKER_CONFIG_JSON, ".dockerconfigjson", "")),
            Err(SecretProblem::NoData("a".into(), ".dockerconfigjson"))
        );
    }

    #[test]
    fn stores_keep_only_what_is_read() {
        let mut ns = Namespace {
            metadata: ObjectMeta {
                name: Some("team".into()),
                labels: Some(BTreeMap::from([
                    (MODE_LABEL.to_string(), "audit".to_string()),
                    ("env".to_string(), "prod".to_string()),
                ])),
                ..Default::default()
            },
            ..Default::default()
        };
        ns.slim();
        assert_eq!(ns.metadata.labels.map(|l| l.len()), Some(1));
    }

    #[test]
    fn stores_filled_by_hand_answer_lookups() {
        let mut w = ClusterWriters::new();
        w.add_secret(secret(
            "regcred",
            DOCKER_CONFIG_JSON,
            ".dockerconfigjson",
            r#"{"auths":{}}"#,
        ));
        w.add_namespace(Namespace {
            metadata: ObjectMeta {
                name: Some("team".into()),
                labels: Some(BTreeMap::from([(
                    MODE_LABEL.to_string(),
                    "audit".to_string(),
                )])),
                ..Default::default()
            },
            ..Default::default()
        });
        let state = w.state(false);
        assert!(state.pull_secret("ns", "regcred").is_ok());
        assert_eq!(
            state.pull_secret("other", "regcred"),
            Err(SecretProblem::Missing("regcred".into()))
        );
        assert_eq!(state.namespace_mode("team"), Some(Mode::Audit));
        assert_eq!(state.namespace_mode("absent"), None);
        assert!(state.is_ready());
    }

    fn big_node() -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n1", "labels": {"kubernetes.io/arch": "arm64", "kubernetes.io/os": "linux", "pool": "a"},
                "annotations": {"big": "x"}, "managedFields": [{"manager": "kubelet"}]},
            "spec": {"podCIDR": "10.0.0.0/24"},
            "status": {
                "nodeInfo": {"machineID": "m", "systemUUID": "s", "bootID": "b", "kernelVersion": "6.1",
                    "osImage": "Debian", "containerRuntimeVersion": "containerd://2.1.4", "kubeletVersion": "v1.35.0",
                    "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "arm64"},
                "images": [{"names": ["docker.io/library/nginx@sha256:00", "docker.io/library/nginx:1.27"], "sizeBytes": 5}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]
            }
        }))
        .expect("a node")
    }

    #[test]
    fn a_node_keeps_all_labels_its_platform_versions_and_image_names() {
        let mut n = big_node();
        n.slim();
        assert_eq!(n.metadata.labels.as_ref().map(BTreeMap::len), Some(3));
        assert!(n.metadata.annotations.is_none() && n.metadata.managed_fields.is_none());
        assert!(n.spec.is_none());
        let status = n.status.expect("status");
        assert!(status.conditions.is_none() && status.addresses.is_none());
        let info = status.node_info.expect("node info");
        assert_eq!(
            (
                info.kubelet_version.as_str(),
                info.container_runtime_version.as_str(),
                info.architecture.as_str()
            ),
            ("v1.35.0", "containerd://2.1.4", "arm64")
        );
        assert!(info.machine_id.is_empty() && info.os_image.is_empty());
        let images = status.images.expect("images");
        assert_eq!(images[0].names.as_ref().map(Vec::len), Some(2));
        assert_eq!(images[0].size_bytes, None);
    }

    #[test]
    fn templates_take_their_runtime_class_selector_and_pods_already_have_it() {
        let mut w = ClusterWriters::new();
        w.add_runtime_class(serde_json::from_value(serde_json::json!({
            "metadata": {"name": "win"}, "handler": "runhcs",
            "scheduling": {"nodeSelector": {"kubernetes.io/os": "windows"}, "tolerations": [{"key": "os", "operator": "Exists"}]}
        })).expect("a runtime class"));
        let state = w.state(false);
        let workload = |kind: &str| crate::workload::Workload {
            kind: kind.into(),
            namespace: None,
            name: "w".into(),
            spec: serde_json::from_value(
                serde_json::json!({"containers": [], "runtimeClassName": "win"}),
            )
            .expect("spec"),
            mirror: false,
        };
        let linux = [Platform::linux_amd64()];
        let deployment = state.placement(&state.constraints(&workload("Deployment")), &linux);
        assert_eq!(
            deployment.platforms,
            [Platform::new("windows", "amd64", None)]
        );
        let pod = state.placement(&state.constraints(&workload("Pod")), &linux);
        assert_eq!(pod.platforms, linux);
    }

    #[test]
    fn with_nodes_the_platforms_are_those_of_the_nodes_the_pod_can_land_on() {
        let mut w = ClusterWriters::new();
        w.add_node(big_node());
        let any = Constraints::default();
        let amd64 = [Platform::linux_amd64()];
        let watched = w.state(true).placement(&any, &amd64);
        assert_eq!(watched.platforms, [Platform::new("linux", "arm64", None)]);
        assert_eq!(watched.eligible().map(|e| e.nodes.len()), Some(1));
        // Not watched: the configured platforms.
        assert_eq!(w.state(false).placement(&any, &amd64).platforms, amd64);
        // No node admits the pod: the configured and the nodes' platforms are pseudo-nodes.
        let spec = serde_json::json!({"containers": [], "nodeSelector": {"pool": "b"}});
        let elsewhere = Constraints::of(&serde_json::from_value(spec).expect("spec"));
        let pending = w.state(true).placement(&elsewhere, &amd64);
        assert_eq!(pending.eligible(), None);
        assert_eq!(
            pending.platforms,
            [
                Platform::linux_amd64(),
                Platform::new("linux", "arm64", None)
            ]
        );
    }
}
