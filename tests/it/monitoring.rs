//! `manifests/components/monitoring`: the alerts pass `promtool check rules` and their unit
//! tests (`promtool test rules`, every alert firing and quiet), every metric the rules and
//! the dashboard name is one a running `pullgate serve` exports, every runbook link lands
//! on a README section, and the component renders on an install with the ServiceMonitor
//! pointed at the Service's metrics port.
//!
//! promtool comes from Debian's prometheus package, unpacked by `make deps`.

use crate::support;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize as _;
use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn component() -> PathBuf {
    repo().join("manifests/components/monitoring")
}

/// promtool on PATH, else where `make deps` unpacks it.
fn promtool() -> PathBuf {
    let unpacked = repo().join("target/tools/bin/promtool");
    if unpacked.is_file() {
        return unpacked;
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("promtool"))
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| panic!("promtool not found: run `make deps`"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    Value::deserialize(serde_yaml_ng::Deserializer::from_str(&text))
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

fn prometheus_rule() -> Value {
    yaml(&component().join("prometheusrule.yaml"))
}

fn dashboard() -> Value {
    let path = component().join("dashboards/pullgate.json");
    serde_json::from_slice(&std::fs::read(&path).expect("dashboard"))
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every rule: (alert name, expression, annotations).
fn rules() -> Vec<(String, String, BTreeMap<String, String>)> {
    let rule = prometheus_rule();
    let groups = rule["spec"]["groups"].as_array().expect("spec.groups");
    groups
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .map(|r| {
            let annotations = r["annotations"]
                .as_object()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            (
                r["alert"]
                    .as_str()
                    .expect("alerting rules only")
                    .to_string(),
                r["expr"].as_str().expect("expr").to_string(),
                annotations,
            )
        })
        .collect()
}

/// promtool's unit-test files: most alerts, and the one whose baseline is a day (evaluated
/// every 5m, so that a day of history does not cost 1,440 rounds).
const UNIT_TESTS: [&str; 2] = ["alerts.test.yaml", "alerts-1d.test.yaml"];

/// The PrometheusRule's groups as a plain rules file, with the unit tests next to it.
fn rules_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = &prometheus_rule()["spec"];
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_yaml_ng::to_string(spec).expect("rules as YAML"),
    )
    .expect("write rules");
    for file in UNIT_TESTS {
        std::fs::copy(
            repo().join("tests/data/monitoring").join(file),
            dir.path().join(file),
        )
        .expect("copy unit tests");
    }
    dir
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let dir = rules_dir();
    let check = run(Command::new(promtool())
        .args(["check", "rules", "rules.yaml"])
        .current_dir(dir.path()));
    let says = |o: &Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    assert!(check.status.success(), "{}", says(&check));
    assert!(
        says(&check).contains(&format!("SUCCESS: {} rules found", rules().len())),
        "{}",
        says(&check)
    );
    let test = run(Command::new(promtool())
        .args(["test", "rules"])
        .args(UNIT_TESTS)
        .current_dir(dir.path()));
    assert!(test.status.success(), "{}", says(&test));
    for file in UNIT_TESTS {
        assert!(
            says(&test).contains(file),
            "{file} was not run: {}",
            says(&test)
        );
    }
}

#[test]
fn the_unit_tests_catch_a_broken_threshold() {
    // The same tests against rules whose thresholds moved must fail: they test something.
    let dir = rules_dir();
    let path = dir.path().join("rules.yaml");
    let rules = std::fs::read_to_string(&path).expect("rules");
    let broken = rules.replace("> 0.1", "> 0.5").replace("> 2", "> 20");
    assert_ne!(rules, broken);
    std::fs::write(&path, broken).expect("write");
    let test = run(Command::new(promtool())
        .args(["test", "rules", "alerts.test.yaml"])
        .current_dir(dir.path()));
    let out =
        String::from_utf8_lossy(&test.stderr).to_string() + &String::from_utf8_lossy(&test.stdout);
    assert!(!test.status.success(), "{out}");
    for alert in ["PullgateRegistryErrors", "PullgateProbeLatencyHigh"] {
        assert!(out.contains(alert), "{alert} should fail: {out}");
    }
}

#[test]
fn every_alert_has_a_case_where_it_fires_and_one_where_it_stays_quiet() {
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    let files: Vec<Value> = UNIT_TESTS
        .iter()
        .map(|file| yaml(&repo().join("tests/data/monitoring").join(file)))
        .collect();
    for case in files
        .iter()
        .flat_map(|f| f["tests"].as_array().expect("tests"))
    {
        for check in case["alert_rule_test"].as_array().expect("alert_rule_test") {
            let name = check["alertname"].as_str().expect("alertname").to_string();
            if check["exp_alerts"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
            {
                fires.insert(name);
            } else {
                quiet.insert(name);
            }
        }
    }
    let alerts: BTreeSet<String> = rules().into_iter().map(|(name, _, _)| name).collect();
    assert_eq!(fires, alerts, "alerts with a firing case");
    assert_eq!(quiet, alerts, "alerts with a quiet case");
}

/// Every `pullgate_*` metric name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("pullgate_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // A label value such as job="pullgate" is no metric.
        let before = rest[..i].chars().last();
        if before != Some('"') {
            names.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

/// The series names a Prometheus scrape of `exposition` creates, from its `# TYPE` lines:
/// counters get `_total`, histograms `_bucket`, `_sum` and `_count`.
fn series_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_string());
            }
        }
    }
    names
}

/// `pullgate serve --no-cluster` on 127.0.0.1, killed and reaped on drop.
struct Served {
    child: Child,
    listen: SocketAddr,
    ops: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }
}

/// The serving certificate's notAfter: 2031-05-17T00:00:00Z.
const NOT_AFTER: i64 = 1_936_742_400;

/// A CA, and a serving certificate for 127.0.0.1 valid until [`NOT_AFTER`].
fn serving_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca, &ca_key);
    let key = KeyPair::generate().expect("key");
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    leaf.not_after = rcgen::date_time_ymd(2031, 5, 17);
    let cert = leaf.signed_by(&key, &issuer).expect("leaf");
    let (cert_path, key_path) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).expect("write CA");
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    (cert_path, key_path)
}

async fn serve(registry_ca: &Path) -> Served {
    support::init();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = serving_certificate(dir.path());
    let listen = SocketAddr::new(support::LOCALHOST, support::free_port(support::LOCALHOST));
    let ops = SocketAddr::new(support::LOCALHOST, support::free_port(support::LOCALHOST));
    let log = std::fs::File::create(dir.path().join("serve.log")).expect("log");
    let child = Command::new(env!("CARGO_BIN_EXE_pullgate"))
        .args(["serve", "--no-cluster", "--listen", &listen.to_string()])
        .args(["--metrics-listen", &ops.to_string()])
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .arg("--registry-ca")
        .arg(registry_ca)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start pullgate serve");
    let served = Served {
        child,
        listen,
        ops,
        dir,
    };
    let client = support::http_client(None);
    let deadline = Instant::now() + support::READY_TIMEOUT;
    loop {
        let ready = client
            .get(format!("http://{ops}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            return served;
        }
        let log = std::fs::read_to_string(served.dir.path().join("serve.log")).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "pullgate serve not ready:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A CREATE review of a Pod running `image`.
fn review(uid: &str, image: &str) -> Value {
    serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "default",
            "name": "p",
            "operation": "CREATE",
            "userInfo": {"username": "u"},
            "object": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": "default"},
                "spec": {"containers": [{"name": "app", "image": image}]}
            },
            "oldObject": null,
            "dryRun": false
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_rules_and_the_dashboard_use_is_exported_by_a_running_server() {
    let pki = support::TestPki::new();
    let registry = support::Registry::start(support::RegistryOpts::tls(&pki)).await;
    support::push_oci_manifest(
        &registry.push_target(support::PushAuth::None),
        "team/app",
        "1.0",
    )
    .await;
    let served = serve(pki.ca_pem()).await;
    // Two reviews of one image: a registry probe (a miss), then a cache hit. Every family
    // then has a sample, as in a cluster.
    let https = support::http_client(Some(&served.ca()));
    for uid in ["one", "two"] {
        let body = review(uid, &format!("{}/team/app:1.0", registry.host())).to_string();
        let answer = https
            .post(format!("https://{}/validate?timeout=10s", served.listen))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("review")
            .bytes()
            .await
            .expect("body");
        let answer: Value = serde_json::from_slice(&answer).expect("an AdmissionReview");
        assert_eq!(answer["response"]["allowed"], true, "{answer}");
    }
    let exposition = support::http_client(None)
        .get(format!("http://{}/metrics", served.ops))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    let exported = series_names(&exposition);

    let mut used: BTreeMap<String, &str> = BTreeMap::new();
    for (_, expr, _) in rules() {
        for name in metric_names(&expr) {
            used.insert(name, "rules");
        }
    }
    let dashboard = dashboard();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let targets = panel["targets"].as_array().expect("every panel queries");
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for t in targets {
            exprs.push(t["expr"].as_str().expect("expr").to_string());
        }
    }
    let variable = &dashboard["templating"]["list"][1]["definition"];
    exprs.push(variable.as_str().expect("a query variable").to_string());
    for expr in &exprs {
        for name in metric_names(expr) {
            used.entry(name).or_insert("dashboard");
        }
    }
    assert!(used.len() >= 8, "{used:?}");
    let unknown: Vec<_> = used
        .iter()
        .filter(|(name, _)| !exported.contains(*name))
        .collect();
    assert!(
        unknown.is_empty(),
        "not exported: {unknown:?}\nexported: {exported:?}\n{exposition}"
    );

    // The values behind two alerts, as served: the certificate's notAfter, and the stores
    // (no cluster: nothing to wait for).
    assert!(
        exposition.contains(&format!(
            "\npullgate_serving_certificate_expiration_timestamp_seconds {NOT_AFTER}\n"
        )),
        "{exposition}"
    );
    assert!(
        exposition.contains("\npullgate_cluster_synced 1\n"),
        "{exposition}"
    );
}

/// GitHub's heading anchors: lower case, spaces to `-`, punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_runbook_link_lands_on_a_readme_section() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let anchors: BTreeSet<String> = readme
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect();
    for (alert, _, annotations) in rules() {
        let url = annotations
            .get("runbook_url")
            .unwrap_or_else(|| panic!("{alert} has no runbook_url"));
        let (page, fragment) = url.split_once('#').expect("an anchor");
        assert!(page.ends_with("/README.md"), "{alert}: {url}");
        assert_eq!(fragment, anchor(&alert), "{alert} links its own section");
        assert!(
            anchors.contains(fragment),
            "README has no section #{fragment}"
        );
        for key in ["summary", "description"] {
            assert!(annotations.contains_key(key), "{alert} has no {key}");
        }
    }
}

/// `kubectl kustomize` of the audit overlay with the monitoring component.
fn render_with_monitoring() -> Vec<Value> {
    let dir = tempfile::tempdir().expect("tempdir");
    // kustomize refuses absolute paths to other kustomizations: link the tree in.
    std::os::unix::fs::symlink(repo().join("manifests"), dir.path().join("manifests"))
        .expect("symlink");
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [manifests/overlays/audit]\ncomponents: [manifests/components/monitoring]\n",
    )
    .expect("kustomization");
    let out = run(Command::new("kubectl").arg("kustomize").arg(dir.path()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn the_component_scrapes_the_services_metrics_port_and_ships_rules_and_dashboard() {
    let objects = render_with_monitoring();
    let one = |kind: &str| -> &Value {
        let found: Vec<&Value> = objects.iter().filter(|o| o["kind"] == kind).collect();
        assert_eq!(found.len(), 1, "one {kind}");
        found[0]
    };
    let service = one("Service");
    let monitor = one("ServiceMonitor");
    let rule = one("PrometheusRule");
    let dashboard = one("ConfigMap");

    // The ServiceMonitor selects the Service, in its namespace, on its metrics port.
    let ns = service["metadata"]["namespace"]
        .as_str()
        .expect("namespace");
    assert_eq!(monitor["metadata"]["namespace"], ns);
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels")
    {
        assert_eq!(&service["metadata"]["labels"][k], v, "label {k}");
    }
    let port = monitor["spec"]["endpoints"][0]["port"]
        .as_str()
        .expect("port");
    let ports = service["spec"]["ports"].as_array().expect("ports");
    let metrics = ports
        .iter()
        .find(|p| p["name"] == port)
        .unwrap_or_else(|| panic!("the Service has no port {port:?}"));
    assert_eq!(
        metrics["targetPort"], 9090,
        "pullgate serve's --metrics-listen port"
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");

    // The job label Prometheus gives the targets is the Service's name: the rules use it.
    let job = service["metadata"]["name"].as_str().expect("name");
    for (alert, expr, _) in rules() {
        assert!(
            expr.contains(&format!("job=\"{job}\"")),
            "{alert} selects job {job}"
        );
    }

    // kube-prometheus conventions for rule selection; Grafana's sidecar label.
    assert_eq!(rule["metadata"]["labels"]["prometheus"], "k8s");
    assert_eq!(rule["metadata"]["labels"]["role"], "alert-rules");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let json = dashboard["data"]["pullgate.json"]
        .as_str()
        .expect("dashboard JSON");
    let parsed: Value = serde_json::from_str(json).expect("the dashboard is JSON");
    assert_eq!(parsed["uid"], "pullgate");
    assert_eq!(parsed["templating"]["list"][0]["type"], "datasource");
}
