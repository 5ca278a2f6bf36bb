//! Where a pod can run, and so which platforms its images must pull on (ARCHITECTURE.md
//! §3). Pure: a pod spec's node constraints, evaluated on nodes or on platforms.
//!
//! The scheduler admits a node when `spec.nodeSelector` and the required node affinity
//! both match it (`k8s.io/component-helpers/scheduling/corev1/nodeaffinity`
//! `RequiredNodeAffinity.Match`); the kubelet then refuses a pod whose `spec.os.name` is
//! not the node's OS (`pkg/kubelet/lifecycle/predicate.go`, `PodOSNotSupported`). A pod
//! bound by `spec.nodeName` runs on that node only.
//!
//! Without nodes, each configured platform stands for "some node of this platform": its
//! `kubernetes.io/os` and `kubernetes.io/arch` labels are known, every other label and the
//! node's name are not, and a requirement on them could hold.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, PodSpec};

use crate::platform::Platform;
use crate::reference::Reference;
use crate::verdict::{Finding, NodeCopies, Verdict};
use crate::workload::PodImage;

/// `core/v1/well_known_labels.go` `LabelOSStable` / `LabelArchStable`.
pub const OS_LABEL: &str = "kubernetes.io/os";
pub const ARCH_LABEL: &str = "kubernetes.io/arch";
/// The deprecated labels the kubelet still sets next to them (`kubelet_node_status.go
/// initialNode`): a selector on them is as good a platform constraint.
const BETA_OS_LABEL: &str = "beta.kubernetes.io/os";
const BETA_ARCH_LABEL: &str = "beta.kubernetes.io/arch";
/// The one field `matchFields` may name (`ValidateNodeFieldSelectorRequirement`).
const NODE_NAME_FIELD: &str = "metadata.name";
/// Distinct OS and architecture values considered when a pod pins platforms outside the
/// known set: a spec lists a handful, and a hostile one must not make a huge product.
const MAX_PINNED_VALUES: usize = 8;

/// A node as the scheduler and the kubelet match it.
pub trait NodeView {
    fn label(&self, key: &str) -> Option<&str>;
    fn name(&self) -> &str;
    /// The node's OS as the kubelet knows it (its `kubernetes.io/os` label, else
    /// `status.nodeInfo.operatingSystem`).
    fn os(&self) -> Option<&str>;
}

/// A `matchExpressions` operator with its values, as `labels.NewRequirement` accepts them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Operator {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Requirement {
    key: String,
    operator: Operator,
}

impl Requirement {
    /// `nodeaffinity.go nodeSelectorRequirementsAsSelector` → `labels.NewRequirement`:
    /// an unknown operator, a wrong number of values, a non-integer for `Gt`/`Lt` or an
    /// invalid key or value is a parse error, and a term with one matches no node.
    fn parse(r: &NodeSelectorRequirement) -> Option<Self> {
        let values = r.values.clone().unwrap_or_default();
        if !is_qualified_name(&r.key) || !values.iter().all(|v| is_label_value(v)) {
            return None;
        }
        let integer = |values: &[String]| match values {
            [one] => one.parse::<i64>().ok(),
            _ => None,
        };
        let operator = match r.operator.as_str() {
            "In" if !values.is_empty() => Operator::In(values),
            "NotIn" if !values.is_empty() => Operator::NotIn(values),
            "Exists" if values.is_empty() => Operator::Exists,
            "DoesNotExist" if values.is_empty() => Operator::DoesNotExist,
            "Gt" => Operator::Gt(integer(&values)?),
            "Lt" => Operator::Lt(integer(&values)?),
            _ => return None,
        };
        Some(Self {
            key: r.key.clone(),
            operator,
        })
    }

    /// `apimachinery/pkg/labels/selector.go Requirement.Matches`: `NotIn` and
    /// `DoesNotExist` match a node without the label; `Gt`/`Lt` need an int64 label.
    fn matches(&self, value: Option<&str>) -> bool {
        match (&self.operator, value) {
            (Operator::In(values), Some(v)) => values.iter().any(|x| x == v),
            (Operator::In(_), None) => false,
            (Operator::NotIn(values), Some(v)) => !values.iter().any(|x| x == v),
            (Operator::NotIn(_), None) => true,
            (Operator::Exists, v) => v.is_some(),
            (Operator::DoesNotExist, v) => v.is_none(),
            (Operator::Gt(n), Some(v)) => v.parse::<i64>().is_ok_and(|v| v > *n),
            (Operator::Lt(n), Some(v)) => v.parse::<i64>().is_ok_and(|v| v < *n),
            (Operator::Gt(_) | Operator::Lt(_), None) => false,
        }
    }

    /// The values this requirement accepts outright (`In`), for platforms it may pin.
    fn accepted(&self) -> &[String] {
        match &self.operator {
            Operator::In(values) => values,
            _ => &[],
        }
    }
}

/// `matchFields`: `In`/`NotIn` with exactly one value (`nodeSelectorRequirementsAsFieldSelector`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FieldRequirement {
    key: String,
    value: String,
    equal: bool,
}

impl FieldRequirement {
    fn parse(r: &NodeSelectorRequirement) -> Option<Self> {
        let value = match r.values.as_deref() {
            Some([one]) => one.clone(),
            _ => return None,
        };
        let equal = match r.operator.as_str() {
            "In" => true,
            "NotIn" => false,
            _ => return None,
        };
        Some(Self {
            key: r.key.clone(),
            value,
            equal,
        })
    }

    /// `fields.Set.Get` answers "" for a field the node does not have.
    fn matches(&self, node_name: &str) -> bool {
        let actual = if self.key == NODE_NAME_FIELD {
            node_name
        } else {
            ""
        };
        (actual == self.value) == self.equal
    }
}

/// One `nodeSelectorTerms` entry: its expressions and fields, ANDed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Term {
    labels: Vec<Requirement>,
    fields: Vec<FieldRequirement>,
}

impl Term {
    /// `None` for a term with a parse error; the caller drops empty terms first.
    fn parse(term: &NodeSelectorTerm) -> Option<Self> {
        let labels = term
            .match_expressions
            .iter()
            .flatten()
            .map(Requirement::parse)
            .collect::<Option<Vec<_>>>()?;
        let fields = term
            .match_fields
            .iter()
            .flatten()
            .map(FieldRequirement::parse)
            .collect::<Option<Vec<_>>>()?;
        Some(Self { labels, fields })
    }
}

/// What decides where a pod may run: `spec.nodeSelector` ∧ required node affinity ∧
/// `spec.os.name` ∧ `spec.nodeName`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Constraints {
    node_selector: BTreeMap<String, String>,
    /// `None` without required node affinity; otherwise the terms that can match (empty
    /// terms and terms with parse errors match nothing, so they are left out; no term
    /// left means no node).
    affinity: Option<Vec<Term>>,
    os: Option<String>,
    node_name: Option<String>,
}

impl Constraints {
    pub fn of(spec: &PodSpec) -> Self {
        let affinity = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| {
                n.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|selector| {
                selector
                    .node_selector_terms
                    .iter()
                    // nodeaffinity.go isEmptyNodeSelectorTerm: "nil or empty term selects no objects".
                    .filter(|t| {
                        !t.match_expressions.as_ref().is_none_or(Vec::is_empty)
                            || !t.match_fields.as_ref().is_none_or(Vec::is_empty)
                    })
                    .filter_map(Term::parse)
                    .collect()
            });
        Self {
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            affinity,
            os: spec
                .os
                .as_ref()
                .map(|o| o.name.clone())
                .filter(|n| !n.is_empty()),
            node_name: spec.node_name.clone().filter(|n| !n.is_empty()),
        }
    }

    /// A RuntimeClass's `scheduling.nodeSelector`, merged as the RuntimeClass admission
    /// plugin merges it into a Pod (`plugin/pkg/admission/runtimeclass setScheduling`). A
    /// key the spec already sets keeps the spec's value: with a different one the
    /// apiserver refuses the pod ("conflict"), whatever its images.
    pub fn merge_runtime_class(&mut self, node_selector: &BTreeMap<String, String>) {
        for (key, value) in node_selector {
            self.node_selector
                .entry(key.clone())
                .or_insert_with(|| value.clone());
        }
    }

    /// Would the scheduler place the pod on `node`, and would its kubelet run it there?
    pub fn admits(&self, node: &impl NodeView) -> bool {
        if self.node_name.as_deref().is_some_and(|n| n != node.name()) {
            return false;
        }
        if let Some(os) = &self.os
            && node.os() != Some(os.as_str())
        {
            return false;
        }
        if !self
            .node_selector
            .iter()
            .all(|(k, v)| node.label(k) == Some(v.as_str()))
        {
            return false;
        }
        let Some(terms) = &self.affinity else {
            return true;
        };
        terms.iter().any(|term| {
            term.labels.iter().all(|r| r.matches(node.label(&r.key)))
                // nodeaffinity.go nodeSelectorTerm.match: fields are matched only for a
                // node that has a name.
                && (node.name().is_empty() || term.fields.iter().all(|f| f.matches(node.name())))
        })
    }

    /// Could the pod run on some node of `platform`? Only the platform labels are known
    /// of such a node: a requirement on any other label, or on the node's name, may hold.
    pub fn may_run_on(&self, platform: &Platform) -> bool {
        let known = |key: &str| match key {
            OS_LABEL | BETA_OS_LABEL => Some(platform.os.as_str()),
            ARCH_LABEL | BETA_ARCH_LABEL => Some(platform.architecture.as_str()),
            _ => None,
        };
        let holds = |r: &Requirement| match known(&r.key) {
            Some(value) => r.matches(Some(value)),
            None => true,
        };
        if self.os.as_deref().is_some_and(|os| os != platform.os) {
            return false;
        }
        if !self
            .node_selector
            .iter()
            .all(|(k, v)| known(k).is_none_or(|actual| actual == v))
        {
            return false;
        }
        match &self.affinity {
            None => true,
            Some(terms) => terms.iter().any(|t| t.labels.iter().all(holds)),
        }
    }

    /// The only nodes the pod can land on, when the constraints name them: `nodeName`, or
    /// a `metadata.name In` field in every term (what the DaemonSet controller adds to each
    /// of its pods). Lets a lookup visit those nodes instead of all of them.
    pub fn named_nodes(&self) -> Option<Vec<&str>> {
        if let Some(name) = &self.node_name {
            return Some(vec![name.as_str()]);
        }
        let terms = self.affinity.as_ref()?;
        let mut names = Vec::new();
        for term in terms {
            let named = term
                .fields
                .iter()
                .find(|f| f.equal && f.key == NODE_NAME_FIELD)?;
            if !names.contains(&named.value.as_str()) {
                names.push(named.value.as_str());
            }
        }
        Some(names)
    }

    /// The OS and architecture values the constraints name outright, in order of
    /// appearance: what a pod pinned outside the known platforms must run on.
    fn named_values(&self) -> (Vec<&str>, Vec<&str>) {
        let (mut oses, mut arches) = (Vec::new(), Vec::new());
        for (k, v) in &self.node_selector {
            match k.as_str() {
                OS_LABEL | BETA_OS_LABEL => oses.push(v.as_str()),
                ARCH_LABEL | BETA_ARCH_LABEL => arches.push(v.as_str()),
                _ => {}
            }
        }
        if let Some(os) = &self.os {
            oses.push(os.as_str());
        }
        for term in self.affinity.iter().flatten() {
            for r in &term.labels {
                let values = r.accepted().iter().map(String::as_str);
                match r.key.as_str() {
                    OS_LABEL | BETA_OS_LABEL => oses.extend(values),
                    ARCH_LABEL | BETA_ARCH_LABEL => arches.extend(values),
                    _ => {}
                }
            }
        }
        (oses, arches)
    }
}

/// The nodes a pod can land on, when nodes are known and some satisfy its constraints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Eligible {
    pub nodes: Vec<Arc<str>>,
    /// Their distinct platforms (`kubernetes.io/os` / `kubernetes.io/arch`).
    pub platforms: Vec<Platform>,
}

/// How the platform set of a pod was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Basis {
    /// From the nodes that satisfy the pod's constraints.
    Nodes(Arc<Eligible>),
    /// The known platforms (configured, or the nodes') that the constraints allow.
    Known,
    /// The constraints allow none of the known platforms but name others: the pod can
    /// only run there (a node of that platform may be added by an autoscaler).
    Pinned,
    /// The constraints allow none of the known platforms and name none: platforms are
    /// not checked.
    Unknown,
}

/// The platforms a pod's images must pull on (any one suffices; missing some is a note),
/// and how they were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub platforms: Vec<Platform>,
    pub basis: Basis,
}

impl Placement {
    pub fn on_nodes(eligible: Arc<Eligible>) -> Self {
        Self {
            platforms: eligible.platforms.clone(),
            basis: Basis::Nodes(eligible),
        }
    }

    /// The nodes the pod can land on, when known.
    pub fn eligible(&self) -> Option<&Eligible> {
        match &self.basis {
            Basis::Nodes(e) => Some(e),
            _ => None,
        }
    }

    /// A warning for the review when the platforms could not be decided.
    pub fn warning(&self, known: &[Platform]) -> Option<String> {
        (self.basis == Basis::Unknown).then(|| {
            let known: Vec<String> = known.iter().map(ToString::to_string).collect();
            crate::verdict::excerpt(
                &format!(
                    "pullgate: the pod's node constraints allow none of {}; image platforms not checked",
                    known.join(", ")
                ),
                crate::policy::MAX_WARNING_LEN,
            )
        })
    }
}

/// The platforms of a pod when no node is known to satisfy its constraints: the known
/// platforms it may run on; else the platforms its constraints pin outside them (a
/// `kubernetes.io/arch: arm64` selector in a cluster said to be amd64); else none.
pub fn without_nodes(constraints: &Constraints, known: &[Platform]) -> Placement {
    let fit: Vec<Platform> = known
        .iter()
        .filter(|p| constraints.may_run_on(p))
        .cloned()
        .collect();
    if !fit.is_empty() {
        return Placement {
            platforms: fit,
            basis: Basis::Known,
        };
    }
    let (named_oses, named_arches) = constraints.named_values();
    let mut oses: Vec<&str> = Vec::new();
    let mut arches: Vec<&str> = Vec::new();
    let component = |v: &str| {
        !v.is_empty()
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    let known_oses = known.iter().map(|p| p.os.as_str());
    let known_arches = known.iter().map(|p| p.architecture.as_str());
    for (list, values) in [
        (&mut oses, known_oses.chain(named_oses).collect::<Vec<_>>()),
        (&mut arches, known_arches.chain(named_arches).collect()),
    ] {
        for v in values {
            if component(v) && !list.contains(&v) && list.len() < MAX_PINNED_VALUES {
                list.push(v);
            }
        }
    }
    let mut pinned: Vec<Platform> = Vec::new();
    for os in &oses {
        for arch in &arches {
            // A configured platform keeps its variant; a pinned one has none to say.
            let candidate = known
                .iter()
                .find(|p| p.os == *os && p.architecture == *arch)
                .cloned()
                .unwrap_or_else(|| Platform::new(os, arch, None));
            if !known.contains(&candidate)
                && constraints.may_run_on(&candidate)
                && !pinned.contains(&candidate)
            {
                pinned.push(candidate);
            }
        }
    }
    let basis = if pinned.is_empty() {
        Basis::Unknown
    } else {
        Basis::Pinned
    };
    Placement {
        platforms: pinned,
        basis,
    }
}

/// A kubelet's `major.minor`, from `status.nodeInfo.kubeletVersion` (`v1.35.2-eks-1a2b`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KubeletVersion(pub u16, pub u16);

impl KubeletVersion {
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().strip_prefix('v').unwrap_or(s.trim());
        let mut parts = s.split(['.', '-', '+']);
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Self(major, minor))
    }
}

/// From 1.35 `KubeletEnsureSecretPulledImages` is on by default (KEP-2535): an image
/// pulled with a Secret is pulled again, with the new pod's credentials, unless the pod
/// has a Secret that pulled it (`image_manager.go EnsureImageExists`,
/// `pullmanager MustAttemptImagePull`).
const RECHECKS_CREDENTIALS: KubeletVersion = KubeletVersion(1, 35);
/// From 1.33 (KEP-2535 alpha) `EnsureImageExists` may need the pod's keyring for an
/// image it already has, and a Secret it cannot decode fails that; before, the keyring
/// was built only for a pull (v1.28 `kuberuntime_image.go PullImage`).
const KEYRING_FOR_PRESENT_IMAGES: KubeletVersion = KubeletVersion(1, 33);

/// Does a copy already on a node spare the pod a `verdict` the registry gave? The
/// kubelet uses an `IfNotPresent` image it has without asking the registry
/// (`imagePullPrecheck`), so a deleted tag, a refused credential, a platform or an
/// artifact re-pushed under the tag do not matter there. An invalid reference fails
/// before the node looks (`InvalidImageName`), and a blocked registry is pullgate's
/// policy, not the registry's answer.
pub fn node_copy_survives(verdict: Verdict) -> bool {
    matches!(
        verdict,
        Verdict::NotFound
            | Verdict::Unauthorized
            | Verdict::NoMatchingPlatform
            | Verdict::NotAnImage
            | Verdict::InvalidPullSecret
    )
}

/// The node copies that spare a pod `verdict`, given the kubelet version of each
/// eligible node that holds the image (`None`: unreadable). `None` when none does.
pub fn node_copies(
    verdict: Verdict,
    eligible: usize,
    holders: &[Option<KubeletVersion>],
) -> Option<NodeCopies> {
    if !node_copy_survives(verdict) {
        return None;
    }
    let holding = if verdict == Verdict::InvalidPullSecret {
        holders
            .iter()
            .filter(|v| v.is_some_and(|v| v < KEYRING_FOR_PRESENT_IMAGES))
            .count()
    } else {
        holders.len()
    };
    let recheck_credentials = if verdict == Verdict::Unauthorized {
        holders
            .iter()
            .filter(|v| v.is_none_or(|v| v >= RECHECKS_CREDENTIALS))
            .count()
    } else {
        0
    };
    (holding > 0).then_some(NodeCopies {
        holding,
        eligible,
        recheck_credentials,
    })
}

/// Mark the findings that nodes already holding the image spare (`node_copies`): a
/// failure [`node_copy_survives`], for an `IfNotPresent` image that `holders` reports on
/// some of the `eligible` nodes. `findings` and `images` are in the same order (the
/// checker keeps it). An image no node reports is left as it is: `status.images` lists
/// the 50 largest images only, so absence proves nothing.
pub fn mark_node_copies(
    findings: &mut [Finding],
    images: &[PodImage],
    eligible: &Eligible,
    holders: impl Fn(&str) -> Vec<Option<KubeletVersion>>,
) {
    for (finding, image) in findings.iter_mut().zip(images) {
        if !image.pull_policy.uses_node_copy() || !node_copy_survives(finding.verdict) {
            continue;
        }
        let Ok(reference) = Reference::parse(&image.image) else {
            continue;
        };
        let found = holders(&image_key(&reference));
        finding.node_copies = node_copies(finding.verdict, eligible.nodes.len(), &found);
    }
}

/// The key a node's `status.images[].names` entry is matched by: `name@digest` for a
/// reference with a digest (pulled by digest, its tag ignored), else `name:tag`.
/// containerd reports both forms, fully normalized (`docker.io/library/nginx:1.27`).
pub fn image_key(reference: &Reference) -> String {
    match (reference.digest(), reference.tag()) {
        (Some(digest), _) => format!("{}@{digest}", reference.name()),
        (None, Some(tag)) => format!("{}:{tag}", reference.name()),
        (None, None) => reference.name(),
    }
}

/// `k8s.io/apimachinery/pkg/util/validation IsQualifiedName`: `[prefix/]name`.
fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    prefix.is_none_or(is_dns1123_subdomain) && !name.is_empty() && is_label_value(name)
}

/// `IsValidLabelValue`: empty, or at most 63 alphanumerics, `-`, `_`, `.`, beginning and
/// ending with an alphanumeric.
fn is_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    value.is_empty()
        || (bytes.len() <= 63
            && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')))
}

/// `IsDNS1123Subdomain`: at most 253 lowercase alphanumerics, `-` and `.`, each label
/// beginning and ending with an alphanumeric.
fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            b.first()
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && b.last()
                    .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{ImageKind, PullPolicy};
    use rstest::rstest;
    use serde_json::{Value, json};

    struct TestNode {
        name: &'static str,
        labels: BTreeMap<String, String>,
    }

    impl NodeView for TestNode {
        fn label(&self, key: &str) -> Option<&str> {
            self.labels.get(key).map(String::as_str)
        }
        fn name(&self) -> &str {
            self.name
        }
        fn os(&self) -> Option<&str> {
            self.label(OS_LABEL)
        }
    }

    fn node(name: &'static str, labels: &[(&str, &str)]) -> TestNode {
        TestNode {
            name,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn constraints(spec: Value) -> Constraints {
        let mut spec = spec;
        spec["containers"] = json!([]);
        Constraints::of(&serde_json::from_value(spec).expect("a pod spec"))
    }

    fn required(terms: Value) -> Constraints {
        constraints(json!({"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}))
    }

    fn expr(key: &str, operator: &str, values: &[&str]) -> Value {
        json!({"matchExpressions": [{"key": key, "operator": operator, "values": values}]})
    }

    fn p(s: &str) -> Platform {
        s.parse().expect("platform")
    }

    // apimachinery labels/selector.go Requirement.Matches, one operator at a time.
    #[rstest]
    #[case::in_matches("In", &["a", "b"], Some("b"), true)]
    #[case::in_other_value("In", &["a"], Some("c"), false)]
    #[case::in_needs_the_label("In", &["a"], None, false)]
    #[case::not_in_other_value("NotIn", &["a"], Some("c"), true)]
    #[case::not_in_listed_value("NotIn", &["a"], Some("a"), false)]
    #[case::not_in_matches_a_node_without_the_label("NotIn", &["a"], None, true)]
    #[case::exists("Exists", &[], Some(""), true)]
    #[case::exists_needs_the_label("Exists", &[], None, false)]
    #[case::does_not_exist_matches_a_node_without_it("DoesNotExist", &[], None, true)]
    #[case::does_not_exist_fails_with_it("DoesNotExist", &[], Some("x"), false)]
    #[case::gt("Gt", &["4"], Some("5"), true)]
    #[case::gt_is_strict("Gt", &["5"], Some("5"), false)]
    #[case::gt_needs_an_integer_label("Gt", &["4"], Some("five"), false)]
    #[case::gt_needs_the_label("Gt", &["4"], None, false)]
    #[case::lt_negative("Lt", &["0"], Some("-3"), true)]
    #[case::lt("Lt", &["3"], Some("3"), false)]
    fn operators_match_as_the_label_selector_does(
        #[case] operator: &str,
        #[case] values: &[&str],
        #[case] label: Option<&str>,
        #[case] expected: bool,
    ) {
        let c = required(json!([expr("k", operator, values)]));
        let labels: Vec<(&str, &str)> = label.map(|v| ("k", v)).into_iter().collect();
        assert_eq!(c.admits(&node("n", &labels)), expected);
    }

    // labels.NewRequirement refuses these; a term with one matches no node.
    #[rstest]
    #[case::in_without_values(expr("k", "In", &[]))]
    #[case::exists_with_values(expr("k", "Exists", &["a"]))]
    #[case::gt_two_values(expr("k", "Gt", &["1", "2"]))]
    #[case::gt_not_an_integer(expr("k", "Gt", &["one"]))]
    #[case::unknown_operator(expr("k", "Equals", &["a"]))]
    #[case::invalid_key(expr("-k", "Exists", &[]))]
    #[case::invalid_value(expr("k", "In", &["a b"]))]
    #[case::field_with_two_values(json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n", "m"]}]}))]
    #[case::field_with_exists(json!({"matchFields": [{"key": "metadata.name", "operator": "Exists"}]}))]
    fn a_term_that_does_not_parse_matches_no_node(#[case] term: Value) {
        let n = node("n", &[("k", "1")]);
        assert!(!required(json!([term.clone()])).admits(&n));
        // ...and does not stop another term from matching.
        assert!(required(json!([term, expr("k", "Exists", &[])])).admits(&n));
    }

    #[test]
    fn terms_are_ored_and_empty_terms_match_nothing() {
        let amd = node("a", &[(ARCH_LABEL, "amd64")]);
        let arm = node("b", &[(ARCH_LABEL, "arm64")]);
        let either = required(json!([
            expr(ARCH_LABEL, "In", &["amd64"]),
            expr(ARCH_LABEL, "In", &["arm64"])
        ]));
        assert!(either.admits(&amd) && either.admits(&arm));
        let empty = required(json!([{}, {"matchExpressions": []}]));
        assert!(!empty.admits(&amd));
        let no_terms = required(json!([]));
        assert!(!no_terms.admits(&amd));
        let one_empty = required(json!([{}, expr(ARCH_LABEL, "In", &["arm64"])]));
        assert!(!one_empty.admits(&amd) && one_empty.admits(&arm));
    }

    #[test]
    fn expressions_and_fields_of_a_term_are_anded() {
        let term = json!([{
            "matchExpressions": [{"key": ARCH_LABEL, "operator": "In", "values": ["arm64"]}],
            "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]
        }]);
        let c = required(term);
        assert!(c.admits(&node("n1", &[(ARCH_LABEL, "arm64")])));
        assert!(!c.admits(&node("n2", &[(ARCH_LABEL, "arm64")])));
        assert!(!c.admits(&node("n1", &[(ARCH_LABEL, "amd64")])));
        // nodeaffinity.go: fields are not matched on a node without a name.
        assert!(c.admits(&node("", &[(ARCH_LABEL, "arm64")])));
    }

    #[rstest]
    #[case::in_names_the_node("In", "n1", true)]
    #[case::in_names_another("In", "n2", false)]
    #[case::not_in_names_another("NotIn", "n2", true)]
    #[case::not_in_names_the_node("NotIn", "n1", false)]
    fn match_fields_compare_the_node_name(#[case] op: &str, #[case] value: &str, #[case] ok: bool) {
        let c = required(
            json!([{"matchFields": [{"key": "metadata.name", "operator": op, "values": [value]}]}]),
        );
        assert_eq!(c.admits(&node("n1", &[])), ok);
    }

    #[test]
    fn a_field_other_than_the_name_is_empty() {
        let uid = |op: &str, v: &str| {
            required(
                json!([{"matchFields": [{"key": "metadata.uid", "operator": op, "values": [v]}]}]),
            )
        };
        assert!(!uid("In", "x").admits(&node("n", &[])));
        assert!(uid("NotIn", "x").admits(&node("n", &[])));
    }

    #[test]
    fn node_selector_os_and_node_name_all_apply() {
        let linux_arm = node(
            "n1",
            &[(OS_LABEL, "linux"), (ARCH_LABEL, "arm64"), ("pool", "a")],
        );
        let selector = constraints(json!({"nodeSelector": {"pool": "a"}}));
        assert!(selector.admits(&linux_arm));
        assert!(!selector.admits(&node("n2", &[("pool", "b")])));
        let both = constraints(json!({"nodeSelector": {"pool": "a"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [expr(ARCH_LABEL, "In", &["amd64"])]}}}}));
        assert!(
            !both.admits(&linux_arm),
            "nodeSelector and affinity must both match"
        );
        assert!(!constraints(json!({"os": {"name": "windows"}})).admits(&linux_arm));
        assert!(constraints(json!({"os": {"name": "linux"}})).admits(&linux_arm));
        assert!(!constraints(json!({"nodeName": "n2"})).admits(&linux_arm));
        assert!(constraints(json!({"nodeName": "n1"})).admits(&linux_arm));
    }

    #[test]
    fn a_daemonset_pod_or_a_bound_pod_names_its_nodes() {
        let pinned = |name: &str| json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": [name]}]});
        assert_eq!(
            required(json!([pinned("n1"), pinned("n2"), pinned("n1")])).named_nodes(),
            Some(vec!["n1", "n2"])
        );
        assert_eq!(
            required(json!([pinned("n1"), expr("k", "Exists", &[])])).named_nodes(),
            None
        );
        assert_eq!(
            constraints(json!({"nodeName": "n3"})).named_nodes(),
            Some(vec!["n3"])
        );
        assert_eq!(constraints(json!({})).named_nodes(), None);
    }

    #[test]
    fn a_runtime_class_selector_is_merged_without_overriding_the_spec() {
        let mut c = constraints(json!({"nodeSelector": {"pool": "a"}}));
        c.merge_runtime_class(&BTreeMap::from([
            ("pool".to_string(), "b".to_string()),
            (OS_LABEL.to_string(), "windows".to_string()),
        ]));
        assert!(c.admits(&node("n", &[("pool", "a"), (OS_LABEL, "windows")])));
        assert!(!c.admits(&node("n", &[("pool", "a"), (OS_LABEL, "linux")])));
    }

    fn platforms(list: &[&str]) -> Vec<Platform> {
        list.iter().map(|s| p(s)).collect()
    }

    // Without nodes, each configured platform is a node whose other labels are unknown.
    #[rstest]
    #[case::unconstrained(json!({}), &["linux/amd64", "linux/arm64"], &["linux/amd64", "linux/arm64"], Basis::Known)]
    #[case::selector_narrows(json!({"nodeSelector": {ARCH_LABEL: "arm64"}}), &["linux/amd64", "linux/arm64"], &["linux/arm64"], Basis::Known)]
    #[case::selector_pins_outside(json!({"nodeSelector": {ARCH_LABEL: "arm64"}}), &["linux/amd64"], &["linux/arm64"], Basis::Pinned)]
    #[case::beta_label_pins(json!({"nodeSelector": {"beta.kubernetes.io/arch": "arm64"}}), &["linux/amd64"], &["linux/arm64"], Basis::Pinned)]
    #[case::other_labels_may_hold(json!({"nodeSelector": {"pool": "gpu"}}), &["linux/amd64"], &["linux/amd64"], Basis::Known)]
    #[case::os_field_pins_windows(json!({"os": {"name": "windows"}}), &["linux/amd64"], &["windows/amd64"], Basis::Pinned)]
    #[case::os_field_narrows(json!({"os": {"name": "windows"}}), &["linux/amd64", "windows/amd64"], &["windows/amd64"], Basis::Known)]
    #[case::affinity_in_across_terms(
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            expr(ARCH_LABEL, "In", &["s390x"]), expr(ARCH_LABEL, "In", &["arm64"])]}}}}),
        &["linux/amd64"], &["linux/s390x", "linux/arm64"], Basis::Pinned)]
    #[case::affinity_not_in(
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            expr(ARCH_LABEL, "NotIn", &["arm64"])]}}}}),
        &["linux/amd64", "linux/arm64"], &["linux/amd64"], Basis::Known)]
    #[case::affinity_exists_on_another_label(
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            expr("gpu", "Exists", &[])]}}}}),
        &["linux/amd64"], &["linux/amd64"], Basis::Known)]
    #[case::excluded_and_nothing_named(
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            expr(ARCH_LABEL, "NotIn", &["amd64"])]}}}}),
        &["linux/amd64"], &[], Basis::Unknown)]
    #[case::no_term_matches_anything(
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{}]}}}}),
        &["linux/amd64"], &[], Basis::Unknown)]
    #[case::variant_is_kept(json!({}), &["linux/arm/v6"], &["linux/arm/v6"], Basis::Known)]
    #[case::match_fields_are_unknown_without_nodes(
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}}}),
        &["linux/amd64", "linux/arm64"], &["linux/amd64", "linux/arm64"], Basis::Known)]
    fn without_nodes_the_configured_platforms_are_pseudo_nodes(
        #[case] spec: Value,
        #[case] known: &[&str],
        #[case] expected: &[&str],
        #[case] basis: Basis,
    ) {
        let placement = without_nodes(&constraints(spec), &platforms(known));
        assert_eq!(placement.platforms, platforms(expected));
        assert_eq!(placement.basis, basis);
    }

    #[test]
    fn an_unknown_placement_warns_and_others_do_not() {
        let known = platforms(&["linux/amd64"]);
        let unknown = without_nodes(
            &required(json!([expr(ARCH_LABEL, "NotIn", &["amd64"])])),
            &known,
        );
        let w = unknown.warning(&known).expect("a warning");
        assert!(w.contains("allow none of linux/amd64"), "{w}");
        assert_eq!(
            without_nodes(&constraints(json!({})), &known).warning(&known),
            None
        );
    }

    #[test]
    fn a_hostile_list_of_values_pins_a_bounded_set() {
        let values: Vec<String> = (0..1000).map(|i| format!("arch{i}")).collect();
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        let c = required(json!([
            expr(ARCH_LABEL, "In", &values),
            expr(OS_LABEL, "In", &values)
        ]));
        let placement = without_nodes(&c, &platforms(&["linux/amd64"]));
        assert!(placement.platforms.len() <= MAX_PINNED_VALUES * MAX_PINNED_VALUES);
    }

    #[rstest]
    #[case("v1.35.2", Some(KubeletVersion(1, 35)))]
    #[case("v1.28.15-eks-e71965b", Some(KubeletVersion(1, 28)))]
    #[case("v1.33.0+k3s1", Some(KubeletVersion(1, 33)))]
    #[case("1.34", Some(KubeletVersion(1, 34)))]
    #[case("", None)]
    #[case("vX.Y", None)]
    fn kubelet_versions_are_read_major_minor(#[case] s: &str, #[case] v: Option<KubeletVersion>) {
        assert_eq!(KubeletVersion::parse(s), v);
    }

    const OLD: Option<KubeletVersion> = Some(KubeletVersion(1, 32));
    const MID: Option<KubeletVersion> = Some(KubeletVersion(1, 34));
    const NEW: Option<KubeletVersion> = Some(KubeletVersion(1, 35));

    #[rstest]
    #[case::not_found(Verdict::NotFound, &[OLD, NEW], Some((2, 0)))]
    #[case::platform(Verdict::NoMatchingPlatform, &[NEW], Some((1, 0)))]
    #[case::artifact(Verdict::NotAnImage, &[OLD], Some((1, 0)))]
    #[case::unauthorized_counts_rechecking_kubelets(Verdict::Unauthorized, &[OLD, NEW, None], Some((3, 2)))]
    #[case::unauthorized_on_old_kubelets(Verdict::Unauthorized, &[OLD], Some((1, 0)))]
    #[case::broken_secret_only_before_1_33(Verdict::InvalidPullSecret, &[OLD, MID, NEW, None], Some((1, 0)))]
    #[case::broken_secret_on_new_kubelets(Verdict::InvalidPullSecret, &[MID, NEW], None)]
    #[case::no_holder(Verdict::NotFound, &[], None)]
    #[case::invalid_reference(Verdict::InvalidReference, &[OLD], None)]
    #[case::blocked_registry(Verdict::BlockedRegistry, &[OLD], None)]
    #[case::outage(Verdict::RegistryUnavailable, &[OLD], None)]
    #[case::pullable(Verdict::Pullable, &[OLD], None)]
    fn which_failures_a_node_copy_survives(
        #[case] verdict: Verdict,
        #[case] holders: &[Option<KubeletVersion>],
        #[case] expected: Option<(usize, usize)>,
    ) {
        let copies = node_copies(verdict, 7, holders);
        assert_eq!(copies.map(|c| (c.holding, c.recheck_credentials)), expected);
        assert!(copies.is_none_or(|c| c.eligible == 7));
    }

    fn finding(verdict: Verdict) -> Finding {
        Finding {
            image: String::new(),
            reference: None,
            container: Some("app".into()),
            volume: None,
            verdict,
            digest: None,
            message: String::new(),
            note: None,
            node_copies: None,
        }
    }

    fn image(image: &str, pull_policy: PullPolicy) -> PodImage {
        PodImage {
            kind: ImageKind::Regular,
            name: "app".into(),
            image: image.into(),
            pull_policy,
        }
    }

    #[test]
    fn only_if_not_present_images_held_by_eligible_nodes_are_spared() {
        let eligible = Eligible {
            nodes: vec![Arc::from("a"), Arc::from("b"), Arc::from("c")],
            platforms: vec![Platform::linux_amd64()],
        };
        let images = [
            image("nginx:1.27", PullPolicy::IfNotPresent),
            image("r.io/app:gone", PullPolicy::Always),
            image(
                "r.io/app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                PullPolicy::IfNotPresent,
            ),
            image("r.io/absent:1", PullPolicy::IfNotPresent),
        ];
        let mut findings = [
            finding(Verdict::NotFound),
            finding(Verdict::NotFound),
            finding(Verdict::Unauthorized),
            finding(Verdict::NotFound),
        ];
        let mut asked = Vec::new();
        let asked_cell = std::cell::RefCell::new(&mut asked);
        mark_node_copies(&mut findings, &images, &eligible, |key| {
            asked_cell.borrow_mut().push(key.to_string());
            match key {
                "docker.io/library/nginx:1.27" => vec![OLD, OLD],
                "r.io/app:gone" => vec![OLD],
                k if k.starts_with("r.io/app@sha256:") => vec![NEW],
                _ => vec![],
            }
        });
        let copies: Vec<Option<(usize, usize, usize)>> = findings
            .iter()
            .map(|f| {
                f.node_copies
                    .map(|c| (c.holding, c.eligible, c.recheck_credentials))
            })
            .collect();
        assert_eq!(copies, [Some((2, 3, 0)), None, Some((1, 3, 1)), None]);
        assert!(
            !asked.iter().any(|k| k == "r.io/app:gone"),
            "Always is never looked up: {asked:?}"
        );
    }

    #[rstest]
    #[case("nginx", "docker.io/library/nginx:latest")]
    #[case("nginx:1.27", "docker.io/library/nginx:1.27")]
    #[case("index.docker.io/library/nginx:1.27", "docker.io/library/nginx:1.27")]
    #[case(
        "r.io:5000/a/b:1@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        "r.io:5000/a/b@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    )]
    fn images_are_looked_up_as_containerd_names_them(#[case] image: &str, #[case] key: &str) {
        assert_eq!(image_key(&Reference::parse(image).expect("valid")), key);
    }
}
