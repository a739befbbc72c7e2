//! Active expiry: a hierarchical timing wheel of dict segments.
//!
//! Each database keeps a [`Wheel`] whose entries are not keys but the
//! segments of its [`Dict`] (at most [`SEGMENT_MAX`](super::dict::SEGMENT_MAX)
//! entries each, a few hundred segments per million keys). So the index costs
//! nothing per key: a key's deadline lives only in its entry (`expire_at`),
//! and the wheel holds one node (32 bytes) per segment.
//!
//! - **Slot of a segment:** a lower bound of the earliest deadline among its
//!   keys, in ticks of [`TICK_MS`]. Setting a TTL ([`Wheel::schedule`]) moves
//!   the segment to an earlier slot if the new deadline is earlier than its
//!   bound, else does nothing: O(1) either way. Cancelling (PERSIST, DEL,
//!   overwrite, lazy expiry) is lazy and O(1): the bound simply stays, and
//!   when the segment comes due the pass finds nothing to remove.
//! - **Wheel:** [`LEVELS`] levels of 64 slots each; level `l` slots span
//!   `64^l` ticks, so six levels cover 35 years of 16 ms ticks. Each slot is
//!   an intrusive doubly linked list of segment numbers, so linking and
//!   unlinking are O(1). Reaching the start of a level-`l` slot cascades its
//!   segments one level down (tokio's and Linux's scheme); the level-0 slot of
//!   the current tick moves to the due list.
//! - **Pass over a due segment:** removes its due keys in one walk of the
//!   segment (big values still go through lazyfree when dropped), shrinks the
//!   segment's table when it is mostly empty (so memory returns after a mass
//!   expiry), and re-slots the segment at its next deadline, but not sooner
//!   than [`MIN_GAP_MS`] later, so a segment is walked at most ten times a
//!   second however its keys' deadlines are spread.
//! - **Splits:** when a segment splits, the new half inherits the old half's
//!   slot ([`Wheel::inherit`]): both keep a valid lower bound.
//! - **Time slice:** [`active_expire_loop`] runs every [`period`] (10 ms at
//!   the default `hz` of 10; `100 ms / hz`) and stops after a tenth of it
//!   (1 ms of every 10 ms), leaving the rest of the due list
//!   for the next tick, so a mass expiry never stalls clients. Keys that
//!   nobody touches are reclaimed within `MIN_GAP_MS` plus a tick of their
//!   deadline, plus the backlog.
//! - **Clock steps:** deadlines are absolute Unix milliseconds. If the clock
//!   steps back, the wheel restarts at the new time with every segment due
//!   within `MIN_GAP_MS` ([`Wheel`]'s `rebase`); a step forward just makes
//!   the next tick process everything that became due.
//!
//! Lazy expiry on access ([`Db`](super::db::Db)) is unchanged: an expired key
//! is never visible, whether or not a pass has reached it yet.

use super::dict::{Dict, SegmentExpiry};
use super::value::Entry;
use super::with_shard;
use std::cell::Cell;
use std::time::{Duration, Instant};

/// Wheel resolution in milliseconds.
pub const TICK_MS: u64 = 16;
/// Bits of slot index per level (64 slots).
const BITS: u32 = 6;
const SLOTS: usize = 1 << BITS;
/// Levels of the wheel.
pub const LEVELS: usize = 6;
/// Ticks the wheel spans; deadlines further out are slotted at its far end.
const SPAN_MASK: u64 = (1 << (BITS * LEVELS as u32)) - 1;
/// List number of the due list (after the `LEVELS * SLOTS` slots).
const DUE: u16 = (LEVELS * SLOTS) as u16;
/// List number of a segment that is not scheduled.
const UNLINKED: u16 = u16::MAX;
const NIL: u32 = u32::MAX;
/// Least time between two passes over the same segment.
pub const MIN_GAP_MS: u64 = 100;
/// How often the active-expiry task runs.
/// The period of the active-expiry task for a given `hz`: 10 ms at Redis's
/// default of 10, shorter (and with shorter slices) as `hz` grows.
pub fn period(hz: u64) -> Duration {
    Duration::from_micros(100_000 / hz.max(1))
}

#[derive(Clone, Copy)]
struct Node {
    prev: u32,
    next: u32,
    /// The list the segment is on, or [`UNLINKED`].
    list: u16,
    /// Tick the segment is slotted at (a lower bound of its next deadline).
    at: u64,
    /// Earliest tick of the next pass ([`MIN_GAP_MS`] after the last one).
    not_before: u64,
}

const FREE: Node = Node {
    prev: NIL,
    next: NIL,
    list: UNLINKED,
    at: 0,
    not_before: 0,
};

/// A hierarchical timing wheel of segment numbers; see the module docs.
#[derive(Default)]
pub struct Wheel {
    /// The next tick to process: every tick before it has been processed.
    cur: u64,
    /// Heads of the slot lists and of the due list (empty until first use).
    heads: Vec<u32>,
    /// Per level, the bitmap of non-empty slots.
    occupied: [u64; LEVELS],
    /// One node per segment number.
    nodes: Vec<Node>,
    /// Segments on some list (slots or due).
    scheduled: usize,
}

/// What one run of [`Wheel::run`] did.
#[derive(Default, Debug, Clone, Copy)]
pub struct Cycle {
    /// Keys removed.
    pub removed: usize,
    /// Keys with a TTL visited.
    pub with_ttl: usize,
    /// True when the time slice ran out with due segments left.
    pub capped: bool,
}

impl Wheel {
    /// Notes that a key of segment `seg` now expires at `deadline_ms`.
    pub fn schedule(&mut self, seg: u32, deadline_ms: u64, now_ms: u64) {
        if self.heads.is_empty() {
            self.heads = vec![NIL; DUE as usize + 1];
        }
        if self.scheduled == 0 {
            // Nothing is slotted, so the wheel may restart at the present.
            self.cur = now_ms / TICK_MS;
        }
        let i = seg as usize;
        if i >= self.nodes.len() {
            self.nodes.resize(i + 1, FREE);
        }
        let n = self.nodes[i];
        let at = (deadline_ms / TICK_MS).max(n.not_before);
        if n.list != UNLINKED {
            if n.at <= at {
                return;
            }
            self.unlink(seg);
        }
        self.link(seg, at);
    }

    /// Gives segment `to`, just split off `from`, the slot of `from`.
    pub fn inherit(&mut self, from: u32, to: u32, now_ms: u64) {
        if let Some(n) = self.nodes.get(from as usize).copied()
            && n.list != UNLINKED
        {
            self.schedule(to, n.at * TICK_MS, now_ms);
        }
    }

    /// Forgets every segment (FLUSHDB).
    pub fn clear(&mut self) {
        *self = Wheel::default();
    }

    /// Segments scheduled (slotted or due).
    pub fn scheduled(&self) -> usize {
        self.scheduled
    }

    /// Links `seg` into the slot of tick `at` (the due list if `at` has
    /// passed).
    fn link(&mut self, seg: u32, at: u64) {
        if at < self.cur {
            return self.push(seg, DUE, at);
        }
        let at = at.min(self.cur | SPAN_MASK);
        let diff = at ^ self.cur;
        let level = if diff == 0 {
            0
        } else {
            (63 - diff.leading_zeros()) / BITS
        };
        let slot = (at >> (level * BITS)) as usize & (SLOTS - 1);
        self.occupied[level as usize] |= 1 << slot;
        self.push(seg, (level as usize * SLOTS + slot) as u16, at);
    }

    fn push(&mut self, seg: u32, list: u16, at: u64) {
        let head = self.heads[list as usize];
        if head != NIL {
            self.nodes[head as usize].prev = seg;
        }
        let n = &mut self.nodes[seg as usize];
        n.prev = NIL;
        n.next = head;
        n.list = list;
        n.at = at;
        self.heads[list as usize] = seg;
        self.scheduled += 1;
    }

    fn unlink(&mut self, seg: u32) {
        let n = self.nodes[seg as usize];
        if n.prev == NIL {
            self.heads[n.list as usize] = n.next;
            if n.next == NIL && n.list != DUE {
                let level = n.list as usize / SLOTS;
                self.occupied[level] &= !(1 << (n.list as usize % SLOTS));
            }
        } else {
            self.nodes[n.prev as usize].next = n.next;
        }
        if n.next != NIL {
            self.nodes[n.next as usize].prev = n.prev;
        }
        self.nodes[seg as usize].list = UNLINKED;
        self.scheduled -= 1;
    }

    /// Unlinks every segment of `list` and links each again (relative to
    /// the current tick).
    fn relink_all(&mut self, list: usize) {
        while self.heads[list] != NIL {
            let seg = self.heads[list];
            let at = self.nodes[seg as usize].at;
            self.unlink(seg);
            self.link(seg, at);
        }
    }

    /// Moves the segments due by `now_ms` to the due list.
    fn advance(&mut self, now_ms: u64) {
        let target = now_ms / TICK_MS;
        if target + 1 < self.cur {
            self.rebase(now_ms);
        }
        while self.cur <= target {
            if self.occupied.iter().all(|&o| o == 0) {
                self.cur = target + 1;
                break;
            }
            let cur = self.cur;
            // At a block boundary, cascade the higher levels' slots down.
            for level in (1..LEVELS).rev() {
                let shift = level as u32 * BITS;
                if cur & ((1 << shift) - 1) == 0 {
                    let slot = (cur >> shift) as usize & (SLOTS - 1);
                    if self.occupied[level] & (1 << slot) != 0 {
                        self.relink_all(level * SLOTS + slot);
                    }
                }
            }
            let slot = cur as usize & (SLOTS - 1);
            while self.heads[slot] != NIL {
                let seg = self.heads[slot];
                self.unlink(seg);
                self.push(seg, DUE, cur);
            }
            // Jump to the next occupied level-0 slot of this block, or to the
            // next block's start.
            let later = self.occupied[0] & u64::MAX.checked_shl(slot as u32 + 1).unwrap_or(0);
            let next = if later != 0 {
                (cur & !(SLOTS as u64 - 1)) + later.trailing_zeros() as u64
            } else {
                (cur | (SLOTS as u64 - 1)) + 1
            };
            self.cur = next.min(target + 1);
        }
    }

    /// After the clock went back: restarts the wheel at `now_ms`, with every
    /// scheduled segment due within [`MIN_GAP_MS`] (its pass then finds its
    /// real next deadline), so no segment waits for the old clock.
    fn rebase(&mut self, now_ms: u64) {
        let soon = (now_ms + MIN_GAP_MS) / TICK_MS;
        let mut segs = Vec::with_capacity(self.scheduled);
        for seg in 0..self.nodes.len() as u32 {
            if self.nodes[seg as usize].list != UNLINKED {
                self.unlink(seg);
                segs.push(seg);
            }
            let n = &mut self.nodes[seg as usize];
            n.not_before = n.not_before.min(soon);
        }
        self.cur = now_ms / TICK_MS;
        for seg in segs {
            let at = self.nodes[seg as usize].at.min(soon);
            self.link(seg, at);
        }
    }

    fn pop_due(&mut self) -> Option<u32> {
        let seg = *self.heads.get(DUE as usize)?;
        if seg == NIL {
            return None;
        }
        self.unlink(seg);
        Some(seg)
    }

    /// Removes the due keys of `dict`'s due segments until `deadline`,
    /// calling `removed` on each removed entry.
    pub fn run(
        &mut self,
        dict: &mut Dict,
        now_ms: u64,
        deadline: Instant,
        mut removed: impl FnMut(&Entry),
    ) -> Cycle {
        let mut cycle = Cycle::default();
        if self.scheduled == 0 {
            return cycle;
        }
        self.advance(now_ms);
        while self.heads[DUE as usize] != NIL {
            if Instant::now() >= deadline {
                cycle.capped = true;
                break;
            }
            let Some(seg) = self.pop_due() else { break };
            let SegmentExpiry {
                removed: n,
                with_ttl,
                next,
            } = dict.expire_segment(seg, now_ms, &mut removed);
            cycle.removed += n;
            cycle.with_ttl += with_ttl;
            self.nodes[seg as usize].not_before = (now_ms + MIN_GAP_MS) / TICK_MS;
            if next != u64::MAX {
                self.schedule(seg, next, now_ms);
            }
        }
        cycle
    }
}

/// Active-expiry counters of one shard, for INFO stats.
#[derive(Default, Debug, Clone, Copy)]
pub struct ExpiryStats {
    /// Share of visited keys with a TTL that had expired, in percent
    /// (a moving average over runs, as Redis's `expired_stale_perc`).
    pub stale_perc: f64,
    /// Runs that ran out of their time slice with due keys left.
    pub time_cap_reached: u64,
    /// Time spent in active expiry, in microseconds.
    pub cpu_us: u64,
}

thread_local! {
    static STATS: Cell<ExpiryStats> = const {
        Cell::new(ExpiryStats { stale_perc: 0.0, time_cap_reached: 0, cpu_us: 0 })
    };
}

/// This shard's active-expiry counters.
pub fn stats() -> ExpiryStats {
    STATS.with(|s| s.get())
}

/// Zeroes this shard's active-expiry counters (CONFIG RESETSTAT).
pub fn reset_stats() {
    STATS.with(|s| s.set(ExpiryStats::default()));
}

/// How often a shard without any key with a TTL runs active expiry.
const IDLE_PERIOD: Duration = Duration::from_millis(100);

/// Active expiry: every [`period`], remove the due keys of this shard's
/// databases for at most a tenth of the period, starting where the last
/// capped run stopped.
pub async fn active_expire_loop() {
    let mut first_db = 0;
    loop {
        let (period, none) = with_shard(|s| {
            (
                period(s.config.hz()),
                s.dbs.iter().all(|d| d.expires() == 0),
            )
        });
        // A shard without keys with a TTL only looks again as often as
        // Redis's cron runs (10 times a second): waking a shard costs more
        // than the look, and an idle server should use no CPU.
        glommio::timer::sleep(if none {
            IDLE_PERIOD.max(period)
        } else {
            period
        })
        .await;
        let start = Instant::now();
        let deadline = start + period / 10;
        let now = super::unix_ms();
        let (with_ttl, removed, capped) = with_shard(|s| {
            s.refresh_config();
            let n = s.dbs.len();
            let (mut with_ttl, mut removed, mut capped) = (0, 0, false);
            for k in 0..n {
                let i = (first_db + k) % n;
                let c = s.dbs[i].active_expire(now, deadline);
                with_ttl += c.with_ttl;
                removed += c.removed;
                if c.capped {
                    first_db = i;
                    capped = true;
                    break;
                }
            }
            (with_ttl, removed, capped)
        });
        let spent = start.elapsed().as_micros() as u64;
        STATS.with(|cell| {
            let mut st = cell.get();
            st.cpu_us += spent;
            st.time_cap_reached += capped as u64;
            if with_ttl > 0 {
                let perc = removed as f64 * 100.0 / with_ttl as f64;
                st.stale_perc = perc * 0.05 + st.stale_perc * 0.95;
            }
            cell.set(st);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drains every segment due by `now`, in order.
    fn due(w: &mut Wheel, now: u64) -> Vec<u32> {
        w.advance(now);
        let mut out = vec![];
        while let Some(s) = w.pop_due() {
            out.push(s);
        }
        out.sort();
        out
    }

    #[test]
    fn segments_come_due_at_their_tick_across_levels() {
        let mut w = Wheel::default();
        let t0 = 1_700_000_000_000;
        let offsets = [0u64, 15, 16, 1000, 5_000, 70_000, 3_600_000, 86_400_000];
        for (i, off) in offsets.iter().enumerate() {
            w.schedule(i as u32, t0 + off, t0);
        }
        assert_eq!(w.scheduled(), offsets.len());
        let mut seen = vec![];
        let mut now = t0;
        while seen.len() < offsets.len() {
            for s in due(&mut w, now) {
                let deadline = t0 + offsets[s as usize];
                // Never early by more than a tick, never late.
                assert!(now + TICK_MS > deadline && now >= deadline / TICK_MS * TICK_MS);
                seen.push(s);
            }
            now += 7;
        }
        assert_eq!(w.scheduled(), 0);
    }

    #[test]
    fn earlier_deadline_reslots_later_one_does_not() {
        let mut w = Wheel::default();
        let t0 = 1_000_000;
        w.schedule(3, t0 + 10_000, t0);
        w.schedule(3, t0 + 20_000, t0);
        assert!(due(&mut w, t0 + 9_000).is_empty());
        w.schedule(3, t0 + 500, t0 + 9_000);
        assert_eq!(due(&mut w, t0 + 9_000), vec![3]);
        assert_eq!(w.scheduled(), 0);
    }

    #[test]
    fn clock_going_back_does_not_strand_segments() {
        let mut w = Wheel::default();
        let t0 = 9_000_000_000;
        w.schedule(1, t0 + 10_000, t0);
        w.schedule(2, t0 + 20, t0);
        assert_eq!(due(&mut w, t0 + 100), vec![2]);
        // The clock steps back an hour: segment 1 is passed over soon.
        let back = t0 - 3_600_000;
        assert!(due(&mut w, back).is_empty());
        assert_eq!(due(&mut w, back + MIN_GAP_MS + TICK_MS), vec![1]);
        assert_eq!(w.scheduled(), 0);
    }

    #[test]
    fn split_half_inherits_the_slot() {
        let mut w = Wheel::default();
        let t0 = 5_000_000;
        w.schedule(0, t0 + 2_000, t0);
        w.inherit(0, 1, t0);
        w.inherit(7, 8, t0);
        assert_eq!(due(&mut w, t0 + 2_000), vec![0, 1]);
    }

    #[test]
    fn random_schedules_match_a_model() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut w = Wheel::default();
        // Model: segment -> earliest tick scheduled and not yet popped.
        let mut model = std::collections::HashMap::<u32, u64>::new();
        let mut now = 1_000_000_000u64;
        for _ in 0..20_000 {
            if rng.gen_bool(0.6) {
                let seg = rng.gen_range(0..200);
                let span = [100, 5_000, 200_000, 20_000_000][rng.gen_range(0..4)];
                let deadline = now + rng.gen_range(0..span);
                w.schedule(seg, deadline, now);
                let t = model.entry(seg).or_insert(u64::MAX);
                *t = (*t).min(deadline / TICK_MS);
            } else {
                now += [1, 10, 100, 10_000, 1_000_000][rng.gen_range(0..5)];
                for seg in due(&mut w, now) {
                    let t = model.remove(&seg).expect("popped an unscheduled segment");
                    assert!(t <= now / TICK_MS, "segment {seg} popped early");
                }
                for (seg, t) in &model {
                    assert!(*t > now / TICK_MS, "segment {seg} overdue");
                }
            }
        }
        assert_eq!(w.scheduled(), model.len());
    }
}
