//! One logical database (as chosen by SELECT) within one shard.
//!
//! [`Db`] wraps a [`Dict`] with the rules every command relies on: an expired
//! key is never visible (lazy expiry on access), access updates the LRU clock,
//! and the count of keys with a TTL is kept for INFO keyspace.

use super::blocking::Waiter;
use super::dict::Dict;
use super::expiry::{Cycle, Wheel};
use super::value::{Entry, SmallBytes, Value};
use super::watch::{WatchFlag, Watcher};
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// The LRU clock: seconds, wrapped to 24 bits as in Redis.
pub fn lru_clock(now_ms: u64) -> u32 {
    ((now_ms / 1000) & LRU_CLOCK_MAX as u64) as u32
}

/// Largest LRU clock value.
pub const LRU_CLOCK_MAX: u32 = (1 << 24) - 1;

/// Idle seconds of a key whose access clock is `lru`.
pub fn idle_seconds(lru: u32, now_ms: u64) -> u64 {
    let now = lru_clock(now_ms);
    if now >= lru {
        (now - lru) as u64
    } else {
        (LRU_CLOCK_MAX - lru + now) as u64
    }
}

/// Counters a database keeps for INFO.
#[derive(Default, Debug, Clone, Copy)]
pub struct DbStats {
    /// Keys removed because their TTL passed.
    pub expired_keys: u64,
    /// Lookups that found a key.
    pub keyspace_hits: u64,
    /// Lookups that found nothing.
    pub keyspace_misses: u64,
}

/// A database: the keys of one SELECT index that live on this shard.
#[derive(Default)]
pub struct Db {
    dict: Dict,
    expires: usize,
    /// Sum of the TTLs' absolute times, for INFO's avg_ttl.
    expire_sum: u128,
    /// Active-expiry index: the dict's segments by next deadline.
    wheel: Wheel,
    /// Counters.
    pub stats: DbStats,
    /// Writes so far, for `rdb_changes_since_last_save` and save points.
    pub dirty: u64,
    /// Clients blocked on keys of this database, per key, in arrival order.
    pub blocked: HashMap<Vec<u8>, VecDeque<Arc<Waiter>>>,
    /// Blocked-on keys written since the shard last served them.
    ready: Vec<Vec<u8>>,
    /// Clients watching keys of this database (WATCH), per key.
    watched: HashMap<Vec<u8>, Vec<Watcher>>,
}

thread_local! {
    /// Set when any database of this shard has a ready key.
    static ANY_READY: Cell<bool> = const { Cell::new(false) };
}

/// True (and reset) when some database of this shard marked a key ready.
pub fn take_any_ready() -> bool {
    ANY_READY.with(|r| r.replace(false))
}

impl Db {
    /// Raises the flags of the clients watching `key`, which was just
    /// written or deleted.
    #[inline]
    fn touch_watched(&mut self, key: &[u8]) {
        if self.watched.is_empty() {
            return;
        }
        let Some(ws) = self.watched.get_mut(key) else {
            return;
        };
        let stored = self.dict.get(key).is_some();
        for w in ws {
            if w.expired && !stored {
                // The expired key was deleted: no logical change.
                w.expired = false;
                continue;
            }
            w.flag.raise();
        }
    }

    /// FLUSHDB / FLUSHALL / SWAPDB: raises the flags of the clients watching
    /// keys that this database holds, or that `replaced_with` will put in
    /// its place (as Redis's `touchAllWatchedKeysInDb`).
    pub fn touch_all_watched(&mut self, replaced_with: Option<&Db>, now_ms: u64) {
        for (key, ws) in self.watched.iter_mut() {
            let here = self.dict.get(key).is_some();
            let there = replaced_with.and_then(|d| d.dict.get(key));
            if !here && there.is_none() {
                continue;
            }
            let there_expired = there.is_some_and(|e| Self::is_expired(e, now_ms));
            for w in ws.iter_mut() {
                if w.expired {
                    if there.is_none() {
                        w.expired = false;
                        continue;
                    }
                    if there_expired {
                        continue;
                    }
                } else if !here && there_expired {
                    w.expired = true;
                    continue;
                }
                w.flag.raise();
            }
        }
    }

    /// WATCH: registers `flag` on `key`.
    pub fn watch(&mut self, key: &[u8], flag: Arc<WatchFlag>, now_ms: u64) {
        let expired = self
            .dict
            .get(key)
            .is_some_and(|e| Self::is_expired(e, now_ms));
        self.watched
            .entry(key.to_vec())
            .or_default()
            .push(Watcher { flag, expired });
    }

    /// Unregisters `flag` from `key`.
    pub fn unwatch(&mut self, key: &[u8], flag: &Arc<WatchFlag>) {
        if let Some(ws) = self.watched.get_mut(key) {
            ws.retain(|w| !Arc::ptr_eq(&w.flag, flag));
            if ws.is_empty() {
                self.watched.remove(key);
            }
        }
    }

    /// At EXEC: unregisters `flag` from `key` and returns true if the key
    /// expired since it was watched (which fails the EXEC, as in Redis 7.0).
    pub fn unwatch_expired(&mut self, key: &[u8], flag: &Arc<WatchFlag>, now_ms: u64) -> bool {
        let was_expired = self
            .watched
            .get(key)
            .and_then(|ws| ws.iter().find(|w| Arc::ptr_eq(&w.flag, flag)))
            .is_some_and(|w| w.expired);
        self.unwatch(key, flag);
        !was_expired
            && self
                .dict
                .get(key)
                .is_some_and(|e| Self::is_expired(e, now_ms))
    }

    /// Hands the watchers of this database to `other` and takes its own
    /// (SWAPDB swaps data, while watchers stay with the database number).
    pub fn swap_watchers(&mut self, other: &mut Db) {
        std::mem::swap(&mut self.watched, &mut other.watched);
    }

    /// Notes that `key` was written, so clients blocked on it get served.
    #[inline]
    pub fn mark_ready(&mut self, key: &[u8]) {
        if !self.blocked.is_empty()
            && self.blocked.contains_key(key)
            && !self.ready.iter().any(|k| k == key)
        {
            self.ready.push(key.to_vec());
            ANY_READY.with(|r| r.set(true));
        }
    }

    /// Takes one key marked ready.
    pub fn take_ready(&mut self) -> Option<Vec<u8>> {
        self.ready.pop()
    }

    /// Queues a blocked client on `key`.
    pub fn add_waiter(&mut self, key: &[u8], w: Arc<Waiter>) {
        self.blocked.entry(key.to_vec()).or_default().push_back(w);
    }

    /// Number of keys, including expired ones not yet reclaimed.
    pub fn len(&self) -> usize {
        self.dict.len()
    }

    /// True when the database holds no keys.
    pub fn is_empty(&self) -> bool {
        self.dict.is_empty()
    }

    /// Number of keys with a TTL.
    pub fn expires(&self) -> usize {
        self.expires
    }

    /// Average remaining TTL in milliseconds, as INFO keyspace reports it.
    pub fn avg_ttl(&self, now_ms: u64) -> u64 {
        if self.expires == 0 {
            return 0;
        }
        let avg = (self.expire_sum / self.expires as u128) as u64;
        avg.saturating_sub(now_ms)
    }

    /// The underlying dict, for scans and snapshots.
    pub fn dict(&self) -> &Dict {
        &self.dict
    }

    /// The underlying dict, to begin and advance snapshots.
    pub(crate) fn dict_mut(&mut self) -> &mut Dict {
        &mut self.dict
    }

    fn is_expired(e: &Entry, now_ms: u64) -> bool {
        e.expire_at != 0 && e.expire_at <= now_ms
    }

    /// Removes `key` if it has expired; returns true if it did.
    fn expire_if_needed(&mut self, key: &[u8], now_ms: u64) -> bool {
        match self.dict.get(key) {
            Some(e) if Self::is_expired(e, now_ms) => {
                self.remove(key);
                self.stats.expired_keys += 1;
                true
            }
            _ => false,
        }
    }

    /// Looks a key up without touching its access clock or hit counters.
    pub fn peek(&mut self, key: &[u8], now_ms: u64) -> Option<&Entry> {
        self.expire_if_needed(key, now_ms);
        self.dict.get(key)
    }

    /// Looks a key up for a read command: counts a hit or miss and, unless
    /// `touch` is false, updates the access clock.
    pub fn lookup(&mut self, key: &[u8], now_ms: u64, touch: bool) -> Option<&mut Entry> {
        self.expire_if_needed(key, now_ms);
        super::evict::record_read(key);
        match self.dict.get_mut(key) {
            Some(e) => {
                self.stats.keyspace_hits += 1;
                if touch {
                    super::evict::touch(&mut e.lru, now_ms);
                }
                Some(e)
            }
            None => {
                self.stats.keyspace_misses += 1;
                None
            }
        }
    }

    /// Looks a key up for a write command (no hit/miss accounting).
    pub fn lookup_write(&mut self, key: &[u8], now_ms: u64) -> Option<&mut Entry> {
        self.expire_if_needed(key, now_ms);
        self.mark_ready(key);
        self.touch_watched(key);
        let e = self.dict.get_mut(key)?;
        super::evict::touch(&mut e.lru, now_ms);
        self.dirty += 1;
        Some(e)
    }

    /// The entry of `key`, expired or not, without any side effect.
    pub(crate) fn entry_mut(&mut self, key: &[u8]) -> Option<&mut Entry> {
        self.dict.get_mut(key)
    }

    /// True if the key exists and has not expired.
    pub fn contains(&mut self, key: &[u8], now_ms: u64) -> bool {
        self.peek(key, now_ms).is_some()
    }

    /// Stores `value` under `key` with absolute expiry `expire_at` (0 = none),
    /// replacing any previous value and TTL. Returns the old entry.
    pub fn set(&mut self, key: &[u8], value: Value, expire_at: u64, now_ms: u64) -> Option<Entry> {
        self.mark_ready(key);
        self.dirty += 1;
        let seg = self.segment_for(key, expire_at);
        let old = self.dict.insert(Entry {
            key: SmallBytes::new(key),
            value,
            expire_at,
            lru: super::evict::new_lru(now_ms),
            snap_mark: false,
        });
        match &old {
            Some(o) => {
                self.untrack(o.expire_at);
                // Under LFU an overwrite keeps the key's counter, as Redis.
                if super::evict::mode().lfu
                    && let Some(e) = self.dict.get_mut(key)
                {
                    e.lru = o.lru;
                    super::evict::touch(&mut e.lru, now_ms);
                }
            }
            None => {
                let (bits, gone) = super::evict::on_insert(key);
                if bits != 0
                    && let Some(e) = self.dict.get_mut(key)
                {
                    e.lru |= bits;
                }
                // The window is per shard; a key that left it is looked up
                // in this database, where window keys almost always live.
                if let Some(k) = gone
                    && let Some(e) = self.dict.get_mut(&k)
                {
                    super::evict::leave_window(&mut e.lru);
                }
            }
        }
        self.after_insert(seg, expire_at, now_ms);
        self.touch_watched(key);
        old.filter(|o| !Self::is_expired(o, now_ms))
    }

    /// Inserts a whole entry (RENAME, MOVE, RESTORE...), replacing any old one.
    pub fn insert_entry(&mut self, entry: Entry) -> Option<Entry> {
        if !self.blocked.is_empty() {
            let key = entry.key.to_vec();
            self.mark_ready(&key);
        }
        let exp = entry.expire_at;
        self.dirty += 1;
        let seg = self.segment_for(&entry.key, exp);
        let key = (!self.watched.is_empty()).then(|| entry.key.to_vec());
        let old = self.dict.insert(entry);
        if let Some(k) = key {
            self.touch_watched(&k);
        }
        if let Some(o) = &old {
            self.untrack(o.expire_at);
        }
        self.after_insert(seg, exp, super::unix_ms());
        old
    }

    /// Replaces a live key's value, keeping its TTL. The key must exist.
    pub fn replace_value(&mut self, key: &[u8], value: Value) {
        self.mark_ready(key);
        if let Some(e) = self.dict.get_mut(key) {
            e.value = value;
            self.dirty += 1;
            self.touch_watched(key);
        }
    }

    /// Removes a key (expired or not), returning its entry.
    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let e = self.dict.remove(key)?;
        self.untrack(e.expire_at);
        self.touch_watched(key);
        Some(e)
    }

    /// Removes a live key; returns None for missing or expired keys.
    pub fn delete(&mut self, key: &[u8], now_ms: u64) -> Option<Entry> {
        let e = self.remove(key)?;
        if Self::is_expired(&e, now_ms) {
            self.stats.expired_keys += 1;
            None
        } else {
            self.dirty += 1;
            Some(e)
        }
    }

    /// Sets or clears (`0`) the absolute expiry of an existing key.
    pub fn set_expire(&mut self, key: &[u8], expire_at: u64) -> bool {
        let Some(e) = self.dict.get_mut(key) else {
            return false;
        };
        let old = std::mem::replace(&mut e.expire_at, expire_at);
        self.dirty += 1;
        self.touch_watched(key);
        self.untrack(old);
        self.track(expire_at);
        if expire_at != 0 {
            let seg = self.dict.segment_of(key);
            self.wheel.schedule(seg, expire_at, super::unix_ms());
        }
        true
    }

    /// The segment to slot in the wheel for `key` (only hashed when the key
    /// gets a TTL).
    fn segment_for(&self, key: &[u8], expire_at: u64) -> u32 {
        if expire_at == 0 {
            0
        } else {
            self.dict.segment_of(key)
        }
    }

    /// Bookkeeping after an insert into segment `seg` (as found before the
    /// insert) with deadline `expire_at`: the TTL count, the wheel, and a
    /// split, whose new half inherits the old half's slot (so the key's
    /// deadline is covered whichever half it landed in).
    fn after_insert(&mut self, seg: u32, expire_at: u64, now_ms: u64) {
        self.track(expire_at);
        if expire_at != 0 {
            self.wheel.schedule(seg, expire_at, now_ms);
        }
        if let Some((from, to)) = self.dict.take_split() {
            self.wheel.inherit(from, to, now_ms);
        }
    }

    fn track(&mut self, expire_at: u64) {
        if expire_at != 0 {
            self.expires += 1;
            self.expire_sum += expire_at as u128;
        }
    }

    fn untrack(&mut self, expire_at: u64) {
        if expire_at != 0 {
            self.expires -= 1;
            self.expire_sum -= expire_at as u128;
        }
    }

    /// Removes every key. A running snapshot first saves what it still needs.
    pub fn clear(&mut self) -> Dict {
        if !self.watched.is_empty() {
            self.touch_all_watched(None, super::unix_ms());
        }
        self.dict.snapshot_finish();
        self.dirty += self.dict.len() as u64;
        self.expires = 0;
        self.expire_sum = 0;
        self.wheel.clear();
        std::mem::take(&mut self.dict)
    }

    /// Active expiry: removes the due keys of due segments until
    /// `deadline` (see [`super::expiry`]).
    pub fn active_expire(&mut self, now_ms: u64, deadline: std::time::Instant) -> Cycle {
        let mut gone_sum = 0u128;
        let watched = &mut self.watched;
        let cycle = self.wheel.run(&mut self.dict, now_ms, deadline, |e| {
            gone_sum += e.expire_at as u128;
            // Deleting a key expired before it was watched changes nothing.
            if let Some(ws) = watched.get_mut(e.key.as_slice()) {
                for w in ws {
                    if !std::mem::take(&mut w.expired) {
                        w.flag.raise();
                    }
                }
            }
        });
        self.expires -= cycle.removed;
        self.expire_sum -= gone_sum;
        self.stats.expired_keys += cycle.removed as u64;
        cycle
    }

    /// Calls `f` for every live key.
    pub fn for_each_live(&self, now_ms: u64, mut f: impl FnMut(&Entry)) {
        for e in self.dict.iter() {
            if !Self::is_expired(e, now_ms) {
                f(e);
            }
        }
    }

    /// A random live key.
    pub fn random_key(&mut self, now_ms: u64) -> Option<Vec<u8>> {
        let mut rng = rand::thread_rng();
        // Like Redis, retry a bounded number of times when hitting expired keys.
        for _ in 0..100 {
            let e = self.dict.random_entry(&mut rng)?;
            if !Self::is_expired(e, now_ms) {
                return Some(e.key.to_vec());
            }
            let k = e.key.to_vec();
            self.expire_if_needed(&k, now_ms);
        }
        None
    }
}
