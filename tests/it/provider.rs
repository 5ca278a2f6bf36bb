//! Kubelet credential provider plugins, run by pullgate as the kubelet runs them: a real
//! plugin executable (`data/plugins/fake-provider`, a shell script that records every run)
//! in a bin dir, a real `CredentialProviderConfig`, a real `docker-registry` with htpasswd
//! that only the plugin's credentials open.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use futures::future::join_all;
use pullgate::checker::{Checker, ImageSpec};
use pullgate::keyring::Keyring;
use pullgate::platform::Platform;
use pullgate::provider::NodeProviders;
use pullgate::verdict::{Finding, Verdict};
use rstest::rstest;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::support::engine::{checker, keyring};
use crate::support::{PushAuth, Registry, RegistryAuth, RegistryOpts, TestPki, push_oci_manifest};

const USER: &str = "node";
const PASSWORD: &str = "node-pw";
const V1: &str = "credentialprovider.kubelet.k8s.io/v1";
const PLUGIN: &str = "tests/it/data/plugins/fake-provider";

/// A private registry with two repositories, and a directory for bin dir, configs and
/// the plugin's records.
struct Fixture {
    pki: TestPki,
    registry: Registry,
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn start() -> Self {
        crate::support::init();
        let pki = TestPki::new();
        let registry = private_registry(&pki).await;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("bin")).expect("bin dir");
        Self { pki, registry, dir }
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    /// The test plugin, installed in the bin dir under `name`.
    fn install(&self, name: &str) {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(PLUGIN);
        std::fs::copy(source, self.bin().join(name)).expect("install the plugin");
    }

    /// `127.0.0.1:PORT/team/<repo>:1.0`.
    fn image(&self, repo: &str) -> String {
        format!("{}/team/{repo}:1.0", self.registry.host())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// How many times the plugin recording to `record` ran.
    fn runs(&self, record: &str) -> usize {
        std::fs::read_to_string(self.path(record))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// A provider named `name` answering with the registry's credentials, recording to
    /// `<name>.record`; `env` adds to or overrides its environment.
    fn provider(&self, name: &str, env: &[(&str, &str)]) -> Value {
        self.install(name);
        let mut vars = vec![
            (
                "PLUGIN_RECORD".to_string(),
                self.path(&format!("{name}.record")).display().to_string(),
            ),
            ("PLUGIN_KEY".to_string(), self.registry.host().to_string()),
            ("PLUGIN_USER".to_string(), USER.to_string()),
            ("PLUGIN_PASSWORD".to_string(), PASSWORD.to_string()),
        ];
        for (k, v) in env {
            vars.retain(|(name, _)| name != k);
            vars.push((k.to_string(), v.to_string()));
        }
        json!({
            "name": name,
            "matchImages": [self.registry.host()],
            "defaultCacheDuration": "10m",
            "apiVersion": V1,
            "env": vars.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
        })
    }

    /// A config file holding `providers`.
    fn config(&self, providers: &[Value]) -> PathBuf {
        let path = self.path("config.json");
        let config = json!({
            "kind": "CredentialProviderConfig",
            "apiVersion": "kubelet.config.k8s.io/v1",
            "providers": providers,
        });
        std::fs::write(&path, config.to_string()).expect("write the config");
        path
    }

    fn checker(&self, providers: &[Value]) -> Checker {
        let node = NodeProviders::register(&self.config(providers), &self.bin()).expect("register");
        checker(&[self.pki.ca_pem()], &[]).with_node_providers(node)
    }
}

async fn private_registry(pki: &TestPki) -> Registry {
    let registry = Registry::start(
        RegistryOpts::tls(pki).with_auth(RegistryAuth::htpasswd(&[(USER, PASSWORD)])),
    )
    .await;
    let target = registry.push_target(PushAuth::basic(USER, PASSWORD));
    push_oci_manifest(&target, "team/api", "1.0").await;
    push_oci_manifest(&target, "team/web", "1.0").await;
    registry
}

async fn check(checker: &Checker, image: &str, keyring: &Keyring, within: Duration) -> Finding {
    let mut findings = checker
        .check(
            &[ImageSpec::new(Some("app"), image)],
            keyring,
            &[Platform::linux_amd64()],
            Instant::now() + within,
        )
        .await;
    findings.pop().expect("one finding")
}

const WITHIN: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_plugin_with_the_right_credentials_makes_a_private_image_pullable_without_a_secret() {
    let f = Fixture::start().await;
    let checker = f.checker(&[f.provider("ecr-credential-provider", &[])]);
    let finding = check(&checker, &f.image("api"), &Keyring::new(), WITHIN).await;
    assert_eq!(finding.verdict, Verdict::Pullable, "{}", finding.message);
    assert_eq!(f.runs("ecr-credential-provider.record"), 1);
}

#[tokio::test]
async fn a_plugin_with_wrong_credentials_is_unauthorized_and_named() {
    let f = Fixture::start().await;
    let checker =
        f.checker(&[f.provider("ecr-credential-provider", &[("PLUGIN_PASSWORD", "wrong")])]);
    let finding = check(&checker, &f.image("api"), &Keyring::new(), WITHIN).await;
    assert_eq!(
        finding.verdict,
        Verdict::Unauthorized,
        "{}",
        finding.message
    );
    assert!(
        finding
            .message
            .contains("credential provider ecr-credential-provider"),
        "{}",
        finding.message
    );
    assert!(!finding.message.contains("wrong"), "{}", finding.message);
}

#[rstest]
#[case::non_zero_exit(&[("PLUGIN_MODE", "exit")], "exit status 1")]
#[case::garbage_on_stdout(&[("PLUGIN_MODE", "garbage")], "error reading GVK from response")]
#[case::another_api_version(
    &[("PLUGIN_API_VERSION", "credentialprovider.kubelet.k8s.io/v1beta1")],
    "apiVersion from credential plugin response did not match"
)]
#[case::no_cache_key_type(&[("PLUGIN_CACHE_KEY_TYPE", "")], "did not return a valid cacheKeyType")]
#[tokio::test]
async fn a_plugin_failing_in_pullgate_makes_a_refusal_indeterminate(
    #[case] env: &[(&str, &str)],
    #[case] why: &str,
) {
    let f = Fixture::start().await;
    let checker = f.checker(&[f.provider("ecr-credential-provider", env)]);
    let finding = check(&checker, &f.image("api"), &Keyring::new(), WITHIN).await;
    assert_eq!(
        finding.verdict,
        Verdict::RegistryUnavailable,
        "{}",
        finding.message
    );
    assert!(
        finding
            .message
            .contains("credential provider ecr-credential-provider could not answer in pullgate"),
        "{}",
        finding.message
    );
    assert!(finding.message.contains(why), "{}", finding.message);
}

#[tokio::test]
async fn a_plugin_hanging_past_the_deadline_is_a_timeout_that_names_it() {
    let f = Fixture::start().await;
    let checker = f.checker(&[f.provider("ecr-credential-provider", &[("PLUGIN_MODE", "hang")])]);
    let started = std::time::Instant::now();
    let finding = check(
        &checker,
        &f.image("api"),
        &Keyring::new(),
        Duration::from_secs(1),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited for the plugin"
    );
    assert_eq!(finding.verdict, Verdict::Timeout, "{}", finding.message);
    assert!(
        finding.message.contains(
            "credential provider ecr-credential-provider did not answer before the deadline"
        ),
        "{}",
        finding.message
    );
}

#[tokio::test]
async fn a_late_answer_is_kept_for_the_next_review() {
    let f = Fixture::start().await;
    let checker = f.checker(&[f.provider("ecr-credential-provider", &[("PLUGIN_SLEEP", "2")])]);
    let first = check(
        &checker,
        &f.image("api"),
        &Keyring::new(),
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(first.verdict, Verdict::Timeout, "{}", first.message);
    // The execution goes on without the review that started it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = check(&checker, &f.image("api"), &Keyring::new(), WITHIN).await;
    assert_eq!(second.verdict, Verdict::Pullable, "{}", second.message);
    assert_eq!(f.runs("ecr-credential-provider.record"), 1);
}

#[tokio::test]
async fn other_credentials_that_work_make_the_image_pullable_despite_a_failing_plugin() {
    let f = Fixture::start().await;
    let checker = f.checker(&[f.provider("ecr-credential-provider", &[("PLUGIN_MODE", "exit")])]);
    let pod = keyring(&[("regcred", f.registry.host(), USER, PASSWORD)]);
    let finding = check(&checker, &f.image("api"), &pod, WITHIN).await;
    assert_eq!(finding.verdict, Verdict::Pullable, "{}", finding.message);
}

#[tokio::test]
async fn plugin_credentials_are_tried_after_the_pods_secrets() {
    let f = Fixture::start().await;
    let pod = keyring(&[("stale", f.registry.host(), USER, "stale-pw")]);
    let working = f.checker(&[f.provider("ecr-credential-provider", &[])]);
    let finding = check(&working, &f.image("api"), &pod, WITHIN).await;
    assert_eq!(finding.verdict, Verdict::Pullable, "{}", finding.message);

    let refused = f.checker(&[f.provider(
        "ecr-credential-provider",
        &[("PLUGIN_PASSWORD", "also-stale")],
    )]);
    let finding = check(&refused, &f.image("api"), &pod, WITHIN).await;
    assert_eq!(
        finding.verdict,
        Verdict::Unauthorized,
        "{}",
        finding.message
    );
    let host = f.registry.host();
    assert!(
        finding.message.contains(&format!(
            "tried secret stale ({host}), credential provider ecr-credential-provider ({host})"
        )),
        "{}",
        finding.message
    );
}

#[tokio::test]
async fn a_plugin_whose_match_images_do_not_match_is_not_run() {
    let f = Fixture::start().await;
    let mut provider = f.provider("ecr-credential-provider", &[]);
    provider["matchImages"] = json!(["*.dkr.ecr.*.amazonaws.com", "127.0.0.1"]);
    let checker = f.checker(&[provider]);
    let finding = check(&checker, &f.image("api"), &Keyring::new(), WITHIN).await;
    assert_eq!(
        finding.verdict,
        Verdict::Unauthorized,
        "{}",
        finding.message
    );
    assert_eq!(f.runs("ecr-credential-provider.record"), 0);
}

#[tokio::test]
async fn a_provider_that_needs_a_service_account_token_is_never_run_and_never_denies() {
    let f = Fixture::start().await;
    let mut provider = f.provider("ecr-credential-provider", &[]);
    provider["tokenAttributes"] = json!({
        "serviceAccountTokenAudience": "sts.amazonaws.com",
        "requireServiceAccount": true,
        "cacheType": "ServiceAccount",
    });
    let checker = f.checker(&[provider]);
    let finding = check(&checker, &f.image("api"), &Keyring::new(), WITHIN).await;
    assert_eq!(
        finding.verdict,
        Verdict::RegistryUnavailable,
        "{}",
        finding.message
    );
    assert!(
        finding.message.contains("service-account token"),
        "{}",
        finding.message
    );
    assert_eq!(f.runs("ecr-credential-provider.record"), 0);
}

#[tokio::test]
async fn image_cache_keys_serve_the_same_image_only() {
    let f = Fixture::start().await;
    let checker = f.checker(&[f.provider("p", &[("PLUGIN_CACHE_KEY_TYPE", "Image")])]);
    for repo in ["api", "api", "web"] {
        let finding = check(&checker, &f.image(repo), &Keyring::new(), WITHIN).await;
        assert_eq!(finding.verdict, Verdict::Pullable, "{}", finding.message);
    }
    assert_eq!(f.runs("p.record"), 2);
}

#[tokio::test]
async fn registry_cache_keys_serve_every_image_of_the_registry() {
    let f = Fixture::start().await;
    let checker = f.checker(&[f.provider("p", &[("PLUGIN_CACHE_KEY_TYPE", "Registry")])]);
    for repo in ["api", "web"] {
        let finding = check(&checker, &f.image(repo), &Keyring::new(), WITHIN).await;
        assert_eq!(finding.verdict, Verdict::Pullable, "{}", finding.message);
    }
    assert_eq!(f.runs("p.record"), 1);
}

#[tokio::test]
async fn a_global_cache_key_answers_for_every_registry_without_running_again() {
    let f = Fixture::start().await;
    let other = private_registry(&f.pki).await;
    let mut provider = f.provider("p", &[("PLUGIN_CACHE_KEY_TYPE", "Global")]);
    provider["matchImages"] = json!([f.registry.host(), other.host()]);
    let checker = f.checker(&[provider]);
    let here = check(&checker, &f.image("api"), &Keyring::new(), WITHIN).await;
    assert_eq!(here.verdict, Verdict::Pullable, "{}", here.message);
    // The cached answer holds a key for the first registry only: the second registry's
    // image gets no credential from it, and the plugin is not asked again.
    let there = check(
        &checker,
        &format!("{}/team/api:1.0", other.host()),
        &Keyring::new(),
        WITHIN,
    )
    .await;
    assert_eq!(there.verdict, Verdict::Unauthorized, "{}", there.message);
    assert_eq!(f.runs("p.record"), 1);
}

#[tokio::test]
async fn cache_duration_zero_is_not_cached_and_the_response_duration_expires() {
    let f = Fixture::start().await;
    let checker = f.checker(&[f.provider(
        "never",
        &[
            ("PLUGIN_CACHE_DURATION", "0s"),
            (
                "PLUGIN_RECORD",
                &f.path("never.record").display().to_string(),
            ),
        ],
    )]);
    for _ in 0..2 {
        check(&checker, &f.image("api"), &Keyring::new(), WITHIN).await;
    }
    assert_eq!(f.runs("never.record"), 2);

    let checker = f.checker(&[f.provider("brief", &[("PLUGIN_CACHE_DURATION", "1s")])]);
    check(&checker, &f.image("api"), &Keyring::new(), WITHIN).await;
    check(&checker, &f.image("api"), &Keyring::new(), WITHIN).await;
    assert_eq!(f.runs("brief.record"), 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    check(&checker, &f.image("api"), &Keyring::new(), WITHIN).await;
    assert_eq!(f.runs("brief.record"), 2);
}

#[tokio::test]
async fn without_a_response_duration_the_default_cache_duration_applies() {
    let f = Fixture::start().await;
    let mut uncached = f.provider("uncached", &[]);
    uncached["defaultCacheDuration"] = json!("0s");
    let checker = f.checker(&[uncached]);
    for _ in 0..2 {
        check(&checker, &f.image("api"), &Keyring::new(), WITHIN).await;
    }
    assert_eq!(f.runs("uncached.record"), 2);
}

#[tokio::test]
async fn fifty_concurrent_checks_of_one_image_run_the_plugin_once() {
    let f = Fixture::start().await;
    // Not cached at all: only the in-flight sharing can keep it to one run.
    let checker = f.checker(&[f.provider(
        "p",
        &[("PLUGIN_CACHE_DURATION", "0s"), ("PLUGIN_SLEEP", "1")],
    )]);
    let image = f.image("api");
    let keyring = Keyring::new();
    let findings = join_all((0..50).map(|_| check(&checker, &image, &keyring, WITHIN))).await;
    assert!(
        findings.iter().all(|f| f.verdict == Verdict::Pullable),
        "{findings:?}"
    );
    assert_eq!(f.runs("p.record"), 1);
}

#[tokio::test]
async fn the_request_on_stdin_is_exactly_the_kubelets() {
    let f = Fixture::start().await;
    let mut beta = f.provider("beta", &[]);
    beta["apiVersion"] = json!("credentialprovider.kubelet.k8s.io/v1beta1");
    let checker = f.checker(&[f.provider("v1", &[]), beta]);
    let finding = check(&checker, &f.image("api"), &Keyring::new(), WITHIN).await;
    assert_eq!(finding.verdict, Verdict::Pullable, "{}", finding.message);
    let host = f.registry.host();
    assert_eq!(
        std::fs::read_to_string(f.path("v1.record")).expect("recorded"),
        format!(
            "{{\"kind\":\"CredentialProviderRequest\",\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\",\"image\":\"{host}/team/api\"}}\n"
        )
    );
    assert_eq!(
        std::fs::read_to_string(f.path("beta.record")).expect("recorded"),
        format!(
            "{{\"kind\":\"CredentialProviderRequest\",\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1beta1\",\"image\":\"{host}/team/api\"}}\n"
        )
    );
}

/// `pullgate check` as a real process, off the async runtime.
async fn pullgate(args: Vec<String>, env: Vec<(String, String)>) -> Output {
    crate::support::cli::pullgate(args, env).await
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn check_runs_the_plugin_with_its_args_and_the_merged_environment() {
    let f = Fixture::start().await;
    let dump = f.path("dump.txt");
    let mut provider = f.provider(
        "p",
        &[
            ("PLUGIN_DUMP", &dump.display().to_string()),
            ("SHARED", "from-config"),
        ],
    );
    provider["args"] = json!(["get-credentials", "--v=3", "two words"]);
    let config = f.config(&[provider]);
    let out = pullgate(
        vec![
            "check".into(),
            "--image".into(),
            f.image("api"),
            "--registry-ca".into(),
            f.pki.ca_pem().display().to_string(),
            "--image-credential-provider-config".into(),
            config.display().to_string(),
            "--image-credential-provider-bin-dir".into(),
            f.bin().display().to_string(),
            "-o".into(),
            "json".into(),
        ],
        vec![
            ("SHARED".into(), "from-pullgate".into()),
            ("ONLY_PULLGATE".into(), "kept".into()),
        ],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dumped = std::fs::read_to_string(dump).expect("the plugin ran");
    assert!(
        dumped.starts_with("args: [get-credentials] [--v=3] [two words]\n"),
        "{dumped}"
    );
    let lines: Vec<&str> = dumped.lines().collect();
    assert!(lines.contains(&"SHARED=from-config"), "{dumped}");
    assert!(lines.contains(&"ONLY_PULLGATE=kept"), "{dumped}");
    assert!(!dumped.contains("SHARED=from-pullgate"), "{dumped}");
}

#[rstest]
#[case::a_validation_error(
    r#"{"kind":"CredentialProviderConfig","apiVersion":"kubelet.config.k8s.io/v1","providers":[{"name":"a b","matchImages":["x.io"],"defaultCacheDuration":"1m","apiVersion":"credentialprovider.kubelet.k8s.io/v1"}]}"#,
    "error: failed to validate credential provider config: providers.name: Invalid value: \"a b\": provider name cannot contain spaces\n"
)]
#[case::an_unknown_field(
    "kind: CredentialProviderConfig\napiVersion: kubelet.config.k8s.io/v1\nproviders: []\nprovider: []\n",
    "strict decoding error: unknown field \"provider\"\n"
)]
#[case::a_missing_binary(
    r#"{"kind":"CredentialProviderConfig","apiVersion":"kubelet.config.k8s.io/v1","providers":[{"name":"ecr-credential-provider","matchImages":["x.io"],"defaultCacheDuration":"1m","apiVersion":"credentialprovider.kubelet.k8s.io/v1"}]}"#,
    "/bin/ecr-credential-provider did not exist\n"
)]
#[tokio::test]
async fn check_refuses_to_start_with_the_kubelets_message(
    #[case] config: &str,
    #[case] tail: &str,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("bin")).expect("bin");
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).expect("write");
    let out = pullgate(
        vec![
            "check".into(),
            "--image".into(),
            "nginx".into(),
            "--image-credential-provider-config".into(),
            path.display().to_string(),
            "--image-credential-provider-bin-dir".into(),
            dir.path().join("bin").display().to_string(),
        ],
        vec![],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.ends_with(tail), "{stderr}");
    if tail.contains("did not exist") {
        assert!(
            stderr.contains(&format!(
                "error: plugin binary executable {}",
                dir.path().join("bin/ecr-credential-provider").display()
            )),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn a_missing_bin_dir_and_a_lone_flag_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "{}").expect("write");
    let out = pullgate(
        strings(&[
            "check",
            "--image",
            "nginx",
            "--image-credential-provider-config",
            &config.display().to_string(),
            "--image-credential-provider-bin-dir",
            "/nonexistent/pullgate-bin",
        ]),
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: plugin binary directory /nonexistent/pullgate-bin did not exist\n"
    );
    let lone = pullgate(
        strings(&[
            "check",
            "--image",
            "nginx",
            "--image-credential-provider-config",
            &config.display().to_string(),
        ]),
        vec![],
    )
    .await;
    assert_eq!(lone.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&lone.stderr).contains("--image-credential-provider-bin-dir"),
        "{}",
        String::from_utf8_lossy(&lone.stderr)
    );
}
