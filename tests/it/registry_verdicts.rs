//! Every verdict produced by a real CNCF distribution 2.8 registry (Debian's
//! `docker-registry`), with real TLS, real Basic and token auth, and a fault proxy for what
//! a healthy registry never does.

use crate::support;
use std::time::{Duration, Instant as StdInstant};

use pullgate::keyring::Keyring;
use pullgate::platform::Platform;
use pullgate::verdict::Verdict;
use support::engine::{check_on, check_one, checker, keyring};
use support::{
    ADMIN_PASSWORD, ADMIN_USER, AuthRecorder, Fault, FaultProxy, PushAuth, Registry, RegistryAuth,
    RegistryOpts, TestPki, TokenFailMode, TokenIssuer, TokenIssuerOpts, push_docker_manifest,
    push_docker_manifest_list, push_oci_index, push_oci_manifest, tag_existing,
};

const SECONDS_10: Duration = Duration::from_secs(10);

fn none() -> Keyring {
    Keyring::new()
}

/// An anonymous TLS registry holding every kind of manifest.
struct Anonymous {
    _pki: TestPki,
    registry: Registry,
}

impl Anonymous {
    async fn start() -> Self {
        support::init();
        let pki = TestPki::new();
        let registry = Registry::start(RegistryOpts::tls(&pki)).await;
        let t = registry.push_target(PushAuth::None);
        push_oci_manifest(&t, "team/oci", "1.0").await;
        tag_existing(&t, "team/oci", "1.0", "latest").await;
        tag_existing(&t, "team/oci", "1.0", "stable").await;
        push_docker_manifest(&t, "team/docker", "2.0").await;
        push_oci_index(
            &t,
            "team/multi",
            "1.0",
            &[("linux", "amd64", None), ("linux", "arm64", Some("v8"))],
            true,
        )
        .await;
        push_docker_manifest_list(
            &t,
            "team/list",
            "1.0",
            &[("linux", "amd64", None), ("linux", "arm", Some("v7"))],
        )
        .await;
        push_oci_index(
            &t,
            "team/armonly",
            "1.0",
            &[("linux", "arm64", Some("v8"))],
            true,
        )
        .await;
        Self {
            _pki: pki,
            registry,
        }
    }

    fn image(&self, rest: &str) -> String {
        format!("{}/{rest}", self.registry.host())
    }

    fn checker(&self) -> pullgate::checker::Checker {
        let ca = self.registry.ca_pem_path().expect("TLS registry");
        checker(&[ca], &[])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pullable_for_every_manifest_kind_and_by_digest() {
    let env = Anonymous::start().await;
    let c = env.checker();
    for image in [
        "team/oci:1.0",
        "team/oci",
        "team/docker:2.0",
        "team/multi:1.0",
        "team/list:1.0",
    ] {
        let f = check_one(&c, &env.image(image), &none(), SECONDS_10).await;
        assert_eq!(f.verdict, Verdict::Pullable, "{image}: {}", f.message);
        assert!(
            f.digest
                .as_deref()
                .is_some_and(|d| d.starts_with("sha256:")),
            "{image}"
        );
    }
    let digest = check_one(&c, &env.image("team/docker:2.0"), &none(), SECONDS_10)
        .await
        .digest
        .expect("digest");
    let by_digest = check_one(
        &c,
        &env.image(&format!("team/docker@{digest}")),
        &none(),
        SECONDS_10,
    )
    .await;
    assert_eq!(
        by_digest.verdict,
        Verdict::Pullable,
        "{}",
        by_digest.message
    );
    assert_eq!(by_digest.digest.as_deref(), Some(digest.as_str()));
    // name:tag@digest is pulled by digest: a tag that does not exist does not matter.
    let tag_and_digest = check_one(
        &c,
        &env.image(&format!("team/docker:gone@{digest}")),
        &none(),
        SECONDS_10,
    )
    .await;
    assert_eq!(
        tag_and_digest.verdict,
        Verdict::Pullable,
        "{}",
        tag_and_digest.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_typo_is_not_found_with_the_nearest_tags_suggested() {
    let env = Anonymous::start().await;
    let f = check_one(
        &env.checker(),
        &env.image("team/oci:latset"),
        &none(),
        SECONDS_10,
    )
    .await;
    assert_eq!(f.verdict, Verdict::NotFound);
    assert_eq!(
        f.message,
        format!(
            "tag \"latset\" not found in {}/team/oci (did you mean \"latest\"?)",
            env.registry.host()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_repository_and_missing_digest_are_not_found() {
    let env = Anonymous::start().await;
    let c = env.checker();
    let repo = check_one(&c, &env.image("team/nothing:1"), &none(), SECONDS_10).await;
    assert_eq!(repo.verdict, Verdict::NotFound);
    assert!(
        repo.message.contains("repository") && repo.message.contains("team/nothing"),
        "{}",
        repo.message
    );
    let digest = format!("sha256:{}", "1".repeat(64));
    let missing = check_one(
        &c,
        &env.image(&format!("team/oci@{digest}")),
        &none(),
        SECONDS_10,
    )
    .await;
    assert_eq!(missing.verdict, Verdict::NotFound);
    assert!(missing.message.contains(&digest), "{}", missing.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arm64_only_index_has_no_matching_platform_for_amd64() {
    let env = Anonymous::start().await;
    let c = env.checker();
    let f = check_one(&c, &env.image("team/armonly:1.0"), &none(), SECONDS_10).await;
    assert_eq!(f.verdict, Verdict::NoMatchingPlatform);
    assert!(
        f.message.contains("linux/amd64") && f.message.contains("linux/arm64/v8"),
        "{}",
        f.message
    );
    assert!(
        !f.message.contains("unknown"),
        "attestations are not listed: {}",
        f.message
    );

    let arm64: Platform = "linux/arm64".parse().expect("platform");
    let on_arm = check_on(
        &c,
        &env.image("team/armonly:1.0"),
        &none(),
        &[arm64],
        SECONDS_10,
    )
    .await;
    assert_eq!(on_arm.verdict, Verdict::Pullable, "{}", on_arm.message);

    // Any requested platform is enough; the Docker list has arm/v7.
    let arm7: Platform = "linux/arm/v7".parse().expect("platform");
    let list = check_on(
        &c,
        &env.image("team/list:1.0"),
        &none(),
        &[arm7],
        SECONDS_10,
    )
    .await;
    assert_eq!(list.verdict, Verdict::Pullable, "{}", list.message);
    let s390: Platform = "linux/s390x".parse().expect("platform");
    let none_fit = check_on(
        &c,
        &env.image("team/list:1.0"),
        &none(),
        &[s390],
        SECONDS_10,
    )
    .await;
    assert_eq!(none_fit.verdict, Verdict::NoMatchingPlatform);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_references_never_reach_the_network() {
    let env = Anonymous::start().await;
    let proxy = FaultProxy::for_registry(&env.registry).await;
    let c = checker(&[env.registry.ca_pem_path().expect("tls")], &[proxy.host()]);
    for image in [
        format!("{}/Team/oci:1.0", proxy.host()),
        format!("{}/team/oci:", proxy.host()),
        format!("{}/team/oci@sha256:abc", proxy.host()),
        String::new(),
        // The kubelet accepts these; no URL can be built for them, and no pull reaches them.
        "127.0.0.1:99999/team/oci:1.0".to_string(),
        "[7f00:1]:5000/team/oci:1.0".to_string(),
    ] {
        let f = check_one(&c, &image, &none(), SECONDS_10).await;
        assert_eq!(f.verdict, Verdict::InvalidReference, "{image:?}");
        assert!(f.reference.is_none());
    }
    assert_eq!(proxy.total_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connection_and_untrusted_tls_are_registry_unavailable() {
    let env = Anonymous::start().await;
    let closed = format!("127.0.0.1:{}", support::free_port(support::LOCALHOST));
    let c = env.checker();
    let refused = check_one(&c, &format!("{closed}/team/oci:1.0"), &none(), SECONDS_10).await;
    assert_eq!(
        refused.verdict,
        Verdict::RegistryUnavailable,
        "{}",
        refused.message
    );

    // No --registry-ca: the registry's private CA is not trusted.
    let untrusting = checker(&[], &[]);
    let tls = check_one(&untrusting, &env.image("team/oci:1.0"), &none(), SECONDS_10).await;
    assert_eq!(tls.verdict, Verdict::RegistryUnavailable, "{}", tls.message);
    assert!(
        tls.message.to_lowercase().contains("certificate"),
        "{}",
        tls.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_resets_and_rate_limits_are_indeterminate() {
    let env = Anonymous::start().await;
    let proxy = FaultProxy::for_registry(&env.registry).await;
    let ca = env.registry.ca_pem_path().expect("tls");
    let image = format!("{}/team/oci:1.0", proxy.host());

    proxy.set_fault_for("/manifests/", Fault::status(500));
    let f = check_one(
        &checker(&[ca], &[proxy.host()]),
        &image,
        &none(),
        SECONDS_10,
    )
    .await;
    assert_eq!(f.verdict, Verdict::RegistryUnavailable, "{}", f.message);
    assert!(f.message.contains("500"), "{}", f.message);

    proxy.set_fault_for("/manifests/", Fault::Reset);
    let f = check_one(
        &checker(&[ca], &[proxy.host()]),
        &image,
        &none(),
        SECONDS_10,
    )
    .await;
    assert_eq!(f.verdict, Verdict::RegistryUnavailable, "{}", f.message);

    proxy.set_fault_for("/manifests/", Fault::too_many_requests("30"));
    let c = checker(&[ca], &[proxy.host()]);
    let f = check_one(&c, &image, &none(), SECONDS_10).await;
    assert_eq!(f.verdict, Verdict::RateLimited, "{}", f.message);
    assert!(f.message.contains("retry after 30s"), "{}", f.message);

    // Once the registry recovers, a fresh checker sees it.
    proxy.clear_faults();
    let f = check_one(
        &checker(&[ca], &[proxy.host()]),
        &image,
        &none(),
        SECONDS_10,
    )
    .await;
    assert_eq!(f.verdict, Verdict::Pullable, "{}", f.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_or_slow_registry_is_a_timeout_within_the_deadline() {
    let env = Anonymous::start().await;
    let proxy = FaultProxy::for_registry(&env.registry).await;
    let ca = env.registry.ca_pem_path().expect("tls");
    let image = format!("{}/team/oci:1.0", proxy.host());

    for fault in [Fault::Hang, Fault::Delay(Duration::from_secs(15))] {
        proxy.set_fault_for("/manifests/", fault);
        let started = StdInstant::now();
        let f = check_one(
            &checker(&[ca], &[proxy.host()]),
            &image,
            &none(),
            Duration::from_secs(2),
        )
        .await;
        let took = started.elapsed();
        assert_eq!(f.verdict, Verdict::Timeout, "{}", f.message);
        assert!(
            took < Duration::from_millis(2500),
            "answered after {took:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_never_follows_a_redirect_to_another_host() {
    support::init();
    let pki = TestPki::new();
    let registry = Registry::start(
        RegistryOpts::plain().with_auth(RegistryAuth::htpasswd(&[("alice", "s3cret")])),
    )
    .await;
    push_oci_manifest(
        &registry.push_target(PushAuth::basic("alice", "s3cret")),
        "team/app",
        "1.0",
    )
    .await;
    let proxy = FaultProxy::for_registry(&registry).await;
    let sink = AuthRecorder::start().await;
    // The real manifest, so that the pull's blobs (behind the proxy) are there too.
    let real = support::fetch_manifest(
        &registry.push_target(PushAuth::basic("alice", "s3cret")),
        "team/app",
        "1.0",
    )
    .await;
    sink.answer_as_manifest(&real.content_type, real.body.clone());
    proxy.set_fault_for(
        "/manifests/",
        Fault::redirect_to(&format!("{}{{path}}", sink.base_url())),
    );

    let c = checker(&[pki.ca_pem()], &[proxy.host(), sink.host()]);
    let creds = keyring(&[("regcred", &proxy.host(), "alice", "s3cret")]);
    let f = check_one(
        &c,
        &format!("{}/team/app:1.0", proxy.host()),
        &creds,
        SECONDS_10,
    )
    .await;
    assert!(sink.total_requests() >= 1, "the redirect was followed");
    assert_eq!(
        sink.authorized_requests(),
        0,
        "credentials leaked across hosts"
    );
    // The manifest was reached (anonymously) at the redirect target.
    assert_eq!(f.verdict, Verdict::Pullable, "{}", f.message);
}

/// A private registry behind htpasswd Basic auth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_right_wrong_and_missing_credentials() {
    support::init();
    let pki = TestPki::new();
    let registry = Registry::start(
        RegistryOpts::tls(&pki).with_auth(RegistryAuth::htpasswd(&[("alice", "s3cret")])),
    )
    .await;
    push_docker_manifest(
        &registry.push_target(PushAuth::basic("alice", "s3cret")),
        "team/app",
        "1.0",
    )
    .await;
    let c = checker(&[pki.ca_pem()], &[]);
    let image = format!("{}/team/app:1.0", registry.host());
    let host = registry.host().to_string();

    let ok = check_one(
        &c,
        &image,
        &keyring(&[("regcred", &host, "alice", "s3cret")]),
        SECONDS_10,
    )
    .await;
    assert_eq!(ok.verdict, Verdict::Pullable, "{}", ok.message);

    let wrong = check_one(
        &c,
        &image,
        &keyring(&[("regcred", &host, "alice", "nope")]),
        SECONDS_10,
    )
    .await;
    assert_eq!(wrong.verdict, Verdict::Unauthorized, "{}", wrong.message);
    assert!(
        wrong.message.contains("secret regcred"),
        "names the secret tried: {}",
        wrong.message
    );
    assert!(
        !wrong.message.contains("nope") && !wrong.message.contains("alice"),
        "{}",
        wrong.message
    );

    let anonymous = check_one(&c, &image, &none(), SECONDS_10).await;
    assert_eq!(anonymous.verdict, Verdict::Unauthorized);
    assert!(
        anonymous
            .message
            .contains(&format!("add an imagePullSecret for {host}")),
        "{}",
        anonymous.message
    );

    // Missing tags on a registry we may read are still not-found, with suggestions.
    let typo = check_one(
        &c,
        &format!("{host}/team/app:1.1"),
        &keyring(&[("regcred", &host, "alice", "s3cret")]),
        SECONDS_10,
    )
    .await;
    assert_eq!(typo.verdict, Verdict::NotFound, "{}", typo.message);
    assert!(
        typo.message.contains("did you mean \"1.0\""),
        "{}",
        typo.message
    );
}

struct TokenEnv {
    pki: TestPki,
    issuer: TokenIssuer,
    registry: Registry,
}

impl TokenEnv {
    async fn start() -> Self {
        support::init();
        let pki = TestPki::new();
        let issuer = TokenIssuer::start(TokenIssuerOpts {
            tls: Some(&pki),
            ..Default::default()
        })
        .await;
        let registry =
            Registry::start(RegistryOpts::tls(&pki).with_auth(issuer.registry_auth())).await;
        let t = registry.push_target(PushAuth::basic(ADMIN_USER, ADMIN_PASSWORD));
        push_oci_manifest(&t, "team/private", "1.0").await;
        push_oci_manifest(&t, "other/private", "1.0").await;
        issuer.add_pull_only_user("alice", "alice-pw", &["team/*"]);
        issuer.add_pull_only_user("bob", "bob-pw", &["other/*"]);
        issuer.reset_counters();
        Self {
            pki,
            issuer,
            registry,
        }
    }

    fn checker(&self) -> pullgate::checker::Checker {
        checker(&[self.pki.ca_pem()], &[])
    }

    fn image(&self, rest: &str) -> String {
        format!("{}/{rest}", self.registry.host())
    }

    fn creds(&self, list: &[(&str, &str, &str)]) -> Keyring {
        let host = self.registry.host().to_string();
        let rows: Vec<(&str, &str, &str, &str)> = list
            .iter()
            .map(|(n, u, p)| (*n, host.as_str(), *u, *p))
            .collect();
        keyring(&rows)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_user_with_access_is_pullable_without_scope_is_unauthorized() {
    let env = TokenEnv::start().await;
    let c = env.checker();
    let ok = check_one(
        &c,
        &env.image("team/private:1.0"),
        &env.creds(&[("a", "alice", "alice-pw")]),
        SECONDS_10,
    )
    .await;
    assert_eq!(ok.verdict, Verdict::Pullable, "{}", ok.message);
    let no_scope = check_one(
        &c,
        &env.image("other/private:1.0"),
        &env.creds(&[("a", "alice", "alice-pw")]),
        SECONDS_10,
    )
    .await;
    assert_eq!(
        no_scope.verdict,
        Verdict::Unauthorized,
        "{}",
        no_scope.message
    );
    assert!(
        no_scope.message.contains("insufficient_scope"),
        "{}",
        no_scope.message
    );
    assert!(
        no_scope.message.contains("may require authorization"),
        "{}",
        no_scope.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_wrong_password_is_unauthorized_not_anonymous() {
    let env = TokenEnv::start().await;
    let f = check_one(
        &env.checker(),
        &env.image("team/private:1.0"),
        &env.creds(&[("a", "alice", "wrong")]),
        SECONDS_10,
    )
    .await;
    assert_eq!(f.verdict, Verdict::Unauthorized, "{}", f.message);
    assert!(f.message.contains("token server refused"), "{}", f.message);
    assert_eq!(env.issuer.token_requests_for(None), 0, "no anonymous retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_failures_are_indeterminate_not_unauthorized() {
    let env = TokenEnv::start().await;
    let creds = env.creds(&[("a", "alice", "alice-pw")]);
    env.issuer.set_fail_mode(TokenFailMode::Hang);
    let started = StdInstant::now();
    let hang = check_one(
        &env.checker(),
        &env.image("team/private:1.0"),
        &creds,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(hang.verdict, Verdict::Timeout, "{}", hang.message);
    assert!(started.elapsed() < Duration::from_millis(2500));

    env.issuer.set_fail_mode(TokenFailMode::Status(503));
    let down = check_one(
        &env.checker(),
        &env.image("team/private:1.0"),
        &creds,
        SECONDS_10,
    )
    .await;
    assert_eq!(
        down.verdict,
        Verdict::RegistryUnavailable,
        "{}",
        down.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_candidate_wrong_second_right_is_pullable() {
    let env = TokenEnv::start().await;
    let creds = env.creds(&[
        ("stale", "alice", "old-pw"),
        ("current", "alice", "alice-pw"),
    ]);
    let f = check_one(
        &env.checker(),
        &env.image("team/private:1.0"),
        &creds,
        SECONDS_10,
    )
    .await;
    assert_eq!(f.verdict, Verdict::Pullable, "{}", f.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_candidate_wrong_is_unauthorized_without_an_anonymous_attempt() {
    let env = TokenEnv::start().await;
    env.issuer.set_anonymous_pull(&["team/*"]);
    let proxy = FaultProxy::for_registry(&env.registry).await;
    let c = checker(&[env.pki.ca_pem()], &[proxy.host()]);
    let host = proxy.host();
    let creds = keyring(&[
        ("one", &host, "alice", "x"),
        ("two", &host, "bob", "bob-pw"),
    ]);
    let f = check_one(&c, &format!("{host}/team/private:1.0"), &creds, SECONDS_10).await;
    // Anonymous pulls would have worked; the kubelet never falls back to them.
    assert_eq!(f.verdict, Verdict::Unauthorized, "{}", f.message);
    assert!(
        f.message.contains("secret one") && f.message.contains("secret two"),
        "{}",
        f.message
    );
    assert_eq!(
        env.issuer.token_requests_for(None),
        0,
        "an anonymous token was requested"
    );
    // containerd sends each pull's first request without credentials to read the
    // registry's challenge; none of those may turn into an anonymous pull.
    let anonymous_manifest_requests = proxy
        .requests()
        .iter()
        .filter(|r| r.path.contains("/manifests/") && !r.has_auth())
        .count();
    assert!(
        anonymous_manifest_requests <= 2,
        "at most one challenge request per credential, got {anonymous_manifest_requests}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shared_cache_never_answers_for_another_credential() {
    let env = TokenEnv::start().await;
    let c = env.checker();
    let image = env.image("team/private:1.0");
    let good = env.creds(&[("a", "alice", "alice-pw")]);
    let wrong = env.creds(&[("a", "alice", "wrong")]);
    assert_eq!(
        check_one(&c, &image, &good, SECONDS_10).await.verdict,
        Verdict::Pullable
    );
    assert_eq!(
        check_one(&c, &image, &none(), SECONDS_10).await.verdict,
        Verdict::Unauthorized
    );
    assert_eq!(
        check_one(&c, &image, &wrong, SECONDS_10).await.verdict,
        Verdict::Unauthorized
    );
    // And the other way round, on a fresh shared cache.
    let c = env.checker();
    assert_eq!(
        check_one(&c, &image, &none(), SECONDS_10).await.verdict,
        Verdict::Unauthorized
    );
    assert_eq!(
        check_one(&c, &image, &wrong, SECONDS_10).await.verdict,
        Verdict::Unauthorized
    );
    assert_eq!(
        check_one(&c, &image, &good, SECONDS_10).await.verdict,
        Verdict::Pullable
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_checks_send_one_manifest_request() {
    let env = TokenEnv::start().await;
    let proxy = FaultProxy::for_registry(&env.registry).await;
    // Slow enough that all hundred arrive while the first probe is in flight.
    proxy.set_fault_for("/manifests/", Fault::Delay(Duration::from_millis(300)));
    let c = checker(&[env.pki.ca_pem()], &[proxy.host()]);
    let host = proxy.host();
    let creds = keyring(&[("a", &host, "alice", "alice-pw")]);
    let image = format!("{host}/team/private:1.0");
    let checks = (0..100).map(|_| check_one(&c, &image, &creds, SECONDS_10));
    let findings = futures::future::join_all(checks).await;
    assert!(findings.iter().all(|f| f.verdict == Verdict::Pullable));
    // One probe: the challenge request, then one authorized manifest request.
    let manifest_requests: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v2/team/private/manifests/1.0")
        .collect();
    assert_eq!(
        manifest_requests.iter().filter(|r| r.has_auth()).count(),
        1,
        "{manifest_requests:?}"
    );
    assert_eq!(manifest_requests.len(), 2, "{manifest_requests:?}");
    assert_eq!(env.issuer.token_requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_level_challenge_is_answered_when_v2_is_open() {
    let env = TokenEnv::start().await;
    let proxy = FaultProxy::for_registry(&env.registry).await;
    // /v2/ answers 200 without a challenge; only the repository asks for a token.
    proxy.set_fault_for(
        "/v2/$",
        Fault::Status {
            code: 200,
            retry_after: None,
            body: "{}".into(),
        },
    );
    let c = checker(&[env.pki.ca_pem()], &[proxy.host()]);
    let host = proxy.host();
    let ok = check_one(
        &c,
        &format!("{host}/team/private:1.0"),
        &keyring(&[("a", &host, "alice", "alice-pw")]),
        SECONDS_10,
    )
    .await;
    assert_eq!(ok.verdict, Verdict::Pullable, "{}", ok.message);
    let wrong = check_one(
        &c,
        &format!("{host}/team/private:1.0"),
        &keyring(&[("a", &host, "alice", "nope")]),
        SECONDS_10,
    )
    .await;
    assert_eq!(wrong.verdict, Verdict::Unauthorized, "{}", wrong.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_registry_on_loopback_is_reached_like_containerd_does() {
    support::init();
    let registry = Registry::start(RegistryOpts::plain()).await;
    push_oci_manifest(&registry.push_target(PushAuth::None), "team/app", "1.0").await;
    let port = registry
        .host()
        .rsplit_once(':')
        .map(|(_, p)| p.to_string())
        .expect("port");
    // No --insecure-registry: HTTPS is tried first, then plain HTTP for loopback hosts.
    let c = checker(&[], &[]);
    for host in [registry.host().to_string(), format!("localhost:{port}")] {
        let f = check_one(&c, &format!("{host}/team/app:1.0"), &none(), SECONDS_10).await;
        assert_eq!(f.verdict, Verdict::Pullable, "{host}: {}", f.message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_without_head_support_is_asked_with_get() {
    let env = Anonymous::start().await;
    let proxy = FaultProxy::for_registry(&env.registry).await;
    let c = checker(&[env.registry.ca_pem_path().expect("tls")], &[proxy.host()]);
    let image = format!("{}/team/oci:1.0", proxy.host());
    // The first check reads the manifest (GET); the re-check of a known tag only asks
    // whether it moved (HEAD).
    let first = check_one(&c, &image, &none(), SECONDS_10).await;
    assert_eq!(first.verdict, Verdict::Pullable, "{}", first.message);
    assert_eq!(proxy.requests_to("HEAD", "/v2/team/oci/manifests/1.0"), 0);
    c.cache().invalidate_all();
    let recheck = check_one(&c, &image, &none(), SECONDS_10).await;
    assert_eq!(recheck.verdict, Verdict::Pullable, "{}", recheck.message);
    assert_eq!(proxy.requests_to("HEAD", "/v2/team/oci/manifests/1.0"), 1);
    assert_eq!(proxy.requests_to("GET", "/v2/team/oci/manifests/1.0"), 1);
    // 405 for HEAD only would need method rules; a 405 for every manifest request shows
    // the fallback is tried (GET) and its answer used.
    proxy.set_fault_for(
        "/manifests/",
        Fault::Status {
            code: 405,
            retry_after: None,
            body: "{}".into(),
        },
    );
    c.cache().invalidate_all();
    let f = check_one(&c, &image, &none(), SECONDS_10).await;
    assert_eq!(f.verdict, Verdict::RegistryUnavailable, "{}", f.message);
    assert_eq!(proxy.requests_to("HEAD", "/v2/team/oci/manifests/1.0"), 2);
    assert_eq!(
        proxy.requests_to("GET", "/v2/team/oci/manifests/1.0"),
        2,
        "GET was tried after the 405"
    );
}

/// One secret, written as a hand-written docker config (`entry` is the JSON object for
/// the registry key), as its only candidate.
fn raw_secret(host: &str, entry: &str) -> Keyring {
    let json = format!(r#"{{"auths":{{"{host}":{entry}}}}}"#);
    let config = pullgate::keyring::DockerConfig::parse(
        json.as_bytes(),
        pullgate::keyring::ConfigFormat::DockerConfigJson,
    )
    .expect("the kubelet reads this secret");
    let mut k = Keyring::new();
    k.add("secret regcred", &config);
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_credential_is_an_anonymous_attempt_as_containerd_sends_it() {
    let env = TokenEnv::start().await;
    env.issuer.set_anonymous_pull(&["team/*"]);
    let host = env.registry.host().to_string();
    let image = env.image("team/private:1.0");
    // Email only, `auth` of ":", a password without username, a username without
    // password: containerd presents none of them, so the token is asked anonymously.
    for entry in [
        r#"{"email":"ci@example.com"}"#,
        r#"{"auth":"Og=="}"#,
        r#"{"password":"p"}"#,
        r#"{"username":"alice"}"#,
    ] {
        env.issuer.reset_counters();
        let c = env.checker();
        let f = check_one(&c, &image, &raw_secret(&host, entry), SECONDS_10).await;
        assert_eq!(f.verdict, Verdict::Pullable, "{entry}: {}", f.message);
        assert!(
            env.issuer.requests().iter().all(|r| r.user.is_none()),
            "{entry}: credentials were sent: {:?}",
            env.issuer.requests()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_credential_still_matched_so_a_basic_registry_refuses_it() {
    support::init();
    let registry = Registry::start(
        RegistryOpts::plain().with_auth(RegistryAuth::htpasswd(&[("alice", "s3cret")])),
    )
    .await;
    push_oci_manifest(
        &registry.push_target(PushAuth::basic("alice", "s3cret")),
        "team/app",
        "1.0",
    )
    .await;
    let proxy = FaultProxy::for_registry(&registry).await;
    let c = checker(&[], &[proxy.host()]);
    let host = proxy.host();
    let image = format!("{host}/team/app:1.0");
    let f = check_one(
        &c,
        &image,
        &raw_secret(&host, r#"{"auth":"Og=="}"#),
        SECONDS_10,
    )
    .await;
    assert_eq!(f.verdict, Verdict::Unauthorized, "{}", f.message);
    assert!(f.message.contains("secret regcred"), "{}", f.message);
    assert_eq!(
        proxy.authorized_requests(),
        0,
        "no Basic header for an empty credential"
    );
    let f = check_one(
        &c,
        &image,
        &raw_secret(&host, r#"{"username":"alice"}"#),
        SECONDS_10,
    )
    .await;
    assert_eq!(f.verdict, Verdict::Unauthorized, "{}", f.message);
    assert!(f.message.contains("no password"), "{}", f.message);
    assert_eq!(proxy.authorized_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_asked_by_oauth_post_first_and_by_get_when_refused_there() {
    support::init();
    let pki = TestPki::new();
    let issuer = TokenIssuer::start(TokenIssuerOpts {
        tls: Some(&pki),
        oauth_post: true,
        ..Default::default()
    })
    .await;
    let registry = Registry::start(RegistryOpts::tls(&pki).with_auth(issuer.registry_auth())).await;
    push_oci_manifest(
        &registry.push_target(PushAuth::basic(ADMIN_USER, ADMIN_PASSWORD)),
        "team/private",
        "1.0",
    )
    .await;
    issuer.add_pull_only_user("alice", "alice-pw", &["team/*"]);
    issuer.reset_counters();
    let host = registry.host().to_string();
    let image = format!("{host}/team/private:1.0");
    let c = checker(&[pki.ca_pem()], &[]);
    let good = keyring(&[("a", &host, "alice", "alice-pw")]);
    let f = check_one(&c, &image, &good, SECONDS_10).await;
    assert_eq!(f.verdict, Verdict::Pullable, "{}", f.message);
    let methods: Vec<&str> = issuer.requests().iter().map(|r| r.method).collect();
    assert_eq!(
        methods,
        ["POST"],
        "containerd's password grant, nothing else"
    );
    // A refused POST (401) is tried again with GET and Basic, as containerd does.
    issuer.reset_counters();
    let wrong = keyring(&[("a", &host, "alice", "nope")]);
    let f = check_one(&c, &image, &wrong, SECONDS_10).await;
    assert_eq!(f.verdict, Verdict::Unauthorized, "{}", f.message);
    let methods: Vec<&str> = issuer.requests().iter().map(|r| r.method).collect();
    assert!(methods.starts_with(&["POST", "GET"]), "{methods:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_registry_costs_one_request_per_new_tag_and_tokens_are_reused() {
    let env = TokenEnv::start().await;
    let proxy = FaultProxy::for_registry(&env.registry).await;
    let t = env
        .registry
        .push_target(PushAuth::basic(ADMIN_USER, ADMIN_PASSWORD));
    tag_existing(&t, "team/private", "1.0", "1.1").await;
    let c = checker(&[env.pki.ca_pem()], &[proxy.host()]);
    let host = proxy.host();
    let creds = keyring(&[("a", &host, "alice", "alice-pw")]);
    let first = check_one(&c, &format!("{host}/team/private:1.0"), &creds, SECONDS_10).await;
    assert_eq!(first.verdict, Verdict::Pullable, "{}", first.message);
    let (requests, tokens) = (proxy.total_requests(), env.issuer.token_requests());
    // The same content under another tag: one manifest request, no new token.
    let second = check_one(&c, &format!("{host}/team/private:1.1"), &creds, SECONDS_10).await;
    assert_eq!(second.verdict, Verdict::Pullable, "{}", second.message);
    assert_eq!(
        proxy.total_requests() - requests,
        1,
        "{:?}",
        proxy.requests()
    );
    assert_eq!(env.issuer.token_requests(), tokens, "the token was reused");
    // A re-check of a known tag is one HEAD.
    c.cache().invalidate_all();
    let before = proxy.total_requests();
    let again = check_one(&c, &format!("{host}/team/private:1.0"), &creds, SECONDS_10).await;
    assert_eq!(again.verdict, Verdict::Pullable, "{}", again.message);
    assert_eq!(proxy.total_requests() - before, 1);
    assert_eq!(
        proxy.requests_to("HEAD", "/v2/team/private/manifests/1.0"),
        1
    );
}
