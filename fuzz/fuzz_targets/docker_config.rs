//! Docker config decoding, keyring matching and registry patterns: never panic, on any
//! bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pullgate::keyring::{ConfigFormat, DockerConfig, ImagePattern, Keyring, apiserver_accepts};

fuzz_target!(|data: &[u8]| {
    let _ = apiserver_accepts(data);
    for format in [ConfigFormat::DockerConfigJson, ConfigFormat::DockerCfg] {
        if let Ok(config) = DockerConfig::parse(data, format) {
            let mut keyring = Keyring::new();
            keyring.add("fuzz", &config);
            for image in ["docker.io/library/nginx", "registry.example.com:5000/team/app", "a.b.gcr.io/x/y"] {
                let _ = keyring.lookup(image);
            }
        }
    }
    let _ = DockerConfig::parse_any(data);
    if let Ok(text) = std::str::from_utf8(data) {
        // The input as a registry pattern, and as an image name.
        if let Some(pattern) = ImagePattern::parse(text) {
            let _ = pattern.matches("registry.example.com:5000/team/app");
            let _ = pattern.matches_host("registry.example.com");
        }
        for pattern in ["*.example.com", "registry.example.com:5000/team", "[::1]:5000"] {
            if let Some(p) = ImagePattern::parse(pattern) {
                let _ = p.matches(text);
            }
        }
    }
});
