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
                glommio::executor().yield_now().await;
            }
        }
    })
    .detach();
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
