//! `make bench`: the release `pullgate serve` under load, against real local registries
//! (Debian's `docker-registry`, the test harness's token issuer and fault proxy), and
//! `pullgate check` side by side with `skopeo inspect`. Prints one table and writes it,
//! with the machine and the commands, to BENCHMARKS.md.
//!
//! 1. warm path: cached Pod reviews over keep-alive HTTPS at rising concurrency;
//! 2. cold fan-out: Pods of 1, 5 and 20 uncached images behind a 50 ms-per-request proxy;
//!    2b. round trips per cold image on anonymous, Basic and token registries (`round_trips`);
//! 3. coalescing: 1000 concurrent reviews of one uncached image behind a token registry;
//! 4. memory: resident size with 100,000 cached verdicts and 10,000 pull secrets;
//! 5. `pullgate check` of 50 images against 50 sequential `skopeo inspect`;
//! 6. `pullgate audit` of 50,000 workloads (webhook_bench/audit_scale.rs);
//! 8. scale: registry requests of 2 replicas against R × U / TTL (`scale`).
//!
//! `--soak --seconds N` runs the soak instead (webhook_bench/soak.rs, `make soak`): its
//! summary goes to benches/results/soak.md, which BENCHMARKS.md includes.
//!
//! Under `cargo test` (no `--bench` argument) it does nothing. Options (after `--`):
//! `--pullgate-bin PATH` (default target/release/pullgate), `--only warm,cold,rt,coalesce,
//! memory,side,audit,scale`, `--step-secs N` (5), `--no-write`, `--server-env KEY=VALUE` (for
//! experiments; implies `--no-write`).

#![forbid(unsafe_code)]

#[path = "../tests/it/support/mod.rs"]
mod support;

#[path = "webhook_bench/audit_scale.rs"]
mod audit_scale;
#[path = "webhook_bench/client.rs"]
mod client;
#[path = "webhook_bench/memory.rs"]
mod memory;
#[path = "webhook_bench/numbers.rs"]
mod numbers;
#[path = "webhook_bench/report.rs"]
mod report;
#[path = "webhook_bench/round_trips.rs"]
mod round_trips;
#[path = "webhook_bench/scale.rs"]
mod scale;
#[path = "webhook_bench/serve.rs"]
mod serve;
#[path = "webhook_bench/soak.rs"]
mod soak;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use axum::body::Bytes;
use futures::StreamExt as _;
use serde_json::Value;
use tempfile::TempDir;

use client::{Conn, Protocol, Tls, allowed_cleanly};
use report::{Machine, Mark, Row};
use serve::{Server, ServerLatency, review_latency};
use support::{
    AuthRecorder, Fault, FaultProxy, PushAuth, Registry, RegistryOpts, TestPki, TokenIssuer,
    TokenIssuerOpts, push_oci_manifest,
};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
/// What the apiserver posts to (it appends its own timeout).
const VALIDATE: &str = "/validate?timeout=10s";
const POD_FIXTURE: &str = "tests/data/admission-reviews/pod-create-kubectl-run.json";
const SECTIONS: [&str; 8] = [
    "warm", "cold", "rt", "coalesce", "memory", "side", "audit", "scale",
];

/// Warm path: client p99 bound and throughput / server-side targets (issue 9).
const P99_BOUND: Duration = Duration::from_millis(1);
const TARGET_RPS: f64 = 30_000.0;
const TARGET_SERVER_P99: Duration = Duration::from_micros(50);
/// Cold fan-out.
const FAN_DELAY: Duration = Duration::from_millis(50);
const FAN_SIZES: [usize; 3] = [1, 5, 20];
const FAN_SAMPLES: usize = 7;
const FAN_TARGET_RATIO: f64 = 1.5;
/// Coalescing.
const COALESCE_REVIEWS: usize = 1000;
const COALESCE_DELAY: Duration = Duration::from_millis(250);
/// Memory.
const MEMORY_TARGET_MIB: f64 = 64.0;
/// Images per Pod when filling the real server's cache.
const FILL_POD: usize = 50;
/// Side by side.
const SIDE_IMAGES: usize = 50;
const SIDE_ROUNDS: usize = 3;
const SIDE_TARGET: f64 = 25.0;

fn main() -> ExitCode {
    if std::env::var("PULLGATE_BENCH_MODE").as_deref() == Ok("memory") {
        return match memory::run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("memory child: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("pullgate benchmarks: skipped outside `cargo bench` (run `make bench`)");
        return ExitCode::SUCCESS;
    }
    let options = match Options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    support::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = if let Some(seconds) = options.soak {
        runtime.block_on(soak::run(&options.bin, seconds, options.write))
    } else {
        runtime.block_on(run(options))
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Clone)]
struct Options {
    bin: PathBuf,
    only: Vec<String>,
    step: Duration,
    warmup: Duration,
    write: bool,
    /// Extra environment for every `pullgate serve` (experiments, e.g. MALLOC_ARENA_MAX);
    /// BENCHMARKS.md is not written when set.
    server_env: Vec<(String, String)>,
    /// `--soak`: run the soak (for `--seconds`, default 600) instead of the sections.
    soak: Option<u64>,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Options> {
        let mut options = Options {
            bin: std::env::var_os("PULLGATE_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(MANIFEST_DIR).join("target/release/pullgate")),
            only: SECTIONS.iter().map(|s| s.to_string()).collect(),
            step: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            write: true,
            server_env: Vec::new(),
            soak: None,
        };
        let mut soak = false;
        let mut seconds = 600;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || it.next().context(format!("{arg} needs a value"));
            match arg.as_str() {
                "--bench" => {}
                "--pullgate-bin" => options.bin = PathBuf::from(value()?),
                "--only" => {
                    options.only = value()?.split(',').map(str::to_string).collect();
                    for s in &options.only {
                        ensure!(SECTIONS.contains(&s.as_str()), "unknown section {s:?}");
                    }
                }
                "--step-secs" => {
                    options.step = Duration::from_secs_f64(value()?.parse()?);
                }
                "--no-write" => options.write = false,
                "--soak" => soak = true,
                "--seconds" => seconds = value()?.parse()?,
                "--server-env" => {
                    let kv = value()?;
                    let (k, v) = kv.split_once('=').context("--server-env wants KEY=VALUE")?;
                    options.server_env.push((k.to_string(), v.to_string()));
                    options.write = false;
                }
                other => bail!("unknown argument {other:?}"),
            }
        }
        if soak {
            options.soak = Some(seconds);
        }
        if options.bin.is_relative() {
            options.bin = Path::new(MANIFEST_DIR).join(&options.bin);
        }
        ensure!(
            options.bin.is_file(),
            "{} not found: run `cargo build --release --locked` (or give --pullgate-bin)",
            options.bin.display()
        );
        Ok(options)
    }

    fn wants(&self, section: &str) -> bool {
        self.only.iter().any(|s| s == section)
    }
}

/// Everything the sections share.
struct Bench {
    options: Options,
    work: TempDir,
    nonce: String,
    pki: TestPki,
    /// HTTPS, anonymous: the warm path's images (`--registry-ca`).
    tls_registry: Registry,
    /// Plain HTTP, anonymous: fan-out and side by side.
    plain_registry: Registry,
    issuer: TokenIssuer,
    /// Plain HTTP, token auth, anonymous pull of `bench/*`.
    token_registry: Registry,
    /// 50 ms per request in front of `plain_registry` (`--insecure-registry`).
    fan_proxy: FaultProxy,
    /// In front of `token_registry` (`--insecure-registry`).
    token_proxy: FaultProxy,
    server: Server,
    h1: Tls,
    h2: Tls,
}

async fn run(options: Options) -> anyhow::Result<bool> {
    let started = Instant::now();
    let manifest_dir = Path::new(MANIFEST_DIR);
    let machine = Machine::detect(manifest_dir);
    println!(
        "pullgate benchmarks: {} on {} × {}, {}",
        options.bin.display(),
        machine.nproc,
        machine.cpu,
        machine.memory
    );
    let work = tempfile::Builder::new()
        .prefix("pullgate-bench-")
        .tempdir()?;
    let pki = TestPki::new();
    let tls_registry = Registry::start(RegistryOpts::tls(&pki)).await;
    let plain_registry = Registry::start(RegistryOpts::plain()).await;
    let issuer = TokenIssuer::start(TokenIssuerOpts::default()).await;
    issuer.set_anonymous_pull(&["bench/*"]);
    let token_registry =
        Registry::start(RegistryOpts::plain().with_auth(issuer.registry_auth())).await;
    let fan_proxy = FaultProxy::for_registry(&plain_registry).await;
    let token_proxy = FaultProxy::for_registry(&token_registry).await;
    let extra = vec![
        "--registry-ca".to_string(),
        pki.ca_pem().display().to_string(),
        "--insecure-registry".to_string(),
        fan_proxy.host(),
        "--insecure-registry".to_string(),
        token_proxy.host(),
    ];
    let server = Server::start(
        &options.bin,
        pki.cert_pem(),
        pki.key_pem(),
        &extra,
        &options.server_env,
        work.path(),
    )
    .await?;
    let h1 = Tls::new(pki.ca_pem(), Protocol::H1)?;
    let h2 = Tls::new(pki.ca_pem(), Protocol::H2)?;
    let bench = Bench {
        options,
        work,
        nonce: support::hex(&support::random_bytes(4)),
        pki,
        tls_registry,
        plain_registry,
        issuer,
        token_registry,
        fan_proxy,
        token_proxy,
        server,
        h1,
        h2,
    };
    let rss_start = bench.server.rss_kib()?;
    println!(
        "pullgate serve ready (pid {}): {}",
        bench.server.pid(),
        bench.server.argv.join(" ")
    );

    let mut rows: Vec<Row> = Vec::new();
    let mut commands: Vec<String> = Vec::new();
    if bench.options.wants("warm") {
        section(&mut rows, "1", "warm path", warm(&bench).await);
    }
    if bench.options.wants("cold") {
        section(&mut rows, "2", "cold fan-out", cold(&bench).await);
    }
    if bench.options.wants("rt") {
        section(
            &mut rows,
            "2b",
            "round trips",
            round_trips::run(&bench).await,
        );
    }
    if bench.options.wants("coalesce") {
        section(&mut rows, "3", "coalescing", coalesce(&bench).await);
    }
    if bench.options.wants("memory") {
        section(&mut rows, "4", "memory", memory(&bench, rss_start).await);
    }
    if bench.options.wants("side") {
        match side_by_side(&bench).await {
            Ok((r, c)) => {
                rows.extend(r);
                commands.extend(c);
            }
            Err(e) => rows.push(Row::error("5", "side by side", &e)),
        }
    }
    if bench.options.wants("audit") {
        match audit_scale::run(&bench.options.bin, bench.work.path()).await {
            Ok((r, c)) => {
                section(&mut rows, "6", "audit at scale", Ok(r));
                commands.push(c);
            }
            Err(e) => section(&mut rows, "6", "audit at scale", Err(e)),
        }
    }
    if bench.options.wants("scale") {
        section(&mut rows, "8", "scale", scale::run(&bench).await);
    }
    let elapsed = started.elapsed();
    let table = report::table(&rows);
    println!("\n{table}");
    println!("(measured in {:.0} s)", elapsed.as_secs_f64());
    let errors = rows.iter().filter(|r| r.mark == Mark::Error).count();
    let complete = SECTIONS.iter().all(|s| bench.options.wants(s));
    if bench.options.write && complete {
        let path = manifest_dir.join("BENCHMARKS.md");
        std::fs::write(
            &path,
            markdown(&bench, &machine, &table, &commands, elapsed),
        )
        .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    } else if bench.options.write {
        // Only some sections: their rows and text, for a look, never BENCHMARKS.md.
        let path = manifest_dir.join("target/bench/partial.md");
        std::fs::create_dir_all(manifest_dir.join("target/bench"))?;
        std::fs::write(
            &path,
            markdown(&bench, &machine, &table, &commands, elapsed),
        )
        .with_context(|| format!("writing {}", path.display()))?;
        println!(
            "wrote {} (BENCHMARKS.md needs every section)",
            path.display()
        );
    }
    if errors > 0 {
        eprintln!(
            "{errors} benchmark(s) failed; server log tail:\n{}",
            bench.server.log_tail()
        );
    }
    Ok(errors == 0)
}

fn section(rows: &mut Vec<Row>, id: &str, name: &str, result: anyhow::Result<Vec<Row>>) {
    match result {
        Ok(r) => {
            for row in &r {
                println!("  {} {} — {} {}", row.id, row.bench, row.result, row.target);
            }
            rows.extend(r);
        }
        Err(e) => {
            eprintln!("{name} failed: {e:#}");
            rows.push(Row::error(id, name, &e));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reviews
// ---------------------------------------------------------------------------------------

/// The captured `kubectl run` Pod review with one container per image.
fn pod_review(images: &[String]) -> anyhow::Result<Bytes> {
    let path = Path::new(MANIFEST_DIR).join(POD_FIXTURE);
    let mut review: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    let containers = review
        .pointer_mut("/request/object/spec/containers")
        .and_then(Value::as_array_mut)
        .context("fixture has no containers")?;
    let template = containers.first().cloned().context("no container")?;
    *containers = images
        .iter()
        .enumerate()
        .map(|(i, image)| {
            let mut c = template.clone();
            c["name"] = Value::from(if images.len() == 1 {
                "runpod".to_string()
            } else {
                format!("app-{i}")
            });
            c["image"] = Value::from(image.as_str());
            c
        })
        .collect();
    Ok(Bytes::from(serde_json::to_vec(&review)?))
}

/// Push single-platform OCI images concurrently (8 at a time).
async fn push_all(target: &support::PushTarget, repos: &[String]) {
    futures::stream::iter(repos)
        .for_each_concurrent(8, |repo| async move {
            push_oci_manifest(target, repo, "v1").await;
        })
        .await;
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn us(seconds: f64) -> String {
    format!("{:.0} µs", seconds * 1e6)
}

fn thousands(n: f64) -> String {
    numbers::thousands(n.round() as u64)
}

fn percentile(sorted: &[u64], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Duration::from_nanos(sorted[rank - 1])
}

fn median(samples: &[Duration]) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    s.get(s.len() / 2).copied().unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// 1. Warm path
// ---------------------------------------------------------------------------------------

struct Step {
    protocol: Protocol,
    connections: usize,
    streams: usize,
    completed: usize,
    errors: u64,
    rps: f64,
    p50: Duration,
    p99: Duration,
    p999: Duration,
    server: ServerLatency,
    /// Requests the server sent to registries during the step (0 when every verdict came
    /// from the cache).
    registry_requests: f64,
}

impl Step {
    fn label(&self) -> String {
        if self.streams > 1 {
            format!(
                "{}, {} conn × {} streams",
                self.protocol.label(),
                self.connections,
                self.streams
            )
        } else {
            format!(
                "{}, {} conn{}",
                self.protocol.label(),
                self.connections,
                if self.connections == 1 { "" } else { "s" }
            )
        }
    }

    fn within_bound(&self) -> bool {
        self.errors == 0 && self.registry_requests == 0.0 && self.p99 <= P99_BOUND
    }
}

async fn warm(bench: &Bench) -> anyhow::Result<Vec<Row>> {
    let target = bench.tls_registry.push_target(PushAuth::None);
    push_oci_manifest(&target, "team/app", "1.0").await;
    let image = format!("{}/team/app:1.0", bench.tls_registry.host());
    let body = pod_review(std::slice::from_ref(&image))?;
    println!(
        "warm path: {image}, review body {} bytes, {} s per step after {} s warm-up",
        body.len(),
        bench.options.step.as_secs_f64(),
        bench.options.warmup.as_secs_f64()
    );

    let plan: [(Protocol, usize, usize); 9] = [
        (Protocol::H1, 1, 1),
        (Protocol::H1, 4, 1),
        (Protocol::H1, 16, 1),
        (Protocol::H1, 64, 1),
        (Protocol::H2, 1, 1),
        (Protocol::H2, 4, 1),
        (Protocol::H2, 16, 1),
        (Protocol::H2, 64, 1),
        (Protocol::H2, 1, 64),
    ];
    let mut steps = Vec::new();
    for (protocol, connections, streams) in plan {
        // (Re)fill the cache: the tag TTL is 5 minutes.
        let mut conn = Conn::connect(bench.server.listen, &bench.h1).await?;
        let (status, answer) = conn.post(VALIDATE, body.clone()).await?;
        ensure!(
            allowed_cleanly(status, &answer),
            "warm-up review: HTTP {status} {}",
            String::from_utf8_lossy(&answer)
        );
        drop(conn);
        let tls = match protocol {
            Protocol::H1 => &bench.h1,
            Protocol::H2 => &bench.h2,
        };
        let step = load_step(bench, tls, protocol, connections, streams, &body).await?;
        println!(
            "  {:<28} {:>7} reviews/s  client p50 {} p99 {} p99.9 {}  server p50 ≈{} p99 ≈{} mean {}  errors {}",
            step.label(),
            thousands(step.rps),
            ms(step.p50),
            ms(step.p99),
            ms(step.p999),
            us(step.server.p50_s),
            us(step.server.p99_s),
            us(step.server.mean_s),
            step.errors
        );
        steps.push(step);
    }

    let mut rows = Vec::new();
    for s in &steps {
        let mut result = format!(
            "{} reviews/s; client p50 {}, p99 {}, p99.9 {}; server p50 ≈{}, p99 ≈{} (bucket ≤ {}), mean {}",
            thousands(s.rps),
            ms(s.p50),
            ms(s.p99),
            ms(s.p999),
            us(s.server.p50_s),
            us(s.server.p99_s),
            us(s.server.p99_bucket_s),
            us(s.server.mean_s),
        );
        result.push_str(&format!(
            "; {} reviews measured ({} seen by the server)",
            thousands(s.completed as f64),
            thousands(s.server.count)
        ));
        if s.errors > 0 {
            result.push_str(&format!("; {} failed reviews", s.errors));
        }
        if s.registry_requests > 0.0 {
            result.push_str(&format!(
                "; {} registry requests (cache not warm)",
                s.registry_requests
            ));
        }
        rows.push(Row::new("1", format!("warm path, {}", s.label()), result));
    }
    let best = steps
        .iter()
        .filter(|s| s.within_bound())
        .max_by(|a, b| a.rps.total_cmp(&b.rps));
    let target = format!(
        "≥ {} reviews/s at client p99 ≤ {}; server p99 ≤ {}",
        thousands(TARGET_RPS),
        ms(P99_BOUND),
        us(TARGET_SERVER_P99.as_secs_f64())
    );
    let summary = format!(
        "**warm path: best throughput with client p99 ≤ {}**",
        ms(P99_BOUND)
    );
    rows.push(match best {
        Some(b) => Row::new(
            "1",
            summary,
            format!(
                "**{} reviews/s** ({}); client p99 {}; server p99 ≈{}",
                thousands(b.rps),
                b.label(),
                ms(b.p99),
                us(b.server.p99_s)
            ),
        )
        .target(
            target,
            b.rps >= TARGET_RPS && b.server.p99_s <= TARGET_SERVER_P99.as_secs_f64(),
        ),
        None => Row::new(
            "1",
            summary,
            format!("no step kept client p99 ≤ {}", ms(P99_BOUND)),
        )
        .target(target, false),
    });
    Ok(rows)
}

/// `connections` × `streams` closed-loop clients for warm-up + one step; client latencies
/// of the requests started inside the step, the server's histogram diffed across it.
async fn load_step(
    bench: &Bench,
    tls: &Tls,
    protocol: Protocol,
    connections: usize,
    streams: usize,
    body: &Bytes,
) -> anyhow::Result<Step> {
    let mut handles = Vec::new();
    for _ in 0..connections {
        let conn = Conn::connect(bench.server.listen, tls).await?;
        for _ in 1..streams {
            handles.push(conn.share().context("only HTTP/2 shares connections")?);
        }
        handles.push(conn);
    }
    let measure_from = tokio::time::Instant::now() + bench.options.warmup;
    let until = measure_from + bench.options.step;
    let mut tasks = tokio::task::JoinSet::new();
    for mut conn in handles {
        let body = body.clone();
        tasks.spawn(async move {
            let mut latencies: Vec<u64> = Vec::with_capacity(1 << 16);
            let mut errors = 0u64;
            let mut last = measure_from;
            loop {
                let start = tokio::time::Instant::now();
                if start >= until {
                    break;
                }
                let result = conn.post(VALIDATE, body.clone()).await;
                let done = tokio::time::Instant::now();
                let ok =
                    matches!(&result, Ok((status, answer)) if allowed_cleanly(*status, answer));
                if start >= measure_from {
                    if ok {
                        latencies
                            .push(u64::try_from((done - start).as_nanos()).unwrap_or(u64::MAX));
                    } else {
                        errors += 1;
                    }
                    last = last.max(done);
                }
                if result.is_err() {
                    break;
                }
            }
            (latencies, errors, last)
        });
    }
    tokio::time::sleep_until(measure_from).await;
    let before = bench.server.metrics().await?;
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut last = measure_from;
    while let Some(joined) = tasks.join_next().await {
        let (l, e, t) = joined?;
        latencies.extend(l);
        errors += e;
        last = last.max(t);
    }
    let after = bench.server.metrics().await?;
    latencies.sort_unstable();
    let window = (last - measure_from).max(Duration::from_millis(1));
    const REQUESTS: &str = "pullgate_registry_requests_total";
    Ok(Step {
        protocol,
        connections,
        streams,
        completed: latencies.len(),
        errors,
        rps: latencies.len() as f64 / window.as_secs_f64(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        p999: percentile(&latencies, 0.999),
        server: review_latency(&before, &after),
        registry_requests: after.sum(REQUESTS) - before.sum(REQUESTS),
    })
}

// ---------------------------------------------------------------------------------------
// 2. Cold fan-out
// ---------------------------------------------------------------------------------------

async fn cold(bench: &Bench) -> anyhow::Result<Vec<Row>> {
    let repo = |sample: usize, size: usize, i: usize| {
        format!("bench/fan-{}-s{sample}-n{size}-{i}", bench.nonce)
    };
    let mut repos = Vec::new();
    for sample in 0..FAN_SAMPLES {
        for size in FAN_SIZES {
            repos.extend((0..size).map(|i| repo(sample, size, i)));
        }
    }
    let pushed = Instant::now();
    push_all(&bench.plain_registry.push_target(PushAuth::None), &repos).await;
    println!(
        "cold fan-out: pushed {} fresh images in {:.1} s; proxy adds {} per request",
        repos.len(),
        pushed.elapsed().as_secs_f64(),
        ms(FAN_DELAY)
    );

    let proxy = &bench.fan_proxy;
    proxy.reset_counters();
    proxy.set_fault(Fault::Delay(FAN_DELAY));
    let result = async {
        let mut conn = Conn::connect(bench.server.listen, &bench.h1).await?;
        let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); FAN_SIZES.len()];
        let mut requests: Vec<usize> = vec![0; FAN_SIZES.len()];
        // Interleaved, so that drift affects every size alike.
        for sample in 0..FAN_SAMPLES {
            for (k, size) in FAN_SIZES.into_iter().enumerate() {
                let images: Vec<String> = (0..size)
                    .map(|i| format!("{}/{}:v1", proxy.host(), repo(sample, size, i)))
                    .collect();
                let body = pod_review(&images)?;
                let before = proxy.total_requests();
                let started = Instant::now();
                let (status, answer) = conn.post(VALIDATE, body).await?;
                let elapsed = started.elapsed();
                ensure!(
                    allowed_cleanly(status, &answer),
                    "{size}-image pod: HTTP {status} {}",
                    String::from_utf8_lossy(&answer)
                );
                latencies[k].push(elapsed);
                requests[k] += proxy.total_requests() - before;
            }
        }
        anyhow::Ok((latencies, requests))
    }
    .await;
    proxy.clear_faults();
    let (latencies, requests) = result?;

    let mut rows = Vec::new();
    for (k, size) in FAN_SIZES.into_iter().enumerate() {
        let l = &latencies[k];
        let min = l.iter().min().copied().unwrap_or_default();
        let max = l.iter().max().copied().unwrap_or_default();
        rows.push(Row::new(
            "2",
            format!("cold fan-out, {size}-image pod"),
            format!(
                "median {} (min {}, max {}, n={}); {:.1} registry requests per image",
                ms(median(l)),
                ms(min),
                ms(max),
                l.len(),
                requests[k] as f64 / (size * l.len()) as f64
            ),
        ));
        println!(
            "  {size:>2} images: {:?}",
            l.iter().map(|d| ms(*d)).collect::<Vec<_>>()
        );
    }
    let one = median(&latencies[0]).as_secs_f64();
    let twenty = median(&latencies[FAN_SIZES.len() - 1]).as_secs_f64();
    let ratio = twenty / one;
    rows.push(
        Row::new(
            "2",
            "**cold fan-out: 20-image / 1-image latency**",
            format!(
                "**{ratio:.2}×** ({} / {})",
                ms(Duration::from_secs_f64(twenty)),
                ms(Duration::from_secs_f64(one))
            ),
        )
        .target(format!("≤ {FAN_TARGET_RATIO}×"), ratio <= FAN_TARGET_RATIO),
    );
    Ok(rows)
}

// ---------------------------------------------------------------------------------------
// 3. Coalescing
// ---------------------------------------------------------------------------------------

async fn coalesce(bench: &Bench) -> anyhow::Result<Vec<Row>> {
    let repo = format!("bench/coalesce-{}", bench.nonce);
    push_oci_manifest(
        &bench.token_registry.push_target(PushAuth::admin()),
        &repo,
        "v1",
    )
    .await;
    let proxy = &bench.token_proxy;
    let image = format!("{}/{repo}:v1", proxy.host());
    let body = pod_review(std::slice::from_ref(&image))?;

    // Connections first, so that the reviews leave together.
    let mut conns = Vec::with_capacity(COALESCE_REVIEWS);
    for _ in 0..COALESCE_REVIEWS {
        conns.push(Conn::connect(bench.server.listen, &bench.h1).await?);
    }
    bench.issuer.reset_counters();
    proxy.reset_counters();
    proxy.set_fault(Fault::Delay(COALESCE_DELAY));
    println!(
        "coalescing: {COALESCE_REVIEWS} connections open; {image} uncached, {} per proxied request",
        ms(COALESCE_DELAY)
    );
    let before = bench.server.metrics().await?;
    let barrier = Arc::new(tokio::sync::Barrier::new(COALESCE_REVIEWS));
    let mut tasks = tokio::task::JoinSet::new();
    for mut conn in conns {
        let barrier = barrier.clone();
        let body = body.clone();
        tasks.spawn(async move {
            barrier.wait().await;
            let started = Instant::now();
            let result = conn.post(VALIDATE, body).await;
            let ok = matches!(&result, Ok((status, answer)) if allowed_cleanly(*status, answer));
            (ok, started, started.elapsed())
        });
    }
    let joined = tokio::time::timeout(Duration::from_secs(60), async {
        let mut out = Vec::new();
        while let Some(j) = tasks.join_next().await {
            out.push(j?);
        }
        anyhow::Ok(out)
    })
    .await;
    proxy.clear_faults();
    let results = joined.context("the reviews did not finish within 60 s")??;
    let after = bench.server.metrics().await?;

    let allowed = results.iter().filter(|(ok, _, _)| *ok).count();
    let first = results
        .iter()
        .map(|(_, s, _)| *s)
        .min()
        .context("no results")?;
    let last_sent = results
        .iter()
        .map(|(_, s, _)| *s)
        .max()
        .context("no results")?;
    let mut lat: Vec<Duration> = results.iter().map(|(_, _, d)| *d).collect();
    lat.sort();
    let waited = lat.iter().filter(|d| **d >= COALESCE_DELAY).count();
    let manifest_path = format!("/v2/{repo}/manifests/v1");
    let heads = proxy.requests_to("HEAD", &manifest_path);
    let gets = proxy.requests_to("GET", &manifest_path);
    let pings = proxy.requests_to("GET", "/v2/");
    let proxied = proxy.total_requests();
    let tokens = bench.issuer.token_requests();
    let server_requests = after.sum("pullgate_registry_requests_total")
        - before.sum("pullgate_registry_requests_total");
    let reviews = after.get("pullgate_review_duration_seconds_count")
        - before.get("pullgate_review_duration_seconds_count");
    println!(
        "  {allowed}/{COALESCE_REVIEWS} allowed; sent over {}; latency min {} median {} max {}; manifest HEAD {heads} GET {gets}; /v2/ {pings}; proxied {proxied}; token {tokens}; server: {server_requests} registry requests, {reviews} reviews",
        ms(last_sent - first),
        ms(lat[0]),
        ms(lat[lat.len() / 2]),
        ms(lat[lat.len() - 1])
    );
    ensure!(
        allowed == COALESCE_REVIEWS,
        "only {allowed} of {COALESCE_REVIEWS} reviews were allowed cleanly"
    );
    Ok(vec![
        Row::new(
            "3",
            format!("**coalescing: {COALESCE_REVIEWS} concurrent reviews of one uncached image**"),
            format!(
                "**{} manifest request{} ({heads} HEAD, {gets} GET), {tokens} token request{}**; {pings} `/v2/` ping, {proxied} proxied requests in all ({server_requests} registry requests in the server's metrics); all {allowed} allowed, sent within {}, {waited} answered after ≥ {} (they waited on the one probe); latency median {}, max {}",
                heads + gets,
                if heads + gets == 1 { "" } else { "s" },
                if tokens == 1 { "" } else { "s" },
                ms(last_sent - first),
                ms(COALESCE_DELAY),
                ms(lat[lat.len() / 2]),
                ms(lat[lat.len() - 1]),
            ),
        )
        .target(
            "the requests of one probe: 2 manifest requests (first contact: the 401 naming the \
             realm, then with the token), 1 token request",
            heads + gets == 2 && tokens == 1,
        ),
    ])
}

// ---------------------------------------------------------------------------------------
// 4. Memory
// ---------------------------------------------------------------------------------------

/// The in-process child: the webhook's engine and state built from the library.
fn memory_child(bench: &Bench) -> anyhow::Result<Value> {
    let exe = std::env::current_exe()?;
    let out_path = bench.work.path().join("memory.json");
    let err_path = bench.work.path().join("memory.err");
    let mut child = Command::new(exe)
        .arg("--bench")
        .env("PULLGATE_BENCH_MODE", "memory")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?)
        .spawn()?;
    let status = wait_bounded(&mut child, Duration::from_secs(180))?;
    let out = std::fs::read_to_string(&out_path)?;
    ensure!(
        status.success(),
        "memory child failed ({status}): {}",
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    Ok(serde_json::from_str(out.trim())?)
}

/// A fresh `pullgate serve` whose cache is filled with [`memory::VERDICTS`] distinct
/// verdicts through real probes (pods of [`FILL_POD`] images on an in-process stub
/// registry that answers every manifest `HEAD`): (VmRSS at start, VmRSS after, cached
/// entries per its `/metrics`, seconds).
async fn server_fill(bench: &Bench) -> anyhow::Result<(u64, u64, f64, f64)> {
    const FILL_CONNS: usize = 4;
    let sink = AuthRecorder::start().await;
    // One image for every repository: a linux/amd64 config with one layer. Every blob path
    // answers with the config (its GET is read and checked; the layer's HEAD needs only 200).
    let config = r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"]}}"#;
    let config_digest = sink.answer_blobs_with(config);
    sink.answer_as_manifest(
        support::push::OCI_MANIFEST,
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef","size":32}}]}}"#,
            config.len()
        ),
    );
    let dir = bench.work.path().join("fill");
    std::fs::create_dir_all(&dir)?;
    let server = Server::start(
        &bench.options.bin,
        bench.pki.cert_pem(),
        bench.pki.key_pem(),
        &["--insecure-registry".to_string(), sink.host()],
        &bench.options.server_env,
        &dir,
    )
    .await?;
    let start_kib = server.rss_kib()?;
    let started = Instant::now();
    let host = sink.host();
    let pods = memory::VERDICTS / FILL_POD;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..FILL_CONNS {
        let mut conn = Conn::connect(server.listen, &bench.h1).await?;
        let host = host.clone();
        tasks.spawn(async move {
            for pod in (c..pods).step_by(FILL_CONNS) {
                let images: Vec<String> = (0..FILL_POD)
                    .map(|j| {
                        let i = pod * FILL_POD + j;
                        format!(
                            "{host}/team-{}/service-{}:v1.{}.{}",
                            i % 500,
                            i / 8,
                            i % 8,
                            i % 97
                        )
                    })
                    .collect();
                let (status, answer) = conn.post(VALIDATE, pod_review(&images)?).await?;
                ensure!(
                    allowed_cleanly(status, &answer),
                    "fill review: HTTP {status} {}",
                    String::from_utf8_lossy(&answer)
                );
            }
            anyhow::Ok(())
        });
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    while !tasks.is_empty() {
        tokio::select! {
            joined = tasks.join_next() => {
                if let Some(j) = joined {
                    j??;
                }
            }
            // The stub keeps a log of every request: keep it short.
            () = tokio::time::sleep(Duration::from_millis(500)) => sink.reset_counters(),
            () = tokio::time::sleep_until(deadline) => bail!("filling the cache took over 180 s"),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    // Let moka apply pending insertions before reading the gauge and the size.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let entries = server.metrics().await?.get("pullgate_cache_entries");
    let after_kib = server.rss_kib()?;
    Ok((start_kib, after_kib, entries, secs))
}

async fn memory(bench: &Bench, server_start_kib: u64) -> anyhow::Result<Vec<Row>> {
    let report = tokio::task::block_in_place(|| memory_child(bench))?;
    println!("  memory child: {report}");
    let kib = |k: &str| report[k].as_f64().unwrap_or_default();
    let mib = |v: f64| v / 1024.0;
    // The child fills the secret store first, then the verdict cache (`after_cache_kib`
    // holds both).
    let (base, secrets, total) = (
        kib("baseline_kib"),
        kib("after_secrets_kib"),
        kib("after_cache_kib"),
    );
    let (fill_start, fill_after, fill_entries, fill_secs) = server_fill(bench).await?;
    println!(
        "  real server: {:.1} MiB at start, {:.1} MiB with {} cached verdicts (filled in {fill_secs:.1} s)",
        mib(fill_start as f64),
        mib(fill_after as f64),
        thousands(fill_entries)
    );
    // The real server's size with its verdicts, plus the secret store as the child measured it.
    let projected = mib(fill_after as f64) + mib(secrets - base);
    let worst = mib(total).max(projected);
    let server_now = bench.server.rss_kib()? as f64;
    Ok(vec![
        Row::new(
            "4",
            format!(
                "**memory: {} cached verdicts + {} pull secrets**",
                thousands(report["entries"].as_f64().unwrap_or_default()),
                thousands(report["secrets"].as_f64().unwrap_or_default())
            ),
            format!(
                "**in-process (child): VmRSS {:.1} MiB** (engine baseline {:.1} MiB, +{:.1} MiB verdict cache, +{:.1} MiB secret store); \
                 **real `pullgate serve` with {} verdicts cached by real probes: {:.1} MiB** ({:.1} MiB at start), + the secret store ≈ **{projected:.1} MiB**; \
                 the benchmarked server: {:.1} MiB at start, {:.1} MiB after sections 1–3",
                mib(total),
                mib(base),
                mib(total - secrets),
                mib(secrets - base),
                thousands(fill_entries),
                mib(fill_after as f64),
                mib(fill_start as f64),
                mib(server_start_kib as f64),
                mib(server_now),
            ),
        )
        .target(
            format!("≤ {MEMORY_TARGET_MIB} MiB (both measures)"),
            worst <= MEMORY_TARGET_MIB,
        ),
    ])
}

/// Wait for `child` at most `limit`, polling every millisecond; killed past it.
fn wait_bounded(
    child: &mut std::process::Child,
    limit: Duration,
) -> anyhow::Result<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("still running after {limit:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

// ---------------------------------------------------------------------------------------
// 5. Side by side
// ---------------------------------------------------------------------------------------

/// Run `argv` to completion (at most `limit`), output to `log`; its wall-clock time.
/// The process whose command line has `arg` (a registry started with its config path).
fn process_with_arg(arg: &Path) -> Option<u32> {
    let wanted = arg.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            cmdline
                .split(|b| *b == 0)
                .any(|a| a == wanted)
                .then_some(pid)
        })
}

/// A process's CPU time so far (user + system; /proc ticks of 10 ms, Linux's USER_HZ).
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: state is the 3rd, utime the 14th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn timed(argv: &[String], log: &Path, limit: Duration) -> anyhow::Result<Duration> {
    let file = std::fs::File::create(log)?;
    let started = Instant::now();
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("starting {}", argv[0]))?;
    let status = wait_bounded(&mut child, limit)?;
    let elapsed = started.elapsed();
    ensure!(
        status.success(),
        "`{}` exited with {status}: {}",
        argv.join(" "),
        std::fs::read_to_string(log).unwrap_or_default()
    );
    Ok(elapsed)
}

async fn side_by_side(bench: &Bench) -> anyhow::Result<(Vec<Row>, Vec<String>)> {
    let repos: Vec<String> = (0..SIDE_IMAGES)
        .map(|i| format!("bench/side-{}-{i}", bench.nonce))
        .collect();
    push_all(&bench.plain_registry.push_target(PushAuth::None), &repos).await;
    let host = bench.plain_registry.host().to_string();
    let images: Vec<String> = repos.iter().map(|r| format!("{host}/{r}:v1")).collect();

    let mut check = vec![
        bench.options.bin.display().to_string(),
        "check".to_string(),
        "--insecure-registry".to_string(),
        host.clone(),
    ];
    for image in &images {
        check.push("--image".to_string());
        check.push(image.clone());
    }
    let skopeo = |image: &str| {
        vec![
            "skopeo".to_string(),
            "inspect".to_string(),
            "--tls-verify=false".to_string(),
            format!("docker://{image}"),
        ]
    };
    // The same check reading manifests only: what the blob requests cost, as the
    // registry serves them.
    let mut manifests_only = check.clone();
    manifests_only.insert(2, "--verify-blobs=false".to_string());
    let log = bench.work.path().join("side.log");
    // The registry's own CPU time across each check: what `check` waits for.
    let registry_pid = process_with_arg(&bench.plain_registry.dir().join("config.yml"));
    let registry_cpu = || registry_pid.and_then(cpu_time);
    let (check_times, manifest_times, skopeo_times, check_cpu, manifest_cpu) =
        tokio::task::block_in_place(|| {
            let mut check_times = Vec::new();
            let mut manifest_times = Vec::new();
            let mut skopeo_times = Vec::new();
            let mut check_cpu = Vec::new();
            let mut manifest_cpu = Vec::new();
            for _ in 0..SIDE_ROUNDS {
                let before = registry_cpu();
                check_times.push(timed(&check, &log, Duration::from_secs(60))?);
                let between = registry_cpu();
                manifest_times.push(timed(&manifests_only, &log, Duration::from_secs(60))?);
                let after = registry_cpu();
                if let (Some(a), Some(b), Some(c)) = (before, between, after) {
                    check_cpu.push(b.saturating_sub(a));
                    manifest_cpu.push(c.saturating_sub(b));
                }
                let started = Instant::now();
                for image in &images {
                    timed(&skopeo(image), &log, Duration::from_secs(60))?;
                }
                skopeo_times.push(started.elapsed());
            }
            anyhow::Ok((
                check_times,
                manifest_times,
                skopeo_times,
                check_cpu,
                manifest_cpu,
            ))
        })?;
    let (c, m, s) = (
        median(&check_times),
        median(&manifest_times),
        median(&skopeo_times),
    );
    let ratio = s.as_secs_f64() / c.as_secs_f64();
    let manifest_ratio = s.as_secs_f64() / m.as_secs_f64();
    println!(
        "  pullgate check: {:?}; with --verify-blobs=false: {:?}; skopeo ×{SIDE_IMAGES}: {:?}",
        check_times.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
        manifest_times.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
        skopeo_times.iter().map(|d| ms(*d)).collect::<Vec<_>>()
    );
    let rows = vec![
        Row::new(
            "5",
            format!("`pullgate check`, {SIDE_IMAGES} images, one invocation"),
            format!(
                "median {} of {SIDE_ROUNDS} runs ({:.1} ms per image)",
                ms(c),
                c.as_secs_f64() * 1000.0 / SIDE_IMAGES as f64
            ),
        ),
        Row::new(
            "5",
            format!("`skopeo inspect`, {SIDE_IMAGES} images, one after another"),
            format!(
                "median {} of {SIDE_ROUNDS} runs ({:.0} ms per image)",
                ms(s),
                s.as_secs_f64() * 1000.0 / SIDE_IMAGES as f64
            ),
        ),
        Row::new(
            "5",
            format!("`pullgate check --verify-blobs=false`, {SIDE_IMAGES} images, one invocation"),
            format!(
                "median {} of {SIDE_ROUNDS} runs ({:.1} ms per image): {:.1}× faster than skopeo; \
                 1 registry request per image instead of 3, so the rest of the default's time is \
                 the registry serving the config and layer requests",
                ms(m),
                m.as_secs_f64() * 1000.0 / SIDE_IMAGES as f64,
                manifest_ratio
            ),
        ),
        Row::new(
            "5",
            "registry CPU per `check` run (`docker-registry`'s utime + stime, /proc)",
            if check_cpu.is_empty() {
                "not measured (registry process not found)".to_string()
            } else {
                let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
                let (cpu, cpu_m) = (median(&check_cpu), median(&manifest_cpu));
                format!(
                    "default: median {} for {} requests ({:.2} ms each), so at least {} of wall-clock \
                     on {cores} cores whatever the client does: skopeo's loop ÷ that = **{:.1}× at best**; \
                     `--verify-blobs=false`: {} for {SIDE_IMAGES} requests",
                    ms(cpu),
                    3 * SIDE_IMAGES,
                    cpu.as_secs_f64() * 1000.0 / (3 * SIDE_IMAGES) as f64,
                    ms(cpu.div_f64(cores)),
                    s.as_secs_f64() / (cpu.as_secs_f64() / cores),
                    ms(cpu_m),
                )
            },
        ),
        Row::new(
            "5",
            "**side by side: check vs. skopeo**",
            format!("**check {ratio:.1}× faster** (default flags: `--verify-blobs` on)"),
        )
        .target(format!("≥ {SIDE_TARGET}×"), ratio >= SIDE_TARGET),
    ];
    let commands = vec![
        format!(
            "{} check --insecure-registry {host} --image {} … ({SIDE_IMAGES} × --image)",
            bench.options.bin.display(),
            images[0]
        ),
        format!(
            "for each image: skopeo inspect --tls-verify=false docker://{}",
            images[0]
        ),
    ];
    Ok((rows, commands))
}

// ---------------------------------------------------------------------------------------
// BENCHMARKS.md
// ---------------------------------------------------------------------------------------

/// The soak's committed summary (written by `make soak`), between its markers.
fn soak_section() -> String {
    let text = std::fs::read_to_string(Path::new(MANIFEST_DIR).join(soak::RESULT_FILE))
        .unwrap_or_else(|_| "## Soak\n\nNot run yet: `make soak`.\n".to_string());
    format!("{}\n{text}{}\n", soak::BEGIN, soak::END)
}

/// The "Profiles" section: what `make profile` last wrote (benches/profiles/), the
/// baseline first. Instruction counts do not depend on the machine's load, so they are
/// kept from the run that made them rather than measured here.
fn profiles() -> String {
    let dir = Path::new(MANIFEST_DIR).join("benches/profiles");
    let mut out = String::from(
        "## Profiles\n\n\
         `make profile` (callgrind; `examples/warm_review.rs`): the warm review of section 1 \
         answered in-process with its verdict cached, instructions (Ir) per review. Written \
         to `benches/profiles/` by the run named in each heading and copied here.\n\n",
    );
    for name in ["warm-review-before.md", "warm-review.md"] {
        match std::fs::read_to_string(dir.join(name)) {
            Ok(text) => {
                out.push_str(text.trim_end());
                out.push_str("\n\n");
            }
            Err(_) => out.push_str(&format!(
                "(no `benches/profiles/{name}`: run `make profile`)\n\n"
            )),
        }
    }
    out
}

fn markdown(
    bench: &Bench,
    machine: &Machine,
    table: &str,
    commands: &[String],
    elapsed: Duration,
) -> String {
    let serve = bench
        .server
        .argv
        .iter()
        .map(|a| {
            if a.contains(bench.work.path().to_str().unwrap_or("\u{0}"))
                || a.contains(bench.pki.dir().to_str().unwrap_or("\u{0}"))
            {
                format!(
                    "$TMP/{}",
                    Path::new(a)
                        .file_name()
                        .map_or(a.as_str(), |f| f.to_str().unwrap_or(a))
                )
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    // Paths relative to the repository, as `make bench` is run from there.
    let root = format!("{MANIFEST_DIR}/");
    let serve = serve.replace(&root, "");
    let mut extra = String::new();
    for c in commands {
        extra.push_str(&format!("    {}\n", c.replace(&root, "")));
    }
    format!(
        "# pullgate benchmarks

Written by `make bench` (`benches/webhook.rs`) from the run below; do not edit by hand.

## Machine

{machine}
The load generator, the registries, the proxies and the token issuer run **on the same
{nproc} cores** as the server under test: every throughput figure below is what is left for
pullgate after its own load generator, and client latencies include the client's scheduling.

## Commands

`make bench` runs:

    cargo build --release --locked
    mkdir -p target/bench && cp target/release/pullgate target/bench/pullgate
    CARGO_PROFILE_BENCH_LTO=false CARGO_PROFILE_BENCH_CODEGEN_UNITS=16 \\
        cargo bench --locked --bench webhook -- --pullgate-bin target/bench/pullgate

The server under test is the `cargo build --release` binary (thin LTO), copied aside because
`cargo bench` rebuilds target/release/pullgate with the dev-dependencies' features; only the
load generator (and the memory child) is built without LTO. The bench starts it as:

    {serve}

Sections 5 and 6:

{extra}
Whole measurement: {secs:.0} s (excluding the builds).

## Results

{table}
{profiles}
## How each row is measured

1. **Warm path.** The captured `kubectl run` review
   (`{POD_FIXTURE}`) with its image on a local HTTPS `docker-registry`
   (`--registry-ca`), pushed and reviewed once so that the verdict is cached. Each step opens
   N keep-alive HTTPS connections (HTTP/1.1, or HTTP/2 with one stream per connection, or
   one HTTP/2 connection with 64 concurrent streams), runs {warmup:.0} s of warm-up, then
   {step:.0} s measured: closed loop, each client sends its next review when the previous
   answer has arrived. Client latency is from the request to the last byte of the answer;
   every answer is checked to be `allowed: true` without warnings. Server latency is
   `pullgate_review_duration_seconds` from `GET /metrics`, diffed across the step; its
   buckets are 5 µs wide up to 30 µs, then 40, 50, 60, 75, 100, 150 µs and 25 µs × 2ⁿ from
   200 µs, so p50/p99 are interpolated inside a bucket (the bucket's upper
   bound is given) and the mean is exact (sum / count). It covers decoding, policy, cache and
   the decision, not TLS, HTTP or writing the answer. `pullgate_registry_requests_total`
   is checked to stay unchanged during a step (every verdict came from the cache). The
   summary row is the highest throughput among steps with client p99 ≤ {p99_bound} and no failed
   review.
2. **Cold fan-out.** Pods with 1, 5 and 20 containers, every image a distinct repository
   pushed just before (never seen by the server), on a plain-HTTP `docker-registry` behind the
   harness's `FaultProxy` with `Fault::Delay({fan_delay})` on every request
   (`--insecure-registry` for the proxy). One review at a time on one keep-alive connection,
   sizes interleaved, {fan_samples} samples per size; median reported. The floor is two proxied
   round trips per image, as the images are new: the manifest `GET`, then, with
   `--verify-blobs` (the default), the config read and the layer `HEAD` together (3 requests
   per image): 2 × {fan_delay}.
{round_trips}3. **Coalescing.** A token-auth `docker-registry` (the harness's `TokenIssuer`, whose realm the
   registry names directly, so token requests are counted there) behind a `FaultProxy` adding
   {coalesce_delay} per request, so the one probe is still in flight while all reviews arrive.
   The server has no pull secret (`--no-cluster`): the repository is **anonymously pullable
   on the token registry** (`TokenIssuer::set_anonymous_pull`), so the probe still asks for an
   (anonymous) token. {reviews} HTTP/1.1 connections are opened first, then every review is
   released at once (a barrier); manifest requests (`HEAD`/`GET` of the manifest) are counted
   at the proxy, token requests at the issuer, and the server's own count of registry requests
   from `/metrics`. The registry is new to the server, so its one probe is containerd's first
   contact: the manifest request without a token (answered 401 with the challenge), the token,
   the manifest request again; then the config and layer requests of `--verify-blobs`.
4. **Memory.** Two measures; the target applies to both.
   *In-process:* `--no-cluster` has no secret store, so the bench re-executes itself as a
   child process that builds the engine exactly as `pullgate serve --no-cluster` does
   (`EngineArgs::checker_with_metrics`: registry client with the system roots, metrics,
   default cache bounds), reads VmRSS (`/proc/self/status`), feeds `ClusterWriters` {secrets}
   `kubernetes.io/dockerconfigjson` Secrets as a watch delivers them (name, namespace, uid,
   resourceVersion, two labels, a one-registry docker config with username, password and
   auth), which decode each one and keep only its parsed docker config as the watch's
   store does, reads VmRSS, then fills the `VerdictCache`
   through `get_or_probe` with {verdicts} distinct `CacheKey`s (40 registry hosts, 500
   teams, 3 in 4 keyed by a credential fingerprint; 9 in 10 `pullable` with a digest, 1 in 10
   `not-found` with a suggestion) and reads VmRSS again. Secrets first: the verdict cache's
   growth frees smaller vectors, whose holes would otherwise take the secrets unseen.
   *Real server:* a second, fresh `pullgate serve` reviews {fill_pods} Pods of {fill_pod} distinct
   images each, every image probed for real (a `GET` of its manifest, the tag being new to
   the server, then with `--verify-blobs` at its default (on) a `GET` of its config and a
   `HEAD` of its layer; no `GET /v2/` ping) against an in-process stub registry (the
   harness's `AuthRecorder` answering every manifest path with one linux/amd64 OCI image
   manifest and every blob path with its config), until
   its `/metrics` gauge `pullgate_cache_entries` shows ~{verdicts} verdicts; its VmRSS then,
   plus the secret store's growth measured in the child, is the projected size.
5. **Side by side.** {side} distinct repositories on a plain-HTTP `docker-registry`:
   one `pullgate check` with {side} `--image` flags (`--insecure-registry`), against
   `skopeo inspect --tls-verify=false docker://…` run once per image, one after another, as a
   shell loop would. Wall-clock of the processes, median of {rounds} rounds. The same check
   with `--verify-blobs=false` is timed in each round too: skopeo reads the manifest and the
   config (2 requests per image, plus its own start-up each time); `check` reads the
   manifest, then the config and a `HEAD` of each layer (3 requests per image here), all
   images at once under the per-registry limit, so its time is the registry's time to serve
   them. The registry process's CPU time (`/proc/<pid>/stat` utime + stime) is read around
   each `check`: divided by the cores, it is the least wall-clock any client could take.
6. **Audit at scale.** `pullgate audit` (release binary, default flags: 8 workloads at once,
   `--verify-blobs`) of {workloads} workloads (Deployments, StatefulSets, DaemonSets, CronJobs
   and bare Pods, ~3 KB of JSON each with last-applied annotation and managed fields) in
   {namespaces} namespaces, served by an in-bench Kubernetes API that pages as kube-apiserver
   does (`limit=500`, an opaque `continue` token, `metadata.remainingItemCount`). Their
   {images} unique images: {public} on an anonymous `docker-registry`, the rest on an
   htpasswd one whose pull secret 9 namespaces in 10 hold (two users, so one image may be
   two (image, credentials) pairs; the tenth namespace pulls anonymously: `unauthorized`);
   one tag in 50 is never pushed (`not-found`). Every tag is its own manifest (its own
   digest) over its repository's blobs. Both registries sit behind a counting `FaultProxy`;
   the audit's summary line is checked against the expected verdict counts. Peak RSS is
   wait4's `ru_maxrss` of the process (GNU time `%M`; without it `VmHWM` polled).
{scale_method}
{scale_guide}

{soak}",
        machine = machine.markdown(),
        nproc = machine.nproc,
        secs = elapsed.as_secs_f64(),
        warmup = bench.options.warmup.as_secs_f64(),
        p99_bound = ms(P99_BOUND),
        profiles = profiles(),
        step = bench.options.step.as_secs_f64(),
        fan_delay = ms(FAN_DELAY),
        fan_samples = FAN_SAMPLES,
        coalesce_delay = ms(COALESCE_DELAY),
        reviews = COALESCE_REVIEWS,
        verdicts = thousands(memory::VERDICTS as f64),
        fill_pod = FILL_POD,
        fill_pods = thousands((memory::VERDICTS / FILL_POD) as f64),
        secrets = thousands(memory::SECRETS as f64),
        side = SIDE_IMAGES,
        rounds = SIDE_ROUNDS,
        round_trips = round_trips::method(),
        scale_method = scale::method(),
        scale_guide = scale::guide(),
        workloads = thousands(audit_scale::WORKLOADS as f64),
        namespaces = thousands(audit_scale::NAMESPACES as f64),
        images = thousands(audit_scale::IMAGES as f64),
        public = thousands(audit_scale::PUBLIC as f64),
        soak = soak_section(),
    )
}
