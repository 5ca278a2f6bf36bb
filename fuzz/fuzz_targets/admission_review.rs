//! AdmissionReview decoding and image extraction: any body gets a subject or an error,
//! and a decision can be made on what it yields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pullgate::admission::{decode, respond};
use pullgate::policy::{Decision, Mode, OnRegistryError, decide};
use pullgate::reference::Reference;
use pullgate::verdict::{Finding, Verdict};
use pullgate::workload::ImageKind;

fuzz_target!(|data: &[u8]| {
    let Ok(subject) = decode(data) else {
        return;
    };
    let findings: Vec<Finding> = subject
        .images
        .iter()
        .map(|c| {
            let verdict = match Reference::parse(&c.image) {
                Ok(_) => Verdict::NotFound,
                Err(_) => Verdict::InvalidReference,
            };
            let volume = c.kind == ImageKind::Volume;
            Finding {
                image: c.image.clone(),
                reference: None,
                container: (!volume).then(|| c.name.clone()),
                volume: volume.then(|| c.name.clone()),
                verdict,
                digest: None,
                message: "fuzz".into(),
                note: None,
                node_copies: None,
            }
        })
        .collect();
    for mode in [Mode::Enforce, Mode::Audit, Mode::Off] {
        let decision: Decision = decide(mode, OnRegistryError::Allow, &findings);
        let _ = respond(&subject.uid, &decision);
    }
});
