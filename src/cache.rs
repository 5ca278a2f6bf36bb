//! Cached probe outcomes (ARCHITECTURE.md §6).
//!
//! The key holds a fingerprint of the exact ordered candidate credentials, so a verdict
//! obtained with one credential never answers for another, nor for an anonymous caller.
//! Concurrent misses on one key run one probe; lifetimes depend on the verdict.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;

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

/// What one probe is about. Two keys are equal only if the reference, the ordered
/// candidate credentials and the platform set are.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    reference: String,
    by_digest: bool,
    credentials: Fingerprint,
    platforms: String,
    image_use: ImageUse,
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
            // Length-prefixed so that no two different lists hash the same bytes. The
            // source label is left out: equal credentials get equal verdicts, and messages
            // name the caller's own secrets, added after the cache.
            for part in [
                c.key.as_bytes(),
                c.username.as_bytes(),
                c.password.as_bytes(),
            ] {
                ctx.update(&(part.len() as u64).to_le_bytes());
                ctx.update(part);
            }
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        Fingerprint::Credentials(out)
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
        Self {
            reference: reference.to_string(),
            by_digest: reference.is_by_digest(),
            credentials: Fingerprint::of(credentials),
            platforms: names.join(","),
            image_use,
        }
    }
}

struct VerdictExpiry(CacheConfig);

impl VerdictExpiry {
    fn ttl(&self, key: &CacheKey, outcome: &Outcome) -> Duration {
        let c = &self.0;
        match outcome.verdict {
            Verdict::Pullable if key.by_digest => c.pullable_digest_ttl,
            Verdict::Pullable => c.pullable_tag_ttl,
            v if v.is_indeterminate() => {
                let floor = outcome
                    .retry_after
                    .unwrap_or_default()
                    .min(c.max_retry_after);
                c.indeterminate_ttl.max(floor)
            }
            _ => c.failure_ttl,
        }
    }
}

impl Expiry<CacheKey, Arc<Outcome>> for VerdictExpiry {
    fn expire_after_create(
        &self,
        key: &CacheKey,
        value: &Arc<Outcome>,
        _now: Instant,
    ) -> Option<Duration> {
        Some(self.ttl(key, value))
    }

    fn expire_after_update(
        &self,
        key: &CacheKey,
        value: &Arc<Outcome>,
        _now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.ttl(key, value))
    }
}

/// The verdict cache, cheap to clone (shared).
#[derive(Clone)]
pub struct VerdictCache {
    inner: Cache<CacheKey, Arc<Outcome>>,
}

impl std::fmt::Debug for VerdictCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerdictCache")
            .field("entries", &self.inner.entry_count())
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
        let inner = Cache::builder()
            .max_capacity(config.max_entries)
            .expire_after(VerdictExpiry(config))
            .build();
        Self { inner }
    }

    /// The cached outcome, or the one `probe` produces; concurrent callers for one key
    /// share a single probe.
    pub async fn get_or_probe<F>(&self, key: CacheKey, probe: F) -> (Arc<Outcome>, Lookup)
    where
        F: Future<Output = Outcome>,
    {
        if let Some(hit) = self.inner.get(&key).await {
            return (hit, Lookup::Hit);
        }
        let entry = self
            .inner
            .entry(key)
            .or_insert_with(async { Arc::new(probe.await) })
            .await;
        let lookup = if entry.is_fresh() {
            Lookup::Miss
        } else {
            Lookup::Hit
        };
        (entry.into_value(), lookup)
    }

    pub fn entry_count(&self) -> u64 {
        self.inner.entry_count()
    }

    /// Apply pending evictions (tests and metrics want exact counts).
    pub async fn run_pending_tasks(&self) {
        self.inner.run_pending_tasks().await;
    }

    pub fn invalidate_all(&self) {
        self.inner.invalidate_all();
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
        assert_eq!(e.ttl(&digest, &ok), Duration::from_secs(6 * 3600));
        assert_eq!(e.ttl(&tag, &ok), Duration::from_secs(300));
        assert_eq!(
            e.ttl(&tag, &Outcome::new(Verdict::NotFound, "")),
            Duration::from_secs(30)
        );
        let mut limited = Outcome::new(Verdict::RateLimited, "");
        assert_eq!(e.ttl(&tag, &limited), Duration::from_secs(5));
        limited.retry_after = Some(Duration::from_secs(60));
        assert_eq!(e.ttl(&tag, &limited), Duration::from_secs(60));
        limited.retry_after = Some(Duration::from_secs(86_400));
        assert_eq!(e.ttl(&tag, &limited), Duration::from_secs(300));
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
            cache.get_or_probe(key.clone(), async move {
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
}
