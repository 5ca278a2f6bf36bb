//! What the nodes' kubelet credential provider plugins would give (ECR, Artifact Registry,
//! ACR): the same `CredentialProviderConfig` and plugin binaries the kubelet uses, run the
//! way the kubelet runs them (kubernetes/kubernetes `pkg/credentialprovider/plugin/`), and
//! the registries whose credentials only the nodes hold when pullgate runs no plugin.
//!
//! Credentials from plugins come after the pod's secrets and the node docker config, in
//! one keyring over every provider's answer (`plugins.go externalCredentialProviderKeyring`).
//! A plugin that cannot answer *in pullgate* (it failed, or it needs a service-account
//! token) may still answer on the node, whose identity can differ: a refusal of the images
//! it serves is then indeterminate, never `unauthorized`.

mod cache;
pub mod config;
mod decode;
mod exec;
pub mod golang;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use futures::future::join_all;
use tokio::time::Instant;

use crate::keyring::{Credential, DockerConfig, ImagePattern, Keyring};
use crate::reference::Reference;

pub use config::{ConfigError, CredentialProviderConfig, ProviderConfig};
pub use exec::EXEC_TIMEOUT;

/// Registries the well-known cloud plugins serve, used when no provider config is given:
/// a refusal there may only mean the node holds credentials pullgate cannot see.
/// `public.ecr.aws` is left out: it holds only public repositories, so a refusal there
/// is the same on every node.
pub const CLOUD_REGISTRIES: &[&str] = &[
    // awslabs/amazon-eks-ami nodeadm/internal/kubelet/image-credential-provider.template.json
    "*.dkr.ecr.*.amazonaws.com",
    "*.dkr-ecr.*.on.aws",
    "*.dkr.ecr.*.amazonaws.com.cn",
    "*.dkr-ecr.*.on.amazonwebservices.com.cn",
    "*.dkr.ecr-fips.*.amazonaws.com",
    "*.dkr-ecr-fips.*.on.aws",
    "*.dkr.ecr.*.c2s.ic.gov",
    "*.dkr.ecr.*.sc2s.sgov.gov",
    "*.dkr.ecr.*.cloud.adc-e.uk",
    "*.dkr.ecr.*.csp.hci.ic.gov",
    "*.dkr.ecr.*.amazonaws.eu",
    // GKE /etc/srv/kubernetes/cri_auth_config.yaml (auth-provider-gcp)
    "container.cloud.google.com",
    "gcr.io",
    "*.gcr.io",
    "*.pkg.dev",
    // AKS node bootstrap (Azure/AgentBaker) and cloud-provider-azure docs (acr-credential-provider)
    "*.azurecr.io",
    "*.azurecr.cn",
    "*.azurecr.de",
    "*.azurecr.us",
    "*.*.geo.azurecr.io",
    "*.*.geo.azurecr.cn",
    "*.*.geo.azurecr.de",
    "*.*.geo.azurecr.us",
];

/// Why the providers cannot be set up: the kubelet's own start-up errors
/// (`plugin.go RegisterCredentialProviderPlugins`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("plugin binary directory {0} did not exist")]
    BinDirMissing(String),
    #[error("error inspecting binary directory {path}: {reason}")]
    BinDir { path: String, reason: String },
    /// The kubelet prints an empty path here (`exec.LookPath` returns "" with its error);
    /// we name the file it looked for.
    #[error("plugin binary executable {0} did not exist")]
    BinaryMissing(String),
    #[error("error inspecting binary executable {path}: exec: {quoted}: {reason}", quoted = golang::quote(path))]
    Binary { path: String, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One configured provider, with its cache and in-flight executions.
struct Provider {
    name: String,
    match_images: ImagePatterns,
    default_cache_duration: golang::GoDuration,
    /// KEP-4412 providers want a service-account token bound to a pod: never run here.
    needs_token: bool,
    plugin: exec::ExecPlugin,
    state: Mutex<cache::State>,
}

/// What one provider made of one image.
enum Provision {
    /// Its matchImages do not match: it is not asked.
    NotAsked,
    Credentials(Arc<DockerConfig>),
    /// It cannot answer in pullgate; the words say why.
    Unanswered(String),
    /// Still running at the review's deadline (it goes on; the next review may use it).
    Late,
}

impl Provider {
    async fn provide(self: &Arc<Self>, image: &str, deadline: Instant) -> Provision {
        // plugin.go isImageAllowed.
        if !self.match_images.matches(image) {
            return Provision::NotAsked;
        }
        if self.needs_token {
            return Provision::Unanswered(
                "it needs a service-account token (tokenAttributes), which pullgate does not mint"
                    .to_string(),
            );
        }
        let flight = {
            let mut state = self.state();
            if let Some(config) = state.cached(image, Instant::now()) {
                return Provision::Credentials(config);
            }
            match state.inflight(image) {
                Some(flight) => flight,
                None => {
                    let flight =
                        cache::flight(tokio::spawn(self.clone().execute(image.to_string())));
                    state.start(image, flight.clone());
                    flight
                }
            }
        };
        match tokio::time::timeout_at(deadline, flight).await {
            Ok(outcome) => match outcome.as_ref() {
                Ok(config) => Provision::Credentials(config.clone()),
                Err(why) => Provision::Unanswered(why.clone()),
            },
            Err(_) => Provision::Late,
        }
    }

    /// One execution on its own task: it finishes and fills the cache even when every
    /// review waiting on it has given up.
    async fn execute(self: Arc<Self>, image: String) -> cache::ExecOutcome {
        let started = std::time::Instant::now();
        let answer = match self.plugin.run(&image).await {
            Ok(response) => docker_config(&response.auth).map(|c| (response, Arc::new(c))),
            Err(why) => Err(why),
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let now = Instant::now();
        match answer {
            Ok((response, config)) => {
                tracing::debug!(
                    provider = %self.name,
                    image = %image,
                    cache_key_type = ?response.cache_key_type,
                    entries = response.auth.len(),
                    elapsed_ms,
                    "credential provider answered"
                );
                let keep = (
                    response.cache_key_type,
                    response.cache_duration,
                    config.clone(),
                );
                self.state()
                    .finish(&image, Some(keep), self.default_cache_duration, now);
                Arc::new(Ok(config))
            }
            Err(why) => {
                tracing::warn!(provider = %self.name, image = %image, error = %why, elapsed_ms, "credential provider failed");
                self.state()
                    .finish(&image, None, self.default_cache_duration, now);
                Arc::new(Err(why))
            }
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, cache::State> {
        // The state stays consistent under a panic elsewhere: take it back.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A plugin's `auth` map as a docker config the keyring can hold.
fn docker_config(auth: &[(String, String, String)]) -> Result<DockerConfig, String> {
    let auths: serde_json::Map<String, serde_json::Value> = auth
        .iter()
        .map(|(key, user, pass)| {
            (
                key.clone(),
                serde_json::json!({ "username": user, "password": pass }),
            )
        })
        .collect();
    let json = serde_json::json!({ "auths": auths }).to_string();
    DockerConfig::parse_any(json.as_bytes()).map_err(|e| format!("unusable credentials: {e}"))
}

/// `matchImages` patterns (or `--node-auth-registry` ones), matched as the kubelet's
/// `plugin.go isImageAllowed` matches them: any one pattern, by `keyring.go URLsMatchStr`.
#[derive(Clone, Default)]
struct ImagePatterns {
    patterns: Vec<ImagePattern>,
}

impl ImagePatterns {
    /// A pattern Go's `url.Parse` refuses matches nothing; config validation and the
    /// command line refuse such patterns before they get here.
    fn new(patterns: &[String]) -> Self {
        Self {
            patterns: patterns
                .iter()
                .filter_map(|p| ImagePattern::parse(p))
                .collect(),
        }
    }

    /// Whether any pattern matches `image`, a normalized name (`docker.io/library/nginx`).
    fn matches(&self, image: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(image))
    }
}

/// The nodes' credential providers as pullgate sees them: plugins it runs, and
/// registries whose node credentials it cannot see.
#[derive(Clone, Default)]
pub struct NodeProviders {
    providers: Arc<Vec<Arc<Provider>>>,
    /// Registries authorized by node plugins that pullgate does not run (matchImages
    /// patterns): the built-in cloud list without a config, `--node-auth-registry`.
    unseen: Arc<ImagePatterns>,
}

impl std::fmt::Debug for NodeProviders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeProviders")
            .field("providers", &self.names())
            .field("unseen", &self.unseen.patterns)
            .finish()
    }
}

impl NodeProviders {
    /// No plugins; the well-known cloud registries are the nodes' (see [`CLOUD_REGISTRIES`]).
    pub fn cloud_defaults() -> Self {
        Self::default().with_unseen_registries(CLOUD_REGISTRIES.iter().map(|s| s.to_string()))
    }

    /// `RegisterCredentialProviderPlugins`: the bin dir must exist, the config must read and
    /// validate, and every provider's binary must be in the bin dir.
    pub fn register(config_path: &Path, bin_dir: &Path) -> Result<Self> {
        let shown = bin_dir.display().to_string();
        if let Err(e) = std::fs::metadata(bin_dir) {
            return Err(if e.kind() == std::io::ErrorKind::NotFound {
                Error::BinDirMissing(shown)
            } else {
                Error::BinDir {
                    path: shown,
                    reason: e.to_string(),
                }
            });
        }
        let config = config::load(config_path)?;
        Self::from_config(config, bin_dir)
    }

    /// Plugins for an already validated config.
    pub fn from_config(config: CredentialProviderConfig, bin_dir: &Path) -> Result<Self> {
        let mut providers = Vec::with_capacity(config.providers.len());
        for p in config.providers {
            let path = bin_dir.join(&p.name);
            look_path(&path)?;
            providers.push(Arc::new(Provider {
                needs_token: p.token_attributes.is_some(),
                default_cache_duration: p
                    .default_cache_duration
                    .unwrap_or(golang::GoDuration::ZERO),
                plugin: exec::ExecPlugin {
                    name: p.name.clone(),
                    path,
                    args: p.args,
                    env: p.env,
                    api_version: p.api_version,
                },
                name: p.name,
                match_images: ImagePatterns::new(&p.match_images),
                state: Mutex::new(cache::State::default()),
            }));
        }
        Ok(Self {
            providers: Arc::new(providers),
            unseen: Arc::default(),
        })
    }

    /// Add registries authorized by node plugins pullgate does not run (`--node-auth-registry`).
    pub fn with_unseen_registries(mut self, patterns: impl IntoIterator<Item = String>) -> Self {
        let mut all = (*self.unseen).clone();
        all.patterns
            .extend(patterns.into_iter().filter_map(|p| ImagePattern::parse(&p)));
        self.unseen = Arc::new(all);
        self
    }

    /// The configured providers, in config order.
    pub fn names(&self) -> Vec<&str> {
        self.providers.iter().map(|p| p.name.as_str()).collect()
    }

    /// Ask every provider about every image (normalized names, `docker.io/library/nginx`),
    /// waiting at most until `deadline`. Without providers nothing is read from `images`.
    pub async fn lookup(
        &self,
        images: impl IntoIterator<Item = String>,
        deadline: Instant,
    ) -> ProviderAnswers {
        if self.providers.is_empty() {
            return ProviderAnswers::default();
        }
        let mut unique: Vec<String> = images.into_iter().collect();
        unique.sort();
        unique.dedup();
        let answers = join_all(unique.into_iter().map(|image| async move {
            let provisions =
                join_all(self.providers.iter().map(|p| p.provide(&image, deadline))).await;
            let mut answer = ImageAnswer::default();
            // plugins.go: every provider's answer in one BasicDockerKeyring, then Lookup.
            let mut keyring = Keyring::new();
            for (provider, provision) in self.providers.iter().zip(provisions) {
                match provision {
                    Provision::NotAsked => {}
                    Provision::Credentials(config) => {
                        keyring.add(&format!("credential provider {}", provider.name), &config)
                    }
                    Provision::Unanswered(why) => {
                        answer.unanswered.push((provider.name.clone(), why))
                    }
                    Provision::Late => answer.late.push(provider.name.clone()),
                }
            }
            answer.credentials = keyring.lookup(&image);
            (image, answer)
        }))
        .await;
        ProviderAnswers {
            by_image: answers.into_iter().collect(),
        }
    }

    /// Why `unauthorized` for `reference` cannot be trusted, if it cannot: a provider that
    /// serves it could not answer in pullgate, or it is a registry whose node credentials
    /// pullgate cannot see.
    pub fn distrust_refusal(
        &self,
        answers: &ProviderAnswers,
        reference: &Reference,
    ) -> Option<String> {
        let name = reference.name();
        if let Some(answer) = answers.by_image.get(&name)
            && let Some((provider, why)) = answer.unanswered.first()
        {
            return Some(format!(
                "credential provider {provider} could not answer in pullgate ({}), and the nodes may still pull it",
                short_reason(why)
            ));
        }
        if self.unseen.matches(&name) {
            return Some(format!(
                "the nodes may hold credentials for {} that pullgate cannot see (a cloud credential provider)",
                reference.registry()
            ));
        }
        None
    }
}

/// The words of an exec failure that a warning line has room for.
fn short_reason(why: &str) -> String {
    let why = why
        .rsplit_once(" for image ")
        .and_then(|(_, rest)| rest.split_once(": ").map(|(_, r)| r))
        .unwrap_or(why);
    crate::verdict::excerpt(why, 120)
}

/// `exec.LookPath(<bin-dir>/<name>)`: the file must exist, not be a directory, and be
/// executable.
fn look_path(path: &Path) -> Result<()> {
    let shown = path.display().to_string();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::BinaryMissing(shown));
        }
        Err(e) => {
            return Err(Error::Binary {
                path: shown,
                reason: e.to_string(),
            });
        }
    };
    if meta.is_dir() {
        return Err(Error::Binary {
            path: shown,
            reason: "is a directory".to_string(),
        });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(Error::Binary {
                path: shown,
                reason: "permission denied".to_string(),
            });
        }
    }
    Ok(())
}

#[derive(Debug, Default)]
struct ImageAnswer {
    credentials: Vec<Credential>,
    unanswered: Vec<(String, String)>,
    late: Vec<String>,
}

/// Every provider's answer for the images of one review.
#[derive(Debug, Default)]
pub struct ProviderAnswers {
    by_image: HashMap<String, ImageAnswer>,
}

impl ProviderAnswers {
    /// The plugin credentials for `image` (a normalized name), keyring order.
    pub fn credentials(&self, image: &str) -> &[Credential] {
        self.by_image
            .get(image)
            .map(|a| a.credentials.as_slice())
            .unwrap_or_default()
    }

    /// When a provider serving `image` had not answered by the deadline: what to say.
    pub fn late(&self, image: &str) -> Option<String> {
        let provider = self.by_image.get(image)?.late.first()?;
        Some(format!(
            "credential provider {provider} did not answer before the deadline; it goes on, and its answer will serve the next check"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    // Expected answers from keyring.go URLsMatchStr (ParseSchemelessURL, SplitURL,
    // URLsMatch) run under Go 1.27.
    #[rstest]
    #[case(
        "*.dkr.ecr.*.amazonaws.com",
        "123.dkr.ecr.eu-west-1.amazonaws.com/app",
        true
    )]
    #[case(
        "*.dkr.ecr.*.amazonaws.com",
        "123.dkr.ecr.eu-west-1.amazonaws.com.cn/app",
        false
    )]
    #[case("*.gcr.io", "gcr.io/p/app", false)]
    #[case("*.pkg.dev", "europe-docker.pkg.dev/p/r/app", true)]
    #[case("*.*.geo.azurecr.io", "reg.westeurope.geo.azurecr.io/app", true)]
    #[case("reg.io", "reg.io:5000/app", false)]
    #[case("reg.io:5000", "reg.io:5000/app", true)]
    #[case("reg.io/team", "reg.io/teamx/app", true)]
    #[case("reg.io/team", "reg.io/other/app", false)]
    #[case("reg.io/v2/app", "reg.io/app", false)]
    #[case("reg.io/v2/app", "reg.io/v2/app", true)]
    #[case("https://reg.io", "reg.io/app", false)]
    #[case("index.docker.io", "docker.io/library/nginx", false)]
    #[case("docker.io", "docker.io/library/nginx", true)]
    #[case("reg.io?x=1", "reg.io/app", true)]
    fn match_images_match_as_urls_match_str(
        #[case] pattern: &str,
        #[case] image: &str,
        #[case] want: bool,
    ) {
        assert_eq!(
            ImagePatterns::new(&[pattern.to_string()]).matches(image),
            want,
            "{pattern} vs {image}"
        );
    }

    #[test]
    fn any_one_pattern_of_several_is_enough() {
        let patterns = ImagePatterns::new(&[
            "https://never.io".to_string(),
            "a.io".to_string(),
            "b.io:5000/team".to_string(),
        ]);
        assert!(patterns.matches("b.io:5000/team/app"));
        assert!(patterns.matches("a.io/x"));
        assert!(!patterns.matches("b.io:5000/other"));
        assert!(!patterns.matches("never.io/x"));
    }

    #[test]
    fn the_cloud_list_covers_each_clouds_registries_but_not_public_ecr() {
        let p = NodeProviders::cloud_defaults();
        for image in [
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/app",
            "europe-west1-docker.pkg.dev/p/r/app",
            "gcr.io/p/app",
            "eu.gcr.io/p/app",
            "myreg.azurecr.io/app",
        ] {
            assert!(p.unseen.matches(image), "{image}");
        }
        assert!(!p.unseen.matches("public.ecr.aws/nginx/nginx"));
        assert!(!p.unseen.matches("docker.io/library/nginx"));
    }

    #[test]
    fn exec_failures_are_told_in_a_few_words() {
        assert_eq!(
            short_reason(
                "error execing credential provider plugin ecr for image r.io/a: exit status 1"
            ),
            "exit status 1"
        );
        assert_eq!(
            short_reason("error decoding credential provider plugin response from stdout"),
            "error decoding credential provider plugin response from stdout"
        );
    }
}
