//! The one results table, the machine it ran on, and BENCHMARKS.md.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support;

/// Whether a row meets its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Met,
    Missed,
    /// A measurement without a target of its own.
    Info,
    /// The measurement itself failed.
    Error,
}

impl Mark {
    pub fn of(met: bool) -> Self {
        if met { Mark::Met } else { Mark::Missed }
    }

    fn label(self) -> &'static str {
        match self {
            Mark::Met => "met",
            Mark::Missed => "**missed**",
            Mark::Info => "",
            Mark::Error => "**error**",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Row {
    pub id: String,
    pub bench: String,
    pub result: String,
    pub target: String,
    pub mark: Mark,
}

impl Row {
    pub fn new(id: &str, bench: impl Into<String>, result: impl Into<String>) -> Self {
        Row {
            id: id.to_string(),
            bench: bench.into(),
            result: result.into(),
            target: String::new(),
            mark: Mark::Info,
        }
    }

    pub fn target(mut self, target: impl Into<String>, met: bool) -> Self {
        self.target = target.into();
        self.mark = Mark::of(met);
        self
    }

    pub fn error(id: &str, bench: &str, error: &anyhow::Error) -> Self {
        let mut text = format!("{error:#}").replace('\n', " ").replace('|', "\\|");
        if text.len() > 300 {
            text.truncate(300);
            text.push('…');
        }
        Row {
            id: id.to_string(),
            bench: bench.to_string(),
            result: text,
            target: String::new(),
            mark: Mark::Error,
        }
    }
}

pub fn table(rows: &[Row]) -> String {
    let mut out = String::from("| # | benchmark | result | target | |\n|---|---|---|---|---|\n");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            r.id,
            r.bench,
            r.result,
            r.target,
            r.mark.label()
        );
    }
    out
}

/// What the numbers were measured on.
#[derive(Debug, Clone)]
pub struct Machine {
    pub date: String,
    pub nproc: usize,
    pub cpu: String,
    pub memory: String,
    pub kernel: String,
    pub rustc: String,
    pub commit: String,
    pub skopeo: String,
    pub registry: String,
}

impl Machine {
    pub fn detect(manifest_dir: &Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_string(), |(_, v)| v.trim().to_string());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or_else(
                || "unknown".to_string(),
                |kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0),
            );
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        Machine {
            date: support::token::rfc3339(i64::try_from(unix).unwrap_or_default()),
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            memory,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "unknown".to_string(), |s| s.trim().to_string()),
            rustc: command_line(&["rustc", "--version"]),
            commit: command_line(&[
                "git",
                "-C",
                &manifest_dir.display().to_string(),
                "describe",
                "--always",
                "--dirty",
            ]),
            skopeo: command_line(&["skopeo", "--version"]),
            registry: command_line(&["docker-registry", "--version"]),
        }
    }

    pub fn markdown(&self) -> String {
        format!(
            "- date: {} (UTC)\n\
             - CPU: {} × {} (`nproc` = {})\n\
             - memory: {}\n\
             - kernel: Linux {}\n\
             - toolchain: {}\n\
             - pullgate: `git describe --always --dirty` = {}\n\
             - registries: {}; skopeo: {}\n",
            self.date,
            self.nproc,
            self.cpu,
            self.nproc,
            self.memory,
            self.kernel,
            self.rustc,
            self.commit,
            self.registry,
            self.skopeo
        )
    }
}

/// First line of a command's stdout, or "unknown".
fn command_line(argv: &[&str]) -> String {
    Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_string())
        })
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}
