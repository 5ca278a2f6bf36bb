//! Cached probe outcomes (ARCHITECTURE.md §6).
//!
//! The key holds a fingerprint of the exact ordered candidate credentials, so a verdict
//! obtained with one credential never answers for another, nor for an anonymous caller.
//! Concurrent misses on one key run one probe; lifetimes depend on the verdict.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::{self, Clock, Shards, finish, update_part};
use crate::digest::Digest;
use crate::keyring::Credential;
use crate::platform::Platform;
use crate::reference::Reference;
use crate::registry::ImageUse;
use crate::verdict::{Outcome, Verdict};

/// Lifetimes per kind of verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Entry-count bound.
    pub max_entries: u64,
    /// `pullable` by digest: content-addressed, it can only disappear by deletion.
    pub pullable_digest_ttl: Duration,
    /// `pullable` by tag: tags move.
    pub pullable_tag_ttl: Duration,
    /// Definitive failures: short, so a user who pushes the missing tag is not kept waiting.
    pub failure_ttl: Duration,
    /// Indeterminate outcomes (outage, 429, timeout); `Retry-After` is a floor, capped at
    /// `max_retry_after`.
    pub indeterminate_ttl: Duration,
    pub max_retry_after: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_entries: 200_000,
            pullable_digest_ttl: Duration::from_secs(6 * 3600),
            pullable_tag_ttl: Duration::from_secs(5 * 60),
            failure_ttl: Duration::from_secs(30),
            indeterminate_ttl: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

/// What one probe is about: a SHA-256 over the normalized reference, the ordered
/// candidate credentials' [`Fingerprint`], the sorted platform set and the image use, so
/// two keys are equal only if all of those are (a collision would take a SHA-256
/// collision). 33 bytes, `Copy`: the cache holds hundreds of thousands of them.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey {
    hash: [u8; 32],
    /// Whether the reference names a digest: a pullable verdict then lives longer.
    by_digest: bool,
}

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = &self.hash;
        write!(
            f,
            "CacheKey({:02x}{:02x}{:02x}{:02x}…{})",
            h[0],
            h[1],
            h[2],
            h[3],
            if self.by_digest { ", by digest" } else { "" }
        )
    }
}

/// A SHA-256 over the ordered candidate credentials, or anonymous.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Fingerprint {
    Anonymous,
    Credentials([u8; 32]),
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fingerprint::Anonymous => f.write_str("anonymous"),
            Fingerprint::Credentials(h) => write!(
                f,
                "credentials:{:02x}{:02x}{:02x}{:02x}…",
                h[0], h[1], h[2], h[3]
            ),
        }
    }
}

impl Fingerprint {
    pub fn of(credentials: &[Credential]) -> Self {
        if credentials.is_empty() {
            return Fingerprint::Anonymous;
        }
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for c in credentials {
            // The source label is left out: equal credentials get equal verdicts, and
            // messages name the caller's own secrets, added after the cache.
            for part in [
                c.key.as_bytes(),
                c.username.as_bytes(),
                c.password.as_bytes(),
            ] {
                update_part(&mut ctx, part);
            }
        }
        Fingerprint::Credentials(finish(ctx))
    }
}

impl CacheKey {
    pub fn new(
        reference: &Reference,
        credentials: &[Credential],
        platforms: &[Platform],
        image_use: ImageUse,
    ) -> Self {
        let mut names: Vec<String> = platforms.iter().map(ToString::to_string).collect();
        names.sort();
        names.dedup();
        let by_digest = reference.is_by_digest();
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        update_part(&mut ctx, reference.to_string().as_bytes());
        update_part(&mut ctx, &[u8::from(by_digest)]);
        match Fingerprint::of(credentials) {
            Fingerprint::Anonymous => update_part(&mut ctx, b"anonymous"),
            Fingerprint::Credentials(h) => update_part(&mut ctx, &h),
        }
        update_part(&mut ctx, &(names.len() as u64).to_le_bytes());
        for name in &names {
            update_part(&mut ctx, name.as_bytes());
        }
        update_part(
            &mut ctx,
            match image_use {
                ImageUse::Container => b"container",
                ImageUse::Volume => b"volume",
            },
        );
        Self {
            hash: finish(ctx),
            by_digest,
        }
    }
}

/// A cached outcome, compact: nine in ten cached verdicts are `pullable` by a SHA-256
/// digest with nothing to add, kept as the digest's 32 bytes; anything else (a note, a
/// message, another verdict) keeps its whole [`Outcome`].
#[derive(Clone)]
enum Stored {
    Pullable([u8; 32]),
    Other(Arc<Outcome>),
}

impl Stored {
    fn of(outcome: Outcome) -> Self {
        match outcome {
            Outcome {
                verdict: Verdict::Pullable,
                digest: Some(Digest::Sha256(digest)),
                message,
                retry_after: None,
                note: None,
            } if message.is_empty() => Stored::Pullable(digest),
            outcome => Stored::Other(Arc::new(outcome)),
        }
    }

    fn outcome(&self) -> Arc<Outcome> {
        match self {
            Stored::Pullable(digest) => Arc::new(Outcome::pullable(Digest::Sha256(*digest))),
            Stored::Other(outcome) => outcome.clone(),
        }
    }

    fn verdict(&self) -> Verdict {
        match self {
            Stored::Pullable(_) => Verdict::Pullable,
            Stored::Other(outcome) => outcome.verdict,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Stored::Pullable(_) => None,
            Stored::Other(outcome) => outcome.retry_after,
        }
    }
}

struct VerdictExpiry(CacheConfig);

impl VerdictExpiry {
    fn ttl(&self, key: &CacheKey, verdict: Verdict, retry_after: Option<Duration>) -> Duration {
        let c = &self.0;
        match verdict {
            Verdict::Pullable if key.by_digest => c.pullable_digest_ttl,
            Verdict::Pullable => c.pullable_tag_ttl,
            v if v.is_indeterminate() => {
                let floor = retry_after.unwrap_or_default().min(c.max_retry_after);
                c.indeterminate_ttl.max(floor)
            }
            _ => c.failure_ttl,
        }
    }
}

/// A probe in flight: its waiters hold a receiver; a dropped sender (the probing caller
/// was cancelled) sends them back to look again.
#[derive(Clone)]
enum Flight {
    Running,
    Done(Stored),
}

/// One shard: its cached verdicts and the probes in flight, under one lock.
#[derive(Default)]
struct Shard {
    verdicts: Clock<CacheKey, Stored>,
    flights: HashMap<CacheKey, watch::Receiver<Flight>>,
}

/// What one look at the shard decided.
enum Step {
    Hit(Arc<Outcome>),
    Wait(watch::Receiver<Flight>),
    Probe(FlightGuard),
}

/// Held by the caller that runs the probe; dropped unfinished (cancelled), it takes the
/// flight away and its waiters look again.
struct FlightGuard {
    cache: Arc<Inner>,
    key: CacheKey,
    tx: watch::Sender<Flight>,
    rx: watch::Receiver<Flight>,
}

impl FlightGuard {
    fn finish(self, stored: Stored) {
        let now = self.cache.shards.now();
        let ttl = self
            .cache
            .expiry
            .ttl(&self.key, stored.verdict(), stored.retry_after());
        let expires = clock::expiry(now, ttl);
        {
            let mut shard = self.cache.shards.lock(&self.key);
            shard.verdicts.insert(
                self.key,
                stored.clone(),
                expires,
                now,
                self.cache.shards.per_shard(),
            );
            self.land(&mut shard);
        }
        self.tx.send_replace(Flight::Done(stored));
    }

    fn land(&self, shard: &mut Shard) {
        if shard
            .flights
            .get(&self.key)
            .is_some_and(|rx| rx.same_channel(&self.rx))
        {
            shard.flights.remove(&self.key);
        }
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let mut shard = self.cache.shards.lock(&self.key);
        self.land(&mut shard);
    }
}

struct Inner {
    shards: Shards<Shard>,
    expiry: VerdictExpiry,
}

/// The verdict cache, cheap to clone (shared): bounded by entry count, each entry with
/// the lifetime of its verdict, concurrent misses on one key sharing one probe.
///
/// Its own rather than moka's (ARCHITECTURE.md §6): a cached verdict costs its key, its
/// compact value and a hash-table slot, about a third of what moka's per-entry
/// bookkeeping alone takes.
#[derive(Clone)]
pub struct VerdictCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for VerdictCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerdictCache")
            .field("entries", &self.entry_count())
            .finish()
    }
}

/// Whether an answer came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Hit,
    Miss,
}

impl VerdictCache {
    pub fn new(config: CacheConfig) -> Self {
        let inner = Inner {
            shards: Shards::new(config.max_entries),
            expiry: VerdictExpiry(config),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The cached outcome, or the one the future `probe` makes produces; concurrent
    /// callers for one key share a single probe (they get its outcome as a
    /// [`Lookup::Hit`]). When the caller running the probe is dropped, one of its waiters
    /// runs its own.
    ///
    /// The probe is made, and boxed, only on a miss: a registry probe's future is many
    /// kilobytes, and carried inline it made every cached lookup's future that large
    /// (moved whole into `join_all` for each image of a review).
    pub async fn get_or_probe<P, F>(&self, key: CacheKey, probe: P) -> (Arc<Outcome>, Lookup)
    where
        P: FnOnce() -> F,
        F: Future<Output = Outcome>,
    {
        loop {
            match self.step(key) {
                Step::Hit(outcome) => return (outcome, Lookup::Hit),
                Step::Probe(guard) => {
                    let stored = Stored::of(Box::pin(probe()).await);
                    let outcome = stored.outcome();
                    guard.finish(stored);
                    return (outcome, Lookup::Miss);
                }
                Step::Wait(mut rx) => {
                    if let Ok(flight) = rx.wait_for(|f| matches!(f, Flight::Done(_))).await
                        && let Flight::Done(stored) = &*flight
                    {
                        return (stored.outcome(), Lookup::Hit);
                    }
                    // The probing caller was cancelled: its guard took the flight away.
                }
            }
        }
    }

    fn step(&self, key: CacheKey) -> Step {
        let mut shard = self.inner.shards.lock(&key);
        if let Some(stored) = shard.verdicts.get(&key, self.inner.shards.now()) {
            return Step::Hit(stored.outcome());
        }
        if let Some(rx) = shard.flights.get(&key) {
            return Step::Wait(rx.clone());
        }
        let (tx, rx) = watch::channel(Flight::Running);
        shard.flights.insert(key, rx.clone());
        Step::Probe(FlightGuard {
            cache: self.inner.clone(),
            key,
            tx,
            rx,
        })
    }

    /// Cached entries (expired ones count until they are met or swept).
    pub fn entry_count(&self) -> u64 {
        let mut count = 0;
        self.inner
            .shards
            .each(|shard| count += shard.verdicts.len() as u64);
        count
    }

    /// Sweep expired entries now (tests and measurements want exact counts).
    pub async fn run_pending_tasks(&self) {
        let now = self.inner.shards.now();
        self.inner
            .shards
            .each(|shard| shard.verdicts.remove_expired(now));
    }

    pub fn invalidate_all(&self) {
        self.inner.shards.each(|shard| shard.verdicts.clear());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn cred(user: &str, pass: &str) -> Credential {
        Credential {
            source: "s".into(),
            key: "r.io".into(),
            username: user.into(),
            password: pass.into(),
        }
    }

    #[test]
    fn keys_differ_by_credential_and_anonymous() {
        let r = Reference::parse("r.io/app:1").expect("valid");
        let p = [Platform::linux_amd64()];
        let a = CacheKey::new(&r, &[cred("a", "1")], &p, ImageUse::Container);
        let b = CacheKey::new(&r, &[cred("a", "2")], &p, ImageUse::Container);
        let anon = CacheKey::new(&r, &[], &p, ImageUse::Container);
        assert_ne!(a, b);
        assert_ne!(a, anon);
        assert_ne!(
            CacheKey::new(
                &r,
                &[cred("a", "1"), cred("b", "2")],
                &p,
                ImageUse::Container
            ),
            CacheKey::new(
                &r,
                &[cred("b", "2"), cred("a", "1")],
                &p,
                ImageUse::Container
            )
        );
        assert_eq!(
            a,
            CacheKey::new(&r, &[cred("a", "1")], &p, ImageUse::Container)
        );
    }

    #[test]
    fn platform_order_does_not_matter() {
        let r = Reference::parse("r.io/app:1").expect("valid");
        let x: Platform = "linux/arm64".parse().expect("valid");
        assert_eq!(
            CacheKey::new(
                &r,
                &[],
                &[Platform::linux_amd64(), x.clone()],
                ImageUse::Container
            ),
            CacheKey::new(&r, &[], &[x, Platform::linux_amd64()], ImageUse::Container)
        );
    }

    #[test]
    fn fingerprint_debug_hides_the_hash() {
        let printed = format!("{:?}", Fingerprint::of(&[cred("alice", "hunter2")]));
        assert!(printed.starts_with("credentials:"));
    }

    fn ttl(e: &VerdictExpiry, key: &CacheKey, outcome: &Outcome) -> Duration {
        let stored = Stored::of(outcome.clone());
        assert_eq!(*stored.outcome(), *outcome, "stored without loss");
        e.ttl(key, stored.verdict(), stored.retry_after())
    }

    #[test]
    fn lifetimes_follow_the_verdict() {
        let e = VerdictExpiry(CacheConfig::default());
        let tag = CacheKey::new(
            &Reference::parse("r.io/a:1").expect("valid"),
            &[],
            &[],
            ImageUse::Container,
        );
        let digest = CacheKey::new(
            &Reference::parse(
                "r.io/a@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            )
            .expect("valid"),
            &[],
            &[],
            ImageUse::Container,
        );
        let ok = Outcome::pullable(crate::digest::Digest::sha256_of(b"x"));
        assert_eq!(ttl(&e, &digest, &ok), Duration::from_secs(6 * 3600));
        assert_eq!(ttl(&e, &tag, &ok), Duration::from_secs(300));
        assert_eq!(
            ttl(&e, &tag, &Outcome::new(Verdict::NotFound, "")),
            Duration::from_secs(30)
        );
        let mut limited = Outcome::new(Verdict::RateLimited, "");
        assert_eq!(ttl(&e, &tag, &limited), Duration::from_secs(5));
        limited.retry_after = Some(Duration::from_secs(60));
        assert_eq!(ttl(&e, &tag, &limited), Duration::from_secs(60));
        limited.retry_after = Some(Duration::from_secs(86_400));
        assert_eq!(ttl(&e, &tag, &limited), Duration::from_secs(300));
    }

    #[tokio::test]
    async fn concurrent_misses_run_one_probe() {
        let cache = VerdictCache::new(CacheConfig::default());
        let key = CacheKey::new(
            &Reference::parse("r.io/a:1").expect("valid"),
            &[],
            &[],
            ImageUse::Container,
        );
        let probes = Arc::new(AtomicUsize::new(0));
        let calls = (0..50).map(|_| {
            let probes = probes.clone();
            cache.get_or_probe(key, || async move {
                probes.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                Outcome::pullable(crate::digest::Digest::sha256_of(b"x"))
            })
        });
        let results = futures::future::join_all(calls).await;
        assert_eq!(probes.load(Ordering::SeqCst), 1);
        assert_eq!(
            results.iter().filter(|(_, l)| *l == Lookup::Miss).count(),
            1
        );
    }

    fn key(image: &str, credentials: &[Credential]) -> CacheKey {
        CacheKey::new(
            &Reference::parse(image).expect("valid"),
            credentials,
            &[Platform::linux_amd64()],
            ImageUse::Container,
        )
    }

    #[test]
    fn keys_differ_by_every_part() {
        let r = Reference::parse("r.io/app:1").expect("valid");
        let amd64 = [Platform::linux_amd64()];
        let base = CacheKey::new(&r, &[], &amd64, ImageUse::Container);
        assert_ne!(base, CacheKey::new(&r, &[], &amd64, ImageUse::Volume));
        assert_ne!(base, CacheKey::new(&r, &[], &[], ImageUse::Container));
        let arm: Platform = "linux/arm64".parse().expect("valid");
        assert_ne!(base, CacheKey::new(&r, &[], &[arm], ImageUse::Container));
        assert_ne!(base, key("r.io/app:2", &[]));
        assert_ne!(base, key("r.io/app2:1", &[]));
        let digest = key(
            "r.io/app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            &[],
        );
        assert!(digest.by_digest && !base.by_digest);
    }

    /// 200,000 keys over similar references and credentials: all distinct.
    #[test]
    fn distinct_keys_never_collide() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..100_000 {
            let image = format!("r{}.io/team-{}/app-{}:v{}", i % 40, i % 500, i / 8, i % 8);
            assert!(seen.insert(key(&image, &[])));
            assert!(seen.insert(key(&image, &[cred("robot", &i.to_string())])));
        }
        assert_eq!(seen.len(), 200_000);
    }

    #[test]
    fn outcomes_are_stored_without_loss() {
        let digest = crate::digest::Digest::sha256_of(b"x");
        let mut noted = Outcome::pullable(digest.clone());
        noted.note = Some("lacks linux/arm64".into());
        let mut with_message = Outcome::pullable(digest.clone());
        with_message.message = "resolved through a mirror".into();
        let mut other_digest = Outcome::pullable(
            crate::digest::Digest::parse(&format!("sha512:{}", "ab".repeat(64))).expect("digest"),
        );
        other_digest.note = Some("n".into());
        let mut limited = Outcome::new(Verdict::RateLimited, "429");
        limited.retry_after = Some(Duration::from_secs(7));
        for outcome in [
            Outcome::pullable(digest),
            noted,
            with_message,
            other_digest,
            limited,
            Outcome::new(Verdict::NotFound, "tag not found"),
        ] {
            assert_eq!(*Stored::of(outcome.clone()).outcome(), outcome);
        }
        assert!(matches!(
            Stored::of(Outcome::pullable(crate::digest::Digest::sha256_of(b"y"))),
            Stored::Pullable(_)
        ));
        assert!(matches!(
            Stored::of({
                let mut o = Outcome::pullable(crate::digest::Digest::sha256_of(b"y"));
                o.note = Some("lacks linux/arm64".into());
                o
            }),
            Stored::Other(_)
        ));
    }

    #[tokio::test]
    async fn a_verdict_answers_only_for_its_own_credentials() {
        let cache = VerdictCache::new(CacheConfig::default());
        let alice = [cred("alice", "1")];
        let (first, lookup) = cache
            .get_or_probe(key("r.io/a:1", &alice), || async {
                Outcome::pullable(crate::digest::Digest::sha256_of(b"x"))
            })
            .await;
        assert_eq!((first.verdict, lookup), (Verdict::Pullable, Lookup::Miss));
        let (again, lookup) = cache
            .get_or_probe(key("r.io/a:1", &alice), || async {
                Outcome::new(Verdict::NotFound, "not asked")
            })
            .await;
        assert_eq!((again, lookup), (first, Lookup::Hit));
        for other in [&[cred("mallory", "2")][..], &[]] {
            let (outcome, lookup) = cache
                .get_or_probe(key("r.io/a:1", other), || async {
                    Outcome::new(Verdict::Unauthorized, "refused")
                })
                .await;
            assert_eq!(
                (outcome.verdict, lookup),
                (Verdict::Unauthorized, Lookup::Miss)
            );
        }
        cache.run_pending_tasks().await;
        assert_eq!(cache.entry_count(), 3);
        cache.invalidate_all();
        cache.run_pending_tasks().await;
        assert_eq!(cache.entry_count(), 0);
        let (_, lookup) = cache
            .get_or_probe(key("r.io/a:1", &alice), || async {
                Outcome::new(Verdict::NotFound, "gone")
            })
            .await;
        assert_eq!(lookup, Lookup::Miss);
    }

    #[tokio::test]
    async fn the_entry_bound_is_kept() {
        let cache = VerdictCache::new(CacheConfig {
            max_entries: 100,
            ..CacheConfig::default()
        });
        for i in 0..1_000 {
            let image = format!("r.io/app-{i}:1");
            cache
                .get_or_probe(key(&image, &[]), || async {
                    Outcome::pullable(crate::digest::Digest::sha256_of(image.as_bytes()))
                })
                .await;
        }
        cache.run_pending_tasks().await;
        assert!(cache.entry_count() <= 100, "{}", cache.entry_count());
        assert!(cache.entry_count() > 0);
    }

    #[tokio::test]
    async fn an_expired_verdict_is_probed_again() {
        let cache = VerdictCache::new(CacheConfig {
            failure_ttl: Duration::from_millis(50),
            ..CacheConfig::default()
        });
        let k = key("r.io/a:1", &[]);
        let probe = || async { Outcome::new(Verdict::NotFound, "no tag") };
        assert_eq!(cache.get_or_probe(k, probe).await.1, Lookup::Miss);
        assert_eq!(cache.get_or_probe(k, probe).await.1, Lookup::Hit);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(cache.get_or_probe(k, probe).await.1, Lookup::Miss);
        // A pullable verdict by tag (5 minutes by default) is still there.
        let p = key("r.io/b:1", &[]);
        let ok = || async { Outcome::pullable(crate::digest::Digest::sha256_of(b"b")) };
        assert_eq!(cache.get_or_probe(p, ok).await.1, Lookup::Miss);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(cache.get_or_probe(p, ok).await.1, Lookup::Hit);
    }

    #[tokio::test]
    async fn a_cancelled_probe_hands_over_to_a_waiter() {
        let cache = VerdictCache::new(CacheConfig::default());
        let k = key("r.io/a:1", &[]);
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let leader = tokio::spawn({
            let cache = cache.clone();
            async move {
                cache
                    .get_or_probe(k, || async move {
                        let _ = started_tx.send(());
                        std::future::pending::<Outcome>().await
                    })
                    .await
            }
        });
        started_rx.await.expect("the first probe runs");
        let probes = Arc::new(AtomicUsize::new(0));
        let waiter = tokio::spawn({
            let (cache, probes) = (cache.clone(), probes.clone());
            async move {
                cache
                    .get_or_probe(k, || async move {
                        probes.fetch_add(1, Ordering::SeqCst);
                        Outcome::new(Verdict::NotFound, "no tag")
                    })
                    .await
            }
        });
        tokio::task::yield_now().await;
        leader.abort();
        let (outcome, lookup) = waiter.await.expect("the waiter finishes");
        assert_eq!(
            (outcome.verdict, lookup, probes.load(Ordering::SeqCst)),
            (Verdict::NotFound, Lookup::Miss, 1)
        );
        assert_eq!(cache.get_or_probe(k, probe_never).await.1, Lookup::Hit);
    }

    async fn probe_never() -> Outcome {
        panic!("a cached verdict is not probed again")
    }

    #[tokio::test]
    async fn a_hit_does_not_even_make_the_probe() {
        let cache = VerdictCache::new(CacheConfig::default());
        let k = key("r.io/made:1", &[]);
        let (_, lookup) = cache
            .get_or_probe(k, || async { Outcome::new(Verdict::NotFound, "no") })
            .await;
        assert_eq!(lookup, Lookup::Miss);
        let never = || -> std::future::Ready<Outcome> { panic!("the probe was made on a hit") };
        assert_eq!(cache.get_or_probe(k, never).await.1, Lookup::Hit);
    }

    #[tokio::test]
    async fn eviction_spares_a_verdict_that_is_read() {
        let cache = VerdictCache::new(CacheConfig {
            max_entries: 16,
            ..CacheConfig::default()
        });
        assert_eq!(cache.inner.shards.count(), 1);
        let ok = |i: usize| async move {
            Outcome::pullable(crate::digest::Digest::sha256_of(&i.to_le_bytes()))
        };
        let hot = key("r.io/hot:1", &[]);
        cache.get_or_probe(hot, || ok(0)).await;
        for i in 1..100 {
            let image = format!("r.io/cold-{i}:1");
            cache.get_or_probe(key(&image, &[]), || ok(i)).await;
            assert_eq!(cache.get_or_probe(hot, probe_never).await.1, Lookup::Hit);
            assert!(cache.entry_count() <= 16);
        }
        // The oldest unread entry went first.
        assert_eq!(
            cache
                .get_or_probe(key("r.io/cold-1:1", &[]), || ok(1))
                .await
                .1,
            Lookup::Miss
        );
    }

    #[tokio::test]
    async fn small_bounds_are_exact() {
        for max in [0, 1, 15, 17, 1000] {
            let cache = VerdictCache::new(CacheConfig {
                max_entries: max,
                ..CacheConfig::default()
            });
            for i in 0..3000 {
                let image = format!("r.io/app-{i}:1");
                cache
                    .get_or_probe(key(&image, &[]), || async {
                        Outcome::new(Verdict::NotFound, "")
                    })
                    .await;
            }
            assert!(cache.entry_count() <= max, "{max}: {}", cache.entry_count());
            assert!(
                cache.entry_count() >= max.min(1000) * 9 / 10,
                "{max}: {}",
                cache.entry_count()
            );
        }
    }

    #[tokio::test]
    async fn expired_verdicts_leave_the_count() {
        let cache = VerdictCache::new(CacheConfig {
            failure_ttl: Duration::from_millis(50),
            ..CacheConfig::default()
        });
        for i in 0..100 {
            let image = format!("r.io/app-{i}:1");
            cache
                .get_or_probe(key(&image, &[]), || async {
                    Outcome::new(Verdict::NotFound, "")
                })
                .await;
        }
        cache
            .get_or_probe(key("r.io/kept:1", &[]), || async {
                Outcome::pullable(crate::digest::Digest::sha256_of(b"k"))
            })
            .await;
        assert_eq!(cache.entry_count(), 101);
        tokio::time::sleep(Duration::from_millis(300)).await;
        cache.run_pending_tasks().await;
        assert_eq!(cache.entry_count(), 1);
    }
}
