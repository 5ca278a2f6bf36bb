//! Bounded maps with a lifetime per entry and CLOCK eviction (ARCHITECTURE.md §6): what
//! every cache of many small entries is built on — verdicts ([`crate::cache`]) and what the
//! registry client learns about content (a tag's digest, a manifest, a blob's presence).
//!
//! An entry costs its key, its value, an expiry, a sequence number and a hash-table slot,
//! plus one item in the clock: a fraction of a general-purpose cache's per-entry
//! bookkeeping, which is what lets hundreds of thousands of entries stay small. Keys are
//! meant to be fixed-size (`Copy`), such as [`HashKey`], a SHA-256 over the key's parts.

use std::hash::{BuildHasher as _, Hash, RandomState};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hashbrown::HashTable;

/// Entries the clock hand passes on each insertion, removing those that expired.
const TIDY_STEPS: usize = 2;
/// Shards of a [`ClockMap`]: one short lock per lookup, spread over this many.
const MAX_SHARDS: usize = 64;
/// No shard smaller than this, so that a small bound is not cut into slivers.
const MIN_PER_SHARD: u64 = 16;

/// How `max_entries` is cut into shards: (shards, entries per shard), shards a power of
/// two, shards × per shard ≤ `max_entries`.
pub fn shard_layout(max_entries: u64) -> (usize, usize) {
    let mut shards = MAX_SHARDS;
    while shards > 1 && (shards as u64) * MIN_PER_SHARD > max_entries {
        shards /= 2;
    }
    // Positions in a shard are `u32`: no shard holds more (nor could memory).
    let per_shard = usize::try_from((max_entries / shards as u64).min(u64::from(u32::MAX)))
        .unwrap_or(usize::MAX);
    (shards, per_shard)
}

/// A key as the SHA-256 of its parts, each length-prefixed so that no two different
/// sequences of parts hash the same bytes: 32 bytes whatever the strings it stands for,
/// equal only if every part is (a collision would take a SHA-256 collision).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashKey([u8; 32]);

impl HashKey {
    pub fn of(parts: &[&[u8]]) -> Self {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for part in parts {
            update_part(&mut ctx, part);
        }
        Self(finish(ctx))
    }
}

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = &self.0;
        write!(
            f,
            "HashKey({:02x}{:02x}{:02x}{:02x}…)",
            h[0], h[1], h[2], h[3]
        )
    }
}

/// Feed one length-prefixed part to a SHA-256.
pub fn update_part(ctx: &mut ring::digest::Context, part: &[u8]) {
    ctx.update(&(part.len() as u64).to_le_bytes());
    ctx.update(part);
}

pub fn finish(ctx: ring::digest::Context) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// One entry.
struct Slot<K, V> {
    key: K,
    value: V,
    /// Milliseconds since the owner's epoch.
    expires: u64,
    /// Read since the clock hand last passed it: spared once by eviction.
    referenced: bool,
}

/// One unsynchronised bounded map: the owner holds it under its own lock (with whatever
/// else that lock guards) and passes the time in milliseconds since its epoch.
///
/// The entries live in one dense vector, which is also the clock's ring (the hand walks
/// it); the hash index holds positions into it, not a second copy of each key. Removal
/// moves the last entry into the hole. The vector grows by a quarter at a time, so that
/// a cache near its bound does not hold twice the room it uses.
pub struct Clock<K, V> {
    slots: Vec<Slot<K, V>>,
    index: HashTable<u32>,
    hasher: RandomState,
    hand: usize,
}

impl<K, V> Default for Clock<K, V> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            index: HashTable::new(),
            hasher: RandomState::new(),
            hand: 0,
        }
    }
}

impl<K: Copy + Eq + Hash, V> Clock<K, V> {
    fn find(&self, key: &K) -> Option<usize> {
        let hash = self.hasher.hash_one(key);
        self.index
            .find(hash, |&i| self.slots[i as usize].key == *key)
            .map(|&i| i as usize)
    }

    /// The live value, marked as read; an expired one is removed.
    pub fn get(&mut self, key: &K, now: u64) -> Option<&V> {
        let at = self.find(key)?;
        if self.slots[at].expires <= now {
            self.remove_at(at);
            return None;
        }
        let slot = &mut self.slots[at];
        slot.referenced = true;
        Some(&slot.value)
    }

    /// Insert or replace; at `capacity`, the clock evicts first.
    pub fn insert(&mut self, key: K, value: V, expires: u64, now: u64, capacity: usize) {
        if capacity == 0 {
            return;
        }
        if let Some(at) = self.find(&key) {
            let slot = &mut self.slots[at];
            slot.value = value;
            slot.expires = expires;
            return;
        }
        if self.slots.len() < capacity {
            self.tidy(now);
        }
        while self.slots.len() >= capacity {
            self.evict_one(now);
        }
        if self.slots.len() == self.slots.capacity() {
            let room = (self.slots.len() / 4).max(4);
            self.slots
                .reserve_exact(room.min(capacity - self.slots.len()).max(1));
        }
        let at = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        self.slots.push(Slot {
            key,
            value,
            expires,
            referenced: false,
        });
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index.insert_unique(hasher.hash_one(key), at, |&i| {
            hasher.hash_one(slots[i as usize].key)
        });
    }

    pub fn remove(&mut self, key: &K) {
        if let Some(at) = self.find(key) {
            self.remove_at(at);
        }
    }

    /// Take the entry at `at` out; the last entry moves into its place.
    fn remove_at(&mut self, at: usize) {
        let hash = self.hasher.hash_one(self.slots[at].key);
        if let Ok(entry) = self.index.find_entry(hash, |&i| i as usize == at) {
            entry.remove();
        }
        let last = self.slots.len() - 1;
        if at != last {
            let moved = self.hasher.hash_one(self.slots[last].key);
            if let Some(i) = self.index.find_mut(moved, |&i| i as usize == last) {
                *i = u32::try_from(at).unwrap_or(u32::MAX);
            }
        }
        self.slots.swap_remove(at);
        if self.hand >= self.slots.len() {
            self.hand = 0;
        }
    }

    /// Entries held (expired ones count until they are met or swept).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn clear(&mut self) {
        self.slots = Vec::new();
        self.index = HashTable::new();
        self.hand = 0;
    }

    /// CLOCK eviction: the entry under the hand goes, unless it was read since the hand
    /// last passed it (then the hand clears the mark and moves on); an expired one goes
    /// whatever its mark. Ends within two turns: the first clears every mark.
    fn evict_one(&mut self, now: u64) {
        for _ in 0..=2 * self.slots.len() {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            let slot = &mut self.slots[self.hand];
            if slot.referenced && slot.expires > now {
                slot.referenced = false;
                self.hand += 1;
            } else {
                self.remove_at(self.hand);
                return;
            }
        }
    }

    /// Move the hand a few steps while there is room, dropping what expired, so that the
    /// entry count follows the lifetimes without a sweep.
    fn tidy(&mut self, now: u64) {
        for _ in 0..TIDY_STEPS {
            if self.slots.is_empty() {
                return;
            }
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            if self.slots[self.hand].expires <= now {
                self.remove_at(self.hand);
            } else {
                self.hand += 1;
            }
        }
    }

    pub fn remove_expired(&mut self, now: u64) {
        let mut at = self.slots.len();
        while at > 0 {
            at -= 1;
            if self.slots[at].expires <= now {
                self.remove_at(at);
            }
        }
    }
}

/// Milliseconds since `epoch`, the clock's time.
pub fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// `now + ttl` in the clock's milliseconds, saturating.
pub fn expiry(now: u64, ttl: Duration) -> u64 {
    now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
}

/// A cache's shards, each under its own lock, and the cache's clock: what every cache
/// built on [`Clock`] shares (the verdict cache's shards also hold its probes in flight).
pub struct Shards<S> {
    shards: Box<[Mutex<S>]>,
    /// Entries per shard: shards × this ≤ the cache's bound ([`shard_layout`]).
    per_shard: usize,
    hasher: RandomState,
    epoch: Instant,
}

impl<S: Default> Shards<S> {
    /// Shards for a cache of at most `max_entries` entries.
    pub fn new(max_entries: u64) -> Self {
        let (shards, per_shard) = shard_layout(max_entries);
        Self {
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            per_shard,
            hasher: RandomState::new(),
            epoch: Instant::now(),
        }
    }
}

impl<S> Shards<S> {
    /// The shard `key` lives in, locked.
    pub fn lock<K: Hash>(&self, key: &K) -> MutexGuard<'_, S> {
        let hash = self.hasher.hash_one(key);
        // The high bits: the maps inside the shards use the low ones.
        let index = (hash >> 32) as usize % self.shards.len();
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The cache's time: milliseconds since it was made.
    pub fn now(&self) -> u64 {
        millis_since(self.epoch)
    }

    pub fn per_shard(&self) -> usize {
        self.per_shard
    }

    /// How many shards there are.
    pub fn count(&self) -> usize {
        self.shards.len()
    }

    /// Every shard in turn, each locked while `f` runs.
    pub fn each(&self, mut f: impl FnMut(&mut S)) {
        for shard in self.shards.iter() {
            f(&mut shard.lock().unwrap_or_else(PoisonError::into_inner));
        }
    }
}

/// A sharded [`Clock`] with one lifetime for every entry, safe to share: for caches that
/// need nothing but get and insert.
pub struct ClockMap<K, V> {
    shards: Shards<Clock<K, V>>,
    ttl: Duration,
}

impl<K, V> std::fmt::Debug for ClockMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClockMap")
            .field("shards", &self.shards.count())
            .field("per_shard", &self.shards.per_shard())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl<K: Copy + Eq + Hash, V: Clone> ClockMap<K, V> {
    /// At most `max_entries` entries, each kept `ttl` from its insertion.
    pub fn new(max_entries: u64, ttl: Duration) -> Self {
        Self {
            shards: Shards::new(max_entries),
            ttl,
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        let now = self.shards.now();
        self.shards.lock(key).get(key, now).cloned()
    }

    pub fn contains_key(&self, key: &K) -> bool {
        let now = self.shards.now();
        self.shards.lock(key).get(key, now).is_some()
    }

    pub fn insert(&self, key: K, value: V) {
        let now = self.shards.now();
        let expires = expiry(now, self.ttl);
        self.shards
            .lock(&key)
            .insert(key, value, expires, now, self.shards.per_shard());
    }

    pub fn remove(&self, key: &K) {
        self.shards.lock(key).remove(key);
    }

    /// Entries held (expired ones count until they are met).
    pub fn entry_count(&self) -> u64 {
        let mut count = 0;
        self.shards.each(|clock| count += clock.len() as u64);
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> HashKey {
        HashKey::of(&[b"r.io", b"team/app", &i.to_le_bytes()])
    }

    #[test]
    fn hash_keys_are_length_prefixed() {
        assert_ne!(HashKey::of(&[b"ab", b"c"]), HashKey::of(&[b"a", b"bc"]));
        assert_ne!(HashKey::of(&[b"abc"]), HashKey::of(&[b"abc", b""]));
        assert_eq!(HashKey::of(&[b"a", b"b"]), HashKey::of(&[b"a", b"b"]));
    }

    #[test]
    fn clock_expires_entries_at_their_time() {
        let mut c = Clock::default();
        c.insert(1u8, "a", 100, 0, 8);
        assert_eq!(c.get(&1, 99), Some(&"a"));
        assert_eq!(c.get(&1, 100), None);
        assert!(c.is_empty(), "an expired entry met by a lookup is removed");
    }

    #[test]
    fn clock_evicts_unread_entries_before_read_ones() {
        let mut c = Clock::default();
        for k in 0..4u8 {
            c.insert(k, k, 1_000, 0, 4);
        }
        // Every entry but 2 was read: 2 goes, wherever the hand stands.
        for k in [0, 1, 3] {
            assert!(c.get(&k, 1).is_some());
        }
        c.insert(9, 9, 1_000, 1, 4);
        assert_eq!(c.len(), 4);
        assert!(c.get(&2, 2).is_none());
        for k in [0, 1, 3, 9] {
            assert!(c.get(&k, 2).is_some(), "{k}");
        }
    }

    #[test]
    fn clock_prefers_evicting_expired_entries() {
        let mut c = Clock::default();
        c.insert(0u8, 0, 1_000, 0, 3);
        c.insert(1, 1, 5, 0, 3);
        c.insert(2, 2, 1_000, 0, 3);
        // 0 and 1 were read, but 1 has expired by the insertion: the hand removes 1
        // rather than 2, the one left unread.
        assert!(c.get(&0, 1).is_some());
        assert!(c.get(&1, 1).is_some());
        c.insert(3, 3, 1_000, 10, 3);
        assert!(c.get(&2, 11).is_some());
        assert!(c.get(&1, 11).is_none());
    }

    #[test]
    fn clock_replacing_keeps_one_entry_and_the_order_stays_bounded() {
        let mut c = Clock::default();
        for i in 0..10_000u32 {
            c.insert(i % 10, i, u64::MAX, 0, 16);
        }
        assert_eq!(c.len(), 10);
        assert_eq!(c.get(&3, 0), Some(&9_993));
        for i in 0..10_000u32 {
            c.insert(i, i, u64::MAX, 0, 16);
        }
        assert_eq!(c.len(), 16);
        assert_eq!(c.index.len(), 16);
        for (i, slot) in c.slots.iter().enumerate() {
            assert_eq!(
                c.find(&slot.key),
                Some(i),
                "the index points at every entry"
            );
        }
    }

    /// Random inserts, reads and removals against a plain map: whatever the clock keeps
    /// holds the value last inserted and not yet expired, the index and the slab agree,
    /// and the bound holds.
    #[test]
    fn clock_agrees_with_a_plain_map() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let mut c = Clock::default();
        let mut model = std::collections::HashMap::new();
        for step in 0..50_000u64 {
            let now = step / 10;
            let key = next(300) as u16;
            match next(10) {
                0..=5 => {
                    let expires = now + 1 + next(200);
                    c.insert(key, step, expires, now, 128);
                    model.insert(key, (step, expires));
                }
                6..=8 => {
                    let got = c.get(&key, now).copied();
                    if let Some(v) = got {
                        assert_eq!(model.get(&key).map(|m| m.0), Some(v), "step {step}");
                    }
                    if model.get(&key).is_none_or(|m| m.1 <= now) {
                        assert_eq!(got, None, "step {step}: expired or never inserted");
                    }
                }
                _ => {
                    c.remove(&key);
                    model.remove(&key);
                }
            }
            assert!(c.len() <= 128);
            assert_eq!(c.index.len(), c.len());
        }
        for (i, slot) in c.slots.iter().enumerate() {
            assert_eq!(c.find(&slot.key), Some(i));
        }
        c.remove_expired(u64::MAX);
        assert!(c.is_empty());
        assert!(c.index.is_empty());
    }

    #[test]
    fn zero_capacity_holds_nothing() {
        let mut c = Clock::default();
        c.insert(1u8, 1, u64::MAX, 0, 0);
        assert!(c.is_empty());
    }

    #[test]
    fn map_is_bounded_and_answers_what_it_holds() {
        let m = ClockMap::new(1_000, Duration::from_secs(60));
        for i in 0..5_000 {
            m.insert(key(i), i);
        }
        assert!(m.entry_count() <= 1_000, "{}", m.entry_count());
        assert!(m.entry_count() >= 900, "{}", m.entry_count());
        assert_eq!(m.get(&key(4_999)), Some(4_999));
        assert!(m.contains_key(&key(4_999)));
        m.remove(&key(4_999));
        assert_eq!(m.get(&key(4_999)), None);
    }

    #[test]
    fn map_entries_expire() {
        let m = ClockMap::new(100, Duration::ZERO);
        m.insert(key(1), 1);
        assert_eq!(m.get(&key(1)), None);
    }

    #[test]
    fn shard_layout_respects_the_bound() {
        for max in [0, 1, 15, 16, 17, 100, 1_000, 10_000, 200_000] {
            let (shards, per) = shard_layout(max);
            assert!(shards.is_power_of_two());
            assert!((shards * per) as u64 <= max, "{max}: {shards} × {per}");
        }
        assert_eq!(shard_layout(200_000), (64, 3_125));
        assert_eq!(shard_layout(u64::MAX).1, u32::MAX as usize);
        assert_eq!(shard_layout(16), (1, 16));
    }
}
