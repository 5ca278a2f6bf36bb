//! Image reference parsing: never panics, and a parsed reference re-parses to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pullgate::reference::Reference;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(reference) = Reference::parse(text) {
        let normalized = reference.to_string();
        let again = Reference::parse(&normalized).expect("a normalized reference parses");
        assert_eq!(again, reference, "normalization is idempotent");
        let _ = reference.manifest_reference();
        let _ = reference.api_host();
    }
});
