//! Replays Go's own answers (`tests/data/go/*.jsonl`, written by `make go-tables` from
//! `tests/go/`) against this module: every row must agree.

use std::path::PathBuf;

use serde_json::Value;

use super::config::{self, Entry};
use super::pattern::ImagePattern;
use super::{ConfigFormat, DockerConfig, Keyring, glob, json, normalize_key, parse_key, url};

fn rows(name: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/go")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e} (run make go-tables)", path.display()));
    text.lines()
        .map(|line| serde_json::from_str(line).expect("a table row is JSON"))
        .collect()
}

/// A Go string from a table: a JSON string, or `{"hex": …}` when it is not UTF-8.
fn bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::Null => Vec::new(),
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Object(o) => {
            let hex = o.get("hex").and_then(Value::as_str).expect("hex field");
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digits"))
                .collect()
        }
        other => panic!("not a byte string: {other}"),
    }
}

fn text(v: &Value) -> String {
    String::from_utf8(bytes(v)).expect("this column is UTF-8")
}

fn flag(row: &Value, name: &str) -> bool {
    row.get(name).and_then(Value::as_bool).unwrap_or(false)
}

fn shown(b: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(&b[..b.len().min(160)]))
}

/// Fail with the first disagreements and how many there were.
fn assert_none(table: &str, total: usize, failures: Vec<String>) {
    assert!(total > 0, "{table}: empty table");
    assert!(
        failures.is_empty(),
        "{table}: {} of {total} rows differ from Go, e.g.:\n{}",
        failures.len(),
        failures
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Go keeps decoded `auth` bytes as they are; pullgate keeps them as text.
fn as_text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn docker_configs_decode_as_go_decodes_them() {
    let rows = rows("docker_config.jsonl");
    let mut failures = Vec::new();
    for row in &rows {
        let input = bytes(&row["in"]);
        let format = if flag(row, "legacy") {
            ConfigFormat::DockerCfg
        } else {
            ConfigFormat::DockerConfigJson
        };
        let want_ok = flag(row, "ok");
        if super::apiserver_accepts(&input) != flag(row, "api") {
            failures.push(format!(
                "{}: the apiserver accepts it: {}",
                shown(&input),
                flag(row, "api")
            ));
        }
        let want: Vec<(String, String, String)> = row
            .get("entries")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|e| (text(&e[0]), as_text(&bytes(&e[1])), as_text(&bytes(&e[2]))))
            .collect();
        match config::decode(&input, format) {
            Ok(entries) => {
                let got: Vec<(String, String, String)> = entries
                    .into_iter()
                    .map(|(k, Entry { username, password })| (k, username, password))
                    .collect();
                if !want_ok {
                    failures.push(format!(
                        "{format:?} {}: Go refuses, pullgate reads it",
                        shown(&input)
                    ));
                } else if got != want {
                    failures.push(format!(
                        "{format:?} {}: Go {want:?}, pullgate {got:?}",
                        shown(&input)
                    ));
                }
            }
            Err(e) => {
                if want_ok {
                    failures.push(format!(
                        "{format:?} {}: Go reads it, pullgate: {e}",
                        shown(&input)
                    ));
                }
            }
        }
    }
    assert_none("docker_config", rows.len(), failures);
}

#[test]
fn auth_fields_decode_as_go_decodes_them() {
    let rows = rows("auth.jsonl");
    let mut failures = Vec::new();
    for row in &rows {
        let input = text(&row["in"]);
        let want =
            flag(row, "ok").then(|| (as_text(&bytes(&row["user"])), as_text(&bytes(&row["pass"]))));
        let got = config::decode_auth(&input).ok();
        if got != want {
            failures.push(format!("{input:?}: Go {want:?}, pullgate {got:?}"));
        }
    }
    assert_none("auth", rows.len(), failures);
}

#[test]
fn keys_parse_and_normalize_as_go() {
    let rows = rows("keys.jsonl");
    let mut failures = Vec::new();
    for row in &rows {
        let input = bytes(&row["in"]);
        let parsed = parse_key(&input);
        let want_ok = flag(row, "ok");
        match (&parsed, want_ok) {
            (None, false) => continue,
            (None, true) => {
                failures.push(format!(
                    "{}: Go parses it, pullgate does not",
                    shown(&input)
                ));
                continue;
            }
            (Some(u), false) => {
                failures.push(format!(
                    "{}: Go refuses it, pullgate parses host {}",
                    shown(&input),
                    shown(&u.host)
                ));
                continue;
            }
            (Some(_), true) => {}
        }
        let Some(u) = parsed else { continue };
        let key = normalize_key(&input).unwrap_or_default();
        if u.host != bytes(&row["host"])
            || u.path != bytes(&row["path"])
            || key != bytes(&row["key"])
        {
            failures.push(format!(
                "{}: Go host {} path {} key {}, pullgate host {} path {} key {}",
                shown(&input),
                shown(&bytes(&row["host"])),
                shown(&bytes(&row["path"])),
                shown(&bytes(&row["key"])),
                shown(&u.host),
                shown(&u.path),
                shown(&key)
            ));
            continue;
        }
        // The stored key is parsed again for every lookup (`ParseSchemelessURL`).
        let again = url::parse(&[b"https://".as_slice(), &key].concat()).ok();
        if again.is_some() != flag(row, "again") {
            failures.push(format!(
                "{}: re-parse of key {}: Go {}, pullgate {}",
                shown(&input),
                shown(&key),
                flag(row, "again"),
                again.is_some()
            ));
            continue;
        }
        if let Some(again) = again {
            let (host, port) = url::split_host_port(&again.host).unwrap_or((&again.host, b""));
            let labels: Vec<Vec<u8>> = host.split(|&b| b == b'.').map(<[u8]>::to_vec).collect();
            let want_labels: Vec<Vec<u8>> = row["labels"]
                .as_array()
                .into_iter()
                .flatten()
                .map(bytes)
                .collect();
            if labels != want_labels
                || port != bytes(&row["port"]).as_slice()
                || again.path != bytes(&row["kpath"])
            {
                failures.push(format!(
                    "{}: SplitURL of key {} differs",
                    shown(&input),
                    shown(&key)
                ));
            }
        }
    }
    assert_none("keys", rows.len(), failures);
}

#[test]
fn keys_match_images_as_the_kubelet_lookup_does() {
    let rows = rows("match.jsonl");
    let mut failures = Vec::new();
    for row in &rows {
        let key = text(&row["key"]);
        let image = text(&row["image"]);
        let mut keyring = Keyring::new();
        let config = DockerConfig {
            entries: vec![(
                key.clone(),
                Entry {
                    username: "u".into(),
                    password: "p".into(),
                },
            )],
        };
        keyring.add("go", &config);
        let got = !keyring.lookup(&image).is_empty();
        if got != flag(row, "match") {
            failures.push(format!(
                "key {key:?} image {image:?}: Go {}, pullgate {got}",
                flag(row, "match")
            ));
        }
    }
    assert_none("match", rows.len(), failures);
}

#[test]
fn lookups_return_credentials_in_the_kubelet_order() {
    let rows = rows("lookup.jsonl");
    let mut failures = Vec::new();
    for row in &rows {
        let mut keyring = Keyring::new();
        for (i, secret) in row["secrets"].as_array().into_iter().flatten().enumerate() {
            let doc = secret.as_str().expect("a secret is text");
            let config = DockerConfig::parse(doc.as_bytes(), ConfigFormat::DockerConfigJson)
                .expect("valid secret");
            keyring.add(&format!("secret {i}"), &config);
        }
        for (image, users) in row["users"].as_object().into_iter().flatten() {
            let want: Vec<&str> = users
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let got: Vec<String> = keyring
                .lookup(image)
                .into_iter()
                .map(|c| c.username)
                .collect();
            if got != want {
                failures.push(format!(
                    "{} → {image}: Go {want:?}, pullgate {got:?}",
                    row["secrets"]
                ));
            }
        }
    }
    assert_none("lookup", rows.len(), failures);
}

#[test]
fn match_images_patterns_match_as_the_kubelet_plugin_does() {
    let rows = rows("patterns.jsonl");
    let mut failures = Vec::new();
    for row in &rows {
        let pattern = text(&row["pattern"]);
        let parsed = ImagePattern::parse(&pattern);
        if parsed.is_some() != flag(row, "ok") {
            failures.push(format!(
                "{pattern:?}: Go parses it: {}, pullgate: {}",
                flag(row, "ok"),
                parsed.is_some()
            ));
            continue;
        }
        if let Some(p) = parsed {
            let image = text(&row["image"]);
            if p.matches(&image) != flag(row, "match") {
                failures.push(format!(
                    "{pattern:?} vs {image:?}: Go {}",
                    flag(row, "match")
                ));
            }
        }
    }
    assert_none("patterns", rows.len(), failures);
}

#[test]
fn globs_match_as_go_filepath_match() {
    let rows = rows("glob.jsonl");
    let mut failures = Vec::new();
    for row in &rows {
        let (pattern, name) = (bytes(&row["pattern"]), bytes(&row["name"]));
        let got = glob::matches(&pattern, &name);
        if got != flag(row, "match") {
            failures.push(format!(
                "{} vs {}: Go {}",
                shown(&pattern),
                shown(&name),
                flag(row, "match")
            ));
        }
    }
    assert_none("glob", rows.len(), failures);
}

#[test]
fn only_long_s_and_kelvin_fold_to_ascii_in_field_names() {
    let rows = rows("fold.jsonl");
    let mut runes: Vec<u32> = Vec::new();
    for row in &rows {
        let c = row["rune"]
            .as_u64()
            .and_then(|r| char::from_u32(r as u32))
            .expect("a rune");
        let ascii = row["ascii"].as_str().expect("a letter");
        assert!(
            json::field_matches(&c.to_string(), ascii),
            "{c:?} folds to {ascii}"
        );
        runes.push(c as u32);
    }
    runes.dedup();
    assert_eq!(runes, [0x17F, 0x212A]);
}
