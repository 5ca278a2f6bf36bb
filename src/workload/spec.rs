//! The pod spec as pullgate reads it: the fields that decide which images are pulled, with
//! which credentials, on which nodes — and nothing else. Every other field (a container's
//! env, probes, resources, mounts; the projected service-account volume every Pod has) is
//! skipped, not built: decoding the whole `PodSpec` was the largest part of a warm review.
//!
//! The result is a k8s-openapi `PodSpec` with only these fields set (the rest default):
//! - `containers`, `initContainers`, `ephemeralContainers`: `name`, `image`,
//!   `imagePullPolicy`;
//! - `volumes`: `name`, `image`;
//! - `imagePullSecrets`, `serviceAccountName`, `serviceAccount`;
//! - `nodeSelector`, `affinity.nodeAffinity`, `os`, `runtimeClassName`, `nodeName`.
//!
//! Code that reads another field must add it here: the tests check that this decode is the
//! full one reduced to these fields, and that what pullgate derives from a spec (images,
//! pull secrets, service account, scheduling constraints) is the same from both.
//! Same rules as k8s-openapi's own decoder for what is read: `null` or absent is the
//! default, a member written twice counts with its last value, a wrong type is an error.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{
    Affinity, Container, EphemeralContainer, ImageVolumeSource, LocalObjectReference, NodeAffinity,
    PodOS, PodSpec, Volume,
};
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::json::KeyIndex;

/// Decode a pod spec, reading only the fields above.
pub fn decode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PodSpec, D::Error> {
    Ok(deserializer.deserialize_map(SpecVisitor)?.0)
}

/// [`decode`] of JSON text holding one value.
pub fn from_str(text: &str) -> Result<PodSpec, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let spec = decode(&mut de)?;
    de.end()?;
    Ok(spec)
}

/// The next member name, as its index among `names`.
fn next_key<'de, A: MapAccess<'de>, const N: usize>(
    map: &mut A,
    names: &[&str; N],
) -> Result<Option<Option<usize>>, A::Error> {
    map.next_key_seed(KeyIndex(names))
}

/// `Option<T>` as k8s-openapi reads a member: `null` is `None`.
fn value<'de, A: MapAccess<'de>, T: Deserialize<'de>>(map: &mut A) -> Result<Option<T>, A::Error> {
    map.next_value::<Option<T>>()
}

struct Spec(PodSpec);
struct SpecVisitor;

const SPEC_FIELDS: [&str; 12] = [
    "containers",
    "initContainers",
    "ephemeralContainers",
    "volumes",
    "imagePullSecrets",
    "serviceAccountName",
    "serviceAccount",
    "nodeSelector",
    "affinity",
    "os",
    "runtimeClassName",
    "nodeName",
];

impl<'de> Visitor<'de> for SpecVisitor {
    type Value = Spec;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("PodSpec")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Spec, A::Error> {
        let mut spec = PodSpec::default();
        while let Some(key) = next_key(&mut map, &SPEC_FIELDS)? {
            match key {
                Some(0) => {
                    spec.containers = value::<_, Vec<Image>>(&mut map)?
                        .unwrap_or_default()
                        .into_iter()
                        .map(Image::container)
                        .collect();
                }
                Some(1) => {
                    spec.init_containers = value::<_, Vec<Image>>(&mut map)?
                        .map(|v| v.into_iter().map(Image::container).collect());
                }
                Some(2) => {
                    spec.ephemeral_containers = value::<_, Vec<Image>>(&mut map)?
                        .map(|v| v.into_iter().map(Image::ephemeral).collect());
                }
                Some(3) => {
                    spec.volumes = value::<_, Vec<ImageVolume>>(&mut map)?
                        .map(|v| v.into_iter().map(|v| v.0).collect());
                }
                Some(4) => {
                    spec.image_pull_secrets = value::<_, Vec<LocalObjectReference>>(&mut map)?
                }
                Some(5) => spec.service_account_name = value(&mut map)?,
                Some(6) => spec.service_account = value(&mut map)?,
                Some(7) => spec.node_selector = value::<_, BTreeMap<String, String>>(&mut map)?,
                Some(8) => spec.affinity = value::<_, NodeAffinityOnly>(&mut map)?.map(|a| a.0),
                Some(9) => spec.os = value::<_, PodOS>(&mut map)?,
                Some(10) => spec.runtime_class_name = value(&mut map)?,
                Some(11) => spec.node_name = value(&mut map)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Spec(spec))
    }
}

/// A container (regular, init or ephemeral) as far as its image goes.
#[derive(Default)]
struct Image {
    name: String,
    image: Option<String>,
    image_pull_policy: Option<String>,
}

impl Image {
    fn container(self) -> Container {
        Container {
            name: self.name,
            image: self.image,
            image_pull_policy: self.image_pull_policy,
            ..Container::default()
        }
    }

    fn ephemeral(self) -> EphemeralContainer {
        EphemeralContainer {
            name: self.name,
            image: self.image,
            image_pull_policy: self.image_pull_policy,
            ..EphemeralContainer::default()
        }
    }
}

impl<'de> Deserialize<'de> for Image {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Image;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("Container")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Image, A::Error> {
                let mut c = Image::default();
                while let Some(key) = next_key(&mut map, &["name", "image", "imagePullPolicy"])? {
                    match key {
                        Some(0) => c.name = value(&mut map)?.unwrap_or_default(),
                        Some(1) => c.image = value(&mut map)?,
                        Some(2) => c.image_pull_policy = value(&mut map)?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(c)
            }
        }
        d.deserialize_map(V)
    }
}

/// A volume as far as an image volume goes.
struct ImageVolume(Volume);

impl<'de> Deserialize<'de> for ImageVolume {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ImageVolume;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("Volume")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ImageVolume, A::Error> {
                let mut v = Volume::default();
                while let Some(key) = next_key(&mut map, &["name", "image"])? {
                    match key {
                        Some(0) => v.name = value(&mut map)?.unwrap_or_default(),
                        Some(1) => v.image = value::<_, ImageVolumeSource>(&mut map)?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(ImageVolume(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// `affinity` as far as node affinity goes (pod affinity does not decide a platform).
struct NodeAffinityOnly(Affinity);

impl<'de> Deserialize<'de> for NodeAffinityOnly {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NodeAffinityOnly;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("Affinity")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<NodeAffinityOnly, A::Error> {
                let mut a = Affinity::default();
                while let Some(key) = next_key(&mut map, &["nodeAffinity"])? {
                    match key {
                        Some(0) => a.node_affinity = value::<_, NodeAffinity>(&mut map)?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(NodeAffinityOnly(a))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduling::Constraints;
    use crate::workload::{pod_images, pod_spec_path, pull_secret_names, service_account};
    use serde_json::{Value, json};

    /// The full k8s-openapi decode reduced to the fields this module reads.
    fn projected(full: &PodSpec) -> PodSpec {
        let image = |name: &str, image: &Option<String>, policy: &Option<String>| Image {
            name: name.to_string(),
            image: image.clone(),
            image_pull_policy: policy.clone(),
        };
        PodSpec {
            containers: full
                .containers
                .iter()
                .map(|c| image(&c.name, &c.image, &c.image_pull_policy).container())
                .collect(),
            init_containers: full.init_containers.as_ref().map(|v| {
                v.iter()
                    .map(|c| image(&c.name, &c.image, &c.image_pull_policy).container())
                    .collect()
            }),
            ephemeral_containers: full.ephemeral_containers.as_ref().map(|v| {
                v.iter()
                    .map(|c| image(&c.name, &c.image, &c.image_pull_policy).ephemeral())
                    .collect()
            }),
            volumes: full.volumes.as_ref().map(|v| {
                v.iter()
                    .map(|v| Volume {
                        name: v.name.clone(),
                        image: v.image.clone(),
                        ..Volume::default()
                    })
                    .collect()
            }),
            image_pull_secrets: full.image_pull_secrets.clone(),
            service_account_name: full.service_account_name.clone(),
            service_account: full.service_account.clone(),
            node_selector: full.node_selector.clone(),
            affinity: full.affinity.as_ref().map(|a| Affinity {
                node_affinity: a.node_affinity.clone(),
                ..Affinity::default()
            }),
            os: full.os.clone(),
            runtime_class_name: full.runtime_class_name.clone(),
            node_name: full.node_name.clone(),
            ..PodSpec::default()
        }
    }

    /// Everything pullgate derives from a pod spec.
    fn readings(spec: &PodSpec) -> impl PartialEq + fmt::Debug {
        (
            pod_images(spec),
            pull_secret_names(spec),
            service_account(spec).to_string(),
            Constraints::of(spec),
            spec.runtime_class_name.clone(),
        )
    }

    /// Every pod spec of the captured reviews, and one with every field this module reads
    /// (and many it skips) set.
    fn specs() -> Vec<Value> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/admission-reviews");
        let mut specs = Vec::new();
        for entry in std::fs::read_dir(dir).expect("fixtures") {
            let path = entry.expect("entry").path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let review: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
            let kind = review["request"]["kind"]["kind"]
                .as_str()
                .unwrap_or_default();
            for object in ["object", "oldObject"] {
                let mut node = &review["request"][object];
                for step in pod_spec_path(kind).unwrap_or_default() {
                    node = &node[*step];
                }
                if node.is_object() {
                    specs.push(node.clone());
                }
            }
        }
        assert!(specs.len() >= 20, "{} specs", specs.len());
        specs.push(json!({
            "containers": [{"name": "app", "image": "r.io/app:1", "imagePullPolicy": "Always",
                "env": [{"name": "A", "value": "1"}], "resources": {"limits": {"cpu": "1"}},
                "ports": [{"containerPort": 80}], "name": "app2"}],
            "initContainers": [{"name": "init", "image": "r.io/init@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}],
            "ephemeralContainers": [{"name": "debug", "image": "busybox", "imagePullPolicy": "Never", "targetContainerName": "app"}],
            "volumes": [
                {"name": "data", "image": {"reference": "r.io/data:1", "pullPolicy": "IfNotPresent"}},
                {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}},
                {"name": "empty", "emptyDir": {}}
            ],
            "imagePullSecrets": [{"name": "regcred"}, {"name": ""}],
            "serviceAccountName": "builder",
            "serviceAccount": "old",
            "nodeSelector": {"kubernetes.io/arch": "arm64"},
            "affinity": {
                "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}
                ]}},
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}
            },
            "os": {"name": "linux"},
            "runtimeClassName": "gvisor",
            "nodeName": "node-1",
            "tolerations": [{"operator": "Exists"}],
            "securityContext": {"runAsNonRoot": true},
            "hostNetwork": true
        }));
        specs
    }

    #[test]
    fn reads_exactly_the_listed_fields_of_the_full_decode() {
        for spec in specs() {
            let text = spec.to_string();
            let full: PodSpec = serde_json::from_str(&text).expect("k8s-openapi decodes it");
            let narrow = from_str(&text).expect("decodes");
            assert_eq!(narrow, projected(&full), "{text}");
            assert_eq!(decode(&spec).expect("from a Value"), narrow);
            // What pullgate derives is the same from either decode.
            assert_eq!(readings(&narrow), readings(&full), "{text}");
        }
    }

    #[test]
    fn follows_k8s_openapi_on_nulls_duplicates_and_wrong_types() {
        for (text, ok) in [
            (r#"{}"#, true),
            (
                r#"{"containers": null, "volumes": null, "nodeSelector": null}"#,
                true,
            ),
            (
                r#"{"containers": [{}, {"name": null, "image": null}]}"#,
                true,
            ),
            (
                r#"{"containers": [], "containers": [{"name": "x", "name": "y"}]}"#,
                true,
            ),
            (r#"{"containers": "nope"}"#, false),
            (r#"{"containers": [{"image": 7}]}"#, false),
            (
                r#"{"volumes": [{"name": "v", "image": {"reference": 1}}]}"#,
                false,
            ),
            (r#"{"affinity": {"nodeAffinity": 3}}"#, false),
            (r#"3"#, false),
            (r#"null"#, false),
        ] {
            let full = serde_json::from_str::<PodSpec>(text);
            let narrow = from_str(text);
            assert_eq!(full.is_ok(), ok, "k8s-openapi on {text}");
            assert_eq!(narrow.is_ok(), ok, "{text}");
            if let (Ok(full), Ok(narrow)) = (full, narrow) {
                assert_eq!(narrow, projected(&full), "{text}");
            }
        }
    }
}
