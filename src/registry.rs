//! The registry probe: our own OCI distribution exchange on reqwest, following what
//! containerd does on the node (ARCHITECTURE.md §5).
//!
//! - [`transport`]: one HTTP exchange (redirects by hand, bounded bodies, the SSRF guard,
//!   egress proxies chosen with Go's rules in [`proxy`]).
//! - [`exchange`] and [`auth`]: containerd's authorization dance, with each endpoint's
//!   challenge and bearer tokens cached per credential.
//! - [`hosts`]: containerd's `hosts.toml` — mirrors tried before the upstream.
//! - [`manifest`] and [`verify`]: what the pull fetches — the index child containerd
//!   selects, a config and layers it unpacks — cached by digest.
//! - [`probe`]: the kubelet's credential loop over the hosts, classified into a verdict;
//!   [`explain`] says what a 404 means (nearest tags).
//!
//! One shared connection pool per TLS configuration for all registries and tenants.
//! Credentials are passed per probe and never stored; a cached token is keyed by the
//! credential that earned it, so nothing here can answer one tenant with another's.

mod auth;
mod challenge;
mod exchange;
mod explain;
pub mod guard;
pub mod hosts;
mod manifest;
mod probe;
pub mod proxy;
mod roots;
mod suggest;
mod transport;
mod verify;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Url;
use reqwest::header::HeaderMap;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::sync::Semaphore;

pub use challenge::{Challenge, parse as parse_challenges};
pub use manifest::MANIFEST_ACCEPT;
pub use suggest::nearest_tags;

use crate::clock::{ClockMap, HashKey};
use crate::digest::Digest;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read CA bundle {path}: {source}")]
    CaBundle {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("CA bundle {0} holds no certificate")]
    EmptyCaBundle(PathBuf),
    #[error("CA bundle {path}: {source}")]
    BadCa {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("client certificate {path}: {reason}")]
    ClientCert { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error(transparent)]
    Proxy(#[from] proxy::ProxyError),
}

/// How the probe talks to registries.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of one HTTP request (also bounded by the check's deadline).
    pub request_timeout: Duration,
    /// Extra PEM CA bundles trusted besides the system roots.
    pub ca_bundles: Vec<PathBuf>,
    /// `HOST[:PORT]` of registries spoken to over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Requests in flight to one registry host at most.
    pub max_concurrency_per_registry: usize,
    /// Pages of `tags/list` read at most for suggestions.
    pub max_tag_pages: usize,
    /// Redirects followed at most per request.
    pub max_redirects: usize,
    /// Which addresses may be contacted (the SSRF guard).
    pub address_policy: guard::AddressPolicy,
    /// containerd `hosts.toml` directories (mirrors), empty for none.
    pub hosts: hosts::HostsConfig,
    /// Egress proxies (`HTTPS_PROXY`…), read with Go's rules.
    pub proxies: proxy::ProxyRules,
    /// Check that the config and every layer blob of the selected manifest exist
    /// (`HEAD`), as a pull would fetch them.
    pub verify_blobs: bool,
    /// Entries of each of the probe's own caches (endpoints, tokens, manifests, blobs).
    pub max_cached: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(8),
            ca_bundles: Vec::new(),
            insecure_registries: Vec::new(),
            max_concurrency_per_registry: 32,
            max_tag_pages: 3,
            max_redirects: 5,
            address_policy: guard::AddressPolicy::default(),
            hosts: hosts::HostsConfig::default(),
            proxies: proxy::ProxyRules::none(),
            verify_blobs: true,
            max_cached: 10_000,
        }
    }
}

/// Called once per HTTP exchange with a registry or its token server, for metrics:
/// (registry host, status code or error kind).
pub type RequestObserver = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// Where one registry's API is reached: the upstream itself, or a mirror from
/// `hosts.toml`. Built per probe from the configuration; cheap.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// Identity of the endpoint for what is learnt about it (origin + path).
    key: Arc<str>,
    /// `https://host:port`, no path.
    origin: Arc<str>,
    /// The path requests go under: `/v2`, or the host's own with `override_path`.
    path: Arc<str>,
    /// `host[:port]`, for messages and metrics.
    pub host: Arc<str>,
    /// Index into the registry's HTTP clients (TLS settings may differ per host).
    client: usize,
    /// Headers configured for this host.
    headers: Arc<HeaderMap>,
    /// containerd's `ns=<registry>` query on requests to a mirror.
    namespace: Option<Arc<str>>,
    /// Start on plain HTTP (an insecure registry, an `http://` host).
    plain_http: bool,
    /// HTTPS first, plain HTTP when the peer does not speak TLS (loopback, as containerd).
    plain_http_fallback: bool,
    /// `capabilities`: asked to resolve tags; asked to serve content.
    resolve: bool,
    pull: bool,
    /// A mirror, not the registry itself.
    pub mirror: bool,
}

impl Endpoint {
    /// `<origin><path>/<repository>/<rest>` (with `ns=` for a mirror), on plain HTTP when
    /// `plain` says so.
    fn url_with(&self, plain: bool, repository: &str, rest: &str) -> Option<Url> {
        let origin = match (plain, self.origin.strip_prefix("https://")) {
            (true, Some(authority)) => format!("http://{authority}"),
            _ => self.origin.to_string(),
        };
        let mut url = Url::parse(&format!("{origin}{}/{repository}/{rest}", self.path)).ok()?;
        if let Some(ns) = &self.namespace {
            url.query_pairs_mut().append_pair("ns", ns);
        }
        Some(url)
    }

    fn url(&self, repository: &str, rest: &str) -> Option<Url> {
        self.url_with(self.plain_http, repository, rest)
    }
}

/// What pullgate learnt about an endpoint: the same for every tenant (it is what the
/// endpoint tells anyone).
#[derive(Debug, Clone)]
pub(crate) struct Knowledge {
    plain_http: bool,
    scheme: auth::Scheme,
}

/// `(registry, repository, digest)` as a [`HashKey`]: what a content cache is keyed by.
/// Content is the same wherever it lives, but its presence is per repository.
type ContentKey = HashKey;

/// `(registry, repository, tag)` as a [`HashKey`]: what the digest memory of tags is
/// keyed by.
type TagKey = HashKey;

/// A client for every registry, shared by all probes.
pub struct Registry {
    /// `[0]` is the default client; hosts with their own TLS settings have theirs.
    clients: Vec<reqwest::Client>,
    /// The roots each verifying client trusts, loaded on first use.
    trust: Vec<Arc<roots::LazyRoots>>,
    policy: Arc<guard::AddressPolicy>,
    proxies: proxy::ProxyRules,
    config: RegistryConfig,
    insecure: HashSet<String>,
    limits: Mutex<HashMap<String, Arc<Semaphore>>>,
    observer: Option<RequestObserver>,
    knowledge: moka::sync::Cache<Arc<str>, Knowledge>,
    tokens: auth::TokenCache,
    /// Parsed manifests by content key.
    manifests: ClockMap<ContentKey, manifest::Shared>,
    /// The digest a tag had when last resolved: (registry, repository, tag).
    tags: ClockMap<TagKey, Digest>,
    /// Blobs known to exist, with the platform a config blob names.
    blobs: ClockMap<ContentKey, verify::BlobFacts>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// How long what is learnt about an endpoint, a tag's digest or a blob's presence is
/// trusted. Manifests are content-addressed: kept 6 hours, or until the bound evicts
/// them (entries read since the clock hand last passed are spared).
const LEARNT_TTL: Duration = Duration::from_secs(3600);
const CONTENT_TTL: Duration = Duration::from_secs(6 * 3600);

impl Registry {
    pub fn new(config: RegistryConfig) -> Result<Self, RegistryError> {
        // The CA files given are read now (a bad one stops start-up); the system roots
        // when a handshake first needs them (`roots.rs`), or at `load_trust`.
        let mut extra = rustls::RootCertStore::empty();
        for path in &config.ca_bundles {
            add_bundle(&mut extra, path)?;
        }
        let mut policy = config.address_policy.clone();
        policy.trust_hosts(config.proxies.proxy_hosts());
        let policy = Arc::new(policy);
        let mut trust = vec![Arc::new(roots::LazyRoots::new(
            extra.clone(),
            crypto_provider(),
        ))];
        let mut clients = vec![build_client(
            &config,
            &policy,
            tls_config(Some(trust[0].clone()), None)?,
        )?];
        for tls in config.hosts.tls_settings() {
            let mut roots = extra.clone();
            for ca in &tls.cas {
                add_bundle(&mut roots, ca)?;
            }
            let verifier = if tls.skip_verify {
                None
            } else {
                let lazy = Arc::new(roots::LazyRoots::new(roots, crypto_provider()));
                trust.push(lazy.clone());
                Some(lazy)
            };
            let client_auth = tls.client.as_ref().map(load_client_cert).transpose()?;
            clients.push(build_client(
                &config,
                &policy,
                tls_config(verifier, client_auth)?,
            )?);
        }
        let insecure = config
            .insecure_registries
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .collect();
        let max = config.max_cached.max(1);
        Ok(Self {
            clients,
            trust,
            policy,
            proxies: config.proxies.clone(),
            insecure,
            limits: Mutex::new(HashMap::new()),
            observer: None,
            knowledge: moka::sync::Cache::builder()
                .max_capacity(max)
                .time_to_live(LEARNT_TTL)
                .build(),
            tokens: auth::TokenCache::new(max),
            manifests: ClockMap::new(max, CONTENT_TTL),
            tags: ClockMap::new(max, CONTENT_TTL),
            blobs: ClockMap::new(max, CONTENT_TTL),
            config,
        })
    }

    /// Read the system roots now rather than at the first TLS handshake (a server, so
    /// that its first review does not pay for them).
    pub fn load_trust(&self) {
        for roots in &self.trust {
            roots.load();
        }
    }

    /// Report every registry exchange to `observer` (metrics).
    pub fn with_observer(mut self, observer: RequestObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    fn limit_for(&self, host: &str) -> Arc<Semaphore> {
        let mut limits = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        limits
            .entry(host.to_string())
            .or_insert_with(|| {
                Arc::new(Semaphore::new(
                    self.config.max_concurrency_per_registry.max(1),
                ))
            })
            .clone()
    }

    fn observe(&self, host: &str, status: &str) {
        if let Some(observer) = &self.observer {
            observer(host, status);
        }
    }

    fn is_insecure(&self, host: &str) -> bool {
        self.insecure.contains(&host.to_ascii_lowercase())
    }
}

fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn add_bundle(roots: &mut rustls::RootCertStore, path: &PathBuf) -> Result<(), RegistryError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|source| RegistryError::CaBundle {
            path: path.clone(),
            source,
        })?;
    if certs.is_empty() {
        return Err(RegistryError::EmptyCaBundle(path.clone()));
    }
    for cert in certs {
        roots.add(cert).map_err(|source| RegistryError::BadCa {
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

type ClientAuth = (
    Vec<CertificateDer<'static>>,
    rustls_pki_types::PrivateKeyDer<'static>,
);

fn load_client_cert(pair: &hosts::ClientCert) -> Result<ClientAuth, RegistryError> {
    let bad = |path: &PathBuf, reason: String| RegistryError::ClientCert {
        path: path.clone(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pair.cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| bad(&pair.cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(&pair.cert, "no certificate in the file".into()));
    }
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(&pair.key)
        .map_err(|e| bad(&pair.key, e.to_string()))?;
    Ok((certs, key))
}

/// A client TLS configuration verifying with `roots`, or not at all (`skip_verify` in
/// `hosts.toml`) without.
fn tls_config(
    roots: Option<Arc<roots::LazyRoots>>,
    client_auth: Option<ClientAuth>,
) -> Result<rustls::ClientConfig, RegistryError> {
    let provider = crypto_provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous();
    let builder = match roots {
        // WebPKI over the system roots and the configured CAs, loaded on first use.
        Some(roots) => builder.with_custom_certificate_verifier(roots),
        None => builder.with_custom_certificate_verifier(Arc::new(hosts::NoVerification(provider))),
    };
    let mut tls = match client_auth {
        Some((certs, key)) => builder.with_client_auth_cert(certs, key)?,
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tls)
}

fn build_client(
    config: &RegistryConfig,
    policy: &Arc<guard::AddressPolicy>,
    tls: rustls::ClientConfig,
) -> Result<reqwest::Client, RegistryError> {
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .dns_resolver(Arc::new(guard::GuardedResolver {
            policy: policy.clone(),
        }))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(config.connect_timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(32)
        .user_agent(concat!("pullgate/", env!("CARGO_PKG_VERSION")));
    builder = if config.proxies.is_empty() {
        builder.no_proxy()
    } else {
        // Decided with Go's rules (containerd's); reqwest only carries it out.
        let rules = config.proxies.clone();
        builder.proxy(reqwest::Proxy::custom(move |url| {
            rules.proxy_for(url).cloned()
        }))
    };
    Ok(builder.build()?)
}

/// What an image is pulled for: a container, or an image volume (`volumes[].image`),
/// where OCI artifacts are legitimate content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ImageUse {
    #[default]
    Container,
    Volume,
}
