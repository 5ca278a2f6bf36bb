//! Egress proxies (`HTTPS_PROXY`, `NO_PROXY`), as containerd uses them, through a real
//! CONNECT proxy in front of a real TLS `docker-registry` with Basic auth. The registry is
//! named `registry.test`, a name only the proxy can resolve (as in clusters whose pods
//! cannot resolve public names). The SSRF guard judges the target before anything
//! reaches the proxy, and registry credentials travel only inside the TLS tunnel.

use std::sync::Arc;
use std::time::Duration;

use pullgate::cache::{CacheConfig, VerdictCache};
use pullgate::checker::Checker;
use pullgate::keyring::Keyring;
use pullgate::registry::guard::AddressPolicy;
use pullgate::registry::proxy::ProxyRules;
use pullgate::registry::{Registry as Client, RegistryConfig};
use pullgate::verdict::Verdict;

use crate::support::connect::ConnectProxy;
use crate::support::{self, PushAuth, Registry, RegistryAuth, RegistryOpts, TestPki};
use support::engine::{check_one, keyring};

const SECONDS_10: Duration = Duration::from_secs(10);

struct Env {
    pki: TestPki,
    registry: Registry,
    proxy: ConnectProxy,
}

impl Env {
    async fn start() -> Self {
        support::init();
        let pki = TestPki::new();
        let registry = Registry::start(
            RegistryOpts::tls(&pki).with_auth(RegistryAuth::htpasswd(&[("alice", "s3cret")])),
        )
        .await;
        support::push_oci_manifest(
            &registry.push_target(PushAuth::basic("alice", "s3cret")),
            "team/app",
            "1.0",
        )
        .await;
        let proxy = ConnectProxy::start().await;
        let port = registry
            .host()
            .rsplit_once(':')
            .expect("port")
            .1
            .to_string();
        proxy.route(
            &format!("registry.test:{port}"),
            registry.host().parse().expect("socket address"),
        );
        Self {
            pki,
            registry,
            proxy,
        }
    }

    /// The registry under the name only the proxy resolves.
    fn host(&self) -> String {
        let port = self.registry.host().rsplit_once(':').expect("port").1;
        format!("registry.test:{port}")
    }

    fn checker(&self, no_proxy: &str, allow: &[&str], deny: &[&str]) -> Checker {
        let proxies = ProxyRules::new(
            None,
            Some((
                "HTTPS_PROXY",
                self.proxy.url().replace("http://", "http://corp:proxy-pw@"),
            )),
            no_proxy.to_string(),
            false,
        )
        .expect("proxy settings");
        let client = Client::new(RegistryConfig {
            ca_bundles: vec![self.pki.ca_pem().to_path_buf()],
            proxies,
            address_policy: AddressPolicy::new(
                deny.iter().map(|c| c.parse().expect("cidr")).collect(),
                allow.iter().map(|s| s.to_string()).collect(),
            ),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            ..RegistryConfig::default()
        })
        .expect("client");
        Checker::new(Arc::new(client), VerdictCache::new(CacheConfig::default()))
    }

    fn creds(&self) -> Keyring {
        keyring(&[("regcred", &self.host(), "alice", "s3cret")])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registries_are_reached_through_the_proxy_with_credentials_inside_the_tunnel() {
    let env = Env::start().await;
    let c = env.checker("", &["registry.test"], &[]);
    let f = check_one(
        &c,
        &format!("{}/team/app:1.0", env.host()),
        &env.creds(),
        SECONDS_10,
    )
    .await;
    assert_eq!(f.verdict, Verdict::Pullable, "{}", f.message);
    let seen = env.proxy.requests();
    assert!(!seen.is_empty());
    for r in &seen {
        assert_eq!(r.line, format!("CONNECT {} HTTP/1.1", env.host()), "{r:?}");
        assert!(
            r.header("authorization").is_none(),
            "registry credentials reached the proxy: {r:?}"
        );
        // The proxy's own credentials, from the proxy URL, are for the proxy.
        assert!(r.header("proxy-authorization").is_some(), "{r:?}");
    }
    // Wrong registry credentials are refused by the registry, not the proxy.
    let wrong = keyring(&[("regcred", &env.host(), "alice", "nope")]);
    let f = check_one(
        &c,
        &format!("{}/team/app:1.0", env.host()),
        &wrong,
        SECONDS_10,
    )
    .await;
    assert_eq!(f.verdict, Verdict::Unauthorized, "{}", f.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ssrf_guard_judges_the_target_before_anything_reaches_the_proxy() {
    let env = Env::start().await;
    let c = env.checker("", &[], &["10.0.0.0/8"]);
    for (image, verdict) in [
        (
            "169.254.169.254/latest/meta-data:1",
            Verdict::BlockedRegistry,
        ),
        ("10.9.9.9:5000/team/app:1", Verdict::BlockedRegistry),
        // A name pullgate cannot resolve cannot be checked: not sent, and not denied.
        (
            &*format!("{}/team/app:1.0", env.host()),
            Verdict::RegistryUnavailable,
        ),
    ] {
        let f = check_one(&c, image, &env.creds(), SECONDS_10).await;
        assert_eq!(f.verdict, verdict, "{image}: {}", f.message);
    }
    assert!(
        env.proxy.requests().is_empty(),
        "{:?}",
        env.proxy.requests()
    );
    let f = check_one(
        &c,
        &format!("{}/team/app:1.0", env.host()),
        &env.creds(),
        SECONDS_10,
    )
    .await;
    assert!(f.message.contains("--allow-registry"), "{}", f.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proxy_hosts_are_contacted_directly() {
    let env = Env::start().await;
    let c = env.checker(".test", &["registry.test"], &[]);
    let f = check_one(
        &c,
        &format!("{}/team/app:1.0", env.host()),
        &env.creds(),
        SECONDS_10,
    )
    .await;
    // Directly, registry.test does not resolve here.
    assert_eq!(f.verdict, Verdict::RegistryUnavailable, "{}", f.message);
    assert!(env.proxy.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pullgate_check_reads_https_proxy_from_its_environment() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("regcred.json");
    std::fs::write(
        &secret,
        support::engine::docker_config_json(&[(&env.host(), "alice", "s3cret")]),
    )
    .expect("write");
    let args: Vec<String> = vec![
        "check".into(),
        "--image".into(),
        format!("{}/team/app:1.0", env.host()),
        "--pull-secret".into(),
        secret.display().to_string(),
        "--registry-ca".into(),
        env.pki.ca_pem().display().to_string(),
        "--allow-registry".into(),
        "registry.test".into(),
        "-o".into(),
        "json".into(),
    ];
    let proxy = env.proxy.url();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_pullgate"))
            .args(&args)
            .env("https_proxy", proxy)
            .env_remove("HTTPS_PROXY")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .output()
            .expect("run pullgate")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("\"pullable\""), "{stdout}");
    assert!(!env.proxy.requests().is_empty());
    // A SOCKS proxy is refused at start-up, not silently ignored.
    let bad = tokio::task::spawn_blocking(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_pullgate"))
            .args(["check", "--image", "nginx"])
            .env("HTTPS_PROXY", "socks5://proxy.corp:1080")
            .output()
            .expect("run pullgate")
    })
    .await
    .expect("join");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("socks5"));
}
