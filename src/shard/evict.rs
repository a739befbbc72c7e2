//! maxmemory: access metadata (LRU/LFU), eviction and W-TinyLFU admission.
//!
//! # Access metadata
//! Each entry's `lru: u32` holds, as in Redis, either the 24-bit LRU clock
//! (seconds) or, under an LFU policy, 16 bits of minutes and an 8-bit
//! logarithmic counter (`minutes << 8 | counter`). Bit 31 marks a key that
//! is still in the W-TinyLFU admission window. The policy in force is kept in
//! a thread-local [`Mode`] so that [`Db`](super::db::Db) updates the field on
//! access without looking at the configuration.
//!
//! # Global limit, per-shard eviction
//! `used_memory` is the sum of the shard threads' allocation counters
//! ([`crate::alloc`]). Each shard publishes its counter and its key count in
//! `Global::used` (one cache line per shard) whenever it checks the limit:
//! before every keyed command that runs on it, before every deny-OOM
//! command of its clients, and every 100 ms from [`eviction_loop`]. When the
//! sum is over `maxmemory`, a shard frees its share of the excess, in
//! proportion to its share of the keys: `keys * (total - maxmemory) /
//! all_keys`. (Not of its own counter: a buffer allocated by one shard and
//! freed by another moves bytes between their counters, so only the sum is
//! exact.) Nobody takes a global lock, and a shard only evicts its own keys.
//!
//! Tolerance: after every eviction step `used_memory <= maxmemory` up to
//! the writes of the commands in flight (one pipeline batch per
//! connection) and what idle shards publish up to 100 ms late; the tests
//! check `used_memory <= maxmemory * 1.05 + 1 MB` after sustained writes.
//!
//! # Eviction
//! Redis's approximated algorithm: sample `maxmemory-samples` keys of each
//! database into a 16-slot pool ordered by score (idle time, 255 - LFU
//! counter, or time to expiry), then evict the best candidate that still
//! exists. `volatile-*` only sample keys with a TTL. Each call is bounded in
//! time by `maxmemory-eviction-tenacity` as in Redis
//! (`evictionTimeLimitUs`). Values whose drop is deferred (big collections,
//! see [`super::lazyfree`]) count as freed by their estimated size.

use super::Shard;
use super::db::{Db, lru_clock};
use crate::config::Config;
use rand::Rng;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

/// The LFU counter of a new key (Redis's `LFU_INIT_VAL`).
pub const LFU_INIT_VAL: u32 = 5;
/// Marks an entry still in the W-TinyLFU admission window.
const WINDOW_BIT: u32 = 1 << 31;
/// Slots of the eviction pool (Redis's `EVPOOL_SIZE`).
const POOL_SIZE: usize = 16;
/// The OOM error.
pub const OOM: crate::reply::Reply =
    crate::reply::Reply::StaticError("OOM command not allowed when used memory > 'maxmemory'.");

/// A maxmemory policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Never evict; deny-OOM commands fail.
    NoEviction,
    /// Least recently used among all keys.
    AllkeysLru,
    /// Least frequently used among all keys.
    AllkeysLfu,
    /// Any key.
    AllkeysRandom,
    /// Least recently used among keys with a TTL.
    VolatileLru,
    /// Least frequently used among keys with a TTL.
    VolatileLfu,
    /// Any key with a TTL.
    VolatileRandom,
    /// The key with the nearest expiry.
    VolatileTtl,
    /// W-TinyLFU: LFU eviction plus frequency-sketch admission of new keys.
    AllkeysTinyLfu,
}

impl Policy {
    /// Parses a `maxmemory-policy` value (already validated).
    pub fn parse(s: &str) -> Policy {
        match s {
            "allkeys-lru" => Policy::AllkeysLru,
            "allkeys-lfu" => Policy::AllkeysLfu,
            "allkeys-random" => Policy::AllkeysRandom,
            "volatile-lru" => Policy::VolatileLru,
            "volatile-lfu" => Policy::VolatileLfu,
            "volatile-random" => Policy::VolatileRandom,
            "volatile-ttl" => Policy::VolatileTtl,
            "allkeys-tinylfu" => Policy::AllkeysTinyLfu,
            _ => Policy::NoEviction,
        }
    }

    /// True when the access field holds LFU data.
    pub fn is_lfu(self) -> bool {
        matches!(
            self,
            Policy::AllkeysLfu | Policy::VolatileLfu | Policy::AllkeysTinyLfu
        )
    }

    fn volatile(self) -> bool {
        matches!(
            self,
            Policy::VolatileLru
                | Policy::VolatileLfu
                | Policy::VolatileRandom
                | Policy::VolatileTtl
        )
    }
}

/// What access updates need to know, per shard thread.
#[derive(Clone, Copy, Debug)]
pub struct Mode {
    /// LFU data in the access field.
    pub lfu: bool,
    /// W-TinyLFU admission active.
    pub tinylfu: bool,
    /// `lfu-log-factor`.
    pub log_factor: u32,
    /// `lfu-decay-time` in minutes.
    pub decay: u32,
}

thread_local! {
    static MODE: Cell<Mode> = const {
        Cell::new(Mode { lfu: false, tinylfu: false, log_factor: 10, decay: 1 })
    };
    static TINY: RefCell<TinyLfu> = RefCell::new(TinyLfu::default());
}

/// The access mode of this thread.
#[inline]
pub fn mode() -> Mode {
    MODE.with(|m| m.get())
}

fn minutes(now_ms: u64) -> u32 {
    ((now_ms / 60_000) & 65535) as u32
}

/// The LFU counter of `lru` after decay (Redis's `LFUDecrAndReturn`).
pub fn lfu_counter(lru: u32, now_ms: u64, decay: u32) -> u32 {
    let ldt = (lru >> 8) & 65535;
    let counter = lru & 255;
    let now = minutes(now_ms);
    let elapsed = if now >= ldt {
        now - ldt
    } else {
        65535 - ldt + now
    };
    let periods = elapsed.checked_div(decay).unwrap_or(0);
    counter.saturating_sub(periods)
}

/// The access field of a new key.
#[inline]
pub fn new_lru(now_ms: u64) -> u32 {
    let m = mode();
    if m.lfu {
        (minutes(now_ms) << 8) | LFU_INIT_VAL
    } else {
        lru_clock(now_ms)
    }
}

/// Updates the access field on access: the LRU clock, or Redis's
/// `updateLFU` (decay, then a logarithmic increment).
#[inline]
pub fn touch(lru: &mut u32, now_ms: u64) {
    let m = mode();
    if !m.lfu {
        *lru = lru_clock(now_ms);
        return;
    }
    let mut counter = lfu_counter(*lru, now_ms, m.decay);
    if counter < 255 {
        let base = counter.saturating_sub(LFU_INIT_VAL) as f64;
        let p = 1.0 / (base * m.log_factor as f64 + 1.0);
        if rand::thread_rng().r#gen::<f64>() < p {
            counter += 1;
        }
    }
    *lru = (*lru & WINDOW_BIT) | (minutes(now_ms) << 8) | counter;
}

/// Records a read of `key` (hit or miss) in the W-TinyLFU sketch.
#[inline]
pub fn record_read(key: &[u8]) {
    if mode().tinylfu {
        TINY.with(|t| t.borrow_mut().record(key));
    }
}

/// Notes a newly created key: under W-TinyLFU it enters the admission
/// window. Returns the access-field bits to add, and the key that the
/// window let go unchallenged to make room (see [`leave_window`]).
#[inline]
pub fn on_insert(key: &[u8]) -> (u32, Option<Box<[u8]>>) {
    if !mode().tinylfu {
        return (0, None);
    }
    TINY.with(|t| t.borrow_mut().enter_window(key))
}

/// Moves a key that left the admission window into the main region, where
/// eviction may pick it.
#[inline]
pub fn leave_window(lru: &mut u32) {
    *lru &= !WINDOW_BIT;
}

/// W-TinyLFU state of one shard: a count-min sketch of 4-bit counters with
/// periodic halving, and the admission window (newest keys, oldest first).
///
/// The sketch has one 64-bit word (16 counters) per key that fits, so its
/// size follows the shard's key count at the time eviction starts; it is
/// rebuilt when that count doubles. The window holds about 1% of the keys.
#[derive(Default)]
struct TinyLfu {
    table: Vec<u64>,
    /// Increments since the last halving.
    additions: usize,
    /// Halve every counter after this many increments (10 per key).
    sample_size: usize,
    /// Keys the shard holds when full (0 until eviction first runs).
    capacity: usize,
    window: VecDeque<Box<[u8]>>,
}

const SEEDS: [u64; 4] = [
    0xc3a5_c85c_97cb_3127,
    0xb492_b66f_be98_f273,
    0x9ae1_6a3b_2f90_404f,
    0xcbf2_9ce4_8422_2325,
];

impl TinyLfu {
    fn hash(key: &[u8]) -> u64 {
        static H: std::sync::OnceLock<ahash::RandomState> = std::sync::OnceLock::new();
        H.get_or_init(|| ahash::RandomState::with_seeds(7, 11, 13, 17))
            .hash_one(key)
    }

    /// Sizes the sketch for `keys` keys (when it is empty or too small).
    fn size_for(&mut self, keys: usize) {
        let keys = keys.max(64);
        if self.capacity >= keys {
            return;
        }
        self.capacity = keys.next_power_of_two();
        self.table = vec![0; self.capacity];
        self.sample_size = 10 * self.capacity;
        self.additions = 0;
    }

    fn window_cap(&self) -> usize {
        (self.capacity / 100).max(1)
    }

    /// (word, nibble shift) of each row for hash `h`.
    fn slots(&self, h: u64) -> [(usize, u32); 4] {
        let mask = self.table.len() - 1;
        std::array::from_fn(|i| {
            let x = (h ^ SEEDS[i]).wrapping_mul(SEEDS[(i + 1) % 4]);
            (((x >> 32) as usize) & mask, ((x >> 8) as u32 & 15) * 4)
        })
    }

    fn record(&mut self, key: &[u8]) {
        if self.table.is_empty() {
            return;
        }
        let mut added = false;
        for (w, sh) in self.slots(Self::hash(key)) {
            if (self.table[w] >> sh) & 15 < 15 {
                self.table[w] += 1 << sh;
                added = true;
            }
        }
        if added {
            self.additions += 1;
            if self.additions >= self.sample_size {
                for w in &mut self.table {
                    *w = (*w >> 1) & 0x7777_7777_7777_7777;
                }
                self.additions /= 2;
            }
        }
    }

    fn estimate(&self, key: &[u8]) -> u64 {
        if self.table.is_empty() {
            return 0;
        }
        self.slots(Self::hash(key))
            .iter()
            .map(|&(w, sh)| (self.table[w] >> sh) & 15)
            .min()
            .unwrap_or(0)
    }

    fn enter_window(&mut self, key: &[u8]) -> (u32, Option<Box<[u8]>>) {
        self.window.push_back(key.into());
        // Before eviction starts (or while it does not keep up), keys leave
        // the window unchallenged: the cache has room for them.
        let cap = if self.capacity == 0 {
            1024
        } else {
            self.window_cap()
        };
        let gone = if self.window.len() > 2 * cap + 16 {
            self.window.pop_front()
        } else {
            None
        };
        (WINDOW_BIT, gone)
    }
}

static PEAK: AtomicI64 = AtomicI64::new(0);

/// The highest `used_memory` seen when shards published their counters
/// (MEMORY STATS `peak.allocated`).
pub fn peak() -> u64 {
    PEAK.load(Ordering::Relaxed).max(0) as u64
}

/// A shard's published memory counter and key count, on its own cache line.
#[repr(align(64))]
#[derive(Default)]
pub struct MemSlot {
    bytes: AtomicI64,
    keys: AtomicI64,
}

/// Sums of the shards' published (memory, keys): INFO `used_memory` as of
/// their last publication, and the number of keys.
fn published_totals(slots: &[MemSlot]) -> (i64, i64) {
    let exited = crate::alloc::exited_threads() as i64;
    slots.iter().fold((exited, 0), |(b, k), s| {
        (
            b + s.bytes.load(Ordering::Relaxed),
            k + s.keys.load(Ordering::Relaxed),
        )
    })
}

/// One eviction-pool candidate.
struct Candidate {
    score: u64,
    db: usize,
    key: Box<[u8]>,
}

/// Per-shard eviction state.
pub struct Evictor {
    /// `maxmemory` in bytes (0: no limit).
    pub maxmemory: u64,
    /// `maxmemory-policy`.
    pub policy: Policy,
    samples: usize,
    tenacity: u32,
    pool: Vec<Candidate>,
    /// Keys evicted (INFO `evicted_keys`).
    pub evicted_keys: u64,
    /// This shard's memory counter once started (MEMORY STATS
    /// `startup.allocated`).
    pub startup: Option<i64>,
}

impl Default for Evictor {
    fn default() -> Self {
        Evictor {
            maxmemory: 0,
            policy: Policy::NoEviction,
            samples: 5,
            tenacity: 10,
            pool: Vec::with_capacity(POOL_SIZE + 1),
            evicted_keys: 0,
            startup: None,
        }
    }
}

impl Evictor {
    /// Takes the eviction settings from `config` and sets this thread's
    /// access mode.
    pub fn configure(&mut self, config: &Config) {
        self.maxmemory = config.int("maxmemory").max(0) as u64;
        let policy = Policy::parse(config.get("maxmemory-policy").unwrap_or("noeviction"));
        if policy != self.policy {
            self.pool.clear();
        }
        self.policy = policy;
        self.samples = config.int("maxmemory-samples").max(1) as usize;
        self.tenacity = config.int("maxmemory-eviction-tenacity") as u32;
        MODE.with(|m| {
            m.set(Mode {
                lfu: policy.is_lfu(),
                tinylfu: policy == Policy::AllkeysTinyLfu,
                log_factor: config.int("lfu-log-factor") as u32,
                decay: config.int("lfu-decay-time") as u32,
            })
        });
        if policy != Policy::AllkeysTinyLfu {
            TINY.with(|t| *t.borrow_mut() = TinyLfu::default());
        }
    }
}

/// Redis's `evictionTimeLimitUs`: 50 us per tenacity step up to 10, then
/// growing 15% per step; 100 means no limit.
fn time_limit_us(tenacity: u32) -> Option<u64> {
    if tenacity <= 10 {
        return Some(50 * tenacity as u64);
    }
    if tenacity < 100 {
        return Some((500.0 * 1.15f64.powi(tenacity as i32 - 10)) as u64);
    }
    None
}

/// Publishes this shard's memory counter and key count; returns its key
/// count with the totals over all shards.
fn publish(s: &Shard) -> (i64, i64, i64) {
    let slot = &s.global.used[s.id];
    let keys = s.dbs.iter().map(Db::len).sum::<usize>() as i64;
    slot.bytes
        .store(crate::alloc::thread_allocated() as i64, Ordering::Relaxed);
    slot.keys.store(keys, Ordering::Relaxed);
    let (bytes, all_keys) = published_totals(&s.global.used);
    PEAK.fetch_max(bytes, Ordering::Relaxed);
    (keys, bytes, all_keys)
}

/// Redis's `performEvictions` for this shard: when `used_memory` is over
/// `maxmemory`, evicts this shard's share of the excess, within the
/// tenacity time limit. Returns false when memory is over the limit and
/// this shard could not free its share (always so under `noeviction`):
/// deny-OOM commands then fail. Other shards free their own share before
/// their next command, or within 100 ms when idle.
pub fn perform(s: &mut Shard) -> bool {
    let max = s.evict.maxmemory as i64;
    if max == 0 {
        return true;
    }
    let (keys, total, all_keys) = publish(s);
    if total <= max {
        return true;
    }
    if s.evict.policy == Policy::NoEviction || keys == 0 {
        return false;
    }
    let share = ((total - max) as i128 * keys as i128 / all_keys.max(1) as i128) as i64 + 1;
    let limit = time_limit_us(s.evict.tenacity);
    let start = Instant::now();
    let now = super::unix_ms();
    let mut freed = 0i64;
    let mut n = 0u32;
    while freed < share {
        match evict_one(s, now) {
            Some(bytes) => freed += bytes,
            // Nothing left to evict here: the command may not grow memory.
            None => {
                publish(s);
                return false;
            }
        }
        n += 1;
        if n.is_multiple_of(16)
            && let Some(us) = limit
            && start.elapsed().as_micros() as u64 > us
        {
            // Out of time, as Redis's EVICT_RUNNING: go on next time.
            break;
        }
    }
    publish(s);
    true
}

/// Evicts one key of this shard; returns the bytes freed, or None when no
/// key qualifies.
fn evict_one(s: &mut Shard, now: u64) -> Option<i64> {
    let policy = s.evict.policy;
    let mut rng = rand::thread_rng();
    let (db, key) = match policy {
        Policy::NoEviction => return None,
        Policy::AllkeysRandom | Policy::VolatileRandom => random_victim(s, &mut rng)?,
        Policy::AllkeysTinyLfu => tinylfu_victim(s, &mut rng, now)?,
        _ => pool_victim(s, &mut rng, now)?,
    };
    Some(remove_counted(s, db, &key))
}

/// Removes a key and counts the eviction; returns the bytes freed (at least
/// the entry's estimated size, for values freed in the background).
fn remove_counted(s: &mut Shard, db: usize, key: &[u8]) -> i64 {
    let before = crate::alloc::thread_allocated() as i64;
    let Some(e) = s.dbs[db].remove(key) else {
        return 0;
    };
    let estimate = (std::mem::size_of_val(&e) + e.heap_size()) as i64;
    drop(e);
    s.evict.evicted_keys += 1;
    let global = s.global;
    if global.aof.active.load(std::sync::atomic::Ordering::Relaxed) {
        // As Redis propagates evictions: replay must not bring the key back.
        let del = vec![
            bytes::Bytes::from_static(b"DEL"),
            bytes::Bytes::copy_from_slice(key),
        ];
        crate::persistence::aof::log(global, global.aof.next_seq(), db, &[del]);
    }
    let measured = before - crate::alloc::thread_allocated() as i64;
    measured.max(estimate)
}

fn random_victim(s: &mut Shard, rng: &mut impl Rng) -> Option<(usize, Box<[u8]>)> {
    let volatile = s.evict.policy.volatile();
    let ndb = s.dbs.len();
    let first = rng.gen_range(0..ndb);
    for i in 0..ndb {
        let d = (first + i) % ndb;
        let db = &s.dbs[d];
        if (volatile && db.expires() == 0) || db.is_empty() {
            continue;
        }
        let mut found = None;
        // A whole segment at most: keys with a TTL may be rare.
        for _ in 0..4 {
            db.dict().sample(rng, super::dict::SEGMENT_MAX, |e| {
                if !volatile || e.expire_at != 0 {
                    found = Some(e.key.as_slice().into());
                    return false;
                }
                true
            });
            if found.is_some() {
                break;
            }
        }
        if let Some(k) = found {
            return Some((d, k));
        }
    }
    None
}

/// The eviction score of an entry under `policy`: higher goes first.
fn score(policy: Policy, lru: u32, expire_at: u64, now: u64, decay: u32) -> u64 {
    match policy {
        Policy::VolatileTtl => u64::MAX - expire_at,
        p if p.is_lfu() => 255 - lfu_counter(lru, now, decay) as u64,
        _ => super::db::idle_seconds(lru & !WINDOW_BIT, now),
    }
}

/// Fills the pool from samples of every database (`evictionPoolPopulate`).
fn populate(s: &mut Shard, rng: &mut impl Rng, now: u64) {
    let policy = s.evict.policy;
    let volatile = policy.volatile();
    let samples = s.evict.samples;
    let decay = mode().decay;
    let skip_window = policy == Policy::AllkeysTinyLfu;
    let pool = &mut s.evict.pool;
    for (d, db) in s.dbs.iter().enumerate() {
        if (volatile && db.expires() == 0) || db.is_empty() {
            continue;
        }
        let mut taken = 0;
        let visit = if volatile {
            super::dict::SEGMENT_MAX
        } else {
            samples
        };
        db.dict().sample(rng, visit, |e| {
            if (volatile && e.expire_at == 0) || (skip_window && e.lru & WINDOW_BIT != 0) {
                return true;
            }
            taken += 1;
            let sc = score(policy, e.lru, e.expire_at, now, decay);
            let key = e.key.as_slice();
            if pool.len() == POOL_SIZE && pool[0].score >= sc {
                return taken < samples;
            }
            if pool.iter().any(|c| c.db == d && &*c.key == key) {
                return taken < samples;
            }
            // Keep the pool sorted by ascending score; drop the worst when full.
            let at = pool.partition_point(|c| c.score < sc);
            pool.insert(
                at,
                Candidate {
                    score: sc,
                    db: d,
                    key: key.into(),
                },
            );
            if pool.len() > POOL_SIZE {
                pool.remove(0);
            }
            taken < samples
        });
    }
}

/// Takes the best pool candidate that still exists.
fn pool_victim(s: &mut Shard, rng: &mut impl Rng, now: u64) -> Option<(usize, Box<[u8]>)> {
    for _ in 0..4 {
        populate(s, rng, now);
        while let Some(c) = s.evict.pool.pop() {
            if s.dbs[c.db].dict().get(&c.key).is_some() {
                return Some((c.db, c.key));
            }
        }
    }
    None
}

/// W-TinyLFU: the oldest key of the admission window duels the main
/// region's LFU victim; the one the sketch deems less frequent goes.
fn tinylfu_victim(s: &mut Shard, rng: &mut impl Rng, now: u64) -> Option<(usize, Box<[u8]>)> {
    let keys: usize = s.dbs.iter().map(Db::len).sum();
    let candidate = TINY.with(|t| {
        let mut t = t.borrow_mut();
        t.size_for(keys);
        if t.window.len() <= t.window_cap() {
            return None;
        }
        // Stale window keys (deleted since) are skipped.
        while let Some(k) = t.window.pop_front() {
            if let Some(d) = s.dbs.iter().position(|db| db.dict().get(&k).is_some()) {
                return Some((d, k));
            }
        }
        None
    });
    let victim = pool_victim(s, rng, now);
    let Some((cd, ck)) = candidate else {
        return victim;
    };
    let admit = match &victim {
        Some((_, vk)) => TINY.with(|t| {
            let t = t.borrow();
            t.estimate(&ck) > t.estimate(vk)
        }),
        None => false,
    };
    if admit {
        if let Some(e) = s.dbs[cd].entry_mut(&ck) {
            leave_window(&mut e.lru);
        }
        victim
    } else {
        Some((cd, ck))
    }
}

/// Every 100 ms, publishes this shard's memory and evicts its share when
/// the server is over `maxmemory`, so idle shards give memory back too.
pub async fn eviction_loop() {
    loop {
        glommio::timer::sleep(std::time::Duration::from_millis(100)).await;
        super::with_shard(|s| {
            s.refresh_config();
            s.evict
                .startup
                .get_or_insert(crate::alloc::thread_allocated() as i64);
            if s.evict.maxmemory > 0 {
                perform(s);
            } else {
                publish(s);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lfu_counter_decays_per_period() {
        let now = 10 * 60_000;
        let lru = (minutes(now) - 3) << 8 | 10;
        assert_eq!(lfu_counter(lru, now, 1), 7);
        assert_eq!(lfu_counter(lru, now, 0), 10);
        assert_eq!(lfu_counter(lru, now, 2), 9);
    }

    #[test]
    fn sketch_counts_and_halves() {
        let mut t = TinyLfu::default();
        t.size_for(64);
        for _ in 0..5 {
            t.record(b"hot");
        }
        t.record(b"cold");
        assert!(t.estimate(b"hot") >= 5);
        assert!(t.estimate(b"hot") > t.estimate(b"cold"));
        for i in 0..t.sample_size {
            t.record(format!("k{i}").as_bytes());
        }
        assert!(t.estimate(b"hot") <= 15);
    }

    #[test]
    fn tenacity_limits_like_redis() {
        assert_eq!(time_limit_us(10), Some(500));
        assert_eq!(time_limit_us(0), Some(0));
        assert_eq!(time_limit_us(100), None);
    }
}
