//! Command-line interface: flags (each with a `PULLGATE_*` variable) and the wiring of each
//! command. Business rules live in the library modules; this is the edge, where `anyhow`
//! is allowed.

mod audit;
mod certs;
mod check;
mod input;
mod output;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cache::{CacheConfig, VerdictCache};
use crate::checker::Checker;
use crate::keyring::{DockerConfig, Keyring};
use crate::metrics::Metrics;
use crate::platform::Platform;
use crate::provider::NodeProviders;
use crate::registry::guard::{AddressPolicy, Cidr};
use crate::registry::hosts::HostsConfig;
use crate::registry::proxy::ProxyRules;
use crate::registry::{Registry, RegistryConfig};
use crate::verdict::{Finding, Verdict};

pub use audit::AuditArgs;
pub use check::CheckArgs;
pub use serve::ServeArgs;

/// Exit status of `check` and `audit` (ARCHITECTURE.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Every image pullable or exempt.
    Ok = 0,
    /// At least one definitive failure.
    Failure = 1,
    /// Bad usage or unreadable input.
    Usage = 2,
    /// Only indeterminate failures (registry down, rate-limited, timeout).
    Indeterminate = 3,
}

impl Status {
    pub fn of(findings: &[Finding]) -> Self {
        if findings.iter().any(|f| f.verdict.is_definitive_failure()) {
            Status::Failure
        } else if findings.iter().any(|f| f.verdict.is_indeterminate()) {
            Status::Indeterminate
        } else {
            Status::Ok
        }
    }
}

impl From<Status> for ExitCode {
    fn from(s: Status) -> Self {
        ExitCode::from(s as u8)
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "pullgate",
    version,
    about = "Reject Pods whose images would fail to pull, at admission time",
    long_about = "pullgate resolves every container image against its registry with the \
credentials the kubelet would use, and reports (or, as a webhook, refuses) what would end \
in ErrImagePull / ImagePullBackOff.\n\nEvery flag can also be set through the PULLGATE_* \
environment variable shown in its help."
)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check images or Kubernetes manifests, without a cluster (CI use).
    ///
    /// Exit status: 0 every image pullable or exempt, 1 any definitive failure, 3 only
    /// indeterminate failures (registry down, rate-limited, timeout), 2 bad usage or
    /// unreadable input.
    Check(Box<CheckArgs>),
    /// Serve the validating admission webhook (HTTPS POST /validate; /healthz, /readyz and
    /// /metrics on the metrics port).
    Serve(Box<ServeArgs>),
    /// Write a CA, a serving certificate for the webhook's Service and the kustomization
    /// that installs them (`kubectl apply -k certs`), for clusters without cert-manager.
    Certs(certs::CertsArgs),
    /// List what in a live cluster would no longer pull: every Pod not owned by a
    /// controller and every workload with a pod template, with the webhook's rules.
    ///
    /// The table lists what would not pull, grouped by namespace (`--all`: every image).
    /// Exit status with `--fail-on any` (the default) as for `check`: 0 all pullable or
    /// exempt, 1 any definitive failure, 3 only indeterminate failures; `--fail-on
    /// definitive` ignores registry trouble, `--fail-on none` always exits 0; 2 is bad usage
    /// or no cluster.
    Audit(Box<AuditArgs>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log filter (tracing `EnvFilter` syntax: `info`, `pullgate=debug`).
    #[arg(
        long,
        global = true,
        env = "PULLGATE_LOG_LEVEL",
        default_value = "info"
    )]
    pub log_level: String,
    /// Log line format.
    #[arg(
        long,
        global = true,
        env = "PULLGATE_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

impl LogArgs {
    /// Logs go to stderr: stdout belongs to command output.
    pub fn init(&self) -> anyhow::Result<()> {
        let filter = tracing_subscriber::EnvFilter::try_new(&self.log_level)
            .with_context(|| format!("invalid --log-level {:?}", self.log_level))?;
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        let result = match self.log_format {
            LogFormat::Json => builder.json().flatten_event(true).try_init(),
            LogFormat::Text => builder.try_init(),
        };
        // Already initialised (tests running several commands) is fine.
        let _ = result;
        Ok(())
    }
}

/// The platforms images must run on: shared by `check`, `serve` and `audit`.
#[derive(Debug, Clone, Args)]
pub struct PlatformArgs {
    /// Platform pods run on, OS/ARCH[/VARIANT] (repeatable; any one suffices).
    #[arg(
        long = "platform",
        value_name = "OS/ARCH",
        env = "PULLGATE_PLATFORM",
        value_delimiter = ',',
        default_value = "linux/amd64"
    )]
    pub platforms: Vec<Platform>,
}

/// The report format of `check` and `audit`.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Output format: an aligned table with a summary line, JSON, or for CI systems GitHub
    /// workflow commands (annotations), SARIF 2.1.0 or JUnit XML.
    #[arg(
        short = 'o',
        long,
        value_enum,
        env = "PULLGATE_OUTPUT",
        default_value = "table"
    )]
    pub output: output::Output,
}

/// How the engine reaches registries: shared by `check`, `serve` and `audit`.
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Extra PEM CA bundle trusted for registries (repeatable).
    #[arg(
        long = "registry-ca",
        value_name = "FILE",
        env = "PULLGATE_REGISTRY_CA",
        value_delimiter = ','
    )]
    pub registry_ca: Vec<PathBuf>,
    /// Registry spoken to over plain HTTP, as HOST:PORT (repeatable).
    #[arg(
        long = "insecure-registry",
        value_name = "HOST:PORT",
        env = "PULLGATE_INSECURE_REGISTRY",
        value_delimiter = ','
    )]
    pub insecure_registry: Vec<String>,
    /// Docker config JSON of the nodes' own credentials, tried after the pod's (repeatable).
    #[arg(
        long = "node-pull-secret",
        value_name = "FILE",
        env = "PULLGATE_NODE_PULL_SECRET",
        value_delimiter = ','
    )]
    pub node_pull_secret: Vec<PathBuf>,
    /// Registry pattern (`*.dkr.ecr.*.amazonaws.com`, matchImages grammar) authorized by a
    /// node credential provider pullgate does not run: `unauthorized` there is
    /// indeterminate, never a deny (repeatable; added to the built-in cloud registries, or
    /// to the provider config).
    #[arg(
        long = "node-auth-registry",
        value_name = "PATTERN",
        env = "PULLGATE_NODE_AUTH_REGISTRY",
        value_delimiter = ',',
        value_parser = parse_image_pattern
    )]
    pub node_auth_registry: Vec<String>,
    /// The kubelet's CredentialProviderConfig (a file, or a directory of *.json, *.yaml and
    /// *.yml files): its plugins are run as the kubelet runs them, after the node pull
    /// secrets. Without it, refusals by the well-known cloud registries are indeterminate.
    #[arg(
        long = "image-credential-provider-config",
        value_name = "PATH",
        env = "PULLGATE_IMAGE_CREDENTIAL_PROVIDER_CONFIG",
        requires = "image_credential_provider_bin_dir"
    )]
    pub image_credential_provider_config: Option<PathBuf>,
    /// Directory of the plugin binaries the provider config names.
    #[arg(
        long = "image-credential-provider-bin-dir",
        value_name = "DIR",
        env = "PULLGATE_IMAGE_CREDENTIAL_PROVIDER_BIN_DIR",
        requires = "image_credential_provider_config"
    )]
    pub image_credential_provider_bin_dir: Option<PathBuf>,
    /// Never contact registries at addresses in this range, checked after DNS resolution
    /// (repeatable; link-local 169.254.0.0/16, fe80::/10 and fd00:ec2::254 always are).
    #[arg(
        long = "deny-registry-cidr",
        value_name = "CIDR",
        env = "PULLGATE_DENY_REGISTRY_CIDR",
        value_delimiter = ','
    )]
    pub deny_registry_cidr: Vec<Cidr>,
    /// Registry host (`*` within a label) contacted whatever address it has (repeatable).
    #[arg(
        long = "allow-registry",
        value_name = "HOST",
        env = "PULLGATE_ALLOW_REGISTRY",
        value_delimiter = ','
    )]
    pub allow_registry: Vec<String>,
    /// Connect timeout to a registry, in seconds.
    #[arg(long, value_name = "SECONDS", env = "PULLGATE_CONNECT_TIMEOUT", default_value = "3", value_parser = parse_seconds)]
    pub connect_timeout: Duration,
    /// Timeout of one registry request, in seconds.
    #[arg(long, value_name = "SECONDS", env = "PULLGATE_REQUEST_TIMEOUT", default_value = "8", value_parser = parse_seconds)]
    pub request_timeout: Duration,
    /// Requests in flight to one registry at most.
    #[arg(
        long,
        value_name = "N",
        env = "PULLGATE_REGISTRY_CONCURRENCY",
        default_value = "32"
    )]
    pub registry_concurrency: usize,
    /// Entries in each of the registry's content caches (tag digests, manifests, blobs):
    /// what lets an expired verdict be re-checked with one HEAD.
    #[arg(
        long,
        value_name = "N",
        env = "PULLGATE_REGISTRY_CACHE_ENTRIES",
        default_value = "10000"
    )]
    pub registry_cache_entries: u64,
    /// containerd's registry host directories (its `config_path`, e.g.
    /// /etc/containerd/certs.d), `:`-separated: `<dir>/<registry>/hosts.toml` mirrors are
    /// tried before the registry, as on the nodes.
    #[arg(
        long = "registry-config-path",
        value_name = "DIR[:DIR...]",
        env = "PULLGATE_REGISTRY_CONFIG_PATH"
    )]
    pub registry_config_path: Option<String>,
    /// Check that the config and every layer of the manifest a pull selects exist, as the
    /// pull fetches them (a registry whose garbage collection lost a layer fails pulls).
    #[arg(
        long = "verify-blobs",
        value_name = "BOOL",
        env = "PULLGATE_VERIFY_BLOBS",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub verify_blobs: bool,
    #[command(flatten)]
    pub cache: CacheArgs,
}

/// Verdict lifetimes (ARCHITECTURE.md §6).
#[derive(Debug, Clone, Args)]
pub struct CacheArgs {
    /// Cached verdicts at most.
    #[arg(
        long,
        value_name = "N",
        env = "PULLGATE_CACHE_MAX_ENTRIES",
        default_value = "200000"
    )]
    pub cache_max_entries: u64,
    /// Lifetime of `pullable` for a reference by digest, in seconds.
    #[arg(long, value_name = "SECONDS", env = "PULLGATE_CACHE_DIGEST_TTL", default_value = "21600", value_parser = parse_seconds)]
    pub cache_digest_ttl: Duration,
    /// Lifetime of `pullable` for a reference by tag (tags move), in seconds.
    #[arg(long, value_name = "SECONDS", env = "PULLGATE_CACHE_TAG_TTL", default_value = "300", value_parser = parse_seconds)]
    pub cache_tag_ttl: Duration,
    /// Lifetime of a definitive failure (not-found, unauthorized…), in seconds.
    #[arg(long, value_name = "SECONDS", env = "PULLGATE_CACHE_FAILURE_TTL", default_value = "30", value_parser = parse_seconds)]
    pub cache_failure_ttl: Duration,
    /// Lifetime of an indeterminate verdict (outage, 429, timeout), in seconds; a 429's
    /// Retry-After is a floor.
    #[arg(long, value_name = "SECONDS", env = "PULLGATE_CACHE_INDETERMINATE_TTL", default_value = "5", value_parser = parse_seconds)]
    pub cache_indeterminate_ttl: Duration,
}

impl CacheArgs {
    pub fn config(&self) -> CacheConfig {
        CacheConfig {
            max_entries: self.cache_max_entries,
            pullable_digest_ttl: self.cache_digest_ttl,
            pullable_tag_ttl: self.cache_tag_ttl,
            failure_ttl: self.cache_failure_ttl,
            indeterminate_ttl: self.cache_indeterminate_ttl,
            ..CacheConfig::default()
        }
    }
}

impl EngineArgs {
    /// How the probe reaches registries: these flags, the `hosts.toml` directories and
    /// this process's `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` (read as containerd reads
    /// them). An unreadable `hosts.toml` or proxy setting is an error, never ignored.
    pub fn registry_config(&self) -> anyhow::Result<RegistryConfig> {
        let roots: Vec<PathBuf> = self
            .registry_config_path
            .as_deref()
            .map(|p| {
                p.split(':')
                    .filter(|d| !d.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default();
        let hosts = HostsConfig::load(&roots).context("--registry-config-path")?;
        let proxies = ProxyRules::from_env().context("egress proxy settings")?;
        Ok(RegistryConfig {
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            ca_bundles: self.registry_ca.clone(),
            insecure_registries: self.insecure_registry.clone(),
            max_concurrency_per_registry: self.registry_concurrency,
            address_policy: AddressPolicy::new(
                self.deny_registry_cidr.clone(),
                self.allow_registry.clone(),
            ),
            hosts,
            proxies,
            verify_blobs: self.verify_blobs,
            max_cached: self.registry_cache_entries,
            ..RegistryConfig::default()
        })
    }

    /// The engine these flags describe, for one run (`check`, `audit`): the system roots
    /// are read at the first TLS handshake that needs them, never for plain-HTTP registries.
    pub fn checker(&self) -> anyhow::Result<Checker> {
        self.engine(None)
    }

    /// The engine of `serve`, reporting registry requests, cache lookups and probes to
    /// `metrics`; the system roots are read now, so the first review does not pay for them.
    pub fn checker_with_metrics(&self, metrics: Arc<Metrics>) -> anyhow::Result<Checker> {
        self.engine(Some(metrics))
    }

    fn engine(&self, metrics: Option<Arc<Metrics>>) -> anyhow::Result<Checker> {
        let mut registry = Registry::new(self.registry_config()?).context("registry client")?;
        if let Some(m) = &metrics {
            registry.load_trust();
            let m = m.clone();
            registry = registry.with_observer(Arc::new(move |host: &str, status: &str| {
                m.registry_request(host, status)
            }));
        }
        let mut node = Keyring::new();
        for path in &self.node_pull_secret {
            let bytes = std::fs::read(path)
                .with_context(|| format!("cannot read --node-pull-secret {}", path.display()))?;
            let config = DockerConfig::parse_any(&bytes)
                .with_context(|| format!("--node-pull-secret {}", path.display()))?;
            node.add("node credentials", &config);
        }
        let mut checker = Checker::new(Arc::new(registry), VerdictCache::new(self.cache.config()))
            .with_node_keyring(node)
            .with_node_providers(self.node_providers()?);
        if let Some(m) = metrics {
            checker = checker.with_observer(m);
        }
        Ok(checker)
    }
}

impl EngineArgs {
    /// The kubelet's credential provider plugins when configured (a bad config or a
    /// missing binary stops start-up with the kubelet's message); otherwise the well-known
    /// cloud registries. `--node-auth-registry` patterns are added either way.
    fn node_providers(&self) -> anyhow::Result<NodeProviders> {
        let providers = match (
            &self.image_credential_provider_config,
            &self.image_credential_provider_bin_dir,
        ) {
            (Some(config), Some(bin_dir)) => {
                let providers = NodeProviders::register(config, bin_dir)?;
                tracing::info!(providers = ?providers.names(), "image credential providers registered");
                providers
            }
            _ => NodeProviders::cloud_defaults(),
        };
        Ok(providers.with_unseen_registries(self.node_auth_registry.clone()))
    }
}

/// A registry pattern the kubelet would accept in a credential provider's `matchImages`
/// (it refuses to start with one it cannot parse).
fn parse_image_pattern(s: &str) -> Result<String, String> {
    crate::keyring::ImagePattern::parse(s)
        .map(|_| s.to_string())
        .ok_or_else(|| {
            format!("{s:?} is not a registry pattern (Go's url.Parse refuses https://{s})")
        })
}

/// Seconds as a number (`10`, `2.5`) or with a unit (`10s`, `500ms`, `1m`).
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (seconds, or with s/ms/m)"))?;
    if !value.is_finite() || value < 0.0 || value * scale > 86_400.0 {
        return Err(format!("{s:?} is out of range (0 to 86400 seconds)"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

/// The name kubectl runs a plugin by: `kubectl pullgate …` executes `kubectl-pullgate …`
/// found on PATH.
pub const KUBECTL_PLUGIN: &str = "kubectl-pullgate";

impl Cli {
    /// The command line of this process; exits with clap's message (and status 2) when it
    /// is bad, or after printing help or the version.
    pub fn parse_invoked() -> Self {
        Self::try_parse_invoked(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// Parse `args` (program name first). Run as `kubectl-pullgate`, help and usage say
    /// `kubectl pullgate`, the way a user typed it.
    pub fn try_parse_invoked<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory as _, FromArgMatches as _};
        let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        let mut command = Self::command();
        if args.first().is_some_and(|argv0| is_kubectl_plugin(argv0)) {
            command = command
                .name(KUBECTL_PLUGIN)
                .bin_name("kubectl pullgate")
                .display_name("kubectl pullgate");
        }
        let matches = command.try_get_matches_from(args)?;
        Self::from_arg_matches(&matches)
    }

    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Check(args) => Ok(args.run().await?.into()),
            Command::Audit(args) => Ok(args.run().await?.into()),
            Command::Certs(args) => {
                args.run()?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Serve(args) => {
                args.run().await?;
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

/// kubectl runs plugins by their path on PATH: the file name says how we were invoked.
fn is_kubectl_plugin(argv0: &std::ffi::OsStr) -> bool {
    std::path::Path::new(argv0)
        .file_name()
        .map(|n| n.to_string_lossy())
        .is_some_and(|n| n.trim_end_matches(".exe") == KUBECTL_PLUGIN)
}

/// Count findings per verdict, in verdict order: `2 pullable, 1 not-found`.
pub fn summary(findings: &[Finding]) -> String {
    let parts: Vec<String> = Verdict::ALL
        .iter()
        .filter_map(|v| {
            let n = findings.iter().filter(|f| f.verdict == *v).count();
            (n > 0).then(|| format!("{n} {v}"))
        })
        .collect();
    let total = findings.len();
    let noun = if total == 1 { "image" } else { "images" };
    if parts.is_empty() {
        format!("0 {noun} checked")
    } else {
        format!("{total} {noun}: {}", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_units() {
        assert_eq!(parse_seconds("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_seconds("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_seconds("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_seconds("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("soon").is_err());
        assert!(parse_seconds("NaN").is_err());
        assert!(parse_seconds("1e300").is_err());
    }

    #[test]
    fn as_a_kubectl_plugin_usage_names_kubectl_pullgate() {
        let err = Cli::try_parse_invoked(["/usr/local/bin/kubectl-pullgate", "check", "--help"])
            .expect_err("help is an early exit");
        let help = err.to_string();
        assert!(help.contains("Usage: kubectl pullgate check"), "{help}");
        let err = Cli::try_parse_invoked(["/usr/local/bin/pullgate", "check", "--help"])
            .expect_err("help is an early exit");
        assert!(err.to_string().contains("Usage: pullgate check"), "{err}");
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
