//! The kubelet's `CredentialProviderConfig`, read and validated as the kubelet does it
//! (kubernetes/kubernetes `pkg/credentialprovider/plugin/config.go`
//! `readCredentialProviderConfig`, `decode`, `validateCredentialProviderConfig`; types in
//! kubernetes/kubelet `config/v1{,beta1,alpha1}/types.go`, v0.36.0): a file or a directory
//! of `*.json`/`*.yaml`/`*.yml` files, strictly decoded, providers merged, then validated
//! with the kubelet's field paths and wording.

use std::path::{Path, PathBuf};

use super::decode::{self, Document, Fatal, Node, Strict};
use super::golang::{GoDuration, parse_schemeless_url, quote};

pub const CONFIG_GROUP: &str = "kubelet.config.k8s.io";
pub const CONFIG_KIND: &str = "CredentialProviderConfig";
/// `plugin.go apiVersions`, sorted as `sets.StringKeySet(apiVersions).List()` lists them.
pub const PLUGIN_API_VERSIONS: [&str; 3] = [
    "credentialprovider.kubelet.k8s.io/v1",
    "credentialprovider.kubelet.k8s.io/v1alpha1",
    "credentialprovider.kubelet.k8s.io/v1beta1",
];
/// The plugin API version that carries `tokenAttributes`.
const TOKEN_API_VERSION: &str = "credentialprovider.kubelet.k8s.io/v1";
/// `validCacheTypes`, sorted.
const CACHE_TYPES: [&str; 2] = ["ServiceAccount", "Token"];

/// The merged configuration: every provider, in file and list order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CredentialProviderConfig {
    pub providers: Vec<ProviderConfig>,
}

/// One `providers[]` entry.
#[derive(Clone, Default, PartialEq)]
pub struct ProviderConfig {
    pub name: String,
    pub match_images: Vec<String>,
    /// `nil` in Go when absent; validation requires it.
    pub default_cache_duration: Option<GoDuration>,
    pub api_version: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub token_attributes: Option<TokenAttributes>,
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `env` may hold secrets meant for the plugin: names only.
        f.debug_struct("ProviderConfig")
            .field("name", &self.name)
            .field("match_images", &self.match_images)
            .field("default_cache_duration", &self.default_cache_duration)
            .field("api_version", &self.api_version)
            .field("args", &self.args.len())
            .field(
                "env",
                &self.env.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            )
            .field("token_attributes", &self.token_attributes.is_some())
            .finish()
    }
}

/// `ServiceAccountTokenAttributes` (KEP-4412; v1 only).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenAttributes {
    pub service_account_token_audience: String,
    pub cache_type: String,
    pub require_service_account: Option<bool>,
    pub required_service_account_annotation_keys: Vec<String>,
    pub optional_service_account_annotation_keys: Vec<String>,
}

/// Why a configuration cannot be used; the text is the kubelet's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// `readCredentialProviderConfig` then `validateCredentialProviderConfig`.
pub fn load(path: &Path) -> Result<CredentialProviderConfig, ConfigError> {
    let config = read(path)?;
    validate(&config).map_err(|errors| {
        ConfigError(format!(
            "failed to validate credential provider config: {}",
            aggregate(&errors)
        ))
    })?;
    Ok(config)
}

/// `readCredentialProviderConfig`: one file, or every `*.json`/`*.yaml`/`*.yml` of a
/// directory in lexicographic order, providers merged, a repeated name refused.
pub fn read(path: &Path) -> Result<CredentialProviderConfig, ConfigError> {
    let shown = path.display().to_string();
    if shown.is_empty() {
        return Err(ConfigError(
            "credential provider config path is empty".to_string(),
        ));
    }
    let meta = std::fs::metadata(path).map_err(|e| {
        ConfigError(format!(
            "unable to access path {}: stat {shown}: {}",
            quote(&shown),
            go_io_error(&e)
        ))
    })?;
    let files: Vec<PathBuf> = if meta.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| {
            ConfigError(format!(
                "unable to read directory {}: open {shown}: {}",
                quote(&shown),
                go_io_error(&e)
            ))
        })?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| {
                ConfigError(format!(
                    "unable to read directory {}: {}",
                    quote(&shown),
                    go_io_error(&e)
                ))
            })?;
            // os.ReadDir's DirEntry.IsDir does not follow symlinks: a symlink to a file
            // (a ConfigMap volume's `..data/x.yaml`) is read, as the kubelet reads it.
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            let name = entry.file_name();
            let ext = Path::new(&name).extension().and_then(|e| e.to_str());
            if !is_dir && matches!(ext, Some("json" | "yaml" | "yml")) {
                files.push(path.join(&name));
            }
        }
        // sort.Strings over the joined paths: byte order.
        files.sort_by(|a, b| {
            a.as_os_str()
                .as_encoded_bytes()
                .cmp(b.as_os_str().as_encoded_bytes())
        });
        if files.is_empty() {
            return Err(ConfigError(format!(
                "no configuration files found in directory {}",
                quote(&shown)
            )));
        }
        files
    } else {
        vec![path.to_path_buf()]
    };

    let mut merged = CredentialProviderConfig::default();
    let mut names: Vec<String> = Vec::new();
    for file in files {
        let file_shown = file.display().to_string();
        let data = std::fs::read(&file).map_err(|e| {
            ConfigError(format!(
                "unable to read file {}: open {file_shown}: {}",
                quote(&file_shown),
                go_io_error(&e)
            ))
        })?;
        let config = decode_config(&data).map_err(|e| {
            ConfigError(format!("error decoding config {}: {e}", quote(&file_shown)))
        })?;
        for provider in config.providers {
            if names.contains(&provider.name) {
                return Err(ConfigError(format!(
                    "duplicate provider name {} found in configuration file(s)",
                    quote(&provider.name)
                )));
            }
            names.push(provider.name.clone());
            merged.providers.push(provider);
        }
    }
    Ok(merged)
}

/// How Go's `os` errors end (`no such file or directory`), rather than Rust's.
fn go_io_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        std::io::ErrorKind::NotADirectory => "not a directory".to_string(),
        std::io::ErrorKind::IsADirectory => "is a directory".to_string(),
        _ => e.to_string(),
    }
}

/// Kinds the kubelet's plugin scheme also knows in these groups: decoding one of them
/// succeeds and then fails the kind check.
const OTHER_REGISTERED: [(&str, &str); 7] = [
    ("kubelet.config.k8s.io/v1beta1", "KubeletConfiguration"),
    (
        "kubelet.config.k8s.io/v1beta1",
        "SerializedNodeConfigSource",
    ),
    (
        "credentialprovider.kubelet.k8s.io/v1",
        "CredentialProviderRequest",
    ),
    (
        "credentialprovider.kubelet.k8s.io/v1",
        "CredentialProviderResponse",
    ),
    (
        "credentialprovider.kubelet.k8s.io/v1beta1",
        "CredentialProviderRequest",
    ),
    (
        "credentialprovider.kubelet.k8s.io/v1beta1",
        "CredentialProviderResponse",
    ),
    (
        "credentialprovider.kubelet.k8s.io/v1alpha1",
        "CredentialProviderRequest",
    ),
];

/// `config.go decode`: the universal decoder, then the kind and group checks.
pub fn decode_config(data: &[u8]) -> Result<CredentialProviderConfig, String> {
    let doc = decode::parse_document(data)?;
    let meta = decode::type_meta(&doc)?;
    let gv = meta.group_version();
    let package = match (
        meta.group.as_str(),
        meta.version.as_str(),
        meta.kind.as_str(),
    ) {
        (CONFIG_GROUP, v @ ("v1" | "v1beta1" | "v1alpha1"), CONFIG_KIND) => v,
        _ if OTHER_REGISTERED.contains(&(gv.as_str(), meta.kind.as_str())) => {
            return Err(format!(
                "failed to decode {} (wrong Kind)",
                quote(&meta.kind)
            ));
        }
        _ => return Err(decode::not_registered(&meta)),
    };
    decode_versioned(&doc, package)
}

fn decode_versioned(doc: &Document, package: &str) -> Result<CredentialProviderConfig, String> {
    let mut d = Strict::new(doc);
    let mut config = CredentialProviderConfig::default();
    let providers_type = format!("[]{package}.CredentialProvider");
    let provider_type = format!("{package}.CredentialProvider");
    let provider_fields: &[&'static str] = if package == "v1" {
        &[
            "name",
            "matchImages",
            "defaultCacheDuration",
            "apiVersion",
            "args",
            "env",
            "tokenAttributes",
        ]
    } else {
        &[
            "name",
            "matchImages",
            "defaultCacheDuration",
            "apiVersion",
            "args",
            "env",
        ]
    };
    let result = d.object(
        &doc.node,
        &format!("{package}.CredentialProviderConfig"),
        "CredentialProviderConfig",
        &["kind", "apiVersion", "providers"],
        |d, field, node| {
            match field {
                "kind" | "apiVersion" => {
                    d.string(node, "string");
                }
                _ => {
                    d.array(node, &providers_type, |d, item| {
                        let provider =
                            decode_provider(d, item, &provider_type, package, provider_fields)?;
                        // Go appends a zero value for `null` elements too.
                        config.providers.push(provider);
                        Ok(())
                    })?;
                }
            }
            Ok(())
        },
    );
    result.map_err(|Fatal(e)| e)?;
    d.finish()?;
    Ok(config)
}

fn decode_provider(
    d: &mut Strict,
    node: &Node,
    go_type: &str,
    package: &str,
    fields: &[&'static str],
) -> Result<ProviderConfig, Fatal> {
    let mut p = ProviderConfig::default();
    d.object(
        node,
        go_type,
        "CredentialProvider",
        fields,
        |d, field, node| {
            match field {
                "name" => p.name = d.string(node, "string").unwrap_or_default(),
                "matchImages" => p.match_images = d.string_list(node)?,
                "defaultCacheDuration" => p.default_cache_duration = d.duration(node)?,
                "apiVersion" => p.api_version = d.string(node, "string").unwrap_or_default(),
                "args" => p.args = d.string_list(node)?,
                "env" => {
                    let mut env = Vec::new();
                    let (list_type, item_type) = (
                        format!("[]{package}.ExecEnvVar"),
                        format!("{package}.ExecEnvVar"),
                    );
                    d.array(node, &list_type, |d, item| {
                        let (mut name, mut value) = (String::new(), String::new());
                        d.object(
                            item,
                            &item_type,
                            "ExecEnvVar",
                            &["name", "value"],
                            |d, f, n| {
                                let s = d.string(n, "string").unwrap_or_default();
                                if f == "name" {
                                    name = s;
                                } else {
                                    value = s;
                                }
                                Ok(())
                            },
                        )?;
                        env.push((name, value));
                        Ok(())
                    })?;
                    p.env = env;
                }
                _ => {
                    if matches!(node, Node::Null) {
                        return Ok(());
                    }
                    let mut t = TokenAttributes::default();
                    d.object(
                        node,
                        &format!("{package}.ServiceAccountTokenAttributes"),
                        "ServiceAccountTokenAttributes",
                        &[
                            "serviceAccountTokenAudience",
                            "cacheType",
                            "requireServiceAccount",
                            "requiredServiceAccountAnnotationKeys",
                            "optionalServiceAccountAnnotationKeys",
                        ],
                        |d, f, n| {
                            match f {
                                "serviceAccountTokenAudience" => {
                                    t.service_account_token_audience =
                                        d.string(n, "string").unwrap_or_default()
                                }
                                "cacheType" => {
                                    t.cache_type = d
                                        .string(
                                            n,
                                            &format!("{package}.ServiceAccountTokenCacheType"),
                                        )
                                        .unwrap_or_default()
                                }
                                "requireServiceAccount" => t.require_service_account = d.bool(n),
                                "requiredServiceAccountAnnotationKeys" => {
                                    t.required_service_account_annotation_keys = d.string_list(n)?
                                }
                                _ => {
                                    t.optional_service_account_annotation_keys = d.string_list(n)?
                                }
                            }
                            Ok(())
                        },
                    )?;
                    p.token_attributes = Some(t);
                }
            }
            Ok(())
        },
    )?;
    Ok(p)
}

/// One `field.Error`, printed as `field.Error.Error()` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldError {
    Required {
        field: String,
        detail: String,
    },
    Forbidden {
        field: String,
        detail: String,
    },
    Invalid {
        field: String,
        value: BadValue,
        detail: String,
    },
    Duplicate {
        field: String,
        value: String,
    },
    NotSupported {
        field: String,
        value: String,
        supported: Vec<String>,
    },
}

/// How `ErrorBody` renders a bad value: strings quoted, anything else as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadValue {
    String(String),
    Json(String),
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let detail = |d: &str| {
            if d.is_empty() {
                String::new()
            } else {
                format!(": {d}")
            }
        };
        match self {
            FieldError::Required { field, detail: d } => {
                write!(f, "{field}: Required value{}", detail(d))
            }
            FieldError::Forbidden { field, detail: d } => {
                write!(f, "{field}: Forbidden{}", detail(d))
            }
            FieldError::Invalid {
                field,
                value,
                detail: d,
            } => {
                let v = match value {
                    BadValue::String(s) => quote(s),
                    BadValue::Json(j) => j.clone(),
                };
                write!(f, "{field}: Invalid value: {v}{}", detail(d))
            }
            FieldError::Duplicate { field, value } => {
                write!(f, "{field}: Duplicate value: {}", quote(value))
            }
            FieldError::NotSupported {
                field,
                value,
                supported,
            } => {
                let list: Vec<String> = supported.iter().map(|s| quote(s)).collect();
                write!(
                    f,
                    "{field}: Unsupported value: {}{}",
                    quote(value),
                    detail(&format!("supported values: {}", list.join(", ")))
                )
            }
        }
    }
}

/// `field.ErrorList.ToAggregate().Error()`: one message alone, several in brackets,
/// repeated messages once.
pub fn aggregate(errors: &[FieldError]) -> String {
    let mut messages: Vec<String> = Vec::new();
    for e in errors {
        let m = e.to_string();
        if !messages.contains(&m) {
            messages.push(m);
        }
    }
    match messages.len() {
        1 => messages.remove(0),
        _ => format!("[{}]", messages.join(", ")),
    }
}

/// `validateCredentialProviderConfig`, with the `KubeletServiceAccountTokenForCredentialProviders`
/// gate on (beta and on by default since 1.34): the field paths carry no index, as the
/// kubelet's do.
pub fn validate(config: &CredentialProviderConfig) -> Result<(), Vec<FieldError>> {
    let mut errs = Vec::new();
    let req = |field: &str, detail: &str| FieldError::Required {
        field: field.to_string(),
        detail: detail.to_string(),
    };
    let invalid = |field: &str, value: &str, detail: &str| FieldError::Invalid {
        field: field.to_string(),
        value: BadValue::String(value.to_string()),
        detail: detail.to_string(),
    };
    if config.providers.is_empty() {
        errs.push(req("providers", "at least 1 item in plugins is required"));
    }
    let mut seen: Vec<&str> = Vec::new();
    for p in &config.providers {
        if p.name.contains('/') {
            errs.push(invalid(
                "providers.name",
                &p.name,
                "provider name cannot contain '/'",
            ));
        }
        if p.name.contains(' ') {
            errs.push(invalid(
                "providers.name",
                &p.name,
                "provider name cannot contain spaces",
            ));
        }
        if p.name == "." {
            errs.push(invalid(
                "providers.name",
                &p.name,
                "provider name cannot be '.'",
            ));
        }
        if p.name == ".." {
            errs.push(invalid(
                "providers.name",
                &p.name,
                "provider name cannot be '..'",
            ));
        }
        if seen.contains(&p.name.as_str()) {
            errs.push(FieldError::Duplicate {
                field: "providers.name".to_string(),
                value: p.name.clone(),
            });
        }
        seen.push(&p.name);

        if p.api_version.is_empty() {
            errs.push(req("providers.apiVersion", ""));
        } else if !PLUGIN_API_VERSIONS.contains(&p.api_version.as_str()) {
            errs.push(FieldError::NotSupported {
                field: "providers.apiVersion".to_string(),
                value: p.api_version.clone(),
                supported: PLUGIN_API_VERSIONS.iter().map(|s| s.to_string()).collect(),
            });
        }
        if p.match_images.is_empty() {
            errs.push(req(
                "providers.matchImages",
                "at least 1 item in matchImages is required",
            ));
        }
        for image in &p.match_images {
            if let Err(e) = parse_schemeless_url(image) {
                errs.push(invalid(
                    "providers.matchImages",
                    image,
                    &format!("match image is invalid: {e}"),
                ));
            }
        }
        match p.default_cache_duration {
            None => errs.push(req("providers.defaultCacheDuration", "")),
            Some(d) if d.is_negative() => errs.push(FieldError::Invalid {
                field: "providers.defaultCacheDuration".to_string(),
                // metav1.Duration marshals as its String().
                value: BadValue::Json(quote(&d.to_string())),
                detail: "must be greater than or equal to 0".to_string(),
            }),
            Some(_) => {}
        }
        if let Some(t) = &p.token_attributes {
            validate_token_attributes(p, t, &mut errs);
        }
    }
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

fn validate_token_attributes(p: &ProviderConfig, t: &TokenAttributes, errs: &mut Vec<FieldError>) {
    let path = "providers.tokenAttributes";
    if t.service_account_token_audience.is_empty() {
        errs.push(FieldError::Required {
            field: format!("{path}.serviceAccountTokenAudience"),
            detail: String::new(),
        });
    }
    if t.require_service_account.is_none() {
        errs.push(FieldError::Required {
            field: format!("{path}.requireServiceAccount"),
            detail: String::new(),
        });
    }
    if p.api_version != TOKEN_API_VERSION {
        errs.push(FieldError::Forbidden {
            field: path.to_string(),
            detail: format!(
                "tokenAttributes is only supported for {TOKEN_API_VERSION} API version"
            ),
        });
    }
    if t.require_service_account == Some(false)
        && !t.required_service_account_annotation_keys.is_empty()
    {
        errs.push(FieldError::Forbidden {
            field: format!("{path}.requiredServiceAccountAnnotationKeys"),
            detail: "requireServiceAccount cannot be false when requiredServiceAccountAnnotationKeys is set"
                .to_string(),
        });
    }
    for (field, keys) in [
        (
            "requiredServiceAccountAnnotationKeys",
            &t.required_service_account_annotation_keys,
        ),
        (
            "optionalServiceAccountAnnotationKeys",
            &t.optional_service_account_annotation_keys,
        ),
    ] {
        let field = format!("{path}.{field}");
        let mut seen: Vec<&str> = Vec::new();
        for key in keys {
            for msg in qualified_name_errors(&key.to_lowercase()) {
                errs.push(FieldError::Invalid {
                    field: field.clone(),
                    value: BadValue::String(key.clone()),
                    detail: msg,
                });
            }
            if seen.contains(&key.as_str()) {
                errs.push(FieldError::Duplicate {
                    field: field.clone(),
                    value: key.clone(),
                });
            }
            seen.push(key);
        }
    }
    let mut both: Vec<&String> = t
        .required_service_account_annotation_keys
        .iter()
        .filter(|k| t.optional_service_account_annotation_keys.contains(k))
        .collect();
    both.sort();
    both.dedup();
    if !both.is_empty() {
        errs.push(FieldError::Invalid {
            field: path.to_string(),
            value: BadValue::Json(
                serde_json::to_string(&both).unwrap_or_else(|_| "[]".to_string()),
            ),
            detail: "annotation keys cannot be both required and optional".to_string(),
        });
    }
    if t.cache_type.is_empty() {
        errs.push(FieldError::Required {
            field: format!("{path}.cacheType"),
            detail: format!(
                "cacheType is required to be set when tokenAttributes is specified. Supported values are: {}",
                CACHE_TYPES.join(", ")
            ),
        });
    } else if !CACHE_TYPES.contains(&t.cache_type.as_str()) {
        errs.push(FieldError::NotSupported {
            field: format!("{path}.cacheType"),
            value: t.cache_type.clone(),
            supported: CACHE_TYPES.iter().map(|s| s.to_string()).collect(),
        });
    }
}

const LABEL_KEY_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_KEY_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";

/// apimachinery `api/validate/content` `RegexError`.
fn regex_error(msg: &str, re: &str, examples: &[&str]) -> String {
    let mut out = format!("{msg} (e.g. ");
    for (i, example) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&format!("'{example}', "));
    }
    out.push_str(&format!("regex used for validation is '{re}')"));
    out
}

fn is_label_key_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn is_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(|label| {
        let b = label.as_bytes();
        !b.is_empty()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    })
}

/// `validation.IsQualifiedName` (= `content.IsLabelKey`, apimachinery eed236c).
pub fn qualified_name_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                if prefix.len() > 253 {
                    errs.push("prefix part must be no more than 253 bytes".to_string());
                }
                if !is_dns1123_subdomain(prefix) {
                    errs.push(format!(
                        "prefix part {}",
                        regex_error(
                            DNS1123_SUBDOMAIN_ERR,
                            DNS1123_SUBDOMAIN_FMT,
                            &["example.com"]
                        )
                    ));
                }
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a valid label key {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(LABEL_KEY_ERR, LABEL_KEY_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push("name part must be no more than 63 bytes".to_string());
    }
    if !is_label_key_name(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                LABEL_KEY_ERR,
                LABEL_KEY_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// What the kubelet says of a document: `decode: …`, `validate: …` or `ok`.
    fn verdict(document: &str) -> String {
        match decode_config(document.as_bytes()) {
            Err(e) => format!("decode: {e}"),
            Ok(config) => match validate(&config) {
                Err(errors) => format!(
                    "validate: failed to validate credential provider config: {}",
                    aggregate(&errors)
                ),
                Ok(()) => "ok".to_string(),
            },
        }
    }

    // Every expected answer was produced by the kubelet's own code paths run under Go 1.27:
    // sigs.k8s.io/json (strict), sigs.k8s.io/yaml + go-yaml v2.4.2, apimachinery eed236c
    // field errors, and config.go validateCredentialProviderConfig.
    #[rstest]
    #[case::the_eks_default_config_is_accepted(
        "{\"kind\":\"CredentialProviderConfig\",\"apiVersion\":\"kubelet.config.k8s.io/v1\",\"providers\":[{\"name\":\"ecr\",\"matchImages\":[\"*.dkr.ecr.*.amazonaws.com\"],\"defaultCacheDuration\":\"12h\",\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\"}]}",
        "ok"
    )]
    #[case::a_v1beta1_config_is_accepted(
        "{\"kind\":\"CredentialProviderConfig\",\"apiVersion\":\"kubelet.config.k8s.io/v1beta1\",\"providers\":[{\"name\":\"ecr\",\"matchImages\":[\"*.dkr.ecr.*.amazonaws.com\"],\"defaultCacheDuration\":\"12h\",\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1beta1\"}]}",
        "ok"
    )]
    #[case::a_v1alpha1_config_is_accepted(
        "{\"kind\":\"CredentialProviderConfig\",\"apiVersion\":\"kubelet.config.k8s.io/v1alpha1\",\"providers\":[{\"name\":\"ecr\",\"matchImages\":[\"*.dkr.ecr.*.amazonaws.com\"],\"defaultCacheDuration\":\"12h\",\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1alpha1\"}]}",
        "ok"
    )]
    #[case::yaml_with_args_and_env_is_accepted(
        "kind: CredentialProviderConfig\napiVersion: kubelet.config.k8s.io/v1\nproviders:\n- name: auth-provider-gcp\n  apiVersion: credentialprovider.kubelet.k8s.io/v1\n  matchImages: [\"gcr.io\", \"*.gcr.io\"]\n  defaultCacheDuration: 1m\n  args: [get-credentials, --v=3]\n  env:\n  - name: A\n    value: b\n",
        "ok"
    )]
    #[case::unknown_fields_are_named_with_their_path(
        "{\"kind\":\"CredentialProviderConfig\",\"apiVersion\":\"kubelet.config.k8s.io/v1\",\"providers\":[{\"name\":\"ecr\",\"matchImages\":[\"*.dkr.ecr.*.amazonaws.com\"],\"defaultCacheDuration\":\"12h\",\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\",\"foo\":1}],\"bar\":2}",
        "decode: strict decoding error: unknown field \"providers[0].foo\", unknown field \"bar\""
    )]
    #[case::duplicate_fields_are_named_with_their_path(
        "{\"kind\":\"CredentialProviderConfig\",\"apiVersion\":\"kubelet.config.k8s.io/v1\",\"providers\":[{\"name\":\"ecr\",\"matchImages\":[\"*.dkr.ecr.*.amazonaws.com\"],\"defaultCacheDuration\":\"12h\",\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\",\"name\":\"again\"}]}",
        "decode: strict decoding error: duplicate field \"providers[0].name\""
    )]
    #[case::yaml_duplicate_keys_are_reported_by_line(
        "kind: CredentialProviderConfig\napiVersion: kubelet.config.k8s.io/v1\nproviders:\n- name: a\n  name: b\n  matchImages: [\"x.io\"]\n  defaultCacheDuration: 1m\n  apiVersion: credentialprovider.kubelet.k8s.io/v1\n",
        "decode: strict decoding error: yaml: unmarshal errors:\n  line 5: key \"name\" already set in map"
    )]
    #[case::yaml_unknown_fields_come_out_sorted(
        "kind: CredentialProviderConfig\napiVersion: kubelet.config.k8s.io/v1\nproviders:\n- name: a\n  zeta: 1\n  alpha: 2\n  matchImages: [\"x.io\"]\n  defaultCacheDuration: 1m\n  apiVersion: credentialprovider.kubelet.k8s.io/v1\n",
        "decode: strict decoding error: unknown field \"providers[0].alpha\", unknown field \"providers[0].zeta\""
    )]
    #[case::yaml_duplicates_and_unknown_fields_together(
        "kind: CredentialProviderConfig\napiVersion: kubelet.config.k8s.io/v1\nproviders:\n- name: a\n  name: b\n  foo: 1\n  matchImages: [\"x.io\"]\n  defaultCacheDuration: 1m\n  apiVersion: credentialprovider.kubelet.k8s.io/v1\n",
        "decode: strict decoding error: yaml: unmarshal errors:\n  line 5: key \"name\" already set in map, unknown field \"providers[0].foo\""
    )]
    #[case::a_type_mismatch_beats_strict_errors(
        "{\"kind\":\"CredentialProviderConfig\",\"apiVersion\":\"kubelet.config.k8s.io/v1\",\"providers\":[{\"name\":1,\"matchImages\":\"x\",\"foo\":1,\"defaultCacheDuration\":\"1m\",\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\"}]}",
        "decode: json: cannot unmarshal number into Go struct field CredentialProvider.providers.name of type string"
    )]
    #[case::a_number_duration_stops_the_decode(
        "{\"kind\":\"CredentialProviderConfig\",\"apiVersion\":\"kubelet.config.k8s.io/v1\",\"providers\":[{\"name\":\"a\",\"matchImages\":[\"x.io\"],\"defaultCacheDuration\":0,\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\"}]}",
        "decode: json: cannot unmarshal number into Go struct field CredentialProvider.providers.defaultCacheDuration of type string"
    )]
    #[case::an_unquoted_zero_duration_in_yaml_stops_the_decode(
        "kind: CredentialProviderConfig\napiVersion: kubelet.config.k8s.io/v1\nproviders:\n- name: a\n  matchImages: [\"x.io\"]\n  defaultCacheDuration: 0\n  apiVersion: credentialprovider.kubelet.k8s.io/v1\n",
        "decode: json: cannot unmarshal number into Go struct field CredentialProvider.providers.defaultCacheDuration of type string"
    )]
    #[case::a_bad_duration_is_go_s_error(
        "{\"kind\":\"CredentialProviderConfig\",\"apiVersion\":\"kubelet.config.k8s.io/v1\",\"providers\":[{\"name\":\"a\",\"matchImages\":[\"x.io\"],\"defaultCacheDuration\":\"10\",\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\"}]}",
        "decode: time: missing unit in duration \"10\""
    )]
    #[case::providers_of_the_wrong_type(
        "{\"kind\":\"CredentialProviderConfig\",\"apiVersion\":\"kubelet.config.k8s.io/v1\",\"providers\":\"ecr\"}",
        "decode: json: cannot unmarshal string into Go struct field CredentialProviderConfig.providers of type []v1.CredentialProvider"
    )]
    #[case::a_provider_of_the_wrong_type(
        "{\"kind\":\"CredentialProviderConfig\",\"apiVersion\":\"kubelet.config.k8s.io/v1\",\"providers\":[\"ecr\"]}",
        "decode: json: cannot unmarshal string into Go struct field CredentialProviderConfig.providers of type v1.CredentialProvider"
    )]
    #[case::env_of_the_wrong_type(
        "{\"kind\":\"CredentialProviderConfig\",\"apiVersion\":\"kubelet.config.k8s.io/v1\",\"providers\":[{\"name\":\"ecr\",\"matchImages\":[\"*.dkr.ecr.*.amazonaws.com\"],\"defaultCacheDuration\":\"12h\",\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\",\"env\":{\"A\":\"b\"}}]}",
        "decode: json: cannot unmarshal object into Go struct field CredentialProvider.providers.env of type []v1.ExecEnvVar"
    )]
    #[case::token_attributes_are_unknown_before_v1(
        "{\"kind\":\"CredentialProviderConfig\",\"apiVersion\":\"kubelet.config.k8s.io/v1beta1\",\"providers\":[{\"name\":\"ecr\",\"matchImages\":[\"*.dkr.ecr.*.amazonaws.com\"],\"defaultCacheDuration\":\"12h\",\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\",\"tokenAttributes\":{}}]}",
        "decode: strict decoding error: unknown field \"providers[0].tokenAttributes\""
    )]
    #[case::no_providers(
        "{\"kind\":\"CredentialProviderConfig\",\"apiVersion\":\"kubelet.config.k8s.io/v1\",\"providers\":[]}",
        "validate: failed to validate credential provider config: providers: Required value: at least 1 item in plugins is required"
    )]
    #[case::null_providers(
        "{\"kind\":\"CredentialProviderConfig\",\"apiVersion\":\"kubelet.config.k8s.io/v1\",\"providers\":null}",
        "validate: failed to validate credential provider config: providers: Required value: at least 1 item in plugins is required"
    )]
    #[case::every_provider_rule_at_once(
        "{\"kind\":\"CredentialProviderConfig\",\"apiVersion\":\"kubelet.config.k8s.io/v1\",\"providers\":[{\"name\":\"a/b c\",\"matchImages\":[\"x io\"],\"defaultCacheDuration\":\"-1m\",\"apiVersion\":\"v9\"},{\"name\":\"a/b c\",\"matchImages\":[],\"apiVersion\":\"\"}]}",
        "validate: failed to validate credential provider config: [providers.name: Invalid value: \"a/b c\": provider name cannot contain '/', providers.name: Invalid value: \"a/b c\": provider name cannot contain spaces, providers.apiVersion: Unsupported value: \"v9\": supported values: \"credentialprovider.kubelet.k8s.io/v1\", \"credentialprovider.kubelet.k8s.io/v1alpha1\", \"credentialprovider.kubelet.k8s.io/v1beta1\", providers.matchImages: Invalid value: \"x io\": match image is invalid: parse \"https://x io\": invalid character \" \" in host name, providers.defaultCacheDuration: Invalid value: \"-1m0s\": must be greater than or equal to 0, providers.name: Duplicate value: \"a/b c\", providers.apiVersion: Required value, providers.matchImages: Required value: at least 1 item in matchImages is required, providers.defaultCacheDuration: Required value]"
    )]
    #[case::dot_names(
        "{\"kind\":\"CredentialProviderConfig\",\"apiVersion\":\"kubelet.config.k8s.io/v1\",\"providers\":[{\"name\":\".\",\"matchImages\":[\"*.dkr.ecr.*.amazonaws.com\"],\"defaultCacheDuration\":\"12h\",\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\"},{\"name\":\"..\",\"matchImages\":[\"*.dkr.ecr.*.amazonaws.com\"],\"defaultCacheDuration\":\"12h\",\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\"}]}",
        "validate: failed to validate credential provider config: [providers.name: Invalid value: \".\": provider name cannot be '.', providers.name: Invalid value: \"..\": provider name cannot be '..']"
    )]
    #[case::a_bad_match_image(
        "{\"kind\":\"CredentialProviderConfig\",\"apiVersion\":\"kubelet.config.k8s.io/v1\",\"providers\":[{\"name\":\"ecr\",\"matchImages\":[\"reg.io:abc\",\"reg.io/%zz\"],\"defaultCacheDuration\":\"12h\",\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\"}]}",
        "validate: failed to validate credential provider config: [providers.matchImages: Invalid value: \"reg.io:abc\": match image is invalid: parse \"https://reg.io:abc\": invalid port \":abc\" after host, providers.matchImages: Invalid value: \"reg.io/%zz\": match image is invalid: parse \"https://reg.io/%zz\": invalid URL escape \"%zz\"]"
    )]
    #[case::token_attributes_rules(
        "{\"kind\":\"CredentialProviderConfig\",\"apiVersion\":\"kubelet.config.k8s.io/v1\",\"providers\":[{\"name\":\"a\",\"matchImages\":[\"x.io\"],\"defaultCacheDuration\":\"1m\",\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1beta1\",\"tokenAttributes\":{\"requireServiceAccount\":false,\"requiredServiceAccountAnnotationKeys\":[\"A/b\",\"x..y/z\",\"k\",\"a/b/c\",\"/n\",\"p/\"],\"optionalServiceAccountAnnotationKeys\":[\"k\",\"k\"],\"cacheType\":\"Nope\"}}]}",
        "validate: failed to validate credential provider config: [providers.tokenAttributes.serviceAccountTokenAudience: Required value, providers.tokenAttributes: Forbidden: tokenAttributes is only supported for credentialprovider.kubelet.k8s.io/v1 API version, providers.tokenAttributes.requiredServiceAccountAnnotationKeys: Forbidden: requireServiceAccount cannot be false when requiredServiceAccountAnnotationKeys is set, providers.tokenAttributes.requiredServiceAccountAnnotationKeys: Invalid value: \"x..y/z\": prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*'), providers.tokenAttributes.requiredServiceAccountAnnotationKeys: Invalid value: \"a/b/c\": a valid label key must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName'), providers.tokenAttributes.requiredServiceAccountAnnotationKeys: Invalid value: \"/n\": prefix part must be non-empty, providers.tokenAttributes.requiredServiceAccountAnnotationKeys: Invalid value: \"p/\": name part must be non-empty, providers.tokenAttributes.requiredServiceAccountAnnotationKeys: Invalid value: \"p/\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]'), providers.tokenAttributes.optionalServiceAccountAnnotationKeys: Duplicate value: \"k\", providers.tokenAttributes: Invalid value: [\"k\"]: annotation keys cannot be both required and optional, providers.tokenAttributes.cacheType: Unsupported value: \"Nope\": supported values: \"ServiceAccount\", \"Token\"]"
    )]
    #[case::token_attributes_need_a_cache_type(
        "{\"kind\":\"CredentialProviderConfig\",\"apiVersion\":\"kubelet.config.k8s.io/v1\",\"providers\":[{\"name\":\"ecr\",\"matchImages\":[\"*.dkr.ecr.*.amazonaws.com\"],\"defaultCacheDuration\":\"12h\",\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\",\"tokenAttributes\":{\"serviceAccountTokenAudience\":\"sts.amazonaws.com\",\"requireServiceAccount\":true}}]}",
        "validate: failed to validate credential provider config: providers.tokenAttributes.cacheType: Required value: cacheType is required to be set when tokenAttributes is specified. Supported values are: ServiceAccount, Token"
    )]
    #[case::good_token_attributes(
        "{\"kind\":\"CredentialProviderConfig\",\"apiVersion\":\"kubelet.config.k8s.io/v1\",\"providers\":[{\"name\":\"ecr\",\"matchImages\":[\"*.dkr.ecr.*.amazonaws.com\"],\"defaultCacheDuration\":\"12h\",\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\",\"tokenAttributes\":{\"serviceAccountTokenAudience\":\"sts.amazonaws.com\",\"requireServiceAccount\":true,\"cacheType\":\"ServiceAccount\",\"requiredServiceAccountAnnotationKeys\":[\"eks.amazonaws.com/role-arn\"]}}]}",
        "ok"
    )]
    #[case::missing_kind(
        "{\"apiVersion\":\"kubelet.config.k8s.io/v1\",\"providers\":[]}",
        "decode: Object 'Kind' is missing in '{\"apiVersion\":\"kubelet.config.k8s.io/v1\",\"providers\":[]}'"
    )]
    #[case::missing_api_version(
        "{\"kind\":\"CredentialProviderConfig\",\"providers\":[]}",
        "decode: Object 'apiVersion' is missing in '{\"kind\":\"CredentialProviderConfig\",\"providers\":[]}'"
    )]
    #[case::a_bad_group_version(
        "{\"kind\":\"CredentialProviderConfig\",\"apiVersion\":\"a/b/c\",\"providers\":[]}",
        "decode: unexpected GroupVersion string: a/b/c"
    )]
    #[case::kind_of_the_wrong_type(
        "{\"kind\":1,\"apiVersion\":\"kubelet.config.k8s.io/v1\",\"providers\":[]}",
        "decode: couldn't get version/kind; json parse error: json: cannot unmarshal number into Go struct field .kind of type string"
    )]
    #[case::case_insensitive_kind_is_read_but_unknown(
        "{\"Kind\":\"CredentialProviderConfig\",\"apiVersion\":\"kubelet.config.k8s.io/v1\",\"providers\":[{\"name\":\"ecr\",\"matchImages\":[\"*.dkr.ecr.*.amazonaws.com\"],\"defaultCacheDuration\":\"12h\",\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\"}]}",
        "decode: strict decoding error: unknown field \"Kind\""
    )]
    #[case::a_null_duration_is_required(
        "{\"kind\":\"CredentialProviderConfig\",\"apiVersion\":\"kubelet.config.k8s.io/v1\",\"providers\":[{\"name\":\"a\",\"matchImages\":[\"x.io\"],\"defaultCacheDuration\":null,\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\"}]}",
        "validate: failed to validate credential provider config: providers.defaultCacheDuration: Required value"
    )]
    fn configs_decode_and_validate_as_the_kubelet_says(
        #[case] document: &str,
        #[case] expected: &str,
    ) {
        assert_eq!(verdict(document), expected);
    }

    #[rstest]
    #[case("*.dkr.ecr.*.amazonaws.com")]
    #[case("reg.io:5000/team")]
    #[case("[::1]:5000")]
    #[case("reg.io?x=1")]
    #[case("user:pw@reg.io")]
    #[case("https://x.io")]
    #[case("reg io")]
    #[case("reg.io:abc")]
    #[case("[::1")]
    #[case("reg.io/%zz")]
    #[case("reg%41.io")]
    #[case("reg{1}.io")]
    #[case("us er@reg.io")]
    #[case("a:b:c")]
    fn validation_refuses_exactly_the_match_images_the_keyring_cannot_parse(#[case] pattern: &str) {
        assert_eq!(
            parse_schemeless_url(pattern).is_ok(),
            crate::keyring::ImagePattern::parse(pattern).is_some(),
            "{pattern}"
        );
    }

    #[test]
    fn env_and_args_are_kept_in_order() {
        let config = decode_config(
            br#"{"kind":"CredentialProviderConfig","apiVersion":"kubelet.config.k8s.io/v1","providers":[{"name":"p","matchImages":["x.io"],"defaultCacheDuration":"1m","apiVersion":"credentialprovider.kubelet.k8s.io/v1","args":["b","a"],"env":[{"name":"Z","value":"1"},{"name":"A","value":"2"}]}]}"#,
        )
        .expect("valid");
        let p = &config.providers[0];
        assert_eq!(p.args, ["b", "a"]);
        assert_eq!(
            p.env,
            [
                ("Z".to_string(), "1".to_string()),
                ("A".to_string(), "2".to_string())
            ]
        );
        assert!(
            !format!("{p:?}").contains("\"1\""),
            "env values never print"
        );
    }

    #[test]
    fn another_kind_of_the_kubelet_scheme_is_the_wrong_kind() {
        assert_eq!(
            verdict(
                r#"{"kind":"KubeletConfiguration","apiVersion":"kubelet.config.k8s.io/v1beta1"}"#
            ),
            "decode: failed to decode \"KubeletConfiguration\" (wrong Kind)"
        );
        assert_eq!(
            verdict(
                r#"{"kind":"CredentialProviderConfig","apiVersion":"kubelet.config.k8s.io/v2"}"#
            ),
            "decode: no kind \"CredentialProviderConfig\" is registered for version \"kubelet.config.k8s.io/v2\" in scheme \"pkg/credentialprovider/plugin/plugin.go\""
        );
    }

    const GOOD: &str = "kind: CredentialProviderConfig\napiVersion: kubelet.config.k8s.io/v1\nproviders:\n- name: NAME\n  matchImages: [\"x.io\"]\n  defaultCacheDuration: 1m\n  apiVersion: credentialprovider.kubelet.k8s.io/v1\n";

    #[test]
    fn a_directory_merges_its_files_in_lexicographic_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("b.yaml"), GOOD.replace("NAME", "second")).expect("write");
        std::fs::write(dir.path().join("a.json"), format!(
            r#"{{"kind":"CredentialProviderConfig","apiVersion":"kubelet.config.k8s.io/v1","providers":[{}]}}"#,
            r#"{"name":"first","matchImages":["x.io"],"defaultCacheDuration":"1m","apiVersion":"credentialprovider.kubelet.k8s.io/v1"}"#
        )).expect("write");
        std::fs::write(dir.path().join("c.yml"), GOOD.replace("NAME", "third")).expect("write");
        std::fs::write(dir.path().join("notes.txt"), "not a config").expect("write");
        std::fs::create_dir(dir.path().join("d.yaml")).expect("a directory named like a file");
        let config = load(dir.path()).expect("valid");
        let names: Vec<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["first", "second", "third"]);
    }

    #[test]
    fn a_name_repeated_across_files_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.yaml"), GOOD.replace("NAME", "ecr")).expect("write");
        std::fs::write(dir.path().join("b.yaml"), GOOD.replace("NAME", "ecr")).expect("write");
        assert_eq!(
            load(dir.path()).expect_err("refused").to_string(),
            "duplicate provider name \"ecr\" found in configuration file(s)"
        );
    }

    #[test]
    fn a_directory_without_config_files_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("README"), "nothing").expect("write");
        assert_eq!(
            load(dir.path()).expect_err("refused").to_string(),
            format!(
                "no configuration files found in directory {}",
                quote(&dir.path().display().to_string())
            )
        );
    }

    #[test]
    fn a_file_that_does_not_decode_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.yaml");
        std::fs::write(
            &path,
            GOOD.replace("NAME", "ecr")
                .replace("matchImages", "matchImage"),
        )
        .expect("write");
        let shown = path.display().to_string();
        assert_eq!(
            load(&path).expect_err("refused").to_string(),
            format!(
                "error decoding config {}: strict decoding error: unknown field \"providers[0].matchImage\"",
                quote(&shown)
            )
        );
    }

    #[test]
    fn a_missing_path_is_named() {
        assert_eq!(
            load(Path::new("/nonexistent/pullgate/config.yaml"))
                .expect_err("refused")
                .to_string(),
            "unable to access path \"/nonexistent/pullgate/config.yaml\": stat /nonexistent/pullgate/config.yaml: no such file or directory"
        );
    }

    #[test]
    fn validation_errors_are_aggregated_after_the_merge() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, GOOD.replace("NAME", "a b")).expect("write");
        assert_eq!(
            load(&path).expect_err("refused").to_string(),
            "failed to validate credential provider config: providers.name: Invalid value: \"a b\": provider name cannot contain spaces"
        );
    }
}
