//! One HTTP exchange with a registry, a mirror or a token server: redirects followed by
//! hand (so `Authorization` only ever reaches the origin it was meant for), bodies read to
//! a bound, the SSRF guard applied to the target (also when an egress proxy carries the
//! request), and every failure classified without guessing.

use std::time::Duration;

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use tokio::time::Instant;

use super::{Registry, guard};
use crate::verdict::{Outcome, Verdict};

/// Largest response body read from a registry: containerd's `MaxManifestSize`
/// (`4 * 1048 * 1048`, sic); token answers and tag pages are far smaller.
pub(super) const MAX_BODY: usize = 4 * 1048 * 1048;

/// One request. A GET's body is read; a HEAD has none.
pub(super) struct Ask<'a> {
    pub method: Method,
    pub url: Url,
    /// Which of the registry's HTTP clients (TLS settings differ per host).
    pub client: usize,
    pub authorization: Option<&'a str>,
    pub accept: Option<&'static str>,
    /// Extra headers configured for this host (containerd `hosts.toml` `header`).
    pub headers: Option<&'a HeaderMap>,
    /// A form body (`application/x-www-form-urlencoded`), for token POSTs.
    pub form: Option<String>,
    /// Answer a redirect as it is instead of following it (a blob's existence).
    pub keep_redirects: bool,
}

impl<'a> Ask<'a> {
    pub fn new(method: Method, url: Url, client: usize) -> Self {
        Self {
            method,
            url,
            client,
            authorization: None,
            accept: None,
            headers: None,
            form: None,
            keep_redirects: false,
        }
    }

    pub fn keeping_redirects(self, keep: bool) -> Self {
        Self {
            keep_redirects: keep,
            ..self
        }
    }

    pub fn with_form(self, form: String) -> Self {
        Self {
            form: Some(form),
            ..self
        }
    }

    pub fn authorized(self, authorization: Option<&'a str>) -> Self {
        Self {
            authorization,
            ..self
        }
    }

    pub fn accepting(self, accept: &'static str) -> Self {
        Self {
            accept: Some(accept),
            ..self
        }
    }

    pub fn with_headers(self, headers: &'a HeaderMap) -> Self {
        Self {
            headers: (!headers.is_empty()).then_some(headers),
            ..self
        }
    }
}

/// What came back.
pub(super) struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// Where the answer finally came from, after redirects.
    pub url: Url,
    pub body: Option<Vec<u8>>,
}

/// Why a request got no usable response.
pub(super) enum SendError {
    /// Already classified (timeout, blocked, too large…).
    Outcome(Outcome),
    /// No HTTP answer; classified by the caller, who may retry another way.
    Transport { host: String, error: reqwest::Error },
}

impl SendError {
    /// Classify, naming `registry` in the message.
    pub fn into_outcome(self, registry: &str) -> Outcome {
        match self {
            SendError::Outcome(o) => o,
            SendError::Transport { host, error } => transport_outcome(registry, &host, &error),
        }
    }
}

impl Registry {
    /// Send one request, following redirects by hand so that `Authorization` is only ever
    /// sent to the scheme, host and port it was meant for. `registry` names the registry
    /// in messages and metrics.
    pub(super) async fn send(
        &self,
        registry: &str,
        ask: Ask<'_>,
        deadline: Instant,
    ) -> Result<Response, SendError> {
        let Ask {
            method,
            url,
            client,
            authorization,
            accept,
            headers,
            form,
            keep_redirects,
        } = ask;
        let http = self.clients.get(client).unwrap_or(&self.clients[0]);
        let read_body = method != Method::HEAD;
        let origin = url.clone();
        let mut url = url;
        for _ in 0..=self.config.max_redirects {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(SendError::Outcome(timeout_outcome(registry)));
            }
            let host = url.host_str().unwrap_or_default().to_string();
            let authorization = authorization.filter(|_| same_origin(&origin, &url));
            self.admit(registry, &url, authorization.is_some()).await?;

            let mut request = http
                .request(method.clone(), url.clone())
                .timeout(remaining.min(self.config.request_timeout));
            if let Some(extra) = headers {
                for (name, value) in extra {
                    request = request.header(name, value.clone());
                }
            }
            if let Some(accept) = accept {
                request = request.header(header::ACCEPT, accept);
            }
            if let Some(form) = &form {
                request = request
                    .header(
                        header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded; charset=utf-8",
                    )
                    .body(form.clone());
            }
            if let Some(value) = authorization {
                // Sensitive: never HPACK-indexed, and printed as "Sensitive" by Debug.
                let mut value = HeaderValue::from_str(value).map_err(|_| {
                    SendError::Outcome(Outcome::new(
                        Verdict::RegistryUnavailable,
                        format!(
                            "the token server of {registry} sent a token that is not a valid header value"
                        ),
                    ))
                })?;
                value.set_sensitive(true);
                request = request.header(header::AUTHORIZATION, value);
            }
            let mut response = match request.send().await {
                Ok(r) => r,
                Err(error) => {
                    self.observe(registry, error_kind(&error));
                    return Err(SendError::Transport { host, error });
                }
            };
            let status = response.status();
            self.observe(registry, status.as_str());
            if status.is_redirection()
                && !keep_redirects
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
            let headers = std::mem::take(response.headers_mut());
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
            format!("{registry}: too many redirects"),
        )))
    }

    /// The SSRF guard for one request, before anything leaves: an IP literal is checked
    /// here (those never reach the guarded resolver); a request an egress proxy will
    /// carry is checked on the *target*, resolved here, because the proxy resolves it
    /// and our resolver only ever sees the proxy's name. Credentials never travel to a
    /// proxy in clear text.
    async fn admit(&self, registry: &str, url: &Url, authorized: bool) -> Result<(), SendError> {
        let host = url.host_str().unwrap_or_default();
        if let Err(blocked) = self.policy.check_literal(host) {
            self.observe(registry, "blocked");
            return Err(SendError::Outcome(blocked_outcome(&blocked)));
        }
        let Some(proxy) = self.proxies.proxy_for(url) else {
            return Ok(());
        };
        if authorized && url.scheme() == "http" {
            return Err(SendError::Outcome(Outcome::new(
                Verdict::RegistryUnavailable,
                format!(
                    "{host} is plain HTTP behind the egress proxy {}: pullgate does not send registry credentials to a proxy in clear text",
                    proxy.host_str().unwrap_or_default()
                ),
            )));
        }
        match self.policy.check_target(host).await {
            Ok(()) => Ok(()),
            Err(guard::TargetError::Blocked(blocked)) => {
                self.observe(registry, "blocked");
                Err(SendError::Outcome(blocked_outcome(&blocked)))
            }
            Err(guard::TargetError::Unresolved(why)) => Err(SendError::Outcome(Outcome::new(
                Verdict::RegistryUnavailable,
                format!(
                    "{host} is reached through the egress proxy, but pullgate cannot resolve it to check its address against --deny-registry-cidr ({why}); list it with --allow-registry to trust it by name"
                ),
            ))),
        }
    }
}

pub(super) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// No packet was sent: the address is refused by policy.
pub(super) fn blocked_outcome(blocked: &guard::Blocked) -> Outcome {
    Outcome::new(
        Verdict::BlockedRegistry,
        format!("registry address refused: {blocked} (--deny-registry-cidr / --allow-registry)"),
    )
}

pub(super) fn timeout_outcome(registry: &str) -> Outcome {
    Outcome::new(
        Verdict::Timeout,
        format!("no answer from {registry} before the deadline"),
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
pub(super) fn transport_outcome(registry: &str, host: &str, e: &reqwest::Error) -> Outcome {
    if let Some(blocked) = guard::blocked_in(e) {
        return blocked_outcome(blocked);
    }
    if e.is_timeout() {
        return Outcome::new(
            Verdict::Timeout,
            format!("no answer from {host} in time ({registry})"),
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

/// The TLS handshake failed because the peer answered in plain text (rustls saw a record
/// that is not TLS), not because of a certificate.
pub(super) fn speaks_plain_http(error: &reqwest::Error) -> bool {
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

/// An unexpected status: 429 is rate-limited (keeping `Retry-After`), everything else
/// says the registry is not in a state to answer (never a definitive failure).
pub(super) fn status_outcome(
    registry: &str,
    status: StatusCode,
    headers: &HeaderMap,
    what: &str,
) -> Outcome {
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

/// `Retry-After` as seconds (the HTTP-date form is rare on registries and read as absent).
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

pub(super) fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
        .filter(|v| !v.is_empty())
}

pub(super) fn digest_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .filter(|v| !v.is_empty())
}

/// `Link: </v2/x/tags/list?last=a&n=1000>; rel="next"`.
pub(super) fn next_link(headers: &HeaderMap) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
