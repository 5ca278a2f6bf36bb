//! pullgate as a kubectl plugin: the binary installed as `kubectl-pullgate` on PATH, run
//! by the real `kubectl` (`kubectl pullgate …`), against a real registry and, for `audit`,
//! the Kubernetes API the audit tests serve.

use crate::audit_cli;
use crate::support;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use support::{PushAuth, Registry, RegistryOpts, TestPki, push_oci_manifest};

/// A PATH directory holding `kubectl-pullgate` (a symlink to the test binary), as
/// `install … ~/.local/bin/kubectl-pullgate` would.
struct Plugin {
    dir: tempfile::TempDir,
}

impl Plugin {
    fn install() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_pullgate"),
            dir.path().join("kubectl-pullgate"),
        )
        .expect("symlink");
        Self { dir }
    }

    fn bin(&self) -> &Path {
        self.dir.path()
    }

    /// `kubectl ARGS` with the plugin first on PATH, and `kubeconfig` (a file that need not
    /// exist: plugins run before kubectl reads it).
    async fn kubectl(&self, args: &[&str], kubeconfig: &Path) -> Output {
        let path = std::env::join_paths(std::iter::once(self.bin().to_path_buf()).chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
        ))
        .expect("PATH");
        let mut cmd = Command::new("kubectl");
        cmd.args(args)
            .env("PATH", path)
            .env("KUBECONFIG", kubeconfig)
            .env("NO_COLOR", "1")
            .env_remove("PULLGATE_OUTPUT")
            .env_remove("PULLGATE_PLATFORM")
            .stdin(Stdio::null());
        tokio::task::spawn_blocking(move || {
            cmd.output()
                .unwrap_or_else(|e| panic!("cannot run kubectl (needed on PATH): {e}"))
        })
        .await
        .expect("join")
    }
}

fn says(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn no_kubeconfig(dir: &Path) -> PathBuf {
    dir.join("no-kubeconfig")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_finds_the_plugin_and_its_help_names_kubectl_pullgate() {
    let plugin = Plugin::install();
    let none = no_kubeconfig(plugin.bin());

    let listed = plugin.kubectl(&["plugin", "list"], &none).await;
    let expected = plugin.bin().join("kubectl-pullgate").display().to_string();
    assert!(says(&listed).contains(&expected), "{}", says(&listed));

    let help = plugin.kubectl(&["pullgate", "--help"], &none).await;
    assert_eq!(help.status.code(), Some(0), "{}", says(&help));
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("Usage: kubectl pullgate [OPTIONS] <COMMAND>"),
        "{text}"
    );
    assert!(!text.contains("Usage: pullgate"), "{text}");

    let help = plugin
        .kubectl(&["pullgate", "audit", "--help"], &none)
        .await;
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("Usage: kubectl pullgate audit"), "{text}");
    assert!(text.contains("--fail-on"), "{text}");

    // A usage error says how to call it, the kubectl way, and exits 2.
    let wrong = plugin
        .kubectl(&["pullgate", "check", "--bogus"], &none)
        .await;
    assert_eq!(wrong.status.code(), Some(2), "{}", says(&wrong));
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("Usage: kubectl pullgate check"),
        "{}",
        says(&wrong)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_pullgate_check_resolves_images_against_a_registry() {
    support::init();
    let pki = TestPki::new();
    let registry = Registry::start(RegistryOpts::tls(&pki)).await;
    push_oci_manifest(&registry.push_target(PushAuth::None), "team/web", "1.0").await;
    let plugin = Plugin::install();
    let none = no_kubeconfig(plugin.bin());
    let ca = pki.ca_pem().display().to_string();

    let image = format!("{}/team/web:1.0", registry.host());
    let out = plugin
        .kubectl(
            &[
                "pullgate",
                "check",
                "--image",
                &image,
                "--registry-ca",
                &ca,
                "-o",
                "json",
            ],
            &none,
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", says(&out));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(rows[0]["verdict"], "pullable", "{}", says(&out));

    let typo = format!("{}/team/web:1.1", registry.host());
    let out = plugin
        .kubectl(
            &["pullgate", "check", "--image", &typo, "--registry-ca", &ca],
            &none,
        )
        .await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "kubectl passes the exit status on"
    );
    assert!(says(&out).contains("not-found"), "{}", says(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_pullgate_audit_reads_the_cluster_of_the_kubeconfig() {
    support::init();
    let pki = TestPki::new();
    let registry = Registry::start(RegistryOpts::tls(&pki)).await;
    push_oci_manifest(&registry.push_target(PushAuth::None), "team/web", "1.0").await;
    let (url, _server) = audit_cli::serve(audit_cli::two_namespaces(&registry).await).await;
    let plugin = Plugin::install();
    let kubeconfig = audit_cli::kubeconfig(plugin.bin(), &url);
    let ca = pki.ca_pem().display().to_string();

    let out = plugin
        .kubectl(
            &["pullgate", "audit", "-n", "b", "--registry-ca", &ca],
            Path::new(&kubeconfig),
        )
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", says(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("NAMESPACE"), "{table}");
    assert!(
        table.contains("gone") && table.contains("not-found"),
        "{table}"
    );
    assert!(
        !table.contains(" ok "),
        "pullable rows are left out: {table}"
    );
}
