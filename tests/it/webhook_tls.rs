//! `pullgate serve` end to end: the real binary behind real TLS (the test CA), answering
//! AdmissionReviews over HTTP/2 and HTTP/1.1 against real registries, rotating its
//! certificate the way a Kubernetes secret volume does, draining on SIGTERM, answering
//! before the apiserver's timeout, and exposing health, readiness and metrics.
//!
//! Every server is a child process owned by a [`Server`] guard: killed and reaped on drop,
//! its log (stdout + stderr, in a file so it can never block on a pipe) quoted in every
//! assertion message.

use crate::support;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{StatusCode, Version};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use support::{
    Fault, FaultProxy, LeafCert, PushAuth, Registry, RegistryOpts, TestPki, push_oci_manifest,
};
use tempfile::TempDir;

/// Upper bound for the webhook to answer `/readyz` with 200.
const READY_WITHIN: Duration = Duration::from_secs(10);
/// Attempts when a port picked by [`support::free_port`] is taken before the child binds it.
const START_ATTEMPTS: usize = 3;
/// Any single HTTP exchange with the webhook gives up after this long.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------------------

/// A running `pullgate serve`; killed (through its own `Child`) and reaped on drop.
struct Server {
    child: Child,
    /// HTTPS: `POST /validate`.
    listen: SocketAddr,
    /// Plain HTTP: `/healthz`, `/readyz`, `/metrics`.
    ops: SocketAddr,
    log_path: PathBuf,
    _dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Our own child only; both calls fail harmlessly once it has exited and been reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Start `pullgate serve` with `cert`/`key`, `--no-cluster`, a 0.2 s certificate reload
    /// interval and `extra` flags, and wait until `/readyz` answers 200.
    async fn start(cert: &Path, key: &Path, extra: &[&str]) -> Server {
        support::init();
        let dir = tempfile::Builder::new()
            .prefix("pullgate-serve-")
            .tempdir()
            .expect("creating the server's temp dir");
        let log_path = dir.path().join("serve.log");
        let mut dir = Some(dir);
        for attempt in 1..=START_ATTEMPTS {
            let listen =
                SocketAddr::new(support::LOCALHOST, support::free_port(support::LOCALHOST));
            let ops = SocketAddr::new(support::LOCALHOST, support::free_port(support::LOCALHOST));
            let child = spawn(&log_path, listen, ops, cert, key, extra);
            let mut server = Server {
                child,
                listen,
                ops,
                log_path: log_path.clone(),
                _dir: dir
                    .take()
                    .expect("the temp dir is handed back between attempts"),
            };
            match server.wait_ready().await {
                Ok(()) => return server,
                Err(why) if why.contains("cannot listen") && attempt < START_ATTEMPTS => {
                    // Lost a port race: keep the temp dir for the next attempt.
                    let _ = server.child.kill();
                    let _ = server.child.wait();
                    let placeholder = tempfile::tempdir().expect("placeholder temp dir");
                    dir = Some(std::mem::replace(&mut server._dir, placeholder));
                }
                Err(why) => panic!("pullgate serve did not become ready: {why}"),
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// Poll `/readyz` (bounded); Err carries the reason and the log.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let client = plain_client();
        let url = self.ops_url("/readyz");
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited early with {status}\n{}", self.log()));
            }
            let last = match client
                .get(&url)
                .timeout(Duration::from_secs(1))
                .send()
                .await
            {
                Ok(r) if r.status() == StatusCode::OK => return Ok(()),
                Ok(r) => format!("HTTP {}", r.status()),
                Err(e) => chain(&e),
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "{url} not 200 within {READY_WITHIN:?} (last: {last})\n{}",
                    self.log()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Everything the server wrote so far.
    fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        format!("--- pullgate serve log ---\n{text}--- end of log ---")
    }

    fn validate_url(&self, timeout: &str) -> String {
        format!("https://{}/validate?timeout={timeout}", self.listen)
    }

    fn ops_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.ops)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Still running (not exited)?
    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM to our own child, by its pid.
    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .stdin(Stdio::null())
            .status()
            .expect("running kill(1)");
        assert!(
            status.success(),
            "kill -TERM {} failed: {status}",
            self.pid()
        );
    }

    /// Wait (bounded) for the child to exit.
    async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// POST `body` to `/validate?timeout=…`.
    async fn post(
        &self,
        client: &reqwest::Client,
        body: Vec<u8>,
        timeout: &str,
    ) -> Result<Answer, reqwest::Error> {
        let resp = client
            .post(self.validate_url(timeout))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await?;
        let status = resp.status();
        let version = resp.version();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = resp.text().await?;
        Ok(Answer {
            status,
            version,
            content_type,
            body,
        })
    }

    /// POST one AdmissionReview and expect an HTTP 200 AdmissionReview back.
    async fn review(&self, client: &reqwest::Client, review: &Value, timeout: &str) -> Reviewed {
        let started = Instant::now();
        let answer = self
            .post(client, review.to_string().into_bytes(), timeout)
            .await
            .unwrap_or_else(|e| panic!("POST /validate failed: {}\n{}", chain(&e), self.log()));
        let elapsed = started.elapsed();
        self.expect_review(answer, elapsed)
    }

    fn expect_review(&self, answer: Answer, elapsed: Duration) -> Reviewed {
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "expected an AdmissionReview, got HTTP {}: {}\n{}",
            answer.status,
            answer.body,
            self.log()
        );
        assert!(
            answer.content_type.starts_with("application/json"),
            "content type {:?}\n{}",
            answer.content_type,
            self.log()
        );
        let json: Value = serde_json::from_str(&answer.body).unwrap_or_else(|e| {
            panic!("answer is not JSON ({e}): {}\n{}", answer.body, self.log())
        });
        assert_eq!(json["apiVersion"], "admission.k8s.io/v1", "{json}");
        assert_eq!(json["kind"], "AdmissionReview", "{json}");
        assert!(json["response"].is_object(), "no response in {json}");
        Reviewed {
            version: answer.version,
            elapsed,
            json,
        }
    }
}

fn spawn(
    log_path: &Path,
    listen: SocketAddr,
    ops: SocketAddr,
    cert: &Path,
    key: &Path,
    extra: &[&str],
) -> Child {
    let log = File::create(log_path).expect("creating the server log");
    let log2 = log.try_clone().expect("duplicating the server log handle");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pullgate"));
    cmd.arg("serve")
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--metrics-listen")
        .arg(ops.to_string())
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .args(["--no-cluster", "--cert-reload-interval", "0.2"])
        .args(["--log-level", "info,pullgate=debug"])
        .args(extra)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    // Nothing from the environment may change what is tested: every flag has a PULLGATE_*
    // variable, and a proxy variable would send registry traffic elsewhere.
    for (name, _) in std::env::vars_os() {
        let upper = name.to_string_lossy().to_ascii_uppercase();
        if upper.starts_with("PULLGATE_")
            || upper == "KUBECONFIG"
            || upper.ends_with("_PROXY")
            || upper == "SSL_CERT_FILE"
            || upper == "SSL_CERT_DIR"
        {
            cmd.env_remove(&name);
        }
    }
    cmd.spawn().expect("starting pullgate serve")
}

/// `error: cause: cause…`: reqwest's Display leaves out the source chain.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}

/// An HTTP answer from `/validate`.
struct Answer {
    status: StatusCode,
    version: Version,
    content_type: String,
    body: String,
}

/// An HTTP 200 AdmissionReview answer.
struct Reviewed {
    version: Version,
    elapsed: Duration,
    json: Value,
}

impl Reviewed {
    fn response(&self) -> &Value {
        &self.json["response"]
    }

    fn allowed(&self) -> bool {
        self.response()["allowed"]
            .as_bool()
            .unwrap_or_else(|| panic!("no boolean `allowed` in {}", self.json))
    }

    fn warnings(&self) -> Vec<String> {
        self.response()["warnings"]
            .as_array()
            .map(|w| {
                w.iter()
                    .map(|s| s.as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn message(&self) -> &str {
        self.response()["status"]["message"]
            .as_str()
            .unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------
// Clients and reviews
// ---------------------------------------------------------------------------------------

/// A rustls client config trusting exactly the PEM CA at `ca`, offering `alpn`.
fn tls_config(ca: &Path, alpn: &[&str]) -> rustls::ClientConfig {
    support::init();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)
        .unwrap_or_else(|e| panic!("cannot read CA {}: {e}", ca.display()))
    {
        roots
            .add(cert.expect("CA PEM parses"))
            .expect("CA certificate is usable as a root");
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    config
}

/// An HTTPS client for the webhook, trusting the test CA and offering only `alpn`.
fn https_client(ca: &Path, alpn: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(CLIENT_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .tls_backend_preconfigured(tls_config(ca, &[alpn]))
        .build()
        .expect("building the HTTPS client")
}

/// A plain-HTTP client for the operations port.
fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("building the plain HTTP client")
}

/// A Pod with one container `app` running `image`.
fn pod(image: &str, pull_policy: Option<&str>) -> Value {
    let mut container = json!({ "name": "app", "image": image });
    if let Some(policy) = pull_policy {
        container["imagePullPolicy"] = json!(policy);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "p", "namespace": "default" },
        "spec": { "containers": [container] }
    })
}

/// A CREATE AdmissionReview (v1) of `object`.
fn review_of(uid: &str, object: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": { "group": "", "version": "v1", "kind": "Pod" },
            "resource": { "group": "", "version": "v1", "resource": "pods" },
            "namespace": "default",
            "name": "p",
            "operation": "CREATE",
            "userInfo": { "username": "u" },
            "object": object,
            "oldObject": null,
            "dryRun": false
        }
    })
}

/// A review of a Pod running `image` (pulled as the kubelet would).
fn review(uid: &str, image: &str) -> Value {
    review_of(uid, pod(image, None))
}

/// A review the webhook answers without any registry: `imagePullPolicy: Never`.
fn exempt_review(uid: &str) -> Value {
    review_of(uid, pod("registry.invalid/never/pulled:1", Some("Never")))
}

/// A registry over TLS (the test CA) holding `team/app:1.0`.
async fn registry_with_app(pki: &TestPki) -> Registry {
    let registry = Registry::start(RegistryOpts::tls(pki)).await;
    push_oci_manifest(&registry.push_target(PushAuth::None), "team/app", "1.0").await;
    registry
}

/// The leaf certificate (DER) presented on a fresh TLS connection to `addr`, verified
/// against `ca` for the name 127.0.0.1.
async fn served_certificate(addr: SocketAddr, ca: &Path) -> Result<Vec<u8>, String> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config(ca, &["http/1.1"])));
    let name = ServerName::try_from("127.0.0.1").expect("an IP address is a server name");
    let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connect to {addr} timed out"))?
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .map_err(|_| format!("TLS handshake with {addr} timed out"))?
        .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|c| c.as_ref().to_vec())
        .ok_or_else(|| "no peer certificate".to_owned())?;
    Ok(leaf)
}

fn der_of(leaf: &LeafCert) -> Vec<u8> {
    CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes())
        .expect("leaf PEM parses")
        .as_ref()
        .to_vec()
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_reviews_over_http2_and_http1_with_the_test_ca() {
    support::init();
    let pki = TestPki::new();
    let registry = registry_with_app(&pki).await;
    let ca = pki.ca_pem().to_str().expect("UTF-8 temp path");
    let server = Server::start(pki.cert_pem(), pki.key_pem(), &["--registry-ca", ca]).await;
    let good = format!("{}/team/app:1.0", registry.host());
    let typo = format!("{}/team/app:1.1", registry.host());

    for (alpn, version) in [("h2", Version::HTTP_2), ("http/1.1", Version::HTTP_11)] {
        let client = https_client(pki.ca_pem(), alpn);

        let uid = format!("0b1c2d3e-allow-{alpn}");
        let allowed = server.review(&client, &review(&uid, &good), "10s").await;
        assert_eq!(
            allowed.version, version,
            "ALPN {alpn} negotiated {:?}",
            allowed.version
        );
        assert_eq!(allowed.response()["uid"], uid.as_str(), "{}", allowed.json);
        assert!(
            allowed.allowed(),
            "{good} should be allowed: {}",
            allowed.json
        );
        assert!(
            allowed.warnings().is_empty(),
            "a pullable image has no warnings: {}",
            allowed.json
        );
        assert!(
            allowed.response().get("status").is_none(),
            "an admission carries no status: {}",
            allowed.json
        );

        let uid = format!("4f5a6b7c-deny-{alpn}");
        let denied = server.review(&client, &review(&uid, &typo), "10s").await;
        assert_eq!(denied.version, version, "ALPN {alpn}");
        assert_eq!(denied.response()["uid"], uid.as_str(), "{}", denied.json);
        assert!(
            !denied.allowed(),
            "{typo} should be denied: {}",
            denied.json
        );
        let status = &denied.response()["status"];
        assert_eq!(status["code"], 403, "{}", denied.json);
        assert_eq!(status["reason"], "Forbidden", "{}", denied.json);
        let message = denied.message();
        assert!(
            message.contains(r#"container "app""#),
            "message names the container: {message}"
        );
        assert!(
            message.contains(r#"did you mean "1.0""#),
            "message suggests the existing tag: {message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_by_data_symlink_swap_needs_no_restart() {
    use std::os::unix::fs::symlink;

    support::init();
    let pki = TestPki::new();
    let sans = ["127.0.0.1", "localhost"];
    let leaf_a = pki.issue_leaf("rotation-a", &sans);
    let leaf_b = pki.issue_leaf("rotation-b", &sans);
    assert_ne!(der_of(&leaf_a), der_of(&leaf_b));

    // A Kubernetes secret volume: timestamped dir, `..data` -> it, files -> `..data/…`.
    let volume = tempfile::Builder::new()
        .prefix("pullgate-secret-volume-")
        .tempdir()
        .expect("creating the volume dir");
    let dir = volume.path();
    let write_version = |name: &str, cert_pem: &str, key_pem: &str| {
        let version = dir.join(name);
        std::fs::create_dir(&version).expect("creating a version dir");
        std::fs::write(version.join("tls.crt"), cert_pem).expect("writing tls.crt");
        std::fs::write(version.join("tls.key"), key_pem).expect("writing tls.key");
    };
    // kubelet's atomic writer: new symlink next to `..data`, renamed over it, old dir removed.
    let swap_data_to = |name: &str, old: &str| {
        let tmp = dir.join("..data_tmp");
        symlink(name, &tmp).expect("creating ..data_tmp");
        std::fs::rename(&tmp, dir.join("..data")).expect("renaming ..data_tmp over ..data");
        std::fs::remove_dir_all(dir.join(old)).expect("removing the old version dir");
    };
    write_version("..2026_a", &leaf_a.cert_pem, &leaf_a.key_pem);
    symlink("..2026_a", dir.join("..data")).expect("creating ..data");
    symlink("..data/tls.crt", dir.join("tls.crt")).expect("creating tls.crt link");
    symlink("..data/tls.key", dir.join("tls.key")).expect("creating tls.key link");

    let mut server = Server::start(&dir.join("tls.crt"), &dir.join("tls.key"), &[]).await;
    let pid = server.pid();
    let served = served_certificate(server.listen, pki.ca_pem())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    assert!(
        served == der_of(&leaf_a),
        "the initial leaf is served\n{}",
        server.log()
    );

    // A broken rotation (certificate of b with the key of a) must not stop serving a.
    write_version("..2026_broken", &leaf_b.cert_pem, &leaf_a.key_pem);
    swap_data_to("..2026_broken", "..2026_a");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.log().contains("serving certificate not reloaded") {
        assert!(
            Instant::now() < deadline,
            "the reloader never looked at the broken pair\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A few more reload intervals: the broken pair is re-read and refused every time.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let served = served_certificate(server.listen, pki.ca_pem())
        .await
        .unwrap_or_else(|e| panic!("handshake during a broken rotation: {e}\n{}", server.log()));
    assert!(
        served == der_of(&leaf_a),
        "the old leaf stays in service while the new pair is broken\n{}",
        server.log()
    );
    let client = https_client(pki.ca_pem(), "h2");
    let answer = server
        .review(&client, &exempt_review("rotation-broken"), "10s")
        .await;
    assert!(answer.allowed(), "{}", answer.json);

    // The real rotation: b with its own key.
    write_version("..2026_b", &leaf_b.cert_pem, &leaf_b.key_pem);
    swap_data_to("..2026_b", "..2026_broken");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match served_certificate(server.listen, pki.ca_pem()).await {
            Ok(der) if der == der_of(&leaf_b) => break,
            Ok(der) => assert!(
                der == der_of(&leaf_a),
                "neither the old nor the new leaf is served\n{}",
                server.log()
            ),
            Err(e) => panic!("handshake during rotation: {e}\n{}", server.log()),
        }
        assert!(
            Instant::now() < deadline,
            "the new leaf was not served within 5 s of the ..data swap\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        server.is_running() && server.pid() == pid,
        "rotated without a restart\n{}",
        server.log()
    );
    assert!(
        server.log().contains("serving certificate reloaded"),
        "{}",
        server.log()
    );
    // A new client verifying the new leaf against the CA gets reviews answered.
    let client = https_client(pki.ca_pem(), "http/1.1");
    let answer = server
        .review(&client, &exempt_review("rotation-done"), "10s")
        .await;
    assert!(answer.allowed(), "{}", answer.json);
    assert_eq!(answer.response()["uid"], "rotation-done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_reviews_in_flight_loses_none() {
    const REVIEWS: usize = 10;
    const MANIFEST_DELAY: Duration = Duration::from_millis(1500);
    const DRAIN: Duration = Duration::from_secs(10);

    support::init();
    let pki = TestPki::new();
    let registry = registry_with_app(&pki).await;
    let proxy = FaultProxy::for_registry(&registry).await;
    proxy.set_fault_for("/manifests/", Fault::Delay(MANIFEST_DELAY));
    let proxy_host = proxy.host();
    let mut server = Server::start(
        pki.cert_pem(),
        pki.key_pem(),
        &["--insecure-registry", &proxy_host, "--drain-timeout", "10"],
    )
    .await;
    let h2 = https_client(pki.ca_pem(), "h2");
    let h1 = https_client(pki.ca_pem(), "http/1.1");

    // Open the connections first (exempt pods: no registry), so the reviews below are
    // on established connections when SIGTERM arrives rather than in the accept backlog.
    let warm = futures::future::join_all((0..REVIEWS).map(|i| {
        let client = if i % 2 == 0 { &h2 } else { &h1 };
        let server = &server;
        async move {
            server
                .review(client, &exempt_review(&format!("warm-{i}")), "10s")
                .await
        }
    }))
    .await;
    assert!(warm.iter().all(Reviewed::allowed));

    let image = format!("{proxy_host}/team/app:1.0");
    let mut in_flight = Vec::new();
    for i in 0..REVIEWS {
        let client = if i % 2 == 0 { h2.clone() } else { h1.clone() };
        let uid = format!("drain-{i:02}");
        let body = review(&uid, &image).to_string().into_bytes();
        let url = server.validate_url("10s");
        in_flight.push(tokio::spawn(async move {
            let started = Instant::now();
            let resp = client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await;
            let answer = match resp {
                Ok(resp) => {
                    let status = resp.status();
                    let version = resp.version();
                    let content_type = resp
                        .headers()
                        .get(reqwest::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    resp.text().await.map(|body| Answer {
                        status,
                        version,
                        content_type,
                        body,
                    })
                }
                Err(e) => Err(e),
            };
            (uid, answer, started.elapsed())
        }));
    }

    // The reviews have reached the registry (through the delaying proxy)…
    let deadline = Instant::now() + Duration::from_secs(5);
    while !proxy
        .requests()
        .iter()
        .any(|r| r.path.contains("/manifests/"))
    {
        assert!(
            Instant::now() < deadline,
            "no manifest request reached the proxy\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // … and are well inside their 1.5 s delay when SIGTERM arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.sigterm();
    let terminated = Instant::now();

    // New connections are refused while the in-flight reviews drain.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match tokio::time::timeout(
            Duration::from_secs(1),
            tokio::net::TcpStream::connect(server.listen),
        )
        .await
        {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            // Caught in the backlog of the listener being closed: reset, try again.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Ok(Err(e)) => panic!("unexpected connect error {e}\n{}", server.log()),
            Ok(Ok(_)) | Err(_) => {}
        }
        assert!(
            Instant::now() < deadline,
            "the HTTPS port still accepts connections 2 s after SIGTERM\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Readiness is withdrawn during the drain (the ops port outlives it).
    let readyz = plain_client().get(server.ops_url("/readyz")).send().await;
    let drained_early = in_flight.iter().all(tokio::task::JoinHandle::is_finished);
    if !drained_early {
        let readyz =
            readyz.unwrap_or_else(|e| panic!("/readyz during drain: {e}\n{}", server.log()));
        assert_eq!(
            readyz.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "/readyz while draining\n{}",
            server.log()
        );
    }

    // Every in-flight review gets its complete answer.
    let mut h2_seen = 0;
    for task in in_flight {
        let (uid, answer, elapsed) = tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .unwrap_or_else(|_| panic!("a review did not finish\n{}", server.log()))
            .expect("review task panicked");
        let answer = answer.unwrap_or_else(|e| {
            panic!(
                "review {uid} lost during shutdown after {elapsed:?}: {}\n{}",
                chain(&e),
                server.log()
            )
        });
        let reviewed = server.expect_review(answer, elapsed);
        assert_eq!(
            reviewed.response()["uid"],
            uid.as_str(),
            "{}",
            reviewed.json
        );
        assert!(reviewed.allowed(), "{}", reviewed.json);
        assert!(
            reviewed.warnings().is_empty(),
            "the image is pullable, not indeterminate: {}\n{}",
            reviewed.json,
            server.log()
        );
        assert!(
            reviewed.elapsed >= MANIFEST_DELAY - Duration::from_millis(100),
            "review {uid} answered in {:?}: it was not in flight",
            reviewed.elapsed
        );
        if reviewed.version == Version::HTTP_2 {
            h2_seen += 1;
        }
    }
    assert_eq!(h2_seen, REVIEWS / 2, "half the reviews went over HTTP/2");

    let status = server
        .wait_exit(DRAIN + Duration::from_secs(2))
        .await
        .unwrap_or_else(|| panic!("still running after the drain timeout\n{}", server.log()));
    let took = terminated.elapsed();
    assert!(
        status.success(),
        "exit status {status} after SIGTERM\n{}",
        server.log()
    );
    assert!(
        took < DRAIN,
        "exited {took:?} after SIGTERM, not within the drain timeout\n{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_registry_is_answered_before_the_apiservers_timeout() {
    const APISERVER_TIMEOUT: Duration = Duration::from_secs(2);

    support::init();
    let pki = TestPki::new();
    let registry = registry_with_app(&pki).await;
    let proxy = FaultProxy::for_registry(&registry).await;
    proxy.set_fault_for("/manifests/", Fault::Hang);
    let proxy_host = proxy.host();
    let image = format!("{proxy_host}/team/app:1.0");

    for on_error in ["allow", "deny"] {
        proxy.reset_counters();
        let server = Server::start(
            pki.cert_pem(),
            pki.key_pem(),
            &[
                "--insecure-registry",
                &proxy_host,
                "--on-registry-error",
                on_error,
            ],
        )
        .await;
        let client = https_client(pki.ca_pem(), "h2");
        // The apiserver keeps its connection open: measure the review, not the handshake.
        let warm = server.review(&client, &exempt_review("warm"), "10s").await;
        assert!(warm.allowed());

        let uid = format!("hang-{on_error}");
        let answer = server.review(&client, &review(&uid, &image), "2s").await;
        assert!(
            answer.elapsed < APISERVER_TIMEOUT,
            "answered in {:?}, after the apiserver gave up (--on-registry-error {on_error})\n{}",
            answer.elapsed,
            server.log()
        );
        assert!(
            proxy
                .requests()
                .iter()
                .any(|r| r.path.contains("/manifests/")),
            "the registry was asked (and hung)"
        );
        assert_eq!(answer.response()["uid"], uid.as_str());
        match on_error {
            "allow" => {
                assert!(answer.allowed(), "{}\n{}", answer.json, server.log());
                let warnings = answer.warnings();
                assert!(
                    warnings
                        .iter()
                        .any(|w| w.contains(r#"container "app""#) && w.contains("timeout")),
                    "a timeout warning for the container: {warnings:?}"
                );
            }
            _ => {
                assert!(!answer.allowed(), "{}\n{}", answer.json, server.log());
                assert_eq!(answer.response()["status"]["code"], 403, "{}", answer.json);
                let message = answer.message();
                assert!(
                    message.contains(r#"container "app""#) && message.contains(&proxy_host),
                    "the denial names the container and registry: {message}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_bodies_get_400_and_oversized_bodies_are_refused() {
    support::init();
    let pki = TestPki::new();
    let server = Server::start(pki.cert_pem(), pki.key_pem(), &[]).await;

    for alpn in ["h2", "http/1.1"] {
        let client = https_client(pki.ca_pem(), alpn);

        let garbage = server
            .post(&client, b"{ this is not an AdmissionReview".to_vec(), "10s")
            .await
            .unwrap_or_else(|e| {
                panic!("POST garbage over {alpn}: {}\n{}", chain(&e), server.log())
            });
        assert_eq!(
            garbage.status,
            StatusCode::BAD_REQUEST,
            "{}\n{}",
            garbage.body,
            server.log()
        );
        let reason = garbage.body.trim();
        assert!(
            reason.starts_with("pullgate:") && reason.contains("AdmissionReview"),
            "a 400 says why: {reason:?}"
        );
        // A 400 leaves the connection usable.
        let uid = format!("after-400-{alpn}");
        let answer = server.review(&client, &exempt_review(&uid), "10s").await;
        assert_eq!(answer.response()["uid"], uid.as_str());

        // 9 MiB: over the 8 MiB limit.
        let oversized = vec![b' '; 9 * 1024 * 1024];
        let refused = server
            .post(&client, oversized, "10s")
            .await
            .unwrap_or_else(|e| panic!("POST 9 MiB over {alpn}: {}\n{}", chain(&e), server.log()));
        assert_eq!(
            refused.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{}\n{}",
            refused.body,
            server.log()
        );

        // Still serving. Over HTTP/2 the refused stream leaves the connection usable.
        // Over HTTP/1.1 the server closes the connection after a 413 (the rest of the body
        // is never read) without saying `Connection: close`, so a client reusing it fails
        // with "connection closed before message completed"; see the report. Use a new
        // connection there.
        let client = match alpn {
            "h2" => client,
            _ => https_client(pki.ca_pem(), alpn),
        };
        let uid = format!("after-413-{alpn}");
        let answer = server.review(&client, &exempt_review(&uid), "10s").await;
        assert!(answer.allowed(), "{}", answer.json);
        assert_eq!(answer.response()["uid"], uid.as_str());
    }

    // An UPDATE-sized review (object + oldObject, ~6 MiB) is under the limit and answered.
    let padding = "x".repeat(3 * 1024 * 1024);
    let mut object = pod("registry.invalid/never/pulled:1", Some("Never"));
    object["metadata"]["annotations"] = json!({ "big": padding });
    let mut big = review_of("big-update", object.clone());
    big["request"]["operation"] = json!("UPDATE");
    big["request"]["oldObject"] = object;
    let client = https_client(pki.ca_pem(), "h2");
    let answer = server.review(&client, &big, "10s").await;
    assert!(answer.allowed(), "{}", answer.json);
    assert_eq!(answer.response()["uid"], "big-update");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_endpoints() {
    support::init();
    let pki = TestPki::new();
    let registry = registry_with_app(&pki).await;
    let ca = pki.ca_pem().to_str().expect("UTF-8 temp path");
    let server = Server::start(pki.cert_pem(), pki.key_pem(), &["--registry-ca", ca]).await;
    let ops = plain_client();

    for path in ["/healthz", "/readyz"] {
        let resp = ops
            .get(server.ops_url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {}\n{}", chain(&e), server.log()));
        assert_eq!(resp.status(), StatusCode::OK, "{path}\n{}", server.log());
        assert_eq!(resp.text().await.expect("body").trim(), "ok", "{path}");
    }

    let client = https_client(pki.ca_pem(), "h2");
    let image = format!("{}/team/app:1.0", registry.host());
    let answer = server
        .review(&client, &review("metrics", &image), "10s")
        .await;
    assert!(answer.allowed(), "{}", answer.json);

    let resp = ops
        .get(server.ops_url("/metrics"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET /metrics: {}\n{}", chain(&e), server.log()));
    assert_eq!(resp.status(), StatusCode::OK);
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = resp.text().await.expect("metrics body");
    let sample = |name: &str, needles: &[&str]| {
        text.lines()
            .any(|l| l.starts_with(&format!("{name}{{")) && needles.iter().all(|n| l.contains(n)))
    };
    assert!(
        sample(
            "pullgate_reviews_total",
            &[
                r#"kind="Pod""#,
                r#"operation="CREATE""#,
                r#"decision="allowed""#
            ]
        ),
        "no pullgate_reviews_total sample for the review:\n{text}"
    );
    assert!(
        sample("pullgate_registry_requests_total", &[registry.host()]),
        "no pullgate_registry_requests_total sample for {}:\n{text}",
        registry.host()
    );
    assert!(
        sample("pullgate_cache_lookups_total", &[r#"result="miss""#]),
        "no cache lookup was counted:\n{text}"
    );
    assert!(
        sample(
            "pullgate_probe_duration_seconds_count",
            &[r#"verdict="pullable""#]
        ),
        "no probe latency was observed:\n{text}"
    );
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics ends with # EOF"
    );
}
