//! Pod specs out of Kubernetes objects: a Pod, or the pod template of every workload kind
//! that stamps out Pods. Pure: JSON values in, typed specs out.

use k8s_openapi::api::core::v1::{Container, EphemeralContainer, PodSpec};
use serde::Deserialize as _;
use serde_json::Value;

pub mod spec;

use crate::checker::ImageSpec;
use crate::registry::ImageUse;

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("{kind}: the object is not valid JSON: {source}")]
    Object {
        kind: String,
        source: serde_json::Error,
    },
    #[error("{kind} {name}: pod spec at .{path} is not valid: {source}")]
    Spec {
        kind: String,
        name: String,
        path: String,
        source: serde_json::Error,
    },
}

/// The kinds pullgate understands, and where each keeps its pod spec.
pub fn pod_spec_path(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "Pod" => &["spec"],
        "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "Job"
        | "ReplicationController" => &["spec", "template", "spec"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
        "PodTemplate" => &["template", "spec"],
        _ => return None,
    })
}

/// A Pod or a workload's pod template.
#[derive(Debug, Clone)]
pub struct Workload {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub spec: PodSpec,
    /// A mirror pod: the kubelet's API copy of a static pod (annotation
    /// `kubernetes.io/config.mirror`), which the node already runs from a local manifest.
    pub mirror: bool,
}

/// `pkg/kubelet/types` `ConfigMirrorAnnotationKey`.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

impl Workload {
    /// `None` for a kind without a pod spec (a Service, a ConfigMap…).
    pub fn from_object(object: &Value) -> Result<Option<Self>, WorkloadError> {
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Self::of_kind(kind, object)
    }

    /// Like [`Workload::from_object`] with the kind given from outside (an AdmissionReview
    /// names it in `request.kind`).
    pub fn of_kind(kind: &str, object: &Value) -> Result<Option<Self>, WorkloadError> {
        let Some(path) = pod_spec_path(kind) else {
            return Ok(None);
        };
        let metadata = object.get("metadata");
        let text = |field: &str| {
            metadata
                .and_then(|m| m.get(field))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let name = text("name")
            .or_else(|| text("generateName"))
            .unwrap_or_default();
        let mirror = kind == "Pod"
            && metadata
                .and_then(|m| m.get("annotations"))
                .and_then(|a| a.get(MIRROR_ANNOTATION))
                .is_some();
        let mut node = object;
        for step in path {
            match node.get(step) {
                Some(next) => node = next,
                None => {
                    return Ok(Some(Self {
                        kind: kind.to_string(),
                        namespace: text("namespace"),
                        name,
                        spec: PodSpec::default(),
                        mirror,
                    }));
                }
            }
        }
        // The whole spec, type-checked as kubectl would: a manifest `check -f` reads may
        // never have been through an apiserver.
        let spec = PodSpec::deserialize(node).map_err(|source| WorkloadError::Spec {
            kind: kind.to_string(),
            name: name.clone(),
            path: path.join("."),
            source,
        })?;
        Ok(Some(Self {
            kind: kind.to_string(),
            namespace: text("namespace"),
            name,
            spec,
            mirror,
        }))
    }

    /// [`Workload::of_kind`] on the object's JSON text, reading only the metadata fields
    /// and the pod spec fields pullgate uses ([`spec`]): what the webhook does with an
    /// AdmissionReview's `object`, which the apiserver has already decoded and validated,
    /// without building a `Value` of the whole object. Same answers as `of_kind` on the
    /// parsed text (a member written twice counts with its last value, as in a `Value`),
    /// its spec reduced to those fields; only a wrong type in a field pullgate does not
    /// read, which no apiserver sends, is an error there and not here.
    pub fn of_kind_json(kind: &str, object: &str) -> Result<Option<Self>, WorkloadError> {
        let Some(path) = pod_spec_path(kind) else {
            return Ok(None);
        };
        let scan = json::scan_object(object, path).map_err(|source| WorkloadError::Object {
            kind: kind.to_string(),
            source,
        })?;
        let name = scan.name.or(scan.generate_name).unwrap_or_default();
        let mirror = kind == "Pod" && scan.mirror;
        let spec = match scan.spec {
            None => PodSpec::default(),
            Some(raw) => spec::from_str(raw.get()).map_err(|source| WorkloadError::Spec {
                kind: kind.to_string(),
                name: name.clone(),
                path: path.join("."),
                source,
            })?,
        };
        Ok(Some(Self {
            kind: kind.to_string(),
            namespace: scan.namespace,
            name,
            spec,
            mirror,
        }))
    }

    /// `imagePullSecrets` names as listed (empty names dropped).
    pub fn pull_secret_names(&self) -> Vec<String> {
        pull_secret_names(&self.spec)
    }

    /// The ServiceAccount whose pull secrets apply when the spec lists none.
    pub fn service_account(&self) -> &str {
        service_account(&self.spec)
    }
}

pub fn pull_secret_names(spec: &PodSpec) -> Vec<String> {
    spec.image_pull_secrets
        .iter()
        .flatten()
        .map(|r| r.name.clone())
        .filter(|n| !n.is_empty())
        .collect()
}

/// `serviceAccountName`, else the deprecated `serviceAccount`, else `default`.
pub fn service_account(spec: &PodSpec) -> &str {
    spec.service_account_name
        .as_deref()
        .or(spec.service_account.as_deref())
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
}

/// Reading parts of JSON text without building a `Value` of it.
pub mod json {
    use std::fmt;

    use serde::Deserializer as _;
    use serde::de::{DeserializeSeed, Error, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde_json::value::RawValue;

    use super::MIRROR_ANNOTATION;

    /// What [`super::Workload::of_kind_json`] reads of an object.
    #[derive(Debug, Default)]
    pub struct ObjectScan<'a> {
        pub name: Option<String>,
        pub generate_name: Option<String>,
        pub namespace: Option<String>,
        /// `metadata.annotations` has the mirror-pod key (whatever its value).
        pub mirror: bool,
        /// The raw value at `path` (the pod spec), if every step above it is an object
        /// that has the next one.
        pub spec: Option<&'a RawValue>,
    }

    /// The metadata fields and the raw pod spec at `path` of the JSON object `text`, in
    /// one pass over it: only the spec is left to decode. Read as a `serde_json::Value`
    /// of the text would show them: a member written twice counts with its last value, a
    /// name that is not a string is absent, anything that is not an object has no members.
    /// An error where a `Value` of the text would fail too (a string it reads that is not
    /// valid, such as a lone surrogate escape, which a `RawValue` lets through): never an
    /// empty scan, which would let the pod's images through unchecked.
    pub fn scan_object<'a>(
        text: &'a str,
        path: &[&str],
    ) -> Result<ObjectScan<'a>, serde_json::Error> {
        let Some((first, rest)) = path.split_first() else {
            return Ok(ObjectScan::default());
        };
        serde_json::Deserializer::from_str(text).deserialize_any(Only(Top { first, rest }))
    }

    /// A visitor of one JSON object: any other value is read through and counts as
    /// `Default`.
    trait ObjectVisitor<'de>: Sized {
        type Value: Default;

        fn object<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Self::Value::default())
        }

        fn string(self, _: &str) -> Self::Value {
            Self::Value::default()
        }
    }

    struct Only<V>(V);

    impl<'de, V: ObjectVisitor<'de>> Visitor<'de> for Only<V> {
        type Value = V::Value;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            self.0.object(map)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(V::Value::default())
        }

        fn visit_bool<E: Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(V::Value::default())
        }

        fn visit_i64<E: Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(V::Value::default())
        }

        fn visit_u64<E: Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(V::Value::default())
        }

        fn visit_f64<E: Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(V::Value::default())
        }

        fn visit_str<E: Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(self.0.string(v))
        }

        fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
            Ok(V::Value::default())
        }
    }

    impl<'de, V: ObjectVisitor<'de>> DeserializeSeed<'de> for Only<V> {
        type Value = V::Value;

        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    /// The object itself: `metadata`, and the first step towards the spec.
    struct Top<'p> {
        first: &'p str,
        rest: &'p [&'p str],
    }

    impl<'de> ObjectVisitor<'de> for Top<'_> {
        type Value = ObjectScan<'de>;

        fn object<A: MapAccess<'de>>(self, mut map: A) -> Result<ObjectScan<'de>, A::Error> {
            let mut scan = ObjectScan::default();
            let keys = ["metadata", self.first];
            while let Some(slot) = map.next_key_seed(KeyIndex(&keys))? {
                match slot {
                    Some(0) => {
                        let spec = scan.spec.take();
                        scan = map.next_value_seed(Only(Metadata))?;
                        scan.spec = spec;
                    }
                    Some(_) => scan.spec = spec_at(&mut map, self.rest)?,
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(scan)
        }
    }

    /// The next member's value, then down `rest`.
    fn spec_at<'de, A: MapAccess<'de>>(
        map: &mut A,
        rest: &[&str],
    ) -> Result<Option<&'de RawValue>, A::Error> {
        match rest.split_first() {
            None => map.next_value::<&'de RawValue>().map(Some),
            Some((first, rest)) => map.next_value_seed(Only(Step { first, rest })),
        }
    }

    /// An object on the way to the spec (`spec`, `template`, `jobTemplate`).
    struct Step<'p> {
        first: &'p str,
        rest: &'p [&'p str],
    }

    impl<'de> ObjectVisitor<'de> for Step<'_> {
        type Value = Option<&'de RawValue>;

        fn object<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            let keys = [self.first];
            while let Some(slot) = map.next_key_seed(KeyIndex(&keys))? {
                match slot {
                    Some(_) => found = spec_at(&mut map, self.rest)?,
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(found)
        }
    }

    /// `metadata`: the names, and whether an annotation marks a mirror pod.
    struct Metadata;

    impl<'de> ObjectVisitor<'de> for Metadata {
        type Value = ObjectScan<'de>;

        fn object<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut scan = ObjectScan::default();
            let keys = ["name", "generateName", "namespace", "annotations"];
            while let Some(slot) = map.next_key_seed(KeyIndex(&keys))? {
                match slot {
                    Some(0) => scan.name = map.next_value_seed(Only(Text))?.0,
                    Some(1) => scan.generate_name = map.next_value_seed(Only(Text))?.0,
                    Some(2) => scan.namespace = map.next_value_seed(Only(Text))?.0,
                    Some(_) => scan.mirror = map.next_value_seed(Only(Mirror))?,
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(scan)
        }
    }

    /// `annotations`: whether the mirror-pod key is there.
    struct Mirror;

    impl<'de> ObjectVisitor<'de> for Mirror {
        type Value = bool;

        fn object<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
            let mut found = false;
            while let Some(slot) = map.next_key_seed(KeyIndex(&[MIRROR_ANNOTATION]))? {
                found |= slot.is_some();
                map.next_value::<IgnoredAny>()?;
            }
            Ok(found)
        }
    }

    /// A string member (`None` for any other type).
    #[derive(Default)]
    struct Name(Option<String>);
    struct Text;

    impl<'de> ObjectVisitor<'de> for Text {
        type Value = Name;

        fn string(self, v: &str) -> Name {
            Name(Some(v.to_string()))
        }
    }

    /// The greatest nesting of arrays and objects in JSON text (strings skipped, with
    /// `memchr` from quote to quote: most of a Kubernetes object's bytes are in strings).
    pub fn depth(text: &str) -> usize {
        let bytes = text.as_bytes();
        let (mut i, mut depth, mut deepest) = (0usize, 0usize, 0usize);
        while i < bytes.len() {
            match bytes[i] {
                b'{' | b'[' => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                b'"' => loop {
                    // To the closing quote, stepping over each escaped character.
                    match memchr::memchr2(b'"', b'\\', bytes.get(i + 1..).unwrap_or_default()) {
                        Some(at) if bytes[i + 1 + at] == b'\\' => i += at + 2,
                        Some(at) => {
                            i += at + 1;
                            break;
                        }
                        None => return deepest,
                    }
                },
                _ => {}
            }
            i += 1;
        }
        deepest
    }

    /// A member name, as its index among the wanted keys (`None` for any other).
    pub(crate) struct KeyIndex<'k>(pub &'k [&'k str]);

    impl<'de> DeserializeSeed<'de> for KeyIndex<'_> {
        type Value = Option<usize>;

        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl<'de> Visitor<'de> for KeyIndex<'_> {
        type Value = Option<usize>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a member name")
        }

        fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Self::Value, E> {
            Ok(self.0.iter().position(|k| *k == key))
        }
    }
}

/// Where an image is written in a pod spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    Init,
    Regular,
    Ephemeral,
    /// An image volume (`volumes[].image.reference`, KEP-4639), pulled like a container's
    /// image before any container starts.
    Volume,
}

/// `imagePullPolicy` (or an image volume's `pullPolicy`) as the kubelet applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    /// The policy written, else the apiserver's default (`core/v1/defaults.go`
    /// `SetDefaults_Container`, and the same rule for `ImageVolumeSource`): `Always` when
    /// `parsers.ParseImageName` finds the tag `latest` (written, or no tag and no digest),
    /// else `IfNotPresent`. The webhook sees defaulted specs; `check -f` reads raw YAML.
    /// A value the apiserver would refuse is taken as `Always`: checked as before.
    pub fn effective(written: Option<&str>, image: &str) -> Self {
        match written.unwrap_or_default() {
            "Always" => Self::Always,
            "IfNotPresent" => Self::IfNotPresent,
            "Never" => Self::Never,
            "" => match crate::reference::Reference::parse(image) {
                Ok(r) if r.tag() == Some("latest") => Self::Always,
                // A parse error leaves the tag empty in Go, so IfNotPresent.
                _ => Self::IfNotPresent,
            },
            _ => Self::Always,
        }
    }

    /// Is an image already on a node used without a pull?
    pub fn uses_node_copy(self) -> bool {
        matches!(self, Self::IfNotPresent | Self::Never)
    }
}

/// One image of a pod spec, with what decides whether it is pulled at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodImage {
    pub kind: ImageKind,
    /// The container's name, or the image volume's.
    pub name: String,
    pub image: String,
    pub pull_policy: PullPolicy,
}

impl PodImage {
    /// The checker's view: `Never` is never pulled, so never checked; an image volume is
    /// checked as a volume (OCI artifacts are legitimate there).
    pub fn to_spec(&self) -> ImageSpec {
        let mut spec = if self.kind == ImageKind::Volume {
            let mut spec = ImageSpec::new(None, &self.image);
            spec.volume = Some(self.name.clone());
            spec.image_use = ImageUse::Volume;
            spec
        } else {
            ImageSpec::new(Some(&self.name), &self.image)
        };
        if self.pull_policy == PullPolicy::Never {
            let field = if self.kind == ImageKind::Volume {
                "pullPolicy"
            } else {
                "imagePullPolicy"
            };
            spec.exempt = Some(format!("{field} is Never: the image is never pulled"));
        }
        spec
    }
}

/// Every container image of a spec: init containers, containers, ephemeral containers.
pub fn container_images(spec: &PodSpec) -> Vec<PodImage> {
    let image = |kind, name: &str, image: Option<&String>, policy: Option<&String>| {
        let image = image.cloned().unwrap_or_default();
        PodImage {
            kind,
            name: name.to_string(),
            pull_policy: PullPolicy::effective(policy.map(String::as_str), &image),
            image,
        }
    };
    let plain = |kind, c: &Container| {
        image(
            kind,
            &c.name,
            c.image.as_ref(),
            c.image_pull_policy.as_ref(),
        )
    };
    let ephemeral = |c: &EphemeralContainer| {
        image(
            ImageKind::Ephemeral,
            &c.name,
            c.image.as_ref(),
            c.image_pull_policy.as_ref(),
        )
    };
    spec.init_containers
        .iter()
        .flatten()
        .map(|c| plain(ImageKind::Init, c))
        .chain(spec.containers.iter().map(|c| plain(ImageKind::Regular, c)))
        .chain(spec.ephemeral_containers.iter().flatten().map(ephemeral))
        .collect()
}

/// Every image volume of a spec (`volumes[].image`), in volume order.
pub fn volume_images(spec: &PodSpec) -> Vec<PodImage> {
    spec.volumes
        .iter()
        .flatten()
        .filter_map(|v| {
            let source = v.image.as_ref()?;
            let image = source.reference.clone().unwrap_or_default();
            Some(PodImage {
                kind: ImageKind::Volume,
                name: v.name.clone(),
                pull_policy: PullPolicy::effective(source.pull_policy.as_deref(), &image),
                image,
            })
        })
        .collect()
}

/// Every image the kubelet pulls for a spec: the containers', then the image volumes'.
pub fn pod_images(spec: &PodSpec) -> Vec<PodImage> {
    let mut images = container_images(spec);
    images.extend(volume_images(spec));
    images
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    #[rstest]
    #[case::written_wins(Some("Always"), "r.io/app:1", PullPolicy::Always)]
    #[case::written_never(Some("Never"), "r.io/app:latest", PullPolicy::Never)]
    #[case::tag_defaults_to_if_not_present(None, "r.io/app:1", PullPolicy::IfNotPresent)]
    #[case::latest_defaults_to_always(None, "r.io/app:latest", PullPolicy::Always)]
    #[case::no_tag_is_latest(None, "nginx", PullPolicy::Always)]
    #[case::empty_is_unset(Some(""), "nginx", PullPolicy::Always)]
    #[case::digest_only_has_no_tag(
        None,
        "nginx@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        PullPolicy::IfNotPresent
    )]
    #[case::latest_with_digest_is_latest(
        None,
        "nginx:latest@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        PullPolicy::Always
    )]
    #[case::unparsable_has_no_tag(None, "Nginx:latest", PullPolicy::IfNotPresent)]
    #[case::unknown_value_is_checked_as_always(Some("always"), "r.io/app:1", PullPolicy::Always)]
    fn pull_policy_is_defaulted_as_the_apiserver_does(
        #[case] written: Option<&str>,
        #[case] image: &str,
        #[case] expected: PullPolicy,
    ) {
        assert_eq!(PullPolicy::effective(written, image), expected);
    }

    #[test]
    fn image_volumes_follow_the_containers_and_are_checked_as_volumes() {
        let obj = json!({
            "kind": "Pod", "metadata": {"name": "p", "annotations": {MIRROR_ANNOTATION: "abc"}},
            "spec": {
                "containers": [{"name": "app", "image": "r.io/app:1"}],
                "volumes": [
                    {"name": "cfg", "configMap": {"name": "x"}},
                    {"name": "models", "image": {"reference": "r.io/models:v1"}},
                    {"name": "data", "image": {"reference": "r.io/data:latest", "pullPolicy": "Never"}}
                ]
            }
        });
        let w = Workload::from_object(&obj).expect("valid").expect("a pod");
        assert!(w.mirror);
        let images = pod_images(&w.spec);
        let names: Vec<(&str, ImageKind, PullPolicy)> = images
            .iter()
            .map(|i| (i.name.as_str(), i.kind, i.pull_policy))
            .collect();
        assert_eq!(
            names,
            [
                ("app", ImageKind::Regular, PullPolicy::IfNotPresent),
                ("models", ImageKind::Volume, PullPolicy::IfNotPresent),
                ("data", ImageKind::Volume, PullPolicy::Never),
            ]
        );
        let models = images[1].to_spec();
        assert_eq!(models.volume.as_deref(), Some("models"));
        assert_eq!(models.container, None);
        assert_eq!(models.image_use, ImageUse::Volume);
        assert!(
            images[2]
                .to_spec()
                .exempt
                .is_some_and(|r| r.contains("pullPolicy"))
        );
    }

    #[test]
    fn only_pods_are_mirror_pods() {
        let obj = json!({"kind": "Deployment", "metadata": {"name": "d", "annotations": {MIRROR_ANNOTATION: ""}},
            "spec": {"template": {"spec": {"containers": []}}}});
        let w = Workload::from_object(&obj)
            .expect("valid")
            .expect("a workload");
        assert!(!w.mirror);
    }

    #[test]
    fn cronjob_template_is_found() {
        let obj = json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "nightly", "namespace": "default"},
            "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {
                "imagePullSecrets": [{"name": "regcred"}],
                "initContainers": [{"name": "i", "image": "busybox"}],
                "containers": [{"name": "task", "image": "r.io/task:1", "imagePullPolicy": "Never"}]
            }}}}}
        });
        let w = Workload::from_object(&obj)
            .expect("valid")
            .expect("a workload");
        assert_eq!(w.pull_secret_names(), ["regcred"]);
        assert_eq!(w.service_account(), "default");
        let images = container_images(&w.spec);
        assert_eq!(images.len(), 2);
        assert_eq!(images[0].kind, ImageKind::Init);
        assert!(images[1].to_spec().exempt.is_some());
    }

    /// The raw-text reader answers as the `Value` one, whatever the object holds.
    #[rstest]
    #[case::pod(json!({"kind": "Pod", "metadata": {"name": "p", "namespace": "ns", "annotations": {MIRROR_ANNOTATION: "x"}},
        "spec": {"containers": [{"name": "a", "image": "r.io/a:1"}], "nodeSelector": {"k": "v"}}}))]
    #[case::generate_name(json!({"metadata": {"generateName": "web-", "name": 7}, "spec": {"containers": []}}))]
    #[case::escaped(json!({"metadata": {"name": "café \"q\""}, "spec": {"containers": [{"name": "a\n", "image": "r.io/a:1"}]}}))]
    #[case::no_spec(json!({"metadata": {"name": "p"}}))]
    #[case::metadata_not_an_object(json!({"metadata": "p", "spec": {"containers": []}}))]
    #[case::not_an_object(json!("a string"))]
    #[case::spec_not_an_object(json!({"spec": 3}))]
    #[case::spec_null(json!({"spec": null}))]
    #[case::broken_spec(json!({"spec": {"containers": "nope"}}))]
    fn raw_text_and_value_agree(#[case] object: Value) {
        for kind in ["Pod", "Deployment", "CronJob", "PodTemplate", "ConfigMap"] {
            // The same object at the place each kind keeps its pod spec.
            let mut placed = object.clone();
            if let (Some(path), Some(spec)) = (
                pod_spec_path(kind),
                object.as_object().and_then(|o| o.get("spec")),
            ) {
                let mut wrapped = spec.clone();
                for step in path.iter().rev() {
                    wrapped = json!({ *step: wrapped });
                }
                placed = object.clone();
                if let Some(o) = placed.as_object_mut() {
                    o.remove("spec");
                    if let Some(w) = wrapped.as_object() {
                        o.extend(w.clone());
                    }
                }
            }
            let text = placed.to_string();
            assert_reads_alike(kind, &placed, &text);
        }
    }

    /// `of_kind` on `value` and `of_kind_json` on `text` (the same object) agree: both
    /// fail, both find no workload, or both find the same one (the text's spec holding the
    /// fields pullgate reads).
    fn assert_reads_alike(kind: &str, value: &Value, text: &str) {
        match (
            Workload::of_kind(kind, value),
            Workload::of_kind_json(kind, text),
        ) {
            (Ok(Some(a)), Ok(Some(b))) => assert_eq!(
                (
                    &a.kind,
                    &a.namespace,
                    &a.name,
                    &spec::narrowed(&a.spec),
                    a.mirror
                ),
                (&b.kind, &b.namespace, &b.name, &b.spec, b.mirror),
                "{kind} {text}"
            ),
            (Err(_), Err(_)) | (Ok(None), Ok(None)) => {}
            (a, b) => panic!("{kind} {text}: {a:?} vs {b:?}"),
        }
    }

    /// Hand-written text (duplicate members, odd types at every step): the one-pass scan
    /// reads it as a `Value` of the same text does.
    #[rstest]
    #[case::metadata_twice(r#"{"metadata": {"name": "a", "namespace": "n"}, "metadata": {"generateName": "g-"}, "spec": {"containers": []}}"#)]
    #[case::metadata_after_spec(r#"{"spec": {"containers": [{"name": "c", "image": "r.io/a:1"}]}, "metadata": {"name": "late"}}"#)]
    #[case::spec_twice_first_broken(
        r#"{"spec": 3, "spec": {"containers": [{"name": "c", "image": "r.io/a:1"}]}}"#
    )]
    #[case::spec_twice_last_broken(
        r#"{"spec": {"containers": []}, "spec": {"containers": "nope"}}"#
    )]
    #[case::template_twice(r#"{"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}, "template": null}}"#)]
    #[case::template_spec_twice(r#"{"spec": {"template": {"spec": 1, "spec": {"containers": [{"name": "b", "image": "y"}]}}}}"#)]
    #[case::metadata_array(r#"{"metadata": ["name", "x"], "spec": {"containers": []}}"#)]
    #[case::names_not_strings(
        r#"{"metadata": {"name": {"a": 1}, "generateName": ["g"], "namespace": 5}, "spec": {}}"#
    )]
    #[case::annotations_null_value(
        r#"{"metadata": {"annotations": {"kubernetes.io/config.mirror": null}}, "spec": {}}"#
    )]
    #[case::annotations_twice(r#"{"metadata": {"annotations": {"kubernetes.io/config.mirror": "x"}, "annotations": {}}, "spec": {}}"#)]
    #[case::annotations_array(
        r#"{"metadata": {"annotations": ["kubernetes.io/config.mirror"]}, "spec": {}}"#
    )]
    #[case::escaped_key(r#"{"metadata": {"n\u0061me": "esc"}, "sp\u0065c": {"containers": [{"name": "e", "image": "z"}]}}"#)]
    #[case::top_array(r#"[{"spec": {}}]"#)]
    #[case::top_null("null")]
    fn hand_written_text_reads_as_its_value(#[case] text: &str) {
        let value: Value = serde_json::from_str(text).expect("valid JSON");
        for kind in ["Pod", "Deployment", "CronJob", "PodTemplate"] {
            assert_reads_alike(kind, &value, text);
        }
    }

    #[test]
    fn an_unreadable_name_is_an_error_not_an_empty_object() {
        // A RawValue lets a lone surrogate escape through; reading the name fails, as a
        // Value of the text would. An empty scan would let the images through unchecked.
        let text = r#"{"metadata": {"name": "\udc00"}, "spec": {"containers": [{"name": "c", "image": "r.io/missing:1"}]}}"#;
        assert!(serde_json::from_str::<Value>(text).is_err());
        let raw: Box<serde_json::value::RawValue> =
            serde_json::from_str(text).expect("a RawValue accepts it");
        let err = Workload::of_kind_json("Pod", raw.get()).expect_err("refused");
        assert!(matches!(err, WorkloadError::Object { .. }), "{err}");
    }

    #[test]
    fn check_f_type_checks_the_whole_spec_the_webhook_only_what_it_reads() {
        // An env value that is a number: kubectl and the apiserver refuse the manifest, and
        // so does `check -f`; the webhook never sees such an object.
        let object = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "c", "image": "r.io/a:1", "env": [{"name": "PORT", "value": 8080}]}
        ]}});
        let err = Workload::of_kind("Pod", &object).expect_err("the full decode refuses it");
        assert!(
            err.to_string().contains("pod spec at .spec is not valid"),
            "{err}"
        );
        let w = Workload::of_kind_json("Pod", &object.to_string())
            .expect("read")
            .expect("a pod");
        assert_eq!(pod_images(&w.spec)[0].image, "r.io/a:1");
    }

    #[test]
    fn a_member_written_twice_counts_with_its_last_value() {
        let text = r#"{"metadata": {"name": "first", "name": "last"}, "spec": {"containers": []}}"#;
        let w = Workload::of_kind_json("Pod", text)
            .expect("valid")
            .expect("a pod");
        assert_eq!(w.name, "last");
    }

    #[test]
    fn depth_counts_nesting_outside_strings() {
        assert_eq!(json::depth("1"), 0);
        assert_eq!(json::depth(r#"{"a": [1, {"b": "[[[{{"}]}"#), 3);
        assert_eq!(json::depth(r#"["\"[[", [[]]]"#), 3);
        assert_eq!(json::depth(r#"["\\", [[]]]"#), 3);
        assert_eq!(json::depth(r#"["\\\"]]", {}]"#), 2);
        assert_eq!(json::depth(r#"{"a": "unterminated [[["#), 1);
        assert_eq!(json::depth(r#""ends with a backslash\"#), 0);
    }

    #[test]
    fn other_kinds_are_not_workloads() {
        let obj = json!({"kind": "ConfigMap", "metadata": {"name": "x"}});
        assert!(Workload::from_object(&obj).expect("valid").is_none());
    }

    #[test]
    fn a_broken_spec_is_an_error_with_its_location() {
        let obj = json!({"kind": "Deployment", "metadata": {"name": "web"}, "spec": {"template": {"spec": {"containers": "nope"}}}});
        let err = Workload::from_object(&obj).expect_err("invalid");
        assert!(err.to_string().contains("Deployment web"), "{err}");
    }
}
