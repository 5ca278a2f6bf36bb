//! Docker config decoding exactly as the kubelet does it: Go's `json.Unmarshal` into
//! `pkg/credentialprovider/config.go DockerConfigJSON` (`.dockerconfigjson`: `auths` and
//! `HttpHeaders`) or `DockerConfig` (`.dockercfg`: the bare map), each entry through
//! `DockerConfigEntry.UnmarshalJSON` (a `dockerConfigEntryWithAuth` with `username`,
//! `password`, `email`, `auth`) and `decodeDockerConfigFieldAuth`. Read at kubernetes
//! v1.28 and at the newest `master` (the same code in both).
//!
//! What Go does, and so what this does:
//! - the whole input is checked first: any syntax error anywhere rejects it;
//! - field names match case-insensitively (Go's fold: `Auths`, `USERNAME`, `uſername`);
//!   the last of duplicate fields wins, but a second `auths` object is merged into the
//!   first (Go decodes into the existing map) while `"auths": null` empties it;
//! - unknown fields (`credHelpers`, `credsStore`, `identitytoken`, `registrytoken`) are
//!   ignored: they give no credential;
//! - `null` leaves a string field as it was, empties a map, and makes an entry with
//!   nothing in it (which still counts as a credential for its registry);
//! - a value of the wrong type anywhere in the known shape is an `UnmarshalTypeError`:
//!   the kubelet rejects the whole secret;
//! - a non-empty `auth` replaces `username` and `password`: Go's base64 (padded when it
//!   ends in `=` after trimming spaces, else unpadded), then split at the first `:`.

use std::collections::BTreeMap;

use super::KeyringError;
use super::base64::{self, Padding};
use super::json::{self, Kind, Reader};

/// One registry entry after `DockerConfigEntry.UnmarshalJSON`.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Entry {
    pub username: String,
    pub password: String,
}

/// The two shapes a pull secret holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    /// `kubernetes.io/dockerconfigjson`: `{"auths": {KEY: ENTRY}, "HttpHeaders": {…}}`.
    DockerConfigJson,
    /// `kubernetes.io/dockercfg` (legacy): `{KEY: ENTRY}`.
    DockerCfg,
}

/// Registry key → entry. Go decodes into a map, whose iteration order is random; entries
/// are kept here in byte order of their keys, the one deterministic order.
pub(crate) type Entries = BTreeMap<String, Entry>;

/// `json.Unmarshal(bytes, &DockerConfigJSON{})` or `(…, &DockerConfig{})`.
pub(crate) fn decode(bytes: &[u8], format: ConfigFormat) -> Result<Entries, KeyringError> {
    json::check_valid(bytes).map_err(KeyringError::Syntax)?;
    let mut reader = Reader::new(bytes);
    let mut decoder = Decoder::default();
    let mut entries = None;
    match format {
        ConfigFormat::DockerConfigJson => decoder.config_json(&mut reader, &mut entries)?,
        ConfigFormat::DockerCfg => {
            decoder.entries(
                &mut reader,
                &mut entries,
                "the docker config (an object of registry entries)",
            )?;
        }
    }
    match decoder.saved {
        Some(error) => Err(error),
        None => Ok(entries.unwrap_or_default()),
    }
}

/// Whether a document is a `.dockerconfigjson` (an object with a member Go would decode
/// into `auths`, holding an object) rather than a legacy `.dockercfg`.
pub(crate) fn looks_like_config_json(bytes: &[u8]) -> bool {
    if json::check_valid(bytes).is_err() {
        return false;
    }
    let mut reader = Reader::new(bytes);
    if reader.kind() != Kind::Object {
        return false;
    }
    let mut found = false;
    let _ = reader.object(|key, r| -> Result<(), ()> {
        if json::field_matches(&key, "auths") {
            found = r.kind() == Kind::Object;
        }
        r.skip_value();
        Ok(())
    });
    found
}

/// Go's decoder state: an `UnmarshalTypeError` is saved and decoding goes on (the first
/// one is returned at the end), while an error from an `UnmarshalJSON` method stops it.
#[derive(Default)]
struct Decoder {
    saved: Option<KeyringError>,
}

impl Decoder {
    /// `what` is a JSON `found`, not the `expected` Go type.
    fn type_error(&mut self, found: Kind, what: &str, expected: &'static str) {
        self.saved.get_or_insert_with(|| KeyringError::Type {
            what: what.to_string(),
            found: found.as_str(),
            expected,
        });
    }

    /// `DockerConfigJSON`: a struct, so `null` is a no-op and anything else but an object
    /// is a type error.
    fn config_json(
        &mut self,
        r: &mut Reader<'_>,
        entries: &mut Option<Entries>,
    ) -> Result<(), KeyringError> {
        match r.kind() {
            Kind::Object => r.object(|key, r| {
                if json::field_matches(&key, "auths") {
                    self.entries(r, entries, "\"auths\"")
                } else if json::field_matches(&key, "HttpHeaders") {
                    self.http_headers(r);
                    Ok(())
                } else {
                    r.skip_value();
                    Ok(())
                }
            }),
            Kind::Null => {
                r.skip_value();
                Ok(())
            }
            other => {
                self.type_error(other, "the document", "an object");
                r.skip_value();
                Ok(())
            }
        }
    }

    /// `HttpHeaders map[string]string`: never read by the kubelet, but a wrong type in
    /// it still fails the whole decode.
    fn http_headers(&mut self, r: &mut Reader<'_>) {
        match r.kind() {
            Kind::Object => {
                let _ = r.object(|_, r| -> Result<(), ()> {
                    match r.kind() {
                        Kind::String | Kind::Null => {}
                        other => self.type_error(other, "an \"HttpHeaders\" value", "a string"),
                    }
                    r.skip_value();
                    Ok(())
                });
            }
            Kind::Null => r.skip_value(),
            other => {
                self.type_error(other, "\"HttpHeaders\"", "an object");
                r.skip_value();
            }
        }
    }

    /// `DockerConfig map[string]DockerConfigEntry`: `null` empties the map, an object is
    /// decoded into it (merging with what an earlier duplicate put there).
    fn entries(
        &mut self,
        r: &mut Reader<'_>,
        entries: &mut Option<Entries>,
        what: &str,
    ) -> Result<(), KeyringError> {
        match r.kind() {
            Kind::Object => {
                let map = entries.get_or_insert_with(Entries::new);
                r.object(|key, r| {
                    let entry = entry(r, &key)?;
                    map.insert(key, entry);
                    Ok(())
                })
            }
            Kind::Null => {
                *entries = None;
                r.skip_value();
                Ok(())
            }
            other => {
                self.type_error(other, what, "an object of registry entries");
                r.skip_value();
                Ok(())
            }
        }
    }
}

/// `DockerConfigEntry.UnmarshalJSON`: its own `json.Unmarshal` into
/// `dockerConfigEntryWithAuth`, whose error (a type error included) is returned at once.
fn entry(r: &mut Reader<'_>, key: &str) -> Result<Entry, KeyringError> {
    let registry = || super::quoted_key(key);
    let mut inner = Decoder::default();
    let mut username = String::new();
    let mut password = String::new();
    let mut auth = String::new();
    match r.kind() {
        Kind::Object => {
            let _ = r.object(|name, r| -> Result<(), ()> {
                let field = ["username", "password", "email", "auth"]
                    .into_iter()
                    .find(|f| json::field_matches(&name, f));
                let target = match field {
                    Some("username") => Some(&mut username),
                    Some("password") => Some(&mut password),
                    Some("auth") => Some(&mut auth),
                    // `email` is kept by the kubelet but never sent: only its type matters.
                    _ => None,
                };
                match (field, r.kind()) {
                    (None, _) => r.skip_value(),
                    (Some(_), Kind::String) => {
                        let value = r.string();
                        if let Some(target) = target {
                            *target = value;
                        }
                    }
                    // `null` into a string: ignored, the field keeps its value.
                    (Some(_), Kind::Null) => r.skip_value(),
                    (Some(f), other) => {
                        inner.type_error(
                            other,
                            &format!("registry {}: {f:?}", registry()),
                            "a string",
                        );
                        r.skip_value();
                    }
                }
                Ok(())
            });
        }
        Kind::Null => r.skip_value(),
        other => {
            inner.type_error(other, &format!("registry {}", registry()), "an object");
            r.skip_value();
        }
    }
    if let Some(error) = inner.saved {
        return Err(error);
    }
    if auth.is_empty() {
        return Ok(Entry { username, password });
    }
    let (username, password) = decode_auth(&auth).map_err(|reason| KeyringError::Auth {
        key: key.to_string(),
        reason,
    })?;
    Ok(Entry { username, password })
}

/// `decodeDockerConfigFieldAuth`: `StdEncoding` when the trimmed field ends in `=`, else
/// `RawStdEncoding`, over the untrimmed field; then `strings.SplitN(decoded, ":", 2)`.
/// Decoded bytes that are not UTF-8 are kept with U+FFFD in their place (Go would keep the
/// raw bytes).
pub(crate) fn decode_auth(field: &str) -> Result<(String, String), String> {
    // `strings.TrimSpace` trims Unicode White_Space, as `str::trim` does.
    let padding = if field.trim().ends_with('=') {
        Padding::Padded
    } else {
        Padding::Unpadded
    };
    let decoded = base64::decode(field.as_bytes(), padding)
        .map_err(|e| format!("is not valid base64 ({e})"))?;
    let Some(colon) = decoded.iter().position(|&b| b == b':') else {
        return Err("does not decode to \"username:password\" (no colon)".to_string());
    };
    Ok((
        String::from_utf8_lossy(&decoded[..colon]).into_owned(),
        String::from_utf8_lossy(&decoded[colon + 1..]).into_owned(),
    ))
}
