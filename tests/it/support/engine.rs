//! Building pullgate's engine against the harness registries.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pullgate::cache::{CacheConfig, VerdictCache};
use pullgate::checker::{Checker, ImageSpec};
use pullgate::keyring::{ConfigFormat, DockerConfig, Keyring};
use pullgate::platform::Platform;
use pullgate::registry::{Registry as Client, RegistryConfig};
use pullgate::verdict::Finding;
use tokio::time::Instant;

/// A registry client trusting `cas` and speaking plain HTTP to `insecure` hosts.
pub fn registry_client(cas: &[&Path], insecure: &[String]) -> Client {
    Client::new(RegistryConfig {
        ca_bundles: cas
            .iter()
            .map(|p| p.to_path_buf())
            .collect::<Vec<PathBuf>>(),
        insecure_registries: insecure.to_vec(),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        ..RegistryConfig::default()
    })
    .expect("registry client")
}

/// A checker with a fresh cache.
pub fn checker(cas: &[&Path], insecure: &[String]) -> Checker {
    Checker::new(
        Arc::new(registry_client(cas, insecure)),
        VerdictCache::new(CacheConfig::default()),
    )
}

/// A docker config JSON with one entry per (registry key, user, password).
pub fn docker_config_json(entries: &[(&str, &str, &str)]) -> String {
    let auths: serde_json::Map<String, serde_json::Value> = entries
        .iter()
        .map(|(key, user, pass)| {
            (
                key.to_string(),
                serde_json::json!({"username": user, "password": pass}),
            )
        })
        .collect();
    serde_json::json!({ "auths": auths }).to_string()
}

/// A keyring holding one secret per (secret name, registry key, user, password), in order.
pub fn keyring(secrets: &[(&str, &str, &str, &str)]) -> Keyring {
    let mut k = Keyring::new();
    for (name, key, user, pass) in secrets {
        let json = docker_config_json(&[(key, user, pass)]);
        let config = DockerConfig::parse(json.as_bytes(), ConfigFormat::DockerConfigJson)
            .expect("valid docker config");
        k.add(&format!("secret {name}"), &config);
    }
    k
}

/// Check one image with `keyring` on linux/amd64 within `within`.
pub async fn check_one(
    checker: &Checker,
    image: &str,
    keyring: &Keyring,
    within: Duration,
) -> Finding {
    check_on(checker, image, keyring, &[Platform::linux_amd64()], within).await
}

pub async fn check_on(
    checker: &Checker,
    image: &str,
    keyring: &Keyring,
    platforms: &[Platform],
    within: Duration,
) -> Finding {
    let mut findings = checker
        .check(
            &[ImageSpec::new(Some("app"), image)],
            keyring,
            platforms,
            Instant::now() + within,
        )
        .await;
    findings.pop().expect("one finding per image")
}
