//! The registry probe: our own OCI distribution exchange on reqwest (DESIGN §5).
//!
//! One shared connection pool for all registries and tenants. Credentials are passed per
//! probe and never stored: nothing here can answer one tenant's question with another
//! tenant's token.

mod challenge;
pub mod guard;
mod probe;
mod suggest;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::sync::Semaphore;

pub use challenge::{Challenge, parse as parse_challenges};
pub use suggest::nearest_tags;

/// The four manifest types a pull accepts; without the OCI ones distribution answers 404
/// for OCI content, and without the Docker schema2 type it rewrites to schema1.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

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
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
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
        }
    }
}

/// Called once per HTTP exchange with a registry or its token server, for metrics:
/// (registry host, status code or error kind).
pub type RequestObserver = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// A client for every registry, shared by all probes.
pub struct Registry {
    http: reqwest::Client,
    policy: Arc<guard::AddressPolicy>,
    config: RegistryConfig,
    insecure: HashSet<String>,
    limits: Mutex<HashMap<String, Arc<Semaphore>>>,
    observer: Option<RequestObserver>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Registry {
    pub fn new(config: RegistryConfig) -> Result<Self, RegistryError> {
        let mut roots = rustls::RootCertStore::empty();
        // A missing or partly unreadable system store is not fatal: private registries
        // come with --registry-ca, and public ones fail with a clear TLS error.
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        for path in &config.ca_bundles {
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
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

        let policy = Arc::new(config.address_policy.clone());
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .dns_resolver(Arc::new(guard::GuardedResolver {
                policy: policy.clone(),
            }))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(32)
            .user_agent(concat!("pullgate/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let insecure = config
            .insecure_registries
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .collect();
        Ok(Self {
            http,
            policy,
            config,
            insecure,
            limits: Mutex::new(HashMap::new()),
            observer: None,
        })
    }

    /// Report every registry exchange to `observer` (metrics).
    pub fn with_observer(mut self, observer: RequestObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    fn scheme_for(&self, host: &str) -> &'static str {
        if self.insecure.contains(&host.to_ascii_lowercase()) {
            "http"
        } else {
            "https"
        }
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
}
