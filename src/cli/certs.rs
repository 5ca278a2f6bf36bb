//! `pullgate certs`: a CA and a serving certificate for the in-cluster Service, plus the
//! kustomization that installs them (static certificates, no cert-manager).
//!
//! Everything lands in one directory (`--out`, default `certs/`, git-ignored):
//!
//! | file | what |
//! | --- | --- |
//! | `ca.crt`, `ca.key` | the CA (the key never leaves this directory) |
//! | `tls.crt`, `tls.key` | the serving certificate for the Service's DNS names |
//! | `kustomization.yaml` | `--overlay` + Secret `pullgate-tls` + the webhook's `caBundle` |
//!
//! so that `kubectl apply -k certs` installs pullgate with these certificates. The
//! kustomization only reads files from its own directory (kustomize's load restriction)
//! and refers to the overlay by a relative path (or a remote URL, written as given).

use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use clap::Args;

use crate::certs;

/// Name of the serving Secret the Deployment mounts (manifests/base/deployment.yaml).
pub const TLS_SECRET: &str = "pullgate-tls";

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Name of the webhook's Service (the certificate's first DNS name).
    #[arg(
        long,
        value_name = "NAME",
        env = "PULLGATE_SERVICE",
        default_value = "pullgate"
    )]
    pub service: String,
    /// Namespace of the Service (and of the generated Secret).
    #[arg(
        long,
        value_name = "NAMESPACE",
        env = "PULLGATE_NAMESPACE",
        default_value = "pullgate-system"
    )]
    pub namespace: String,
    /// Directory to write ca.crt, ca.key, tls.crt, tls.key and kustomization.yaml into.
    #[arg(
        long,
        value_name = "DIR",
        env = "PULLGATE_OUT",
        default_value = "certs"
    )]
    pub out: PathBuf,
    /// Validity of the CA and the serving certificate, in days.
    #[arg(
        long,
        value_name = "DAYS",
        env = "PULLGATE_DAYS",
        default_value = "365",
        value_parser = clap::value_parser!(i64).range(1..=36_500)
    )]
    pub days: i64,
    /// The kustomize overlay the generated kustomization.yaml installs: a directory
    /// (relative to the current directory; written relative to --out) or a remote kustomize
    /// URL (written as given).
    #[arg(
        long,
        value_name = "DIR|URL",
        env = "PULLGATE_OVERLAY",
        default_value = "manifests/overlays/audit"
    )]
    pub overlay: String,
    /// Overwrite existing files (a new CA: the cluster's Secret and caBundle must then be
    /// re-applied together).
    #[arg(long, env = "PULLGATE_FORCE")]
    pub force: bool,
}

/// What one run wrote, in order.
const FILES: [&str; 5] = [
    "ca.crt",
    "ca.key",
    "tls.crt",
    "tls.key",
    "kustomization.yaml",
];

impl CertsArgs {
    pub fn run(self) -> anyhow::Result<()> {
        check_label("--service", &self.service)?;
        check_label("--namespace", &self.namespace)?;
        let paths = FILES.map(|f| self.out.join(f));
        if !self.force
            && let Some(existing) = paths.iter().find(|p| p.symlink_metadata().is_ok())
        {
            bail!(
                "{} already exists; pass --force to overwrite it (a new CA: re-apply the \
                 Secret and the webhook's caBundle together)",
                existing.display()
            );
        }
        let resource = self.overlay_reference()?;

        let names = service_names(&self.service, &self.namespace);
        let generated = certs::generate(&names, self.days).context("generating certificates")?;
        let kustomization = kustomization(
            &resource,
            &self.namespace,
            &generated.ca_cert_pem,
            &names,
            self.days,
        );
        let [ca_crt, ca_key, tls_crt, tls_key, kust] = &paths;
        certs::write_file(ca_crt, &generated.ca_cert_pem, false)?;
        certs::write_file(ca_key, &generated.ca_key_pem, true)?;
        certs::write_file(tls_crt, &generated.cert_pem, false)?;
        certs::write_file(tls_key, &generated.key_pem, true)?;
        certs::write_file(kust, &kustomization, false)?;

        println!(
            "wrote a CA and a serving certificate for {}, valid {} days:",
            names.join(", "),
            self.days
        );
        for path in &paths {
            println!("  {}", path.display());
        }
        println!(
            "install with: kubectl apply -k {}   (overlay {resource}; Secret {}/{TLS_SECRET})",
            self.out.display(),
            self.namespace
        );
        Ok(())
    }

    /// The `resources:` entry of the generated kustomization: the overlay relative to
    /// `--out`, or a remote URL as given.
    fn overlay_reference(&self) -> anyhow::Result<String> {
        let overlay = self.overlay.trim();
        if is_remote(overlay) {
            return Ok(overlay.to_string());
        }
        let dir = Path::new(overlay);
        let has_kustomization = ["kustomization.yaml", "kustomization.yml", "Kustomization"]
            .iter()
            .any(|f| dir.join(f).is_file());
        if !has_kustomization {
            bail!(
                "--overlay {overlay}: no kustomization there (run from the repository root, \
                 or pass --overlay DIR or a remote kustomize URL)"
            );
        }
        let overlay_abs = dir
            .canonicalize()
            .with_context(|| format!("--overlay {overlay}"))?;
        std::fs::create_dir_all(&self.out)
            .with_context(|| format!("cannot create {}", self.out.display()))?;
        let out_abs = self
            .out
            .canonicalize()
            .with_context(|| format!("--out {}", self.out.display()))?;
        let relative = relative_path(&out_abs, &overlay_abs);
        let relative = relative
            .to_str()
            .with_context(|| format!("--overlay {overlay}: not UTF-8"))?;
        // kustomize paths use `/` on every platform.
        Ok(relative.replace('\\', "/"))
    }
}

/// The Service's DNS names, as the apiserver and in-cluster clients may address it.
pub fn service_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// A Kubernetes object name usable as a DNS label (RFC 1123).
fn check_label(flag: &str, value: &str) -> anyhow::Result<()> {
    let valid = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if !valid {
        bail!(
            "{flag} {value:?} is not a valid name (lowercase letters, digits and '-', at most \
             63, starting and ending with a letter or digit)"
        );
    }
    Ok(())
}

fn is_remote(s: &str) -> bool {
    s.contains("://") || s.starts_with("github.com/") || s.starts_with("git@")
}

/// `to` relative to the directory `from` (both absolute and canonical).
fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component<'_>> = from.components().collect();
    let to: Vec<Component<'_>> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    if common == 0 {
        // Different roots (Windows drives): only an absolute path works.
        return to.iter().collect();
    }
    let mut relative = PathBuf::new();
    for _ in common..from.len() {
        relative.push("..");
    }
    for c in &to[common..] {
        relative.push(c);
    }
    if relative.as_os_str().is_empty() {
        relative.push(".");
    }
    relative
}

/// The generated kustomization: the overlay, the serving Secret from the files next to it,
/// and the CA as the webhook's caBundle.
fn kustomization(
    resource: &str,
    namespace: &str,
    ca_pem: &str,
    names: &[String],
    days: i64,
) -> String {
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let resource = yaml_string(resource);
    let namespace = yaml_string(namespace);
    let names = names.join(", ");
    format!(
        "\
# Generated by `pullgate certs` for {names} (valid {days} days).
# Contains private keys next to it: never commit this directory.
# Install:  kubectl apply -k <this directory>
# Renew:    pullgate certs --force (same flags), then kubectl apply -k again; pullgate
#           re-reads the new Secret content without a restart.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - {resource}
secretGenerator:
  # The serving certificate the Deployment mounts at /etc/pullgate/tls. A fixed name
  # (no hash suffix): pullgate reloads the files when the Secret changes.
  - name: {TLS_SECRET}
    namespace: {namespace}
    type: kubernetes.io/tls
    files:
      - tls.crt
      - tls.key
      - ca.crt
    options:
      disableNameSuffixHash: true
patches:
  # The CA that signed tls.crt, for the apiserver to verify pullgate with.
  - target:
      group: admissionregistration.k8s.io
      version: v1
      kind: ValidatingWebhookConfiguration
    patch: |-
      - op: add
        path: /webhooks/0/clientConfig/caBundle
        value: {ca_bundle}
"
    )
}

/// A YAML scalar: plain when safe, else double-quoted JSON (a YAML subset).
fn yaml_string(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '/' | '-' | '_'))
        && !matches!(
            s,
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "~"
        );
    if plain {
        s.to_string()
    } else {
        serde_json::Value::String(s.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_to_the_common_ancestor() {
        let rel = |a: &str, b: &str| relative_path(Path::new(a), Path::new(b));
        assert_eq!(
            rel("/repo/certs", "/repo/manifests/overlays/audit"),
            Path::new("../manifests/overlays/audit")
        );
        assert_eq!(
            rel("/tmp/x", "/repo/manifests/overlays/audit"),
            Path::new("../../repo/manifests/overlays/audit")
        );
        assert_eq!(rel("/repo", "/repo/overlay"), Path::new("overlay"));
        assert_eq!(rel("/repo", "/repo"), Path::new("."));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_label("--service", "pullgate").is_ok());
        assert!(check_label("--namespace", "pullgate-system").is_ok());
        for bad in ["", "-a", "a-", "Pullgate", "a.b", "a_b", &"a".repeat(64)] {
            assert!(check_label("--service", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn yaml_scalars_are_quoted_when_needed() {
        assert_eq!(
            yaml_string("../manifests/overlays/audit"),
            "../manifests/overlays/audit"
        );
        assert_eq!(yaml_string("off"), "\"off\"");
        assert_eq!(
            yaml_string("https://github.com/x/y//manifests?ref=v1"),
            "\"https://github.com/x/y//manifests?ref=v1\""
        );
        assert_eq!(yaml_string("a b: c"), "\"a b: c\"");
    }

    #[test]
    fn service_names_cover_every_form() {
        assert_eq!(
            service_names("pullgate", "pullgate-system"),
            [
                "pullgate",
                "pullgate.pullgate-system",
                "pullgate.pullgate-system.svc",
                "pullgate.pullgate-system.svc.cluster.local",
            ]
        );
    }
}
