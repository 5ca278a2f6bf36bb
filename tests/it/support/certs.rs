//! A throw-away PKI: one CA plus leaf certificates signed by it (rcgen,
//! ECDSA P-256), written as PEM files into a temp dir that lives as long as
//! the [`TestPki`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tempfile::TempDir;

/// SANs of the default server certificate: every loopback name a test may
/// use to reach a harness server.
/// `registry.test` is a name only the harness's CONNECT proxy resolves (egress proxy tests).
pub const DEFAULT_SANS: &[&str] = &[
    "127.0.0.1",
    "localhost",
    "127.0.0.2",
    "::1",
    "registry.test",
];

/// A leaf certificate and its key, in memory and as PEM files.
#[derive(Debug, Clone)]
pub struct LeafCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl LeafCert {
    /// A rustls server config presenting this leaf (HTTP/2 and HTTP/1.1 ALPN).
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        super::init();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![self.cert_der.clone()], key)
            .expect("rcgen leaf and key form a valid rustls server config");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// A test CA plus a default server certificate for [`DEFAULT_SANS`].
pub struct TestPki {
    dir: TempDir,
    ca_pem: String,
    ca_path: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    server: LeafCert,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki")
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

impl TestPki {
    /// Create a fresh CA and a server leaf for [`DEFAULT_SANS`].
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pullgate-pki-")
            .tempdir()
            .expect("creating PKI temp dir");

        let ca_key = new_key();
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("empty SAN list");
        params.distinguished_name = dn("pullgate test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = params
            .self_signed(&ca_key)
            .expect("self-signing the test CA");
        let ca_pem = ca_cert.pem();
        let ca_path = dir.path().join("ca.pem");
        write(&ca_path, &ca_pem);

        let issuer = Issuer::new(params, ca_key);
        let server = issue(&issuer, dir.path(), "server", DEFAULT_SANS);
        Self {
            dir,
            ca_pem,
            ca_path,
            issuer,
            server,
        }
    }

    /// Path of the CA certificate (PEM).
    pub fn ca_pem(&self) -> &Path {
        &self.ca_path
    }

    /// The CA certificate as a PEM string.
    pub fn ca_pem_str(&self) -> &str {
        &self.ca_pem
    }

    /// Path of the default server certificate (PEM).
    pub fn cert_pem(&self) -> &Path {
        &self.server.cert_path
    }

    /// Path of the default server key (PKCS#8 PEM).
    pub fn key_pem(&self) -> &Path {
        &self.server.key_path
    }

    /// The default server leaf.
    pub fn server_leaf(&self) -> &LeafCert {
        &self.server
    }

    /// The temp dir holding every PEM file of this PKI.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Issue another leaf signed by this CA for `sans` (IP literals become IP
    /// SANs, anything else DNS SANs). Files are `<name>.crt` / `<name>.key`.
    pub fn issue_leaf(&self, name: &str, sans: &[&str]) -> LeafCert {
        issue(&self.issuer, self.dir.path(), name, sans)
    }
}

fn new_key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("generating an ECDSA P-256 key")
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

fn issue(issuer: &Issuer<'static, KeyPair>, dir: &Path, name: &str, sans: &[&str]) -> LeafCert {
    let key = new_key();
    let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
    let mut params = CertificateParams::new(sans.clone())
        .unwrap_or_else(|e| panic!("invalid SANs {sans:?}: {e}"));
    params.distinguished_name = dn(sans.first().map_or(name, String::as_str));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(&key, issuer)
        .unwrap_or_else(|e| panic!("signing leaf {name}: {e}"));
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    let cert_pem = cert.pem();
    let key_pem = key.serialize_pem();
    write(&cert_path, &cert_pem);
    write(&key_path, &key_pem);
    LeafCert {
        cert_pem,
        key_pem,
        cert_path,
        key_path,
        cert_der: cert.der().clone(),
        key_der: key.serialize_der(),
    }
}
