//! Image reference parsing: never panics, a parsed reference re-parses to itself, and the
//! registry-host check for pulls gives the same answer before and after normalization.
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
        assert_eq!(
            Reference::parse_for_pull(text).is_ok(),
            Reference::parse_for_pull(&normalized).is_ok(),
            "the host check does not depend on how the reference was written"
        );
        let _ = reference.manifest_reference();
        let _ = reference.api_host();
    }
});
