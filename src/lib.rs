//! pullgate: reject Pods whose images would fail to pull, at admission time.
//!
//! Layers (ARCHITECTURE.md §2), each knowing only the ones below it:
//! [`reference`] and [`keyring`] (strings and docker configs), [`clock`] (bounded maps) →
//! [`registry`] (the OCI distribution API) → [`cache`] → [`checker`] (images + credentials
//! → findings);
//! [`workload`] (pod specs out of Kubernetes objects), [`scheduling`] (where a pod can run:
//! its platforms, and the nodes that already hold its images), [`admission`]
//! (AdmissionReview ↔ subject and answer), [`policy`] (findings × mode → decision) and
//! [`cluster`] (kube reflectors, the Node store) meet in [`webhook`]; [`server`] and [`cli`]
//! are the wiring.
#![forbid(unsafe_code)]

pub mod admission;
pub mod audit;
pub mod cache;
pub mod certs;
pub mod checker;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod credentials;
pub mod digest;
pub mod keyring;
pub mod metrics;
pub mod platform;
pub mod policy;
pub mod provider;
pub mod reference;
pub mod registry;
pub mod scheduling;
pub mod server;
pub mod verdict;
pub mod webhook;
pub mod workload;

/// Install the one rustls crypto provider of this binary (ring). Two providers in one
/// process make kube's client panic at start, so this runs first in `main` and each test.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
