//! Pull credentials, matched to images as the kubelet's credential-provider keyring does
//! (`pkg/credentialprovider/keyring.go`, `config.go`).
//!
//! A docker config is a map from registry keys (`https://index.docker.io/v1/`,
//! `*.gcr.io`, `registry.example.com:5000/team`) to a username and password. For one image,
//! every matching key contributes its credentials, most specific key first; the pull tries
//! them in order and, once any match exists, never falls back to anonymous.
//! Credential helpers (`credHelpers`, `credsStore`) are never run: they are ignored.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde::Deserialize;

const DEFAULT_REGISTRY_HOST: &str = "index.docker.io";

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("docker config is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("registry {key:?}: the \"auth\" field is not base64 of \"username:password\"")]
    Auth { key: String },
}

pub type Result<T, E = KeyringError> = std::result::Result<T, E>;

/// The two Kubernetes pull-secret formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    /// `kubernetes.io/dockerconfigjson`: `{"auths": {KEY: ENTRY}}`.
    DockerConfigJson,
    /// `kubernetes.io/dockercfg` (legacy): `{KEY: ENTRY}`.
    DockerCfg,
}

/// One username/password pair and where it came from. The password never prints.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credential {
    /// Where it came from, for messages: `secret regcred`, `node credentials`, a file name.
    pub source: String,
    /// The docker config key it was stored under, as written.
    pub key: String,
    pub username: String,
    pub password: String,
}

impl Credential {
    /// What a message may say about this credential: its source and registry key, never
    /// its content.
    pub fn label(&self) -> String {
        format!("{} ({})", self.source, self.key)
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("source", &self.source)
            .field("key", &self.key)
            .field("username", &"<redacted>")
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A parsed docker config: registry key → credentials, in key order.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DockerConfig {
    entries: Vec<(String, String, String)>,
}

impl fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Registry keys only: usernames and passwords never print.
        f.debug_struct("DockerConfig")
            .field(
                "registries",
                &self.entries.iter().map(|(k, _, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[derive(Deserialize)]
struct ConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

#[derive(Deserialize, Default)]
struct Entry {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    auth: Option<String>,
}

impl DockerConfig {
    /// Parse the content of a pull secret. Like the kubelet, an `auth` that does not decode
    /// fails the whole config.
    pub fn parse(bytes: &[u8], format: ConfigFormat) -> Result<Self> {
        let auths = match format {
            ConfigFormat::DockerConfigJson => serde_json::from_slice::<ConfigJson>(bytes)?.auths,
            ConfigFormat::DockerCfg => serde_json::from_slice::<BTreeMap<String, Entry>>(bytes)?,
        };
        let mut entries = Vec::with_capacity(auths.len());
        for (key, entry) in auths {
            let (username, password) = match entry.auth.as_deref().filter(|a| !a.is_empty()) {
                Some(auth) => {
                    decode_auth(auth).ok_or_else(|| KeyringError::Auth { key: key.clone() })?
                }
                None => (
                    entry.username.unwrap_or_default(),
                    entry.password.unwrap_or_default(),
                ),
            };
            entries.push((key, username, password));
        }
        Ok(Self { entries })
    }

    /// Parse either format: a top-level `auths` object means `dockerconfigjson`.
    pub fn parse_any(bytes: &[u8]) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_slice(bytes)?;
        let format = if value.get("auths").is_some_and(|a| a.is_object()) {
            ConfigFormat::DockerConfigJson
        } else {
            ConfigFormat::DockerCfg
        };
        Self::parse(bytes, format)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// `decodeDockerConfigFieldAuth`: padded or unpadded standard base64 of `user:pass`.
fn decode_auth(field: &str) -> Option<(String, String)> {
    let decoded = if field.trim().ends_with('=') {
        STANDARD.decode(field)
    } else {
        STANDARD_NO_PAD.decode(field)
    }
    .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// Credentials indexed by normalized registry key. Add the pod's secrets in
/// `imagePullSecrets` order, then node credentials into a second keyring and use
/// [`Keyring::lookup_union`] (the kubelet's `UnionDockerKeyring`).
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    /// key → credentials in the order they were added.
    creds: BTreeMap<String, Vec<Credential>>,
}

impl Keyring {
    pub fn new() -> Self {
        Self::default()
    }

    /// `BasicDockerKeyring.Add`: strip the scheme and a `/v1/` or `/v2/` path prefix.
    pub fn add(&mut self, source: &str, config: &DockerConfig) {
        for (key, username, password) in &config.entries {
            let Some(normalized) = normalize_key(key) else {
                continue;
            };
            self.creds.entry(normalized).or_default().push(Credential {
                source: source.to_string(),
                key: key.clone(),
                username: username.clone(),
                password: password.clone(),
            });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.creds.is_empty()
    }

    /// `BasicDockerKeyring.Lookup` for `registry/repository` (a normalized name such as
    /// `docker.io/library/nginx`): all credentials of every matching key, keys in reverse
    /// lexical order (more specific first); else Docker Hub's legacy key for Hub images.
    pub fn lookup(&self, image_name: &str) -> Vec<Credential> {
        let Some(target) = SchemelessUrl::parse(image_name) else {
            return Vec::new();
        };
        let mut found: Vec<Credential> = self
            .creds
            .iter()
            .rev()
            .filter(|(key, _)| SchemelessUrl::parse(key).is_some_and(|glob| glob.matches(&target)))
            .flat_map(|(_, creds)| creds.iter().cloned())
            .collect();
        if found.is_empty()
            && is_default_registry_match(image_name)
            && let Some(creds) = self.creds.get(DEFAULT_REGISTRY_HOST)
        {
            found = creds.clone();
        }
        found
    }

    /// `UnionDockerKeyring`: every keyring's matches, in keyring order.
    pub fn lookup_union(keyrings: &[&Keyring], image_name: &str) -> Vec<Credential> {
        keyrings.iter().flat_map(|k| k.lookup(image_name)).collect()
    }
}

fn normalize_key(key: &str) -> Option<String> {
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let (host, path) = match without_scheme.find(['/', '?', '#']) {
        Some(i) => (&without_scheme[..i], &without_scheme[i..]),
        None => (without_scheme, ""),
    };
    // Go's url.Parse drops the query and fragment.
    let path = path.split(['?', '#']).next().unwrap_or("");
    if host.is_empty() || host.contains(char::is_whitespace) {
        return None;
    }
    let path = if path.starts_with("/v2/") || path.starts_with("/v1/") {
        &path[3..]
    } else {
        path
    };
    Some(if !path.is_empty() && path != "/" {
        format!("{host}{path}")
    } else {
        host.to_string()
    })
}

/// `isDefaultRegistryMatch`: would this name pull from Docker Hub?
fn is_default_registry_match(image: &str) -> bool {
    let (first, rest) = match image.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (image, None),
    };
    if first.is_empty() {
        return false;
    }
    if rest.is_none() || first == "docker.io" || first == DEFAULT_REGISTRY_HOST {
        return true;
    }
    !first.contains(['.', ':'])
}

/// A URL without scheme, split as `ParseSchemelessURL` + `SplitURL` do.
struct SchemelessUrl<'a> {
    host_labels: Vec<&'a str>,
    port: &'a str,
    path: &'a str,
}

impl<'a> SchemelessUrl<'a> {
    fn parse(s: &'a str) -> Option<Self> {
        let (host_port, path) = match s.find('/') {
            Some(i) => (&s[..i], &s[i..]),
            None => (s, ""),
        };
        if host_port.is_empty() {
            return None;
        }
        let (host, port) = split_host_port(host_port);
        Some(Self {
            host_labels: host.split('.').collect(),
            port,
            path,
        })
    }

    /// `URLsMatch`: equal ports, equal label count, path prefix, each label a glob.
    fn matches(&self, target: &SchemelessUrl<'_>) -> bool {
        self.port == target.port
            && self.host_labels.len() == target.host_labels.len()
            && target.path.starts_with(self.path)
            && self
                .host_labels
                .iter()
                .zip(&target.host_labels)
                .all(|(glob, label)| glob_match(glob, label))
    }
}

/// `net.SplitHostPort`, falling back to the whole string as host when it has no port.
fn split_host_port(hp: &str) -> (&str, &str) {
    if let Some(rest) = hp.strip_prefix('[') {
        if let Some((host, after)) = rest.split_once(']')
            && let Some(port) = after.strip_prefix(':')
        {
            return (host, port);
        }
        return (hp, "");
    }
    match hp.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, port),
        _ => (hp, ""),
    }
}

/// Go's `filepath.Match` on one host label: `*`, `?`, `[...]` classes, `\` escapes.
/// A malformed pattern matches nothing (Go returns an error, which the kubelet treats as
/// no match).
fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    glob_at(&p, &n).unwrap_or(false)
}

fn glob_at(p: &[char], n: &[char]) -> Option<bool> {
    let (mut pi, mut ni) = (0, 0);
    // Backtracking point for the last '*': (pattern index after '*', name index).
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi + 1, ni));
                    pi += 1;
                    continue;
                }
                c if ni < n.len() => {
                    let (matched, width) = match c {
                        '?' => (true, 1),
                        '[' => class_match(&p[pi..], n[ni])?,
                        '\\' => (p.get(pi + 1)? == &n[ni], 2),
                        c => (c == n[ni], 1),
                    };
                    if matched {
                        pi += width;
                        ni += 1;
                        continue;
                    }
                }
                _ => {}
            }
        } else if ni == n.len() {
            return Some(true);
        }
        match star {
            Some((sp, sn)) if sn < n.len() => {
                star = Some((sp, sn + 1));
                pi = sp;
                ni = sn + 1;
            }
            _ => {
                // Go validates the rest of the pattern even on mismatch; an invalid class
                // anywhere is an error.
                validate_pattern(&p[pi.min(p.len())..])?;
                return Some(false);
            }
        }
    }
}

fn validate_pattern(p: &[char]) -> Option<()> {
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '[' => i += class_match(&p[i..], 'a')?.1,
            '\\' => {
                p.get(i + 1)?;
                i += 2;
            }
            _ => i += 1,
        }
    }
    Some(())
}

/// Match one `[...]` class at the start of `p`; returns (matched, pattern width), or None
/// for a malformed class.
fn class_match(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negated = p.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let ch = *p.get(i)?;
        if ch == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        let lo = if ch == '\\' {
            i += 1;
            *p.get(i)?
        } else {
            ch
        };
        i += 1;
        let hi = if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|c| *c != ']') {
            i += 1;
            let mut h = *p.get(i)?;
            if h == '\\' {
                i += 1;
                h = *p.get(i)?;
            }
            i += 1;
            h
        } else {
            lo
        };
        if lo <= c && c <= hi {
            matched = true;
        }
    }
    Some((matched != negated, i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn config(json: &str) -> DockerConfig {
        DockerConfig::parse(json.as_bytes(), ConfigFormat::DockerConfigJson).expect("valid")
    }

    fn keyring_of(keys: &[&str]) -> Keyring {
        let mut k = Keyring::new();
        for key in keys {
            let json =
                format!(r#"{{"auths":{{"{key}":{{"username":"u-{key}","password":"p"}}}}}}"#);
            k.add("test", &config(&json));
        }
        k
    }

    #[rstest]
    #[case::exact_host("registry.example.com", "registry.example.com/team/app", true)]
    #[case::https_scheme_stripped("https://registry.example.com", "registry.example.com/app", true)]
    #[case::http_scheme_stripped("http://registry.example.com", "registry.example.com/app", true)]
    #[case::v2_suffix_stripped(
        "https://registry.example.com/v2/",
        "registry.example.com/app",
        true
    )]
    #[case::v1_suffix_stripped(
        "https://registry.example.com/v1/",
        "registry.example.com/app",
        true
    )]
    #[case::glob_one_label("*.gcr.io", "us.gcr.io/project/app", true)]
    #[case::glob_not_two_labels("*.gcr.io", "a.b.gcr.io/project/app", false)]
    #[case::glob_not_zero_labels("*.gcr.io", "gcr.io/project/app", false)]
    #[case::glob_partial_label("registry-*.example.com", "registry-eu.example.com/app", true)]
    // Go's url.Parse reads `?` as the start of a query: the key's host is just "registr".
    #[case::question_mark_starts_a_query("registr?.example.com", "registry.example.com/app", false)]
    #[case::char_class("[a-c].example.com", "b.example.com/app", true)]
    #[case::char_class_miss("[a-c].example.com", "d.example.com/app", false)]
    #[case::port_must_match("registry.example.com:5000", "registry.example.com:5000/app", true)]
    #[case::port_missing_in_key("registry.example.com", "registry.example.com:5000/app", false)]
    #[case::port_missing_in_image("registry.example.com:5000", "registry.example.com/app", false)]
    #[case::path_prefix("registry.example.com/team", "registry.example.com/team/app", true)]
    #[case::path_prefix_is_a_string_prefix(
        "registry.example.com/team",
        "registry.example.com/teamx/app",
        true
    )]
    #[case::path_not_prefix("registry.example.com/other", "registry.example.com/team/app", false)]
    #[case::other_host("registry.example.com", "registry.example.org/app", false)]
    #[case::case_sensitive("Registry.example.com", "registry.example.com/app", false)]
    #[case::hub_by_docker_io("docker.io", "docker.io/library/nginx", true)]
    #[case::hub_legacy_key("https://index.docker.io/v1/", "docker.io/library/nginx", true)]
    #[case::hub_legacy_key_not_for_others("https://index.docker.io/v1/", "quay.io/app/x", false)]
    #[case::localhost_port("localhost:5000", "localhost:5000/app", true)]
    fn key_matching_follows_the_kubelet(
        #[case] key: &str,
        #[case] image: &str,
        #[case] matches: bool,
    ) {
        let found = keyring_of(&[key]).lookup(image);
        assert_eq!(!found.is_empty(), matches, "key {key:?} image {image:?}");
    }

    #[test]
    fn more_specific_keys_come_first_and_every_match_is_kept() {
        let k = keyring_of(&[
            "registry.example.com",
            "registry.example.com/team",
            "registry.example.com/team/app",
            "*.example.com",
        ]);
        let order: Vec<String> = k
            .lookup("registry.example.com/team/app")
            .into_iter()
            .map(|c| c.key)
            .collect();
        assert_eq!(
            order,
            [
                "registry.example.com/team/app",
                "registry.example.com/team",
                "registry.example.com",
                "*.example.com",
            ]
        );
    }

    #[test]
    fn two_secrets_for_one_registry_are_both_candidates_in_secret_order() {
        let mut k = Keyring::new();
        k.add(
            "secret first",
            &config(r#"{"auths":{"r.example.com":{"username":"a","password":"1"}}}"#),
        );
        k.add(
            "secret second",
            &config(r#"{"auths":{"https://r.example.com/v2/":{"username":"b","password":"2"}}}"#),
        );
        let users: Vec<String> = k
            .lookup("r.example.com/app")
            .into_iter()
            .map(|c| c.username)
            .collect();
        assert_eq!(users, ["a", "b"]);
    }

    #[test]
    fn node_credentials_come_after_the_pods() {
        let pod = keyring_of(&["r.example.com"]);
        let mut node = Keyring::new();
        node.add(
            "node",
            &config(r#"{"auths":{"r.example.com/app":{"username":"node","password":"n"}}}"#),
        );
        let sources: Vec<String> = Keyring::lookup_union(&[&pod, &node], "r.example.com/app")
            .into_iter()
            .map(|c| c.source)
            .collect();
        assert_eq!(sources, ["test", "node"]);
    }

    #[rstest]
    #[case::padded("dXNlcjpwYXNz", "user", "pass")]
    #[case::password_with_colon("dXNlcjpwYTpzcw==", "user", "pa:ss")]
    #[case::unpadded("dXNlcjpwYTpzcw", "user", "pa:ss")]
    fn auth_field_decodes_padded_and_unpadded(
        #[case] auth: &str,
        #[case] user: &str,
        #[case] pass: &str,
    ) {
        let c = config(&format!(
            r#"{{"auths":{{"r.io":{{"auth":"{auth}","username":"ignored"}}}}}}"#
        ));
        let found = {
            let mut k = Keyring::new();
            k.add("s", &c);
            k.lookup("r.io/x")
        };
        assert_eq!(
            (found[0].username.as_str(), found[0].password.as_str()),
            (user, pass)
        );
    }

    #[rstest]
    #[case::not_base64(r#"{"auths":{"r.io":{"auth":"!!!"}}}"#)]
    #[case::no_colon(r#"{"auths":{"r.io":{"auth":"dXNlcg=="}}}"#)]
    #[case::not_json("{")]
    #[case::wrong_shape(r#"{"auths":{"r.io":"x"}}"#)]
    fn malformed_configs_are_errors(#[case] json: &str) {
        assert!(DockerConfig::parse(json.as_bytes(), ConfigFormat::DockerConfigJson).is_err());
    }

    #[test]
    fn legacy_dockercfg_is_a_bare_map() {
        let c = DockerConfig::parse(
            br#"{"https://r.example.com":{"username":"u","password":"p","email":"e@x"}}"#,
            ConfigFormat::DockerCfg,
        )
        .expect("valid");
        let mut k = Keyring::new();
        k.add("legacy", &c);
        assert_eq!(k.lookup("r.example.com/app").len(), 1);
    }

    #[test]
    fn credential_helpers_are_ignored() {
        let c = config(r#"{"auths":{},"credHelpers":{"r.io":"evil"},"credsStore":"evil"}"#);
        assert!(c.is_empty());
    }

    #[test]
    fn debug_never_prints_the_password() {
        let c = config(r#"{"auths":{"r.io":{"username":"alice","password":"hunter2"}}}"#);
        let mut k = Keyring::new();
        k.add("s", &c);
        let printed = format!("{:?}", k.lookup("r.io/x"));
        assert!(
            !printed.contains("hunter2") && !printed.contains("alice"),
            "{printed}"
        );
    }

    #[rstest]
    #[case("*", "anything", true)]
    #[case("a*c", "abbbc", true)]
    #[case("a*c", "abbbd", false)]
    #[case("[^a]x", "bx", true)]
    #[case("[^a]x", "ax", false)]
    #[case("\\*", "*", true)]
    #[case("[", "a", false)]
    fn glob_follows_go_filepath_match(
        #[case] pattern: &str,
        #[case] name: &str,
        #[case] expected: bool,
    ) {
        assert_eq!(glob_match(pattern, name), expected);
    }
}
