//! Section 2b: registry requests and sequential round trips per cold image, the way the
//! issue states its targets (containerd's own count): every registry request delayed by
//! the same 50 ms at a `FaultProxy` (the token issuer delays its answers by as much), so
//! that `elapsed / 50 ms` is the number of round trips one after another.
//!
//! Three registries (anonymous, htpasswd Basic, token auth with the harness's
//! `TokenIssuer`) and two fresh `pullgate serve` processes (`--verify-blobs` on, off), each
//! told about every registry once ("first contact") before the measured images.

use std::time::{Duration, Instant};

use anyhow::ensure;
use base64::Engine as _;

use crate::client::{Conn, allowed_cleanly};
use crate::report::Row;
use crate::serve::Server;
use crate::support::{
    Fault, FaultProxy, PushAuth, PushTarget, Registry, RegistryAuth, RegistryOpts, TokenFailMode,
    TokenIssuer, TokenIssuerOpts, push_oci_manifest,
};
use crate::{Bench, FAN_DELAY, VALIDATE, median, ms, pod_review};

/// Images per scenario and setting.
const SAMPLES: usize = 5;
/// The servers' `--cache-tag-ttl`, so that a tag's verdict expires within the section.
const TAG_TTL_SECS: u64 = 1;
const BASIC_USER: &str = "rt-bench";
const BASIC_PASSWORD: &str = "rt-bench-secret";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Anonymous,
    Basic,
    Token,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Anonymous, Kind::Basic, Kind::Token];

    fn label(self) -> &'static str {
        match self {
            Kind::Anonymous => "anonymous registry",
            Kind::Basic => "Basic-auth registry (htpasswd)",
            Kind::Token => "token registry (TokenIssuer)",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// The first image of a registry this server never spoke to.
    FirstContact,
    NewRepository,
    /// A tag not seen before, in a repository checked before (its token still valid).
    NewTag,
    /// A tag checked before, once its verdict expired (`--cache-tag-ttl`).
    Recheck,
}

impl Scenario {
    const ALL: [Scenario; 4] = [
        Scenario::FirstContact,
        Scenario::NewRepository,
        Scenario::NewTag,
        Scenario::Recheck,
    ];

    fn label(self) -> &'static str {
        match self {
            Scenario::FirstContact => "first contact (registry never seen)",
            Scenario::NewRepository => "new repository",
            Scenario::NewTag => "new tag in a known repository",
            Scenario::Recheck => "re-check of a known tag after its verdict expired",
        }
    }

    /// Requests (manifest + token, blobs apart) containerd sends for this image, which is
    /// the target: the issue's "1 round trip on a known registry, 2 for a new repository
    /// on a token registry (token + manifest), 1 while the repository's token is valid".
    fn target(self, kind: Kind) -> usize {
        match (self, kind) {
            // The request, the 401, the request again (with a token fetched in between).
            (Scenario::FirstContact, Kind::Anonymous) => 1,
            (Scenario::FirstContact, Kind::Basic) => 2,
            (Scenario::FirstContact, Kind::Token) => 3,
            (Scenario::NewRepository, Kind::Token) => 2,
            _ => 1,
        }
    }
}

/// What one review cost at the registry.
#[derive(Clone, Copy, Default)]
struct Cost {
    elapsed: Duration,
    manifests: usize,
    blobs: usize,
    tokens: usize,
    other: usize,
}

impl Cost {
    fn round_trips(&self) -> f64 {
        self.elapsed.as_secs_f64() / FAN_DELAY.as_secs_f64()
    }
}

/// A registry behind its 50 ms proxy.
struct Target {
    kind: Kind,
    _registry: Registry,
    issuer: Option<TokenIssuer>,
    proxy: FaultProxy,
    push: PushTarget,
}

impl Target {
    async fn start(kind: Kind) -> Target {
        let (registry, issuer, push_auth) = match kind {
            Kind::Anonymous => (
                Registry::start(RegistryOpts::plain()).await,
                None,
                PushAuth::None,
            ),
            Kind::Basic => (
                Registry::start(
                    RegistryOpts::plain()
                        .with_auth(RegistryAuth::htpasswd(&[(BASIC_USER, BASIC_PASSWORD)])),
                )
                .await,
                None,
                PushAuth::basic(BASIC_USER, BASIC_PASSWORD),
            ),
            Kind::Token => {
                let issuer = TokenIssuer::start(TokenIssuerOpts::default()).await;
                issuer.set_anonymous_pull(&["rt/*"]);
                let registry =
                    Registry::start(RegistryOpts::plain().with_auth(issuer.registry_auth())).await;
                (registry, Some(issuer), PushAuth::admin())
            }
        };
        let proxy = FaultProxy::for_registry(&registry).await;
        let push = registry.push_target(push_auth);
        Target {
            kind,
            _registry: registry,
            issuer,
            proxy,
            push,
        }
    }

    fn delay(&self, on: bool) {
        if on {
            self.proxy.set_fault(Fault::Delay(FAN_DELAY));
        } else {
            self.proxy.clear_faults();
        }
        if let Some(issuer) = &self.issuer {
            issuer.set_fail_mode(if on {
                TokenFailMode::Delay(FAN_DELAY)
            } else {
                TokenFailMode::Normal
            });
        }
    }

    fn reset(&self) {
        self.proxy.reset_counters();
        if let Some(issuer) = &self.issuer {
            issuer.reset_counters();
        }
    }

    /// One review of a one-container Pod running `image`, timed, its registry requests
    /// counted.
    async fn review(&self, conn: &mut Conn, image: &str) -> anyhow::Result<Cost> {
        self.reset();
        let body = pod_review(&[image.to_string()])?;
        let started = Instant::now();
        let (status, answer) = conn.post(VALIDATE, body).await?;
        let elapsed = started.elapsed();
        ensure!(
            allowed_cleanly(status, &answer),
            "{image}: HTTP {status} {}",
            String::from_utf8_lossy(&answer)
        );
        let mut cost = Cost {
            elapsed,
            tokens: self.issuer.as_ref().map_or(0, TokenIssuer::token_requests),
            ..Cost::default()
        };
        for r in self.proxy.requests() {
            if r.path.contains("/manifests/") {
                cost.manifests += 1;
            } else if r.path.contains("/blobs/") {
                cost.blobs += 1;
            } else {
                cost.other += 1;
            }
        }
        Ok(cost)
    }
}

/// `[kind][scenario]` → the costs of each sample.
type Costs = Vec<Vec<Vec<Cost>>>;

pub async fn run(bench: &Bench) -> anyhow::Result<Vec<Row>> {
    let mut targets = Vec::new();
    for kind in Kind::ALL {
        targets.push(Target::start(kind).await);
    }
    let nonce = &bench.nonce;
    // Every image pushed first, straight to the registries (not through the proxies).
    let repo =
        |verify: bool, i: usize| format!("rt/{nonce}-{}-{i}", if verify { "on" } else { "off" });
    let first_repo =
        |verify: bool| format!("rt/{nonce}-first-{}", if verify { "on" } else { "off" });
    for t in &targets {
        for verify in [true, false] {
            push_oci_manifest(&t.push, &first_repo(verify), "v1").await;
            for i in 0..SAMPLES {
                push_oci_manifest(&t.push, &repo(verify, i), "v1").await;
                push_oci_manifest(&t.push, &repo(verify, i), "v2").await;
            }
        }
    }
    let secret_path = bench.work.path().join("rt-node-secret.json");
    let basic_host = targets[1].proxy.host();
    std::fs::write(
        &secret_path,
        serde_json::json!({"auths": {basic_host.clone(): {"auth": base64::engine::general_purpose::STANDARD.encode(format!("{BASIC_USER}:{BASIC_PASSWORD}"))}}})
            .to_string(),
    )?;

    let mut costs: [Costs; 2] = Default::default();
    for (v, verify) in [true, false].into_iter().enumerate() {
        let dir = bench
            .work
            .path()
            .join(format!("rt-{}", if verify { "on" } else { "off" }));
        std::fs::create_dir_all(&dir)?;
        let mut flags = vec![
            format!("--verify-blobs={verify}"),
            "--cache-tag-ttl".to_string(),
            TAG_TTL_SECS.to_string(),
            "--node-pull-secret".to_string(),
            secret_path.display().to_string(),
        ];
        for t in &targets {
            flags.push("--insecure-registry".to_string());
            flags.push(t.proxy.host());
        }
        let server = Server::start(
            &bench.options.bin,
            bench.pki.cert_pem(),
            bench.pki.key_pem(),
            &flags,
            &bench.options.server_env,
            &dir,
        )
        .await?;
        let mut conn = Conn::connect(server.listen, &bench.h1).await?;
        let image = |t: &Target, repo: &str, tag: &str| format!("{}/{repo}:{tag}", t.proxy.host());
        let mut per_kind: Costs = Vec::new();
        for t in &targets {
            t.delay(true);
            let result = async {
                let mut by_scenario: Vec<Vec<Cost>> = vec![Vec::new(); Scenario::ALL.len()];
                by_scenario[0].push(
                    t.review(&mut conn, &image(t, &first_repo(verify), "v1"))
                        .await?,
                );
                for i in 0..SAMPLES {
                    by_scenario[1].push(
                        t.review(&mut conn, &image(t, &repo(verify, i), "v1"))
                            .await?,
                    );
                }
                for i in 0..SAMPLES {
                    by_scenario[2].push(
                        t.review(&mut conn, &image(t, &repo(verify, i), "v2"))
                            .await?,
                    );
                }
                // The v1 verdicts were cached for TAG_TTL_SECS; tokens (270 s) and
                // content (by digest) stay known.
                tokio::time::sleep(Duration::from_millis(TAG_TTL_SECS * 1000 + 300)).await;
                for i in 0..SAMPLES {
                    by_scenario[3].push(
                        t.review(&mut conn, &image(t, &repo(verify, i), "v1"))
                            .await?,
                    );
                }
                anyhow::Ok(by_scenario)
            }
            .await;
            t.delay(false);
            per_kind.push(result.map_err(|e| {
                e.context(format!(
                    "{} ({})",
                    t.kind.label(),
                    if verify {
                        "--verify-blobs"
                    } else {
                        "--verify-blobs=false"
                    }
                ))
            })?);
        }
        costs[v] = per_kind;
        drop(server);
    }

    let mut rows = Vec::new();
    let mut blob_requests = Vec::new();
    let mut blob_latency = Vec::new();
    for (k, kind) in Kind::ALL.into_iter().enumerate() {
        for (s, scenario) in Scenario::ALL.into_iter().enumerate() {
            let on = &costs[0][k][s];
            let off = &costs[1][k][s];
            let target = scenario.target(kind);
            // A first contact also opens the connections the later images reuse (here a
            // second one for the concurrent blob requests): the round-trip targets
            // are for a known registry, so a first contact is held to containerd's request
            // count only, its round trips reported.
            let first = scenario == Scenario::FirstContact;
            let (on_row, on_ok) = describe(on, target, true, first);
            let (off_row, off_ok) = describe(off, target, false, first);
            println!(
                "  {} — {}: off {off_row}; on {on_row}",
                kind.label(),
                scenario.label()
            );
            if scenario != Scenario::FirstContact {
                let extra_requests = mean(on, |c| c.blobs as f64) - mean(off, |c| c.blobs as f64);
                blob_requests.push(extra_requests);
                blob_latency.push(
                    median(&on.iter().map(|c| c.elapsed).collect::<Vec<_>>()).as_secs_f64()
                        - median(&off.iter().map(|c| c.elapsed).collect::<Vec<_>>()).as_secs_f64(),
                );
            }
            rows.push(
                Row::new(
                    "2b",
                    format!("round trips: {}, {}", kind.label(), scenario.label()),
                    format!("--verify-blobs=false: {off_row}; --verify-blobs (default): {on_row}"),
                )
                .target(
                    if first {
                        format!(
                            "{target} request{} (manifest{}), as containerd; round trips reported (new connections)",
                            plural(target),
                            if kind == Kind::Token && target > 1 { " + token" } else { "" }
                        )
                    } else {
                        format!(
                            "{target} request{} and {target} round trip{} (manifest{}); blob requests extra, in 1 concurrent round trip",
                            plural(target),
                            plural(target),
                            if kind == Kind::Token && target > 1 { " + token" } else { "" }
                        )
                    },
                    on_ok && off_ok,
                ),
            );
        }
    }
    let cold: Vec<usize> = (0..blob_requests.len()).collect();
    let max_requests = cold.iter().map(|&i| blob_requests[i]).fold(0.0, f64::max);
    let max_latency = cold.iter().map(|&i| blob_latency[i]).fold(0.0, f64::max);
    rows.push(Row::new(
        "2b",
        "**cost of `--verify-blobs` per cold image**",
        format!(
            "**up to +{max_requests:.1} requests and +{} ({:.1} round trips)** per image with blobs not seen before (config read + layer HEAD, concurrent); +0 when the blobs are known (a re-check, or a tag on known content): per scenario +{} requests, +{}",
            ms(Duration::from_secs_f64(max_latency.max(0.0))),
            max_latency / FAN_DELAY.as_secs_f64(),
            blob_requests.iter().map(|r| format!("{r:.1}")).collect::<Vec<_>>().join("/"),
            blob_latency.iter().map(|l| ms(Duration::from_secs_f64(l.max(0.0)))).collect::<Vec<_>>().join("/"),
        ),
    ));
    Ok(rows)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn mean(costs: &[Cost], f: impl Fn(&Cost) -> f64) -> f64 {
    costs.iter().map(f).sum::<f64>() / costs.len().max(1) as f64
}

/// "N requests (m manifest, t token, b blob), R round trips (median E)", and whether it
/// meets `target`: manifest + token requests equal to it, in as many round trips (one
/// more for the blobs when verifying).
fn describe(costs: &[Cost], target: usize, verify: bool, first_contact: bool) -> (String, bool) {
    let elapsed = median(&costs.iter().map(|c| c.elapsed).collect::<Vec<_>>());
    let round_trips = elapsed.as_secs_f64() / FAN_DELAY.as_secs_f64();
    let manifests = mean(costs, |c| c.manifests as f64);
    let tokens = mean(costs, |c| c.tokens as f64);
    let blobs = mean(costs, |c| c.blobs as f64);
    let other = mean(costs, |c| c.other as f64);
    let max_rt = costs.iter().map(Cost::round_trips).fold(0.0, f64::max);
    let core_ok = costs
        .iter()
        .all(|c| c.manifests + c.tokens + c.other == target);
    let rt_ok = first_contact
        || round_trips.round() as usize <= target + usize::from(verify && blobs > 0.0);
    let mut text = format!(
        "{:.1} requests ({manifests:.1} manifest, {tokens:.1} token",
        manifests + tokens + blobs + other
    );
    if blobs > 0.0 || verify {
        text.push_str(&format!(", {blobs:.1} blob"));
    }
    if other > 0.0 {
        text.push_str(&format!(", {other:.1} other"));
    }
    text.push_str(&format!(
        "), **{round_trips:.2} round trips** (median {}, max {max_rt:.2}, n={})",
        ms(elapsed),
        costs.len()
    ));
    (text, core_ok && rt_ok)
}

/// Markdown for "How each row is measured".
pub fn method() -> String {
    format!(
        "\n   **2b. Round trips per cold image.** Three registries, each behind its own `FaultProxy` \
   with `Fault::Delay({delay})` on every request: an anonymous `docker-registry`, one with \
   htpasswd Basic auth (the credential given as `--node-pull-secret`), and one with token \
   auth (the harness's `TokenIssuer`, anonymous pull, its answers delayed by the same \
   {delay}). Two fresh `pullgate serve` processes, `--verify-blobs=false` and the default \
   `--verify-blobs`, both with `--cache-tag-ttl {ttl}`; one review at a time of a \
   one-container Pod. Per registry: the first image (first contact: the challenge is \
   learnt), then {n} new repositories, then a new tag (new content) in each of them, then, \
   once the verdicts expired ({ttl} s), the first tags again. Requests are counted at the \
   proxy (manifests, blobs) and at the issuer (tokens); round trips are the review's \
   latency / {delay} (median). The target is containerd's own count for the manifest \
   (and token) requests; blob requests are the extra cost of `--verify-blobs`, sent \
   together after the manifest, so they add one round trip. A first contact is held to \
   the request count only: it also opens the connections later images reuse (the \
   concurrent blob requests need a second one), and the issue's round-trip targets are \
   for a registry already known.\n",
        delay = ms(FAN_DELAY),
        ttl = TAG_TTL_SECS,
        n = SAMPLES,
    )
}
