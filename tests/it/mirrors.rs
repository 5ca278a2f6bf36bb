//! containerd registry hosts (`hosts.toml` under `--registry-config-path`), against real
//! `docker-registry` processes as upstream and mirror: mirrors are tried in file order
//! before the upstream, the pod's credentials go to every host, a mirror gets containerd's
//! `ns=` query, a host without `resolve` is not asked for tags, and a mirror that is down
//! never turns into a denial.

use std::sync::Arc;
use std::time::Duration;

use pullgate::cache::{CacheConfig, VerdictCache};
use pullgate::checker::Checker;
use pullgate::keyring::Keyring;
use pullgate::registry::hosts::HostsConfig;
use pullgate::registry::{Registry as Client, RegistryConfig};
use pullgate::verdict::{Finding, Verdict};

use crate::support::{
    self, Fault, FaultProxy, PushAuth, Registry, RegistryAuth, RegistryOpts, push_oci_manifest,
};
use support::engine::{check_one, keyring};

const SECONDS_10: Duration = Duration::from_secs(10);

/// An upstream registry and a mirror (behind a fault proxy that records requests), with
/// a hosts.toml for the upstream written by each test.
struct Env {
    upstream: Registry,
    mirror: Registry,
    mirror_proxy: FaultProxy,
    dir: tempfile::TempDir,
}

impl Env {
    async fn start(mirror_auth: Option<(&str, &str)>) -> Self {
        support::init();
        let upstream = Registry::start(RegistryOpts::plain()).await;
        let mut opts = RegistryOpts::plain();
        if let Some((user, pass)) = mirror_auth {
            opts = opts.with_auth(RegistryAuth::htpasswd(&[(user, pass)]));
        }
        let mirror = Registry::start(opts).await;
        let mirror_proxy = FaultProxy::for_registry(&mirror).await;
        Self {
            upstream,
            mirror,
            mirror_proxy,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// containerd's host directory name for the upstream (`host_port_`).
    fn host_dir(&self) -> std::path::PathBuf {
        let (host, port) = self.upstream.host().rsplit_once(':').expect("host:port");
        self.dir.path().join(format!("{host}_{port}_"))
    }

    fn write_hosts(&self, hosts_toml: &str) {
        std::fs::create_dir_all(self.host_dir()).expect("mkdir");
        std::fs::write(self.host_dir().join("hosts.toml"), hosts_toml).expect("write");
    }

    /// `server` is the upstream; the mirror is one `[host]` with `capabilities`.
    fn with_mirror(&self, capabilities: &str) {
        self.write_hosts(&format!(
            "server = \"http://{}\"\n\n[host.\"http://{}\"]\n  capabilities = {capabilities}\n",
            self.upstream.host(),
            self.mirror_proxy.host()
        ));
    }

    fn checker(&self) -> Checker {
        let hosts = HostsConfig::load(&[self.dir.path().to_path_buf()]).expect("hosts.toml");
        let client = Client::new(RegistryConfig {
            hosts,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            ..RegistryConfig::default()
        })
        .expect("client");
        Checker::new(Arc::new(client), VerdictCache::new(CacheConfig::default()))
    }

    fn image(&self, rest: &str) -> String {
        format!("{}/{rest}", self.upstream.host())
    }

    async fn check(&self, rest: &str, creds: &Keyring) -> Finding {
        check_one(&self.checker(), &self.image(rest), creds, SECONDS_10).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirror_is_asked_first_and_the_upstream_last() {
    let env = Env::start(None).await;
    push_oci_manifest(&env.mirror.push_target(PushAuth::None), "team/cached", "1").await;
    push_oci_manifest(
        &env.upstream.push_target(PushAuth::None),
        "team/upstream",
        "1",
    )
    .await;
    env.with_mirror(r#"["pull", "resolve"]"#);

    let cached = env.check("team/cached:1", &Keyring::new()).await;
    assert_eq!(cached.verdict, Verdict::Pullable, "{}", cached.message);
    assert!(
        cached.message.contains(&env.mirror_proxy.host()),
        "says which host answered: {}",
        cached.message
    );
    let upstream = env.check("team/upstream:1", &Keyring::new()).await;
    assert_eq!(upstream.verdict, Verdict::Pullable, "{}", upstream.message);
    let nowhere = env.check("team/nowhere:1", &Keyring::new()).await;
    assert_eq!(nowhere.verdict, Verdict::NotFound, "{}", nowhere.message);
    assert!(
        nowhere.message.contains(&env.mirror_proxy.host())
            && nowhere.message.contains(env.upstream.host()),
        "names every host asked: {}",
        nowhere.message
    );
    // containerd tells a mirror which registry it stands in for.
    let requests = env.mirror_proxy.requests();
    let manifests: Vec<_> = requests
        .iter()
        .filter(|r| r.path.contains("/manifests/"))
        .collect();
    assert!(!manifests.is_empty());
    let ns = format!("ns={}", env.upstream.host().replace(':', "%3A"));
    assert!(
        manifests
            .iter()
            .all(|r| r.query.as_deref() == Some(ns.as_str())),
        "{manifests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_that_is_down_never_turns_into_a_denial() {
    let env = Env::start(None).await;
    env.with_mirror(r#"["pull", "resolve"]"#);
    env.mirror_proxy.set_fault(Fault::status(503));
    // Not on the upstream either: containerd 2.x would say "not found", but the mirror
    // might hold it once it is back.
    let f = env.check("team/private-build:7", &Keyring::new()).await;
    assert!(
        f.verdict.is_indeterminate(),
        "{:?}: {}",
        f.verdict,
        f.message
    );
    assert!(
        f.message.contains(&env.mirror_proxy.host()),
        "{}",
        f.message
    );
    // What the upstream has still pulls.
    push_oci_manifest(&env.upstream.push_target(PushAuth::None), "team/app", "1").await;
    let up = env.check("team/app:1", &Keyring::new()).await;
    assert_eq!(up.verdict, Verdict::Pullable, "{}", up.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_without_resolve_is_not_asked_for_tags_but_serves_digests() {
    let env = Env::start(None).await;
    let digest =
        push_oci_manifest(&env.mirror.push_target(PushAuth::None), "team/cached", "1").await;
    env.with_mirror(r#"["pull"]"#);
    let by_tag = env.check("team/cached:1", &Keyring::new()).await;
    assert_eq!(by_tag.verdict, Verdict::NotFound, "{}", by_tag.message);
    assert_eq!(
        env.mirror_proxy.total_requests(),
        0,
        "no tag resolution on a pull-only host"
    );
    let by_digest = env
        .check(&format!("team/cached@{digest}"), &Keyring::new())
        .await;
    assert_eq!(
        by_digest.verdict,
        Verdict::Pullable,
        "{}",
        by_digest.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pods_credentials_go_to_the_mirror_too() {
    let env = Env::start(Some(("alice", "mirror-pw"))).await;
    push_oci_manifest(
        &env.mirror
            .push_target(PushAuth::basic("alice", "mirror-pw")),
        "team/cached",
        "1",
    )
    .await;
    env.with_mirror(r#"["pull", "resolve"]"#);
    // The secret is keyed to the registry the pod names, not to the mirror.
    let creds = keyring(&[("regcred", env.upstream.host(), "alice", "mirror-pw")]);
    let f = env.check("team/cached:1", &creds).await;
    assert_eq!(f.verdict, Verdict::Pullable, "{}", f.message);
    assert!(env.mirror_proxy.authorized_requests() >= 1);
    // Without it, the mirror refuses and the upstream does not have it.
    let anonymous = env.check("team/cached:1", &Keyring::new()).await;
    assert!(
        anonymous.verdict.is_definitive_failure(),
        "{:?}: {}",
        anonymous.verdict,
        anonymous.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_hosts_toml_stops_pullgate_with_its_path() {
    let env = Env::start(None).await;
    env.write_hosts("[host.\"http://m\"]\ncapabilities = [\"fetch\"]\n");
    let out = tokio::task::spawn_blocking({
        let root = env.dir.path().to_path_buf();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_pullgate"))
                .args(["check", "--image", "nginx", "--registry-config-path"])
                .arg(&root)
                .output()
                .expect("run pullgate")
        }
    })
    .await
    .expect("join");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("hosts.toml") && stderr.contains("unknown capability fetch"),
        "{stderr}"
    );
}

/// `manifests/components/registry-hosts` on the audit overlay, rendered by `kubectl
/// kustomize` as `kubectl apply -k` would.
fn render_with_registry_hosts() -> Vec<serde_json::Value> {
    use serde::Deserialize as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // kustomize refuses absolute paths to other kustomizations: link the tree in.
    std::os::unix::fs::symlink(repo.join("manifests"), dir.path().join("manifests"))
        .expect("symlink");
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [manifests/overlays/audit]\ncomponents: [manifests/components/registry-hosts]\n",
    )
    .expect("kustomization");
    let out = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(dir.path())
        .output()
        .expect("kubectl kustomize");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| serde_json::Value::deserialize(doc).expect("YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn the_registry_hosts_component_mounts_readable_hosts_files_where_the_flag_points() {
    use clap::Parser as _;
    let objects = render_with_registry_hosts();
    let deployment = objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("the Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let args: Vec<String> = pod["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect();
    let cli =
        pullgate::cli::Cli::try_parse_from(std::iter::once("pullgate".to_string()).chain(args))
            .expect("the real CLI accepts every arg");
    let pullgate::cli::Command::Serve(serve) = cli.command else {
        panic!("serve");
    };
    let root = serve
        .engine
        .registry_config_path
        .expect("--registry-config-path is set");
    let mount = pod["containers"][0]["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| m["name"] == "registry-hosts")
        .expect("the hosts mount");
    assert_eq!(mount["mountPath"], root.as_str());
    assert_eq!(mount["readOnly"], true);
    // Lay the ConfigMap out as the kubelet does, and read it as pullgate will.
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "registry-hosts")
        .expect("the hosts volume");
    let name = volume["configMap"]["name"].as_str().expect("name");
    let config_map = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == name)
        .expect("the ConfigMap it names");
    let dir = tempfile::tempdir().expect("tempdir");
    for item in volume["configMap"]["items"].as_array().expect("items") {
        let key = item["key"].as_str().expect("key");
        let path = dir.path().join(item["path"].as_str().expect("path"));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let content = config_map["data"][key]
            .as_str()
            .expect("the item's key is in the ConfigMap");
        std::fs::write(&path, content).expect("write");
    }
    let hosts = HostsConfig::load(&[dir.path().to_path_buf()]).expect("pullgate reads the files");
    let docker = hosts.lookup("docker.io").expect("docker.io has hosts");
    assert_eq!(docker.mirrors.len(), 1);
    assert_eq!(
        docker.server.as_ref().map(|s| s.host.as_str()),
        Some("registry-1.docker.io")
    );
}
