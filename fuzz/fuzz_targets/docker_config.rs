//! Docker config parsing and keyring matching: never panics, on any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pullgate::keyring::{ConfigFormat, DockerConfig, Keyring};

fuzz_target!(|data: &[u8]| {
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
});
