//! Section 8: registry load beyond one process. Each replica keeps its own caches, so in
//! steady state the registry sees about R × U / TTL verdict refreshes (U unique
//! (image, credential) pairs that keep being reviewed), plus token refreshes of
//! R × (repository, credential) pairs per usable token lifetime. Checked against two
//! `pullgate serve` processes fed by the bench's load generator, requests counted at the
//! registry's proxy and at its token issuer.

use std::time::{Duration, Instant};

use anyhow::ensure;

use crate::client::{Conn, allowed_cleanly};
use crate::report::Row;
use crate::serve::Server;
use crate::support::{
    FaultProxy, PushAuth, Registry, RegistryOpts, TokenIssuer, TokenIssuerOpts, push_oci_manifest,
};
use crate::{Bench, VALIDATE, pod_review, thousands};

/// Replicas.
pub const REPLICAS: usize = 2;
/// Unique images (one repository each, anonymous pull on a token registry).
pub const UNIQUE: usize = 20;
/// `--cache-tag-ttl` of both replicas, seconds.
pub const TAG_TTL_SECS: u64 = 2;
/// `expires_in` of the issuer's tokens, seconds (pullgate uses a token until 5 s before).
pub const TOKEN_EXPIRES_SECS: u64 = 12;
/// Seconds of steady load measured.
pub const LOAD_SECS: u64 = 40;
/// One review per connection every this long (two connections per replica).
const PACE: Duration = Duration::from_millis(10);
const CONNS_PER_REPLICA: usize = 2;

/// What pullgate does with a token's `expires_in` (auth.rs `usable_for`).
fn token_usable_secs(expires_in: u64) -> f64 {
    let margin = (expires_in as f64 / 10.0).max(5.0);
    expires_in as f64 - margin
}

pub async fn run(bench: &Bench) -> anyhow::Result<Vec<Row>> {
    let issuer = TokenIssuer::start(TokenIssuerOpts::default()).await;
    issuer.set_anonymous_pull(&["scale/*"]);
    issuer.set_token_ttl(Duration::from_secs(TOKEN_EXPIRES_SECS));
    let registry = Registry::start(RegistryOpts::plain().with_auth(issuer.registry_auth())).await;
    let proxy = FaultProxy::for_registry(&registry).await;
    let push = registry.push_target(PushAuth::admin());
    let repos: Vec<String> = (0..UNIQUE)
        .map(|i| format!("scale/{}-{i}", bench.nonce))
        .collect();
    for r in &repos {
        push_oci_manifest(&push, r, "v1").await;
    }
    let images: Vec<String> = repos
        .iter()
        .map(|r| format!("{}/{r}:v1", proxy.host()))
        .collect();

    let mut servers = Vec::new();
    for r in 0..REPLICAS {
        let dir = bench.work.path().join(format!("scale-{r}"));
        std::fs::create_dir_all(&dir)?;
        servers.push(
            Server::start(
                &bench.options.bin,
                bench.pki.cert_pem(),
                bench.pki.key_pem(),
                &[
                    "--insecure-registry".to_string(),
                    proxy.host(),
                    "--cache-tag-ttl".to_string(),
                    TAG_TTL_SECS.to_string(),
                ],
                &bench.options.server_env,
                &dir,
            )
            .await?,
        );
    }
    // Cold fill: every image once on every replica, then the measured steady state.
    let mut conns = Vec::new();
    for s in &servers {
        for _ in 0..CONNS_PER_REPLICA {
            conns.push(Conn::connect(s.listen, &bench.h1).await?);
        }
    }
    for (c, conn) in conns.iter_mut().enumerate() {
        if c % CONNS_PER_REPLICA != 0 {
            continue;
        }
        for image in &images {
            let (status, answer) = conn
                .post(VALIDATE, pod_review(std::slice::from_ref(image))?)
                .await?;
            ensure!(
                allowed_cleanly(status, &answer),
                "cold fill: HTTP {status} {}",
                String::from_utf8_lossy(&answer)
            );
        }
    }
    let cold_requests = proxy.total_requests();
    let cold_tokens = issuer.token_requests();
    proxy.reset_counters();
    issuer.reset_counters();
    let started = Instant::now();
    let until = tokio::time::Instant::now() + Duration::from_secs(LOAD_SECS);
    let mut tasks = tokio::task::JoinSet::new();
    for (c, mut conn) in conns.into_iter().enumerate() {
        let images = images.clone();
        tasks.spawn(async move {
            let mut reviews = 0usize;
            let mut tick = tokio::time::interval(PACE);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut i = c;
            while tokio::time::Instant::now() < until {
                tick.tick().await;
                let body = pod_review(&[images[i % images.len()].clone()])?;
                let (status, answer) = conn.post(VALIDATE, body).await?;
                ensure!(
                    allowed_cleanly(status, &answer),
                    "HTTP {status} {}",
                    String::from_utf8_lossy(&answer)
                );
                reviews += 1;
                i += 1;
            }
            anyhow::Ok(reviews)
        });
    }
    let mut reviews = 0;
    while let Some(joined) = tasks.join_next().await {
        reviews += joined??;
    }
    let secs = started.elapsed().as_secs_f64();
    let requests = proxy.requests();
    let manifests = requests
        .iter()
        .filter(|r| r.path.contains("/manifests/"))
        .count();
    let blobs = requests
        .iter()
        .filter(|r| r.path.contains("/blobs/"))
        .count();
    let other = requests.len() - manifests - blobs;
    let tokens = issuer.token_requests();
    drop(servers);

    let per_min = |n: usize| n as f64 * 60.0 / secs;
    let (r, u, ttl) = (REPLICAS as f64, UNIQUE as f64, TAG_TTL_SECS as f64);
    let predicted_manifests = r * u * 60.0 / ttl;
    let usable = token_usable_secs(TOKEN_EXPIRES_SECS);
    // A token is renewed by the first probe after it lapsed: probes come every TTL.
    let renewal = (usable / ttl).ceil() * ttl;
    let predicted_tokens = r * u * 60.0 / renewal;
    let measured_manifests = per_min(manifests);
    let measured_tokens = per_min(tokens);
    let ratio = measured_manifests / predicted_manifests;
    let token_ratio = measured_tokens / predicted_tokens;
    println!(
        "  scale: {reviews} reviews in {secs:.1} s; manifests {manifests}, blobs {blobs}, other {other}, tokens {tokens}; cold fill {cold_requests} proxied + {cold_tokens} tokens"
    );
    Ok(vec![
        Row::new(
            "8",
            format!(
                "scale: R={REPLICAS} replicas, U={UNIQUE} images, `--cache-tag-ttl {TAG_TTL_SECS}`, tokens of {TOKEN_EXPIRES_SECS} s, {LOAD_SECS} s of steady load"
            ),
            format!(
                "{} reviews ({:.0}/s); registry: **{} manifest requests/min** (predicted R × U × 60 / TTL = {}, ×{ratio:.2}), **{} token requests/min** (predicted R × U × 60 / {renewal:.0} s = {}, ×{token_ratio:.2}), {blobs} blob and {other} other requests; the cold fill before it: {cold_requests} proxied requests + {cold_tokens} tokens for {} (image, replica) pairs",
                thousands(reviews as f64),
                reviews as f64 / secs,
                thousands(measured_manifests),
                thousands(predicted_manifests),
                thousands(measured_tokens),
                thousands(predicted_tokens),
                UNIQUE * REPLICAS,
            ),
        )
        .target(
            "within ±25 % of the formula (manifests and tokens); no blob request in steady state",
            (0.75..=1.25).contains(&ratio) && (0.75..=1.25).contains(&token_ratio) && blobs == 0,
        ),
    ])
}

/// Markdown: how the row is measured, and what to set for a large cluster.
pub fn method() -> String {
    let usable = token_usable_secs(TOKEN_EXPIRES_SECS);
    format!(
        "8. **Scale beyond one process.** {REPLICAS} `pullgate serve` processes (`--cache-tag-ttl \
   {TAG_TTL_SECS}`), {UNIQUE} images (one repository each) on a token-auth `docker-registry` \
   behind a `FaultProxy` (no fault; it counts), tokens issued with `expires_in` \
   {TOKEN_EXPIRES_SECS} s (pullgate uses one for {usable:.0} s). Every image is reviewed once on \
   each replica (the cold fill), then {CONNS_PER_REPLICA} HTTP/1.1 connections per replica send \
   one review every {pace} ms each, cycling through the images, for {LOAD_SECS} s; registry \
   requests are counted at the proxy and the issuer over that window.\n",
        pace = PACE.as_millis(),
    )
}

/// Requests per minute: `replicas × keys` refreshed once per `period_secs` each.
fn per_minute(replicas: f64, keys: f64, period_secs: f64) -> f64 {
    replicas * keys * 60.0 / period_secs
}

/// Markdown: the formula, and what to set for a 5,000-node cluster (its numbers computed
/// from the formula the row above checks).
pub fn guide() -> String {
    // A 5,000-node cluster: ~100,000 Pods from ~5,000 distinct (image, credential) pairs by
    // tag, ~1,000 by digest, ~3,000 (repository, credential) pairs on token registries.
    let (r, u_tag, u_digest, pairs) = (3.0, 5000.0, 1000.0, 3000.0);
    let tag_ttl = 300.0;
    let digest_ttl = 21600.0;
    let token_usable = token_usable_secs(300);
    let tags = per_minute(r, u_tag, tag_ttl);
    let tags_600 = per_minute(r, u_tag, 600.0);
    let digests = per_minute(r, u_digest, digest_ttl);
    let tokens = per_minute(r, pairs, token_usable);
    format!(
        "
## Scale beyond one process

Every replica keeps its own caches: verdicts (`--cache-max-entries`, TTLs by verdict), and
below them tokens, each endpoint's challenge, and content by digest. Nothing is shared, so
in steady state — the same images reviewed again and again — the registries see, per minute:

- **verdict refreshes** ≈ R × U / TTL × 60 for each kind of verdict: U unique (image,
  credentials, platforms) keys still being reviewed, TTL `--cache-tag-ttl` (pullable by
  tag), `--cache-digest-ttl` (by digest), `--cache-failure-ttl`, `--cache-indeterminate-ttl`.
  A refresh of a tag that did not move is **one** manifest `HEAD` (the manifest, its
  config and its layers are known by digest), or two on a token registry whose token lapsed;
- **token refreshes** ≈ R × P / L × 60: P (repository, credential) pairs on token
  registries, L the token's `expires_in` less max(10 %, 5 s) — renewed by the first probe
  after it lapsed, so L rounds up to a multiple of the verdict TTL;
- **cold images** (new tags, a restarted replica): 1 request on a known anonymous or Basic
  registry, 2 on a token registry for a new repository, plus the blobs with
  `--verify-blobs` (rows 2b).

Row 8 checks the formula against {REPLICAS} replicas. For a **5,000-node cluster** (say
100,000 Pods from {u_tag} (image, credential) pairs by tag, {u_digest} by digest, {pairs}
(repository, credential) pairs on token registries):

- **replicas: 3** (the base runs 2 with a PodDisruptionBudget; a third keeps a rollout or a
  node drain from halving capacity). Throughput is not the reason — one replica serves over
  20,000 cached reviews/s (row 1) — and every replica multiplies the registry load by one.
- **`--cache-tag-ttl 300`** (default): 3 × {u_tag} / 300 s ≈ **{tags} manifest `HEAD`s/min**
  over all registries ({tags_s:.0}/s); `--cache-tag-ttl 600` halves it ({tags_600}/min) at
  the price of noticing a deleted or moved tag up to 10 minutes late. Docker Hub does not
  count `HEAD` requests against its pull limit.
- **`--cache-digest-ttl 21600`** (default): {digests} requests/min for references by digest.
- **tokens**: with 300 s tokens (Docker Hub's), 3 × {pairs} / {token_usable:.0} s ≈ **{tokens}
  token requests/min** at most, only for pairs still reviewed.
- **`--cache-max-entries`**: at least 2 × the keys in use (past the bound, the CLOCK evicts
  verdicts not read since the hand last passed them); a verdict costs ≈ 0.2 KiB (row 4:
  100,000 verdicts ≈ 18 MiB in-process; a real server that probed 100,000 distinct images,
  content caches included, ≈ 47 MiB), so the default **200,000** fits the base's 256 MiB
  limit with the secret store and room for bursts of connections.
- **`--registry-concurrency 32`** (default) per replica and registry: at most 3 × 32 requests
  in flight to one registry after a restart; lower it for a registry with a strict rate
  limit, as refused requests turn verdicts indeterminate (`--on-registry-error`).
- **`--cache-failure-ttl 30`** / **`--cache-indeterminate-ttl 5`** (defaults): a failing
  image is asked about R × 2 times a minute while Pods keep being created for it.
",
        u_tag = thousands(u_tag),
        u_digest = thousands(u_digest),
        pairs = thousands(pairs),
        tags = thousands(tags),
        tags_s = tags / 60.0,
        tags_600 = thousands(tags_600),
        digests = thousands(digests),
        tokens = thousands(tokens),
    )
}
