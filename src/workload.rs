//! Pod specs out of Kubernetes objects: a Pod, or the pod template of every workload kind
//! that stamps out Pods. Pure: JSON values in, typed specs out.

use k8s_openapi::api::core::v1::{Container, EphemeralContainer, PodSpec};
use serde::Deserialize as _;
use serde_json::Value;

use crate::checker::ImageSpec;

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
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
}

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
                    }));
                }
            }
        }
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

/// Which list a container comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerKind {
    Init,
    Regular,
    Ephemeral,
}

/// One container's image, with what decides whether it is pulled at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerImage {
    pub kind: ContainerKind,
    pub container: String,
    pub image: String,
    pub pull_policy: Option<String>,
}

impl ContainerImage {
    /// The checker's view: `imagePullPolicy: Never` is never pulled, so never checked.
    pub fn to_spec(&self) -> ImageSpec {
        let mut spec = ImageSpec::new(Some(&self.container), &self.image);
        if self.pull_policy.as_deref() == Some("Never") {
            spec.exempt = Some("imagePullPolicy is Never: the image is never pulled".to_string());
        }
        spec
    }
}

/// Every container image of a spec: init containers, containers, ephemeral containers.
pub fn container_images(spec: &PodSpec) -> Vec<ContainerImage> {
    let plain = |kind, c: &Container| ContainerImage {
        kind,
        container: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        pull_policy: c.image_pull_policy.clone(),
    };
    let ephemeral = |c: &EphemeralContainer| ContainerImage {
        kind: ContainerKind::Ephemeral,
        container: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        pull_policy: c.image_pull_policy.clone(),
    };
    spec.init_containers
        .iter()
        .flatten()
        .map(|c| plain(ContainerKind::Init, c))
        .chain(
            spec.containers
                .iter()
                .map(|c| plain(ContainerKind::Regular, c)),
        )
        .chain(spec.ephemeral_containers.iter().flatten().map(ephemeral))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        assert_eq!(images[0].kind, ContainerKind::Init);
        assert!(images[1].to_spec().exempt.is_some());
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
