//! `pullgate certs` end to end: the real binary writes a CA, a serving certificate and a
//! kustomization; rustls (webpki) verifies the certificate for every Service name, and
//! `kubectl kustomize` renders the kustomization into the install with the right Secret
//! and caBundle.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use base64::Engine as _;
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Deserialize as _;
use serde_json::Value;

const FILES: [&str; 5] = [
    "ca.crt",
    "ca.key",
    "tls.crt",
    "tls.key",
    "kustomization.yaml",
];

fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The binary, from the repository root (where the default `--overlay` lives), with no
/// `PULLGATE_*` variables from the caller's environment.
fn pullgate(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pullgate"));
    command.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PULLGATE_") {
            command.env_remove(key);
        }
    }
    command.output().expect("run pullgate")
}

fn read_all(dir: &Path) -> BTreeMap<&'static str, Vec<u8>> {
    FILES
        .iter()
        .map(|f| {
            let bytes = std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
            (*f, bytes)
        })
        .collect()
}

fn service_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// Verify `tls.crt` against `ca.crt` as a TLS client would, for `name`.
fn verifies(dir: &Path, name: &str) -> Result<(), rustls::Error> {
    init();
    let ca = CertificateDer::from_pem_file(dir.join("ca.crt")).expect("ca.crt is a PEM cert");
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("tls.crt"))
        .expect("tls.crt")
        .collect::<Result<_, _>>()
        .expect("tls.crt is PEM");
    assert!(!chain.is_empty(), "tls.crt holds a certificate");
    let mut roots = RootCertStore::empty();
    roots.add(ca).expect("the CA is a valid trust anchor");
    let verifier = WebPkiServerVerifier::builder(Arc::new(roots))
        .build()
        .expect("verifier");
    let server_name = ServerName::try_from(name.to_string()).expect("a DNS name");
    verifier
        .verify_server_cert(&chain[0], &chain[1..], &server_name, &[], UnixTime::now())
        .map(|_| ())
}

fn kustomize(dir: &Path) -> Vec<Value> {
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run kubectl (needed for this test): {e}"));
    assert!(
        output.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn serving_certificate_verifies_for_every_service_name() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("certs");
    let output = pullgate(&["certs", "--out", out.to_str().expect("UTF-8 path")]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "pullgate certs failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for file in FILES {
        assert!(stdout.contains(file), "stdout names {file}:\n{stdout}");
    }
    assert!(stdout.contains("kubectl apply -k"), "{stdout}");

    for name in service_names("pullgate", "pullgate-system") {
        verifies(&out, &name).unwrap_or_else(|e| panic!("tls.crt for {name}: {e}"));
    }
    for other in ["pullgate.default.svc", "example.com", "localhost"] {
        assert!(
            verifies(&out, other).is_err(),
            "tls.crt must not be valid for {other}"
        );
    }

    // The key pairs with the certificate: the server's own loader accepts them.
    init();
    let cert =
        pullgate::server::tls::ReloadingCert::load(&out.join("tls.crt"), &out.join("tls.key"))
            .expect("tls.crt + tls.key load as the server loads them");
    cert.server_config().expect("a rustls server config");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for key in ["ca.key", "tls.key"] {
            let mode = std::fs::metadata(out.join(key))
                .expect(key)
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{key} is private ({mode:o})");
        }
    }
}

#[test]
fn existing_files_are_kept_without_force_and_replaced_with_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("certs");
    let out_arg = out.to_str().expect("UTF-8 path");
    assert!(pullgate(&["certs", "--out", out_arg]).status.success());
    let first = read_all(&out);

    let again = pullgate(&["certs", "--out", out_arg]);
    assert_eq!(again.status.code(), Some(2), "refusal exits 2");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("ca.crt")
            && stderr.contains("already exists")
            && stderr.contains("--force"),
        "the error names the file and the way out: {stderr}"
    );
    assert_eq!(read_all(&out), first, "nothing was touched");

    // One existing file is enough to refuse, and the others are not created.
    let partial = tmp.path().join("partial");
    std::fs::create_dir(&partial).expect("mkdir");
    std::fs::write(partial.join("tls.key"), "mine").expect("write");
    let refused = pullgate(&["certs", "--out", partial.to_str().expect("UTF-8")]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("tls.key"));
    assert_eq!(
        std::fs::read(partial.join("tls.key")).expect("read"),
        b"mine"
    );
    assert!(!partial.join("ca.crt").exists());

    let forced = pullgate(&["certs", "--out", out_arg, "--force"]);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    let second = read_all(&out);
    for file in [
        "ca.crt",
        "ca.key",
        "tls.crt",
        "tls.key",
        "kustomization.yaml",
    ] {
        assert_ne!(first[file], second[file], "{file} was rewritten");
    }
    verifies(&out, "pullgate.pullgate-system.svc").expect("the new pair verifies");
}

#[test]
fn kustomization_installs_the_secret_and_the_ca_bundle() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("certs");
    let output = pullgate(&[
        "certs",
        "--out",
        out.to_str().expect("UTF-8"),
        "--overlay",
        "manifests/overlays/enforce",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let files = read_all(&out);
    let objects = kustomize(&out);
    // kustomize folds Secret data at 70 columns; the apiserver's decoder skips newlines.
    let b64 = |v: &Value| {
        let text: String = v
            .as_str()
            .expect("base64 string")
            .split_whitespace()
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .expect("base64")
    };

    let secret = objects
        .iter()
        .find(|o| o["kind"] == "Secret")
        .expect("the kustomization renders a Secret");
    assert_eq!(secret["metadata"]["name"], "pullgate-tls");
    assert_eq!(secret["metadata"]["namespace"], "pullgate-system");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let data = secret["data"].as_object().expect("data");
    assert_eq!(b64(&data["tls.crt"]), files["tls.crt"]);
    assert_eq!(b64(&data["tls.key"]), files["tls.key"]);
    assert_eq!(b64(&data["ca.crt"]), files["ca.crt"]);
    assert!(!data.contains_key("ca.key"), "the CA key stays on disk");

    let deployment = objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("the overlay's Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    assert!(
        pod["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .any(|v| v["secret"]["secretName"] == secret["metadata"]["name"]),
        "the Deployment mounts the generated Secret"
    );
    let args = pod["containers"][0]["args"].as_array().expect("args");
    assert!(
        args.iter().any(|a| a == "--mode=enforce"),
        "--overlay chose enforce"
    );

    let webhook = objects
        .iter()
        .find(|o| o["kind"] == "ValidatingWebhookConfiguration")
        .expect("the webhook configuration");
    assert_eq!(
        b64(&webhook["webhooks"][0]["clientConfig"]["caBundle"]),
        files["ca.crt"],
        "caBundle is the CA that signed tls.crt"
    );
}

#[test]
fn service_and_namespace_flags_name_the_certificate() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("certs");
    let output = Command::new(env!("CARGO_BIN_EXE_pullgate"))
        .args(["certs", "--days", "30"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PULLGATE_OUT", &out)
        .env("PULLGATE_SERVICE", "gate")
        .env("PULLGATE_NAMESPACE", "infra")
        .output()
        .expect("run pullgate");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for name in service_names("gate", "infra") {
        verifies(&out, &name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(verifies(&out, "pullgate.pullgate-system.svc").is_err());

    let secret = kustomize(&out)
        .into_iter()
        .find(|o| o["kind"] == "Secret")
        .expect("Secret");
    assert_eq!(secret["metadata"]["namespace"], "infra");

    let bad = pullgate(&[
        "certs",
        "--out",
        out.to_str().expect("UTF-8"),
        "--service",
        "Bad_Name",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--service"));
}
