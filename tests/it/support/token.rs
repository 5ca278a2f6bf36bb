//! A Docker registry token issuer (the `auth.token` protocol of
//! distribution), so tests can exercise pullgate's Bearer-token flow against
//! a real registry and inject token-endpoint failures.
//!
//! `GET /token?service=S&scope=repository:NAME:pull[,push]&account=A` with
//! optional Basic auth returns `{"token","access_token","expires_in",
//! "issued_at"}`. Tokens are ES256 JWTs whose `kid` is the libtrust key ID
//! of the signing key, which is how distribution 2.8 finds the verifying key
//! in its `rootcertbundle` when the JWT has no `x5c` chain.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256, PublicKeyData,
};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::json;
use tempfile::TempDir;

use super::certs::TestPki;
use super::registry::RegistryAuth;
use super::server::{self, ServerHandle};

/// User created by default with pull+push on every repository, so tests can
/// push through a token-auth registry.
pub const ADMIN_USER: &str = "admin";
/// Password of [`ADMIN_USER`].
pub const ADMIN_PASSWORD: &str = "admin-secret";

/// Default `expires_in` of issued tokens, in seconds.
pub const DEFAULT_TTL_SECS: u64 = 300;

/// Options for [`TokenIssuer::start`].
#[derive(Debug, Clone)]
pub struct TokenIssuerOpts<'a> {
    /// Serve HTTPS with a leaf from this PKI; plain HTTP if `None`.
    pub tls: Option<&'a TestPki>,
    /// `aud` claim and the registry's `auth.token.service`.
    pub service: String,
    /// `iss` claim and the registry's `auth.token.issuer`.
    pub issuer: String,
    /// Repository patterns anonymous clients may pull (see [`glob_match`]).
    pub anonymous_pull: Vec<String>,
    /// Also answer the OAuth2 password grant POSTed to the realm (Docker Hub and most
    /// token servers do; containerd tries it first whenever it has a password).
    /// Without it, a POST gets 405 and clients fall back to GET.
    pub oauth_post: bool,
}

impl Default for TokenIssuerOpts<'_> {
    fn default() -> Self {
        Self {
            tls: None,
            service: "pullgate-test-registry".to_owned(),
            issuer: "pullgate-test-token-issuer".to_owned(),
            anonymous_pull: Vec::new(),
            oauth_post: false,
        }
    }
}

/// How the token endpoint misbehaves (set at runtime).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TokenFailMode {
    /// Answer normally.
    #[default]
    Normal,
    /// Accept the request and never answer.
    Hang,
    /// Answer this HTTP status with a JSON error body.
    Status(u16),
    /// Answer normally after this delay.
    Delay(Duration),
}

/// One request seen by the token endpoint (recorded before any failure mode
/// applies, so hung requests are counted too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// User from the Basic `Authorization` header; `None` = anonymous.
    pub user: Option<String>,
    /// The `account` query parameter, if sent.
    pub account_param: Option<String>,
    /// The `service` query parameter, if sent.
    pub service: Option<String>,
    /// Every requested scope (repeated `scope` params, space-split).
    pub scopes: Vec<String>,
    /// `GET` (token with Basic auth) or `POST` (OAuth2 password grant).
    pub method: &'static str,
}

#[derive(Debug, Clone)]
struct User {
    password: String,
    pull: Vec<String>,
    push: Vec<String>,
}

struct Shared {
    service: String,
    issuer: String,
    kid: String,
    key: EcdsaKeyPair,
    users: Mutex<HashMap<String, User>>,
    anonymous_pull: Mutex<Vec<String>>,
    fail: Mutex<TokenFailMode>,
    ttl_secs: Mutex<u64>,
    log: Mutex<Vec<TokenRequest>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().expect("token issuer state mutex poisoned")
}

/// A running token issuer; the server task stops when this is dropped.
pub struct TokenIssuer {
    shared: Arc<Shared>,
    server: ServerHandle,
    dir: TempDir,
    realm: String,
    root_cert_bundle: PathBuf,
    ca_pem: Option<PathBuf>,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("realm", &self.realm)
            .field("service", &self.shared.service)
            .field("issuer", &self.shared.issuer)
            .field("kid", &self.shared.kid)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// Generate a signing key, write its self-signed root cert and start
    /// serving `/token` on 127.0.0.1. [`ADMIN_USER`] exists with full access.
    pub async fn start(opts: TokenIssuerOpts<'_>) -> TokenIssuer {
        super::init();
        let dir = tempfile::Builder::new()
            .prefix("pullgate-token-")
            .tempdir()
            .expect("creating token issuer temp dir");

        let signing = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .expect("generating the token signing key");
        let kid = libtrust_key_id(&signing.subject_public_key_info());
        let mut params =
            CertificateParams::new(Vec::<String>::new()).expect("empty SAN list is valid");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "pullgate test token signer");
        params.distinguished_name = dn;
        let root = params
            .self_signed(&signing)
            .expect("self-signing the token root cert");
        let root_cert_bundle = dir.path().join("token-root.pem");
        std::fs::write(&root_cert_bundle, root.pem()).expect("writing token root cert bundle");
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &signing.serialize_der(),
            &SystemRandom::new(),
        )
        .expect("ring accepts the rcgen PKCS#8 key");

        let mut users = HashMap::new();
        users.insert(
            ADMIN_USER.to_owned(),
            User {
                password: ADMIN_PASSWORD.to_owned(),
                pull: vec!["*".to_owned()],
                push: vec!["*".to_owned()],
            },
        );
        let shared = Arc::new(Shared {
            service: opts.service,
            issuer: opts.issuer,
            kid,
            key,
            users: Mutex::new(users),
            anonymous_pull: Mutex::new(opts.anonymous_pull),
            fail: Mutex::new(TokenFailMode::Normal),
            ttl_secs: Mutex::new(DEFAULT_TTL_SECS),
            log: Mutex::new(Vec::new()),
        });

        let (tls, ca_pem) = match opts.tls {
            Some(pki) => {
                let ca = dir.path().join("ca.pem");
                std::fs::copy(pki.ca_pem(), &ca).expect("copying the token server CA");
                (Some(pki.server_leaf().server_config()), Some(ca))
            }
            None => (None, None),
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let route = if opts.oauth_post {
            get(token_handler).post(oauth_handler)
        } else {
            get(token_handler)
        };
        let router = Router::new()
            .route("/token", route)
            .with_state(Arc::clone(&shared));
        let server = server::spawn(server::bind(super::LOCALHOST).await, tls, router);
        let realm = format!("{scheme}://{}/token", server.addr());
        TokenIssuer {
            shared,
            server,
            dir,
            realm,
            root_cert_bundle,
            ca_pem,
        }
    }

    /// The token endpoint URL (`http(s)://127.0.0.1:PORT/token`).
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// `aud` of issued tokens.
    pub fn service(&self) -> &str {
        &self.shared.service
    }

    /// `iss` of issued tokens.
    pub fn issuer_name(&self) -> &str {
        &self.shared.issuer
    }

    /// The libtrust key ID put in every JWT header.
    pub fn kid(&self) -> &str {
        &self.shared.kid
    }

    /// PEM file with the self-signed cert of the signing key.
    pub fn root_cert_bundle(&self) -> &Path {
        &self.root_cert_bundle
    }

    /// CA that verifies the token endpoint's certificate (HTTPS only).
    pub fn ca_pem_path(&self) -> Option<&Path> {
        self.ca_pem.as_deref()
    }

    /// The `auth.token` settings that make a registry trust this issuer.
    pub fn registry_auth(&self) -> RegistryAuth {
        RegistryAuth::Token {
            realm: self.realm.clone(),
            service: self.shared.service.clone(),
            issuer: self.shared.issuer.clone(),
            root_cert_bundle: self.root_cert_bundle.clone(),
        }
    }

    /// Add (or replace) a user with pull **and** push on repositories
    /// matching any of `repos` (see [`glob_match`]).
    pub fn add_user(&self, user: &str, password: &str, repos: &[&str]) {
        self.add_user_with(user, password, repos, repos);
    }

    /// Add (or replace) a user with pull-only access to `repos`.
    pub fn add_pull_only_user(&self, user: &str, password: &str, repos: &[&str]) {
        self.add_user_with(user, password, repos, &[]);
    }

    /// Add (or replace) a user with separate pull and push patterns.
    pub fn add_user_with(&self, user: &str, password: &str, pull: &[&str], push: &[&str]) {
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        lock(&self.shared.users).insert(
            user.to_owned(),
            User {
                password: password.to_owned(),
                pull: owned(pull),
                push: owned(push),
            },
        );
    }

    /// Give `user` push (and pull) access to `repo` in addition to what it has.
    pub fn allow_push(&self, user: &str, repo: &str) {
        let mut users = lock(&self.shared.users);
        let entry = users
            .get_mut(user)
            .unwrap_or_else(|| panic!("token issuer has no user {user:?}"));
        entry.pull.push(repo.to_owned());
        entry.push.push(repo.to_owned());
    }

    /// Remove a user (its tokens already issued stay valid until expiry).
    pub fn remove_user(&self, user: &str) {
        lock(&self.shared.users).remove(user);
    }

    /// Replace the repository patterns anonymous clients may pull.
    pub fn set_anonymous_pull(&self, repos: &[&str]) {
        *lock(&self.shared.anonymous_pull) = repos.iter().map(|s| (*s).to_owned()).collect();
    }

    /// Change how the endpoint behaves from now on.
    pub fn set_fail_mode(&self, mode: TokenFailMode) {
        *lock(&self.shared.fail) = mode;
    }

    /// `expires_in` (and `exp - iat`) of tokens issued from now on.
    pub fn set_token_ttl(&self, ttl: Duration) {
        *lock(&self.shared.ttl_secs) = ttl.as_secs();
    }

    /// Total requests to `/token` since start or the last reset.
    pub fn token_requests(&self) -> usize {
        lock(&self.shared.log).len()
    }

    /// Requests whose Basic user was `user` (`None` = no credentials).
    pub fn token_requests_for(&self, user: Option<&str>) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|r| r.user.as_deref() == user)
            .count()
    }

    /// Every request seen, oldest first.
    pub fn requests(&self) -> Vec<TokenRequest> {
        lock(&self.shared.log).clone()
    }

    /// Forget recorded requests.
    pub fn reset_counters(&self) {
        lock(&self.shared.log).clear();
    }

    /// Mint a token directly (e.g. one that expires in the past, with a
    /// negative `expires_in_secs`). `access` is `(repository, actions)`.
    pub fn mint_token(
        &self,
        subject: &str,
        access: &[(&str, &[&str])],
        expires_in_secs: i64,
    ) -> String {
        let access: Vec<Grant> = access
            .iter()
            .map(|(name, actions)| Grant {
                name: (*name).to_owned(),
                actions: actions.iter().map(|a| (*a).to_owned()).collect(),
            })
            .collect();
        self.shared.mint(subject, &access, expires_in_secs)
    }
}

/// One `access` claim entry of type `repository`.
#[derive(Debug, Clone)]
struct Grant {
    name: String,
    actions: Vec<String>,
}

impl Shared {
    /// Build and sign a JWT.
    fn mint(&self, subject: &str, access: &[Grant], expires_in_secs: i64) -> String {
        let now = unix_now();
        let header = json!({ "typ": "JWT", "alg": "ES256", "kid": self.kid });
        let access: Vec<_> = access
            .iter()
            .map(|g| json!({ "type": "repository", "name": g.name, "actions": g.actions }))
            .collect();
        let claims = json!({
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + expires_in_secs,
            "nbf": now - 10,
            "iat": now,
            "jti": super::hex(&super::random_bytes(16)),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        // FIXED = raw r||s (64 bytes), which is what JWS ES256 and libtrust expect.
        let signature = self
            .key
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .expect("ES256 signing failed");
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        )
    }

    /// What `user` (None = anonymous) may do on `repo`, among `requested`.
    fn allowed(&self, user: Option<&User>, repo: &str, requested: &[&str]) -> Vec<String> {
        let anonymous = lock(&self.anonymous_pull);
        let (pull, push): (&[String], &[String]) = match user {
            Some(u) => (&u.pull, &u.push),
            None => (&anonymous, &[]),
        };
        let matches = |patterns: &[String]| patterns.iter().any(|p| glob_match(p, repo));
        let (may_pull, may_push) = (matches(pull), matches(push));
        let mut out = Vec::new();
        for action in requested {
            let ok = match *action {
                "pull" => may_pull,
                "push" => may_push,
                "*" => may_pull && may_push,
                _ => false,
            };
            if ok && !out.iter().any(|a| a == action) {
                out.push((*action).to_owned());
            }
        }
        out
    }
}

async fn token_handler(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = parse_query(query.as_deref().unwrap_or(""));
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let scopes: Vec<String> = params
        .iter()
        .filter(|(n, _)| n == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect();
    let authorization = headers.get(header::AUTHORIZATION);
    let basic = authorization.and_then(parse_basic);
    lock(&shared.log).push(TokenRequest {
        user: basic.as_ref().map(|(u, _)| u.clone()),
        account_param: param("account"),
        service: param("service"),
        scopes: scopes.clone(),
        method: "GET",
    });

    let mode = lock(&shared.fail).clone();
    match mode {
        TokenFailMode::Normal => {}
        TokenFailMode::Hang => std::future::pending::<()>().await,
        TokenFailMode::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return error_response(status, "UNAVAILABLE", "injected token endpoint failure");
        }
        TokenFailMode::Delay(delay) => tokio::time::sleep(delay).await,
    }

    let user = match (&basic, authorization) {
        (Some((name, password)), _) => {
            let users = lock(&shared.users);
            match users.get(name) {
                Some(u) if u.password == *password => Some((name.clone(), u.clone())),
                _ => {
                    return error_response(
                        StatusCode::UNAUTHORIZED,
                        "UNAUTHORIZED",
                        "authentication required: invalid username or password",
                    );
                }
            }
        }
        (None, Some(_)) => {
            return error_response(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "unsupported Authorization header",
            );
        }
        (None, None) => None,
    };

    let mut grants: Vec<Grant> = Vec::new();
    for scope in &scopes {
        let Some((kind, rest)) = scope.split_once(':') else {
            continue;
        };
        let Some((name, actions)) = rest.rsplit_once(':') else {
            continue;
        };
        if kind != "repository" {
            continue;
        }
        let requested: Vec<&str> = actions.split(',').collect();
        let allowed = shared.allowed(user.as_ref().map(|(_, u)| u), name, &requested);
        if allowed.is_empty() {
            continue;
        }
        match grants.iter_mut().find(|g| g.name == name) {
            Some(g) => {
                for action in allowed {
                    if !g.actions.contains(&action) {
                        g.actions.push(action);
                    }
                }
            }
            None => grants.push(Grant {
                name: name.to_owned(),
                actions: allowed,
            }),
        }
    }

    let ttl = *lock(&shared.ttl_secs);
    let subject = user.as_ref().map_or("", |(name, _)| name.as_str());
    let token = shared.mint(subject, &grants, i64::try_from(ttl).unwrap_or(i64::MAX));
    let body = json!({
        "token": token,
        "access_token": token,
        "expires_in": ttl,
        "issued_at": rfc3339(unix_now()),
    });
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response()
}

/// The OAuth2 password grant (`grant_type=password&username=…&password=…&scope=…`), as
/// Docker Hub's `auth.docker.io/token` answers it: an `access_token`, or 401 for wrong
/// credentials.
async fn oauth_handler(State(shared): State<Arc<Shared>>, body: String) -> Response {
    let form = parse_query(&body);
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let scopes: Vec<String> = field("scope")
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    lock(&shared.log).push(TokenRequest {
        user: field("username"),
        account_param: None,
        service: field("service"),
        scopes: scopes.clone(),
        method: "POST",
    });
    if field("grant_type").as_deref() != Some("password") {
        return error_response(StatusCode::BAD_REQUEST, "UNSUPPORTED", "grant_type");
    }
    let (Some(name), Some(password)) = (field("username"), field("password")) else {
        return error_response(StatusCode::BAD_REQUEST, "INVALID", "username and password");
    };
    let user = {
        let users = lock(&shared.users);
        match users.get(&name) {
            Some(u) if u.password == password => u.clone(),
            _ => {
                return error_response(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHORIZED",
                    "invalid username or password",
                );
            }
        }
    };
    let mut grants: Vec<Grant> = Vec::new();
    for scope in &scopes {
        let Some((name, actions)) = scope
            .strip_prefix("repository:")
            .and_then(|rest| rest.rsplit_once(':'))
        else {
            continue;
        };
        let requested: Vec<&str> = actions.split(',').collect();
        let allowed = shared.allowed(Some(&user), name, &requested);
        if !allowed.is_empty() {
            grants.push(Grant {
                name: name.to_owned(),
                actions: allowed,
            });
        }
    }
    let ttl = *lock(&shared.ttl_secs);
    let token = shared.mint(&name, &grants, i64::try_from(ttl).unwrap_or(i64::MAX));
    let body = json!({ "access_token": token, "expires_in": ttl, "scope": scopes.join(" ") });
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response()
}

fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "errors": [{ "code": code, "message": message, "detail": null }] });
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response()
}

fn parse_basic(value: &HeaderValue) -> Option<(String, String)> {
    let value = value.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// `a=b&c=d` with `application/x-www-form-urlencoded` decoding.
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (form_decode(k), form_decode(v))
        })
        .collect()
}

fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match bytes
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(b) => {
                    out.push(b);
                    i += 3;
                }
                None => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `*` matches any run of characters (including `/`); everything else is
/// literal. So `"*"` is every repository, `"team/*"` a prefix, `"a/b"` exact.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            backtrack = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((star, matched)) = backtrack {
            pi = star + 1;
            ni = matched + 1;
            backtrack = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// libtrust key ID: SHA-256 of the DER `SubjectPublicKeyInfo`, first 30
/// bytes, base32 (RFC 4648) without padding, 12 groups of 4 joined by `:`.
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, spki_der);
    let encoded = base32(&digest.as_ref()[..30]);
    encoded
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).expect("base32 output is ASCII"))
        .collect::<Vec<_>>()
        .join(":")
}

/// RFC 4648 base32, standard alphabet, no padding.
fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u64, 0u32);
    for &byte in data {
        buffer = (buffer << 8) | u64::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

fn unix_now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock is after 1970")
        .as_secs();
    i64::try_from(secs).expect("unix time fits i64")
}

/// UTC RFC 3339 timestamp (`YYYY-MM-DDTHH:MM:SSZ`) for unix seconds; done by
/// hand because the `time` crate's `formatting` feature is not enabled.
pub fn rfc3339(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}
