//! One probe: would a pull of this reference, with these candidate credentials, on one of
//! these platforms, succeed? Classified into a [`Verdict`] without guessing.

use std::collections::VecDeque;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use tokio::time::Instant;

use super::challenge::{self, Challenge};
use super::suggest::{nearest_tags, quoted_alternatives};
use super::{DOCKER_MANIFEST_LIST, MANIFEST_ACCEPT, OCI_INDEX, Registry, guard};
use crate::keyring::Credential;
use crate::platform::{IndexMatch, IndexPlatform, Platform, match_index};
use crate::reference::Reference;
use crate::verdict::{Outcome, Verdict};

/// A terminal answer reached before the end of the normal flow (an outage, a timeout).
type Step<T> = Result<T, Outcome>;

/// How requests to this registry are authorized, learnt from the `/v2/` ping (or from a
/// manifest request's challenge).
enum Auth {
    None,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

impl Auth {
    /// Whether requests made under `self` already answer `challenge`.
    fn answers(&self, challenge: &Challenge) -> bool {
        match (self, challenge) {
            (Auth::Basic, Challenge::Basic) => true,
            (Auth::Bearer { realm, .. }, Challenge::Bearer { realm: r, .. }) => realm == r,
            _ => false,
        }
    }
}

impl From<Challenge> for Auth {
    fn from(c: Challenge) -> Self {
        match c {
            Challenge::Basic => Auth::Basic,
            Challenge::Bearer { realm, service, .. } => Auth::Bearer { realm, service },
        }
    }
}

/// What one credential (or anonymous) got for the manifest.
enum Attempt {
    Found(Outcome),
    /// 401/403, with the challenge of a 401 (which may ask for another scheme).
    Refused {
        why: String,
        challenge: Option<Challenge>,
    },
    NotFound(Outcome),
}

/// One request to a registry or its token server. A GET's body is read; a HEAD has none.
struct Ask<'a> {
    method: Method,
    url: Url,
    authorization: Option<&'a str>,
    accept: Option<&'static str>,
}

impl<'a> Ask<'a> {
    fn get(url: Url) -> Self {
        Self {
            method: Method::GET,
            url,
            authorization: None,
            accept: None,
        }
    }

    fn authorized(self, authorization: Option<&'a str>) -> Self {
        Self {
            authorization,
            ..self
        }
    }

    /// A manifest request accepting all four manifest types.
    fn head_manifest(url: Url, authorization: Option<&'a str>) -> Self {
        Self {
            method: Method::HEAD,
            url,
            authorization,
            accept: Some(MANIFEST_ACCEPT),
        }
    }

    fn get_manifest(url: Url, authorization: Option<&'a str>) -> Self {
        Self {
            method: Method::GET,
            ..Self::head_manifest(url, authorization)
        }
    }
}

/// Why a request got no usable response.
enum SendError {
    /// Already classified (timeout, blocked, too large…).
    Outcome(Outcome),
    /// No HTTP answer; classified by the caller, who may retry another way.
    Transport { host: String, error: reqwest::Error },
}

enum PingError {
    Outcome(Outcome),
    /// The peer does not speak TLS (an HTTP registry behind an https:// URL).
    PlainHttpPeer(Outcome),
}

/// Largest response body read from a registry (manifests are capped at 4 MiB by
/// distribution; token answers and tag pages are far smaller).
const MAX_BODY: usize = 4 << 20;

struct Response {
    status: StatusCode,
    headers: HeaderMap,
    url: Url,
    body: Option<Vec<u8>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

#[derive(Deserialize)]
struct IndexDoc {
    #[serde(default)]
    manifests: Vec<IndexEntry>,
}

#[derive(Deserialize)]
struct IndexEntry {
    #[serde(default)]
    platform: Option<IndexPlatform>,
}

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

impl Registry {
    /// Probe `reference` with `credentials` tried in order (anonymous when empty), checking
    /// an index against `platforms`, all within `deadline`.
    pub async fn probe(
        &self,
        reference: &Reference,
        credentials: &[Credential],
        platforms: &[Platform],
        deadline: Instant,
    ) -> Outcome {
        let host = reference.api_host();
        let limit = self.limit_for(host);
        let work = async {
            let _permit = limit.acquire().await;
            match self
                .probe_steps(reference, credentials, platforms, deadline)
                .await
            {
                Ok(outcome) | Err(outcome) => outcome,
            }
        };
        match tokio::time::timeout_at(deadline, work).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::new(
                Verdict::Timeout,
                format!(
                    "no answer from {} before the deadline",
                    reference.registry()
                ),
            ),
        }
    }

    async fn probe_steps(
        &self,
        reference: &Reference,
        credentials: &[Credential],
        platforms: &[Platform],
        deadline: Instant,
    ) -> Step<Outcome> {
        let (base, mut auth) = self.ping(reference, deadline).await?;

        let mut pending: VecDeque<Option<&Credential>> = if credentials.is_empty() {
            VecDeque::from([None])
        } else {
            // Once any credential matches, the kubelet never retries anonymously.
            credentials.iter().map(Some).collect()
        };
        let mut refusals = Vec::new();
        let mut not_found = None;
        // A registry may answer /v2/ openly and challenge only on the repository: then
        // the manifest's challenge decides, once per probe.
        let mut challenged = false;
        while let Some(credential) = pending.pop_front() {
            let authorization = match self
                .authorization(reference, &auth, credential, deadline)
                .await?
            {
                Ok(value) => value,
                Err(refusal) => {
                    refusals.push(refusal);
                    continue;
                }
            };
            match self
                .fetch_manifest(
                    reference,
                    &base,
                    authorization.as_deref(),
                    platforms,
                    deadline,
                )
                .await?
            {
                Attempt::Found(outcome) => return Ok(outcome),
                Attempt::Refused { why, challenge } => {
                    match challenge.filter(|c| !challenged && !auth.answers(c)) {
                        Some(c) => {
                            challenged = true;
                            auth = Auth::from(c);
                            // Try this same credential again under the new challenge.
                            pending.push_front(credential);
                        }
                        None => refusals.push(why),
                    }
                }
                // Another credential cannot make a missing tag appear, but the kubelet
                // would still try it; keep going and report the miss if nothing works.
                Attempt::NotFound(outcome) => {
                    not_found.get_or_insert(outcome);
                }
            }
        }
        if let Some(outcome) = not_found {
            return Ok(outcome);
        }
        let name = reference.name();
        let what = refusals.first().cloned().unwrap_or_default();
        let message = if credentials.is_empty() {
            format!(
                "{name}: {what}: repository does not exist or may require authorization, and no pull secret matches {}",
                reference.registry()
            )
        } else {
            format!("{name}: {what}: repository does not exist or may require authorization")
        };
        Ok(Outcome::new(Verdict::Unauthorized, message))
    }

    /// `GET /v2/`: the base URL to use and which authentication the registry wants.
    /// Loopback registries that do not speak TLS are spoken to over plain HTTP, as
    /// containerd does for localhost by default.
    async fn ping(&self, reference: &Reference, deadline: Instant) -> Step<(String, Auth)> {
        let host = reference.api_host();
        let mut base = format!("{}://{}", self.scheme_for(host), host);
        let mut response = self.send_ping(reference, &base, deadline).await;
        if let Err(PingError::PlainHttpPeer(_)) = &response
            && is_loopback(host)
        {
            base = format!("http://{host}");
            response = self.send_ping(reference, &base, deadline).await;
        }
        let response = response.map_err(|e| match e {
            PingError::Outcome(o) | PingError::PlainHttpPeer(o) => o,
        })?;
        let auth = match response.status {
            s if s.is_success() => Auth::None,
            StatusCode::UNAUTHORIZED => match challenge::preferred(challenges(&response.headers)) {
                Some(c) => Auth::from(c),
                // A 401 without a usable challenge: Basic is what clients fall back to.
                None => Auth::Basic,
            },
            status => {
                return Err(self.status_outcome(
                    reference,
                    status,
                    &response.headers,
                    "the /v2/ endpoint",
                ));
            }
        };
        Ok((base, auth))
    }

    async fn send_ping(
        &self,
        reference: &Reference,
        base: &str,
        deadline: Instant,
    ) -> Result<Response, PingError> {
        let url = self
            .url(reference, &format!("{base}/v2/"))
            .map_err(PingError::Outcome)?;
        match self.send_raw(reference, Ask::get(url), deadline).await {
            Ok(r) => Ok(r),
            Err(SendError::Outcome(o)) => Err(PingError::Outcome(o)),
            Err(SendError::Transport { host, error }) => {
                let outcome = transport_outcome(reference, &host, &error);
                if speaks_plain_http(&error) {
                    Err(PingError::PlainHttpPeer(outcome))
                } else {
                    Err(PingError::Outcome(outcome))
                }
            }
        }
    }

    /// The `Authorization` value for one attempt: `Ok(Err(why))` when the token server
    /// refused this credential.
    async fn authorization(
        &self,
        reference: &Reference,
        auth: &Auth,
        credential: Option<&Credential>,
        deadline: Instant,
    ) -> Step<Result<Option<String>, String>> {
        match auth {
            Auth::None => Ok(Ok(None)),
            Auth::Basic => Ok(Ok(credential.map(basic))),
            Auth::Bearer { realm, service } => {
                let mut url = self.url(reference, realm)?;
                {
                    let mut query = url.query_pairs_mut();
                    if let Some(service) = service {
                        query.append_pair("service", service);
                    }
                    query.append_pair(
                        "scope",
                        &format!("repository:{}:pull", reference.repository()),
                    );
                }
                let authorization = credential.map(basic);
                let response = self
                    .send(
                        reference,
                        Ask::get(url).authorized(authorization.as_deref()),
                        deadline,
                    )
                    .await?;
                match response.status {
                    s if s.is_success() => {
                        let body = response.body.unwrap_or_default();
                        let token = serde_json::from_slice::<TokenResponse>(&body)
                            .ok()
                            .and_then(|t| t.token.or(t.access_token))
                            .filter(|t| !t.is_empty());
                        match token {
                            Some(token) => Ok(Ok(Some(format!("Bearer {token}")))),
                            None => Err(Outcome::new(
                                Verdict::RegistryUnavailable,
                                format!(
                                    "the token server of {} answered without a token",
                                    reference.registry()
                                ),
                            )),
                        }
                    }
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Ok(Err(format!(
                        "the token server refused the {} (HTTP {})",
                        if credential.is_some() {
                            "credentials"
                        } else {
                            "anonymous request"
                        },
                        response.status.as_u16()
                    ))),
                    status => Err(self.status_outcome(
                        reference,
                        status,
                        &response.headers,
                        "the token server",
                    )),
                }
            }
        }
    }

    /// `HEAD` the manifest; `GET` it only when an index must be platform-checked.
    async fn fetch_manifest(
        &self,
        reference: &Reference,
        base: &str,
        authorization: Option<&str>,
        platforms: &[Platform],
        deadline: Instant,
    ) -> Step<Attempt> {
        let url = self.url(
            reference,
            &format!(
                "{base}/v2/{}/manifests/{}",
                reference.repository(),
                reference.manifest_reference()
            ),
        )?;
        let mut head = self
            .send(
                reference,
                Ask::head_manifest(url.clone(), authorization),
                deadline,
            )
            .await?;
        if matches!(
            head.status,
            StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED
        ) {
            // A registry without HEAD support: ask with GET, as containerd falls back to.
            head = self
                .send(
                    reference,
                    Ask::get_manifest(url.clone(), authorization),
                    deadline,
                )
                .await?;
        }
        match head.status {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED => {
                let challenges = challenges(&head.headers);
                let insufficient = challenges
                    .iter()
                    .any(|c| matches!(c, Challenge::Bearer { error: Some(e), .. } if e == "insufficient_scope"));
                let why = match (authorization.is_some(), insufficient) {
                    (_, true) => "the registry refused access (insufficient_scope)",
                    (true, false) => "the registry refused the credentials (HTTP 401)",
                    (false, false) => "the registry requires authentication (HTTP 401)",
                };
                return Ok(Attempt::Refused {
                    why: why.to_string(),
                    challenge: challenge::preferred(challenges),
                });
            }
            StatusCode::FORBIDDEN => {
                return Ok(Attempt::Refused {
                    why: "the registry denied access (HTTP 403)".to_string(),
                    challenge: None,
                });
            }
            StatusCode::NOT_FOUND => {
                return Ok(Attempt::NotFound(
                    self.explain_not_found(reference, base, authorization, deadline)
                        .await?,
                ));
            }
            status => {
                return Err(self.status_outcome(
                    reference,
                    status,
                    &head.headers,
                    "the manifest request",
                ));
            }
        }

        let media_type = content_type(&head.headers);
        let is_index = matches!(
            media_type.as_deref(),
            Some(OCI_INDEX | DOCKER_MANIFEST_LIST)
        );
        let needs_body = (is_index && !platforms.is_empty())
            || media_type.is_none()
            || (digest_header(&head.headers).is_none() && !reference.is_by_digest());
        if !needs_body {
            let digest = digest_header(&head.headers)
                .or_else(|| reference.digest().map(str::to_string))
                .unwrap_or_default();
            return Ok(Attempt::Found(Outcome::pullable(digest)));
        }

        let get = match head.body {
            // Already a GET (the registry does not support HEAD).
            Some(_) => head,
            None => {
                self.send(reference, Ask::get_manifest(url, authorization), deadline)
                    .await?
            }
        };
        if !get.status.is_success() {
            return Err(self.status_outcome(
                reference,
                get.status,
                &get.headers,
                "the manifest request",
            ));
        }
        let body = get.body.unwrap_or_default();
        let digest = digest_header(&get.headers)
            .or_else(|| reference.digest().map(str::to_string))
            .unwrap_or_else(|| sha256_digest(&body));
        let media_type = content_type(&get.headers).or(media_type);
        let is_index = matches!(
            media_type.as_deref(),
            Some(OCI_INDEX | DOCKER_MANIFEST_LIST)
        ) || (media_type.is_none() && looks_like_index(&body));
        if is_index && !platforms.is_empty() {
            let Ok(index) = serde_json::from_slice::<IndexDoc>(&body) else {
                return Err(Outcome::new(
                    Verdict::RegistryUnavailable,
                    format!(
                        "{}: the registry sent an unreadable index",
                        reference.name()
                    ),
                ));
            };
            let entries: Vec<Option<Platform>> = index
                .manifests
                .iter()
                .map(|m| m.platform.as_ref().map(Platform::from))
                .collect();
            if let IndexMatch::NoMatch { available } = match_index(&entries, platforms) {
                let wanted: Vec<String> = platforms.iter().map(ToString::to_string).collect();
                let have: Vec<String> = available.iter().map(ToString::to_string).collect();
                let have = if have.is_empty() {
                    "no platform".to_string()
                } else {
                    have.join(", ")
                };
                return Ok(Attempt::Found(Outcome {
                    verdict: Verdict::NoMatchingPlatform,
                    digest: Some(digest),
                    message: format!(
                        "no match for platform {} in {}; the image has {have}",
                        wanted.join(" or "),
                        reference
                    ),
                    retry_after: None,
                }));
            }
        }
        Ok(Attempt::Found(Outcome::pullable(digest)))
    }

    /// After a 404: is it the tag, the digest or the whole repository? Suggest nearby tags.
    async fn explain_not_found(
        &self,
        reference: &Reference,
        base: &str,
        authorization: Option<&str>,
        deadline: Instant,
    ) -> Step<Outcome> {
        let name = reference.name();
        if let Some(digest) = reference.digest() {
            return Ok(Outcome::new(
                Verdict::NotFound,
                format!("manifest {digest} not found in {name}"),
            ));
        }
        let tag = reference.manifest_reference();
        let mut url = self.url(
            reference,
            &format!("{base}/v2/{}/tags/list?n=1000", reference.repository()),
        )?;
        let mut tags: Vec<String> = Vec::new();
        let mut readable = false;
        for _ in 0..self.config.max_tag_pages.max(1) {
            // Suggestions are a courtesy: any failure here keeps the plain not-found.
            let Ok(page) = self
                .send(
                    reference,
                    Ask::get(url.clone()).authorized(authorization),
                    deadline,
                )
                .await
            else {
                break;
            };
            if page.status == StatusCode::NOT_FOUND && !readable {
                return Ok(Outcome::new(
                    Verdict::NotFound,
                    format!("repository {name} not found (tag {tag:?} requested)"),
                ));
            }
            if !page.status.is_success() {
                break;
            }
            readable = true;
            let body = page.body.unwrap_or_default();
            if let Ok(list) = serde_json::from_slice::<TagList>(&body) {
                tags.extend(list.tags.unwrap_or_default());
            }
            match next_link(&page.headers).and_then(|l| page.url.join(&l).ok()) {
                Some(next) => url = next,
                None => break,
            }
        }
        let mut message = format!("tag {tag:?} not found in {name}");
        let suggestions = nearest_tags(tag, tags.iter().map(String::as_str), 3);
        if !suggestions.is_empty() {
            message.push_str(&format!(
                " (did you mean {}?)",
                quoted_alternatives(&suggestions)
            ));
        } else if readable && tags.is_empty() {
            message.push_str(" (the repository has no tags)");
        }
        Ok(Outcome::new(Verdict::NotFound, message))
    }

    fn url(&self, reference: &Reference, raw: &str) -> Step<Url> {
        Url::parse(raw).map_err(|e| {
            Outcome::new(
                Verdict::RegistryUnavailable,
                format!("{}: invalid URL {raw:?}: {e}", reference.registry()),
            )
        })
    }

    /// Send one request, following redirects by hand so that `Authorization` is only ever
    /// sent to the scheme, host and port it was meant for.
    async fn send(&self, reference: &Reference, ask: Ask<'_>, deadline: Instant) -> Step<Response> {
        self.send_raw(reference, ask, deadline)
            .await
            .map_err(|e| match e {
                SendError::Outcome(o) => o,
                SendError::Transport { host, error } => transport_outcome(reference, &host, &error),
            })
    }

    async fn send_raw(
        &self,
        reference: &Reference,
        ask: Ask<'_>,
        deadline: Instant,
    ) -> Result<Response, SendError> {
        let Ask {
            method,
            url,
            authorization,
            accept,
        } = ask;
        let read_body = method != Method::HEAD;
        let origin = url.clone();
        let mut url = url;
        for _ in 0..=self.config.max_redirects {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(SendError::Outcome(timeout_outcome(reference)));
            }
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .timeout(remaining.min(self.config.request_timeout));
            if let Some(accept) = accept {
                request = request.header(header::ACCEPT, accept);
            }
            if let Some(value) = authorization
                && same_origin(&origin, &url)
            {
                // Sensitive: never HPACK-indexed, and printed as "Sensitive" by Debug.
                let mut value = header::HeaderValue::from_str(value).map_err(|_| {
                    SendError::Outcome(Outcome::new(
                        Verdict::RegistryUnavailable,
                        format!(
                            "the token server of {} sent a token that is not a valid header value",
                            reference.registry()
                        ),
                    ))
                })?;
                value.set_sensitive(true);
                request = request.header(header::AUTHORIZATION, value);
            }
            let host = url.host_str().unwrap_or_default().to_string();
            // IP literals never reach the guarded resolver: check them here.
            if let Err(blocked) = self.policy.check_literal(&host) {
                self.observe(reference.registry(), "blocked");
                return Err(SendError::Outcome(blocked_outcome(&blocked)));
            }
            let mut response = match request.send().await {
                Ok(r) => r,
                Err(error) => {
                    self.observe(reference.registry(), error_kind(&error));
                    return Err(SendError::Transport { host, error });
                }
            };
            let status = response.status();
            self.observe(reference.registry(), status.as_str());
            if status.is_redirection()
                && let Some(location) = response.headers().get(header::LOCATION)
            {
                let next = location
                    .to_str()
                    .ok()
                    .and_then(|l| url.join(l).ok())
                    .filter(|u| matches!(u.scheme(), "http" | "https"));
                match next {
                    Some(next) => {
                        url = next;
                        continue;
                    }
                    None => {
                        return Err(SendError::Outcome(Outcome::new(
                            Verdict::RegistryUnavailable,
                            format!("{host} redirected to an invalid location"),
                        )));
                    }
                }
            }
            let headers = response.headers().clone();
            let final_url = response.url().clone();
            let mut body = None;
            if read_body {
                // A registry chooses what it sends: read at most MAX_BODY.
                let mut bytes = Vec::new();
                loop {
                    match response.chunk().await {
                        Ok(Some(chunk)) => {
                            if bytes.len() + chunk.len() > MAX_BODY {
                                return Err(SendError::Outcome(Outcome::new(
                                    Verdict::RegistryUnavailable,
                                    format!(
                                        "{host} sent a response larger than {} MiB",
                                        MAX_BODY >> 20
                                    ),
                                )));
                            }
                            bytes.extend_from_slice(&chunk);
                        }
                        Ok(None) => break,
                        Err(error) => return Err(SendError::Transport { host, error }),
                    }
                }
                body = Some(bytes);
            }
            return Ok(Response {
                status,
                headers,
                url: final_url,
                body,
            });
        }
        Err(SendError::Outcome(Outcome::new(
            Verdict::RegistryUnavailable,
            format!("{}: too many redirects", reference.registry()),
        )))
    }

    /// An unexpected status: 429 is rate-limited (keeping `Retry-After`), everything else
    /// says the registry is not in a state to answer (never a definitive failure).
    fn status_outcome(
        &self,
        reference: &Reference,
        status: StatusCode,
        headers: &HeaderMap,
        what: &str,
    ) -> Outcome {
        let registry = reference.registry();
        if status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after = retry_after(headers);
            let mut outcome = Outcome::new(
                Verdict::RateLimited,
                match retry_after {
                    Some(d) => format!(
                        "{registry} is rate-limiting pulls (HTTP 429, retry after {}s)",
                        d.as_secs()
                    ),
                    None => format!("{registry} is rate-limiting pulls (HTTP 429)"),
                },
            );
            outcome.retry_after = retry_after;
            return outcome;
        }
        Outcome::new(
            Verdict::RegistryUnavailable,
            format!("{registry}: {what} answered HTTP {}", status.as_u16()),
        )
    }
}

/// Every challenge of every `WWW-Authenticate` header.
fn challenges(headers: &HeaderMap) -> Vec<Challenge> {
    headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(challenge::parse)
        .collect()
}

/// `localhost` or a loopback address, with or without a port: containerd speaks plain
/// HTTP to these by default.
fn is_loopback(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The TLS handshake failed because the peer answered in plain text (rustls saw a
/// record that is not TLS), not because of a certificate.
fn speaks_plain_http(error: &reqwest::Error) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        let rustls_error = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if matches!(rustls_error, Some(rustls::Error::InvalidMessage(_))) {
            return true;
        }
        // hyper-rustls boxes the handshake's io::Error in ways downcasting does not
        // always see through; rustls' own wording is stable.
        if rustls_error.is_none()
            && e.to_string()
                .contains("received corrupt message of type InvalidContentType")
        {
            return true;
        }
        current = e.source();
    }
    false
}

fn basic(credential: &Credential) -> String {
    let raw = format!("{}:{}", credential.username, credential.password);
    format!("Basic {}", STANDARD.encode(raw))
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
        .filter(|v| !v.is_empty())
}

fn digest_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .filter(|v| !v.is_empty())
}

fn looks_like_index(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .is_some_and(|v| v.get("manifests").is_some_and(|m| m.is_array()))
}

fn sha256_digest(body: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// `Retry-After` as seconds (the HTTP-date form is rare on registries and read as absent).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// `Link: </v2/x/tags/list?last=a&n=1000>; rel="next"`.
fn next_link(headers: &HeaderMap) -> Option<String> {
    let link = headers.get(header::LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

/// No packet was sent: the address is refused by policy.
fn blocked_outcome(blocked: &guard::Blocked) -> Outcome {
    Outcome::new(
        Verdict::BlockedRegistry,
        format!("registry address refused: {blocked} (--deny-registry-cidr / --allow-registry)"),
    )
}

fn timeout_outcome(reference: &Reference) -> Outcome {
    Outcome::new(
        Verdict::Timeout,
        format!(
            "no answer from {} before the deadline",
            reference.registry()
        ),
    )
}

fn error_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect-error"
    } else {
        "error"
    }
}

/// A request that got no HTTP answer. Timeouts are `timeout`; refused connections, DNS
/// and TLS failures are `registry-unavailable`. The URL is left out of the message.
fn transport_outcome(reference: &Reference, host: &str, e: &reqwest::Error) -> Outcome {
    if let Some(blocked) = guard::blocked_in(e) {
        return blocked_outcome(blocked);
    }
    if e.is_timeout() {
        return Outcome::new(
            Verdict::Timeout,
            format!("no answer from {host} in time ({})", reference.registry()),
        );
    }
    let mut causes = Vec::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !causes.iter().any(|c: &String| c.contains(&text)) {
            causes.push(text);
        }
        source = s.source();
    }
    let detail = causes
        .last()
        .cloned()
        .unwrap_or_else(|| "request failed".to_string());
    Outcome::new(
        Verdict::RegistryUnavailable,
        format!("cannot reach {host}: {detail}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn link_header_next_page() {
        let mut h = HeaderMap::new();
        h.insert(
            header::LINK,
            HeaderValue::from_static("</v2/a/tags/list?last=x&n=2>; rel=\"next\""),
        );
        assert_eq!(next_link(&h).as_deref(), Some("/v2/a/tags/list?last=x&n=2"));
    }

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "registry.example.com",
            "10.0.0.1:5000",
            "[fe80::1]:5000",
            "localhost.example.com",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn retry_after_seconds() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(30)));
    }

    #[test]
    fn origin_includes_scheme_host_and_port() {
        let u = |s: &str| Url::parse(s).expect("url");
        assert!(same_origin(&u("https://a:443/x"), &u("https://a/y")));
        assert!(!same_origin(&u("https://a/x"), &u("http://a/x")));
        assert!(!same_origin(&u("https://a/x"), &u("https://a:8443/x")));
        assert!(!same_origin(&u("https://a/x"), &u("https://b/x")));
    }
}
