//! WATCH on one shard: which clients watch which keys of a database, and
//! the flag a write raises for them.
//!
//! Every write path of [`super::db::Db`] calls `touch_watched` (one
//! `is_empty` check when nothing is watched). As in Redis 7.0, a key that
//! had already expired (but was still stored) when it was watched does not
//! count as touched when it is merely deleted, and a watched key that
//! expires before EXEC makes EXEC fail.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Raised when a key its client watches is touched; shared between the
/// client's shard and the shards owning the keys.
#[derive(Default, Debug)]
pub struct WatchFlag(AtomicBool);

impl WatchFlag {
    /// Marks the watching client's transaction as doomed.
    pub fn raise(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// True once raised.
    pub fn is_dirty(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// One client's watch on one key.
#[derive(Debug)]
pub struct Watcher {
    /// The client's flag.
    pub flag: Arc<WatchFlag>,
    /// The key was stored but already expired when watched.
    pub expired: bool,
}
