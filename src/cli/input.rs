//! Reading what `pullgate check` is given: Kubernetes YAML or JSON (files, directories,
//! stdin; multi-document; `List`), docker config files and Secret manifests, with the file,
//! line and column of every image field and pull-secret reference.

mod positions;

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::Deserialize as _;
use serde_json::Value;

use crate::keyring::{self, ConfigFormat, DockerConfig, KeyringError};
use crate::workload::{Workload, pod_spec_path};

pub use positions::{DocumentPositions, Position, Step};

/// How stdin is named, as on the command line.
pub const STDIN: &str = "-";

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: document {index}: {reason}")]
    Document {
        path: String,
        index: usize,
        reason: String,
    },
    #[error("{path}: {reason}")]
    Secret { path: String, reason: String },
    #[error("{path}: no Kubernetes object with a pod spec or pull secret found")]
    Empty { path: String },
}

/// A pull secret, as given on the command line or found among the manifests.
#[derive(Debug, Clone)]
pub struct PullSecret {
    pub name: String,
    pub namespace: Option<String>,
    /// A Secret manifest given with `-f` may hold content the apiserver stores but the
    /// kubelet cannot decode: kept as that error, which fails the pods that name it.
    pub config: Result<DockerConfig, KeyringError>,
}

/// Where something was read: the file as named on the command line (`-` for stdin) and,
/// when the YAML event parser could follow the text, the line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub position: Option<Position>,
}

impl Location {
    pub fn line(&self) -> Option<usize> {
        self.position.map(|p| p.line)
    }

    pub fn column(&self) -> Option<usize> {
        self.position.map(|p| p.column)
    }

    /// Read from stdin rather than a file a CI system can point at.
    pub fn is_stdin(&self) -> bool {
        self.file == STDIN
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.position {
            Some(p) => write!(f, "{}:{}", self.file, p.line),
            None => f.write_str(&self.file),
        }
    }
}

/// One image field of a pod spec, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageField {
    /// The pod spec list it is in: `initContainers`, `containers`, `ephemeralContainers`
    /// or `volumes` (an image volume's `image.reference`).
    pub list: &'static str,
    /// The container's (or volume's) name.
    pub name: String,
    pub image: String,
    pub location: Location,
}

/// One `imagePullSecrets[].name`, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretReference {
    pub name: String,
    pub location: Location,
}

/// A workload read from `-f`, with where its images and pull-secret references are.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub workload: Workload,
    pub images: Vec<ImageField>,
    pub pull_secrets: Vec<SecretReference>,
}

/// Everything read from `-f` and `--pull-secret`.
#[derive(Debug, Default)]
pub struct Inputs {
    pub workloads: Vec<Manifest>,
    /// Secret manifests, in the order given (`--pull-secret` first, then `-f`).
    pub secrets: Vec<PullSecret>,
    /// Plain docker config files from `--pull-secret`, in order: used for every image.
    pub configs: Vec<PullSecret>,
    /// ServiceAccounts found in the manifests: (namespace, name) → imagePullSecrets.
    pub service_accounts: HashMap<(Option<String>, String), Vec<String>>,
}

impl Inputs {
    /// Read `--pull-secret` files: a docker config JSON, or a Secret manifest (YAML/JSON,
    /// `data` or `stringData`).
    pub fn add_pull_secret_file(&mut self, path: &Path) -> Result<(), InputError> {
        let text = read(path)?;
        let shown = path.display().to_string();
        let secret_err = |reason: String| InputError::Secret {
            path: shown.clone(),
            reason,
        };
        if let Ok(value) = serde_json::from_str::<Value>(&text)
            && value.get("kind").is_none()
        {
            let config =
                DockerConfig::parse_any(text.as_bytes()).map_err(|e| secret_err(e.to_string()))?;
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| shown.clone());
            self.configs.push(PullSecret {
                name,
                namespace: None,
                config: Ok(config),
            });
            return Ok(());
        }
        let before = self.secrets.len();
        for (index, doc) in documents(&shown, &text)?.into_iter().enumerate() {
            for (_, object) in flatten_lists(doc) {
                match object.get("kind").and_then(Value::as_str) {
                    Some("Secret") => {
                        let doc_err = |reason: String| InputError::Document {
                            path: shown.clone(),
                            index: index + 1,
                            reason,
                        };
                        let secret = pull_secret_from_manifest(&object).map_err(doc_err)?;
                        // A file given as a pull secret must be one: bad input otherwise.
                        if let Err(e) = &secret.config {
                            return Err(doc_err(format!("Secret {:?}: {e}", secret.name)));
                        }
                        self.secrets.push(secret);
                    }
                    _ => {
                        return Err(secret_err(
                            "expected a docker config JSON or a Secret manifest of type kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg"
                                .to_string(),
                        ));
                    }
                }
            }
        }
        if self.secrets.len() == before {
            return Err(secret_err("no pull secret in the file".to_string()));
        }
        Ok(())
    }

    /// Read `-f`: a file, a directory (its `.yaml`, `.yml` and `.json` files, recursively,
    /// in name order) or `-` for stdin.
    pub fn add_manifests(&mut self, path: &Path) -> Result<(), InputError> {
        for file in expand(path)? {
            let shown = file.display().to_string();
            let text = read(&file)?;
            let docs = documents(&shown, &text)?;
            // Positions come from a second parser; if it disagrees on the documents, the
            // findings keep their file but lose line and column.
            let positions = positions::documents(&text).filter(|p| p.len() == docs.len());
            let mut found = false;
            for (index, doc) in docs.into_iter().enumerate() {
                let doc_err = |reason: String| InputError::Document {
                    path: shown.clone(),
                    index: index + 1,
                    reason,
                };
                let doc_positions = positions.as_ref().and_then(|p| p.get(index));
                for (at, object) in flatten_lists(doc) {
                    let kind = object
                        .get("kind")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    match kind {
                        "Secret" => {
                            let ty = object
                                .get("type")
                                .and_then(Value::as_str)
                                .unwrap_or_default();
                            if ty == "kubernetes.io/dockerconfigjson"
                                || ty == "kubernetes.io/dockercfg"
                            {
                                self.secrets
                                    .push(pull_secret_from_manifest(&object).map_err(doc_err)?);
                                found = true;
                            }
                        }
                        "ServiceAccount" => {
                            let names = object
                                .get("imagePullSecrets")
                                .and_then(Value::as_array)
                                .map(|refs| {
                                    refs.iter()
                                        .filter_map(|r| r.get("name").and_then(Value::as_str))
                                        .filter(|n| !n.is_empty())
                                        .map(str::to_string)
                                        .collect()
                                })
                                .unwrap_or_default();
                            let meta = |f: &str| {
                                object
                                    .get("metadata")
                                    .and_then(|m| m.get(f))
                                    .and_then(Value::as_str)
                            };
                            if let Some(name) = meta("name") {
                                self.service_accounts.insert(
                                    (meta("namespace").map(str::to_string), name.to_string()),
                                    names,
                                );
                            }
                        }
                        _ => {
                            if let Some(workload) = Workload::from_object(&object)
                                .map_err(|e| doc_err(e.to_string()))?
                            {
                                let source = Source {
                                    file: &shown,
                                    positions: doc_positions,
                                    object_path: &at,
                                };
                                let (images, pull_secrets) = source.fields(kind, &object);
                                self.workloads.push(Manifest {
                                    workload,
                                    images,
                                    pull_secrets,
                                });
                                found = true;
                            }
                        }
                    }
                }
            }
            // A single file that holds nothing to check is most likely the wrong file.
            if !found && path.is_file() {
                return Err(InputError::Empty { path: shown });
            }
        }
        Ok(())
    }

    /// The named pull secret for a workload in `namespace`: same namespace, or a Secret
    /// manifest that names none.
    pub fn secret(&self, namespace: Option<&str>, name: &str) -> Option<&PullSecret> {
        self.secrets.iter().find(|s| {
            s.name == name
                && (s.namespace.is_none()
                    || namespace.is_none()
                    || s.namespace.as_deref() == namespace)
        })
    }

    /// What the ServiceAccount admission plugin would merge into a template without
    /// `imagePullSecrets`, when that ServiceAccount is among the manifests.
    pub fn service_account_secrets(
        &self,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<&[String]> {
        let ns = namespace.map(str::to_string);
        self.service_accounts
            .get(&(ns, name.to_string()))
            .or_else(|| self.service_accounts.get(&(None, name.to_string())))
            .map(Vec::as_slice)
    }
}

fn read(path: &Path) -> Result<String, InputError> {
    let shown = path.display().to_string();
    let err = |source| InputError::Read {
        path: shown.clone(),
        source,
    };
    let mut bytes = Vec::new();
    if path == Path::new("-") {
        std::io::stdin().read_to_end(&mut bytes).map_err(err)?;
    } else {
        bytes = std::fs::read(path).map_err(err)?;
    }
    String::from_utf8(bytes).map_err(|e| InputError::Read {
        path: shown.clone(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text: {e}"),
        ),
    })
}

fn expand(path: &Path) -> Result<Vec<PathBuf>, InputError> {
    if path == Path::new("-") || !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| InputError::Read {
            path: dir.display().to_string(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| InputError::Read {
                path: dir.display().to_string(),
                source,
            })?;
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            ) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Every non-empty document of a YAML (or JSON) stream, as JSON values.
fn documents(path: &str, text: &str) -> Result<Vec<Value>, InputError> {
    let mut out = Vec::new();
    for (index, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc).map_err(|e| InputError::Document {
            path: path.to_string(),
            index: index + 1,
            reason: format!("not valid YAML: {e}"),
        })?;
        match value {
            Value::Null => {}
            Value::Object(_) => out.push(value),
            _ => {
                return Err(InputError::Document {
                    path: path.to_string(),
                    index: index + 1,
                    reason: "not a Kubernetes object (expected a mapping with a kind)".to_string(),
                });
            }
        }
    }
    Ok(out)
}

/// `kind: List` (what `kubectl get -o yaml` prints) holds its objects in `items`: every
/// object, with its path inside the document.
fn flatten_lists(value: Value) -> Vec<(Vec<Step>, Value)> {
    let mut out = Vec::new();
    let mut stack = vec![(Vec::new(), value)];
    while let Some((at, v)) = stack.pop() {
        let is_list = v
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k == "List" || k.ends_with("List"))
            && v.get("items").is_some_and(Value::is_array);
        if !is_list {
            out.push((at, v));
        } else if let Value::Object(mut map) = v
            && let Some(Value::Array(items)) = map.remove("items")
        {
            for (i, item) in items.into_iter().enumerate().rev() {
                let mut path = at.clone();
                path.extend([Step::key("items"), Step::Index(i)]);
                stack.push((path, item));
            }
        }
    }
    out
}

/// Where one object sits: its file, its document's positions and its path in the document.
struct Source<'a> {
    file: &'a str,
    positions: Option<&'a DocumentPositions>,
    object_path: &'a [Step],
}

/// The pod spec lists that hold containers, in the order [`crate::workload::container_images`]
/// reads them.
const CONTAINER_LISTS: [&str; 3] = ["initContainers", "containers", "ephemeralContainers"];

impl Source<'_> {
    fn location(&self, path: &[Step]) -> Location {
        let full: Vec<Step> = self.object_path.iter().chain(path).cloned().collect();
        Location {
            file: self.file.to_string(),
            position: self.positions.map(|p| p.locate(&full)),
        }
    }

    /// The image fields (every container list, and image volumes' `image.reference`) and
    /// the `imagePullSecrets` names of a workload object of `kind`, with their locations.
    fn fields(&self, kind: &str, object: &Value) -> (Vec<ImageField>, Vec<SecretReference>) {
        let mut images = Vec::new();
        let mut secrets = Vec::new();
        let Some(spec_path) = pod_spec_path(kind) else {
            return (images, secrets);
        };
        let mut spec = object;
        for step in spec_path {
            match spec.get(step) {
                Some(next) => spec = next,
                None => return (images, secrets),
            }
        }
        let at = |rest: &[Step]| -> Vec<Step> {
            spec_path
                .iter()
                .map(|s| Step::key(s))
                .chain(rest.iter().cloned())
                .collect()
        };
        let text = |v: &Value, field: &str| {
            v.get(field)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        for list in CONTAINER_LISTS {
            let entries = spec.get(list).and_then(Value::as_array);
            for (i, entry) in entries.into_iter().flatten().enumerate() {
                images.push(ImageField {
                    list,
                    name: text(entry, "name"),
                    image: text(entry, "image"),
                    location: self.location(&at(&[
                        Step::key(list),
                        Step::Index(i),
                        Step::key("image"),
                    ])),
                });
            }
        }
        // Image volumes (KEP-4639) are pulled like containers' images.
        let volumes = spec.get("volumes").and_then(Value::as_array);
        for (i, volume) in volumes.into_iter().flatten().enumerate() {
            if let Some(image) = volume.get("image") {
                images.push(ImageField {
                    list: "volumes",
                    name: text(volume, "name"),
                    image: text(image, "reference"),
                    location: self.location(&at(&[
                        Step::key("volumes"),
                        Step::Index(i),
                        Step::key("image"),
                        Step::key("reference"),
                    ])),
                });
            }
        }
        let refs = spec.get("imagePullSecrets").and_then(Value::as_array);
        for (i, reference) in refs.into_iter().flatten().enumerate() {
            let name = text(reference, "name");
            if !name.is_empty() {
                secrets.push(SecretReference {
                    name,
                    location: self.location(&at(&[
                        Step::key("imagePullSecrets"),
                        Step::Index(i),
                        Step::key("name"),
                    ])),
                });
            }
        }
        (images, secrets)
    }
}

/// A Secret manifest of a pull-secret type, with `data` (base64) or `stringData`. `Err` for
/// what the apiserver would refuse to store; content it stores but the kubelet cannot
/// decode is kept in [`PullSecret::config`].
fn pull_secret_from_manifest(object: &Value) -> Result<PullSecret, String> {
    let meta = |f: &str| {
        object
            .get("metadata")
            .and_then(|m| m.get(f))
            .and_then(Value::as_str)
    };
    let name = meta("name")
        .ok_or("Secret without metadata.name")?
        .to_string();
    let ty = object
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (format, key) = match ty {
        "kubernetes.io/dockerconfigjson" => (ConfigFormat::DockerConfigJson, ".dockerconfigjson"),
        "kubernetes.io/dockercfg" => (ConfigFormat::DockerCfg, ".dockercfg"),
        other => {
            return Err(format!(
                "Secret {name:?} has type {other:?}; a pull secret is kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg"
            ));
        }
    };
    // stringData wins over data, as the apiserver merges it.
    let content = if let Some(s) = object
        .get("stringData")
        .and_then(|d| d.get(key))
        .and_then(Value::as_str)
    {
        s.as_bytes().to_vec()
    } else if let Some(b64) = object
        .get("data")
        .and_then(|d| d.get(key))
        .and_then(Value::as_str)
    {
        keyring::decode_secret_data(b64)
            .map_err(|e| format!("Secret {name:?}: data.{key} is not base64: {e}"))?
    } else {
        return Err(format!(
            "Secret {name:?} of type {ty} has no {key} in data or stringData"
        ));
    };
    // `ValidateSecret`: the apiserver stores only JSON objects under the key.
    if !keyring::apiserver_accepts(&content) {
        return Err(format!(
            "Secret {name:?}: the apiserver refuses it: {key} is not a JSON object"
        ));
    }
    Ok(PullSecret {
        name,
        namespace: meta("namespace").map(str::to_string),
        config: DockerConfig::parse(&content, format),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_flattened() {
        let list = serde_json::json!({"kind": "List", "items": [{"kind": "Pod"}, {"kind": "List", "items": [{"kind": "Job"}]}]});
        let kinds: Vec<(Vec<Step>, String)> = flatten_lists(list)
            .into_iter()
            .map(|(at, v)| (at, v["kind"].as_str().unwrap_or_default().to_string()))
            .collect();
        let items = |i: usize| [Step::key("items"), Step::Index(i)];
        assert_eq!(
            kinds,
            [
                (items(0).to_vec(), "Pod".to_string()),
                ([items(1), items(0)].concat(), "Job".to_string()),
            ]
        );
    }

    #[test]
    fn string_data_and_data_secrets_both_read() {
        let config = r#"{"auths":{"r.io":{"username":"u","password":"p"}}}"#;
        let with_string = serde_json::json!({"kind": "Secret", "metadata": {"name": "a"}, "type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": config}});
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(config);
        let with_data = serde_json::json!({"kind": "Secret", "metadata": {"name": "b"}, "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": encoded}});
        assert_eq!(
            pull_secret_from_manifest(&with_string)
                .expect("valid")
                .config
                .map(|c| c.len()),
            Ok(1)
        );
        assert_eq!(
            pull_secret_from_manifest(&with_data)
                .expect("valid")
                .config
                .map(|c| c.len()),
            Ok(1)
        );
    }

    #[test]
    fn data_is_base64_as_the_apiserver_reads_it() {
        // A YAML block scalar leaves line breaks in `data`; Go's decoder skips them.
        let data = "eyJhdXRocyI6
eyJyLmlvIjp7
fX19
";
        let secret = serde_json::json!({"kind": "Secret", "metadata": {"name": "a"}, "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": data}});
        let read = pull_secret_from_manifest(&secret).expect("the apiserver stores it");
        assert_eq!(read.config.map(|c| c.len()), Ok(1));
    }

    #[test]
    fn content_the_kubelet_cannot_decode_is_kept_as_its_error() {
        let secret = serde_json::json!({"kind": "Secret", "metadata": {"name": "a"}, "type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": r#"{"auths":{"r.io":{"auth":"%%%"}}}"#}});
        let read = pull_secret_from_manifest(&secret).expect("the apiserver stores it");
        assert!(read.config.is_err());
    }

    #[test]
    fn content_the_apiserver_refuses_is_bad_input() {
        for content in ["[]", "{", "", "\"x\""] {
            let secret = serde_json::json!({"kind": "Secret", "metadata": {"name": "a"}, "type": "kubernetes.io/dockercfg", "stringData": {".dockercfg": content}});
            let err = pull_secret_from_manifest(&secret).expect_err("refused");
            assert!(err.contains("apiserver refuses"), "{err}");
        }
    }

    #[test]
    fn wrong_secret_type_is_explained() {
        let opaque = serde_json::json!({"kind": "Secret", "metadata": {"name": "a"}, "type": "Opaque", "data": {}});
        let err = pull_secret_from_manifest(&opaque).expect_err("not a pull secret");
        assert!(err.contains("Opaque"), "{err}");
    }

    /// Reads `text` as the file `k8s/app.yaml` and returns its manifests.
    fn manifests(text: &str) -> Vec<Manifest> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.yaml");
        std::fs::write(&path, text).expect("write");
        let mut inputs = Inputs::default();
        inputs.add_manifests(&path).expect("valid manifests");
        inputs.workloads
    }

    fn line_col(l: &Location) -> (usize, usize) {
        l.position.map(|p| (p.line, p.column)).expect("a position")
    }

    #[test]
    fn every_image_field_and_pull_secret_reference_is_located() {
        let text = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      imagePullSecrets:
      - name: regcred
      initContainers:
      - name: init
        image: r.io/init:1
      containers:
      - {name: web, image: r.io/web:1}
      ephemeralContainers:
      - name: debug
        image: busybox
      volumes:
      - name: models
        image: {reference: r.io/models:v1, pullPolicy: IfNotPresent}
      - name: scratch
        emptyDir: {}
";
        let m = manifests(text);
        assert_eq!(m.len(), 1);
        let got: Vec<(&str, &str, &str, (usize, usize))> = m[0]
            .images
            .iter()
            .map(|f| {
                (
                    f.list,
                    f.name.as_str(),
                    f.image.as_str(),
                    line_col(&f.location),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("initContainers", "init", "r.io/init:1", (11, 16)),
                ("containers", "web", "r.io/web:1", (13, 28)),
                ("ephemeralContainers", "debug", "busybox", (16, 16)),
                ("volumes", "models", "r.io/models:v1", (19, 28)),
            ]
        );
        let secrets: Vec<(&str, (usize, usize))> = m[0]
            .pull_secrets
            .iter()
            .map(|s| (s.name.as_str(), line_col(&s.location)))
            .collect();
        assert_eq!(secrets, [("regcred", (8, 15))]);
        assert!(
            m[0].images
                .iter()
                .all(|f| f.location.file.ends_with("app.yaml"))
        );
    }

    #[test]
    fn list_items_and_later_documents_are_located_in_their_own_document() {
        let text = "\
kind: ConfigMap
metadata: {name: skipped}
---
kind: List
items:
- kind: Pod
  metadata: {name: a}
  spec:
    containers:
    - name: a
      image: r.io/a:1
- kind: Job
  metadata: {name: b}
  spec:
    template:
      spec:
        containers: [{name: b, image: \"r.io/b:1\"}]
";
        let m = manifests(text);
        let located: Vec<(&str, (usize, usize))> = m
            .iter()
            .flat_map(|m| &m.images)
            .map(|f| (f.image.as_str(), line_col(&f.location)))
            .collect();
        assert_eq!(located, [("r.io/a:1", (11, 14)), ("r.io/b:1", (17, 39))]);
    }

    #[test]
    fn a_container_without_image_is_located_at_its_entry() {
        let text = "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n";
        let m = manifests(text);
        assert_eq!(m[0].images[0].image, "");
        assert_eq!(line_col(&m[0].images[0].location), (5, 5));
    }

    #[test]
    fn scalar_documents_are_rejected_with_their_index() {
        let err = documents("x.yaml", "kind: Pod\n---\njust a string\n").expect_err("invalid");
        assert!(err.to_string().contains("document 2"), "{err}");
    }
}
