//! Pushing small test images to a registry over the distribution HTTP API
//! (blob upload + manifest PUT), with Basic or Bearer-token auth handled
//! the way a docker client does it: try, and on a `401` with a `Bearer`
//! challenge fetch a token from the challenge's realm and retry once.
//!
//! Every function panics with a descriptive message on failure: they are
//! test fixtures, and a failed push means the test cannot proceed anyway.
//! Blobs contain random bytes, so every push yields fresh digests.

use std::collections::HashMap;
use std::path::PathBuf;

use axum::body::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::token::{ADMIN_PASSWORD, ADMIN_USER};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

/// `(os, architecture, variant)`, e.g. `("linux", "arm64", Some("v8"))`.
pub type Platform<'a> = (&'a str, &'a str, Option<&'a str>);

/// Credentials used when pushing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PushAuth {
    /// Anonymous.
    #[default]
    None,
    /// `(user, password)`: sent as Basic to the registry, and to the token
    /// realm when the registry answers with a Bearer challenge.
    Basic(String, String),
}

impl PushAuth {
    pub fn basic(user: &str, password: &str) -> Self {
        Self::Basic(user.to_owned(), password.to_owned())
    }

    /// The token issuer's default full-access user.
    pub fn admin() -> Self {
        Self::basic(ADMIN_USER, ADMIN_PASSWORD)
    }
}

/// Where and as whom to push.
#[derive(Debug, Clone)]
pub struct PushTarget {
    /// `http(s)://host:port`, no trailing slash.
    pub base_url: String,
    /// CA that verifies the registry **and** the token realm, if HTTPS.
    pub ca_pem: Option<PathBuf>,
    pub auth: PushAuth,
}

impl PushTarget {
    pub fn new(base_url: impl Into<String>, ca_pem: Option<PathBuf>, auth: PushAuth) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            ca_pem,
            auth,
        }
    }
}

/// A manifest as served by `GET /v2/<repo>/manifests/<ref>`.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub content_type: String,
    /// `Docker-Content-Digest` header.
    pub digest: String,
    pub body: Bytes,
}

impl FetchedManifest {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("manifest body is JSON")
    }
}

/// Push a single-platform OCI image manifest (linux/amd64) under `tag`.
pub async fn push_oci_manifest(target: &PushTarget, repo: &str, tag: &str) -> String {
    let mut s = Session::new(target);
    let (body, _) = image_manifest(&mut s, repo, Flavor::Oci, ("linux", "amd64", None)).await;
    s.put_manifest(repo, tag, OCI_MANIFEST, body).await
}

/// Push a single-platform Docker schema 2 image manifest (linux/amd64).
pub async fn push_docker_manifest(target: &PushTarget, repo: &str, tag: &str) -> String {
    let mut s = Session::new(target);
    let (body, _) = image_manifest(&mut s, repo, Flavor::Docker, ("linux", "amd64", None)).await;
    s.put_manifest(repo, tag, DOCKER_MANIFEST, body).await
}

/// Push an OCI image index under `tag`: one child manifest per platform
/// (pushed by digest first, as distribution requires) plus, optionally, a
/// buildx-style attestation manifest (`unknown/unknown`) for the first
/// platform. Returns the index digest; see [`fetch_manifest`] for children.
pub async fn push_oci_index(
    target: &PushTarget,
    repo: &str,
    tag: &str,
    platforms: &[Platform<'_>],
    with_attestation: bool,
) -> String {
    push_list(target, repo, tag, platforms, with_attestation, Flavor::Oci).await
}

/// Push a Docker manifest list of schema 2 children (one per platform).
pub async fn push_docker_manifest_list(
    target: &PushTarget,
    repo: &str,
    tag: &str,
    platforms: &[Platform<'_>],
) -> String {
    push_list(target, repo, tag, platforms, false, Flavor::Docker).await
}

/// Re-tag: GET `from` (tag or digest) with every manifest type accepted and
/// PUT the identical bytes under `new_tag`. Returns the (unchanged) digest.
pub async fn tag_existing(target: &PushTarget, repo: &str, from: &str, new_tag: &str) -> String {
    let mut s = Session::new(target);
    let m = s.get_manifest(repo, from).await;
    s.put_manifest(repo, new_tag, &m.content_type, m.body).await
}

/// Upload one blob (monolithic: POST then PUT with `digest`); returns its digest.
pub async fn push_blob(target: &PushTarget, repo: &str, data: Vec<u8>) -> String {
    Session::new(target)
        .upload_blob(repo, Bytes::from(data))
        .await
}

/// PUT arbitrary manifest bytes under `reference` with `media_type`;
/// returns the digest the registry reports (checked against our own).
pub async fn push_manifest_raw(
    target: &PushTarget,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: Vec<u8>,
) -> String {
    Session::new(target)
        .put_manifest(repo, reference, media_type, Bytes::from(body))
        .await
}

/// GET a manifest with every supported type in `Accept`.
pub async fn fetch_manifest(target: &PushTarget, repo: &str, reference: &str) -> FetchedManifest {
    Session::new(target).get_manifest(repo, reference).await
}

/// HEAD a manifest with the given `Accept` (auth handled); returns the
/// status and headers without judging them.
pub async fn head_manifest(
    target: &PushTarget,
    repo: &str,
    reference: &str,
    accept: &str,
) -> (StatusCode, HeaderMap) {
    let mut s = Session::new(target);
    let url = format!("{}/v2/{repo}/manifests/{reference}", target.base_url);
    let resp = s
        .send(Method::HEAD, &url, &[(ACCEPT.as_str(), accept)], None)
        .await;
    (resp.status(), resp.headers().clone())
}

/// DELETE a manifest by digest (the registry has deletes enabled).
pub async fn delete_manifest(target: &PushTarget, repo: &str, digest: &str) {
    let mut s = Session::new(target);
    let url = format!("{}/v2/{repo}/manifests/{digest}", target.base_url);
    let resp = s.send(Method::DELETE, &url, &[], None).await;
    expect_status(resp, StatusCode::ACCEPTED, &format!("DELETE {url}")).await;
}

/// Parse a `WWW-Authenticate` header: `(scheme, params)` with lower-cased
/// parameter names and unquoted values (commas inside quotes are kept).
pub fn parse_challenge(header: &str) -> (String, HashMap<String, String>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    (scheme.to_owned(), params)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Oci,
    Docker,
}

impl Flavor {
    fn manifest(self) -> &'static str {
        match self {
            Self::Oci => OCI_MANIFEST,
            Self::Docker => DOCKER_MANIFEST,
        }
    }
    fn list(self) -> &'static str {
        match self {
            Self::Oci => OCI_INDEX,
            Self::Docker => DOCKER_MANIFEST_LIST,
        }
    }
    fn config(self) -> &'static str {
        match self {
            Self::Oci => OCI_CONFIG,
            Self::Docker => DOCKER_CONFIG,
        }
    }
    fn layer(self) -> &'static str {
        match self {
            Self::Oci => OCI_LAYER,
            Self::Docker => DOCKER_LAYER,
        }
    }
}

fn platform_json((os, arch, variant): Platform<'_>) -> Value {
    let mut p = json!({ "architecture": arch, "os": os });
    if let Some(v) = variant {
        p["variant"] = json!(v);
    }
    p
}

fn descriptor(media_type: &str, body: &[u8]) -> Value {
    json!({
        "mediaType": media_type,
        "digest": super::sha256_digest(body),
        "size": body.len(),
    })
}

/// Upload a config + one random layer and return the (unpushed) manifest
/// bytes plus its digest.
async fn image_manifest(
    s: &mut Session<'_>,
    repo: &str,
    flavor: Flavor,
    platform: Platform<'_>,
) -> (Bytes, String) {
    let layer = Bytes::from(super::random_bytes(64));
    let layer_digest = s.upload_blob(repo, layer.clone()).await;
    let mut config = platform_json(platform);
    config["rootfs"] = json!({ "type": "layers", "diff_ids": [layer_digest] });
    config["config"] =
        json!({ "Labels": { "pullgate.test.nonce": super::hex(&super::random_bytes(8)) } });
    let config = Bytes::from(config.to_string());
    s.upload_blob(repo, config.clone()).await;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": flavor.manifest(),
        "config": descriptor(flavor.config(), &config),
        "layers": [descriptor(flavor.layer(), &layer)],
    });
    let body = Bytes::from(manifest.to_string());
    let digest = super::sha256_digest(&body);
    (body, digest)
}

/// A buildx-style attestation manifest for `subject` (pushed by digest).
async fn attestation_manifest(s: &mut Session<'_>, repo: &str, subject: &str) -> Value {
    let statement = Bytes::from(
        json!({
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": "https://spdx.dev/Document",
            "subject": [{ "name": repo, "digest": { "sha256": subject.trim_start_matches("sha256:") } }],
            "predicate": {},
        })
        .to_string(),
    );
    s.upload_blob(repo, statement.clone()).await;
    let config = Bytes::from(
        json!({ "architecture": "unknown", "os": "unknown", "config": {},
                "rootfs": { "type": "layers", "diff_ids": [super::sha256_digest(&statement)] } })
        .to_string(),
    );
    s.upload_blob(repo, config.clone()).await;
    let mut layer = descriptor(IN_TOTO, &statement);
    layer["annotations"] = json!({ "in-toto.io/predicate-type": "https://spdx.dev/Document" });
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config),
        "layers": [layer],
    });
    let body = Bytes::from(manifest.to_string());
    let digest = s
        .put_manifest(
            repo,
            &super::sha256_digest(&body),
            OCI_MANIFEST,
            body.clone(),
        )
        .await;
    let mut entry = descriptor(OCI_MANIFEST, &body);
    entry["digest"] = json!(digest);
    entry["platform"] = json!({ "architecture": "unknown", "os": "unknown" });
    entry["annotations"] = json!({
        "vnd.docker.reference.digest": subject,
        "vnd.docker.reference.type": "attestation-manifest",
    });
    entry
}

async fn push_list(
    target: &PushTarget,
    repo: &str,
    tag: &str,
    platforms: &[Platform<'_>],
    with_attestation: bool,
    flavor: Flavor,
) -> String {
    assert!(
        !platforms.is_empty(),
        "an index needs at least one platform"
    );
    let mut s = Session::new(target);
    let mut entries = Vec::new();
    for &platform in platforms {
        let (body, digest) = image_manifest(&mut s, repo, flavor, platform).await;
        let mut entry = descriptor(flavor.manifest(), &body);
        entry["platform"] = platform_json(platform);
        s.put_manifest(repo, &digest, flavor.manifest(), body).await;
        entries.push(entry);
    }
    if with_attestation {
        let subject = entries[0]["digest"]
            .as_str()
            .expect("descriptor digest is a string")
            .to_owned();
        entries.push(attestation_manifest(&mut s, repo, &subject).await);
    }
    let list = json!({
        "schemaVersion": 2,
        "mediaType": flavor.list(),
        "manifests": entries,
    });
    s.put_manifest(repo, tag, flavor.list(), Bytes::from(list.to_string()))
        .await
}

/// One push conversation: a client plus the current Bearer token.
struct Session<'a> {
    target: &'a PushTarget,
    client: reqwest::Client,
    bearer: Option<String>,
}

impl<'a> Session<'a> {
    fn new(target: &'a PushTarget) -> Self {
        Self {
            target,
            client: super::http_client(target.ca_pem.as_deref()),
            bearer: None,
        }
    }

    /// Send with current credentials; on a Bearer challenge fetch a token
    /// for the challenged scope and retry once.
    async fn send(
        &mut self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> reqwest::Response {
        let mut retried = false;
        loop {
            let mut req = self.client.request(method.clone(), url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            if let Some(b) = &body {
                req = req.body(b.clone());
            }
            req = match (&self.bearer, &self.target.auth) {
                (Some(token), _) => req.bearer_auth(token),
                (None, PushAuth::Basic(u, p)) => req.basic_auth(u, Some(p)),
                (None, PushAuth::None) => req,
            };
            let resp = req
                .send()
                .await
                .unwrap_or_else(|e| panic!("{method} {url} failed: {e}"));
            if resp.status() != StatusCode::UNAUTHORIZED || retried {
                return resp;
            }
            let challenge = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(parse_challenge);
            match challenge {
                Some((scheme, params)) if scheme.eq_ignore_ascii_case("bearer") => {
                    self.bearer = Some(self.fetch_token(&params).await);
                    retried = true;
                }
                _ => return resp,
            }
        }
    }

    async fn fetch_token(&self, challenge: &HashMap<String, String>) -> String {
        let realm = challenge
            .get("realm")
            .unwrap_or_else(|| panic!("Bearer challenge without realm: {challenge:?}"));
        let mut url = reqwest::Url::parse(realm)
            .unwrap_or_else(|e| panic!("Bearer realm {realm:?} is not a URL: {e}"));
        {
            let mut q = url.query_pairs_mut();
            for key in ["service", "scope"] {
                if let Some(v) = challenge.get(key) {
                    q.append_pair(key, v);
                }
            }
            if let PushAuth::Basic(user, _) = &self.target.auth {
                q.append_pair("account", user);
            }
        }
        let mut req = self.client.get(url.clone());
        if let PushAuth::Basic(u, p) = &self.target.auth {
            req = req.basic_auth(u, Some(p));
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("token request {url} failed: {e}"));
        let resp = expect_status(resp, StatusCode::OK, &format!("token request {url}")).await;
        let body: Value = serde_json::from_slice(&resp.bytes().await.expect("token body"))
            .unwrap_or_else(|e| panic!("token response from {url} is not JSON: {e}"));
        body.get("token")
            .or_else(|| body.get("access_token"))
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("token response without token: {body}"))
            .to_owned()
    }

    async fn upload_blob(&mut self, repo: &str, data: Bytes) -> String {
        let digest = super::sha256_digest(&data);
        let base = self.target.base_url.clone();
        let url = format!("{base}/v2/{repo}/blobs/uploads/");
        let resp = self.send(Method::POST, &url, &[], None).await;
        let resp = expect_status(resp, StatusCode::ACCEPTED, &format!("POST {url}")).await;
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("POST {url}: 202 without Location"))
            .to_owned();
        let mut put_url = if location.starts_with('/') {
            format!("{base}{location}")
        } else {
            location
        };
        put_url.push(if put_url.contains('?') { '&' } else { '?' });
        put_url.push_str("digest=");
        put_url.push_str(&digest);
        let resp = self
            .send(
                Method::PUT,
                &put_url,
                &[(CONTENT_TYPE.as_str(), "application/octet-stream")],
                Some(data),
            )
            .await;
        expect_status(resp, StatusCode::CREATED, &format!("PUT {put_url}")).await;
        digest
    }

    async fn put_manifest(
        &mut self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: Bytes,
    ) -> String {
        let expected = super::sha256_digest(&body);
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.target.base_url);
        let resp = self
            .send(
                Method::PUT,
                &url,
                &[(CONTENT_TYPE.as_str(), media_type)],
                Some(body),
            )
            .await;
        let resp = expect_status(resp, StatusCode::CREATED, &format!("PUT {url}")).await;
        let digest = header_str(resp.headers(), "docker-content-digest")
            .unwrap_or_else(|| panic!("PUT {url}: 201 without Docker-Content-Digest"));
        assert_eq!(
            digest, expected,
            "PUT {url}: registry digest differs from ours"
        );
        digest
    }

    async fn get_manifest(&mut self, repo: &str, reference: &str) -> FetchedManifest {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.target.base_url);
        let resp = self
            .send(
                Method::GET,
                &url,
                &[(ACCEPT.as_str(), super::ALL_MANIFEST_TYPES)],
                None,
            )
            .await;
        let resp = expect_status(resp, StatusCode::OK, &format!("GET {url}")).await;
        let content_type = header_str(resp.headers(), "content-type")
            .unwrap_or_else(|| panic!("GET {url}: no Content-Type"));
        let digest = header_str(resp.headers(), "docker-content-digest")
            .unwrap_or_else(|| panic!("GET {url}: no Docker-Content-Digest"));
        let body = resp.bytes().await.expect("reading manifest body");
        FetchedManifest {
            content_type,
            digest,
            body,
        }
    }
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Pass `resp` through if it has `want`, else panic with status and body.
async fn expect_status(resp: reqwest::Response, want: StatusCode, what: &str) -> reqwest::Response {
    if resp.status() == want {
        return resp;
    }
    let status = resp.status();
    let headers = format!("{:?}", resp.headers());
    let body = resp.text().await.unwrap_or_default();
    panic!("{what}: expected {want}, got {status}\nheaders: {headers}\nbody: {body}");
}
