//! `make soak` (`cargo bench --bench webhook -- --soak --seconds N`): the release
//! `pullgate serve` under a steady open-loop load of mixed Pod reviews for N seconds,
//! while one registry flaps every [`PHASE`] through a [`FaultProxy`]. Not part of
//! `make bench` nor `make test`.
//!
//! Every review is scheduled at a fixed rate ([`RATE`]/s) whether or not earlier ones have
//! been answered (open loop), over HTTP/2 connections, and timed from its scheduled
//! instant. The summary is written to `benches/results/soak.md` (committed), which
//! `make bench` includes in BENCHMARKS.md, and is spliced into BENCHMARKS.md at once
//! between [`BEGIN`] and [`END`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use axum::body::Bytes;
use tokio::time::Instant;

use crate::audit_scale::put_manifests;
use crate::client::{Conn, Protocol, Tls, contains};
use crate::serve::{Server, rss_kib};
use crate::support::{
    self, Fault, FaultProxy, PushAuth, Registry, RegistryAuth, RegistryOpts, TestPki,
    push_oci_manifest,
};

/// Reviews per second, scheduled.
pub const RATE: u64 = 2000;
/// How long the flapping registry stays in each state.
pub const PHASE: Duration = Duration::from_secs(30);
/// The webhook's `timeoutSeconds` (manifests/base/webhook.yaml): every review must be
/// answered within it, as the apiserver would otherwise fail the request.
pub const DEADLINE: Duration = Duration::from_secs(10);
const VALIDATE: &str = "/validate?timeout=10s";
/// Server flags that differ from the defaults: tags live 30 s so that the cold pool
/// (pushed tags, walked round robin) is probed again on each pass.
const TAG_TTL: Duration = Duration::from_secs(30);
/// Server defaults the recovery bound depends on (`--cache-indeterminate-ttl`,
/// `--request-timeout`).
const INDETERMINATE_TTL: Duration = Duration::from_secs(5);
const PROBE_TIMEOUT: Duration = Duration::from_secs(8);
const RETRY_AFTER: Duration = Duration::from_secs(10);
/// HTTP/2 connections the load is spread over.
const CONNECTIONS: usize = 32;
/// Images: warm set, cold pool (tags of a few repositories), flapping set, private set.
const WARM: usize = 20;
const POOL_REPOS: usize = 8;
const POOL_TAGS: usize = 300;
const FLAPPY: usize = 10;
const PRIVATE: usize = 5;
/// Server samples (RSS, open fds) this often.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Samples before this are the warm-up (the caches fill): "start" is the first after it.
const STEADY_AFTER: Duration = Duration::from_secs(60);
/// One turn of every flap (up, down, up, 429, up, slow). The first turn reaches the
/// server's high-water mark (reviews waiting on the hung registry hold their buffers, and
/// the allocator keeps the pages), so a run of two turns or more measures "flat" from the
/// end of the first: growth after every fault kind has been seen once is what a leak is.
const FLAP_CYCLE: Duration = Duration::from_secs(6 * PHASE.as_secs());
pub const BEGIN: &str = "<!-- soak:begin (written by `make soak`) -->";
pub const END: &str = "<!-- soak:end -->";
/// The committed summary, relative to the repository.
pub const RESULT_FILE: &str = "benches/results/soak.md";

/// What a review is about, and so what its answer must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    /// Cached pullable image: allowed.
    Warm,
    /// A pushed tag not reviewed for longer than the tag TTL: probed, allowed.
    ColdPullable,
    /// A tag never pushed, new each time: probed, denied.
    NewTagMissing,
    /// A repository that does not exist, new each time: probed, denied.
    NewRepoMissing,
    /// An image of the htpasswd registry, reviewed anonymously: denied.
    Unauthorized,
    /// A new tag there: probed, denied.
    NewUnauthorized,
    /// An image of the flapping registry: allowed when it is up, allowed with a warning
    /// (indeterminate, `--on-registry-error allow`) when it is not.
    Flappy,
}

impl Class {
    /// The class of review `n` (per 100: 84 warm, 2 cold, 2 + 1 missing, 2 + 1
    /// unauthorized, 8 flappy).
    fn of(n: u64) -> Class {
        match n % 100 {
            0..=83 => Class::Warm,
            84 | 85 => Class::ColdPullable,
            86 | 87 => Class::NewTagMissing,
            88 => Class::NewRepoMissing,
            89 | 90 => Class::Unauthorized,
            91 => Class::NewUnauthorized,
            _ => Class::Flappy,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Class::Warm => "warm hit",
            Class::ColdPullable => "cold pullable (expired tag)",
            Class::NewTagMissing => "new tag, not found",
            Class::NewRepoMissing => "new repository, not found",
            Class::Unauthorized => "unauthorized",
            Class::NewUnauthorized => "new tag, unauthorized",
            Class::Flappy => "flapping registry",
        }
    }
}

/// The flapping registry's state in phase `k`.
fn fault_of(phase: usize) -> (&'static str, Fault) {
    match phase % 6 {
        1 => ("down (TCP reset)", Fault::Reset),
        3 => (
            "429, Retry-After 10",
            Fault::too_many_requests(&RETRY_AFTER.as_secs().to_string()),
        ),
        5 => ("slow (no answer)", Fault::Hang),
        _ => ("up", Fault::Forward),
    }
}

/// How one answer was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Allowed,
    Warned,
    Denied,
    /// Not a 200 with an AdmissionReview, or no answer at all.
    Failed {
        status: u16,
    },
}

struct Record {
    /// Since the start of the load.
    sent: Duration,
    class: Class,
    answer: Answer,
    latency: Duration,
}

/// The review bodies: one template per image with a placeholder replaced per request.
struct Bodies {
    template: String,
    hosts: Hosts,
}

struct Hosts {
    stable: String,
    private: String,
    flappy: String,
}

const PLACEHOLDER: &str = "PULLGATE-SOAK-IMAGE";

impl Bodies {
    fn image(&self, n: u64, class: Class) -> String {
        let h = &self.hosts;
        match class {
            Class::Warm => format!("{}/soak/warm-{}:v1", h.stable, n % WARM as u64),
            Class::ColdPullable => {
                let k = (n / 100) as usize % (POOL_REPOS * POOL_TAGS);
                format!(
                    "{}/soak/pool-{}:t{}",
                    h.stable,
                    k % POOL_REPOS,
                    k / POOL_REPOS
                )
            }
            Class::NewTagMissing => format!("{}/soak/warm-0:missing-{n}", h.stable),
            Class::NewRepoMissing => format!("{}/soak/gone-{n}:v1", h.stable),
            Class::Unauthorized => {
                format!("{}/soak/private-{}:v1", h.private, n % PRIVATE as u64)
            }
            Class::NewUnauthorized => format!("{}/soak/private-0:t{n}", h.private),
            Class::Flappy => format!("{}/soak/flap-{}:v1", h.flappy, n % FLAPPY as u64),
        }
    }

    fn body(&self, n: u64, class: Class) -> Bytes {
        Bytes::from(self.template.replace(PLACEHOLDER, &self.image(n, class)))
    }
}

fn read(status: u16, body: &[u8]) -> Answer {
    if status != 200 {
        return Answer::Failed { status };
    }
    if contains(body, b"\"allowed\":true") {
        if contains(body, b"\"warnings\"") {
            Answer::Warned
        } else {
            Answer::Allowed
        }
    } else if contains(body, b"\"allowed\":false") {
        Answer::Denied
    } else {
        Answer::Failed { status }
    }
}

/// What `class` must be answered.
fn expected(class: Class) -> &'static [Answer] {
    match class {
        Class::Warm | Class::ColdPullable => &[Answer::Allowed],
        Class::NewTagMissing
        | Class::NewRepoMissing
        | Class::Unauthorized
        | Class::NewUnauthorized => &[Answer::Denied],
        // Never denied: a pullable verdict cached before a fault still answers during it,
        // and how soon warnings stop after one is judged separately (recovery).
        Class::Flappy => &[Answer::Allowed, Answer::Warned],
    }
}

/// One reading of the server process.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    rss_kib: u64,
    fds: usize,
}

fn sample(pid: u32, at: Duration) -> anyhow::Result<Sample> {
    Ok(Sample {
        at,
        rss_kib: rss_kib(&format!("/proc/{pid}/status"))?,
        fds: std::fs::read_dir(format!("/proc/{pid}/fd"))?.count(),
    })
}

/// Run the soak for `seconds`; write the summary when `write`. `Ok(false)` when a check
/// failed.
pub async fn run(bin: &Path, seconds: u64, write: bool) -> anyhow::Result<bool> {
    let manifest_dir = Path::new(crate::MANIFEST_DIR);
    let work = tempfile::Builder::new()
        .prefix("pullgate-soak-")
        .tempdir()?;
    let pki = TestPki::new();
    let stable = Registry::start(RegistryOpts::plain()).await;
    let private = Registry::start(
        RegistryOpts::plain().with_auth(RegistryAuth::htpasswd(&[("ops", "ops-pw")])),
    )
    .await;
    let flappy = Registry::start(RegistryOpts::plain()).await;
    let proxy = FaultProxy::for_registry(&flappy).await;

    let pushed = std::time::Instant::now();
    let stable_target = stable.push_target(PushAuth::None);
    for i in 0..WARM {
        push_oci_manifest(&stable_target, &format!("soak/warm-{i}"), "v1").await;
    }
    let mut jobs = Vec::new();
    for r in 0..POOL_REPOS {
        let repo = format!("soak/pool-{r}");
        push_oci_manifest(&stable_target, &repo, "t0").await;
        let body = support::fetch_manifest(&stable_target, &repo, "t0")
            .await
            .body;
        let body = String::from_utf8(body.to_vec())?;
        jobs.extend((1..POOL_TAGS).map(|t| (repo.clone(), format!("t{t}"), body.clone())));
    }
    put_manifests(&stable.base_url(), None, jobs, 32).await;
    let private_target = private.push_target(PushAuth::basic("ops", "ops-pw"));
    for i in 0..PRIVATE {
        push_oci_manifest(&private_target, &format!("soak/private-{i}"), "v1").await;
    }
    let flappy_target = flappy.push_target(PushAuth::None);
    for i in 0..FLAPPY {
        push_oci_manifest(&flappy_target, &format!("soak/flap-{i}"), "v1").await;
    }
    println!(
        "soak: pushed {} images in {:.1} s",
        WARM + POOL_REPOS * POOL_TAGS + PRIVATE + FLAPPY,
        pushed.elapsed().as_secs_f64()
    );

    let hosts = Hosts {
        stable: stable.host().to_string(),
        private: private.host().to_string(),
        flappy: proxy.host(),
    };
    let extra: Vec<String> = [
        "--insecure-registry",
        &hosts.stable,
        "--insecure-registry",
        &hosts.private,
        "--insecure-registry",
        &hosts.flappy,
        "--cache-tag-ttl",
        &TAG_TTL.as_secs().to_string(),
    ]
    .map(String::from)
    .to_vec();
    let server =
        Server::start(bin, pki.cert_pem(), pki.key_pem(), &extra, &[], work.path()).await?;
    let pid = server.pid();
    let template = String::from_utf8(crate::pod_review(&[PLACEHOLDER.to_string()])?.to_vec())?;
    let bodies = Arc::new(Bodies { template, hosts });
    let tls = Tls::new(pki.ca_pem(), Protocol::H2)?;
    let mut conns = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        conns.push(Conn::connect(server.listen, &tls).await?);
    }
    println!(
        "soak: {seconds} s at {RATE} reviews/s over {CONNECTIONS} HTTP/2 connections; `{}` (pid {pid}); the flapping registry changes state every {} s",
        server.argv.join(" "),
        PHASE.as_secs()
    );

    let records: Arc<Mutex<Vec<Record>>> = Arc::new(Mutex::new(Vec::new()));
    let mut samples = vec![sample(pid, Duration::ZERO)?];
    let duration = Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut phase = usize::MAX;
    let mut next_sample = started + SAMPLE_EVERY;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        let now = Instant::now();
        let elapsed = now - started;
        if elapsed >= duration {
            break;
        }
        let k = (elapsed.as_nanos() / PHASE.as_nanos()) as usize;
        if k != phase {
            phase = k;
            let (label, fault) = fault_of(k);
            proxy.set_fault(fault);
            println!("  {:>4} s  flapping registry: {label}", elapsed.as_secs());
        }
        if now >= next_sample {
            samples.push(sample(pid, elapsed)?);
            next_sample += SAMPLE_EVERY;
        }
        // Every review whose scheduled instant has come, each on its own task.
        let due = (elapsed.as_nanos() * u128::from(RATE) / 1_000_000_000) as u64;
        while n <= due {
            let class = Class::of(n);
            let body = bodies.body(n, class);
            let scheduled = started + Duration::from_nanos(n * 1_000_000_000 / RATE);
            let mut conn = conns[n as usize % CONNECTIONS]
                .share()
                .context("HTTP/2 connections are shared")?;
            let records = records.clone();
            tasks.spawn(async move {
                let answer = match conn.post(VALIDATE, body).await {
                    Ok((status, answer)) => read(status, &answer),
                    Err(_) => Answer::Failed { status: 0 },
                };
                let latency = scheduled.elapsed();
                records.lock().expect("records").push(Record {
                    sent: scheduled - started,
                    class,
                    answer,
                    latency,
                });
            });
            n += 1;
        }
        // Reap finished tasks without waiting.
        while tasks.try_join_next().is_some() {}
    }
    let sent = n;
    let stopped = started.elapsed();
    // In-flight reviews end within the client's own timeout.
    let drained = tokio::time::timeout(crate::client::REQUEST_TIMEOUT * 2, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    proxy.clear_faults();
    samples.push(sample(pid, started.elapsed())?);
    drop(conns);
    let log_tail = server.log_tail();
    drop(server);
    ensure!(drained.is_ok(), "reviews still in flight after the drain");

    let records = std::mem::take(&mut *records.lock().expect("records"));
    let summary = Summary::new(records, samples, sent, stopped);
    let text = summary.markdown(seconds);
    println!("\n{text}");
    if !summary.passed() {
        eprintln!("soak: checks failed; server log tail:\n{log_tail}");
    }
    if write {
        let path = manifest_dir.join(RESULT_FILE);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
        splice(&manifest_dir.join("BENCHMARKS.md"), &text)?;
        println!("wrote {} and its section of BENCHMARKS.md", path.display());
    }
    Ok(summary.passed())
}

/// Replace the soak section of BENCHMARKS.md (between [`BEGIN`] and [`END`]), or append it.
fn splice(path: &Path, text: &str) -> anyhow::Result<()> {
    let current = std::fs::read_to_string(path).unwrap_or_default();
    let section = format!("{BEGIN}\n{text}{END}\n");
    let updated = match (current.find(BEGIN), current.find(END)) {
        (Some(b), Some(e)) if e > b => {
            format!(
                "{}{section}{}",
                &current[..b],
                &current[e + END.len()..].trim_start_matches('\n')
            )
        }
        _ => format!("{}\n{section}", current.trim_end()),
    };
    std::fs::write(path, updated)?;
    Ok(())
}

/// Per phase: the flapping registry's state and what was answered.
#[derive(Default)]
struct PhaseCounts {
    reviews: usize,
    allowed: usize,
    warned: usize,
    denied: usize,
    failed: usize,
    /// Answers other than the class expects (recovery of the flapping registry aside).
    unexpected: usize,
    max_latency: Duration,
    /// After a fault: when the flapping registry's images were last answered with a
    /// warning, from the phase's start.
    recovered_after: Option<Duration>,
}

struct Summary {
    sent: u64,
    answered: usize,
    stopped: Duration,
    late: usize,
    failed_by_status: BTreeMap<u16, usize>,
    latencies: Vec<Duration>,
    phases: Vec<(String, PhaseCounts)>,
    by_class: BTreeMap<Class, (usize, usize)>,
    samples: Vec<Sample>,
}

impl Summary {
    fn new(records: Vec<Record>, samples: Vec<Sample>, sent: u64, stopped: Duration) -> Self {
        // Phases reviews were scheduled in (the last may be partial).
        let last = records.iter().map(|r| r.sent).max().unwrap_or_default();
        let phase_count = (last.as_nanos() / PHASE.as_nanos()) as usize + 1;
        let mut phases: Vec<(String, PhaseCounts)> = (0..phase_count)
            .map(|k| (fault_of(k).0.to_string(), PhaseCounts::default()))
            .collect();
        let mut s = Summary {
            sent,
            answered: 0,
            stopped,
            late: 0,
            failed_by_status: BTreeMap::new(),
            latencies: Vec::with_capacity(records.len()),
            phases: Vec::new(),
            by_class: BTreeMap::new(),
            samples,
        };
        for r in &records {
            let k = ((r.sent.as_nanos() / PHASE.as_nanos()) as usize).min(phase_count - 1);
            let up = fault_of(k).0 == "up";
            let after_fault = k > 0 && fault_of(k - 1).0 != "up";
            let p = &mut phases[k].1;
            p.reviews += 1;
            p.max_latency = p.max_latency.max(r.latency);
            s.latencies.push(r.latency);
            if r.latency > DEADLINE {
                s.late += 1;
            }
            match r.answer {
                Answer::Allowed => p.allowed += 1,
                Answer::Warned => p.warned += 1,
                Answer::Denied => p.denied += 1,
                Answer::Failed { status } => {
                    p.failed += 1;
                    *s.failed_by_status.entry(status).or_default() += 1;
                }
            }
            if !matches!(r.answer, Answer::Failed { .. }) {
                s.answered += 1;
            }
            let entry = s.by_class.entry(r.class).or_default();
            entry.0 += 1;
            let recovering = r.class == Class::Flappy && up && after_fault;
            if recovering && r.answer == Answer::Warned {
                let since = r.sent - PHASE * k as u32;
                p.recovered_after = Some(p.recovered_after.unwrap_or_default().max(since));
            }
            if !expected(r.class).contains(&r.answer) {
                p.unexpected += 1;
                entry.1 += 1;
            }
        }
        s.latencies.sort_unstable();
        s.phases = phases;
        s
    }

    /// The longest a flapping registry's images may stay warned once it is back: a probe
    /// begun just before runs until its timeout, and its verdict lives one TTL (a 429's
    /// Retry-After is its floor).
    fn recovery_bound(previous: &str) -> Duration {
        let ttl = if previous.starts_with("429") {
            RETRY_AFTER.max(INDETERMINATE_TTL)
        } else {
            INDETERMINATE_TTL
        };
        ttl + PROBE_TIMEOUT
    }

    fn steady(&self) -> Vec<Sample> {
        let run = self.samples.last().map_or(Duration::ZERO, |s| s.at);
        let after = if run >= 2 * FLAP_CYCLE {
            FLAP_CYCLE
        } else {
            STEADY_AFTER
        };
        self.samples
            .iter()
            .filter(|s| s.at >= after)
            .copied()
            .collect()
    }

    /// RSS and fds flat: at the end no more than 25% (RSS) / 32 (fds) above the first
    /// steady sample.
    fn flat(&self) -> (bool, bool) {
        let steady = self.steady();
        match (steady.first(), steady.last()) {
            (Some(a), Some(b)) => (
                b.rss_kib as f64 <= a.rss_kib as f64 * 1.25,
                b.fds <= a.fds + 32,
            ),
            _ => (true, true),
        }
    }

    fn recoveries_ok(&self) -> bool {
        self.phases.iter().enumerate().skip(1).all(|(k, (_, p))| {
            p.recovered_after
                .is_none_or(|d| d <= Self::recovery_bound(&self.phases[k - 1].0))
        })
    }

    fn passed(&self) -> bool {
        let (rss, fds) = self.flat();
        self.late == 0
            && self.failed_by_status.is_empty()
            && self.phases.iter().all(|(_, p)| p.unexpected == 0)
            && rss
            && fds
            && self.recoveries_ok()
    }

    fn markdown(&self, seconds: u64) -> String {
        let pct = |q: f64| {
            let l = &self.latencies;
            if l.is_empty() {
                return Duration::ZERO;
            }
            l[((q * l.len() as f64).ceil() as usize).clamp(1, l.len()) - 1]
        };
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
        let mib = |k: u64| format!("{:.1} MiB", k as f64 / 1024.0);
        let (rss_flat, fds_flat) = self.flat();
        let steady = self.steady();
        let all = &self.samples;
        let first = steady.first().or(all.first());
        let last = all.last();
        let max_rss = all.iter().map(|s| s.rss_kib).max().unwrap_or_default();
        let max_fds = all.iter().map(|s| s.fds).max().unwrap_or_default();
        let mut t = String::new();
        let _ = writeln!(
            t,
            "## Soak\n\nWritten by `make soak` (`SOAK_SECONDS={seconds}`; `benches/webhook_bench/soak.rs`), kept in \
             `{RESULT_FILE}` and included here by `make bench`. Result: **{}**.\n",
            if self.passed() { "passed" } else { "FAILED" }
        );
        let _ = writeln!(
            t,
            "The release `pullgate serve --no-cluster` (`--cache-tag-ttl {}`, other flags default: \
             `--on-registry-error allow`, `--request-timeout {}`, `--cache-indeterminate-ttl {}`) under an **open-loop {RATE} reviews/s** \
             (each review scheduled at a fixed instant whatever the answers, timed from that instant) over {CONNECTIONS} HTTP/2 \
             connections, for {:.0} s. Mix per 100 reviews: 84 warm hits, 2 cold pullable (a pool of {} pushed tags walked round \
             robin, each back after its {} s tag TTL expired), 2 new missing tags and 1 new missing repository (`not-found`), \
             2 `unauthorized` (anonymous on an htpasswd registry) and 1 new tag there, 8 on the **flapping registry**: a \
             `docker-registry` behind the harness's `FaultProxy`, whose state changes every {} s: up → down (TCP reset) → up → \
             429 with `Retry-After: {}` → up → slow (no answer: beyond the probe timeout) → …\n",
            TAG_TTL.as_secs(),
            PROBE_TIMEOUT.as_secs(),
            INDETERMINATE_TTL.as_secs(),
            self.stopped.as_secs_f64(),
            POOL_REPOS * POOL_TAGS,
            TAG_TTL.as_secs(),
            PHASE.as_secs(),
            RETRY_AFTER.as_secs(),
        );
        let _ = writeln!(
            t,
            "| check | result |\n|---|---|\n\
             | reviews | {} scheduled ({:.0}/s), {} answered with an AdmissionReview |\n\
             | answered within the webhook's {} s `timeoutSeconds` | {} late; latency from the scheduled instant p50 {}, p99 {}, p99.9 {}, max {} |\n\
             | non-200 or no answer | {} |\n\
             | answers other than expected | {} |\n\
             | server RSS (start of steady state: after one turn of every flap, or 60 s in runs shorter than two turns / end / max) | {} / {} / {} ({}) |\n\
             | server open fds (start / end / max) | {} / {} / {} ({}) |\n\
             | flapping registry back to allowed | {} |\n",
            self.sent,
            self.sent as f64 / self.stopped.as_secs_f64().max(1e-9),
            self.answered,
            DEADLINE.as_secs(),
            self.late,
            ms(pct(0.5)),
            ms(pct(0.99)),
            ms(pct(0.999)),
            ms(pct(1.0)),
            if self.failed_by_status.is_empty() {
                "none".to_string()
            } else {
                self.failed_by_status
                    .iter()
                    .map(|(s, n)| {
                        if *s == 0 {
                            format!("{n} without an answer")
                        } else {
                            format!("{n} × HTTP {s}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            {
                let wrong: Vec<String> = self
                    .by_class
                    .iter()
                    .filter(|(_, (_, w))| *w > 0)
                    .map(|(c, (n, w))| format!("{w} of {n} {}", c.name()))
                    .collect();
                if wrong.is_empty() {
                    "none".to_string()
                } else {
                    wrong.join(", ")
                }
            },
            first.map_or("-".into(), |s| format!(
                "{} at {} s",
                mib(s.rss_kib),
                s.at.as_secs()
            )),
            last.map_or("-".into(), |s| mib(s.rss_kib)),
            mib(max_rss),
            if rss_flat { "flat" } else { "GROWING" },
            first.map_or(0, |s| s.fds),
            last.map_or(0, |s| s.fds),
            max_fds,
            if fds_flat { "flat" } else { "GROWING" },
            {
                let r: Vec<String> = self
                    .phases
                    .iter()
                    .enumerate()
                    .skip(1)
                    .filter(|(k, (label, _))| label == "up" && self.phases[k - 1].0 != "up")
                    .map(|(k, (_, p))| {
                        let bound = Self::recovery_bound(&self.phases[k - 1].0);
                        format!(
                            "after {}: {} (bound {} s)",
                            self.phases[k - 1].0,
                            p.recovered_after.map_or("at once".to_string(), |d| format!(
                                "{:.1} s",
                                d.as_secs_f64()
                            )),
                            bound.as_secs()
                        )
                    })
                    .collect();
                if r.is_empty() {
                    "no fault ended within the run".to_string()
                } else {
                    r.join("; ")
                }
            },
        );
        let _ = writeln!(
            t,
            "Per phase ({} s each):\n\n| phase | flapping registry | reviews | allowed | warned | denied | failed | unexpected | max latency |\n|---|---|---|---|---|---|---|---|---|",
            PHASE.as_secs()
        );
        for (k, (label, p)) in self.phases.iter().enumerate() {
            let _ = writeln!(
                t,
                "| {} | {label} | {} | {} | {} | {} | {} | {} | {} |",
                k + 1,
                p.reviews,
                p.allowed,
                p.warned,
                p.denied,
                p.failed,
                p.unexpected,
                ms(p.max_latency)
            );
        }
        let _ = writeln!(
            t,
            "\nServer samples every {} s (s: RSS MiB / fds): {}\n\nRun it with `make soak` \
             (`SOAK_SECONDS`, default 600); it is not part of `make test` nor `make bench`.\n",
            SAMPLE_EVERY.as_secs(),
            self.samples
                .iter()
                .map(|s| format!(
                    "{}: {:.0}/{}",
                    s.at.as_secs(),
                    s.rss_kib as f64 / 1024.0,
                    s.fds
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        t
    }
}
