//! `make profile`: the warm admission review in-process, for callgrind (BENCHMARKS.md,
//! "Profiles"). No socket and no registry: the webhook is built as `pullgate serve
//! --no-cluster` builds it (same flags, same metrics, logs at `info` to stderr), the
//! verdict of the fixture's image is put in the cache, and the captured `kubectl run`
//! review is answered N times.
//!
//! - `warm_review run review N`: `Webhook::review` (what `pullgate_review_duration_seconds`
//!   covers: decoding, policy, cache, decision, plus the log line);
//! - `warm_review run handler N`: the axum router on an in-memory request (the above, plus
//!   routing, the query, the answer's JSON and the HTTP response; not hyper nor TLS);
//! - `warm_review report OUT.md N TITLE review.out handler.out`: Ir per review and the top
//!   functions of each callgrind run, as Markdown.
//!
//! Only `profiled_loop` is measured (`valgrind --tool=callgrind --collect-atstart=no
//! --toggle-collect=warm_review::profiled_loop`): start-up and the first review are not.

#![forbid(unsafe_code)]

use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use axum::body::{Body, Bytes};
use clap::Parser as _;
use pullgate::cache::CacheKey;
use pullgate::cli::{Cli, Command as PullgateCommand};
use pullgate::cluster::ClusterState;
use pullgate::digest::Digest;
use pullgate::metrics::Metrics;
use pullgate::reference::Reference;
use pullgate::registry::ImageUse;
use pullgate::verdict::Outcome;
use pullgate::webhook::{Reply, Webhook};
use serde_json::Value;
use tower::ServiceExt as _;

#[path = "../benches/webhook_bench/numbers.rs"]
mod numbers;
use numbers::thousands;

const FIXTURE: &str = "tests/data/admission-reviews/pod-create-kubectl-run.json";
const VALIDATE: &str = "/validate?timeout=10s";
/// Rows of each "top functions" table.
const TOP: usize = 15;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("report") => report(&args[1..]),
        _ => Err(anyhow::anyhow!(
            "usage: warm_review run review|handler N | warm_review report OUT.md N TITLE REVIEW.out HANDLER.out"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warm_review: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What one iteration drives.
enum Target {
    Review(Arc<Webhook>),
    Handler(axum::Router),
}

fn run(args: &[String]) -> anyhow::Result<()> {
    let [mode, n] = args else {
        bail!("run wants a mode (review, handler) and a count");
    };
    let n: usize = n.parse().context("count")?;
    pullgate::install_crypto_provider();
    let cli = Cli::try_parse_from(["pullgate", "serve", "--no-cluster"])?;
    cli.log.init()?;
    let PullgateCommand::Serve(serve) = cli.command else {
        bail!("not the serve command");
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let body = Bytes::from(compact_fixture()?);
    let webhook = runtime.block_on(async {
        let metrics = Arc::new(Metrics::new());
        let config = serve.webhook_config();
        let checker = serve.engine.checker_with_metrics(metrics.clone())?;
        // The fixture's image, pullable, as a first review would have left it.
        let image = image_of(&body)?;
        let reference = Reference::parse_for_pull(&image)?;
        let key = CacheKey::new(&reference, &[], &config.platforms, ImageUse::Container);
        checker
            .cache()
            .get_or_probe(key, || async {
                Outcome::pullable(Digest::sha256_of(b"warm_review fixture manifest"))
            })
            .await;
        anyhow::Ok(Arc::new(Webhook::new(
            checker,
            ClusterState::disconnected(),
            config,
            metrics,
        )))
    })?;
    let target = match mode.as_str() {
        "review" => Target::Review(webhook.clone()),
        "handler" => Target::Handler(pullgate::server::router(webhook.clone())),
        other => bail!("unknown mode {other:?}"),
    };
    // One review outside the measure, checked as the bench checks its answers.
    let answer = runtime.block_on(one(&target, &body))?;
    ensure!(
        answer["response"]["allowed"] == true && answer["response"].get("warnings").is_none(),
        "the warm review was not allowed cleanly: {answer}"
    );
    let answered = profiled_loop(&runtime, &target, &body, n);
    ensure!(answered == n, "{answered} of {n} reviews answered");
    let text = webhook.metrics().encode();
    ensure!(
        text.contains("pullgate_cache_lookups_total{result=\"hit\"}")
            && !text.contains("result=\"miss\""),
        "the verdict did not come from the cache:\n{text}"
    );
    eprintln!("warm_review: {n} {mode} iterations");
    Ok(())
}

/// The measured region: `n` reviews, each awaited before the next.
#[inline(never)]
fn profiled_loop(
    runtime: &tokio::runtime::Runtime,
    target: &Target,
    body: &Bytes,
    n: usize,
) -> usize {
    runtime.block_on(reviews(target, body, n))
}

async fn reviews(target: &Target, body: &Bytes, n: usize) -> usize {
    let mut answered = 0;
    for _ in 0..n {
        match target {
            Target::Review(webhook) => {
                if let Reply::Review(v) = webhook.review(body, Some(Duration::from_secs(10))).await
                {
                    std::hint::black_box(v);
                    answered += 1;
                }
            }
            Target::Handler(router) => {
                if let Ok(response) = router.clone().oneshot(request(body)).await
                    && response.status().is_success()
                    && let Ok(bytes) = axum::body::to_bytes(response.into_body(), usize::MAX).await
                {
                    std::hint::black_box(bytes);
                    answered += 1;
                }
            }
        }
    }
    answered
}

fn request(body: &Bytes) -> axum::http::Request<Body> {
    axum::http::Request::post(VALIDATE)
        .header("content-type", "application/json")
        .body(Body::from(body.clone()))
        .unwrap_or_default()
}

async fn one(target: &Target, body: &Bytes) -> anyhow::Result<Value> {
    Ok(match target {
        Target::Review(webhook) => match webhook.review(body, None).await {
            Reply::Review(v) => serde_json::from_slice(&v)?,
            Reply::BadRequest(reason) => bail!("bad request: {reason}"),
        },
        Target::Handler(router) => {
            let response = router.clone().oneshot(request(body)).await?;
            ensure!(response.status().is_success(), "HTTP {}", response.status());
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
            serde_json::from_slice(&bytes)?
        }
    })
}

/// The fixture as the bench sends it: compact JSON.
fn compact_fixture() -> anyhow::Result<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
    let review: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    Ok(serde_json::to_vec(&review)?)
}

fn image_of(body: &[u8]) -> anyhow::Result<String> {
    let review: Value = serde_json::from_slice(body)?;
    review
        .pointer("/request/object/spec/containers/0/image")
        .and_then(Value::as_str)
        .map(str::to_string)
        .context("the fixture has no container image")
}

// ---------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------

/// One function's cost in a `callgrind_annotate` listing.
struct Cost {
    ir: u64,
    function: String,
}

fn report(args: &[String]) -> anyhow::Result<()> {
    let [out, n, title, review, handler] = args else {
        bail!("report wants OUT.md N TITLE REVIEW.out HANDLER.out");
    };
    let n: u64 = n.parse().context("count")?;
    let mut md = format!("### {title}\n\n");
    for (label, file) in [
        ("`Webhook::review` (the server histogram's scope)", review),
        (
            "`POST /validate` handler (the above + axum, answer JSON)",
            handler,
        ),
    ] {
        let (total, exclusive) = annotate(file, false)?;
        let (_, inclusive) = annotate(file, true)?;
        md.push_str(&format!(
            "{label}: **{} Ir per review** ({n} reviews, {} Ir)\n\n",
            thousands(total / n),
            thousands(total)
        ));
        md.push_str(&format!(
            "<details><summary>top {TOP} functions, self and inclusive</summary>\n\n\
             | self Ir/review | % | function |\n|---:|---:|---|\n"
        ));
        for c in exclusive.iter().take(TOP) {
            md.push_str(&row(c, total, n));
        }
        md.push_str("\n| inclusive Ir/review | % | function |\n|---:|---:|---|\n");
        for c in inclusive
            .iter()
            .filter(|c| {
                c.function.starts_with("pullgate::")
                    || c.function.starts_with("serde_json::de::from_")
                    || c.function.starts_with("serde_json::ser::to_")
                    || c.function.starts_with("tracing")
            })
            .take(TOP)
        {
            md.push_str(&row(c, total, n));
        }
        md.push_str("\n</details>\n\n");
    }
    std::fs::write(out, md).with_context(|| format!("writing {out}"))?;
    Ok(())
}

fn row(c: &Cost, total: u64, n: u64) -> String {
    let mut name: String = c.function.replace('|', "\\|");
    if name.chars().count() > 120 {
        name = name.chars().take(117).collect::<String>() + "…";
    }
    format!(
        "| {} | {:.1} | `{}` |\n",
        thousands(c.ir / n),
        c.ir as f64 * 100.0 / total.max(1) as f64,
        name
    )
}

/// `callgrind_annotate` of one output file: the program total and the functions, most
/// expensive first.
fn annotate(file: &str, inclusive: bool) -> anyhow::Result<(u64, Vec<Cost>)> {
    let output = Command::new("callgrind_annotate")
        .arg(format!(
            "--inclusive={}",
            if inclusive { "yes" } else { "no" }
        ))
        .arg("--threshold=100")
        .arg("--auto=no")
        .arg(file)
        .output()
        .context("running callgrind_annotate")?;
    ensure!(
        output.status.success(),
        "callgrind_annotate {file}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let mut total = None;
    let mut costs = Vec::new();
    // The function listing is the second table; what follows it (annotated sources) is not.
    let mut in_listing = false;
    for line in text.lines() {
        let line = line.trim();
        if line.ends_with("file:function") {
            in_listing = true;
            continue;
        }
        if in_listing && line.is_empty() && !costs.is_empty() {
            break;
        }
        let Some((number, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(ir) = number.replace(',', "").parse::<u64>() else {
            continue;
        };
        // "1,234 (12.34%)  file:function [object]" in newer valgrind; "1,234  file:function" before.
        let rest = rest.trim_start();
        let rest = match rest.strip_prefix('(') {
            Some(r) => r.split_once(')').map_or(r, |(_, after)| after).trim_start(),
            None => rest,
        };
        if rest.starts_with("PROGRAM TOTALS") {
            total = Some(ir);
            continue;
        }
        let function = rest
            .split_once(':')
            .map_or(rest, |(_, f)| f)
            .rsplit_once(" [/")
            .map_or(rest, |(f, _)| f)
            .trim()
            .to_string();
        // `name'2`: a recursive call's second level, already inside the first's cost.
        // The same function under two source files is listed twice.
        let repeated = costs
            .last()
            .is_some_and(|c: &Cost| c.ir == ir && c.function == function);
        if in_listing && !function.contains('\'') && !repeated {
            costs.push(Cost { ir, function });
        }
    }
    let total = total.context("no PROGRAM TOTALS in callgrind_annotate's output")?;
    costs.sort_by_key(|c| std::cmp::Reverse(c.ir));
    Ok((total, costs))
}
