//! Pull credentials, read and matched to images exactly as the kubelet does
//! (`pkg/credentialprovider/config.go`, `keyring.go`, `secrets/secrets.go`; read at
//! kubernetes v1.28 and at the newest `master`, where this logic is unchanged).
//!
//! A docker config maps registry keys (`https://index.docker.io/v1/`, `*.gcr.io`,
//! `registry.example.com:5000/team`) to a username and password. For one image, every
//! matching key contributes its credentials, most specific key first; the pull tries them
//! in order and, once any matched, never falls back to anonymous. Credential helpers
//! (`credHelpers`, `credsStore`) are never run: the kubelet ignores them too.
//!
//! Everything that decides a match is Go's, ported on bytes: `encoding/json` for the
//! config ([`config`]), `encoding/base64` for `auth` ([`base64`]), `net/url.Parse` for keys
//! and image names ([`url`]), `path/filepath.Match` for host labels ([`glob`]), and the
//! kubelet's matcher on top ([`ImagePattern`]). `tests/go/` prints Go's own answers for
//! thousands of inputs; the tests replay them against this module.

mod base64;
mod config;
mod glob;
mod json;
mod pattern;
mod url;

#[cfg(test)]
mod go_tables;
#[cfg(test)]
mod properties;

use std::collections::BTreeMap;
use std::fmt;

pub use config::ConfigFormat;
pub use json::SyntaxError;
pub use pattern::ImagePattern;

use pattern::Target;

const DEFAULT_REGISTRY_HOST: &str = "index.docker.io";

/// Why the kubelet's decoding of a docker config fails (`json.Unmarshal`, or
/// `decodeDockerConfigFieldAuth` through `UnmarshalJSON`). Never quotes the content, only
/// registry keys, which messages name anyway.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    #[error("not valid JSON: {0}")]
    Syntax(SyntaxError),
    /// Go's `UnmarshalTypeError`.
    #[error("{what} is a JSON {found}, not {expected}")]
    Type {
        what: String,
        found: &'static str,
        expected: &'static str,
    },
    #[error("registry {}: the \"auth\" field {reason}", quoted_key(.key))]
    Auth { key: String, reason: String },
}

pub type Result<T, E = KeyringError> = std::result::Result<T, E>;

/// A registry key as messages show it: quoted, at most 100 characters.
fn quoted_key(key: &str) -> String {
    format!("{:?}", crate::verdict::excerpt(key, 100))
}

/// What the apiserver requires of a pull secret's content before it stores the Secret
/// (`pkg/apis/core/validation ValidateSecret`: `json.Unmarshal` into a
/// `map[string]interface{}`): valid JSON whose top level is an object or `null`. Content
/// that passes this and still fails [`DockerConfig::parse`] reaches the kubelet.
pub fn apiserver_accepts(bytes: &[u8]) -> bool {
    json::check_valid(bytes).is_ok()
        && matches!(
            json::Reader::new(bytes).kind(),
            json::Kind::Object | json::Kind::Null
        )
}

/// A Secret's `data` value as the apiserver decodes it: Go's `base64.StdEncoding`
/// (padded; line breaks anywhere are skipped, other whitespace is not).
pub fn decode_secret_data(text: &str) -> Result<Vec<u8>, String> {
    base64::decode(text.as_bytes(), base64::Padding::Padded).map_err(|e| e.to_string())
}

/// One credential for one registry key, and where it came from. Only [`Credential::label`]
/// may appear in messages; Debug never prints the username or password.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credential {
    /// Where it came from, for messages: `secret regcred`, `node credentials`, a file name.
    pub source: String,
    /// The docker config key it was stored under, as written.
    pub key: String,
    /// As the kubelet hands them to the runtime; either may be empty.
    pub username: String,
    pub password: String,
}

impl Credential {
    /// What a message may say about this credential: its source and registry key, never
    /// its content.
    pub fn label(&self) -> String {
        format!("{} ({})", self.source, self.key)
    }

    /// The username and password containerd actually presents to the registry for this
    /// credential, or `None` when it presents none. The one rule for an empty username
    /// or password, from the kubelet's `AuthConfig{Username, Password}` through
    /// containerd's `internal/cri/server/images ParseAuth` and
    /// `core/remotes/docker/authorizer.go` (v2):
    ///
    /// - an empty username makes `ParseAuth` return no credentials at all;
    /// - with an empty password, a Basic challenge gets no `Authorization` header
    ///   (`doBasicAuth` refuses, the request fails unauthorized) and a Bearer token is
    ///   fetched anonymously (`FetchToken` adds Basic auth only for a non-empty secret).
    ///
    /// Such a credential still matched: it is still the attempt, and no anonymous retry
    /// follows when it fails (`kuberuntime_image.go PullImage`).
    pub fn presented(&self) -> Option<(&str, &str)> {
        (!self.username.is_empty() && !self.password.is_empty())
            .then_some((self.username.as_str(), self.password.as_str()))
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

/// A decoded docker config: its entries in byte order of their keys (Go's map order is
/// random; see [`config::Entries`]).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DockerConfig {
    entries: Vec<(String, config::Entry)>,
}

impl fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Registry keys only: usernames and passwords never print.
        f.debug_struct("DockerConfig")
            .field(
                "registries",
                &self.entries.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl DockerConfig {
    /// Decode the content of a pull secret as the kubelet does; an error is what makes
    /// the kubelet's `MakeDockerKeyring` fail (and with it every pull of the pod).
    pub fn parse(bytes: &[u8], format: ConfigFormat) -> Result<Self> {
        let entries = config::decode(bytes, format)?;
        Ok(Self {
            entries: entries.into_iter().collect(),
        })
    }

    /// Either format: an object with a member that Go would decode as `auths`, holding
    /// an object, is a `.dockerconfigjson`; anything else is read as a `.dockercfg`.
    pub fn parse_any(bytes: &[u8]) -> Result<Self> {
        let format = if config::looks_like_config_json(bytes) {
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

/// `BasicDockerKeyring`: credentials indexed by normalized registry key. Add the pod's
/// secrets in `imagePullSecrets` order; node credentials go in a second keyring, and
/// [`Keyring::lookup_union`] is the kubelet's `UnionDockerKeyring`.
#[derive(Clone, Default)]
pub struct Keyring {
    /// Normalized key (a Go string: any bytes) → its parse and its credentials.
    slots: BTreeMap<Vec<u8>, Slot>,
}

#[derive(Clone)]
struct Slot {
    /// `ParseSchemelessURL(key)`, done once: `None` when Go cannot re-parse the stored key
    /// (a `%`, `?` or `#` that percent-decoding put there), which then matches nothing.
    target: Option<Target>,
    /// In the order added.
    creds: Vec<Credential>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field(
                "keys",
                &self
                    .slots
                    .keys()
                    .map(|k| String::from_utf8_lossy(k))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Keyring {
    pub fn new() -> Self {
        Self::default()
    }

    /// `BasicDockerKeyring.Add`: each key is normalized ([`normalize_key`]); a key Go
    /// cannot parse is skipped (the kubelet logs "Entry … in dockercfg invalid").
    pub fn add(&mut self, source: &str, config: &DockerConfig) {
        for (key, entry) in &config.entries {
            let Some(normalized) = normalize_key(key.as_bytes()) else {
                continue;
            };
            let slot = self.slots.entry(normalized).or_insert_with_key(|k| Slot {
                target: Target::parse(k),
                creds: Vec::new(),
            });
            slot.creds.push(Credential {
                source: source.to_string(),
                key: key.clone(),
                username: entry.username.clone(),
                password: entry.password.clone(),
            });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// `BasicDockerKeyring.Lookup` for an image name (`registry/repository`, as
    /// `docker.io/library/nginx`): all credentials of every matching key, keys in reverse
    /// byte order (more specific first); with no match, the credentials stored under
    /// exactly `index.docker.io` for a Docker Hub image.
    pub fn lookup(&self, image_name: &str) -> Vec<Credential> {
        let mut found: Vec<Credential> = Vec::new();
        if self.slots.is_empty() {
            // Nothing can match: the common anonymous review skips parsing the image.
            return found;
        }
        if let Some(image) = Target::parse(image_name.as_bytes()) {
            for slot in self.slots.values().rev() {
                if slot.target.as_ref().is_some_and(|key| key.matches(&image)) {
                    found.extend(slot.creds.iter().cloned());
                }
            }
        }
        if found.is_empty()
            && is_default_registry_match(image_name)
            && let Some(slot) = self.slots.get(DEFAULT_REGISTRY_HOST.as_bytes())
        {
            found = slot.creds.clone();
        }
        found
    }

    /// `UnionDockerKeyring`: every keyring's matches, in keyring order.
    pub fn lookup_union(keyrings: &[&Keyring], image_name: &str) -> Vec<Credential> {
        keyrings.iter().flat_map(|k| k.lookup(image_name)).collect()
    }
}

/// `url.Parse` of a docker config key as `BasicDockerKeyring.Add` does it: with
/// `https://` in front unless it starts with `http://` or `https://` (case sensitive).
fn parse_key(key: &[u8]) -> Option<url::Url> {
    let mut raw = Vec::with_capacity(key.len() + 8);
    if !(key.starts_with(b"https://") || key.starts_with(b"http://")) {
        raw.extend_from_slice(b"https://");
    }
    raw.extend_from_slice(key);
    url::parse(&raw).ok()
}

/// The key `BasicDockerKeyring.Add` files a docker config key under: the parsed host
/// (userinfo dropped, case kept) followed by the unescaped path with a leading `/v1` or
/// `/v2` segment dropped, or the host alone when that path is empty or `/`. `None` when
/// Go cannot parse the key.
fn normalize_key(key: &[u8]) -> Option<Vec<u8>> {
    let parsed = parse_key(key)?;
    let mut path = parsed.path.as_slice();
    if path.starts_with(b"/v2/") || path.starts_with(b"/v1/") {
        path = &path[3..];
    }
    let mut normalized = parsed.host;
    if !path.is_empty() && path != b"/" {
        normalized.extend_from_slice(path);
    }
    Some(normalized)
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
            let json = serde_json::json!({"auths": {*key: {"username": format!("u-{key}"), "password": "p"}}});
            k.add("test", &config(&json.to_string()));
        }
        k
    }

    #[rstest]
    #[case::exact_host("registry.example.com", "registry.example.com/team/app", true)]
    #[case::https_scheme_stripped("https://registry.example.com", "registry.example.com/app", true)]
    #[case::http_scheme_stripped("http://registry.example.com", "registry.example.com/app", true)]
    #[case::upper_case_scheme_is_not_a_scheme(
        "HTTPS://registry.example.com",
        "registry.example.com/app",
        false
    )]
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
    #[case::v2_without_slash_is_a_path(
        "registry.example.com/v2",
        "registry.example.com/app",
        false
    )]
    #[case::glob_one_label("*.gcr.io", "us.gcr.io/project/app", true)]
    #[case::glob_not_two_labels("*.gcr.io", "a.b.gcr.io/project/app", false)]
    #[case::glob_not_zero_labels("*.gcr.io", "gcr.io/project/app", false)]
    #[case::glob_partial_label("registry-*.example.com", "registry-eu.example.com/app", true)]
    // Go's url.Parse reads `?` as the start of a query: the key's host is just "registr".
    #[case::question_mark_starts_a_query("registr?.example.com", "registry.example.com/app", false)]
    // A `[` anywhere but first is an invalid IP literal to Go: the key is skipped.
    #[case::char_class_is_refused_by_url_parse("[a-c].example.com", "b.example.com/app", false)]
    #[case::port_must_match("registry.example.com:5000", "registry.example.com:5000/app", true)]
    #[case::port_missing_in_key("registry.example.com", "registry.example.com:5000/app", false)]
    #[case::port_missing_in_image("registry.example.com:5000", "registry.example.com/app", false)]
    #[case::bad_port_is_skipped("registry.example.com:50x0", "registry.example.com/app", false)]
    #[case::path_prefix("registry.example.com/team", "registry.example.com/team/app", true)]
    #[case::path_prefix_is_a_string_prefix(
        "registry.example.com/team",
        "registry.example.com/teamx/app",
        true
    )]
    #[case::path_not_prefix("registry.example.com/other", "registry.example.com/team/app", false)]
    #[case::path_is_unescaped("registry.example.com/te%61m", "registry.example.com/team/app", true)]
    #[case::other_host("registry.example.com", "registry.example.org/app", false)]
    #[case::case_sensitive("Registry.example.com", "registry.example.com/app", false)]
    #[case::userinfo_is_not_the_host(
        "https://robot@registry.example.com",
        "registry.example.com/app",
        true
    )]
    #[case::userinfo_with_password(
        "user:pw@registry.example.com:5000",
        "registry.example.com:5000/app",
        true
    )]
    #[case::query_is_dropped("registry.example.com?x=1", "registry.example.com/app", true)]
    #[case::fragment_is_dropped(
        "registry.example.com/team#x",
        "registry.example.com/team/app",
        true
    )]
    #[case::control_character_is_skipped(
        "registry.example.com/\tteam",
        "registry.example.com/\tteam/app",
        false
    )]
    #[case::hub_by_docker_io("docker.io", "docker.io/library/nginx", true)]
    #[case::hub_legacy_key("https://index.docker.io/v1/", "docker.io/library/nginx", true)]
    #[case::hub_legacy_key_not_for_others("https://index.docker.io/v1/", "quay.io/app/x", false)]
    #[case::localhost_port("localhost:5000", "localhost:5000/app", true)]
    #[case::ipv6_with_port("[::1]:5000", "[::1]:5000/app", true)]
    #[case::ipv6_without_port_never_matches("[::1]", "[::1]/app", false)]
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
    fn keys_of_one_config_that_normalize_alike_keep_byte_order() {
        let c = config(
            r#"{"auths":{"https://r.io/v2/":{"username":"b","password":"2"},"r.io":{"username":"a","password":"1"},"http://r.io":{"username":"c","password":"3"}}}"#,
        );
        let mut k = Keyring::new();
        k.add("s", &c);
        let users: Vec<String> = k
            .lookup("r.io/app")
            .into_iter()
            .map(|c| c.username)
            .collect();
        assert_eq!(users, ["c", "b", "a"]);
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
    #[case::both("u", "p", true)]
    #[case::no_username("", "p", false)]
    #[case::no_password("u", "", false)]
    #[case::neither("", "", false)]
    fn an_empty_credential_still_matches_but_presents_nothing(
        #[case] user: &str,
        #[case] pass: &str,
        #[case] presented: bool,
    ) {
        let c = config(
            &serde_json::json!({"auths": {"r.io": {"username": user, "password": pass}}})
                .to_string(),
        );
        let mut k = Keyring::new();
        k.add("s", &c);
        let found = k.lookup("r.io/app");
        assert_eq!(
            found.len(),
            1,
            "the entry is a candidate whatever its content"
        );
        assert_eq!(found[0].presented().is_some(), presented);
    }

    #[test]
    fn tokens_the_kubelet_never_reads_give_an_empty_candidate() {
        let c = config(r#"{"auths":{"r.io":{"identitytoken":"t","registrytoken":"r"}}}"#);
        let mut k = Keyring::new();
        k.add("s", &c);
        let found = k.lookup("r.io/app");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].presented(), None);
    }

    #[rstest]
    #[case::padded("dXNlcjpwYXNz", "user", "pass")]
    #[case::password_with_colon("dXNlcjpwYTpzcw==", "user", "pa:ss")]
    #[case::unpadded("dXNlcjpwYTpzcw", "user", "pa:ss")]
    #[case::crlf_inside("dXNl\\r\\ncjpwYXNz", "user", "pass")]
    #[case::trailing_newline_padded("dXNlcjpwYTpzcw==\\n", "user", "pa:ss")]
    #[case::nonzero_trailing_bits("dXNlcjpwYR", "user", "pa")]
    #[case::empty_user_and_password("Og==", "", "")]
    fn auth_field_decodes_as_go(#[case] auth: &str, #[case] user: &str, #[case] pass: &str) {
        let c = config(&format!(
            r#"{{"auths":{{"r.io":{{"auth":"{auth}","username":"ignored"}}}}}}"#
        ));
        let mut k = Keyring::new();
        k.add("s", &c);
        let found = k.lookup("r.io/x");
        assert_eq!(
            (found[0].username.as_str(), found[0].password.as_str()),
            (user, pass)
        );
    }

    #[rstest]
    #[case::not_base64(r#"{"auths":{"r.io":{"auth":"!!!"}}}"#)]
    #[case::no_colon(r#"{"auths":{"r.io":{"auth":"dXNlcg=="}}}"#)]
    #[case::space_inside_auth(r#"{"auths":{"r.io":{"auth":"dXNl cjpw"}}}"#)]
    #[case::not_json("{")]
    #[case::entry_is_a_string(r#"{"auths":{"r.io":"x"}}"#)]
    #[case::auths_is_an_array(r#"{"auths":[]}"#)]
    #[case::username_is_a_number(r#"{"auths":{"r.io":{"username":1}}}"#)]
    #[case::http_headers_value_is_a_number(r#"{"auths":{},"HttpHeaders":{"x":1}}"#)]
    #[case::top_level_array("[]")]
    #[case::trailing_data("{} {}")]
    fn what_go_refuses_rejects_the_whole_config(#[case] json: &str) {
        assert!(DockerConfig::parse(json.as_bytes(), ConfigFormat::DockerConfigJson).is_err());
    }

    #[rstest]
    #[case::folded_field_names(r#"{"AUTHS":{"r.io":{"UserName":"u","PASSWORD":"p"}}}"#)]
    #[case::long_s_folds_to_s(
        "{\"auth\u{17F}\":{\"r.io\":{\"u\u{17F}ername\":\"u\",\"password\":\"p\"}}}"
    )]
    #[case::null_entry(r#"{"auths":{"r.io":null}}"#)]
    #[case::null_fields(r#"{"auths":{"r.io":{"username":null,"auth":null}}}"#)]
    #[case::unknown_fields(r#"{"auths":{"r.io":{"u":1}},"credsStore":"x","x":[{"y":null}]}"#)]
    #[case::invalid_utf8_is_replaced("{\"auths\":{\"r.io\":{\"username\":\"a\u{FFFD}\"}}}")]
    fn what_go_accepts_is_read(#[case] json: &str) {
        let c = DockerConfig::parse(json.as_bytes(), ConfigFormat::DockerConfigJson)
            .expect("Go reads it");
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn duplicate_auths_merge_and_null_empties() {
        let merged = config(r#"{"auths":{"a.io":{}},"Auths":{"b.io":{}}}"#);
        assert_eq!(merged.len(), 2);
        let emptied = config(r#"{"auths":{"a.io":{}},"auths":null}"#);
        assert!(emptied.is_empty());
        let last_wins = config(r#"{"auths":{"a.io":{"username":"x","Username":"y"}}}"#);
        assert_eq!(last_wins.entries[0].1.username, "y");
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
    fn parse_any_tells_the_formats_apart_as_go_folds() {
        assert_eq!(
            DockerConfig::parse_any(br#"{"AUTHS":{"r.io":{}}}"#).map(|c| c.len()),
            Ok(1)
        );
        assert_eq!(
            DockerConfig::parse_any(br#"{"r.io":{}}"#).map(|c| c.len()),
            Ok(1)
        );
    }

    #[test]
    fn credential_helpers_are_ignored() {
        let c = config(r#"{"auths":{},"credHelpers":{"r.io":"evil"},"credsStore":"evil"}"#);
        assert!(c.is_empty());
    }

    #[rstest]
    #[case::syntax("{", "not valid JSON: unexpected end of JSON input at byte 1")]
    #[case::top_level(r#"[]"#, "the document is a JSON array, not an object")]
    #[case::auths(
        r#"{"auths":[]}"#,
        r#""auths" is a JSON array, not an object of registry entries"#
    )]
    #[case::entry(
        r#"{"auths":{"r.io":"x"}}"#,
        r#"registry "r.io" is a JSON string, not an object"#
    )]
    #[case::field(
        r#"{"auths":{"r.io":{"USERNAME":1}}}"#,
        r#"registry "r.io": "username" is a JSON number, not a string"#
    )]
    #[case::base64(r#"{"auths":{"r.io":{"auth":"a!"}}}"#, r#"registry "r.io": the "auth" field is not valid base64 (illegal base64 data at input byte 1)"#)]
    #[case::colon(
        r#"{"auths":{"r.io":{"auth":"YQ=="}}}"#,
        r#"registry "r.io": the "auth" field does not decode to "username:password" (no colon)"#
    )]
    fn errors_say_what_is_wrong_and_where(#[case] json: &str, #[case] message: &str) {
        let err = DockerConfig::parse(json.as_bytes(), ConfigFormat::DockerConfigJson)
            .expect_err("refused");
        assert_eq!(err.to_string(), message);
    }

    #[test]
    fn errors_never_quote_the_content() {
        for json in [
            r#"{"auths":{"r.io":{"auth":"c2VjcmV0"}}}"#,
            r#"{"auths":{"r.io":{"password":secret}}}"#,
            r#"{"auths":{"r.io":{"password":["secret"]}}}"#,
        ] {
            let err = DockerConfig::parse(json.as_bytes(), ConfigFormat::DockerConfigJson)
                .expect_err("refused");
            let text = err.to_string();
            assert!(!text.contains("secret") && !text.contains("c2Vj"), "{text}");
        }
    }

    #[test]
    fn debug_never_prints_the_password() {
        let c = config(r#"{"auths":{"r.io":{"username":"alice","password":"hunter2"}}}"#);
        let mut k = Keyring::new();
        k.add("s", &c);
        let printed = format!("{:?} {:?} {:?}", k.lookup("r.io/x"), k, c);
        assert!(
            !printed.contains("hunter2") && !printed.contains("alice"),
            "{printed}"
        );
    }
}
