//! Fault injection between pullgate and a registry, and a sink that records
//! whether clients sent credentials to it.
//!
//! [`FaultProxy`] is a plain-HTTP (optionally HTTPS) reverse proxy in front of an upstream base
//! URL (typically a [`Registry`]); it relays requests verbatim (including
//! `Authorization`) and can, at runtime, answer a chosen status, hang, delay,
//! reset the TCP connection or redirect instead. Absolute URLs in upstream
//! answers (`Location`, the Bearer `realm`) are deliberately **not**
//! rewritten.
//!
//! [`AuthRecorder`] answers everything with a configurable response and
//! records each request's `Authorization`, to check that a client does not
//! leak credentials across a redirect to another host.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::certs::TestPki;
use super::registry::Registry;
use super::server::{self, ConnControl, ServerHandle};

/// What the proxy does with a request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Fault {
    /// Relay to the upstream.
    #[default]
    Forward,
    /// Answer `code` (with `Retry-After` if given) and `body` (served as
    /// JSON when it starts with `{`) without contacting the upstream.
    Status {
        code: u16,
        retry_after: Option<String>,
        body: String,
    },
    /// Never answer (the connection stays open until the client gives up
    /// or the proxy is dropped).
    Hang,
    /// Wait, then relay.
    Delay(Duration),
    /// Close the TCP connection with a RST and no HTTP answer.
    Reset,
    /// Answer `307 Temporary Redirect` with this `Location`; the literal
    /// `{path}` in it is replaced by the request's path and query.
    Redirect { location: String },
}

impl Fault {
    /// A bare status with a registry-style JSON error body.
    pub fn status(code: u16) -> Self {
        Self::Status {
            code,
            retry_after: None,
            body: format!(
                r#"{{"errors":[{{"code":"UNKNOWN","message":"injected {code}","detail":null}}]}}"#
            ),
        }
    }

    /// `429 Too Many Requests` with `Retry-After` and Docker Hub's error code.
    pub fn too_many_requests(retry_after: &str) -> Self {
        Self::Status {
            code: 429,
            retry_after: Some(retry_after.to_owned()),
            body: r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit.","detail":null}]}"#.to_owned(),
        }
    }

    /// Redirect to `base` + the original path and query.
    pub fn redirect_to(base: &str) -> Self {
        Self::Redirect {
            location: format!("{}{{path}}", base.trim_end_matches('/')),
        }
    }
}

/// One request as seen by the proxy or the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// Path without query.
    pub path: String,
    pub query: Option<String>,
    /// Raw `Authorization` header, if any.
    pub authorization: Option<String>,
}

impl RecordedRequest {
    /// Whether the request carried an `Authorization` header.
    pub fn has_auth(&self) -> bool {
        self.authorization.is_some()
    }

    fn from_parts(method: &Method, uri: &axum::http::Uri, headers: &HeaderMap) -> Self {
        Self {
            method: method.as_str().to_owned(),
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            authorization: headers
                .get(header::AUTHORIZATION)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        }
    }
}

/// Thread-safe request log shared by the proxy and the sink.
#[derive(Debug, Default)]
struct RequestLog(Mutex<Vec<RecordedRequest>>);

impl RequestLog {
    fn lock(&self) -> MutexGuard<'_, Vec<RecordedRequest>> {
        self.0.lock().expect("request log mutex poisoned")
    }
    fn push(&self, r: RecordedRequest) {
        self.lock().push(r);
    }
    fn count(&self, pred: impl Fn(&RecordedRequest) -> bool) -> usize {
        self.lock().iter().filter(|r| pred(r)).count()
    }
}

#[derive(Debug, Default)]
struct Rules {
    default: Fault,
    /// `(path substring, fault)`; the first match wins over `default`.
    by_path: Vec<(String, Fault)>,
}

impl Rules {
    fn for_path(&self, path: &str) -> Fault {
        self.by_path
            .iter()
            .find(|(needle, _)| match needle.strip_suffix('$') {
                Some(exact) => path == exact,
                None => path.contains(needle.as_str()),
            })
            .map_or_else(|| self.default.clone(), |(_, f)| f.clone())
    }
}

struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    rules: Mutex<Rules>,
    log: RequestLog,
}

impl ProxyState {
    fn rules(&self) -> MutexGuard<'_, Rules> {
        self.rules.lock().expect("proxy rules mutex poisoned")
    }
}

/// A fault-injecting reverse proxy on `http://127.0.0.1:PORT` (or HTTPS);
/// stops when dropped.
pub struct FaultProxy {
    state: Arc<ProxyState>,
    server: ServerHandle,
    tls: bool,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.server.addr())
            .field("upstream", &self.state.upstream)
            .finish_non_exhaustive()
    }
}

impl FaultProxy {
    /// Proxy to `upstream_base_url` (`http(s)://host:port`), trusting
    /// `upstream_ca` for HTTPS upstreams. Serves plain HTTP.
    pub async fn start(upstream_base_url: &str, upstream_ca: Option<&Path>) -> FaultProxy {
        Self::start_inner(upstream_base_url, upstream_ca, None).await
    }

    /// Like [`FaultProxy::start`] but serving HTTPS with `pki`'s server leaf,
    /// for clients that insist on TLS (trust `pki.ca_pem()`).
    pub async fn start_tls(
        upstream_base_url: &str,
        upstream_ca: Option<&Path>,
        pki: &TestPki,
    ) -> FaultProxy {
        Self::start_inner(upstream_base_url, upstream_ca, Some(pki)).await
    }

    async fn start_inner(
        upstream_base_url: &str,
        upstream_ca: Option<&Path>,
        pki: Option<&TestPki>,
    ) -> FaultProxy {
        super::init();
        let state = Arc::new(ProxyState {
            upstream: upstream_base_url.trim_end_matches('/').to_owned(),
            client: super::http_client(upstream_ca),
            rules: Mutex::new(Rules::default()),
            log: RequestLog::default(),
        });
        let router = Router::new()
            .fallback(proxy_handler)
            .with_state(Arc::clone(&state));
        let tls = pki.map(|p| p.server_leaf().server_config());
        let is_tls = tls.is_some();
        let server = server::spawn(server::bind(super::LOCALHOST).await, tls, router);
        FaultProxy {
            state,
            server,
            tls: is_tls,
        }
    }

    /// Proxy in front of `registry`.
    pub async fn for_registry(registry: &Registry) -> FaultProxy {
        Self::start(&registry.base_url(), registry.ca_pem_path()).await
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.server.addr().to_string()
    }

    /// `http://127.0.0.1:PORT` (`https://` when started with TLS).
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.server.addr())
    }

    /// Apply `fault` to every request (path rules still take precedence).
    pub fn set_fault(&self, fault: Fault) {
        self.state.rules().default = fault;
    }

    /// Apply `fault` only to requests whose path contains `path_substring`
    /// (e.g. `"/manifests/"`), or is exactly it when it ends with `$` (`"/v2/$"`);
    /// replaces an earlier rule for the same substring.
    pub fn set_fault_for(&self, path_substring: &str, fault: Fault) {
        let mut rules = self.state.rules();
        rules.by_path.retain(|(needle, _)| needle != path_substring);
        rules.by_path.push((path_substring.to_owned(), fault));
    }

    /// Forward everything again.
    pub fn clear_faults(&self) {
        *self.state.rules() = Rules::default();
    }

    /// Every request received (faulted ones included), oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.log.lock().clone()
    }

    /// Number of requests received.
    pub fn total_requests(&self) -> usize {
        self.state.log.lock().len()
    }

    /// Requests with this method and exact path (no query), e.g.
    /// `("HEAD", "/v2/app/manifests/v1")`.
    pub fn requests_to(&self, method: &str, path: &str) -> usize {
        self.state
            .log
            .count(|r| r.method.eq_ignore_ascii_case(method) && r.path == path)
    }

    /// Requests carrying an `Authorization` header.
    pub fn authorized_requests(&self) -> usize {
        self.state.log.count(RecordedRequest::has_auth)
    }

    /// Forget recorded requests.
    pub fn reset_counters(&self) {
        self.state.log.lock().clear();
    }
}

async fn proxy_handler(
    State(state): State<Arc<ProxyState>>,
    Extension(conn): Extension<ConnControl>,
    req: Request,
) -> Response {
    state.log.push(RecordedRequest::from_parts(
        req.method(),
        req.uri(),
        req.headers(),
    ));
    let fault = state.rules().for_path(req.uri().path());
    match fault {
        Fault::Forward => forward(&state, req).await,
        Fault::Delay(delay) => {
            tokio::time::sleep(delay).await;
            forward(&state, req).await
        }
        Fault::Status {
            code,
            retry_after,
            body,
        } => {
            let status = StatusCode::from_u16(code)
                .unwrap_or_else(|e| panic!("Fault::Status code {code} is invalid: {e}"));
            let mut resp = (status, body.clone()).into_response();
            let content_type = if body.starts_with('{') {
                "application/json"
            } else {
                "text/plain"
            };
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            if let Some(ra) = retry_after {
                resp.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_str(&ra).expect("Retry-After is a valid header value"),
                );
            }
            resp
        }
        Fault::Hang => std::future::pending().await,
        Fault::Reset => {
            conn.reset();
            std::future::pending().await
        }
        Fault::Redirect { location } => {
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            let location = location.replace("{path}", path);
            (
                StatusCode::TEMPORARY_REDIRECT,
                [(
                    header::LOCATION,
                    HeaderValue::from_str(&location).expect("redirect Location is a valid header"),
                )],
            )
                .into_response()
        }
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) plus those the HTTP stacks on
/// either side recompute.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    [
        header::CONNECTION,
        header::HOST,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
}

async fn forward(state: &ProxyState, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => return bad_gateway(&format!("reading request body: {e}")),
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", state.upstream);
    let mut upstream = state.client.request(parts.method.clone(), &url);
    for (name, value) in &parts.headers {
        if !is_hop_by_hop(name) && *name != header::CONTENT_LENGTH {
            upstream = upstream.header(name, value);
        }
    }
    if !(body.is_empty() && matches!(parts.method, Method::GET | Method::HEAD)) {
        upstream = upstream.body(body);
    }
    let resp = match upstream.send().await {
        Ok(r) => r,
        Err(e) => return bad_gateway(&format!("{} {url}: {e}", parts.method)),
    };
    let status = resp.status();
    let mut headers = HeaderMap::new();
    for (name, value) in resp.headers() {
        if !is_hop_by_hop(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let body = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return bad_gateway(&format!("reading upstream body of {url}: {e}")),
    };
    let mut out = Response::new(Body::from(body));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}

fn bad_gateway(message: &str) -> Response {
    (
        StatusCode::BAD_GATEWAY,
        format!("pullgate test proxy: {message}"),
    )
        .into_response()
}

/// The canned answer of an [`AuthRecorder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Default for SinkResponse {
    fn default() -> Self {
        Self {
            status: 200,
            headers: vec![("content-type".to_owned(), "text/plain".to_owned())],
            body: Bytes::from_static(b"ok"),
        }
    }
}

struct SinkState {
    response: Mutex<SinkResponse>,
    /// The answer to `/blobs/` paths, when set apart from the rest.
    blobs: Mutex<Option<SinkResponse>>,
    log: RequestLog,
}

/// A plain-HTTP server that answers everything with one canned response and
/// records whether each request carried `Authorization`. Binds 127.0.0.2
/// when possible so it is a different *host* from everything else, falling
/// back to another port on 127.0.0.1.
pub struct AuthRecorder {
    state: Arc<SinkState>,
    server: ServerHandle,
    tls: bool,
}

impl std::fmt::Debug for AuthRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthRecorder")
            .field("addr", &self.server.addr())
            .finish_non_exhaustive()
    }
}

impl AuthRecorder {
    /// Start answering `200 ok` to everything, over plain HTTP.
    pub async fn start() -> AuthRecorder {
        Self::start_inner(None).await
    }

    /// Like [`AuthRecorder::start`] but over HTTPS with `pki`'s server leaf
    /// (its SANs include 127.0.0.2).
    pub async fn start_tls(pki: &TestPki) -> AuthRecorder {
        Self::start_inner(Some(pki)).await
    }

    async fn start_inner(pki: Option<&TestPki>) -> AuthRecorder {
        super::init();
        let listener = match tokio::net::TcpListener::bind((Ipv4Addr::new(127, 0, 0, 2), 0)).await {
            Ok(l) => l,
            Err(_) => server::bind(super::LOCALHOST).await,
        };
        let state = Arc::new(SinkState {
            response: Mutex::new(SinkResponse::default()),
            blobs: Mutex::new(None),
            log: RequestLog::default(),
        });
        let router = Router::new()
            .fallback(sink_handler)
            .with_state(Arc::clone(&state));
        let tls = pki.map(|p| p.server_leaf().server_config());
        let is_tls = tls.is_some();
        let server = server::spawn(listener, tls, router);
        AuthRecorder {
            state,
            server,
            tls: is_tls,
        }
    }

    /// `127.0.0.2:PORT` (or `127.0.0.1:PORT`).
    pub fn host(&self) -> String {
        self.server.addr().to_string()
    }

    /// The bound IP (127.0.0.2 unless that could not be bound).
    pub fn ip(&self) -> IpAddr {
        self.server.addr().ip()
    }

    /// `http://HOST:PORT` (`https://` when started with TLS).
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.server.addr())
    }

    /// Replace the canned response.
    pub fn set_response(&self, response: SinkResponse) {
        *self.response() = response;
    }

    /// Answer every `/blobs/` path with `body` as a registry serves a blob (`200`,
    /// `Docker-Content-Digest`; HEAD gets the headers only), whatever the digest asked;
    /// other paths keep the canned response. Returns the digest.
    pub fn answer_blobs_with(&self, body: impl Into<Bytes>) -> String {
        let body = body.into();
        let digest = super::sha256_digest(&body);
        *self.state.blobs.lock().expect("sink blobs mutex poisoned") = Some(SinkResponse {
            status: 200,
            headers: vec![
                (
                    "content-type".to_owned(),
                    "application/octet-stream".to_owned(),
                ),
                ("docker-content-digest".to_owned(), digest.clone()),
            ],
            body,
        });
        digest
    }

    /// Answer like a registry serving a manifest: `200` with
    /// `Content-Type: media_type`, `Docker-Content-Digest` and the body
    /// (HEAD gets the headers only). Returns the digest.
    pub fn answer_as_manifest(&self, media_type: &str, body: impl Into<Bytes>) -> String {
        let body = body.into();
        let digest = super::sha256_digest(&body);
        self.set_response(SinkResponse {
            status: 200,
            headers: vec![
                ("content-type".to_owned(), media_type.to_owned()),
                ("docker-content-digest".to_owned(), digest.clone()),
                (
                    "docker-distribution-api-version".to_owned(),
                    "registry/2.0".to_owned(),
                ),
            ],
            body,
        });
        digest
    }

    /// Every request received, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.log.lock().clone()
    }

    /// Number of requests received.
    pub fn total_requests(&self) -> usize {
        self.state.log.lock().len()
    }

    /// Requests carrying an `Authorization` header (should stay 0 in
    /// cross-host redirect tests).
    pub fn authorized_requests(&self) -> usize {
        self.state.log.count(RecordedRequest::has_auth)
    }

    /// Forget recorded requests.
    pub fn reset_counters(&self) {
        self.state.log.lock().clear();
    }

    fn response(&self) -> MutexGuard<'_, SinkResponse> {
        self.state
            .response
            .lock()
            .expect("sink response mutex poisoned")
    }
}

async fn sink_handler(State(state): State<Arc<SinkState>>, req: Request) -> Response {
    state.log.push(RecordedRequest::from_parts(
        req.method(),
        req.uri(),
        req.headers(),
    ));
    let blob = req.uri().path().contains("/blobs/");
    let canned = match state
        .blobs
        .lock()
        .expect("sink blobs mutex poisoned")
        .clone()
    {
        Some(answer) if blob => answer,
        _ => state
            .response
            .lock()
            .expect("sink response mutex poisoned")
            .clone(),
    };
    let mut resp = Response::new(Body::from(canned.body));
    *resp.status_mut() = StatusCode::from_u16(canned.status)
        .unwrap_or_else(|e| panic!("sink status {} is invalid: {e}", canned.status));
    for (name, value) in &canned.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .unwrap_or_else(|e| panic!("sink header name {name:?}: {e}"));
        let value = HeaderValue::from_str(value)
            .unwrap_or_else(|e| panic!("sink header value {value:?}: {e}"));
        resp.headers_mut().append(name, value);
    }
    resp
}
