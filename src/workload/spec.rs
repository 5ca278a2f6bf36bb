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
//! What is skipped is not type-checked: this decode is for the webhook, whose objects the
//! apiserver has decoded and validated already. `check -f` and `audit` decode the whole
//! spec with k8s-openapi, so a manifest kubectl would refuse is reported as invalid.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use k8s_openapi::api::core::v1::{
    Affinity, Container, EphemeralContainer, ImageVolumeSource, LocalObjectReference, NodeAffinity,
    PodOS, PodSpec, Volume,
};
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::json::KeyIndex;

/// Decode a pod spec, reading only the fields above.
pub fn decode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PodSpec, D::Error> {
    Ok(Read::<Spec>::deserialize(deserializer)?.0.0)
}

/// [`decode`] of JSON text holding one value.
pub fn from_str(text: &str) -> Result<PodSpec, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let spec = decode(&mut de)?;
    de.end()?;
    Ok(spec)
}

/// A JSON object read into `Self` member by member: those named in `NAMES` by `read`
/// (with the member's index in `NAMES`), the others skipped.
trait Members: Default {
    /// What a wrong type is reported as expecting.
    const EXPECTING: &'static str;
    const NAMES: &'static [&'static str];
    fn read<'de, A: MapAccess<'de>>(&mut self, index: usize, map: &mut A) -> Result<(), A::Error>;
}

/// Deserializes a [`Members`] type.
struct Read<T>(T);

impl<'de, T: Members> Deserialize<'de> for Read<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Members> Visitor<'de> for V<T> {
            type Value = Read<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(T::EXPECTING)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Read<T>, A::Error> {
                let mut value = T::default();
                while let Some(key) = map.next_key_seed(KeyIndex(T::NAMES))? {
                    match key {
                        Some(i) => value.read(i, &mut map)?,
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Read(value))
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

/// `Option<T>` as k8s-openapi reads a member: `null` is `None`.
fn value<'de, A: MapAccess<'de>, T: Deserialize<'de>>(map: &mut A) -> Result<Option<T>, A::Error> {
    map.next_value::<Option<T>>()
}

/// A list of `T` read as [`Members`] (`null` is `None`).
fn list<'de, A: MapAccess<'de>, T: Members>(map: &mut A) -> Result<Option<Vec<T>>, A::Error> {
    Ok(value::<_, Vec<Read<T>>>(map)?.map(|v| v.into_iter().map(|r| r.0).collect()))
}

#[derive(Default)]
struct Spec(PodSpec);

impl Members for Spec {
    const EXPECTING: &'static str = "PodSpec";
    const NAMES: &'static [&'static str] = &[
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

    fn read<'de, A: MapAccess<'de>>(&mut self, index: usize, map: &mut A) -> Result<(), A::Error> {
        let spec = &mut self.0;
        match index {
            0 => {
                spec.containers = list::<_, Image>(map)?
                    .unwrap_or_default()
                    .into_iter()
                    .map(Image::container)
                    .collect();
            }
            1 => {
                spec.init_containers =
                    list::<_, Image>(map)?.map(|v| v.into_iter().map(Image::container).collect());
            }
            2 => {
                spec.ephemeral_containers =
                    list::<_, Image>(map)?.map(|v| v.into_iter().map(Image::ephemeral).collect());
            }
            3 => {
                spec.volumes =
                    list::<_, ImageVolume>(map)?.map(|v| v.into_iter().map(|v| v.0).collect());
            }
            4 => spec.image_pull_secrets = value::<_, Vec<LocalObjectReference>>(map)?,
            5 => spec.service_account_name = value(map)?,
            6 => spec.service_account = value(map)?,
            7 => spec.node_selector = value::<_, BTreeMap<String, String>>(map)?,
            8 => spec.affinity = value::<_, Read<NodeAffinityOnly>>(map)?.map(|a| a.0.0),
            9 => spec.os = value::<_, PodOS>(map)?,
            10 => spec.runtime_class_name = value(map)?,
            _ => spec.node_name = value(map)?,
        }
        Ok(())
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

impl Members for Image {
    const EXPECTING: &'static str = "Container";
    const NAMES: &'static [&'static str] = &["name", "image", "imagePullPolicy"];

    fn read<'de, A: MapAccess<'de>>(&mut self, index: usize, map: &mut A) -> Result<(), A::Error> {
        match index {
            0 => self.name = value(map)?.unwrap_or_default(),
            1 => self.image = value(map)?,
            _ => self.image_pull_policy = value(map)?,
        }
        Ok(())
    }
}

/// A volume as far as an image volume goes.
#[derive(Default)]
struct ImageVolume(Volume);

impl Members for ImageVolume {
    const EXPECTING: &'static str = "Volume";
    const NAMES: &'static [&'static str] = &["name", "image"];

    fn read<'de, A: MapAccess<'de>>(&mut self, index: usize, map: &mut A) -> Result<(), A::Error> {
        match index {
            0 => self.0.name = value(map)?.unwrap_or_default(),
            _ => self.0.image = value::<_, ImageVolumeSource>(map)?,
        }
        Ok(())
    }
}

/// `affinity` as far as node affinity goes (pod affinity does not decide a platform).
#[derive(Default)]
struct NodeAffinityOnly(Affinity);

impl Members for NodeAffinityOnly {
    const EXPECTING: &'static str = "Affinity";
    const NAMES: &'static [&'static str] = &["nodeAffinity"];

    fn read<'de, A: MapAccess<'de>>(&mut self, _: usize, map: &mut A) -> Result<(), A::Error> {
        self.0.node_affinity = value::<_, NodeAffinity>(map)?;
        Ok(())
    }
}

#[cfg(test)]
/// The full k8s-openapi decode reduced to the fields this module reads (tests).
pub(crate) fn narrowed(full: &PodSpec) -> PodSpec {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduling::Constraints;
    use crate::workload::{pod_images, pod_spec_path, pull_secret_names, service_account};
    use serde_json::{Value, json};

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
            assert_eq!(narrow, narrowed(&full), "{text}");
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
                assert_eq!(narrow, narrowed(&full), "{text}");
            }
        }
    }
}
