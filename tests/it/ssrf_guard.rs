//! The SSRF guard: a Pod spec must not make pullgate contact link-local, cloud-metadata or
//! operator-denied addresses, whether named directly, through DNS or by a redirect.

use crate::support;
use std::sync::Arc;
use std::time::Duration;

use pullgate::cache::{CacheConfig, VerdictCache};
use pullgate::checker::Checker;
use pullgate::keyring::Keyring;
use pullgate::registry::guard::AddressPolicy;
use pullgate::registry::{Registry as Client, RegistryConfig};
use pullgate::verdict::Verdict;
use support::engine::check_one;
use support::{Fault, FaultProxy, PushAuth, Registry, RegistryOpts, push_oci_manifest};

fn guarded(deny: &[&str], allow: &[&str], insecure: &[String]) -> Checker {
    let policy = AddressPolicy::new(
        deny.iter().map(|c| c.parse().expect("cidr")).collect(),
        allow.iter().map(|s| s.to_string()).collect(),
    );
    let client = Client::new(RegistryConfig {
        insecure_registries: insecure.to_vec(),
        address_policy: policy,
        connect_timeout: Duration::from_secs(2),
        ..RegistryConfig::default()
    })
    .expect("client");
    Checker::new(Arc::new(client), VerdictCache::new(CacheConfig::default()))
}

const WITHIN: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_and_link_local_addresses_are_blocked_by_default() {
    support::init();
    let c = guarded(&[], &[], &[]);
    for image in [
        "169.254.169.254/latest/meta-data:1",
        "169.254.170.2:80/creds:1",
        "[fe80::1]:5000/app:1",
        "[fd00:ec2::254]/app:1",
        // IPv4-mapped 169.254.169.254 (distribution only accepts hex IPv6 literals).
        "[::ffff:a9fe:a9fe]:80/app:1",
    ] {
        let f = check_one(&c, image, &Keyring::new(), WITHIN).await;
        assert_eq!(
            f.verdict,
            Verdict::BlockedRegistry,
            "{image}: {}",
            f.message
        );
        assert!(f.message.contains("refused"), "{}", f.message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_ranges_are_checked_on_literal_and_resolved_addresses_without_a_packet() {
    support::init();
    let registry = Registry::start(RegistryOpts::plain()).await;
    push_oci_manifest(&registry.push_target(PushAuth::None), "team/app", "1.0").await;
    let proxy = FaultProxy::for_registry(&registry).await;
    let port = proxy
        .host()
        .rsplit_once(':')
        .map(|(_, p)| p.to_string())
        .expect("port");
    let by_name = format!("localhost:{port}");
    let insecure = vec![proxy.host(), by_name.clone()];

    let c = guarded(&["127.0.0.0/8", "::1/128"], &[], &insecure);
    let literal = check_one(
        &c,
        &format!("{}/team/app:1.0", proxy.host()),
        &Keyring::new(),
        WITHIN,
    )
    .await;
    assert_eq!(
        literal.verdict,
        Verdict::BlockedRegistry,
        "{}",
        literal.message
    );
    let named = check_one(
        &c,
        &format!("{by_name}/team/app:1.0"),
        &Keyring::new(),
        WITHIN,
    )
    .await;
    assert_eq!(named.verdict, Verdict::BlockedRegistry, "{}", named.message);
    assert!(
        named.message.contains("localhost resolves to"),
        "{}",
        named.message
    );
    assert_eq!(
        proxy.total_requests(),
        0,
        "nothing was sent to a blocked registry"
    );

    // An allowed registry is contacted whatever it resolves to.
    let allowed = guarded(&["127.0.0.0/8", "::1/128"], &["localhost"], &insecure);
    let f = check_one(
        &allowed,
        &format!("{by_name}/team/app:1.0"),
        &Keyring::new(),
        WITHIN,
    )
    .await;
    assert_eq!(f.verdict, Verdict::Pullable, "{}", f.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_a_metadata_address_is_blocked() {
    support::init();
    let registry = Registry::start(RegistryOpts::plain()).await;
    push_oci_manifest(&registry.push_target(PushAuth::None), "team/app", "1.0").await;
    let proxy = FaultProxy::for_registry(&registry).await;
    proxy.set_fault_for(
        "/manifests/",
        Fault::redirect_to("http://169.254.169.254{path}"),
    );
    let c = guarded(&[], &[], &[proxy.host()]);
    let f = check_one(
        &c,
        &format!("{}/team/app:1.0", proxy.host()),
        &Keyring::new(),
        WITHIN,
    )
    .await;
    assert_eq!(f.verdict, Verdict::BlockedRegistry, "{}", f.message);
}
