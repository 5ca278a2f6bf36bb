//! containerd's registry host configuration (`config_path`, e.g. `/etc/containerd/certs.d`):
//! for a registry `R`, the directory `<root>/R` (or `<root>/host_port_`, or
//! `<root>/_default`) holds a `hosts.toml` listing mirrors (`[host."…"]`, tried in file
//! order) and the upstream (`server`, tried last), each with its capabilities, CA, client
//! certificate, `skip_verify`, headers and `override_path`. Read as containerd's
//! `core/remotes/docker/config/hosts.go` (`parseHostsFile`, `parseHostConfig`,
//! `ConfigureHosts`) and `config_unix.go` (`hostPaths`) do.
//!
//! Unlike containerd, which logs an unreadable `hosts.toml` and carries on without it,
//! pullgate refuses to start: a silently ignored mirror would make every verdict about
//! the wrong host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use toml::Value;

#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

pub type Result<T, E = HostsError> = std::result::Result<T, E>;

/// A client certificate and its key (the same file when the key is in it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// TLS settings a host needs beyond the defaults: each distinct set gets its own client.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct TlsSettings {
    pub cas: Vec<PathBuf>,
    pub client: Option<ClientCert>,
    pub skip_verify: bool,
}

/// One host of a `hosts.toml`.
#[derive(Debug, Clone)]
pub struct Host {
    pub scheme: String,
    /// `host[:port]`.
    pub host: String,
    /// `/v2`, or the configured path with `override_path`.
    pub path: String,
    pub pull: bool,
    pub resolve: bool,
    pub headers: HeaderMap,
    /// Index into [`HostsConfig::tls_settings`] (+1 = the registry's client index), or 0.
    pub client: usize,
}

/// The hosts of one registry, in the order containerd tries them; the last one is the
/// upstream (`server`), unless the file leaves `server` out, in which case the registry
/// itself comes last with default settings.
#[derive(Debug, Clone)]
pub struct HostDir {
    pub mirrors: Vec<Host>,
    /// `server`, when the file names one (its settings come from the top level).
    pub server: Option<Host>,
    /// Top-level settings for the default upstream when `server` is absent.
    pub upstream_client: usize,
    pub upstream_headers: HeaderMap,
    pub upstream_pull: bool,
    pub upstream_resolve: bool,
    /// Where the configuration came from, for messages.
    pub source: PathBuf,
}

/// Every host directory under the configured roots, read at start-up.
#[derive(Debug, Clone, Default)]
pub struct HostsConfig {
    roots: Vec<PathBuf>,
    /// (root index, directory name) → hosts.
    dirs: BTreeMap<(usize, String), Arc<HostDir>>,
    tls: Vec<TlsSettings>,
}

impl HostsConfig {
    /// Read `hosts.toml` (or docker-style `*.crt`/`*.cert`/`*.key` files) of every host
    /// directory under each root. A root that does not exist holds nothing (containerd
    /// reads its default roots the same way).
    pub fn load(roots: &[PathBuf]) -> Result<Self> {
        let mut config = HostsConfig {
            roots: roots.to_vec(),
            ..HostsConfig::default()
        };
        for (index, root) in roots.iter().enumerate() {
            let entries = match std::fs::read_dir(root) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(HostsError::Read {
                        path: root.clone(),
                        source,
                    });
                }
            };
            let mut names: Vec<(String, PathBuf)> = entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
                .collect();
            names.sort();
            for (name, dir) in names {
                if let Some(hosts) = config.read_dir(&dir)? {
                    config.dirs.insert((index, name), Arc::new(hosts));
                }
            }
        }
        Ok(config)
    }

    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    /// The distinct TLS settings hosts need; host `client` indices point into this list
    /// (plus one: index 0 is the default client).
    pub fn tls_settings(&self) -> &[TlsSettings] {
        &self.tls
    }

    /// The hosts of `registry` (`docker.io`, `localhost:5000`): containerd's `hostPaths`
    /// in each root, in order — `host_port_`, then `host:port`, then `_default` — the
    /// first directory that exists wins.
    pub fn lookup(&self, registry: &str) -> Option<Arc<HostDir>> {
        let mut names = Vec::new();
        if let Some(i) = registry.rfind(':').filter(|i| *i > 0) {
            names.push(format!("{}_{}_", &registry[..i], &registry[i + 1..]));
        }
        names.push(registry.to_string());
        names.push("_default".to_string());
        for root in 0..self.roots.len() {
            for name in &names {
                if let Some(dir) = self.dirs.get(&(root, name.clone())) {
                    return Some(dir.clone());
                }
            }
        }
        None
    }

    fn read_dir(&mut self, dir: &Path) -> Result<Option<HostDir>> {
        let file = dir.join("hosts.toml");
        match std::fs::read_to_string(&file) {
            Ok(text) => self.parse_hosts_file(dir, &file, &text).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.read_cert_dir(dir),
            Err(source) => Err(HostsError::Read { path: file, source }),
        }
    }

    /// A directory without `hosts.toml`: docker's `certs.d` layout, `*.crt` CAs and
    /// `*.cert` + `*.key` client pairs, for the upstream only.
    fn read_cert_dir(&mut self, dir: &Path) -> Result<Option<HostDir>> {
        let read = std::fs::read_dir(dir).map_err(|source| HostsError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut files: Vec<PathBuf> = read.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        files.sort();
        let mut tls = TlsSettings::default();
        for f in &files {
            match f.extension().and_then(|e| e.to_str()) {
                Some("crt") => tls.cas.push(f.clone()),
                Some("cert") if tls.client.is_none() => {
                    let key = f.with_extension("key");
                    if key.exists() {
                        tls.client = Some(ClientCert {
                            cert: f.clone(),
                            key,
                        });
                    }
                }
                _ => {}
            }
        }
        if tls == TlsSettings::default() {
            return Ok(None);
        }
        let client = self.client_for(tls);
        Ok(Some(HostDir {
            mirrors: Vec::new(),
            server: None,
            upstream_client: client,
            upstream_headers: HeaderMap::new(),
            upstream_pull: true,
            upstream_resolve: true,
            source: dir.to_path_buf(),
        }))
    }

    fn client_for(&mut self, tls: TlsSettings) -> usize {
        if tls == TlsSettings::default() {
            return 0;
        }
        match self.tls.iter().position(|t| *t == tls) {
            Some(i) => i + 1,
            None => {
                self.tls.push(tls);
                self.tls.len()
            }
        }
    }

    /// `parseHostsFile`: the `[host."…"]` tables in file order, then the top level.
    fn parse_hosts_file(&mut self, dir: &Path, file: &Path, text: &str) -> Result<HostDir> {
        let invalid = |reason: String| HostsError::Invalid {
            path: file.to_path_buf(),
            reason,
        };
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| invalid(e.to_string().trim().replace('\n', " ")))?;
        let mut mirrors = Vec::new();
        if let Some(hosts) = table.get("host") {
            let hosts = hosts.as_table().ok_or_else(|| {
                invalid("\"host\" must be a table of [host.\"URL\"] tables".into())
            })?;
            for (url, settings) in hosts {
                let settings = settings
                    .as_table()
                    .ok_or_else(|| invalid(format!("host {url:?} must be a table")))?;
                let parsed = self.parse_host(url, dir, settings).map_err(invalid)?;
                mirrors.push(parsed);
            }
        }
        let server = match table.get("server") {
            None => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(self.parse_host(s, dir, &table).map_err(invalid)?),
            Some(other) => {
                return Err(invalid(format!(
                    "\"server\" must be a string, not {}",
                    other.type_str()
                )));
            }
        };
        // Without `server`, the top-level settings still apply to the upstream.
        let top = self.parse_settings(dir, &table).map_err(invalid)?;
        let upstream_client = self.client_for(top.tls);
        Ok(HostDir {
            mirrors,
            server,
            upstream_client,
            upstream_headers: top.headers,
            upstream_pull: top.pull,
            upstream_resolve: top.resolve,
            source: file.to_path_buf(),
        })
    }

    /// `parseHostConfig` for one host URL.
    fn parse_host(
        &mut self,
        server: &str,
        dir: &Path,
        settings: &toml::Table,
    ) -> std::result::Result<Host, String> {
        let with_scheme = if server.starts_with("http") {
            server.to_string()
        } else {
            format!("https://{server}")
        };
        let url = reqwest::Url::parse(&with_scheme)
            .map_err(|e| format!("unable to parse server {with_scheme}: {e}"))?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(format!("server {with_scheme} has no host")),
        };
        let parsed = self.parse_settings(dir, settings)?;
        let override_path = parsed.override_path;
        let raw_path = url.path().trim_end_matches('/');
        let path = if raw_path.is_empty() {
            if override_path {
                String::new()
            } else {
                "/v2".to_string()
            }
        } else {
            let clean = clean_path(raw_path);
            if clean.ends_with("/v2") || override_path {
                clean
            } else {
                format!("{clean}/v2")
            }
        };
        let client = self.client_for(parsed.tls);
        Ok(Host {
            scheme: url.scheme().to_string(),
            host,
            path,
            pull: parsed.pull,
            resolve: parsed.resolve,
            headers: parsed.headers,
            client,
        })
    }

    fn parse_settings(&self, dir: &Path, t: &toml::Table) -> std::result::Result<Settings, String> {
        let mut s = Settings {
            pull: true,
            resolve: true,
            ..Settings::default()
        };
        if let Some(caps) = t.get("capabilities") {
            let caps = strings(caps, "capabilities")?;
            if !caps.is_empty() {
                s.pull = false;
                s.resolve = false;
                for c in caps {
                    match c.to_ascii_lowercase().as_str() {
                        "pull" => s.pull = true,
                        "resolve" => s.resolve = true,
                        "push" | "referrers" => {}
                        _ => return Err(format!("unknown capability {c}")),
                    }
                }
            }
        }
        let abs = |p: &str| {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                dir.join(p)
            }
        };
        match t.get("ca") {
            None => {}
            Some(Value::String(p)) => s.tls.cas.push(abs(p)),
            Some(Value::Array(list)) => {
                for v in list {
                    let p = v
                        .as_str()
                        .ok_or_else(|| format!("invalid type {} in \"ca\"", v.type_str()))?;
                    s.tls.cas.push(abs(p));
                }
            }
            Some(other) => return Err(format!("invalid type {} for \"ca\"", other.type_str())),
        }
        match t.get("client") {
            None => {}
            Some(Value::String(p)) => {
                s.tls.client = Some(ClientCert {
                    cert: abs(p),
                    key: abs(p),
                })
            }
            Some(Value::Array(list)) => {
                // containerd accepts several pairs; the first is used for the handshake.
                if let Some(first) = list.first() {
                    s.tls.client = Some(match first {
                        Value::String(p) => ClientCert {
                            cert: abs(p),
                            key: abs(p),
                        },
                        Value::Array(pair) if pair.len() == 2 => {
                            let cert = pair[0].as_str().ok_or("invalid pair for \"client\"")?;
                            let key = pair[1].as_str().ok_or("invalid pair for \"client\"")?;
                            ClientCert {
                                cert: abs(cert),
                                key: abs(key),
                            }
                        }
                        Value::Array(_) => return Err("invalid pair for \"client\"".into()),
                        other => {
                            return Err(format!(
                                "invalid type {} for \"client\"",
                                other.type_str()
                            ));
                        }
                    });
                }
            }
            Some(other) => return Err(format!("invalid type {} for \"client\"", other.type_str())),
        }
        match t.get("skip_verify") {
            None => {}
            Some(Value::Boolean(b)) => s.tls.skip_verify = *b,
            Some(other) => {
                return Err(format!(
                    "\"skip_verify\" must be a boolean, not {}",
                    other.type_str()
                ));
            }
        }
        match t.get("override_path") {
            None => {}
            Some(Value::Boolean(b)) => s.override_path = *b,
            Some(other) => {
                return Err(format!(
                    "\"override_path\" must be a boolean, not {}",
                    other.type_str()
                ));
            }
        }
        if let Some(header) = t.get("header") {
            let header = header
                .as_table()
                .ok_or_else(|| "\"header\" must be a table".to_string())?;
            for (name, value) in header {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("invalid header name {name:?}"))?;
                for v in strings(value, &format!("header {name}"))? {
                    let v = HeaderValue::from_str(&v)
                        .map_err(|_| format!("invalid value for header {name}"))?;
                    s.headers.append(name.clone(), v);
                }
            }
        }
        Ok(s)
    }
}

#[derive(Default)]
struct Settings {
    pull: bool,
    resolve: bool,
    tls: TlsSettings,
    headers: HeaderMap,
    override_path: bool,
}

/// A string or an array of strings.
fn strings(v: &Value, what: &str) -> std::result::Result<Vec<String>, String> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(list) => list
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("invalid type {} in {what}", x.type_str()))
            })
            .collect(),
        other => Err(format!("invalid type {} for {what}", other.type_str())),
    }
}

/// Go's `path.Clean` for an absolute URL path.
fn clean_path(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            x => out.push(x),
        }
    }
    format!("/{}", out.join("/"))
}

/// `skip_verify = true`: any certificate is accepted, as containerd's
/// `InsecureSkipVerify` does. Signatures are still checked with the real provider.
#[derive(Debug)]
pub(crate) struct NoVerification(pub Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(files: &[(&str, &str)]) -> Result<(tempfile::TempDir, HostsConfig)> {
        let root = tempfile::tempdir().expect("tempdir");
        for (path, content) in files {
            let p = root.path().join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, content).expect("write");
        }
        let config = HostsConfig::load(&[root.path().to_path_buf()])?;
        Ok((root, config))
    }

    #[test]
    fn mirrors_in_file_order_then_server() {
        let (_root, c) = load(&[(
            "docker.io/hosts.toml",
            r#"
server = "https://registry-1.docker.io"

[host."https://zeta.mirror:5000"]
  capabilities = ["pull", "resolve"]

[host."http://alpha.mirror/base"]
  capabilities = ["pull"]
  override_path = true
  [host."http://alpha.mirror/base".header]
    x-token = ["a", "b"]
"#,
        )])
        .expect("valid");
        let dir = c.lookup("docker.io").expect("configured");
        let hosts: Vec<(&str, &str, &str, bool)> = dir
            .mirrors
            .iter()
            .map(|h| {
                (
                    h.scheme.as_str(),
                    h.host.as_str(),
                    h.path.as_str(),
                    h.resolve,
                )
            })
            .collect();
        assert_eq!(
            hosts,
            [
                ("https", "zeta.mirror:5000", "/v2", true),
                ("http", "alpha.mirror", "/base", false)
            ]
        );
        assert_eq!(dir.mirrors[1].headers.get_all("x-token").iter().count(), 2);
        let server = dir.server.as_ref().expect("server");
        assert_eq!(
            (server.host.as_str(), server.path.as_str()),
            ("registry-1.docker.io", "/v2")
        );
    }

    #[test]
    fn host_port_directories_and_default() {
        let (_root, c) = load(&[
            ("r.io_5000_/hosts.toml", "server = \"https://a\"\n"),
            ("_default/hosts.toml", "server = \"https://b\"\n"),
        ])
        .expect("valid");
        let host_of = |r: &str| {
            c.lookup(r)
                .and_then(|d| d.server.as_ref().map(|s| s.host.clone()))
        };
        assert_eq!(host_of("r.io:5000").as_deref(), Some("a"));
        assert_eq!(host_of("other.io").as_deref(), Some("b"));
    }

    #[test]
    fn relative_ca_paths_are_in_the_host_directory() {
        let (root, c) = load(&[(
            "r.io/hosts.toml",
            "[host.\"https://m\"]\n  ca = \"m.pem\"\n  skip_verify = true\n",
        )])
        .expect("valid");
        let dir = c.lookup("r.io").expect("configured");
        let client = dir.mirrors[0].client;
        assert_eq!(client, 1);
        assert_eq!(c.tls_settings()[0].cas, [root.path().join("r.io/m.pem")]);
        assert!(c.tls_settings()[0].skip_verify);
    }

    #[test]
    fn bad_files_are_errors_naming_the_file_and_the_problem() {
        for (content, expected) in [
            ("server = ", "hosts.toml"),
            (
                "[host.\"https://m\"]\ncapabilities = [\"fetch\"]\n",
                "unknown capability fetch",
            ),
            (
                "[host.\"https://m\"]\nskip_verify = \"yes\"\n",
                "skip_verify",
            ),
            (
                "[host.\"https://m\"]\nclient = [[\"only-one\"]]\n",
                "invalid pair",
            ),
            (
                "[host.\"https://m\"]\nca = 3\n",
                "invalid type integer for \"ca\"",
            ),
        ] {
            let err = load(&[("r.io/hosts.toml", content)]).expect_err(content);
            let text = err.to_string();
            assert!(
                text.contains(expected) && text.contains("hosts.toml"),
                "{content:?}: {text}"
            );
        }
    }

    #[test]
    fn paths_are_cleaned_and_get_v2() {
        assert_eq!(clean_path("/a/./b/../c"), "/a/c");
        let (_root, c) = load(&[("r.io/hosts.toml", "[host.\"https://m/x/\"]\n")]).expect("valid");
        assert_eq!(c.lookup("r.io").expect("dir").mirrors[0].path, "/x/v2");
    }
}
