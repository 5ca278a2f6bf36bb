//! AdmissionReview v1 ↔ [`Subject`] / [`Decision`]. No sockets, no registry: what the
//! apiserver sent, which images of it need checking, and the JSON to answer with.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::policy::Decision;
use k8s_openapi::api::core::v1::PodSpec;

use crate::workload::{ImageKind, PodImage, Workload, WorkloadError, json, pod_images};

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// Not an AdmissionReview at all: answered with HTTP 400.
    #[error("body is not an AdmissionReview v1: {0}")]
    Undecodable(String),
    /// An AdmissionReview whose request cannot be used: answered with its uid and a reason.
    #[error("{reason}")]
    Invalid { uid: String, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// The envelope, read for the fields pullgate uses; `object` and `oldObject` stay raw
/// text until the kind says where their pod spec is.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Review<'a> {
    #[serde(default, borrow)]
    api_version: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    request: Option<Request<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request<'a> {
    uid: String,
    kind: GroupVersionKind,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(borrow)]
    operation: Cow<'a, str>,
    #[serde(default)]
    dry_run: Option<bool>,
    #[serde(default, borrow)]
    object: Option<&'a RawValue>,
    #[serde(default, borrow)]
    old_object: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct GroupVersionKind {
    #[serde(default)]
    kind: String,
}

/// serde_json's nesting limit, which a `Value` of the objects would have enforced: deeper
/// objects are refused (HTTP 400) as before, though they are no longer parsed whole.
const MAX_OBJECT_DEPTH: usize = 126;

/// What a review is about, and the images that need an answer.
#[derive(Debug, Clone)]
pub struct Subject {
    pub uid: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub operation: Operation,
    pub sub_resource: Option<String>,
    pub dry_run: bool,
    /// The pod spec (a Pod's, or a workload's template); `None` when pullgate has nothing
    /// to say about this request (another kind, a DELETE, a `status` update).
    pub workload: Option<Workload>,
    /// Images to check (containers', then image volumes'): all of them on CREATE; on
    /// UPDATE only those not already in `oldObject` (relabeling a running pod whose tag
    /// was deleted since must pass).
    pub images: Vec<PodImage>,
}

/// Decode a request body.
pub fn decode(body: &[u8]) -> Result<Subject, ReviewError> {
    let review: Review<'_> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            // Still echo the uid when the envelope is readable: the apiserver matches on it.
            let uid = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.get("request")?.get("uid")?.as_str().map(str::to_string));
            return Err(match uid {
                Some(uid) => ReviewError::Invalid {
                    uid,
                    reason: format!("malformed AdmissionReview request: {e}"),
                },
                None => ReviewError::Undecodable(e.to_string()),
            });
        }
    };
    if review
        .kind
        .as_deref()
        .is_some_and(|k| k != "AdmissionReview")
        || review
            .api_version
            .as_deref()
            .is_some_and(|v| v != "admission.k8s.io/v1")
    {
        return Err(ReviewError::Undecodable(format!(
            "expected admission.k8s.io/v1 AdmissionReview, got {} {}",
            review.api_version.unwrap_or_default(),
            review.kind.unwrap_or_default()
        )));
    }
    let request = review
        .request
        .ok_or_else(|| ReviewError::Undecodable("the review has no request".to_string()))?;
    for (field, raw) in [
        ("object", request.object),
        ("oldObject", request.old_object),
    ] {
        if raw.is_some_and(|r| json::depth(r.get()) > MAX_OBJECT_DEPTH) {
            return Err(ReviewError::Undecodable(format!(
                "request.{field} is nested deeper than {MAX_OBJECT_DEPTH} levels"
            )));
        }
    }
    let uid = request.uid.clone();
    let invalid = |reason: String| ReviewError::Invalid {
        uid: uid.clone(),
        reason,
    };
    let operation = match request.operation.as_ref() {
        "CREATE" => Operation::Create,
        "UPDATE" => Operation::Update,
        "DELETE" => Operation::Delete,
        "CONNECT" => Operation::Connect,
        other => return Err(invalid(format!("unknown operation {other:?}"))),
    };
    let sub_resource = request.sub_resource.filter(|s| !s.is_empty());
    let kind = request.kind.kind;
    let handled_subresource = match sub_resource.as_deref() {
        None => true,
        Some("ephemeralcontainers") => kind == "Pod",
        Some(_) => false,
    };

    let mut workload = None;
    let mut images = Vec::new();
    if handled_subresource && matches!(operation, Operation::Create | Operation::Update) {
        // The review names the kind; the object may omit it. (A JSON null is `None`.)
        let parse = |raw: &RawValue| -> Result<Option<Workload>, WorkloadError> {
            Workload::of_kind_json(&kind, raw.get())
        };
        if let Some(object) = request.object {
            workload = parse(object).map_err(|e| invalid(e.to_string()))?;
        }
        if let Some(w) = &workload {
            images = pod_images(&w.spec);
            if operation == Operation::Update
                && let Some(old) = request.old_object
                && let Ok(Some(old)) = parse(old)
                && pulled_alike(&old.spec, &w.spec)
            {
                // A container image and an image volume are judged differently (artifacts
                // are fine in a volume), so each is compared with its own kind; a changed
                // pull policy changes what the nodes' copies are worth.
                let key =
                    |i: &PodImage| (i.kind == ImageKind::Volume, i.image.clone(), i.pull_policy);
                let before: HashSet<_> = pod_images(&old.spec).iter().map(key).collect();
                images.retain(|i| !before.contains(&key(i)));
            }
        }
    }

    let name = request
        .name
        .filter(|n| !n.is_empty())
        .or_else(|| {
            workload
                .as_ref()
                .map(|w| w.name.clone())
                .filter(|n| !n.is_empty())
        })
        .unwrap_or_default();
    Ok(Subject {
        uid: request.uid,
        kind,
        namespace: request.namespace.unwrap_or_default(),
        name,
        operation,
        sub_resource,
        dry_run: request.dry_run.unwrap_or(false),
        workload,
        images,
    })
}

/// Whether a pod spec's images are pulled the same way before and after an UPDATE: the
/// same places to run (nodeSelector, node affinity, os, RuntimeClass, node) and the same
/// credentials (imagePullSecrets, ServiceAccount). When not, every image of the new spec
/// is checked again: a template moved to arm64 nodes, or stripped of its pull secret,
/// makes pods whose unchanged images no longer pull.
fn pulled_alike(old: &PodSpec, new: &PodSpec) -> bool {
    let node_affinity = |s: &PodSpec| s.affinity.as_ref().and_then(|a| a.node_affinity.clone());
    old.node_selector == new.node_selector
        && node_affinity(old) == node_affinity(new)
        && old.os == new.os
        && old.runtime_class_name == new.runtime_class_name
        && old.node_name == new.node_name
        && old.image_pull_secrets == new.image_pull_secrets
        && old.service_account_name == new.service_account_name
        && old.service_account == new.service_account
}

/// The AdmissionReview answering `uid` with `decision`, as the JSON body of the reply:
/// written once into a buffer sized for it, no `Value` built. Members come in the order a
/// `serde_json::Value` would print them (sorted).
pub fn respond(uid: &str, decision: &Decision) -> Vec<u8> {
    let status = decision.message.as_deref().map(|message| Status {
        code: 403,
        // reason Forbidden makes kubectl print "Error from server (Forbidden): …".
        message: Cow::Borrowed(message),
        reason: "Forbidden",
    });
    let size = decision.message.as_ref().map_or(0, String::len)
        + decision.warnings.iter().map(|w| w.len() + 3).sum::<usize>()
        + decision
            .audit_annotations
            .iter()
            .map(|(k, v)| k.len() + v.len() + 6)
            .sum::<usize>();
    to_body(
        size,
        Response {
            allowed: decision.allowed,
            audit_annotations: &decision.audit_annotations,
            status,
            uid,
            warnings: &decision.warnings,
        },
    )
}

/// A request that cannot be judged: refused with its uid and a reason (HTTP 200, as the
/// apiserver expects a review back).
pub fn respond_invalid(uid: &str, reason: &str) -> Vec<u8> {
    to_body(
        reason.len(),
        Response {
            allowed: false,
            audit_annotations: &BTreeMap::new(),
            status: Some(Status {
                code: 400,
                message: Cow::Owned(format!("pullgate: {reason}")),
                reason: "BadRequest",
            }),
            uid,
            warnings: &[],
        },
    )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AnswerReview<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: Response<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Response<'a> {
    allowed: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    audit_annotations: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status<'a>>,
    uid: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
}

#[derive(Serialize)]
struct Status<'a> {
    code: u16,
    message: Cow<'a, str>,
    reason: &'static str,
}

/// The envelope around `response`; `variable` is the size of its free text.
fn to_body(variable: usize, response: Response<'_>) -> Vec<u8> {
    // The fixed members, the uid and some room for escapes.
    let mut body = Vec::with_capacity(160 + response.uid.len() + variable + variable / 8);
    let review = AnswerReview {
        api_version: "admission.k8s.io/v1",
        kind: "AdmissionReview",
        response,
    };
    // Writing plain structs of strings into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut body, &review);
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn garbage_is_undecodable() {
        assert!(matches!(
            decode(b"not json"),
            Err(ReviewError::Undecodable(_))
        ));
        assert!(matches!(decode(b"{}"), Err(ReviewError::Undecodable(_))));
        assert!(matches!(
            decode(br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"}"#),
            Err(ReviewError::Undecodable(_))
        ));
    }

    #[test]
    fn a_readable_uid_is_echoed_even_when_the_request_is_malformed() {
        let body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-1","kind":{"kind":"Pod"},"operation":42}}"#;
        match decode(body) {
            Err(ReviewError::Invalid { uid, .. }) => assert_eq!(uid, "u-1"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn denial_carries_forbidden_status() {
        let d = Decision {
            allowed: false,
            message: Some("no".into()),
            ..Decision::default()
        };
        let v: Value = serde_json::from_slice(&respond("u", &d)).expect("JSON");
        assert_eq!(v["response"]["uid"], "u");
        assert_eq!(v["response"]["status"]["code"], 403);
        assert_eq!(v["response"]["status"]["reason"], "Forbidden");
        assert!(v["response"].get("warnings").is_none());
    }

    /// The answer as it was built before, from `Value`s.
    fn as_values(uid: &str, decision: &Decision) -> Value {
        let mut response = json!({ "uid": uid, "allowed": decision.allowed });
        if let Some(message) = &decision.message {
            response["status"] = json!({ "code": 403, "reason": "Forbidden", "message": message });
        }
        if !decision.warnings.is_empty() {
            response["warnings"] = json!(decision.warnings);
        }
        if !decision.audit_annotations.is_empty() {
            response["auditAnnotations"] = json!(decision.audit_annotations);
        }
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
    }

    #[test]
    fn answers_are_byte_for_byte_what_values_printed() {
        let mut full = Decision {
            allowed: false,
            message: Some("container \"web\": tag \"latset\" not found\n".into()),
            warnings: vec!["one".into(), "two \u{1f}".into()],
            ..Decision::default()
        };
        full.audit_annotations
            .insert("pullgate.dev/x".into(), "ünïcode".into());
        for (uid, decision) in [
            ("u-1", Decision::allow()),
            ("9732005c-ee62-4a0d-b075-bad9897562cd", full),
        ] {
            let expected = serde_json::to_vec(&as_values(uid, &decision)).expect("JSON");
            assert_eq!(
                String::from_utf8_lossy(&respond(uid, &decision)),
                String::from_utf8_lossy(&expected)
            );
        }
        let invalid: Value = serde_json::from_slice(&respond_invalid("u", "bad")).expect("JSON");
        assert_eq!(
            invalid,
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {
                "uid": "u", "allowed": false,
                "status": {"code": 400, "reason": "BadRequest", "message": "pullgate: bad"}}})
        );
    }

    fn deployment(volume_image: &str, container_image: &str) -> Value {
        json!({"kind": "Deployment", "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"template": {"spec": {
                "containers": [{"name": "app", "image": container_image}],
                "volumes": [{"name": "data", "image": {"reference": volume_image}}]}}}})
    }

    fn update(old: Value, new: Value) -> Vec<u8> {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "u", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "operation": "UPDATE", "namespace": "ns", "name": "web",
            "object": new, "oldObject": old}})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn an_update_checks_only_new_or_changed_image_volumes() {
        let old = deployment("r.io/data:1", "r.io/app:1");
        let unchanged = decode(&update(old.clone(), old.clone())).expect("decodes");
        assert!(unchanged.images.is_empty());
        let changed = decode(&update(
            old.clone(),
            deployment("r.io/data:2", "r.io/app:1"),
        ))
        .expect("decodes");
        let images: Vec<(&str, ImageKind)> = changed
            .images
            .iter()
            .map(|i| (i.image.as_str(), i.kind))
            .collect();
        assert_eq!(images, [("r.io/data:2", ImageKind::Volume)]);
        // The same reference moved from a container to a volume is judged anew.
        let moved = decode(&update(old, deployment("r.io/app:1", "r.io/app:1"))).expect("decodes");
        assert_eq!(moved.images.len(), 1);
        assert_eq!(moved.images[0].kind, ImageKind::Volume);
    }

    #[rstest::rstest]
    #[case::node_selector("nodeSelector", json!({"kubernetes.io/arch": "arm64"}))]
    #[case::node_affinity("affinity", json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["arm64"]}]}]}}}))]
    #[case::os("os", json!({"name": "windows"}))]
    #[case::runtime_class("runtimeClassName", json!("gvisor"))]
    #[case::pull_secrets("imagePullSecrets", json!([{"name": "other"}]))]
    #[case::service_account("serviceAccountName", json!("builder"))]
    fn an_update_that_changes_how_images_are_pulled_checks_them_all_again(
        #[case] field: &str,
        #[case] value: Value,
    ) {
        let old = deployment("r.io/data:1", "r.io/app:1");
        let mut new = old.clone();
        new["spec"]["template"]["spec"][field] = value;
        let subject = decode(&update(old, new)).expect("decodes");
        assert_eq!(subject.images.len(), 2, "{field}");
    }

    #[test]
    fn an_update_that_only_relabels_checks_nothing() {
        let old = deployment("r.io/data:1", "r.io/app:1");
        let mut new = old.clone();
        new["spec"]["template"]["metadata"] = json!({"labels": {"rollout": "2"}});
        new["spec"]["template"]["spec"]["affinity"] = json!({"podAntiAffinity": {}});
        let subject = decode(&update(old, new)).expect("decodes");
        assert!(subject.images.is_empty());
    }
}
