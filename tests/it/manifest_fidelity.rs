//! What the pull really fetches, against a real `docker-registry` holding odd content a
//! real cluster meets: OCI artifacts pushed next to images (Helm charts, signatures,
//! empty-config artifacts, WebAssembly), nested indexes, entries without `os` or without
//! a platform, a child manifest or a layer lost by garbage collection, and a config
//! whose `diff_ids` do not match the layers. Each verdict mirrors what containerd's pull
//! does with that content (1.6.25+/1.7.7+/2.x local pull path).

use std::time::Duration;

use pullgate::cache::{CacheConfig, VerdictCache};
use pullgate::checker::{Checker, ImageSpec};
use pullgate::keyring::Keyring;
use pullgate::platform::Platform;
use pullgate::registry::{ImageUse, Registry as Client, RegistryConfig};
use pullgate::verdict::{Finding, Verdict};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::support::{
    self, PushAuth, PushTarget, Registry, RegistryOpts, push_blob, push_manifest_raw,
};
use support::push::{OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST};

const HELM_CONFIG: &str = "application/vnd.cncf.helm.config.v1+json";
const HELM_CHART: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
const COSIGN_LAYER: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
const WASM_LAYER: &str = "application/vnd.wasm.content.layer.v1+wasm";

/// A plain-HTTP registry and a checker for it, with `--verify-blobs` as given.
struct Env {
    registry: Registry,
    target: PushTarget,
}

impl Env {
    async fn start() -> Self {
        support::init();
        let registry = Registry::start(RegistryOpts::plain()).await;
        let target = registry.push_target(PushAuth::None);
        Self { registry, target }
    }

    fn checker(&self, verify_blobs: bool) -> Checker {
        let client = Client::new(RegistryConfig {
            insecure_registries: vec![self.registry.host().to_string()],
            verify_blobs,
            ..RegistryConfig::default()
        })
        .expect("registry client");
        Checker::new(
            std::sync::Arc::new(client),
            VerdictCache::new(CacheConfig::default()),
        )
    }

    fn image(&self, rest: &str) -> String {
        format!("{}/{rest}", self.registry.host())
    }

    async fn check(&self, rest: &str, platforms: &[&str], image_use: ImageUse) -> Finding {
        self.check_with(&self.checker(true), rest, platforms, image_use)
            .await
    }

    async fn check_with(
        &self,
        checker: &Checker,
        rest: &str,
        platforms: &[&str],
        image_use: ImageUse,
    ) -> Finding {
        let platforms: Vec<Platform> = platforms
            .iter()
            .map(|p| p.parse().expect("platform"))
            .collect();
        let mut spec = ImageSpec::new(Some("app"), &self.image(rest));
        spec.image_use = image_use;
        checker
            .check(
                &[spec],
                &Keyring::new(),
                &platforms,
                Instant::now() + Duration::from_secs(10),
            )
            .await
            .pop()
            .expect("one finding")
    }

    /// Upload `bytes` and describe them as `media_type`.
    async fn blob(&self, repo: &str, media_type: &str, bytes: Vec<u8>) -> Value {
        let size = bytes.len();
        let digest = push_blob(&self.target, repo, bytes).await;
        json!({"mediaType": media_type, "digest": digest, "size": size})
    }

    /// An OCI image manifest over `config` and `layers`, pushed under `reference`.
    async fn manifest(
        &self,
        repo: &str,
        reference: &str,
        config: Value,
        layers: Vec<Value>,
        artifact_type: Option<&str>,
    ) -> (String, Value) {
        let mut m = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config,
            "layers": layers,
        });
        if let Some(t) = artifact_type {
            m["artifactType"] = json!(t);
        }
        let body = m.to_string().into_bytes();
        let size = body.len();
        let digest = push_manifest_raw(&self.target, repo, reference, OCI_MANIFEST, body).await;
        let descriptor = json!({"mediaType": OCI_MANIFEST, "digest": digest, "size": size});
        (digest, descriptor)
    }

    /// A container image for `arch` (an image config whose diff_ids match its one layer),
    /// pushed by digest; its index descriptor.
    async fn image_for(&self, repo: &str, os: &str, arch: &str) -> Value {
        let layer = support::random_bytes(64);
        let layer_desc = self.blob(repo, OCI_LAYER, layer).await;
        let config = json!({
            "os": os,
            "architecture": arch,
            "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
            "config": {"Labels": {"nonce": support::hex(&support::random_bytes(8))}},
        });
        let config = self
            .blob(repo, OCI_CONFIG, config.to_string().into_bytes())
            .await;
        let (digest, descriptor) = self
            .manifest(repo, "_", config, vec![layer_desc], None)
            .await;
        // `_` was only a tag for the push; keep the manifest reachable by digest.
        let _ = digest;
        descriptor
    }

    async fn index(&self, repo: &str, tag: &str, entries: Vec<Value>) -> String {
        let body = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
            .to_string()
            .into_bytes();
        push_manifest_raw(&self.target, repo, tag, OCI_INDEX, body).await
    }

    async fn delete(&self, repo: &str, what: &str, digest: &str) {
        let url = format!("{}/v2/{repo}/{what}/{digest}", self.registry.base_url());
        let status = self
            .registry
            .client()
            .delete(&url)
            .send()
            .await
            .expect("DELETE")
            .status();
        assert_eq!(status.as_u16(), 202, "DELETE {url}");
    }
}

fn assert_verdict(f: &Finding, verdict: Verdict, says: &[&str]) {
    assert_eq!(f.verdict, verdict, "{}", f.message);
    for s in says {
        assert!(f.message.contains(s), "{:?} should say {s:?}", f.message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_pushed_as_images_are_not_an_image_but_mount_as_volumes() {
    let env = Env::start().await;
    // A Helm chart (`helm push`): Helm config, one chart layer.
    let chart = env
        .blob("charts/web", HELM_CHART, support::random_bytes(40))
        .await;
    let config = env
        .blob(
            "charts/web",
            HELM_CONFIG,
            br#"{"name":"web","version":"1.2.3"}"#.to_vec(),
        )
        .await;
    env.manifest("charts/web", "1.2.3", config, vec![chart], None)
        .await;
    // A cosign signature: an image config with one diff_id, a simplesigning layer.
    let payload = env
        .blob("team/app", COSIGN_LAYER, b"{\"critical\":{}}".to_vec())
        .await;
    let config = json!({"architecture": "", "os": "", "rootfs": {"type": "layers", "diff_ids": [payload["digest"]]}});
    let config = env
        .blob("team/app", OCI_CONFIG, config.to_string().into_bytes())
        .await;
    env.manifest("team/app", "sha256-abc.sig", config, vec![payload], None)
        .await;
    // An OCI 1.1 artifact: artifactType, the empty config, an opaque layer.
    let sbom = env
        .blob("team/sbom", "application/spdx+json", b"{}".to_vec())
        .await;
    let empty = env.blob("team/sbom", EMPTY_CONFIG, b"{}".to_vec()).await;
    env.manifest(
        "team/sbom",
        "v1",
        empty,
        vec![sbom],
        Some("application/spdx+json"),
    )
    .await;

    let helm = env
        .check("charts/web:1.2.3", &["linux/amd64"], ImageUse::Container)
        .await;
    assert_verdict(&helm, Verdict::NotAnImage, &["Helm chart"]);
    let sig = env
        .check(
            "team/app:sha256-abc.sig",
            &["linux/amd64"],
            ImageUse::Container,
        )
        .await;
    assert_verdict(&sig, Verdict::NotAnImage, &["cosign signature"]);
    let artifact = env
        .check("team/sbom:v1", &["linux/amd64"], ImageUse::Container)
        .await;
    assert_verdict(&artifact, Verdict::NotAnImage, &["application/spdx+json"]);
    // An image volume mounts an artifact's content: that pulls.
    let volume = env
        .check("team/sbom:v1", &["linux/amd64"], ImageUse::Volume)
        .await;
    assert_verdict(&volume, Verdict::Pullable, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webassembly_pulls_and_an_unknown_config_over_real_layers_does_not() {
    let env = Env::start().await;
    let module = env
        .blob("wasm/app", WASM_LAYER, b"\0asm\x01\0\0\0".to_vec())
        .await;
    let config = json!({"architecture": "wasm", "os": "wasip1"});
    let config = env
        .blob("wasm/app", WASM_CONFIG, config.to_string().into_bytes())
        .await;
    env.manifest("wasm/app", "v1", config, vec![module], None)
        .await;
    let wasm = env
        .check("wasm/app:v1", &["linux/amd64"], ImageUse::Container)
        .await;
    assert_verdict(&wasm, Verdict::Pullable, &[]);

    let layer = env
        .blob("odd/app", OCI_LAYER, support::random_bytes(32))
        .await;
    let config = env
        .blob(
            "odd/app",
            "application/vnd.example.config.v1+json",
            b"{}".to_vec(),
        )
        .await;
    env.manifest("odd/app", "v1", config, vec![layer], None)
        .await;
    let odd = env
        .check("odd/app:v1", &["linux/amd64"], ImageUse::Container)
        .await;
    assert_verdict(
        &odd,
        Verdict::NotAnImage,
        &["application/vnd.example.config.v1+json", "does not unpack"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_whose_diff_ids_do_not_match_the_layers_is_not_an_image() {
    let env = Env::start().await;
    let layer = env
        .blob("team/broken", OCI_LAYER, support::random_bytes(32))
        .await;
    let config = json!({
        "os": "linux", "architecture": "amd64",
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"], layer["digest"]]},
    });
    let config = env
        .blob("team/broken", OCI_CONFIG, config.to_string().into_bytes())
        .await;
    env.manifest("team/broken", "v1", config, vec![layer], None)
        .await;
    let f = env
        .check("team/broken:v1", &["linux/amd64"], ImageUse::Container)
        .await;
    assert_verdict(&f, Verdict::NotAnImage, &["2 diff_ids", "1 layers"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_child_containerd_selects_is_followed_through_nested_indexes_and_odd_platforms() {
    let env = Env::start().await;
    let amd64 = env.image_for("team/nested", "linux", "amd64").await;
    let arm64 = env.image_for("team/nested", "linux", "arm64").await;

    // index → index → amd64 image.
    let mut inner = json!({"mediaType": OCI_INDEX});
    let inner_body = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        with_platform(&amd64, json!({"os": "linux", "architecture": "amd64"})),
    ]})
    .to_string()
    .into_bytes();
    inner["size"] = json!(inner_body.len());
    inner["digest"] =
        json!(push_manifest_raw(&env.target, "team/nested", "inner", OCI_INDEX, inner_body).await);
    inner["platform"] = json!({"os": "linux", "architecture": "amd64"});
    env.index("team/nested", "v1", vec![inner]).await;
    let nested = env
        .check("team/nested:v1", &["linux/amd64"], ImageUse::Container)
        .await;
    assert_verdict(&nested, Verdict::Pullable, &[]);

    // An entry without `os` is for the node's own OS; `x86_64` is amd64.
    env.index(
        "team/nested",
        "no-os",
        vec![with_platform(&amd64, json!({"architecture": "x86_64"}))],
    )
    .await;
    let no_os = env
        .check("team/nested:no-os", &["linux/amd64"], ImageUse::Container)
        .await;
    assert_verdict(&no_os, Verdict::Pullable, &[]);

    // An entry without any platform is judged by its config: an arm64 image does not run
    // on amd64 nodes, an amd64 one does.
    env.index("team/nested", "platformless-arm", vec![arm64.clone()])
        .await;
    let wrong = env
        .check(
            "team/nested:platformless-arm",
            &["linux/amd64"],
            ImageUse::Container,
        )
        .await;
    assert_eq!(
        wrong.verdict,
        Verdict::NoMatchingPlatform,
        "{}",
        wrong.message
    );
    env.index("team/nested", "platformless-amd", vec![amd64.clone()])
        .await;
    let right = env
        .check(
            "team/nested:platformless-amd",
            &["linux/amd64"],
            ImageUse::Container,
        )
        .await;
    assert_verdict(&right, Verdict::Pullable, &[]);

    // A pod that may land on amd64 or arm64 nodes, with an amd64-only image: admitted with
    // a note naming the platform that would fail.
    env.index(
        "team/nested",
        "amd-only",
        vec![with_platform(
            &amd64,
            json!({"os": "linux", "architecture": "amd64"}),
        )],
    )
    .await;
    let partial = env
        .check(
            "team/nested:amd-only",
            &["linux/amd64", "linux/arm64"],
            ImageUse::Container,
        )
        .await;
    assert_eq!(partial.verdict, Verdict::Pullable, "{}", partial.message);
    let note = partial
        .note
        .expect("a note for the platform that lacks a manifest");
    assert!(note.contains("linux/arm64"), "{note}");
    let none = env
        .check(
            "team/nested:amd-only",
            &["linux/arm64"],
            ImageUse::Container,
        )
        .await;
    assert_verdict(
        &none,
        Verdict::NoMatchingPlatform,
        &["linux/arm64", "linux/amd64"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_manifest_or_a_layer_lost_by_the_registry_is_not_found_naming_its_digest() {
    let env = Env::start().await;
    let amd64 = env.image_for("team/gc", "linux", "amd64").await;
    let arm64 = env.image_for("team/gc", "linux", "arm64").await;
    env.index(
        "team/gc",
        "v1",
        vec![
            with_platform(&amd64, json!({"os": "linux", "architecture": "amd64"})),
            with_platform(&arm64, json!({"os": "linux", "architecture": "arm64"})),
        ],
    )
    .await;
    // The arm64 child goes: amd64 nodes never fetch it.
    let arm64_digest = arm64["digest"].as_str().expect("digest").to_string();
    env.delete("team/gc", "manifests", &arm64_digest).await;
    let fine = env
        .check("team/gc:v1", &["linux/amd64"], ImageUse::Container)
        .await;
    assert_verdict(&fine, Verdict::Pullable, &[]);
    let missing = env
        .check("team/gc:v1", &["linux/arm64"], ImageUse::Container)
        .await;
    assert_verdict(&missing, Verdict::NotFound, &[&arm64_digest]);

    // A layer lost from a single-platform image: found with --verify-blobs (the default),
    // not without.
    let layer = env
        .blob("team/lost", OCI_LAYER, support::random_bytes(48))
        .await;
    let config = json!({"os": "linux", "architecture": "amd64", "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}});
    let config = env
        .blob("team/lost", OCI_CONFIG, config.to_string().into_bytes())
        .await;
    env.manifest("team/lost", "v1", config, vec![layer.clone()], None)
        .await;
    let layer_digest = layer["digest"].as_str().expect("digest").to_string();
    env.delete("team/lost", "blobs", &layer_digest).await;
    let lost = env
        .check("team/lost:v1", &["linux/amd64"], ImageUse::Container)
        .await;
    assert_verdict(&lost, Verdict::NotFound, &[&layer_digest]);
    let unchecked = env
        .check_with(
            &env.checker(false),
            "team/lost:v1",
            &["linux/amd64"],
            ImageUse::Container,
        )
        .await;
    assert_verdict(&unchecked, Verdict::Pullable, &[]);
}

fn with_platform(descriptor: &Value, platform: Value) -> Value {
    let mut d = descriptor.clone();
    d["platform"] = platform;
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_redirected_to_storage_exists_without_following_the_redirect() {
    use crate::support::{Fault, FaultProxy};
    let env = Env::start().await;
    support::push_oci_manifest(&env.target, "team/app", "1.0").await;
    // The registry answers blob requests with a redirect to its storage (as registries
    // on S3, GCS or a CDN do); storage URLs signed for GET may refuse a HEAD.
    let storage = FaultProxy::for_registry(&env.registry).await;
    let front = FaultProxy::for_registry(&env.registry).await;
    front.set_fault_for("/blobs/", Fault::redirect_to(&storage.base_url()));
    let client = Client::new(RegistryConfig {
        insecure_registries: vec![front.host(), storage.host()],
        ..RegistryConfig::default()
    })
    .expect("client");
    let checker = Checker::new(
        std::sync::Arc::new(client),
        VerdictCache::new(CacheConfig::default()),
    );
    let mut findings = checker
        .check(
            &[ImageSpec::new(
                Some("app"),
                &format!("{}/team/app:1.0", front.host()),
            )],
            &Keyring::new(),
            &[Platform::linux_amd64()],
            Instant::now() + Duration::from_secs(10),
        )
        .await;
    let f = findings.pop().expect("one finding");
    assert_eq!(f.verdict, Verdict::Pullable, "{}", f.message);
    // The config was read through the redirect; the layer's HEAD was answered by it.
    let at_storage: Vec<_> = storage.requests().into_iter().map(|r| r.method).collect();
    assert_eq!(
        at_storage,
        ["GET"],
        "only the config GET follows the redirect"
    );
    assert_eq!(
        front
            .requests()
            .iter()
            .filter(|r| r.method == "HEAD")
            .count(),
        1
    );
}
