//! One probe: would a pull of this reference, with these candidate credentials, on one of
//! these platforms, succeed? The kubelet's loop over credentials (one CRI pull each, no
//! anonymous retry once any matched) around containerd's loop over hosts (mirrors, then
//! the upstream), classified into a [`Verdict`] without guessing.

use std::sync::Arc;

use reqwest::Method;
use tokio::time::Instant;

use super::auth::Secret;
use super::exchange::{Exchange, Request};
use super::manifest::{self, Manifest, Shared};
use super::transport::{content_type, digest_header};
use super::verify::Pull;
use super::{Endpoint, Registry};
use crate::clock::HashKey;
use crate::digest::Digest;
use crate::keyring::Credential;
use crate::platform::Platform;
use crate::reference::Reference;
use crate::verdict::{Outcome, Verdict};

/// How one credential's pull ended when it did not succeed.
enum Failure {
    /// Every host said 404 (or refused); the explanation is read on `endpoint`.
    NotFound {
        endpoint: usize,
        authorization: Option<String>,
        trail: Option<String>,
    },
    Refused {
        why: String,
        trail: Option<String>,
    },
    /// Could not be decided: an outage, a 429, a timeout — or a host pullgate may not
    /// contact while others did not have the image.
    Indeterminate(Outcome),
    /// The only host is refused by the SSRF policy.
    Blocked(Outcome),
}

/// What one host answered to the resolve.
enum HostAnswer {
    NotFound(Option<String>),
    Refused(String),
    Failed(Outcome),
}

/// The result of resolving the reference on one host.
enum Resolved {
    Found { digest: Digest, manifest: Shared },
    Not(HostAnswer),
}

impl Registry {
    /// Probe `reference` with `credentials` tried in order (anonymous when empty), for nodes
    /// of any of `platforms`, all within `deadline`.
    pub async fn probe(
        &self,
        reference: &Reference,
        credentials: &[Credential],
        platforms: &[Platform],
        image_use: super::ImageUse,
        deadline: Instant,
    ) -> Outcome {
        let limit = self.limit_for(reference.registry());
        let work = async {
            let _permit = limit.acquire().await;
            self.probe_hosts(reference, credentials, platforms, image_use, deadline)
                .await
        };
        match tokio::time::timeout_at(deadline, work).await {
            Ok(outcome) => outcome,
            Err(_) => super::transport::timeout_outcome(reference.registry()),
        }
    }

    async fn probe_hosts(
        &self,
        reference: &Reference,
        credentials: &[Credential],
        platforms: &[Platform],
        image_use: super::ImageUse,
        deadline: Instant,
    ) -> Outcome {
        let endpoints = self.endpoints(reference);
        // containerd's resolver: tags on hosts that may `resolve`; digests on any `pull` host.
        let resolvers: Vec<usize> = (0..endpoints.len())
            .filter(|&i| endpoints[i].pull && (reference.is_by_digest() || endpoints[i].resolve))
            .collect();
        if resolvers.is_empty() {
            return Outcome::new(
                Verdict::NotFound,
                format!(
                    "no host configured for {} may resolve {} (every host in its hosts.toml lacks the resolve or pull capability)",
                    reference.registry(),
                    reference.manifest_reference()
                ),
            );
        }
        let attempts: Vec<Option<&Credential>> = if credentials.is_empty() {
            vec![None]
        } else {
            // Once any credential matches, the kubelet never retries anonymously.
            credentials.iter().map(Some).collect()
        };
        let mut failures = Vec::new();
        for credential in attempts {
            let secret = Secret::of(credential);
            match self
                .attempt(
                    reference, secret, &endpoints, &resolvers, platforms, image_use, deadline,
                )
                .await
            {
                Ok(outcome) => return outcome,
                Err(failure) => failures.push(failure),
            }
        }
        self.conclude(reference, credentials, &endpoints, failures, deadline)
            .await
    }

    /// One CRI pull with one credential: the hosts in order until one resolves.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        reference: &Reference,
        secret: Secret<'_>,
        endpoints: &[Endpoint],
        resolvers: &[usize],
        platforms: &[Platform],
        image_use: super::ImageUse,
        deadline: Instant,
    ) -> Result<Outcome, Failure> {
        let mut answers: Vec<(usize, HostAnswer)> = Vec::new();
        for &i in resolvers {
            let endpoint = &endpoints[i];
            match self.resolve(endpoint, secret, reference, deadline).await {
                Resolved::Found { digest, manifest } => {
                    // containerd's fetcher walks every configured host in order,
                    // whatever its capabilities.
                    let pull = Pull {
                        reference,
                        secret,
                        hosts: endpoints.iter().collect(),
                        image_use,
                        deadline,
                    };
                    let mut outcome = self.judge(&pull, &digest, manifest, platforms).await;
                    if outcome.verdict == Verdict::Unauthorized {
                        // The content was refused to this credential: the kubelet moves on.
                        return Err(Failure::Refused {
                            why: outcome.message,
                            trail: None,
                        });
                    }
                    if endpoint.mirror && outcome.verdict == Verdict::Pullable {
                        outcome.message =
                            format!("manifest {digest} resolved by the mirror {}", endpoint.host);
                    }
                    return Ok(outcome);
                }
                Resolved::Not(answer) => answers.push((i, answer)),
            }
        }
        Err(summarize(endpoints, answers))
    }

    /// Resolve the reference on one host: `GET` the manifest when its content is not
    /// known yet (one round trip gives digest and body), `HEAD` it when it is (the tag
    /// may have moved; nothing counts as a pull).
    async fn resolve(
        &self,
        endpoint: &Endpoint,
        secret: Secret<'_>,
        reference: &Reference,
        deadline: Instant,
    ) -> Resolved {
        match self
            .read_manifest(endpoint, secret, reference, deadline)
            .await
        {
            Ok((digest, manifest)) => Resolved::Found { digest, manifest },
            Err(answer) => Resolved::Not(answer),
        }
    }

    async fn read_manifest(
        &self,
        endpoint: &Endpoint,
        secret: Secret<'_>,
        reference: &Reference,
        deadline: Instant,
    ) -> Result<(Digest, Shared), HostAnswer> {
        let repository = reference.repository();
        let target = reference.manifest_reference();
        let tag_key = HashKey::of(&[
            reference.registry().as_bytes(),
            repository.as_bytes(),
            target.as_bytes(),
        ]);
        let known = match reference.digest() {
            Some(d) => Digest::parse(d),
            None => self.tags.get(&tag_key),
        }
        .filter(|d| self.manifests.contains_key(&self.content_key(reference, d)));
        let path = format!("manifests/{target}");
        let method = if known.is_some() {
            Method::HEAD
        } else {
            Method::GET
        };
        let ask = |method, path| {
            self.manifest_request(endpoint, secret, repository, path, method, deadline)
        };
        let mut response = ask(method, &path).await?;
        let by_reference = reference.digest().and_then(Digest::parse);
        let digest_of = |response: &super::transport::Response| {
            // Pulled by digest: that is the content, whatever a header says.
            by_reference
                .clone()
                .or_else(|| digest_header(&response.headers).and_then(|d| Digest::parse(&d)))
                .or_else(|| response.body.as_deref().map(Digest::sha256_of))
        };
        let digest = match digest_of(&response) {
            Some(d) => d,
            None => {
                // A HEAD without Docker-Content-Digest: containerd GETs the manifest.
                response = ask(Method::GET, &path).await?;
                digest_of(&response).unwrap_or_else(|| Digest::sha256_of(&[]))
            }
        };
        if reference.digest().is_none() {
            self.tags.insert(tag_key, digest.clone());
        }
        let key = self.content_key(reference, &digest);
        if let Some(manifest) = self.manifests.get(&key) {
            return Ok((digest, manifest));
        }
        if response.body.is_none() {
            // The tag moved to content we have not read: read it by digest.
            response = ask(Method::GET, &format!("manifests/{digest}")).await?;
        }
        let body = response.body.as_deref().unwrap_or_default();
        let manifest = self
            .parse_manifest(reference, &digest, content_type(&response.headers), body)
            .map(Arc::new)
            .map_err(HostAnswer::Failed)?;
        self.manifests.insert(key, manifest.clone());
        Ok((digest, manifest))
    }

    /// One manifest request, its failures as what the host answered.
    async fn manifest_request(
        &self,
        endpoint: &Endpoint,
        secret: Secret<'_>,
        repository: &str,
        path: &str,
        method: Method,
        deadline: Instant,
    ) -> Result<super::transport::Response, HostAnswer> {
        let request = Request {
            method: &method,
            repository,
            path,
            accept: Some(manifest::MANIFEST_ACCEPT),
            redirect_is_answer: false,
        };
        match self.exchange(endpoint, secret, request, deadline).await {
            Exchange::Ok { response, .. } => Ok(response),
            Exchange::NotFound { authorization } => Err(HostAnswer::NotFound(authorization)),
            Exchange::Refused(why) => Err(HostAnswer::Refused(why)),
            Exchange::Failed(outcome) => Err(HostAnswer::Failed(outcome)),
        }
    }

    fn parse_manifest(
        &self,
        reference: &Reference,
        digest: &Digest,
        media_type: Option<String>,
        body: &[u8],
    ) -> Result<Manifest, Outcome> {
        if matches!(digest, Digest::Sha256(_)) && Digest::sha256_of(body) != *digest {
            return Err(Outcome::new(
                Verdict::RegistryUnavailable,
                format!(
                    "{}: the registry sent a manifest that does not match its digest {digest}",
                    reference.name()
                ),
            ));
        }
        Manifest::parse(media_type.as_deref(), body).map_err(|e| {
            Outcome::new(
                Verdict::RegistryUnavailable,
                format!("{}: {e}", reference.name()),
            )
        })
    }

    /// Nothing pulled: say why, as the kubelet's aggregated error would, but decided for a
    /// person — a missing tag first, then an outage, then a refusal.
    async fn conclude(
        &self,
        reference: &Reference,
        credentials: &[Credential],
        endpoints: &[Endpoint],
        failures: Vec<Failure>,
        deadline: Instant,
    ) -> Outcome {
        let mut refusals: Vec<(String, Option<String>)> = Vec::new();
        let mut indeterminate = None;
        let mut blocked = None;
        for failure in failures {
            match failure {
                // Another credential cannot make a missing tag appear.
                Failure::NotFound {
                    endpoint,
                    authorization,
                    trail,
                } => {
                    let mut outcome = self
                        .explain_not_found(
                            reference,
                            &endpoints[endpoint],
                            authorization.as_deref(),
                            deadline,
                        )
                        .await;
                    if let Some(trail) = trail {
                        outcome.message = format!("{} ({trail})", outcome.message);
                    }
                    return outcome;
                }
                Failure::Refused { why, trail } => refusals.push((why, trail)),
                Failure::Indeterminate(o) => {
                    indeterminate.get_or_insert(o);
                }
                Failure::Blocked(o) => {
                    blocked.get_or_insert(o);
                }
            }
        }
        if let Some(o) = indeterminate {
            return o;
        }
        if let Some(o) = blocked {
            return o;
        }
        let name = reference.name();
        let (what, trail) = refusals.into_iter().next().unwrap_or_default();
        let mut message = if credentials.is_empty() {
            format!(
                "{name}: {what}: repository does not exist or may require authorization, and no pull secret matches {}",
                reference.registry()
            )
        } else {
            format!("{name}: {what}: repository does not exist or may require authorization")
        };
        if let Some(trail) = trail {
            message.push_str(&format!(" ({trail})"));
        }
        Outcome::new(Verdict::Unauthorized, message)
    }

    /// The hosts a pull of `reference` tries, in order: `hosts.toml` mirrors, then the
    /// upstream. Without configuration, the registry itself (Docker Hub's API host for
    /// `docker.io`).
    pub(super) fn endpoints(&self, reference: &Reference) -> Vec<Endpoint> {
        let registry = reference.registry();
        let default_host = reference.api_host();
        let Some(dir) = self.config.hosts.lookup(registry) else {
            return vec![self.default_endpoint(
                registry,
                default_host,
                0,
                Default::default(),
                true,
                true,
            )];
        };
        let mut out: Vec<Endpoint> = dir
            .mirrors
            .iter()
            .map(|h| host_endpoint(h, registry, true))
            .collect();
        match &dir.server {
            Some(server) => out.push(host_endpoint(server, registry, false)),
            None => out.push(self.default_endpoint(
                registry,
                default_host,
                dir.upstream_client,
                dir.upstream_headers.clone(),
                dir.upstream_pull,
                dir.upstream_resolve,
            )),
        }
        out
    }

    fn default_endpoint(
        &self,
        registry: &str,
        host: &str,
        client: usize,
        headers: reqwest::header::HeaderMap,
        pull: bool,
        resolve: bool,
    ) -> Endpoint {
        let insecure = self.is_insecure(host) || self.is_insecure(registry);
        let origin: Arc<str> = Arc::from(format!(
            "{}://{host}",
            if insecure { "http" } else { "https" }
        ));
        Endpoint {
            key: origin.clone(),
            origin,
            path: Arc::from("/v2"),
            host: Arc::from(host),
            client,
            headers: Arc::new(headers),
            namespace: None,
            plain_http: insecure,
            plain_http_fallback: !insecure && is_loopback(host),
            resolve,
            pull,
            mirror: false,
        }
    }
}

/// A `hosts.toml` host as an endpoint. containerd adds `ns=<registry>` to requests to
/// any host other than the registry itself (`isProxy`; Docker Hub's API host is not a
/// proxy of `docker.io`).
fn host_endpoint(h: &super::hosts::Host, registry: &str, mirror: bool) -> Endpoint {
    // An http:// host with TLS settings is tried over HTTPS first, falling back to HTTP
    // when the peer does not speak TLS (containerd 1.7.7+ `NewHTTPFallback`).
    let fallback = h.scheme == "http" && h.client != 0;
    let scheme = if fallback { "https" } else { h.scheme.as_str() };
    let origin: Arc<str> = Arc::from(format!("{scheme}://{}", h.host));
    let is_proxy =
        h.host != registry && !(registry == "docker.io" && h.host == "registry-1.docker.io");
    Endpoint {
        key: Arc::from(format!("{origin}{}", h.path)),
        origin,
        path: Arc::from(h.path.as_str()),
        host: Arc::from(h.host.as_str()),
        client: h.client,
        headers: Arc::new(h.headers.clone()),
        namespace: is_proxy.then(|| Arc::from(registry)),
        plain_http: scheme == "http",
        plain_http_fallback: fallback,
        resolve: h.resolve,
        pull: h.pull,
        mirror,
    }
}

/// Fold what each host answered into one failure of this credential's pull. Any host
/// that might have had the image (an outage, a blocked mirror) makes the answer
/// indeterminate; otherwise a 404 anywhere is "not found" and the rest refusals.
fn summarize(endpoints: &[Endpoint], answers: Vec<(usize, HostAnswer)>) -> Failure {
    let several = endpoints.len() > 1;
    let trail = several.then(|| {
        answers
            .iter()
            .map(|(i, a)| {
                let said = match a {
                    HostAnswer::NotFound(_) => "not found".to_string(),
                    HostAnswer::Refused(why) => why.clone(),
                    HostAnswer::Failed(o) => o.verdict.to_string(),
                };
                format!("{}: {said}", endpoints[*i].host)
            })
            .collect::<Vec<_>>()
            .join("; ")
    });
    let all_blocked = answers
        .iter()
        .all(|(_, a)| matches!(a, HostAnswer::Failed(o) if o.verdict == Verdict::BlockedRegistry));
    let mut not_found = None;
    let mut refused = None;
    let mut failed = None;
    for (i, answer) in answers {
        match answer {
            HostAnswer::Failed(o) if o.verdict == Verdict::BlockedRegistry && all_blocked => {
                return Failure::Blocked(o);
            }
            HostAnswer::Failed(mut o) => {
                if o.verdict == Verdict::BlockedRegistry {
                    // A mirror pullgate may not contact might hold the image.
                    o.verdict = Verdict::RegistryUnavailable;
                }
                failed.get_or_insert(o);
            }
            HostAnswer::NotFound(authorization) => not_found = Some((i, authorization)),
            HostAnswer::Refused(why) => {
                refused.get_or_insert(why);
            }
        }
    }
    if let Some(mut o) = failed {
        if let Some(trail) = &trail {
            o.message = format!("{} ({trail})", o.message);
        }
        return Failure::Indeterminate(o);
    }
    if let Some((endpoint, authorization)) = not_found {
        return Failure::NotFound {
            endpoint,
            authorization,
            trail,
        };
    }
    Failure::Refused {
        why: refused.unwrap_or_default(),
        trail,
    }
}

/// `localhost` or a loopback address, with or without a port: containerd speaks plain
/// HTTP to these when they do not speak TLS.
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
