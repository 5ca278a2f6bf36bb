//! The kustomize manifests (`manifests/`), rendered with `kubectl kustomize` exactly as
//! `kubectl apply -k` would, deserialized into their Kubernetes API types and checked
//! against what the binary really does: its flags (parsed with the real CLI), its ports,
//! its deadline, the kinds it understands.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use clap::Parser;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingWebhook, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, PodSpec, Probe, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use pullgate::cli::{Cli, Command, ServeArgs};
use pullgate::policy::Mode;
use serde::Deserialize as _;
use serde::de::DeserializeOwned;
use serde_json::Value;

const NAMESPACE: &str = "pullgate-system";
const SERVICE: &str = "pullgate";
const WEBHOOK: &str = "images.pullgate.dev";
const TLS_SECRET: &str = "pullgate-tls";
const IMAGE: &str = "ghcr.io/pullgate/pullgate:0.1.0";

/// Every committed kustomization, and the mode it installs.
const INSTALLS: [(&str, Mode); 4] = [
    ("base", Mode::Audit),
    ("overlays/audit", Mode::Audit),
    ("overlays/enforce", Mode::Enforce),
    ("overlays/cert-manager", Mode::Audit),
];

/// The credential provider components, each rendered on top of `overlays/audit`: (component,
/// the plugin its config names, where the nodes keep that binary, the ServiceAccount
/// annotation that names pullgate's cloud identity).
const PROVIDER_COMPONENTS: [(&str, &str, &str, Option<&str>); 3] = [
    (
        "components/credential-provider-ecr",
        "ecr-credential-provider",
        "/etc/eks/image-credential-provider/ecr-credential-provider",
        Some("eks.amazonaws.com/role-arn"),
    ),
    (
        "components/credential-provider-gcp",
        "auth-provider-gcp",
        "/home/kubernetes/bin/auth-provider-gcp",
        Some("iam.gke.io/gcp-service-account"),
    ),
    (
        "components/credential-provider-acr",
        "acr-credential-provider",
        "/var/lib/kubelet/credential-provider/acr-credential-provider",
        // acr-credential-provider uses a managed identity through IMDS (azure.json).
        None,
    ),
];

/// What the webhook must see: (API group, version, resource, kind it holds).
const REVIEWED: [(&str, &str, &str, &str); 10] = [
    ("", "v1", "pods", "Pod"),
    ("", "v1", "pods/ephemeralcontainers", "Pod"),
    ("", "v1", "replicationcontrollers", "ReplicationController"),
    ("", "v1", "podtemplates", "PodTemplate"),
    ("apps", "v1", "deployments", "Deployment"),
    ("apps", "v1", "replicasets", "ReplicaSet"),
    ("apps", "v1", "statefulsets", "StatefulSet"),
    ("apps", "v1", "daemonsets", "DaemonSet"),
    ("batch", "v1", "jobs", "Job"),
    ("batch", "v1", "cronjobs", "CronJob"),
];

fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests")
}

/// `kubectl kustomize DIR`, one JSON value per YAML document.
fn kustomize(dir: &Path) -> Vec<Value> {
    let output = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `kubectl kustomize {}`: {e}\n\
                 these tests need kubectl (it embeds kustomize) on PATH",
                dir.display()
            )
        });
    assert!(
        output.status.success(),
        "`kubectl kustomize {}` failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("kustomize output is UTF-8");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("kustomize output is valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

/// One rendered kustomization, every object in its API type.
#[derive(Default)]
struct Install {
    dir: &'static str,
    mode: Option<Mode>,
    namespaces: Vec<Namespace>,
    service_accounts: Vec<ServiceAccount>,
    cluster_roles: Vec<ClusterRole>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    deployments: Vec<Deployment>,
    services: Vec<Service>,
    pdbs: Vec<PodDisruptionBudget>,
    webhooks: Vec<ValidatingWebhookConfiguration>,
    secrets: Vec<Secret>,
    config_maps: Vec<ConfigMap>,
    /// cert-manager CRDs, untyped.
    issuers: Vec<Value>,
    certificates: Vec<Value>,
}

fn typed<T: DeserializeOwned>(dir: &str, object: &Value) -> T {
    serde_json::from_value(object.clone()).unwrap_or_else(|e| {
        panic!(
            "{dir}: {} {} does not deserialize as its API type: {e}",
            object["kind"], object["metadata"]["name"]
        )
    })
}

impl Install {
    fn render(dir: &'static str, mode: Mode) -> Self {
        Self::from_objects(dir, mode, kustomize(&manifests_dir().join(dir)))
    }

    /// A component as an operator uses it: a kustomization (in a temp dir) with the audit
    /// overlay as its resource and the component on top.
    fn render_component(component: &'static str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        // kustomize refuses absolute paths: climb from the temp dir to the root.
        let up = "../".repeat(dir.path().components().count().saturating_sub(1));
        let manifests = manifests_dir();
        let relative = manifests
            .strip_prefix("/")
            .unwrap_or(&manifests)
            .display()
            .to_string();
        let kustomization = format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
             resources:\n  - {up}{relative}/overlays/audit\n\
             components:\n  - {up}{relative}/{component}\n"
        );
        std::fs::write(dir.path().join("kustomization.yaml"), kustomization).expect("write");
        Self::from_objects(component, Mode::Audit, kustomize(dir.path()))
    }

    fn from_objects(dir: &'static str, mode: Mode, objects: Vec<Value>) -> Self {
        let mut install = Install {
            dir,
            mode: Some(mode),
            ..Install::default()
        };
        for object in objects {
            let api_version = object["apiVersion"].as_str().unwrap_or_default();
            let kind = object["kind"].as_str().unwrap_or_default();
            match (api_version, kind) {
                ("v1", "Namespace") => install.namespaces.push(typed(dir, &object)),
                ("v1", "ServiceAccount") => install.service_accounts.push(typed(dir, &object)),
                ("v1", "Service") => install.services.push(typed(dir, &object)),
                ("v1", "Secret") => install.secrets.push(typed(dir, &object)),
                ("v1", "ConfigMap") => install.config_maps.push(typed(dir, &object)),
                ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
                    install.cluster_roles.push(typed(dir, &object))
                }
                ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                    install.cluster_role_bindings.push(typed(dir, &object))
                }
                ("apps/v1", "Deployment") => install.deployments.push(typed(dir, &object)),
                ("policy/v1", "PodDisruptionBudget") => install.pdbs.push(typed(dir, &object)),
                ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration") => {
                    install.webhooks.push(typed(dir, &object))
                }
                ("cert-manager.io/v1", "Issuer") => install.issuers.push(object),
                ("cert-manager.io/v1", "Certificate") => install.certificates.push(object),
                _ => panic!(
                    "{dir}: unexpected object {api_version} {kind} {} (add it to this test)",
                    object["metadata"]["name"]
                ),
            }
        }
        install
    }

    fn deployment(&self) -> &Deployment {
        assert_eq!(self.deployments.len(), 1, "{}: one Deployment", self.dir);
        &self.deployments[0]
    }

    fn pod(&self) -> &PodSpec {
        let spec = self.deployment().spec.as_ref().expect("Deployment spec");
        spec.template.spec.as_ref().expect("pod template spec")
    }

    fn pod_labels(&self) -> BTreeMap<String, String> {
        let spec = self.deployment().spec.as_ref().expect("Deployment spec");
        let metadata = spec.template.metadata.as_ref().expect("template metadata");
        metadata.labels.clone().unwrap_or_default()
    }

    fn container(&self) -> &Container {
        let pod = self.pod();
        assert_eq!(pod.containers.len(), 1, "{}: one container", self.dir);
        &pod.containers[0]
    }

    /// The container's args, parsed by the real CLI: every flag must exist.
    fn serve_args(&self) -> Box<ServeArgs> {
        let container = self.container();
        assert!(
            container.command.is_none(),
            "{}: the image's ENTRYPOINT (/pullgate) runs; args carry the subcommand",
            self.dir
        );
        let args = container.args.clone().expect("container args");
        assert_eq!(args.first().map(String::as_str), Some("serve"), "{args:?}");
        let cli = Cli::try_parse_from(std::iter::once("pullgate".to_string()).chain(args.clone()))
            .unwrap_or_else(|e| {
                panic!(
                    "{}: `pullgate {}` does not parse:\n{e}",
                    self.dir,
                    args.join(" ")
                )
            });
        match cli.command {
            Command::Serve(serve) => serve,
            other => panic!("{}: not `serve`: {other:?}", self.dir),
        }
    }

    fn webhook(&self) -> (&ValidatingWebhookConfiguration, &ValidatingWebhook) {
        assert_eq!(
            self.webhooks.len(),
            1,
            "{}: one webhook configuration",
            self.dir
        );
        let config = &self.webhooks[0];
        assert_eq!(config.metadata.name.as_deref(), Some("pullgate"));
        let hooks = config.webhooks.as_deref().unwrap_or_default();
        assert_eq!(hooks.len(), 1, "{}: one webhook", self.dir);
        assert_eq!(hooks[0].name, WEBHOOK);
        (config, &hooks[0])
    }

    fn service(&self) -> &Service {
        assert_eq!(self.services.len(), 1, "{}: one Service", self.dir);
        &self.services[0]
    }

    /// A container port, by number or by name.
    fn container_port(&self, port: &IntOrString) -> i32 {
        let ports = self.container().ports.as_deref().unwrap_or_default();
        match port {
            IntOrString::Int(n) => {
                assert!(
                    ports.iter().any(|p| p.container_port == *n),
                    "{}: port {n} is not a declared container port",
                    self.dir
                );
                *n
            }
            IntOrString::String(name) => {
                ports
                    .iter()
                    .find(|p| p.name.as_deref() == Some(name.as_str()))
                    .unwrap_or_else(|| panic!("{}: no container port named {name}", self.dir))
                    .container_port
            }
        }
    }

    /// The rendered secret volume behind a mount path.
    fn secret_mounted_at(&self, dir: &Path) -> String {
        let container = self.container();
        let mount = container
            .volume_mounts
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|m| Path::new(&m.mount_path) == dir)
            .unwrap_or_else(|| panic!("{}: nothing mounted at {}", self.dir, dir.display()));
        assert_eq!(
            mount.read_only,
            Some(true),
            "{}: certificates mount read-only",
            self.dir
        );
        assert!(
            mount.sub_path.is_none(),
            "subPath mounts never see Secret updates"
        );
        let volume = self
            .pod()
            .volumes
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|v| v.name == mount.name)
            .unwrap_or_else(|| panic!("{}: no volume {}", self.dir, mount.name));
        let secret = volume
            .secret
            .as_ref()
            .expect("the certificate volume is a Secret");
        assert_ne!(
            secret.optional,
            Some(true),
            "the serving certificate is not optional"
        );
        secret.secret_name.clone().expect("secretName")
    }
}

fn installs() -> &'static [Install] {
    static INSTALLED: OnceLock<Vec<Install>> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        INSTALLS
            .iter()
            .map(|(dir, mode)| Install::render(dir, *mode))
            .chain(
                PROVIDER_COMPONENTS
                    .iter()
                    .map(|(component, ..)| Install::render_component(component)),
            )
            .collect()
    })
}

fn install(dir: &str) -> &'static Install {
    installs()
        .iter()
        .find(|i| i.dir == dir)
        .expect("a listed kustomization")
}

fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => panic!("unknown selector operator {other}"),
        }
    });
    by_labels && by_expressions
}

fn port_of(addr: std::net::SocketAddr) -> i32 {
    i32::from(addr.port())
}

#[test]
fn every_overlay_is_tested() {
    let overlays = std::fs::read_dir(manifests_dir().join("overlays")).expect("manifests/overlays");
    for entry in overlays {
        let entry = entry.expect("dir entry");
        if !entry.path().is_dir() {
            continue;
        }
        let name = format!("overlays/{}", entry.file_name().to_string_lossy());
        assert!(
            INSTALLS.iter().any(|(dir, _)| *dir == name),
            "{name} is not in INSTALLS: add it (and what it must render) to this test"
        );
    }
}

#[test]
fn every_object_is_in_pullgate_system() {
    for install in installs() {
        assert_eq!(install.namespaces.len(), 1, "{}", install.dir);
        assert_eq!(
            install.namespaces[0].metadata.name.as_deref(),
            Some(NAMESPACE)
        );
        let namespaced = install
            .service_accounts
            .iter()
            .map(|o| &o.metadata)
            .chain(install.deployments.iter().map(|o| &o.metadata))
            .chain(install.services.iter().map(|o| &o.metadata))
            .chain(install.pdbs.iter().map(|o| &o.metadata))
            .chain(install.secrets.iter().map(|o| &o.metadata))
            .chain(install.config_maps.iter().map(|o| &o.metadata));
        for metadata in namespaced {
            assert_eq!(
                metadata.namespace.as_deref(),
                Some(NAMESPACE),
                "{}: {:?}",
                install.dir,
                metadata.name
            );
        }
        for object in install.issuers.iter().chain(&install.certificates) {
            assert_eq!(
                object["metadata"]["namespace"], NAMESPACE,
                "{}",
                install.dir
            );
        }
    }
}

#[test]
fn container_args_are_real_serve_flags_with_the_overlay_mode() {
    for install in installs() {
        let serve = install.serve_args();
        assert_eq!(Some(serve.mode), install.mode, "{}: --mode", install.dir);
        assert_eq!(port_of(serve.listen), 8443, "{}", install.dir);
        assert_eq!(port_of(serve.metrics_listen), 9090, "{}", install.dir);
        assert!(
            serve.listen.ip().is_unspecified() && serve.metrics_listen.ip().is_unspecified(),
            "{}: the Service and the kubelet reach the pod IP",
            install.dir
        );
        assert!(
            !serve.dev,
            "{}: no self-signed certificates in a cluster",
            install.dir
        );
        assert!(
            !serve.no_cluster,
            "{}: pull secrets come from the cluster",
            install.dir
        );
        assert!(
            serve.exempt_namespaces.iter().any(|n| n == "kube-system")
                && serve.exempt_namespaces.iter().any(|n| n == NAMESPACE),
            "{}: {:?}",
            install.dir,
            serve.exempt_namespaces
        );
        assert!(
            install.container().env.is_none(),
            "{}: configuration is in args, where this test sees it",
            install.dir
        );
    }
}

#[test]
fn webhook_reviews_every_pod_bearing_kind_on_create_and_update() {
    for install in installs() {
        let (_, hook) = install.webhook();
        let rules = hook.rules.as_deref().unwrap_or_default();
        let has = |list: &Option<Vec<String>>, item: &str| {
            list.iter().flatten().any(|x| x == item || x == "*")
        };
        for (group, version, resource, kind) in REVIEWED {
            assert!(
                pullgate::workload::pod_spec_path(kind).is_some(),
                "pullgate does not understand {kind}"
            );
            for operation in ["CREATE", "UPDATE"] {
                assert!(
                    rules.iter().any(|r| has(&r.api_groups, group)
                        && has(&r.api_versions, version)
                        && has(&r.resources, resource)
                        && has(&r.operations, operation)
                        && r.scope
                            .as_deref()
                            .is_none_or(|s| s == "*" || s == "Namespaced")),
                    "{}: no rule for {operation} {group}/{version} {resource}",
                    install.dir
                );
            }
        }
        for rule in rules {
            for operation in rule.operations.iter().flatten() {
                assert!(
                    operation == "CREATE" || operation == "UPDATE",
                    "{}: pullgate has nothing to say about {operation}",
                    install.dir
                );
            }
            for resource in rule.resources.iter().flatten() {
                assert!(
                    REVIEWED.iter().any(|(_, _, r, _)| r == resource),
                    "{}: {resource} carries no pod spec pullgate reads",
                    install.dir
                );
            }
        }
    }
}

#[test]
fn webhook_contract_matches_the_server() {
    for install in installs() {
        let (_, hook) = install.webhook();
        assert_eq!(hook.side_effects, "None", "{}", install.dir);
        assert_eq!(hook.admission_review_versions, ["v1"], "{}", install.dir);
        assert_eq!(
            hook.match_policy.as_deref(),
            Some("Equivalent"),
            "{}",
            install.dir
        );
        assert_eq!(
            hook.failure_policy.as_deref(),
            Some("Ignore"),
            "{}",
            install.dir
        );

        // The apiserver sends ?timeout=<timeoutSeconds>s; the server answers within that
        // minus a margin, and --max-check-time must fit inside (else it is silently cut).
        let timeout = hook.timeout_seconds.expect("timeoutSeconds");
        assert_eq!(timeout, 10, "{}", install.dir);
        let timeout = Duration::from_secs(u64::try_from(timeout).expect("positive"));
        let margin = timeout - pullgate::webhook::check_budget(Some(timeout), Duration::MAX);
        assert!(margin > Duration::ZERO);
        let max_check_time = install.serve_args().max_check_time;
        assert!(
            max_check_time + margin <= timeout,
            "{}: --max-check-time {max_check_time:?} + margin {margin:?} exceeds timeoutSeconds {timeout:?}",
            install.dir
        );

        // clientConfig reaches the Service, whose port reaches --listen.
        let service_ref = hook
            .client_config
            .service
            .as_ref()
            .expect("clientConfig.service");
        assert!(hook.client_config.url.is_none());
        assert_eq!(service_ref.namespace, NAMESPACE);
        assert_eq!(service_ref.name, SERVICE);
        assert_eq!(service_ref.path.as_deref(), Some("/validate"));
        let port = service_ref.port.unwrap_or(443);
        let service = install.service();
        assert_eq!(service.metadata.name.as_deref(), Some(SERVICE));
        let service_port = service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .find(|p| p.port == port)
            .unwrap_or_else(|| panic!("{}: the Service has no port {port}", install.dir));
        let target = service_port
            .target_port
            .clone()
            .unwrap_or(IntOrString::Int(port));
        assert_eq!(
            install.container_port(&target),
            port_of(install.serve_args().listen),
            "{}: Service port {port} does not reach --listen",
            install.dir
        );
    }
}

#[test]
fn namespace_selector_skips_system_namespaces_and_mode_off() {
    for install in installs() {
        let (_, hook) = install.webhook();
        let selector = hook.namespace_selector.as_ref().expect("namespaceSelector");
        let namespace = |name: &str, mode: Option<&str>| {
            let mut labels =
                BTreeMap::from([("kubernetes.io/metadata.name".to_string(), name.to_string())]);
            if let Some(mode) = mode {
                labels.insert(pullgate::policy::MODE_LABEL.to_string(), mode.to_string());
            }
            selector_matches(selector, &labels)
        };
        assert!(!namespace(NAMESPACE, None), "{}", install.dir);
        assert!(!namespace("kube-system", None), "{}", install.dir);
        assert!(!namespace("team-a", Some("off")), "{}", install.dir);
        assert!(namespace("team-a", None), "{}", install.dir);
        assert!(namespace("team-a", Some("audit")), "{}", install.dir);
        assert!(namespace("team-a", Some("enforce")), "{}", install.dir);
        assert!(namespace("default", None), "{}", install.dir);
        assert!(hook.object_selector.is_none(), "{}", install.dir);
    }
}

#[test]
fn probes_hit_the_metrics_port() {
    for install in installs() {
        let metrics = port_of(install.serve_args().metrics_listen);
        let container = install.container();
        let check = |probe: Option<&Probe>, path: &str| {
            let probe = probe.unwrap_or_else(|| panic!("{}: no probe for {path}", install.dir));
            let get = probe.http_get.as_ref().expect("an HTTP probe");
            assert_eq!(get.path.as_deref(), Some(path), "{}", install.dir);
            assert!(get.scheme.as_deref().is_none_or(|s| s == "HTTP"));
            assert_eq!(
                install.container_port(&get.port),
                metrics,
                "{}: {path}",
                install.dir
            );
        };
        check(container.liveness_probe.as_ref(), "/healthz");
        check(container.readiness_probe.as_ref(), "/readyz");

        let service = install.service();
        let ports = service
            .spec
            .as_ref()
            .and_then(|s| s.ports.clone())
            .unwrap_or_default();
        let scrape = ports
            .iter()
            .find(|p| p.name.as_deref() == Some("metrics"))
            .expect("a metrics Service port");
        let target = scrape
            .target_port
            .clone()
            .unwrap_or(IntOrString::Int(scrape.port));
        assert_eq!(install.container_port(&target), metrics, "{}", install.dir);
    }
}

#[test]
fn service_and_budget_select_the_pods() {
    for install in installs() {
        let labels = install.pod_labels();
        let service = install.service().spec.as_ref().expect("Service spec");
        let selector = service.selector.clone().expect("Service selector");
        assert!(
            selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
            "{}: Service selector {selector:?} misses pods {labels:?}",
            install.dir
        );
        let deployment = install.deployment().spec.as_ref().expect("Deployment spec");
        assert!(selector_matches(&deployment.selector, &labels));

        assert_eq!(
            install.pdbs.len(),
            1,
            "{}: one PodDisruptionBudget",
            install.dir
        );
        let pdb = install.pdbs[0].spec.as_ref().expect("PDB spec");
        assert_eq!(
            pdb.min_available,
            Some(IntOrString::Int(1)),
            "{}",
            install.dir
        );
        assert!(pdb.max_unavailable.is_none());
        let pdb_selector = pdb.selector.as_ref().expect("PDB selector");
        assert!(selector_matches(pdb_selector, &labels), "{}", install.dir);
    }
}

#[test]
fn two_replicas_spread_across_nodes() {
    for install in installs() {
        let spec = install.deployment().spec.as_ref().expect("Deployment spec");
        assert_eq!(spec.replicas, Some(2), "{}", install.dir);
        let rolling = spec
            .strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref())
            .expect("RollingUpdate");
        assert_eq!(
            rolling.max_unavailable,
            Some(IntOrString::Int(0)),
            "{}",
            install.dir
        );

        let labels = install.pod_labels();
        let pod = install.pod();
        let spread = pod.topology_spread_constraints.iter().flatten().any(|c| {
            c.topology_key == "kubernetes.io/hostname"
                && c.label_selector
                    .as_ref()
                    .is_some_and(|s| selector_matches(s, &labels))
        });
        let anti_affinity = pod
            .affinity
            .as_ref()
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .is_some_and(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .iter()
                    .flatten()
                    .map(|w| &w.pod_affinity_term)
                    .chain(
                        a.required_during_scheduling_ignored_during_execution
                            .iter()
                            .flatten(),
                    )
                    .any(|t| {
                        t.topology_key == "kubernetes.io/hostname"
                            && t.label_selector
                                .as_ref()
                                .is_some_and(|s| selector_matches(s, &labels))
                    })
            });
        assert!(
            spread || anti_affinity,
            "{}: replicas may share a node",
            install.dir
        );

        // Above --drain-timeout, so in-flight reviews finish before SIGKILL.
        let grace = pod
            .termination_grace_period_seconds
            .expect("terminationGracePeriodSeconds");
        let drain = install.serve_args().drain_timeout;
        assert!(
            Duration::from_secs(u64::try_from(grace).expect("positive")) > drain,
            "{}: grace {grace}s <= --drain-timeout {drain:?}",
            install.dir
        );
    }
}

#[test]
fn pod_is_hardened() {
    for install in installs() {
        let pod = install.pod();
        assert_eq!(
            pod.service_account_name.as_deref(),
            Some("pullgate"),
            "{}",
            install.dir
        );
        assert_ne!(
            pod.automount_service_account_token,
            Some(false),
            "it talks to the API"
        );
        for host in [pod.host_network, pod.host_pid, pod.host_ipc] {
            assert_ne!(host, Some(true), "{}", install.dir);
        }
        let pod_security = pod.security_context.as_ref().expect("pod securityContext");
        assert_eq!(pod_security.run_as_non_root, Some(true), "{}", install.dir);
        assert_eq!(pod_security.run_as_user, Some(65532), "{}", install.dir);
        assert_eq!(
            pod_security
                .seccomp_profile
                .as_ref()
                .map(|s| s.type_.as_str()),
            Some("RuntimeDefault"),
            "{}",
            install.dir
        );

        let container = install.container();
        assert_eq!(container.image.as_deref(), Some(IMAGE), "{}", install.dir);
        let security = container
            .security_context
            .as_ref()
            .expect("container securityContext");
        assert_eq!(security.run_as_non_root, Some(true), "{}", install.dir);
        assert!(security.run_as_user.is_none_or(|u| u == 65532));
        assert_eq!(
            security.read_only_root_filesystem,
            Some(true),
            "{}",
            install.dir
        );
        assert_eq!(
            security.allow_privilege_escalation,
            Some(false),
            "{}",
            install.dir
        );
        assert_ne!(security.privileged, Some(true));
        let capabilities = security.capabilities.as_ref().expect("capabilities");
        assert_eq!(capabilities.drop.as_deref(), Some(&["ALL".to_string()][..]));
        assert!(capabilities.add.as_deref().unwrap_or_default().is_empty());
        assert!(
            security
                .seccomp_profile
                .as_ref()
                .is_none_or(|s| s.type_ == "RuntimeDefault")
        );

        let resources = container.resources.as_ref().expect("resources");
        for set in [&resources.requests, &resources.limits] {
            let set = set.as_ref().expect("requests and limits");
            assert!(
                set.contains_key("cpu") && set.contains_key("memory"),
                "{}",
                install.dir
            );
        }
    }
}

#[test]
fn serving_certificate_is_mounted_where_the_flags_point() {
    for install in installs() {
        let serve = install.serve_args();
        let cert_dir = serve.tls_cert.parent().expect("--tls-cert in a directory");
        assert_eq!(Some(cert_dir), serve.tls_key.parent(), "{}", install.dir);
        // The keys of a kubernetes.io/tls Secret (and of cert-manager's).
        assert_eq!(
            serve.tls_cert.file_name().and_then(|f| f.to_str()),
            Some("tls.crt")
        );
        assert_eq!(
            serve.tls_key.file_name().and_then(|f| f.to_str()),
            Some("tls.key")
        );
        let secret = install.secret_mounted_at(cert_dir);
        assert_eq!(secret, TLS_SECRET, "{}", install.dir);

        // Who provides it: cert-manager's Certificate, or (static certificates) the
        // kustomization `pullgate certs` writes, never key material in a committed file.
        assert!(
            install.secrets.is_empty(),
            "{}: committed manifests must not carry a Secret",
            install.dir
        );
        let provided: Vec<&str> = install
            .certificates
            .iter()
            .filter_map(|c| c["spec"]["secretName"].as_str())
            .collect();
        if install.dir.contains("cert-manager") {
            assert!(
                provided.contains(&TLS_SECRET),
                "{}: {provided:?}",
                install.dir
            );
        } else {
            assert!(provided.is_empty(), "{}", install.dir);
        }
    }
}

#[test]
fn rbac_is_read_only_on_four_core_resources_and_runtime_classes() {
    let expected: BTreeSet<(String, String, String)> = [
        ("", "secrets"),
        ("", "serviceaccounts"),
        ("", "namespaces"),
        ("", "nodes"),
        ("node.k8s.io", "runtimeclasses"),
    ]
    .iter()
    .flat_map(|(g, r)| {
        ["get", "list", "watch"]
            .iter()
            .map(move |v| (g.to_string(), r.to_string(), v.to_string()))
    })
    .collect();
    for install in installs() {
        assert_eq!(
            install.cluster_roles.len(),
            1,
            "{}: one ClusterRole",
            install.dir
        );
        let role = &install.cluster_roles[0];
        assert!(role.aggregation_rule.is_none());
        let mut granted = BTreeSet::new();
        for rule in role.rules.iter().flatten() {
            assert!(rule.resource_names.is_none(), "{}", install.dir);
            assert!(rule.non_resource_urls.is_none(), "{}", install.dir);
            for group in rule.api_groups.iter().flatten() {
                for resource in rule.resources.iter().flatten() {
                    for verb in &rule.verbs {
                        granted.insert((group.clone(), resource.clone(), verb.clone()));
                    }
                }
            }
        }
        assert_eq!(granted, expected, "{}", install.dir);

        assert_eq!(install.service_accounts.len(), 1, "{}", install.dir);
        let account = install.service_accounts[0]
            .metadata
            .name
            .clone()
            .expect("name");
        assert_eq!(install.pod().service_account_name.as_ref(), Some(&account));
        assert_eq!(install.cluster_role_bindings.len(), 1, "{}", install.dir);
        let binding = &install.cluster_role_bindings[0];
        assert_eq!(binding.role_ref.kind, "ClusterRole");
        assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
        let subjects = binding.subjects.as_deref().unwrap_or_default();
        assert_eq!(subjects.len(), 1, "{}", install.dir);
        assert_eq!(subjects[0].kind, "ServiceAccount");
        assert_eq!(subjects[0].name, account);
        assert_eq!(subjects[0].namespace.as_deref(), Some(NAMESPACE));
    }
}

#[test]
fn audit_and_enforce_overlays_set_their_mode() {
    // (Also checked for every install above; this names the two that matter.)
    assert_eq!(install("overlays/audit").serve_args().mode, Mode::Audit);
    assert_eq!(install("overlays/enforce").serve_args().mode, Mode::Enforce);
}

#[test]
fn ca_bundle_comes_from_cert_manager_or_pullgate_certs_only() {
    for install in installs() {
        let (config, hook) = install.webhook();
        assert!(
            hook.client_config.ca_bundle.is_none(),
            "{}: no committed caBundle (it would be stale)",
            install.dir
        );
        let inject = config
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("cert-manager.io/inject-ca-from"));
        assert_eq!(
            inject.is_some(),
            install.dir.contains("cert-manager"),
            "{}: inject-ca-from {inject:?}",
            install.dir
        );
    }
}

#[test]
fn cert_manager_overlay_issues_the_serving_certificate() {
    let install = install("overlays/cert-manager");
    let (config, _) = install.webhook();
    let inject = config.metadata.annotations.as_ref().expect("annotations")
        ["cert-manager.io/inject-ca-from"]
        .clone();
    let (namespace, name) = inject.split_once('/').expect("NAMESPACE/CERTIFICATE");
    assert_eq!(namespace, NAMESPACE);

    let certificate = install
        .certificates
        .iter()
        .find(|c| c["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("inject-ca-from names Certificate {name}, not rendered"));
    let spec = &certificate["spec"];
    assert_eq!(spec["secretName"], TLS_SECRET);
    let dns_names: Vec<&str> = spec["dnsNames"]
        .as_array()
        .expect("dnsNames")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for wanted in [
        SERVICE.to_string(),
        format!("{SERVICE}.{NAMESPACE}"),
        format!("{SERVICE}.{NAMESPACE}.svc"),
        format!("{SERVICE}.{NAMESPACE}.svc.cluster.local"),
    ] {
        assert!(
            dns_names.contains(&wanted.as_str()),
            "{wanted} not in {dns_names:?}"
        );
    }
    let usages = spec["usages"].as_array().expect("usages");
    assert!(usages.iter().any(|u| u == "server auth"));

    // Its issuer chain resolves: serving Certificate -> CA Issuer -> CA Certificate ->
    // self-signed Issuer, all rendered here.
    let issuer = |reference: &Value| -> &Value {
        assert_eq!(reference["kind"], "Issuer");
        install
            .issuers
            .iter()
            .find(|i| i["metadata"]["name"] == reference["name"])
            .unwrap_or_else(|| panic!("issuer {} not rendered", reference["name"]))
    };
    let ca_issuer = issuer(&spec["issuerRef"]);
    let ca_secret = ca_issuer["spec"]["ca"]["secretName"]
        .as_str()
        .expect("a CA Issuer");
    let ca_certificate = install
        .certificates
        .iter()
        .find(|c| c["spec"]["secretName"] == ca_secret)
        .expect("the CA's Certificate");
    assert_eq!(ca_certificate["spec"]["isCA"], true);
    let root = issuer(&ca_certificate["spec"]["issuerRef"]);
    assert!(root["spec"]["selfSigned"].is_object(), "{root}");
}

#[test]
fn every_credential_provider_component_is_tested() {
    let components = std::fs::read_dir(manifests_dir().join("components")).expect("components");
    for entry in components {
        let name = format!(
            "components/{}",
            entry.expect("dir entry").file_name().to_string_lossy()
        );
        if name.contains("credential-provider") {
            assert!(
                PROVIDER_COMPONENTS.iter().any(|(c, ..)| *c == name),
                "{name} is not in PROVIDER_COMPONENTS: add it to this test"
            );
        }
    }
}

/// The files of the ConfigMap volume mounted at `dir`, by name.
fn config_map_files(install: &Install, dir: &Path) -> BTreeMap<String, String> {
    let mount = install
        .container()
        .volume_mounts
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|m| Path::new(&m.mount_path) == dir)
        .unwrap_or_else(|| panic!("{}: nothing mounted at {}", install.dir, dir.display()));
    assert_eq!(mount.read_only, Some(true), "{}", install.dir);
    assert!(mount.sub_path.is_none(), "{}: a whole volume", install.dir);
    let volume = install
        .pod()
        .volumes
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|v| v.name == mount.name)
        .unwrap_or_else(|| panic!("{}: no volume {}", install.dir, mount.name));
    let name = volume
        .config_map
        .as_ref()
        .map(|c| c.name.clone())
        .unwrap_or_else(|| panic!("{}: {} is not a ConfigMap volume", install.dir, mount.name));
    let config_map = install
        .config_maps
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(name.as_str()))
        .unwrap_or_else(|| panic!("{}: the ConfigMap {name} is not rendered", install.dir));
    config_map.data.clone().unwrap_or_default()
}

#[test]
fn credential_provider_components_run_the_nodes_plugin_with_a_config_pullgate_accepts() {
    for (component, plugin, node_path, _) in PROVIDER_COMPONENTS {
        let install = install(component);
        let engine = install.serve_args().engine;
        let config = engine
            .image_credential_provider_config
            .unwrap_or_else(|| panic!("{component}: --image-credential-provider-config"));
        let bin_dir = engine
            .image_credential_provider_bin_dir
            .unwrap_or_else(|| panic!("{component}: --image-credential-provider-bin-dir"));

        // The config is a file of the mounted ConfigMap, and pullgate's loader takes it.
        let files = config_map_files(install, config.parent().expect("a directory"));
        let file_name = config.file_name().and_then(|f| f.to_str()).expect("a file");
        let content = files
            .get(file_name)
            .unwrap_or_else(|| panic!("{component}: the ConfigMap has no {file_name}"));
        let dir = tempfile::tempdir().expect("tempdir");
        let copy = dir.path().join(file_name);
        std::fs::write(&copy, content).expect("write");
        let loaded = pullgate::provider::config::load(&copy)
            .unwrap_or_else(|e| panic!("{component}: {file_name} is refused: {e}"));
        let names: Vec<&str> = loaded.providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, [plugin], "{component}");

        // Each provider's binary is the node's, read-only, where the bin dir flag points.
        let pod = install.pod();
        let mount = install
            .container()
            .volume_mounts
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|m| Path::new(&m.mount_path) == bin_dir.join(plugin))
            .unwrap_or_else(|| panic!("{component}: {plugin} is not mounted in the bin dir"));
        assert_eq!(mount.read_only, Some(true), "{component}");
        let volume = pod
            .volumes
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|v| v.name == mount.name)
            .expect("the mount's volume");
        let host = volume.host_path.as_ref().expect("the node's binary");
        assert_eq!(host.path, node_path, "{component}");
        assert_eq!(
            host.type_.as_deref(),
            Some("File"),
            "{component}: fail fast when absent"
        );

        // Files the plugin's arguments name are mounted too (acr: azure.json).
        for arg in loaded.providers.iter().flat_map(|p| &p.args) {
            if let Some(name) =
                arg.strip_prefix(&format!("{}/", config.parent().expect("dir").display()))
            {
                assert!(
                    files.contains_key(name),
                    "{component}: {arg} is not in the ConfigMap"
                );
            }
        }

        // With the binaries in place, pullgate starts with this config.
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("bin");
        for name in &names {
            let path = bin.join(name);
            std::fs::write(&path, "#!/bin/sh\nexit 1\n").expect("write");
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        pullgate::provider::NodeProviders::register(&copy, &bin)
            .unwrap_or_else(|e| panic!("{component}: {e}"));

        // pullgate's built-in list (used without a config) covers what the plugin serves.
        for pattern in loaded.providers.iter().flat_map(|p| &p.match_images) {
            assert!(
                pullgate::provider::CLOUD_REGISTRIES.contains(&pattern.as_str()),
                "{component}: {pattern} is missing from provider::CLOUD_REGISTRIES"
            );
        }
    }
}

#[test]
fn credential_provider_components_name_the_cloud_identity_and_allow_the_host_path() {
    for (component, _, _, annotation) in PROVIDER_COMPONENTS {
        let install = install(component);
        if let Some(annotation) = annotation {
            assert_eq!(install.service_accounts.len(), 1, "{component}");
            let annotations = install.service_accounts[0]
                .metadata
                .annotations
                .clone()
                .unwrap_or_default();
            assert!(
                annotations.contains_key(annotation),
                "{component}: the ServiceAccount carries {annotation}"
            );
        }
        // hostPath volumes are only admitted at Pod Security level `privileged`.
        let labels = install.namespaces[0]
            .metadata
            .labels
            .clone()
            .unwrap_or_default();
        assert_eq!(
            labels
                .get("pod-security.kubernetes.io/enforce")
                .map(String::as_str),
            Some("privileged"),
            "{component}"
        );
    }
}

#[test]
fn installs_without_a_provider_component_keep_the_restricted_level_and_no_host_path() {
    for (dir, _) in INSTALLS {
        let install = install(dir);
        let labels = install.namespaces[0]
            .metadata
            .labels
            .clone()
            .unwrap_or_default();
        assert_eq!(
            labels
                .get("pod-security.kubernetes.io/enforce")
                .map(String::as_str),
            Some("restricted"),
            "{dir}"
        );
        let volumes = install.pod().volumes.as_deref().unwrap_or_default();
        assert!(volumes.iter().all(|v| v.host_path.is_none()), "{dir}");
        let engine = install.serve_args().engine;
        assert!(engine.image_credential_provider_config.is_none(), "{dir}");
    }
}
