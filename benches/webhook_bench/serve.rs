//! `pullgate serve` as a child process (killed and reaped through its own handle on drop),
//! its `/metrics`, and resident-size readings from `/proc`.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::support;

/// Attempts when a port picked by `free_port` is taken before the child binds it.
const START_ATTEMPTS: usize = 3;
const READY_WITHIN: Duration = Duration::from_secs(15);

pub struct Server {
    child: Child,
    pub listen: SocketAddr,
    pub ops: SocketAddr,
    pub log_path: PathBuf,
    /// The exact command line, for BENCHMARKS.md.
    pub argv: Vec<String>,
    http: reqwest::Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Our own child only; harmless once it has exited.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Start `bin serve --no-cluster` on loopback with `cert`/`key` and `extra` flags, and
    /// wait for `/readyz`.
    pub async fn start(
        bin: &Path,
        cert: &Path,
        key: &Path,
        extra: &[String],
        env: &[(String, String)],
        log_dir: &Path,
    ) -> anyhow::Result<Server> {
        let log_path = log_dir.join("pullgate-serve.log");
        let http = support::http_client(None);
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let listen =
                SocketAddr::new(support::LOCALHOST, support::free_port(support::LOCALHOST));
            let ops = SocketAddr::new(support::LOCALHOST, support::free_port(support::LOCALHOST));
            let mut argv: Vec<String> = vec![
                bin.display().to_string(),
                "serve".into(),
                "--no-cluster".into(),
                "--listen".into(),
                listen.to_string(),
                "--metrics-listen".into(),
                ops.to_string(),
                "--tls-cert".into(),
                cert.display().to_string(),
                "--tls-key".into(),
                key.display().to_string(),
            ];
            argv.extend(extra.iter().cloned());
            let log = File::create(&log_path)?;
            let child = Command::new(&argv[0])
                .args(&argv[1..])
                // Only the flags above: no PULLGATE_* from the caller's environment.
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            let mut server = Server {
                child,
                listen,
                ops,
                log_path: log_path.clone(),
                argv,
                http: http.clone(),
            };
            match server.wait_ready().await {
                Ok(()) => return Ok(server),
                Err(e) => {
                    last = format!("{e:#}\n{}", server.log_tail());
                    if !last.contains("in use") {
                        break;
                    }
                }
            }
        }
        bail!("pullgate serve did not become ready: {last}")
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_WITHIN;
        let url = format!("http://{}/readyz", self.ops);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("exited with {status}");
            }
            if let Ok(r) = self.http.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("no 200 from {url} within {READY_WITHIN:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// `GET /metrics`, parsed.
    pub async fn metrics(&self) -> anyhow::Result<Metrics> {
        let text = self
            .http
            .get(format!("http://{}/metrics", self.ops))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(Metrics::parse(&text))
    }

    /// The server's resident size, in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        rss_kib(&format!("/proc/{}/status", self.pid()))
    }
}

/// `VmRSS` of a `/proc/*/status` file, in KiB.
pub fn rss_kib(status_path: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(status_path)?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in {status_path}"))
}

/// The samples of one `/metrics` scrape: `(name{labels}, value)`.
#[derive(Debug, Clone, Default)]
pub struct Metrics(Vec<(String, f64)>);

impl Metrics {
    pub fn parse(text: &str) -> Self {
        Metrics(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let (series, value) = l.rsplit_once(' ')?;
                    Some((series.to_string(), value.parse().ok()?))
                })
                .collect(),
        )
    }

    /// The value of one exact series (`name{labels}`), 0 when absent.
    pub fn get(&self, series: &str) -> f64 {
        self.0
            .iter()
            .find(|(s, _)| s == series)
            .map_or(0.0, |(_, v)| *v)
    }

    /// The sum of every series of metric `name` (all label sets).
    pub fn sum(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|(s, _)| s == name || s.strip_prefix(name).is_some_and(|r| r.starts_with('{')))
            .map(|(_, v)| *v)
            .sum()
    }

    /// Cumulative buckets of histogram `name`: `(upper bound in seconds, count)`.
    pub fn buckets(&self, name: &str) -> Vec<(f64, f64)> {
        let prefix = format!("{name}_bucket{{le=\"");
        let mut out: Vec<(f64, f64)> = self
            .0
            .iter()
            .filter_map(|(s, v)| {
                let le = s.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((bound, *v))
            })
            .collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }
}

/// What the server's review-duration histogram says about one interval.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerLatency {
    pub count: f64,
    pub mean_s: f64,
    pub p50_s: f64,
    pub p99_s: f64,
    /// The upper bound of the bucket holding p99.
    pub p99_bucket_s: f64,
}

/// Diff `pullgate_review_duration_seconds` between two scrapes and estimate quantiles by
/// linear interpolation inside the bucket that holds them.
pub fn review_latency(before: &Metrics, after: &Metrics) -> ServerLatency {
    const NAME: &str = "pullgate_review_duration_seconds";
    let b0 = before.buckets(NAME);
    let b1 = after.buckets(NAME);
    let diff: Vec<(f64, f64)> = b1
        .iter()
        .map(|(le, n)| {
            let old = b0.iter().find(|(l, _)| l == le).map_or(0.0, |(_, v)| *v);
            (*le, n - old)
        })
        .collect();
    let count = after.get(&format!("{NAME}_count")) - before.get(&format!("{NAME}_count"));
    let sum = after.get(&format!("{NAME}_sum")) - before.get(&format!("{NAME}_sum"));
    let quantile = |q: f64| -> (f64, f64) {
        let total = diff.last().map_or(0.0, |(_, n)| *n);
        if total <= 0.0 {
            return (0.0, 0.0);
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for &(le, cum) in &diff {
            if cum >= rank {
                if le.is_infinite() {
                    return (lower.0, le);
                }
                let in_bucket = cum - lower.1;
                let frac = if in_bucket > 0.0 {
                    (rank - lower.1) / in_bucket
                } else {
                    1.0
                };
                return (lower.0 + (le - lower.0) * frac, le);
            }
            lower = (le, cum);
        }
        (lower.0, f64::INFINITY)
    };
    let (p50_s, _) = quantile(0.50);
    let (p99_s, p99_bucket_s) = quantile(0.99);
    ServerLatency {
        count,
        mean_s: if count > 0.0 { sum / count } else { 0.0 },
        p50_s,
        p99_s,
        p99_bucket_s,
    }
}
