//! Integration-test harness for `pullgate`.
//!
//! Test binaries include it with `mod support;` and call [`init`] first.
//! Everything here listens on loopback only, every child process is killed
//! through its own `Child` handle when dropped, and every in-process server
//! is a tokio task aborted when its handle is dropped.
//!
//! * [`certs`]: a throw-away CA and leaf certificates (rcgen, ECDSA P-256).
//! * [`registry`]: a real CNCF distribution 2.8 registry process.
//! * [`token`]: a Docker-registry token issuer (ES256 JWTs).
//! * [`push`]: pushing test images / indexes over the registry HTTP API.
//! * [`proxy`]: a fault-injecting HTTP proxy and a request-recording sink.
//! * [`server`]: the small accept loop the in-process servers share.

// Not every test binary uses every helper.
#![allow(dead_code, unused_imports)]

pub mod certs;
pub mod cli;
pub mod connect;
pub mod engine;
pub mod proxy;
pub mod push;
pub mod registry;
pub mod server;
pub mod token;

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::Path;
use std::sync::Once;
use std::time::Duration;

pub use certs::{LeafCert, TestPki};
pub use proxy::{AuthRecorder, Fault, FaultProxy, RecordedRequest, SinkResponse};
pub use push::{
    FetchedManifest, Platform, PushAuth, PushTarget, delete_manifest, fetch_manifest,
    head_manifest, parse_challenge, push_blob, push_docker_manifest, push_docker_manifest_list,
    push_manifest_raw, push_oci_index, push_oci_manifest, tag_existing,
};
pub use registry::{Registry, RegistryAuth, RegistryOpts};
pub use token::{ADMIN_PASSWORD, ADMIN_USER, TokenFailMode, TokenIssuer, TokenIssuerOpts};

/// The loopback address every harness server binds to.
pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Upper bound for any readiness wait in the harness.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Every manifest media type the harness pushes, for `Accept` headers.
pub const ALL_MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// One-time process setup; call it first in every test.
///
/// rustls refuses to pick a crypto provider on its own when it cannot tell
/// which one is meant, and the crate policy is "ring only", so install
/// it explicitly. Idempotent and safe to call from concurrent tests.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // Err only means some other code installed a provider first.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A port that was free on `ip` a moment ago.
///
/// Only for processes we cannot hand a bound socket to (the registry);
/// in-process servers bind `:0` directly and keep the listener.
pub fn free_port(ip: IpAddr) -> u16 {
    let listener = TcpListener::bind((ip, 0))
        .unwrap_or_else(|e| panic!("cannot bind {ip}:0 to find a free port: {e}"));
    listener
        .local_addr()
        .expect("bound listener has a local address")
        .port()
}

/// A reqwest client for talking to harness servers.
///
/// Trusts exactly `ca_pem` (no system roots) when given, never uses an
/// environment proxy, never follows redirects (tests look at them) and
/// gives up after 30 s so a broken harness cannot hang a test run.
pub fn http_client(ca_pem: Option<&Path>) -> reqwest::Client {
    init();
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30));
    if let Some(path) = ca_pem {
        let pem = std::fs::read(path)
            .unwrap_or_else(|e| panic!("cannot read CA bundle {}: {e}", path.display()));
        let cert = reqwest::Certificate::from_pem(&pem)
            .unwrap_or_else(|e| panic!("CA bundle {} is not PEM: {e}", path.display()));
        builder = builder.tls_certs_only([cert]);
    }
    builder.build().expect("building the harness HTTP client")
}

/// `n` random bytes from the system RNG.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut buf)
        .expect("system RNG failed");
    buf
}

/// Lower-case hex encoding.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// OCI digest string (`sha256:<hex>`) of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    format!("sha256:{}", hex(d.as_ref()))
}
