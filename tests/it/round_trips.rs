//! What a cold image costs at the registry, counted at a fault proxy (never timed): the
//! blobs `--verify-blobs` checks go out together, in one round trip after the manifest.

use crate::support;
use std::time::Duration;

use pullgate::keyring::Keyring;
use pullgate::verdict::Verdict;
use support::engine::{check_one, checker};
use support::{
    Fault, FaultProxy, PushAuth, Registry, RegistryOpts, fetch_manifest, push_oci_manifest,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_are_asked_for_while_the_config_is_read_not_after_it() {
    support::init();
    let registry = Registry::start(RegistryOpts::plain()).await;
    let t = registry.push_target(PushAuth::None);
    push_oci_manifest(&t, "team/app", "1.0").await;
    let manifest = fetch_manifest(&t, "team/app", "1.0").await.json();
    let config = manifest["config"]["digest"]
        .as_str()
        .expect("config digest");
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .expect("layer digest");
    let proxy = FaultProxy::for_registry(&registry).await;
    // The config read never ends: a layer asked for only after it would never be asked.
    proxy.set_fault_for(&format!("/blobs/{config}"), Fault::Hang);
    let c = checker(&[], &[proxy.host()]);
    let image = format!("{}/team/app:1.0", proxy.host());
    let f = check_one(&c, &image, &Keyring::new(), Duration::from_secs(2)).await;
    assert_eq!(f.verdict, Verdict::Timeout, "{}", f.message);
    assert_eq!(
        proxy.requests_to("GET", &format!("/v2/team/app/blobs/{config}")),
        1,
        "{:?}",
        proxy.requests()
    );
    assert_eq!(
        proxy.requests_to("HEAD", &format!("/v2/team/app/blobs/{layer}")),
        1,
        "the layer HEAD went out with the config read: {:?}",
        proxy.requests()
    );
    // One manifest request, the config and the layer: nothing else.
    assert_eq!(proxy.total_requests(), 3, "{:?}", proxy.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_layer_is_still_not_found_and_a_good_image_still_pulls() {
    support::init();
    let registry = Registry::start(RegistryOpts::plain()).await;
    let t = registry.push_target(PushAuth::None);
    push_oci_manifest(&t, "team/ok", "1.0").await;
    push_oci_manifest(&t, "team/lost", "1.0").await;
    let lost = fetch_manifest(&t, "team/lost", "1.0").await.json();
    let layer = lost["layers"][0]["digest"].as_str().expect("layer digest");
    let proxy = FaultProxy::for_registry(&registry).await;
    proxy.set_fault_for(&format!("/blobs/{layer}"), Fault::status(404));
    let c = checker(&[], &[proxy.host()]);
    let host = proxy.host();
    let ok = check_one(
        &c,
        &format!("{host}/team/ok:1.0"),
        &Keyring::new(),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(ok.verdict, Verdict::Pullable, "{}", ok.message);
    let f = check_one(
        &c,
        &format!("{host}/team/lost:1.0"),
        &Keyring::new(),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(f.verdict, Verdict::NotFound, "{}", f.message);
    assert!(f.message.contains(layer), "{}", f.message);
}
