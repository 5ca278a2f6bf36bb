//! `pullgate check -f` for CI systems, end to end: the real binary on real files
//! (`tests/data/ci/k8s`: several files, multi-document YAML, a `List`, JSON, a nested
//! directory, stdin) against real registries, in every output format, each finding's line
//! and column checked against the fixture text. SARIF is validated against the SARIF 2.1.0
//! JSON schema, JUnit parsed by a real XML parser, and the README's GitHub Actions and
//! GitLab CI jobs are validated against their schemas and their `pullgate` commands run
//! exactly as written. The schema and validators come from `make deps`.

use crate::support;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize as _;
use serde_json::Value;
use support::{
    PushAuth, Registry, RegistryAuth, RegistryOpts, TestPki, push_oci_index, push_oci_manifest,
    tag_existing,
};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn tools() -> PathBuf {
    repo().join("target/tools")
}

/// `python3` with the validators `make deps` installs.
fn python() -> Command {
    let site = tools().join("python");
    assert!(
        site.join(".installed").is_file(),
        "{} is missing: run `make deps`",
        site.display()
    );
    let mut cmd = Command::new("python3");
    cmd.env("PYTHONPATH", site);
    cmd
}

fn sarif_schema() -> PathBuf {
    let schema = tools().join("sarif/sarif-2.1.0.schema.json");
    assert!(
        schema.is_file(),
        "{} is missing: run `make deps`",
        schema.display()
    );
    schema
}

/// Every finding of the fixture: (file, container, verdict), in report order (files in
/// name order, then document and container order).
const EXPECTED: [(&str, &str, &str); 9] = [
    ("k8s/jobs.yaml", "report", "pullable"),
    ("k8s/jobs.yaml", "db", "unauthorized"),
    ("k8s/jobs.yaml", "tools", "exempt"),
    ("k8s/nested/api.json", "arm", "no-matching-platform"),
    ("k8s/nested/api.json", "typo", "invalid-reference"),
    ("k8s/nested/down.yml", "mirror", "registry-unavailable"),
    ("k8s/web.yaml", "migrate", "not-found"),
    ("k8s/web.yaml", "web", "pullable"),
    ("k8s/web.yaml", "api", "pullable"),
];

fn is_definitive(verdict: &str) -> bool {
    matches!(
        verdict,
        "not-found" | "unauthorized" | "no-matching-platform" | "invalid-reference"
    )
}

fn is_indeterminate(verdict: &str) -> bool {
    verdict == "registry-unavailable"
}

/// A repository checkout: `k8s/` with the test registries' addresses filled in, a public
/// registry (TLS, anonymous) and a private one (htpasswd `ci`/`ci-pw`).
struct Workspace {
    _pki: TestPki,
    public: Registry,
    private: Registry,
    closed: String,
    ca: String,
    dir: tempfile::TempDir,
}

impl Workspace {
    async fn start() -> Self {
        support::init();
        let pki = TestPki::new();
        let public = Registry::start(RegistryOpts::tls(&pki)).await;
        let private = Registry::start(
            RegistryOpts::tls(&pki).with_auth(RegistryAuth::htpasswd(&[("ci", "ci-pw")])),
        )
        .await;
        let t = public.push_target(PushAuth::None);
        push_oci_manifest(&t, "library/web", "1.0").await;
        tag_existing(&t, "library/web", "1.0", "latest").await;
        push_oci_index(
            &t,
            "library/armonly",
            "1.0",
            &[("linux", "arm64", None)],
            false,
        )
        .await;
        push_oci_manifest(
            &private.push_target(PushAuth::basic("ci", "ci-pw")),
            "team/api",
            "2.0",
        )
        .await;
        let closed = format!("127.0.0.1:{}", support::free_port(support::LOCALHOST));
        let ca = pki.ca_pem().display().to_string();
        let ws = Self {
            _pki: pki,
            public,
            private,
            closed,
            ca,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        ws.copy(&repo().join("tests/data/ci/k8s"), &ws.root().join("k8s"));
        ws
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn expand(&self, text: &str) -> String {
        text.replace("PUBLIC_REGISTRY", self.public.host())
            .replace("PRIVATE_REGISTRY", self.private.host())
            .replace("CLOSED_REGISTRY", &self.closed)
    }

    fn copy(&self, from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("fixture dir") {
            let path = entry.expect("entry").path();
            let target = to.join(path.file_name().expect("name"));
            if path.is_dir() {
                self.copy(&path, &target);
            } else {
                let text = std::fs::read_to_string(&path).expect("fixture");
                std::fs::write(&target, self.expand(&text)).expect("write fixture");
            }
        }
    }

    /// The fixture as checked (addresses filled in).
    fn text(&self, file: &str) -> String {
        std::fs::read_to_string(self.root().join(file)).expect("fixture")
    }

    /// Where the image of `container` is written in `file`: the line of the container's
    /// entry (`- name: c`, `- {name: c, …}`, `{"name": "c", …}`), then the first `image`
    /// key from there; the column of its value (its opening quote, if quoted).
    fn position(&self, file: &str, container: &str) -> (u64, u64) {
        position_in(&self.text(file), container)
            .unwrap_or_else(|| panic!("{file} has no container {container}"))
    }

    /// Where `- name: SECRET` of imagePullSecrets is written in `file`.
    fn secret_position(&self, file: &str, secret: &str) -> (u64, u64) {
        let text = self.text(file);
        let needle = format!("- name: {secret}");
        let (i, line) = text
            .lines()
            .enumerate()
            .find(|(_, l)| l.trim() == needle)
            .unwrap_or_else(|| panic!("{file} does not reference {secret}"));
        let col = line.find(secret).expect("name") + 1;
        (i as u64 + 1, col as u64)
    }
}

fn position_in(text: &str, container: &str) -> Option<(u64, u64)> {
    let lines: Vec<&str> = text.lines().collect();
    let entry = [
        format!("- name: {container}"),
        format!("- {{name: {container},"),
        format!("{{\"name\": \"{container}\","),
    ];
    let start = lines.iter().position(|l| {
        let t = l.trim();
        entry.iter().any(|e| t == e || t.starts_with(e.as_str()))
    })?;
    for (i, line) in lines.iter().enumerate().skip(start) {
        let from = if i == start {
            line.find("name").unwrap_or(0)
        } else {
            0
        };
        let rest = &line[from..];
        let Some(key) = rest.find("image").map(|k| from + k) else {
            continue;
        };
        let after = &line[key + "image".len()..];
        let skip = after
            .chars()
            .take_while(|c| matches!(c, '"' | ':' | ' '))
            .collect::<String>();
        let mut value = key + "image".len() + skip.len();
        if skip.ends_with('"') {
            value -= 1; // the value starts at its opening quote
        }
        let col = line[..value].chars().count() + 1;
        return Some((i as u64 + 1, col as u64));
    }
    None
}

/// Run pullgate in the workspace (off the async runtime: the registries live on it).
async fn pullgate(ws: &Workspace, args: &[&str], stdin: Option<String>) -> Output {
    let mut cmd = support::cli::command();
    cmd.args(args)
        .args(["--registry-ca", &ws.ca, "--timeout", "20"])
        .current_dir(ws.root());
    support::cli::run(cmd, stdin).await
}

async fn run(cmd: Command, stdin: Option<String>) -> Output {
    support::cli::run(cmd, stdin).await
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn says(o: &Output) -> String {
    format!("{}\n{}", stdout(o), String::from_utf8_lossy(&o.stderr))
}

fn json_rows(o: &Output) -> Vec<Value> {
    serde_json::from_slice::<Value>(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", says(o)))
        .as_array()
        .expect("an array")
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_findings_carry_the_file_line_and_column_of_each_image() {
    let ws = Workspace::start().await;
    let out = pullgate(&ws, &["check", "-f", "k8s/", "-o", "json"], None).await;
    assert_eq!(out.status.code(), Some(1), "{}", says(&out));
    let rows = json_rows(&out);
    assert_eq!(rows.len(), EXPECTED.len(), "{}", says(&out));
    for (row, (file, container, verdict)) in rows.iter().zip(EXPECTED) {
        let (line, column) = ws.position(file, container);
        assert_eq!(row["container"], container, "{row}");
        assert_eq!(row["verdict"], verdict, "{row}");
        assert_eq!(row["file"], file, "{row}");
        assert_eq!(row["line"], line, "{container}: {row}");
        assert_eq!(row["column"], column, "{container}: {row}");
        for field in ["image", "reference", "digest", "message"] {
            assert!(row.get(field).is_some(), "{field} kept: {row}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_leads_each_finding_with_its_file_and_line() {
    let ws = Workspace::start().await;
    let out = pullgate(&ws, &["check", "-f", "k8s/"], None).await;
    assert_eq!(out.status.code(), Some(1), "{}", says(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("LOCATION "), "{text}");
    for (i, (file, container, verdict)) in EXPECTED.iter().enumerate() {
        let (line, _) = ws.position(file, container);
        let row = lines[i + 1];
        assert!(row.starts_with(&format!("{file}:{line} ")), "{row}");
        assert!(row.contains(verdict), "{row}");
    }
    assert!(
        lines.last().is_some_and(|l| l.starts_with("9 images:")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_is_named_dash_with_its_lines() {
    let ws = Workspace::start().await;
    let out = pullgate(
        &ws,
        &["check", "-f", "-", "-o", "json"],
        Some(ws.text("k8s/web.yaml")),
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", says(&out));
    let rows = json_rows(&out);
    let got: Vec<(String, u64, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["file"].as_str().unwrap_or_default().to_string(),
                r["line"].as_u64().unwrap_or(0),
                r["column"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let expected: Vec<(String, u64, u64)> = ["migrate", "web", "api"]
        .iter()
        .map(|c| {
            let (l, col) = ws.position("k8s/web.yaml", c);
            ("-".to_string(), l, col)
        })
        .collect();
    assert_eq!(got, expected);
}

/// `::level key=value,…::message`, unescaped as the runner does.
#[derive(Debug)]
struct Annotation {
    level: String,
    properties: BTreeMap<String, String>,
    message: String,
}

fn unescape(s: &str) -> String {
    s.replace("%0A", "\n")
        .replace("%0D", "\r")
        .replace("%3A", ":")
        .replace("%2C", ",")
        .replace("%25", "%")
}

fn annotations(text: &str) -> Vec<Annotation> {
    text.lines()
        .filter_map(|l| l.strip_prefix("::"))
        .map(|l| {
            let (head, message) = l.split_once("::").expect("::command::message");
            let (level, props) = head.split_once(' ').unwrap_or((head, ""));
            let properties = props
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').expect("key=value");
                    (k.to_string(), unescape(v))
                })
                .collect();
            Annotation {
                level: level.to_string(),
                properties,
                message: unescape(message),
            }
        })
        .collect()
}

fn check_annotations(ws: &Workspace, text: &str) {
    let got = annotations(text);
    let failing: Vec<_> = EXPECTED
        .iter()
        .filter(|(_, _, v)| is_definitive(v) || is_indeterminate(v))
        .collect();
    assert_eq!(got.len(), failing.len(), "{text}");
    for (file, container, verdict) in failing {
        let a = got
            .iter()
            .find(|a| a.message.contains(&format!("container \"{container}\"")))
            .unwrap_or_else(|| panic!("no annotation for {container}: {text}"));
        let level = if is_definitive(verdict) {
            "error"
        } else {
            "warning"
        };
        let (line, col) = ws.position(file, container);
        assert_eq!(a.level, level, "{a:?}");
        assert_eq!(a.properties["file"], *file, "{a:?}");
        assert_eq!(a.properties["line"], line.to_string(), "{a:?}");
        assert_eq!(a.properties["col"], col.to_string(), "{a:?}");
        assert_eq!(
            a.properties["title"],
            format!("pullgate: {verdict}"),
            "{a:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_annotations_pin_each_failure_to_its_image_field() {
    let ws = Workspace::start().await;
    let out = pullgate(&ws, &["check", "-f", "k8s/", "-o", "github"], None).await;
    assert_eq!(out.status.code(), Some(1), "{}", says(&out));
    let text = stdout(&out);
    check_annotations(&ws, &text);
    let migrate = annotations(&text)
        .into_iter()
        .find(|a| a.message.contains("\"migrate\""))
        .expect("migrate");
    assert!(
        migrate.message.contains("did you mean \"latest\""),
        "{migrate:?}"
    );
    assert!(
        text.lines()
            .filter(|l| !l.starts_with("::"))
            .eq(["9 images: 3 pullable, 1 not-found, 1 unauthorized, 1 no-matching-platform, 1 invalid-reference, 1 registry-unavailable, 1 exempt"]),
        "only the summary besides the commands: {text}"
    );
}

/// Validate `log` against the SARIF 2.1.0 schema; the validator's complaints on failure.
fn validate_sarif(log: &Path) -> Result<(), String> {
    let script = r#"
import json, sys
from jsonschema.validators import validator_for
schema = json.load(open(sys.argv[1]))
log = json.load(open(sys.argv[2]))
cls = validator_for(schema)
cls.check_schema(schema)
errors = sorted(cls(schema, format_checker=cls.FORMAT_CHECKER).iter_errors(log), key=str)
for e in errors:
    print(e.json_path, e.message)
sys.exit(1 if errors else 0)
"#;
    let out = python()
        .arg("-c")
        .arg(script)
        .arg(sarif_schema())
        .arg(log)
        .output()
        .expect("run the SARIF validator");
    if out.status.success() {
        Ok(())
    } else {
        Err(says(&out))
    }
}

fn check_sarif(ws: &Workspace, log: &Value) {
    let run = &log["runs"][0];
    let rules: Vec<&str> = run["tool"]["driver"]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    let failing = pullgate::verdict::Verdict::ALL
        .iter()
        .filter(|v| v.is_definitive_failure() || v.is_indeterminate())
        .count();
    assert_eq!(
        rules.len(),
        failing,
        "one rule per failing verdict word: {rules:?}"
    );
    let results = run["results"].as_array().expect("results");
    let failing: Vec<_> = EXPECTED
        .iter()
        .filter(|(_, _, v)| is_definitive(v) || is_indeterminate(v))
        .collect();
    assert_eq!(results.len(), failing.len(), "{log:#}");
    for (result, (file, container, verdict)) in results.iter().zip(failing) {
        let (line, col) = ws.position(file, container);
        assert_eq!(result["ruleId"], *verdict);
        let index = result["ruleIndex"].as_u64().expect("ruleIndex") as usize;
        assert_eq!(rules[index], *verdict, "ruleIndex points at the rule");
        let level = if is_definitive(verdict) {
            "error"
        } else {
            "warning"
        };
        assert_eq!(result["level"], level);
        let physical = &result["locations"][0]["physicalLocation"];
        assert_eq!(physical["artifactLocation"]["uri"], *file);
        assert_eq!(physical["region"]["startLine"], line, "{container}");
        assert_eq!(physical["region"]["startColumn"], col, "{container}");
        assert!(
            result["message"]["text"]
                .as_str()
                .is_some_and(|m| m.contains(&format!("container \"{container}\""))),
            "{result}"
        );
    }
    // The unauthorized image points at the pull secret its workload names.
    let db = results
        .iter()
        .find(|r| r["ruleId"] == "unauthorized")
        .expect("unauthorized");
    let related = &db["relatedLocations"][0]["physicalLocation"];
    let (line, col) = ws.secret_position("k8s/jobs.yaml", "stale-cred");
    assert_eq!(related["artifactLocation"]["uri"], "k8s/jobs.yaml");
    assert_eq!(related["region"]["startLine"], line);
    assert_eq!(related["region"]["startColumn"], col);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sarif_is_valid_sarif_2_1_0_with_a_result_at_each_failing_image() {
    let ws = Workspace::start().await;
    let out = pullgate(&ws, &["check", "-f", "k8s/", "-o", "sarif"], None).await;
    assert_eq!(out.status.code(), Some(1), "{}", says(&out));
    let path = ws.root().join("pullgate.sarif");
    std::fs::write(&path, &out.stdout).expect("write");
    validate_sarif(&path).unwrap_or_else(|e| panic!("invalid SARIF: {e}"));
    let log: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(log["version"], "2.1.0");
    check_sarif(&ws, &log);

    // The validator does reject what breaks the schema.
    let mut broken = log.clone();
    broken["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] =
        Value::from("12");
    std::fs::write(&path, broken.to_string()).expect("write");
    let complaint = validate_sarif(&path).expect_err("a string line number is invalid");
    assert!(complaint.contains("startLine"), "{complaint}");
}

/// The JUnit document as a real XML parser reads it: suites with their counts, and each
/// test case's attributes and outcome.
fn parse_junit(xml: &Path) -> Value {
    let script = r#"
import json, sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
def case(c):
    f, s = c.find("failure"), c.find("skipped")
    return {**c.attrib,
            "failure": None if f is None else {**f.attrib, "text": f.text},
            "skipped": None if s is None else s.attrib,
            "errors": len(c.findall("error"))}
print(json.dumps({
    "tag": root.tag, **root.attrib,
    "suites": [{**s.attrib, "cases": [case(c) for c in s.findall("testcase")]}
               for s in root.findall("testsuite")],
}))
"#;
    let out = python()
        .arg("-c")
        .arg(script)
        .arg(xml)
        .output()
        .expect("run python");
    assert!(out.status.success(), "not well-formed XML: {}", says(&out));
    serde_json::from_slice(&out.stdout).expect("JSON from the parser")
}

fn check_junit(ws: &Workspace, doc: &Value) {
    assert_eq!(doc["tag"], "testsuites");
    assert_eq!(doc["tests"], "9");
    assert_eq!(doc["failures"], "4");
    assert_eq!(
        doc["skipped"], "2",
        "the exempt image and the unreachable registry"
    );
    assert_eq!(doc["errors"], "0");
    let cases: Vec<&Value> = doc["suites"]
        .as_array()
        .expect("suites")
        .iter()
        .flat_map(|s| s["cases"].as_array().expect("cases"))
        .collect();
    assert_eq!(cases.len(), EXPECTED.len());
    for (case, (file, container, verdict)) in cases.iter().zip(EXPECTED) {
        let (line, _) = ws.position(file, container);
        assert!(
            case["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(&format!("container {container}: "))),
            "{case}"
        );
        assert_eq!(case["file"], file, "{case}");
        assert_eq!(case["line"], line.to_string(), "{case}");
        assert_eq!(case["errors"], 0, "never <error>: {case}");
        if is_definitive(verdict) {
            assert_eq!(case["failure"]["type"], verdict, "{case}");
            assert!(
                case["failure"]["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(&format!("{file}:{line}: "))),
                "{case}"
            );
        } else if verdict == "pullable" {
            assert!(
                case["failure"].is_null() && case["skipped"].is_null(),
                "{case}"
            );
        } else {
            assert!(
                case["skipped"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(verdict)),
                "{case}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junit_has_a_test_case_per_image_failures_for_definitive_and_skips_for_the_rest() {
    let ws = Workspace::start().await;
    let out = pullgate(&ws, &["check", "-f", "k8s/", "-o", "junit"], None).await;
    assert_eq!(out.status.code(), Some(1), "{}", says(&out));
    let path = ws.root().join("junit.xml");
    std::fs::write(&path, &out.stdout).expect("write");
    check_junit(&ws, &parse_junit(&path));
}

/// The first ```yaml block after the README heading `heading`.
fn readme_block(heading: &str) -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let after = readme
        .split_once(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README has no heading {heading:?}"))
        .1;
    let block = after
        .split_once("```yaml\n")
        .expect("a yaml block")
        .1
        .split_once("\n```")
        .expect("a closed block")
        .0;
    format!("{block}\n")
}

/// The snippet is a valid file of its CI system (check-jsonschema's vendored schemas).
fn validate_ci_file(ws: &Workspace, name: &str, text: &str, schema: &str) {
    let path = ws.root().join(name);
    std::fs::write(&path, text).expect("write");
    let out = python()
        .args(["-m", "check_jsonschema", "--builtin-schema", schema])
        .arg(&path)
        .output()
        .expect("run check-jsonschema");
    assert!(out.status.success(), "{name}: {}", says(&out));
}

/// The workspace's `bin/` holds `pullgate` (for PATH), and `./pullgate` its root (GitLab's
/// artifact). The test CA comes through the environment, so the commands run unchanged.
fn ci_shell(ws: &Workspace, shell: &[&str], script: &str) -> Command {
    let bin = ws.root().join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    for link in [bin.join("pullgate"), ws.root().join("pullgate")] {
        if !link.exists() {
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_pullgate"), &link).expect("link");
        }
    }
    let path = std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("PATH");
    let mut cmd = Command::new(shell[0]);
    cmd.args(&shell[1..])
        .arg(script)
        .current_dir(ws.root())
        .env("PATH", path)
        .env("PULLGATE_REGISTRY_CA", &ws.ca)
        .env("NO_COLOR", "1")
        .env_remove("PULLGATE_OUTPUT")
        .env_remove("PULLGATE_PLATFORM");
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_github_actions_job_runs_as_written() {
    let ws = Workspace::start().await;
    let text = readme_block("#### GitHub Actions");
    validate_ci_file(&ws, "images.yaml", &text, "vendor.github-workflows");
    let workflow = Value::deserialize(serde_yaml_ng::Deserializer::from_str(&text)).expect("YAML");
    let steps = workflow["jobs"]["pullgate"]["steps"]
        .as_array()
        .expect("steps");
    let run_of = |name: &str| -> String {
        steps
            .iter()
            .find(|s| s["name"] == name)
            .and_then(|s| s["run"].as_str())
            .unwrap_or_else(|| panic!("no step {name:?} with run"))
            .to_string()
    };
    let sarif_file = steps
        .iter()
        .find_map(|s| s["with"]["sarif_file"].as_str())
        .expect("an upload-sarif step");
    // GitHub's default shell for `run`: bash --noprofile --norc -eo pipefail {0}.
    let bash = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"];

    let check = run(ci_shell(&ws, &bash, &run_of("Check images")), None).await;
    assert_eq!(
        check.status.code(),
        Some(1),
        "the step fails: {}",
        says(&check)
    );
    check_annotations(&ws, &stdout(&check));

    let sarif = run(
        ci_shell(&ws, &bash, &run_of("SARIF for code scanning")),
        None,
    )
    .await;
    assert_eq!(
        sarif.status.code(),
        Some(0),
        "findings do not fail it: {}",
        says(&sarif)
    );
    let path = ws.root().join(sarif_file);
    validate_sarif(&path).unwrap_or_else(|e| panic!("invalid SARIF: {e}"));
    let log: Value = serde_json::from_slice(&std::fs::read(&path).expect("sarif")).expect("JSON");
    check_sarif(&ws, &log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_gitlab_ci_job_runs_as_written() {
    let ws = Workspace::start().await;
    let text = readme_block("#### GitLab CI");
    validate_ci_file(&ws, "gitlab-ci.yml", &text, "vendor.gitlab-ci");
    let pipeline = Value::deserialize(serde_yaml_ng::Deserializer::from_str(&text)).expect("YAML");
    let job = &pipeline["pullgate"];
    let script: Vec<&str> = job["script"]
        .as_array()
        .expect("script")
        .iter()
        .map(|l| l.as_str().expect("a command"))
        .collect();
    let report = job["artifacts"]["reports"]["junit"]
        .as_str()
        .expect("a JUnit report");
    assert_eq!(
        job["artifacts"]["when"], "always",
        "the report of a failed job"
    );
    let allowed: Vec<i64> = job["allow_failure"]["exit_codes"]
        .as_array()
        .expect("exit_codes")
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    assert_eq!(allowed, [3], "registry trouble alone is a warning");

    // GitLab runs the script lines in one shell that stops at the first failure.
    let out = run(ci_shell(&ws, &["sh", "-e", "-c"], &script.join("\n")), None).await;
    assert_eq!(out.status.code(), Some(1), "the job fails: {}", says(&out));
    check_junit(&ws, &parse_junit(&ws.root().join(report)));
}

#[test]
fn no_file_in_the_repository_points_outside_it() {
    // Built from pieces, so this file does not match itself.
    let outside = [
        ["/wo", "rk/"].concat(),
        ["../", "shared"].concat(),
        ["shared/", "DESIGN"].concat(),
        ["shared/", "research"].concat(),
        ["node-side", ".md"].concat(),
    ];
    let mut stack = vec![repo().to_path_buf()];
    let mut offenders = Vec::new();
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let rel = path.strip_prefix(repo()).expect("inside").to_path_buf();
            let top = rel.components().next().map(|c| c.as_os_str().to_owned());
            let ignored = ["target", ".git"].map(std::ffi::OsString::from);
            // certs/ holds generated, git-ignored files besides its README.
            let generated = rel.starts_with("certs")
                && !path.is_dir()
                && path.file_name().is_some_and(|n| n != "README.md");
            if top.as_ref().is_some_and(|t| ignored.contains(t))
                || generated
                || rel.starts_with("fuzz/target")
                || rel.starts_with("fuzz/corpus")
                || rel.starts_with("fuzz/artifacts")
            {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue; // not text
            };
            files += 1;
            for needle in &outside {
                if text.contains(needle.as_str()) {
                    offenders.push(format!("{}: {needle}", rel.display()));
                }
            }
        }
    }
    assert!(files > 50, "walked the repository ({files} files)");
    assert!(offenders.is_empty(), "{offenders:#?}");
}
