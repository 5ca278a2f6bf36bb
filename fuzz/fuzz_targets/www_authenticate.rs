//! `WWW-Authenticate` parsing: never panics, never loops.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pullgate::registry::parse_challenges;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_challenges(text);
    }
});
