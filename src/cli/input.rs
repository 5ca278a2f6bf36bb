//! Reading what `pullgate check` is given: Kubernetes YAML (files, directories, stdin;
//! multi-document; `List`), docker config files and Secret manifests.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::Deserialize as _;
use serde_json::Value;

use crate::keyring::{self, ConfigFormat, DockerConfig, KeyringError};
use crate::workload::Workload;

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

/// Everything read from `-f` and `--pull-secret`.
#[derive(Debug, Default)]
pub struct Inputs {
    pub workloads: Vec<Workload>,
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
            for object in flatten_lists(doc) {
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
            let shown = if file == Path::new("-") {
                "<stdin>".to_string()
            } else {
                file.display().to_string()
            };
            let text = read(&file)?;
            let mut found = false;
            for (index, doc) in documents(&shown, &text)?.into_iter().enumerate() {
                let doc_err = |reason: String| InputError::Document {
                    path: shown.clone(),
                    index: index + 1,
                    reason,
                };
                for object in flatten_lists(doc) {
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
                                self.workloads.push(workload);
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

/// `kind: List` (what `kubectl get -o yaml` prints) holds its objects in `items`.
fn flatten_lists(value: Value) -> Vec<Value> {
    let mut out = Vec::new();
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        let is_list = v
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k == "List" || k.ends_with("List"))
            && v.get("items").is_some_and(Value::is_array);
        if is_list {
            if let Some(Value::Array(items)) = v.get("items") {
                stack.extend(items.iter().rev().cloned());
            }
        } else {
            out.push(v);
        }
    }
    out
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
        let kinds: Vec<String> = flatten_lists(list)
            .iter()
            .map(|v| v["kind"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(kinds, ["Pod", "Job"]);
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

    #[test]
    fn scalar_documents_are_rejected_with_their_index() {
        let err = documents("x.yaml", "kind: Pod\n---\njust a string\n").expect_err("invalid");
        assert!(err.to_string().contains("document 2"), "{err}");
    }
}
