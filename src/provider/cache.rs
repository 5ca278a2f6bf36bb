//! One provider's credential cache and in-flight executions, as the kubelet keeps them
//! (kubernetes/kubernetes `pkg/credentialprovider/plugin/plugin.go pluginProvider.provide`,
//! `getCachedCredentials`): entries keyed by image, registry or `<global>` as the plugin's
//! `cacheKeyType` says, each with its own expiry, looked up image → registry → global;
//! concurrent lookups of one image share one execution (the kubelet's singleflight).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt as _, Shared};
use tokio::time::Instant;

use super::exec::CacheKeyType;
use super::golang::GoDuration;
use crate::keyring::DockerConfig;

/// `globalCacheKey`: angle brackets keep it apart from any image or registry.
const GLOBAL_KEY: &str = "<global>";
/// `cachePurgeInterval`: expired entries no lookup asks for are dropped this often.
const PURGE_INTERVAL: Duration = Duration::from_secs(15 * 60);

/// What one execution produced: the provider's credentials, or why there are none.
pub type ExecOutcome = Arc<Result<Arc<DockerConfig>, String>>;
/// An execution others can wait on; it runs on its own task and finishes whoever waits.
pub type Flight = Shared<BoxFuture<'static, ExecOutcome>>;

struct Entry {
    config: Arc<DockerConfig>,
    expires_at: Instant,
}

/// Guarded by the provider's mutex.
pub struct State {
    entries: HashMap<String, Entry>,
    inflight: HashMap<String, Flight>,
    last_purge: Instant,
}

impl Default for State {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            inflight: HashMap::new(),
            last_purge: Instant::now(),
        }
    }
}

/// `parseRegistry`: everything before the first `/`, port included.
pub fn registry_of(image: &str) -> &str {
    image.split('/').next().unwrap_or(image)
}

impl State {
    /// `getCachedCredentials`: image, then registry, then global; an entry is good until
    /// `now` is after its expiry.
    pub fn cached(&mut self, image: &str, now: Instant) -> Option<Arc<DockerConfig>> {
        if now.duration_since(self.last_purge) > PURGE_INTERVAL {
            self.entries.retain(|_, e| now <= e.expires_at);
            self.last_purge = now;
        }
        [image, registry_of(image), GLOBAL_KEY]
            .into_iter()
            .find_map(|key| {
                self.entries
                    .get(key)
                    .filter(|e| now <= e.expires_at)
                    .map(|e| e.config.clone())
            })
    }

    pub fn inflight(&self, image: &str) -> Option<Flight> {
        self.inflight.get(image).cloned()
    }

    pub fn start(&mut self, image: &str, flight: Flight) {
        self.inflight.insert(image.to_string(), flight);
    }

    /// The execution for `image` is over: keep its answer as `provide` does, and let the
    /// next lookup start a new one.
    pub fn finish(
        &mut self,
        image: &str,
        answer: Option<(CacheKeyType, Option<GoDuration>, Arc<DockerConfig>)>,
        default_duration: GoDuration,
        now: Instant,
    ) {
        self.inflight.remove(image);
        let Some((key_type, duration, config)) = answer else {
            return;
        };
        // cacheDuration 0: not cached; absent: defaultCacheDuration, and 0 there is not
        // cached either. A negative duration is stored already expired, as in Go.
        let duration = match duration {
            Some(d) if d == GoDuration::ZERO => return,
            Some(d) => d,
            None if default_duration == GoDuration::ZERO => return,
            None => default_duration,
        };
        let expires_at = if duration.is_negative() {
            now.checked_sub(Duration::from_nanos(1)).unwrap_or(now)
        } else {
            now.checked_add(duration.to_std())
                .unwrap_or(now + Duration::from_secs(86400 * 365))
        };
        let key = match key_type {
            CacheKeyType::Image => image.to_string(),
            CacheKeyType::Registry => registry_of(image).to_string(),
            CacheKeyType::Global => GLOBAL_KEY.to_string(),
        };
        self.entries.insert(key, Entry { config, expires_at });
    }
}

/// Turn a spawned execution into a [`Flight`].
pub fn flight(handle: tokio::task::JoinHandle<ExecOutcome>) -> Flight {
    async move {
        handle
            .await
            .unwrap_or_else(|e| Arc::new(Err(format!("the credential provider task failed: {e}"))))
    }
    .boxed()
    .shared()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Arc<DockerConfig> {
        Arc::new(
            DockerConfig::parse_any(br#"{"auths":{"r.io":{"username":"u","password":"p"}}}"#)
                .expect("valid"),
        )
    }

    const MINUTE: GoDuration = GoDuration(60_000_000_000);

    #[test]
    fn a_registry_entry_serves_every_image_of_that_registry_and_no_other() {
        let now = Instant::now();
        let mut s = State::default();
        s.finish(
            "r.io:5000/a",
            Some((CacheKeyType::Registry, None, config())),
            MINUTE,
            now,
        );
        assert!(s.cached("r.io:5000/b/c", now).is_some());
        assert!(s.cached("r.io/a", now).is_none());
    }

    #[test]
    fn a_global_entry_serves_every_image() {
        let now = Instant::now();
        let mut s = State::default();
        s.finish(
            "r.io/a",
            Some((CacheKeyType::Global, None, config())),
            MINUTE,
            now,
        );
        assert!(s.cached("other.io/b", now).is_some());
    }

    #[test]
    fn an_image_entry_serves_that_image_only() {
        let now = Instant::now();
        let mut s = State::default();
        s.finish(
            "r.io/a",
            Some((CacheKeyType::Image, None, config())),
            MINUTE,
            now,
        );
        assert!(s.cached("r.io/a", now).is_some());
        assert!(s.cached("r.io/b", now).is_none());
    }

    #[test]
    fn zero_durations_are_not_cached() {
        let now = Instant::now();
        let mut s = State::default();
        s.finish(
            "r.io/a",
            Some((CacheKeyType::Image, Some(GoDuration::ZERO), config())),
            MINUTE,
            now,
        );
        s.finish(
            "r.io/b",
            Some((CacheKeyType::Image, None, config())),
            GoDuration::ZERO,
            now,
        );
        assert!(s.cached("r.io/a", now).is_none());
        assert!(s.cached("r.io/b", now).is_none());
    }

    #[test]
    fn entries_expire_at_their_own_time() {
        let now = Instant::now();
        let mut s = State::default();
        s.finish(
            "r.io/a",
            Some((CacheKeyType::Image, Some(MINUTE), config())),
            GoDuration::ZERO,
            now,
        );
        s.finish(
            "r.io/b",
            Some((CacheKeyType::Image, Some(GoDuration(-1)), config())),
            MINUTE,
            now,
        );
        assert!(s.cached("r.io/a", now + Duration::from_secs(60)).is_some());
        assert!(s.cached("r.io/a", now + Duration::from_secs(61)).is_none());
        assert!(s.cached("r.io/b", now).is_none());
    }
}
