//! A client's MULTI queue and WATCH set.

use crate::shard::watch::WatchFlag;
use crate::shard::{Global, with_shard};
use bytes::Bytes;
use std::sync::Arc;

/// Commands queued between MULTI and EXEC.
#[derive(Default)]
pub struct Multi {
    /// The queued commands' arguments, in order.
    pub queue: Vec<Vec<Bytes>>,
    /// The union of the queued commands' flags.
    pub flags: u32,
    /// A command failed to queue: EXEC answers EXECABORT.
    pub aborted: bool,
}

/// The keys a client watches, registered on their shards' databases.
#[derive(Default)]
pub struct Watching {
    /// Raised by a write to any watched key.
    flag: Option<(&'static Global, Arc<WatchFlag>)>,
    /// `(shard, db, key)` of each watched key.
    keys: Vec<(usize, usize, Bytes)>,
}

impl Watching {
    /// The flag the client's watchers raise, created on first use.
    pub fn flag(&mut self, global: &'static Global) -> Arc<WatchFlag> {
        self.flag
            .get_or_insert_with(|| (global, Arc::new(WatchFlag::default())))
            .1
            .clone()
    }

    /// True if `key` of `db` is already watched.
    pub fn contains(&self, db: usize, key: &[u8]) -> bool {
        self.keys.iter().any(|(_, d, k)| *d == db && k == key)
    }

    /// Records a key registered on `shard`.
    pub fn add(&mut self, shard: usize, db: usize, key: Bytes) {
        self.keys.push((shard, db, key));
    }

    /// True when nothing is watched.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The watched keys, as `(shard, db, key)`.
    pub fn keys(&self) -> &[(usize, usize, Bytes)] {
        &self.keys
    }

    /// True once a watched key was touched.
    pub fn is_dirty(&self) -> bool {
        self.flag.as_ref().is_some_and(|(_, f)| f.is_dirty())
    }

    /// Forgets the keys without unregistering them (their shards already
    /// did, as EXEC checked them).
    pub fn forget(&mut self) {
        self.keys.clear();
        self.flag = None;
    }
}

impl Drop for Watching {
    /// UNWATCH: unregisters every key on its shard. The shards do it in the
    /// background; a stale watcher can only raise this dropped flag.
    fn drop(&mut self) {
        let Some((global, flag)) = self.flag.take() else {
            return;
        };
        let mut by_shard: Vec<(usize, Vec<(usize, Bytes)>)> = Vec::new();
        for (shard, db, key) in self.keys.drain(..) {
            match by_shard.iter_mut().find(|(s, _)| *s == shard) {
                Some((_, v)) => v.push((db, key)),
                None => by_shard.push((shard, vec![(db, key)])),
            }
        }
        for (shard, keys) in by_shard {
            let flag = flag.clone();
            let job = move || {
                with_shard(|s| {
                    for (db, key) in &keys {
                        s.dbs[*db].unwatch(key, &flag);
                    }
                })
            };
            if crate::shard::current_shard_id() == Some(shard) {
                job();
            } else {
                global.post(shard, Box::new(job));
            }
        }
    }
}
