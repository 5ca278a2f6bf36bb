//! A real CNCF distribution 2.8 registry (`/usr/bin/docker-registry`) run as
//! a child process with a generated config, for end-to-end tests against
//! the registry behaviour pullgate will meet in production.
//!
//! Distribution 2.8 behaviour worth knowing (checked by `tests/harness.rs`):
//! * HEAD/GET of a missing manifest: 404 (`MANIFEST_UNKNOWN`; HEAD has a
//!   `Content-Length` but no body).
//! * An OCI manifest or index asked for without its OCI type in `Accept`:
//!   404 `MANIFEST_UNKNOWN` ("... accept header does not support ...").
//! * A Docker v2 manifest without its type in `Accept` (none, or OCI only):
//!   **400** `MANIFEST_INVALID` (failed schema 1 down-conversion).
//! * A Docker manifest list without the list type in `Accept` but with the
//!   v2 type: **200 with the linux/amd64 child** (its digest and type).
//! * Token auth: no token -> 401 `Bearer realm,service,scope`; a token
//!   lacking the scope -> 401 with `error="insufficient_scope"`; an expired
//!   or bad token -> 401 with `error="invalid_token"`.
//! * htpasswd works over plain HTTP and accepts bcrypt `$2b$` hashes.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::certs::TestPki;
use super::push::{PushAuth, PushTarget};

/// The registry binary shipped by Debian's `docker-registry` package.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// Realm string used in the htpasswd `WWW-Authenticate: Basic` challenge.
pub const BASIC_REALM: &str = "pullgate-test";

/// How the registry authenticates clients.
#[derive(Debug, Clone, Default)]
pub enum RegistryAuth {
    /// Anonymous read/write.
    #[default]
    None,
    /// HTTP Basic against an htpasswd file (bcrypt, cost 4) holding these
    /// `(user, password)` pairs.
    Htpasswd { users: Vec<(String, String)> },
    /// Docker token auth; build it with [`super::token::TokenIssuer::registry_auth`].
    Token {
        /// Full token endpoint URL (`…/token`).
        realm: String,
        service: String,
        issuer: String,
        /// PEM bundle holding the self-signed cert of the JWT signing key.
        root_cert_bundle: PathBuf,
    },
}

impl RegistryAuth {
    /// htpasswd auth for the given `(user, password)` pairs.
    pub fn htpasswd(users: &[(&str, &str)]) -> Self {
        Self::Htpasswd {
            users: users
                .iter()
                .map(|(u, p)| ((*u).to_owned(), (*p).to_owned()))
                .collect(),
        }
    }
}

/// Options for [`Registry::start`].
#[derive(Debug, Clone, Default)]
pub struct RegistryOpts<'a> {
    /// Serve HTTPS with the PKI's default server leaf; plain HTTP if `None`.
    pub tls: Option<&'a TestPki>,
    pub auth: RegistryAuth,
}

impl<'a> RegistryOpts<'a> {
    /// Plain HTTP, anonymous.
    pub fn plain() -> Self {
        Self::default()
    }

    /// HTTPS with `pki`'s server leaf, anonymous.
    pub fn tls(pki: &'a TestPki) -> Self {
        Self {
            tls: Some(pki),
            auth: RegistryAuth::None,
        }
    }

    /// Replace the auth mode.
    pub fn with_auth(mut self, auth: RegistryAuth) -> Self {
        self.auth = auth;
        self
    }
}

/// A running registry process; killed and reaped on drop.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    dir: TempDir,
    host: String,
    tls: bool,
    ca_pem: Option<PathBuf>,
}

/// Attempts when the port picked by [`super::free_port`] was taken by
/// someone else before the registry bound it.
const START_ATTEMPTS: usize = 3;

impl Registry {
    /// Write a config, start the registry and wait until `GET /v2/` answers
    /// (any status, so 401 counts as up). Panics with the registry's output
    /// if it exits early or is not up within [`super::READY_TIMEOUT`].
    pub async fn start(opts: RegistryOpts<'_>) -> Registry {
        super::init();
        let mut dir = tempfile::Builder::new()
            .prefix("pullgate-registry-")
            .tempdir()
            .expect("creating registry temp dir");
        let tls = opts.tls.map(|pki| {
            // Own copies, so the registry does not depend on the PKI's lifetime.
            let cert = copy_into(dir.path(), pki.cert_pem(), "server.crt");
            let key = copy_into(dir.path(), pki.key_pem(), "server.key");
            let ca = copy_into(dir.path(), pki.ca_pem(), "ca.pem");
            (cert, key, ca)
        });
        let auth_yaml = auth_config(dir.path(), &opts.auth);

        for attempt in 1..=START_ATTEMPTS {
            let port = super::free_port(super::LOCALHOST);
            let host = format!("127.0.0.1:{port}");
            let config = config_yaml(
                dir.path(),
                &host,
                tls.as_ref().map(|(c, k, _)| (c.as_path(), k.as_path())),
                &auth_yaml,
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).expect("writing registry config");

            let child = spawn(dir.path(), &config_path);
            let mut registry = Registry {
                child,
                dir,
                host,
                tls: tls.is_some(),
                ca_pem: tls.as_ref().map(|(_, _, ca)| ca.clone()),
            };
            match registry.wait_ready().await {
                Ok(()) => return registry,
                Err(logs)
                    if logs.contains("address already in use") && attempt < START_ATTEMPTS =>
                {
                    // Lost the port race; reuse the temp dir for the next try.
                    let _ = registry.child.wait();
                    dir = registry.take_dir();
                }
                Err(logs) => panic!(
                    "docker-registry did not become ready on {}:\n{logs}",
                    registry.host
                ),
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `https://127.0.0.1:PORT` or `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.host)
    }

    /// Whether the registry serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// CA bundle that verifies the registry's certificate (TLS only).
    pub fn ca_pem_path(&self) -> Option<&Path> {
        self.ca_pem.as_deref()
    }

    /// The registry's temp dir (config, storage, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Root of the filesystem storage driver.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Captured stdout + stderr of the registry so far.
    pub fn logs(&self) -> String {
        read_logs(self.dir.path())
    }

    /// A [`PushTarget`] for this registry with the given credentials.
    pub fn push_target(&self, auth: PushAuth) -> PushTarget {
        PushTarget {
            base_url: self.base_url(),
            ca_pem: self.ca_pem.clone(),
            auth,
        }
    }

    /// A reqwest client that trusts this registry's CA (see [`super::http_client`]).
    pub fn client(&self) -> reqwest::Client {
        super::http_client(self.ca_pem_path())
    }

    /// Poll `GET /v2/` until it answers; Err carries the logs on failure.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let client = super::http_client(self.ca_pem_path());
        let url = format!("{}/v2/", self.base_url());
        let deadline = Instant::now() + super::READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}\n{}", self.logs()));
            }
            let attempt = client
                .get(&url)
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if attempt.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no answer from {url} within {:?} (last error: {:?})\n{}",
                    super::READY_TIMEOUT,
                    attempt.err(),
                    self.logs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Swap the temp dir out (for a restart attempt); leaves an empty one.
    fn take_dir(&mut self) -> TempDir {
        let placeholder = tempfile::tempdir().expect("creating placeholder temp dir");
        std::mem::replace(&mut self.dir, placeholder)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Our own child only; kill fails harmlessly if it already exited.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(dir: &Path, config: &Path) -> Child {
    let stdout = File::create(dir.join("stdout.log")).expect("creating registry stdout log");
    let stderr = File::create(dir.join("stderr.log")).expect("creating registry stderr log");
    Command::new(REGISTRY_BIN)
        .arg("serve")
        .arg(config)
        // REGISTRY_* variables would override the config file.
        .env_clear()
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {REGISTRY_BIN} (is the Debian package docker-registry installed?): {e}")
        })
}

fn read_logs(dir: &Path) -> String {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    format!(
        "--- registry stdout ---\n{}--- registry stderr ---\n{}",
        read("stdout.log"),
        read("stderr.log")
    )
}

fn copy_into(dir: &Path, from: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::copy(from, &to)
        .unwrap_or_else(|e| panic!("copying {} to {}: {e}", from.display(), to.display()));
    to
}

/// The `auth:` section (possibly empty), writing any files it references.
fn auth_config(dir: &Path, auth: &RegistryAuth) -> String {
    match auth {
        RegistryAuth::None => String::new(),
        RegistryAuth::Htpasswd { users } => {
            let path = dir.join("htpasswd");
            let mut file = String::new();
            for (user, password) in users {
                // Cost 4 is the bcrypt minimum: fast, and Go's bcrypt accepts $2b$.
                let hash = bcrypt::hash(password, 4).expect("bcrypt hashing");
                let _ = writeln!(file, "{user}:{hash}");
            }
            std::fs::write(&path, file).expect("writing htpasswd file");
            format!(
                "auth:\n  htpasswd:\n    realm: {}\n    path: {}\n",
                yaml_str(BASIC_REALM),
                yaml_str(&path.display().to_string())
            )
        }
        RegistryAuth::Token {
            realm,
            service,
            issuer,
            root_cert_bundle,
        } => {
            let bundle = copy_into(dir, root_cert_bundle, "token-root.pem");
            format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                yaml_str(realm),
                yaml_str(service),
                yaml_str(issuer),
                yaml_str(&bundle.display().to_string())
            )
        }
    }
}

fn config_yaml(dir: &Path, host: &str, tls: Option<(&Path, &Path)>, auth: &str) -> String {
    let storage = dir.join("storage");
    let mut yaml = format!(
        "version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
health:
  storagedriver:
    enabled: false
http:
  addr: {host}
  secret: pullgate-test-secret
",
        storage = yaml_str(&storage.display().to_string()),
    );
    if let Some((cert, key)) = tls {
        let _ = write!(
            yaml,
            "  tls:\n    certificate: {}\n    key: {}\n",
            yaml_str(&cert.display().to_string()),
            yaml_str(&key.display().to_string())
        );
    }
    yaml.push_str(auth);
    yaml
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
fn yaml_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}
