//! Self-tests of the integration-test harness in `tests/support`, run
//! against real distribution 2.8 registries so the other suites can rely on
//! it (and on the registry behaviours noted here).

use crate::support;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use support::push::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use support::token::{glob_match, libtrust_key_id, rfc3339};
use support::{
    ADMIN_PASSWORD, ADMIN_USER, AuthRecorder, Fault, FaultProxy, PushAuth, Registry, RegistryAuth,
    RegistryOpts, TestPki, TokenFailMode, TokenIssuer, TokenIssuerOpts,
};

fn header(resp: &reqwest::Response, name: impl reqwest::header::AsHeaderName) -> &str {
    resp.headers()
        .get(name)
        .map_or("", |v| v.to_str().expect("ASCII header"))
}

/// Whether an `io::ErrorKind::ConnectionReset` is anywhere in the chain.
fn is_connection_reset(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionReset)
        {
            return true;
        }
        cur = e.source();
    }
    false
}

/// HEAD a manifest anonymously (or with `auth`) and return the response.
async fn head(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    reference: &str,
    accept: &str,
    auth: Option<&str>,
) -> reqwest::Response {
    let mut req = client
        .head(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header(ACCEPT, accept);
    if let Some(a) = auth {
        req = req.header(reqwest::header::AUTHORIZATION, a);
    }
    req.send().await.expect("HEAD manifest")
}

#[test]
fn pure_helpers() {
    assert!(glob_match("*", "a/b"));
    assert!(glob_match("team/*", "team/app"));
    assert!(!glob_match("team/*", "other/app"));
    assert!(glob_match("a/b", "a/b"));
    assert!(!glob_match("a/b", "a/bc"));
    assert!(glob_match("*/app", "x/y/app"));
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
    let kid = libtrust_key_id(b"anything");
    assert_eq!(kid.len(), 12 * 4 + 11, "{kid}");
    assert!(kid.split(':').all(|g| g.len() == 4), "{kid}");
    let (scheme, params) = support::parse_challenge(
        r#"Bearer realm="http://x/token",service="svc",scope="repository:a/b:pull,push",error="insufficient_scope""#,
    );
    assert_eq!(scheme, "Bearer");
    assert_eq!(params["scope"], "repository:a/b:pull,push");
    assert_eq!(params["error"], "insufficient_scope");
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_tls_registry_serves_every_manifest_kind() {
    support::init();
    let pki = TestPki::new();
    let reg = Registry::start(RegistryOpts::tls(&pki)).await;
    let target = reg.push_target(PushAuth::None);
    let client = reg.client();
    let base = reg.base_url();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");

    let oci = support::push_oci_manifest(&target, "app/oci", "v1").await;
    let docker = support::push_docker_manifest(&target, "app/docker", "v1").await;
    let platforms = [("linux", "amd64", None), ("linux", "arm64", Some("v8"))];
    let index = support::push_oci_index(&target, "app/index", "v1", &platforms, true).await;
    let list = support::push_docker_manifest_list(&target, "app/list", "v1", &platforms).await;

    for (repo, digest, media_type) in [
        ("app/oci", &oci, OCI_MANIFEST),
        ("app/docker", &docker, DOCKER_MANIFEST),
        ("app/index", &index, OCI_INDEX),
        ("app/list", &list, DOCKER_MANIFEST_LIST),
    ] {
        let resp = head(
            &client,
            &base,
            repo,
            "v1",
            support::ALL_MANIFEST_TYPES,
            None,
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK, "{repo}");
        assert_eq!(header(&resp, "docker-content-digest"), digest, "{repo}");
        assert_eq!(header(&resp, CONTENT_TYPE), media_type, "{repo}");
        // Only the matching type in Accept is enough too.
        let resp = head(&client, &base, repo, digest, media_type, None).await;
        assert_eq!(resp.status(), StatusCode::OK, "{repo} by digest");
    }

    // distribution 2.8: an OCI manifest asked for without OCI types is "unknown".
    let resp = head(&client, &base, "app/oci", "v1", DOCKER_MANIFEST, None).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // ... an OCI index likewise, even if Docker list types are accepted.
    let resp = head(
        &client,
        &base,
        "app/index",
        "v1",
        DOCKER_MANIFEST_LIST,
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // A Docker v2 manifest without its type in Accept: 400 MANIFEST_INVALID
    // (the failed schema 1 down-conversion), not 404.
    let resp = head(&client, &base, "app/docker", "v1", OCI_MANIFEST, None).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // A Docker list without the list type in Accept: 200 with the
    // linux/amd64 child (its digest and media type), not the list.
    let amd64 = support::fetch_manifest(&target, "app/list", "v1")
        .await
        .json()["manifests"][0]["digest"]
        .as_str()
        .expect("child digest")
        .to_owned();
    let resp = head(&client, &base, "app/list", "v1", DOCKER_MANIFEST, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, CONTENT_TYPE), DOCKER_MANIFEST);
    assert_eq!(header(&resp, "docker-content-digest"), amd64);
    // A missing tag: 404 (HEAD has no body).
    let resp = head(&client, &base, "app/oci", "nope", OCI_MANIFEST, None).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    let fetched = support::fetch_manifest(&target, "app/index", "v1").await;
    assert_eq!(fetched.digest, index);
    let children = fetched.json()["manifests"]
        .as_array()
        .expect("manifests")
        .clone();
    assert_eq!(children.len(), 3, "two platforms + attestation");
    assert_eq!(children[2]["platform"]["os"], "unknown");
    assert_eq!(
        children[2]["annotations"]["vnd.docker.reference.type"],
        "attestation-manifest"
    );

    let retagged = support::tag_existing(&target, "app/list", "v1", "v2").await;
    assert_eq!(retagged, list);

    support::delete_manifest(&target, "app/docker", &docker).await;
    let resp = head(&client, &base, "app/docker", "v1", DOCKER_MANIFEST, None).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "deleted manifest");

    // HTTPS proxy and HTTPS sink (on 127.0.0.2) signed by the same CA.
    let proxy = FaultProxy::start_tls(&base, reg.ca_pem_path(), &pki).await;
    let resp = head(
        &client,
        &proxy.base_url(),
        "app/oci",
        "v1",
        OCI_MANIFEST,
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "docker-content-digest"), oci);
    let sink = AuthRecorder::start_tls(&pki).await;
    proxy.set_fault(Fault::redirect_to(&sink.base_url()));
    let resp = client
        .get(format!("{}/v2/", proxy.base_url()))
        .send()
        .await
        .expect("GET via proxy");
    assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
    let location = header(&resp, reqwest::header::LOCATION).to_owned();
    assert_eq!(location, format!("{}/v2/", sink.base_url()));
    let resp = client.get(&location).send().await.expect("GET sink");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(sink.total_requests(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn htpasswd_registry_challenges_basic() {
    support::init();
    let auth = RegistryAuth::htpasswd(&[("alice", "wonderland"), ("bob", "builder")]);
    let reg = Registry::start(RegistryOpts::plain().with_auth(auth)).await;
    let client = reg.client();
    let url = format!("{}/v2/", reg.base_url());

    let resp = client.get(&url).send().await.expect("GET /v2/");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(
        header(&resp, WWW_AUTHENTICATE).starts_with("Basic "),
        "{resp:?}"
    );

    let resp = client
        .get(&url)
        .basic_auth("alice", Some("wonderland"))
        .send()
        .await
        .expect("GET /v2/");
    assert_eq!(resp.status(), StatusCode::OK);

    let resp = client
        .get(&url)
        .basic_auth("alice", Some("wrong"))
        .send()
        .await
        .expect("GET /v2/");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let target = reg.push_target(PushAuth::basic("bob", "builder"));
    let digest = support::push_oci_manifest(&target, "private/app", "v1").await;
    let (status, headers) =
        support::head_manifest(&target, "private/app", "v1", OCI_MANIFEST).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["docker-content-digest"], digest.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn token_registry_grants_and_denies() {
    support::init();
    let pki = TestPki::new();
    // HTTPS token endpoint, signed by the same test CA as the registry.
    let issuer = TokenIssuer::start(TokenIssuerOpts {
        tls: Some(&pki),
        anonymous_pull: vec!["public/*".to_owned()],
        ..TokenIssuerOpts::default()
    })
    .await;
    assert!(issuer.realm().starts_with("https://127.0.0.1:"));
    issuer.add_user("alice", "alice-pw", &["team/*"]);
    issuer.add_user("bob", "bob-pw", &["other/*"]);
    let reg = Registry::start(RegistryOpts::tls(&pki).with_auth(issuer.registry_auth())).await;
    let client = reg.client();
    let base = reg.base_url();

    let admin = reg.push_target(PushAuth::admin());
    let digest = support::push_oci_manifest(&admin, "team/app", "v1").await;
    support::push_oci_manifest(&admin, "public/app", "v1").await;
    assert!(issuer.token_requests_for(Some(ADMIN_USER)) >= 1);

    // Anonymous: Bearer challenge naming realm, service and scope.
    let resp = head(&client, &base, "team/app", "v1", OCI_MANIFEST, None).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (scheme, challenge) = support::parse_challenge(header(&resp, WWW_AUTHENTICATE));
    assert_eq!(scheme, "Bearer");
    assert_eq!(challenge["realm"], issuer.realm());
    assert_eq!(challenge["service"], issuer.service());
    assert_eq!(challenge["scope"], "repository:team/app:pull");

    let token_for = |user: Option<(&str, &str)>, scope: &str| {
        let mut url = reqwest::Url::parse(issuer.realm()).expect("realm URL");
        url.query_pairs_mut()
            .append_pair("service", issuer.service())
            .append_pair("scope", scope);
        let mut req = client.get(url);
        if let Some((u, p)) = user {
            req = req.basic_auth(u, Some(p));
        }
        req.send()
    };

    // A user with access gets a token that works.
    let resp = token_for(Some(("alice", "alice-pw")), "repository:team/app:pull")
        .await
        .expect("token");
    assert_eq!(resp.status(), StatusCode::OK);
    let body: serde_json::Value =
        serde_json::from_slice(&resp.bytes().await.expect("body")).expect("JSON");
    let token = body["token"].as_str().expect("token").to_owned();
    assert_eq!(body["access_token"], token.as_str());
    assert_eq!(body["expires_in"], 300);
    let resp = head(
        &client,
        &base,
        "team/app",
        "v1",
        OCI_MANIFEST,
        Some(&format!("Bearer {token}")),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK, "{}", reg.logs());
    assert_eq!(header(&resp, "docker-content-digest"), digest);

    // A user without access still gets a token, with empty access.
    let resp = token_for(Some(("bob", "bob-pw")), "repository:team/app:pull")
        .await
        .expect("token");
    assert_eq!(resp.status(), StatusCode::OK);
    let body: serde_json::Value =
        serde_json::from_slice(&resp.bytes().await.expect("body")).expect("JSON");
    let bob = body["token"].as_str().expect("token");
    let resp = head(
        &client,
        &base,
        "team/app",
        "v1",
        OCI_MANIFEST,
        Some(&format!("Bearer {bob}")),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(
        header(&resp, WWW_AUTHENTICATE).contains(r#"error="insufficient_scope""#),
        "{resp:?}"
    );

    // Wrong password: the token endpoint itself says 401.
    let resp = token_for(Some(("alice", "nope")), "repository:team/app:pull")
        .await
        .expect("token");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value =
        serde_json::from_slice(&resp.bytes().await.expect("body")).expect("JSON");
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED");

    // Anonymous pull of a public repository.
    let resp = token_for(None, "repository:public/app:pull")
        .await
        .expect("token");
    let body: serde_json::Value =
        serde_json::from_slice(&resp.bytes().await.expect("body")).expect("JSON");
    let anon = body["token"].as_str().expect("token");
    let resp = head(
        &client,
        &base,
        "public/app",
        "v1",
        OCI_MANIFEST,
        Some(&format!("Bearer {anon}")),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);

    // Failure modes of the token endpoint.
    issuer.reset_counters();
    issuer.set_fail_mode(TokenFailMode::Status(500));
    let resp = token_for(Some(("alice", "alice-pw")), "repository:team/app:pull")
        .await
        .expect("token");
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);

    issuer.set_fail_mode(TokenFailMode::Hang);
    let err = client
        .get(issuer.realm())
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .expect_err("hung token endpoint");
    assert!(err.is_timeout(), "{err:?}");

    issuer.set_fail_mode(TokenFailMode::Delay(Duration::from_millis(200)));
    let started = std::time::Instant::now();
    let resp = token_for(Some(("alice", "alice-pw")), "repository:team/app:pull")
        .await
        .expect("token");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(issuer.token_requests(), 3);
    assert_eq!(issuer.token_requests_for(Some("alice")), 2);
    assert_eq!(issuer.token_requests_for(None), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn minted_tokens_verify() {
    support::init();
    let issuer = TokenIssuer::start(TokenIssuerOpts::default()).await;
    let reg = Registry::start(RegistryOpts::plain().with_auth(issuer.registry_auth())).await;
    assert!(issuer.realm().starts_with("http://127.0.0.1:"));
    let target = reg.push_target(PushAuth::basic(ADMIN_USER, ADMIN_PASSWORD));
    support::push_docker_manifest(&target, "lib/x", "v1").await;

    let client = reg.client();
    let base = reg.base_url();
    let good = issuer.mint_token("someone", &[("lib/x", &["pull"])], 60);
    let resp = head(
        &client,
        &base,
        "lib/x",
        "v1",
        DOCKER_MANIFEST,
        Some(&format!("Bearer {good}")),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    // Expired beyond distribution's 60 s leeway.
    let expired = issuer.mint_token("someone", &[("lib/x", &["pull"])], -120);
    let resp = head(
        &client,
        &base,
        "lib/x",
        "v1",
        DOCKER_MANIFEST,
        Some(&format!("Bearer {expired}")),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_injects_faults_and_recorder_sees_auth() {
    support::init();
    let reg = Registry::start(RegistryOpts::plain()).await;
    let target = reg.push_target(PushAuth::None);
    let digest = support::push_oci_manifest(&target, "lib/app", "v1").await;
    let proxy = FaultProxy::for_registry(&reg).await;
    let client = support::http_client(None);
    let base = proxy.base_url();
    let path = "/v2/lib/app/manifests/v1";

    // Forward: relayed verbatim, Content-Length of the HEAD included.
    let resp = head(
        &client,
        &base,
        "lib/app",
        "v1",
        OCI_MANIFEST,
        Some("Bearer abc"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "docker-content-digest"), digest);
    let direct = head(
        &client,
        &reg.base_url(),
        "lib/app",
        "v1",
        OCI_MANIFEST,
        None,
    )
    .await;
    assert_eq!(
        header(&resp, CONTENT_LENGTH),
        header(&direct, CONTENT_LENGTH)
    );
    assert_eq!(proxy.requests_to("HEAD", path), 1);
    assert_eq!(proxy.authorized_requests(), 1);

    proxy.set_fault(Fault::too_many_requests("30"));
    let resp = head(&client, &base, "lib/app", "v1", OCI_MANIFEST, None).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&resp, RETRY_AFTER), "30");

    proxy.set_fault(Fault::status(500));
    let resp = head(&client, &base, "lib/app", "v1", OCI_MANIFEST, None).await;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);

    proxy.set_fault(Fault::Hang);
    let err = client
        .head(format!("{base}{path}"))
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .expect_err("hung proxy");
    assert!(err.is_timeout(), "{err:?}");

    proxy.set_fault(Fault::Reset);
    let err = client
        .head(format!("{base}{path}"))
        .send()
        .await
        .expect_err("reset connection");
    assert!(is_connection_reset(&err), "{err:?}");

    // Path-scoped fault: manifests fail, the rest is forwarded.
    proxy.clear_faults();
    proxy.set_fault_for("/manifests/", Fault::status(503));
    let resp = client
        .get(format!("{base}/v2/"))
        .send()
        .await
        .expect("GET /v2/");
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = head(&client, &base, "lib/app", "v1", OCI_MANIFEST, None).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);

    proxy.set_fault_for("/manifests/", Fault::Delay(Duration::from_millis(100)));
    let resp = head(&client, &base, "lib/app", "v1", OCI_MANIFEST, None).await;
    assert_eq!(resp.status(), StatusCode::OK);

    // Redirect to another host: reqwest follows it and drops credentials.
    let sink = AuthRecorder::start().await;
    let sink_digest = sink.answer_as_manifest(OCI_MANIFEST, r#"{"schemaVersion":2}"#);
    proxy.set_fault_for("/manifests/", Fault::redirect_to(&sink.base_url()));
    let following = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let before = proxy.authorized_requests();
    let resp = following
        .head(format!("{base}{path}"))
        .bearer_auth("secret")
        .send()
        .await
        .expect("redirected HEAD");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "docker-content-digest"), sink_digest);
    assert_eq!(proxy.authorized_requests(), before + 1);
    assert_eq!(sink.total_requests(), 1);
    assert_eq!(sink.requests()[0].path, path);
    assert_eq!(
        sink.authorized_requests(),
        0,
        "credentials leaked across hosts"
    );
    assert_eq!(proxy.requests_to("HEAD", path), 8);
}
