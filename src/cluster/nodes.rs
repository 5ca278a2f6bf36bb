//! The Node store of `--watch-nodes`: each node's labels (all of them, for node
//! affinity), name, platform, kubelet version, runtime and the image names its
//! `status.images` reports, kept compact. Every label string and image name is stored
//! once and referred to by number, so 5,000 nodes that mostly run the same images cost
//! little more than their distinct names.
//!
//! Reviews ask two things: which nodes a pod's constraints admit (cached per constraint
//! set until a node's labels change), and which of those report an image.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use k8s_openapi::api::core::v1::Node;
use kube::runtime::watcher;

use crate::platform::Platform;
use crate::reference::Reference;
use crate::scheduling::{
    ARCH_LABEL, Constraints, Eligible, KubeletVersion, NodeView, OS_LABEL, image_key,
};

/// Constraint sets whose eligible nodes are remembered; past this the memo starts over.
const PLACEMENT_MEMO: usize = 4096;

/// Strings stored once, counted by their users; a string no node uses is dropped.
#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<Arc<str>, u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
}

#[derive(Debug)]
struct Slot {
    text: Arc<str>,
    users: u32,
}

impl Interner {
    fn acquire(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            if let Some(slot) = self.slots.get_mut(id as usize) {
                slot.users += 1;
            }
            return id;
        }
        let text: Arc<str> = Arc::from(s);
        let slot = Slot {
            text: text.clone(),
            users: 1,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = slot;
                id
            }
            None => {
                self.slots.push(slot);
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.ids.insert(text, id);
        id
    }

    fn release(&mut self, id: u32) {
        let Some(slot) = self.slots.get_mut(id as usize) else {
            return;
        };
        slot.users = slot.users.saturating_sub(1);
        if slot.users == 0 {
            self.ids.remove(&slot.text);
            slot.text = Arc::from("");
            self.free.push(id);
        }
    }

    fn find(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    fn get(&self, id: u32) -> &str {
        self.slots.get(id as usize).map_or("", |s| &s.text)
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    /// Heap bytes, roughly: the strings, the map's and the slots' tables.
    fn heap_bytes(&self) -> usize {
        let strings: usize = self.ids.keys().map(|s| s.len() + 16).sum();
        let map = self.ids.capacity() * (std::mem::size_of::<(Arc<str>, u32)>() + 1);
        let slots = self.slots.capacity() * std::mem::size_of::<Slot>();
        strings + map + slots + self.free.capacity() * 4
    }
}

/// What one node contributes, as numbers into the table's interners.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    /// (key, value) string ids, sorted by key id.
    labels: Box<[(u32, u32)]>,
    os: Option<u32>,
    arch: Option<u32>,
    kubelet: Option<KubeletVersion>,
    runtime: Box<str>,
    /// Image name ids, sorted and distinct.
    images: Box<[u32]>,
}

impl Entry {
    fn heap_bytes(&self) -> usize {
        self.labels.len() * 8 + self.images.len() * 4 + self.runtime.len()
    }
}

/// A node read from the API, before it is interned.
#[derive(Debug)]
struct Facts {
    name: String,
    labels: Vec<(String, String)>,
    os: Option<String>,
    arch: Option<String>,
    kubelet: Option<KubeletVersion>,
    runtime: String,
    images: Vec<String>,
}

impl Facts {
    fn of(node: &Node) -> Option<Self> {
        let name = node.metadata.name.clone().filter(|n| !n.is_empty())?;
        let labels: Vec<(String, String)> = node
            .metadata
            .labels
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let info = node.status.as_ref().and_then(|s| s.node_info.as_ref());
        let label = |key: &str| {
            labels
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let nonempty = |s: &String| (!s.is_empty()).then(|| s.clone());
        let os = label(OS_LABEL).or_else(|| info.and_then(|i| nonempty(&i.operating_system)));
        let arch = label(ARCH_LABEL).or_else(|| info.and_then(|i| nonempty(&i.architecture)));
        let images = node
            .status
            .as_ref()
            .and_then(|s| s.images.as_ref())
            .into_iter()
            .flatten()
            .flat_map(|i| i.names.iter().flatten())
            .map(|name| normalized_image_name(name))
            .collect();
        Some(Self {
            name,
            labels,
            os,
            arch,
            kubelet: info.and_then(|i| KubeletVersion::parse(&i.kubelet_version)),
            runtime: info
                .map(|i| i.container_runtime_version.clone())
                .unwrap_or_default(),
            images,
        })
    }
}

/// A `status.images` name in the form a pod's reference is looked up by: containerd
/// already reports `docker.io/library/nginx:1.27` and `…@sha256:…`; another runtime's
/// short form is normalized the same way, and what does not parse is kept as written.
fn normalized_image_name(name: &str) -> String {
    match Reference::parse(name) {
        Ok(r) => image_key(&r),
        Err(_) => name.to_string(),
    }
}

#[derive(Debug, Default)]
struct Table {
    nodes: HashMap<Arc<str>, Entry>,
    strings: Interner,
    images: Interner,
}

impl Table {
    /// Insert or replace a node; true when what scheduling reads of it changed.
    fn upsert(&mut self, facts: Facts) -> bool {
        let mut labels: Vec<(u32, u32)> = facts
            .labels
            .iter()
            .map(|(k, v)| (self.strings.acquire(k), self.strings.acquire(v)))
            .collect();
        labels.sort_unstable();
        let os = facts.os.as_deref().map(|s| self.strings.acquire(s));
        let arch = facts.arch.as_deref().map(|s| self.strings.acquire(s));
        let mut images: Vec<u32> = Vec::with_capacity(facts.images.len());
        for name in &facts.images {
            let id = self.images.acquire(name);
            match images.binary_search(&id) {
                Ok(_) => self.images.release(id),
                Err(at) => images.insert(at, id),
            }
        }
        let entry = Entry {
            labels: labels.into_boxed_slice(),
            os,
            arch,
            kubelet: facts.kubelet,
            runtime: facts.runtime.into_boxed_str(),
            images: images.into_boxed_slice(),
        };
        // Ids are acquired before the old entry's are released, so a string both use
        // keeps its id and the two can be compared by id.
        let name: Arc<str> = Arc::from(facts.name);
        let scheduling_changed = match self.nodes.get(&name) {
            Some(old) => old.labels != entry.labels || old.os != entry.os || old.arch != entry.arch,
            None => true,
        };
        if let Some(old) = self.nodes.insert(name, entry) {
            self.release(&old);
        }
        scheduling_changed
    }

    fn release(&mut self, entry: &Entry) {
        for &(k, v) in &*entry.labels {
            self.strings.release(k);
            self.strings.release(v);
        }
        for id in entry.os.iter().chain(&entry.arch) {
            self.strings.release(*id);
        }
        for &id in &*entry.images {
            self.images.release(id);
        }
    }

    fn remove(&mut self, name: &str) -> bool {
        match self.nodes.remove(name) {
            Some(old) => {
                self.release(&old);
                true
            }
            None => false,
        }
    }

    fn platform(&self, entry: &Entry) -> Option<Platform> {
        let os = self.strings.get(entry.os?);
        let arch = self.strings.get(entry.arch?);
        (!os.is_empty() && !arch.is_empty()).then(|| Platform::new(os, arch, None))
    }
}

/// Which of `nodes` the constraints admit, and their platforms; `None` when none does.
fn eligible_among<'a>(
    table: &'a Table,
    constraints: &Constraints,
    nodes: impl Iterator<Item = (&'a Arc<str>, &'a Entry)>,
) -> Option<Arc<Eligible>> {
    let mut eligible = Eligible::default();
    for (name, entry) in nodes {
        let view = View { table, name, entry };
        if !constraints.admits(&view) {
            continue;
        }
        eligible.nodes.push(name.clone());
        if let Some(p) = table.platform(entry)
            && !eligible.platforms.contains(&p)
        {
            eligible.platforms.push(p);
        }
    }
    eligible.nodes.sort();
    eligible.platforms.sort();
    (!eligible.nodes.is_empty()).then(|| Arc::new(eligible))
}

/// One node of the table, as the scheduling rules read it.
struct View<'a> {
    table: &'a Table,
    name: &'a str,
    entry: &'a Entry,
}

impl NodeView for View<'_> {
    fn label(&self, key: &str) -> Option<&str> {
        let key = self.table.strings.find(key)?;
        let at = self
            .entry
            .labels
            .binary_search_by_key(&key, |(k, _)| *k)
            .ok()?;
        Some(self.table.strings.get(self.entry.labels[at].1))
    }

    fn name(&self) -> &str {
        self.name
    }

    fn os(&self) -> Option<&str> {
        self.entry.os.map(|id| self.table.strings.get(id))
    }
}

#[derive(Debug, Default)]
struct Memo {
    generation: u64,
    placements: HashMap<Constraints, Option<Arc<Eligible>>>,
}

/// What the store holds, for the start-up log and the memory budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeStats {
    pub nodes: usize,
    /// Distinct image names across all nodes.
    pub image_names: usize,
    /// (node, image name) pairs.
    pub image_refs: usize,
    /// Distinct label keys and values.
    pub strings: usize,
    /// Heap bytes of the table, roughly.
    pub heap_bytes: usize,
}

/// The Node store, shared and cheap to clone.
#[derive(Debug, Clone)]
pub struct NodeIndex {
    table: Arc<RwLock<Table>>,
    /// A table filling during a re-list (`Init` … `InitDone`), swapped in when complete.
    pending: Arc<Mutex<Option<Table>>>,
    /// Bumped whenever what scheduling reads changes (labels, platform, the node set).
    generation: Arc<AtomicU64>,
    memo: Arc<Mutex<Memo>>,
    synced: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Default for NodeIndex {
    fn default() -> Self {
        Self {
            table: Arc::default(),
            pending: Arc::default(),
            generation: Arc::default(),
            memo: Arc::default(),
            synced: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }
}

impl NodeIndex {
    /// Apply one watch event, as kube's reflector store does: a re-list fills a new
    /// table that replaces the old one at `InitDone`.
    pub fn apply(&self, event: watcher::Event<Node>) {
        match event {
            watcher::Event::Apply(node) => self.insert(&node),
            watcher::Event::Delete(node) => {
                if let Some(name) = node.metadata.name.as_deref() {
                    self.remove(name);
                }
            }
            watcher::Event::Init => {
                *self.pending.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(Table::default());
            }
            watcher::Event::InitApply(node) => {
                let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
                if let (Some(table), Some(facts)) = (pending.as_mut(), Facts::of(&node)) {
                    table.upsert(facts);
                }
            }
            watcher::Event::InitDone => {
                let fresh = self
                    .pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                if let Some(fresh) = fresh {
                    *self.write() = fresh;
                    self.changed();
                }
                self.synced.send_replace(true);
            }
        }
    }

    /// Add or replace one node (tests and `pullgate audit` fill the store this way).
    pub fn insert(&self, node: &Node) {
        if let Some(facts) = Facts::of(node)
            && self.write().upsert(facts)
        {
            self.changed();
        }
    }

    pub fn remove(&self, name: &str) {
        if self.write().remove(name) {
            self.changed();
        }
    }

    /// Mark the store complete without a watch (a hand-filled store).
    pub fn mark_synced(&self) {
        self.synced.send_replace(true);
    }

    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Resolves once the first full list is in.
    pub async fn wait_until_synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|synced| *synced).await;
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    pub fn len(&self) -> usize {
        self.read().nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The distinct platforms of all nodes, sorted.
    pub fn platforms(&self) -> Vec<Platform> {
        let table = self.read();
        let mut out: Vec<Platform> = Vec::new();
        for entry in table.nodes.values() {
            if let Some(p) = table.platform(entry)
                && !out.contains(&p)
            {
                out.push(p);
            }
        }
        out.sort();
        out
    }

    /// The nodes `constraints` admit and their platforms; `None` when no node does.
    /// Remembered per constraint set until a node's labels (or the set of nodes) change.
    pub fn eligible(&self, constraints: &Constraints) -> Option<Arc<Eligible>> {
        // A pod bound to named nodes (a DaemonSet's) is answered from those nodes alone,
        // and not remembered: each such pod names its own.
        if let Some(names) = constraints.named_nodes() {
            let table = self.read();
            let found = names
                .into_iter()
                .filter_map(|name| table.nodes.get_key_value(name));
            return eligible_among(&table, constraints, found);
        }
        let generation = self.generation.load(Ordering::SeqCst);
        {
            let memo = self.memo.lock().unwrap_or_else(PoisonError::into_inner);
            if memo.generation == generation
                && let Some(found) = memo.placements.get(constraints)
            {
                return found.clone();
            }
        }
        let found = self.compute_eligible(constraints);
        let mut memo = self.memo.lock().unwrap_or_else(PoisonError::into_inner);
        if memo.generation != generation || memo.placements.len() >= PLACEMENT_MEMO {
            memo.placements.clear();
            memo.generation = generation;
        }
        // A change while computing makes this answer stale: it is not remembered.
        if self.generation.load(Ordering::SeqCst) == generation {
            memo.placements.insert(constraints.clone(), found.clone());
        }
        found
    }

    fn compute_eligible(&self, constraints: &Constraints) -> Option<Arc<Eligible>> {
        let table = self.read();
        eligible_among(&table, constraints, table.nodes.iter())
    }

    /// The kubelet version of each of `eligible`'s nodes whose `status.images` names
    /// `key` (see [`image_key`]).
    pub fn holders(&self, eligible: &Eligible, key: &str) -> Vec<Option<KubeletVersion>> {
        let table = self.read();
        let Some(id) = table.images.find(key) else {
            return Vec::new();
        };
        eligible
            .nodes
            .iter()
            .filter_map(|name| table.nodes.get(name))
            .filter(|entry| entry.images.binary_search(&id).is_ok())
            .map(|entry| entry.kubelet)
            .collect()
    }

    /// The container runtime each node reports (`containerd://2.1.4`), by node.
    pub fn runtime(&self, node: &str) -> Option<String> {
        self.read().nodes.get(node).map(|e| e.runtime.to_string())
    }

    pub fn stats(&self) -> NodeStats {
        let table = self.read();
        let entries: usize = table
            .nodes
            .iter()
            .map(|(name, e)| {
                name.len() + 16 + e.heap_bytes() + std::mem::size_of::<(Arc<str>, Entry)>() + 1
            })
            .sum();
        NodeStats {
            nodes: table.nodes.len(),
            image_names: table.images.len(),
            image_refs: table.nodes.values().map(|e| e.images.len()).sum(),
            strings: table.strings.len(),
            heap_bytes: entries + table.strings.heap_bytes() + table.images.heap_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerImage, NodeStatus, NodeSystemInfo};
    use kube::api::ObjectMeta;
    use std::collections::BTreeMap;

    fn node(name: &str, arch: &str, labels: &[(&str, &str)], images: &[&[&str]]) -> Node {
        let mut all: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        all.insert(OS_LABEL.into(), "linux".into());
        all.insert(ARCH_LABEL.into(), arch.into());
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(all),
                ..Default::default()
            },
            status: Some(NodeStatus {
                node_info: Some(NodeSystemInfo {
                    kubelet_version: "v1.34.1".into(),
                    container_runtime_version: "containerd://2.1.4".into(),
                    ..Default::default()
                }),
                images: Some(
                    images
                        .iter()
                        .map(|names| ContainerImage {
                            names: Some(names.iter().map(|n| n.to_string()).collect()),
                            size_bytes: Some(1),
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn by_arch(arch: &str) -> Constraints {
        let spec = serde_json::json!({"containers": [], "nodeSelector": {ARCH_LABEL: arch}});
        Constraints::of(&serde_json::from_value(spec).expect("spec"))
    }

    fn names(e: &Eligible) -> Vec<&str> {
        e.nodes.iter().map(|n| &**n).collect()
    }

    #[test]
    fn eligible_nodes_follow_label_changes_and_deletions() {
        let index = NodeIndex::default();
        index.insert(&node("a", "amd64", &[], &[]));
        index.insert(&node("b", "arm64", &[], &[]));
        let arm = by_arch("arm64");
        let e = index.eligible(&arm).expect("b");
        assert_eq!(names(&e), ["b"]);
        assert_eq!(e.platforms, [Platform::new("linux", "arm64", None)]);
        // A relabeled node is seen at once, though the answer was remembered.
        index.insert(&node("a", "arm64", &[], &[]));
        assert_eq!(names(&index.eligible(&arm).expect("a, b")), ["a", "b"]);
        index.remove("a");
        index.remove("b");
        assert_eq!(index.eligible(&arm), None);
        assert!(index.is_empty());
        assert_eq!(index.stats().strings, 0, "strings no node uses are dropped");
    }

    #[test]
    fn a_pod_pinned_by_name_is_answered_from_its_node() {
        let index = NodeIndex::default();
        index.insert(&node("a", "amd64", &[], &[]));
        index.insert(&node("b", "arm64", &[], &[]));
        let pinned = |name: &str, arch: &str| {
            let spec = serde_json::json!({"containers": [], "nodeSelector": {ARCH_LABEL: arch},
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [name]}]}]}}}});
            Constraints::of(&serde_json::from_value(spec).expect("spec"))
        };
        let e = index.eligible(&pinned("b", "arm64")).expect("b");
        assert_eq!(names(&e), ["b"]);
        assert_eq!(e.platforms, [Platform::new("linux", "arm64", None)]);
        // Named, but the rest of the constraints still apply.
        assert_eq!(index.eligible(&pinned("b", "amd64")), None);
        assert_eq!(index.eligible(&pinned("unknown", "amd64")), None);
        assert!(index.memo.lock().expect("memo").placements.is_empty());
    }

    #[test]
    fn a_node_without_platform_labels_takes_them_from_node_info() {
        let index = NodeIndex::default();
        let mut n = node("w", "amd64", &[], &[]);
        n.metadata.labels = None;
        if let Some(info) = n.status.as_mut().and_then(|s| s.node_info.as_mut()) {
            info.operating_system = "windows".into();
            info.architecture = "amd64".into();
        }
        index.insert(&n);
        assert_eq!(index.platforms(), [Platform::new("windows", "amd64", None)]);
        let spec = serde_json::json!({"containers": [], "os": {"name": "windows"}});
        let windows = Constraints::of(&serde_json::from_value(spec).expect("spec"));
        assert!(index.eligible(&windows).is_some());
        // A nodeSelector reads labels only, as the scheduler does.
        assert_eq!(index.eligible(&by_arch("amd64")), None);
    }

    #[test]
    fn holders_are_found_by_tag_or_digest_among_eligible_nodes() {
        let digest = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
        let nginx = [
            &*format!("docker.io/library/nginx@{digest}"),
            "docker.io/library/nginx:1.27",
        ];
        let index = NodeIndex::default();
        index.insert(&node("a", "amd64", &[], &[&nginx]));
        index.insert(&node("b", "amd64", &[], &[&["nginx:1.27"]]));
        index.insert(&node("c", "arm64", &[], &[&nginx]));
        index.insert(&node("d", "amd64", &[], &[]));
        let e = index.eligible(&by_arch("amd64")).expect("a, b, d");
        assert_eq!(index.holders(&e, "docker.io/library/nginx:1.27").len(), 2);
        let by_digest = format!("docker.io/library/nginx@{digest}");
        assert_eq!(index.holders(&e, &by_digest), [Some(KubeletVersion(1, 34))]);
        assert!(index.holders(&e, "docker.io/library/nginx:1.28").is_empty());
        assert_eq!(index.runtime("a").as_deref(), Some("containerd://2.1.4"));
    }

    #[test]
    fn an_image_change_alone_keeps_the_remembered_placement() {
        let index = NodeIndex::default();
        index.insert(&node("a", "amd64", &[], &[&["r.io/x:1"]]));
        let before = index.generation.load(Ordering::SeqCst);
        index.insert(&node("a", "amd64", &[], &[&["r.io/x:2"]]));
        assert_eq!(index.generation.load(Ordering::SeqCst), before);
        let e = index.eligible(&by_arch("amd64")).expect("a");
        assert!(index.holders(&e, "r.io/x:1").is_empty());
        assert_eq!(index.holders(&e, "r.io/x:2").len(), 1);
        assert_eq!(index.stats().image_names, 1, "the old name is dropped");
    }

    #[test]
    fn a_relist_replaces_the_store_when_it_is_complete() {
        let index = NodeIndex::default();
        index.insert(&node("gone", "amd64", &[], &[]));
        assert!(!index.is_synced());
        index.apply(watcher::Event::Init);
        index.apply(watcher::Event::InitApply(node("new", "arm64", &[], &[])));
        assert_eq!(index.platforms(), [Platform::linux_amd64()], "not yet");
        index.apply(watcher::Event::InitDone);
        assert!(index.is_synced());
        assert_eq!(index.platforms(), [Platform::new("linux", "arm64", None)]);
        assert_eq!(index.len(), 1);
        index.apply(watcher::Event::Delete(node("new", "arm64", &[], &[])));
        assert!(index.is_empty());
    }

    /// The budget of `--watch-nodes`: 5,000 nodes with 40 labels and 50 images each
    /// (a digest and a tag name per image), drawn from 500 distinct images.
    #[test]
    fn five_thousand_nodes_with_fifty_images_each_stay_small() {
        let index = NodeIndex::default();
        let images: Vec<[String; 2]> = (0..500)
            .map(|i| {
                [
                    format!("registry.example.com/team{}/app{i}@sha256:{i:064x}", i % 40),
                    format!("registry.example.com/team{}/app{i}:v1.{i}", i % 40),
                ]
            })
            .collect();
        for n in 0..5000usize {
            let labels: Vec<(String, String)> = (0..38)
                .map(|l| {
                    (
                        format!("example.com/label-{l}"),
                        format!("value-{}", (n + l) % 7),
                    )
                })
                .chain([("kubernetes.io/hostname".to_string(), format!("node-{n}"))])
                .collect();
            let labels: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let held: Vec<Vec<&str>> = (0..50)
                .map(|i| {
                    images[(n * 7 + i * 13) % images.len()]
                        .iter()
                        .map(String::as_str)
                        .collect()
                })
                .collect();
            let held: Vec<&[&str]> = held.iter().map(Vec::as_slice).collect();
            index.insert(&node(&format!("node-{n}"), "amd64", &labels, &held));
        }
        let stats = index.stats();
        println!("{stats:?}");
        let all = index.eligible(&by_arch("amd64")).expect("every node");
        assert_eq!(all.nodes.len(), 5000);
        assert_eq!(index.holders(&all, &images[3][1]).len(), 500);
        assert_eq!(stats.nodes, 5000);
        assert_eq!(stats.image_refs, 5000 * 100);
        assert!(stats.heap_bytes < 8 << 20, "{stats:?}");
    }
}
