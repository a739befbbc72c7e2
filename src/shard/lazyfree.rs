//! Freeing large amounts of memory without stalling the shard.
//!
//! FLUSHALL/FLUSHDB ASYNC (and, for big values, DEL and UNLINK) hand what
//! they removed to a local background task that frees it in bounded chunks,
//! yielding between chunks, so no single step holds the shard for long.

use super::dict::Dict;
use std::cell::Cell;

/// Entries freed per step of a background free.
const FREE_CHUNK: usize = 4096;

thread_local! {
    /// Entries of this shard waiting to be freed in the background.
    static LAZY_PENDING: Cell<u64> = const { Cell::new(0) };
    /// Entries this shard has freed in the background since the last
    /// CONFIG RESETSTAT.
    static LAZYFREED: Cell<u64> = const { Cell::new(0) };
}

/// Frees detached dicts without stalling the shard.
///
/// FLUSHALL/FLUSHDB ASYNC swap each database's dict for an empty one (O(1)
/// while the shard is locked) and hand the old dicts here. A local task on
/// the same shard then removes their entries segment by segment, at most
/// about [`FREE_CHUNK`] entries per step, yielding to the shard's other tasks
/// between steps; only the emptied segment tables are left for the final
/// drop. So however large the keyspace, no single step holds the shard for
/// more than one chunk, and the flush replies at once. Small dicts are freed
/// on the spot. Progress shows in INFO memory as `lazyfree_pending_objects`
/// and `lazyfreed_objects`.
pub fn free_dicts(dicts: Vec<Dict>) {
    let total: usize = dicts.iter().map(|d| d.len()).sum();
    if total <= FREE_CHUNK {
        return;
    }
    LAZY_PENDING.with(|p| p.set(p.get() + total as u64));
    glommio::spawn_local(async move {
        for mut dict in dicts {
            let mut pos = 0;
            while !dict.is_empty() {
                let before = dict.len();
                pos = dict.sweep(pos, FREE_CHUNK, |_| true);
                let freed = (before - dict.len()) as u64;
                LAZY_PENDING.with(|p| p.set(p.get().saturating_sub(freed)));
                LAZYFREED.with(|l| l.set(l.get() + freed));
                pause().await;
            }
        }
    })
    .detach();
}

/// Gives the shard back between freeing steps. A timer, not a plain yield:
/// glommio checks io_uring only once its run queue is empty (or its 100 ms
/// preempt timer fires), and a task that only yields is always runnable, so
/// clients waiting on I/O would starve for up to 100 ms.
async fn pause() {
    glommio::timer::sleep(std::time::Duration::from_micros(50)).await;
}

/// Entries waiting to be freed on this shard (INFO lazyfree_pending_objects).
pub fn pending() -> u64 {
    LAZY_PENDING.with(|p| p.get())
}

/// Entries freed in the background on this shard (INFO lazyfreed_objects).
pub fn freed() -> u64 {
    LAZYFREED.with(|l| l.get())
}

/// CONFIG RESETSTAT.
pub fn reset_stats() {
    LAZYFREED.with(|l| l.set(0));
}

/// Collections with more elements than this are freed in the background.
pub const LAZYFREE_THRESHOLD: usize = 1024;

/// Something that can be freed a piece at a time.
trait Chunked {
    /// Frees up to one step's worth; returns how many elements it freed
    /// (0 once empty).
    fn free_step(&mut self) -> usize;
}

/// A container whose elements can be dropped from the end.
pub trait Shrink: 'static {
    /// Number of elements.
    fn count(&self) -> usize;
    /// Drops the last `n` elements; releases the buffer once empty.
    fn drop_last(&mut self, n: usize);
}

impl<T: 'static> Shrink for Vec<T> {
    fn count(&self) -> usize {
        self.len()
    }
    fn drop_last(&mut self, n: usize) {
        self.truncate(self.len() - n);
        if self.is_empty() {
            *self = Vec::new();
        }
    }
}

impl<T: 'static> Shrink for std::collections::VecDeque<T> {
    fn count(&self) -> usize {
        self.len()
    }
    fn drop_last(&mut self, n: usize) {
        self.truncate(self.len() - n);
        if self.is_empty() {
            *self = std::collections::VecDeque::new();
        }
    }
}

struct Pieces<C> {
    items: C,
    per_step: usize,
    weight: usize,
}

impl<C: Shrink> Chunked for Pieces<C> {
    fn free_step(&mut self) -> usize {
        let n = self.items.count().min(self.per_step);
        self.items.drop_last(n);
        n * self.weight
    }
}

thread_local! {
    static QUEUE: std::cell::RefCell<std::collections::VecDeque<Box<dyn Chunked>>> =
        const { std::cell::RefCell::new(std::collections::VecDeque::new()) };
    static WORKER: Cell<bool> = const { Cell::new(false) };
}

/// Frees `items` without stalling the shard: on a shard thread, a local task
/// drops `per_step` of them per step, yielding in between; elsewhere (or for
/// few items) they are dropped at once. `weight` is how many stored elements
/// one item holds, for INFO's lazyfree counters.
///
/// The big collection encodings call this from their `Drop`, so DEL, UNLINK,
/// overwrites, expiry and FLUSHALL of a huge value all free it gradually.
pub fn defer<C: Shrink>(items: C, per_step: usize, weight: usize) {
    let total = items.count() * weight;
    if total <= LAZYFREE_THRESHOLD || super::current_shard_id().is_none() {
        return;
    }
    LAZY_PENDING.with(|p| p.set(p.get() + total as u64));
    QUEUE.with(|q| {
        q.borrow_mut().push_back(Box::new(Pieces {
            items,
            per_step: per_step.max(1),
            weight,
        }))
    });
    if WORKER.with(|w| w.replace(true)) {
        return;
    }
    glommio::spawn_local(async {
        loop {
            let job = QUEUE.with(|q| q.borrow_mut().pop_front());
            let Some(mut job) = job else { break };
            loop {
                let freed = job.free_step() as u64;
                if freed == 0 {
                    break;
                }
                LAZY_PENDING.with(|p| p.set(p.get().saturating_sub(freed)));
                LAZYFREED.with(|l| l.set(l.get() + freed));
                pause().await;
            }
        }
        WORKER.with(|w| w.set(false));
    })
    .detach();
}
