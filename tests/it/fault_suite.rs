//! The fault suite: the real HTTPS server in-process, in front of a registry that hangs, is
//! slow, fails, rate-limits, resets or redirects — under concurrent load. Every review is
//! answered before its deadline with the right decision, reviews for a healthy registry
//! are not slowed, resources stay bounded, verdicts recover, and slow clients cannot
//! exhaust the server.

use crate::support;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pullgate::cache::{CacheConfig, VerdictCache};
use pullgate::checker::Checker;
use pullgate::cluster::ClusterWriters;
use pullgate::metrics::Metrics;
use pullgate::server::{self, ServeOptions, tls::ReloadingCert};
use pullgate::webhook::{Webhook, WebhookConfig};
use serde_json::{Value, json};
use support::engine::registry_client;
use support::{
    AuthRecorder, Fault, FaultProxy, PushAuth, Registry, RegistryOpts, TestPki, push_oci_manifest,
};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::oneshot;

/// The webhook served over TLS on 127.0.0.1, stopped when dropped.
struct Server {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

async fn serve(pki: &TestPki, insecure: &[String], options: ServeOptions) -> Server {
    let checker = Checker::new(
        Arc::new(registry_client(&[pki.ca_pem()], insecure)),
        VerdictCache::new(CacheConfig {
            indeterminate_ttl: Duration::from_millis(500),
            max_retry_after: Duration::from_secs(1),
            ..CacheConfig::default()
        }),
    );
    let webhook = Webhook::new(
        checker,
        ClusterWriters::new().state(false),
        WebhookConfig::default(),
        Arc::new(Metrics::new()),
    );
    let tls = ReloadingCert::load(pki.cert_pem(), pki.key_pem())
        .expect("certificate")
        .server_config()
        .expect("TLS config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("https://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server::serve_tls(
        listener,
        tls,
        server::router(Arc::new(webhook)),
        options,
        async {
            let _ = stopped.await;
        },
    ));
    Server {
        url,
        stop: Some(stop),
        task,
    }
}

fn review(uid: &str, image: &str) -> String {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "default",
            "operation": "CREATE",
            "object": {"kind": "Pod", "metadata": {"name": uid}, "spec": {"containers": [{"name": "app", "image": image}]}},
            "oldObject": null
        }
    })
    .to_string()
}

/// POST a review with `?timeout=`; returns (response, elapsed).
async fn post(
    client: &reqwest::Client,
    url: &str,
    body: String,
    timeout: &str,
) -> (Value, Duration) {
    let started = Instant::now();
    let response = client
        .post(format!("{url}/validate?timeout={timeout}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the server answers");
    let bytes = response.bytes().await.expect("body");
    let value: Value = serde_json::from_slice(&bytes).expect("JSON review");
    (value["response"].clone(), started.elapsed())
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_is_answered_in_time_without_slowing_healthy_registries() {
    support::init();
    let pki = TestPki::new();
    let faulty = Registry::start(RegistryOpts::plain()).await;
    let healthy = Registry::start(RegistryOpts::plain()).await;
    push_oci_manifest(&faulty.push_target(PushAuth::None), "team/app", "1.0").await;
    push_oci_manifest(&healthy.push_target(PushAuth::None), "team/app", "1.0").await;
    let proxy = FaultProxy::for_registry(&faulty).await;
    let sink = AuthRecorder::start().await;
    let server = serve(
        &pki,
        &[proxy.host(), healthy.host().to_string(), sink.host()],
        ServeOptions::default(),
    )
    .await;
    let client = support::http_client(Some(pki.ca_pem()));
    let bad = format!("{}/team/app:1.0", proxy.host());
    let good = format!("{}/team/app:1.0", healthy.host());

    // Warm the healthy verdict, then record the baseline.
    let (warm, _) = post(&client, &server.url, review("warm", &good), "10s").await;
    assert_eq!(warm["allowed"], true);
    let (fds_before, rss_before) = (open_fds(), rss_kib());

    let faults: Vec<(&str, Fault, &str)> = vec![
        ("hang", Fault::Hang, "timeout"),
        ("slow", Fault::Delay(Duration::from_secs(15)), "timeout"),
        ("5xx", Fault::status(500), "registry-unavailable"),
        ("429", Fault::too_many_requests("1"), "rate-limited"),
        ("reset", Fault::Reset, "registry-unavailable"),
    ];
    for (round, (name, fault, expected)) in faults.into_iter().enumerate() {
        proxy.set_fault_for("/manifests/", fault);
        // A new tag each round so nothing is answered from the cache.
        let bad_image = format!("{bad}-r{round}");
        let requests = (0..40).map(|i| {
            let (client, url) = (client.clone(), server.url.clone());
            let image = if i % 2 == 0 {
                bad_image.clone()
            } else {
                good.clone()
            };
            tokio::spawn(async move {
                (
                    i % 2 == 0,
                    post(&client, &url, review(&format!("{name}-{i}"), &image), "2s").await,
                )
            })
        });
        let results = futures::future::join_all(requests).await;
        let mut slowest_good = Duration::ZERO;
        for result in results {
            let (is_bad, (response, took)) = result.expect("task");
            assert!(
                took < Duration::from_secs(2),
                "{name}: answered after {took:?}"
            );
            assert_eq!(
                response["allowed"], true,
                "{name}: indeterminate is allowed by default: {response}"
            );
            if is_bad {
                let warning = response["warnings"][0].as_str().unwrap_or_default();
                assert!(
                    warning.contains(expected),
                    "{name}: expected {expected}: {response}"
                );
            } else {
                assert!(
                    response.get("warnings").is_none(),
                    "{name}: the healthy registry warned: {response}"
                );
                slowest_good = slowest_good.max(took);
            }
        }
        assert!(
            slowest_good < Duration::from_millis(500),
            "{name}: healthy reviews slowed to {slowest_good:?}"
        );
    }

    // A cross-host redirect is followed without credentials; the verdict is the target's
    // (the sink serves the real manifest, whose blobs the registry behind the proxy has).
    let real =
        support::fetch_manifest(&faulty.push_target(PushAuth::None), "team/app", "1.0").await;
    sink.answer_as_manifest(&real.content_type, real.body.clone());
    proxy.set_fault_for(
        "/manifests/",
        Fault::redirect_to(&format!("{}{{path}}", sink.base_url())),
    );
    let (r, _) = post(
        &client,
        &server.url,
        review("redirect", &format!("{}/team/app:redirected", proxy.host())),
        "2s",
    )
    .await;
    assert_eq!(r["allowed"], true);
    assert!(r.get("warnings").is_none(), "{r}");

    // Recovery: once the registry is healthy, verdicts recover within the indeterminate
    // lifetime (500 ms here; a 429's Retry-After of 1 s is its floor).
    proxy.clear_faults();
    let recovered_by = Instant::now() + Duration::from_secs(5);
    let mut recovered = false;
    while Instant::now() < recovered_by {
        let (r, _) = post(
            &client,
            &server.url,
            review("recover", &format!("{}/team/app:1.0", proxy.host())),
            "2s",
        )
        .await;
        if r.get("warnings").is_none() && r["allowed"] == true {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "verdicts did not recover once the registry did");

    let (fds_after, rss_after) = (open_fds(), rss_kib());
    assert!(
        fds_after < fds_before + 64,
        "open files grew from {fds_before} to {fds_after}"
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "resident memory grew from {rss_before} KiB to {rss_after} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_cannot_exhaust_the_server() {
    support::init();
    let pki = TestPki::new();
    let options = ServeOptions {
        max_connections: 8,
        header_read_timeout: Duration::from_secs(1),
        handshake_timeout: Duration::from_secs(1),
        ..ServeOptions::default()
    };
    let server = serve(&pki, &[], options).await;
    let addr = server.url.trim_start_matches("https://").to_string();

    // Idle TCP clients that never start TLS, and TLS clients that send half a request
    // header and then nothing: twice the connection limit.
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect"),
        );
    }
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from(pem_der(
            pki.ca_pem(),
        )))
        .expect("CA");
    let config = Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let slow = tokio::spawn({
        let addr = addr.clone();
        async move {
            let mut held = Vec::new();
            for _ in 0..8 {
                let Ok(tcp) = tokio::net::TcpStream::connect(&addr).await else {
                    continue;
                };
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("name");
                if let Ok(Ok(mut tls)) =
                    tokio::time::timeout(Duration::from_secs(3), connector.connect(name, tcp)).await
                {
                    let _ = tls
                        .write_all(b"POST /validate HTTP/1.1\r\nHost: x\r\n")
                        .await;
                    held.push(tls);
                }
            }
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(held);
        }
    });

    // A real client still gets through, once the timeouts have cut the slow ones off.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = support::http_client(Some(pki.ca_pem()));
    let started = Instant::now();
    let response = tokio::time::timeout(
        Duration::from_secs(8),
        client
            .post(format!("{}/validate", server.url))
            .header("content-type", "application/json")
            .body(review("legit", "Invalid:Ref"))
            .send(),
    )
    .await
    .expect("served before slow clients could exhaust the server")
    .expect("response");
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(8));
    slow.abort();
    drop(idle);
}

fn pem_der(path: &std::path::Path) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject as _;
    rustls_pki_types::CertificateDer::from_pem_file(path)
        .expect("CA PEM")
        .to_vec()
}
