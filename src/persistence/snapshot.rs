//! Forkless point-in-time snapshots of the whole keyspace.
//!
//! [`begin`] locks every shard (so no command runs anywhere), starts a
//! snapshot on every database of every shard at that one instant, and
//! unlocks. From then on each shard serves as usual; a snapshot consumer
//! pulls, on each shard, the RDB key records of each database with [`step`]
//! (one bounded time slice per call) or [`drain`] (all slices, yielding to
//! the shard between them). Writes to keys not saved yet first save the old
//! value (copy-on-write per entry, see [`crate::shard::dict`]), so the
//! records are exactly the keyspace at the moment of [`begin`]. Keys already
//! expired at that moment are skipped.
//!
//! Records are in the RDB key format ([`rdb::write_key_record`]: optional
//! `EXPIRETIME_MS`, type, key, value), ready to be placed after a `SELECTDB`
//! of their database in an RDB file or an AOF base.
//!
//! One snapshot runs at a time in the process (BGSAVE and BGREWRITEAOF share
//! it); [`begin`] returns `None` while one is in progress.

use super::Thresholds;
use super::rdb::{self, WriteOptions};
use super::value_glue;
use crate::shard::value::Entry;
use crate::shard::{Global, run_on_all, unix_ms, with_shard};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set while a snapshot is in progress anywhere in the process.
static BUSY: AtomicBool = AtomicBool::new(false);

/// Entries saved between two clock checks in [`step`].
const BATCH: usize = 64;

/// Default time slice of [`drain`], which then pauses as long, so that a
/// snapshot takes at most about half of a shard's time.
pub const SLICE: Duration = Duration::from_millis(1);

/// Keys and keys with a TTL of one database of one shard when the snapshot
/// began (expired keys not yet reclaimed included: a sizing hint).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DbCounts {
    /// Keys.
    pub keys: u64,
    /// Keys with a TTL.
    pub expires: u64,
}

/// A running snapshot. Dropping it (once every shard's databases have been
/// drained) lets the next snapshot begin.
pub struct Snapshot {
    /// Unix time in ms of the snapshot's instant.
    pub at_ms: u64,
    /// Per shard, per database: the counts at that instant.
    pub counts: Vec<Vec<DbCounts>>,
    /// Writes counted by the databases ([`crate::shard::db::Db::dirty`])
    /// up to that instant, summed over shards and databases.
    pub dirty: u64,
    /// The function libraries' code at that instant.
    pub functions: Vec<bytes::Bytes>,
}

impl Snapshot {
    /// Counts of database `db` summed over shards.
    pub fn db_counts(&self, db: usize) -> DbCounts {
        self.counts
            .iter()
            .fold(DbCounts::default(), |a, s| DbCounts {
                keys: a.keys + s[db].keys,
                expires: a.expires + s[db].expires,
            })
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        BUSY.store(false, Ordering::Release);
    }
}

/// True while a snapshot is in progress.
pub fn in_progress() -> bool {
    BUSY.load(Ordering::Acquire)
}

thread_local! {
    /// This shard's record buffers, one per database (by its index at
    /// [`begin`]; SWAPDB moves the dicts but not these).
    static BUFS: RefCell<Vec<Rc<RefCell<Vec<u8>>>>> = const { RefCell::new(Vec::new()) };
}

/// Starts a snapshot on every shard at one instant. Returns `None` if a
/// snapshot is already in progress. Every database of every shard must then
/// be drained with [`step`] or [`drain`] on its shard; until it is, writes
/// keep saving old values into that database's buffer.
pub async fn begin(global: &'static Global) -> Option<Snapshot> {
    begin_with(global, || ()).await.map(|(s, ())| s)
}

/// Like [`begin`], also running `hook` at the snapshot's instant, while every
/// shard is locked (the AOF takes its sequence cut there).
pub async fn begin_with<T>(
    global: &'static Global,
    hook: impl FnOnce() -> T,
) -> Option<(Snapshot, T)> {
    if BUSY.swap(true, Ordering::AcqRel) {
        return None;
    }
    let tx = crate::shard::locks::lock_all_shards(global).await;
    let hooked = hook();
    let at_ms = unix_ms();
    let counts = run_on_all(global, move |s| {
        let opts = WriteOptions::from_config(&s.config);
        let t = Thresholds::from_config(&s.config);
        let mut bufs = Vec::with_capacity(s.dbs.len());
        let mut counts = Vec::with_capacity(s.dbs.len());
        for (i, db) in s.dbs.iter_mut().enumerate() {
            counts.push(DbCounts {
                keys: db.len() as u64,
                expires: db.expires() as u64,
            });
            let buf = Rc::new(RefCell::new(Vec::new()));
            bufs.push(buf.clone());
            let sink = move |e: &Entry| {
                if e.expire_at != 0 && e.expire_at <= at_ms {
                    return;
                }
                let exp = e.expire_at().map(|x| x as i64);
                let mut out = buf.borrow_mut();
                match e.value.as_string() {
                    // Strings are written from the entry, without a copy.
                    Some(sv) => {
                        let key = e.key.as_slice();
                        rdb::write_key_header(&mut out, key, rdb::types::STRING, exp, &opts);
                        sv.with_bytes(|b| rdb::write_string(&mut out, b, opts.compress));
                    }
                    None => {
                        let (v, enc) = value_glue::to_rdb(&e.value, &t);
                        rdb::write_key_record(&mut out, e.key.as_slice(), &v, enc, exp, &opts);
                    }
                }
            };
            db.dict_mut().snapshot_begin(i, Box::new(sink));
        }
        BUFS.with(|b| *b.borrow_mut() = bufs);
        let dirty: u64 = s.dbs.iter().map(|d| d.dirty).sum();
        (counts, dirty)
    })
    .await;
    drop(tx);
    let dirty = counts.iter().map(|c| c.1).sum();
    let counts = counts.into_iter().map(|c| c.0).collect();
    Some((
        Snapshot {
            at_ms,
            counts,
            dirty,
            functions: global
                .scripts
                .libraries()
                .into_iter()
                .map(|(_, code)| code)
                .collect(),
        },
        hooked,
    ))
}

/// On a shard thread: saves database `db` of this shard's snapshot for about
/// `slice`, and returns the records produced since the last call (including
/// those saved by writes) and whether the database is complete. Once it is,
/// later calls return nothing more for it.
pub fn step(db: usize, slice: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + slice;
    let done = with_shard(|s| {
        let Some(d) = s
            .dbs
            .iter_mut()
            .find(|d| d.dict().snapshot_tag() == Some(db))
        else {
            return true;
        };
        loop {
            if d.dict_mut().snapshot_step(BATCH) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
        }
    });
    let out = BUFS.with(|b| {
        b.borrow()
            .get(db)
            .map(|buf| std::mem::take(&mut *buf.borrow_mut()))
            .unwrap_or_default()
    });
    (out, done)
}

/// On a shard thread: drains database `db` of this shard's snapshot in
/// time slices of [`SLICE`], passing each non-empty chunk of records to
/// `out`, and yielding to the shard's other work between slices.
pub async fn drain(db: usize, mut out: impl FnMut(Vec<u8>)) {
    loop {
        let (chunk, done) = step(db, SLICE);
        if !chunk.is_empty() {
            out(chunk);
        }
        if done {
            return;
        }
        glommio::timer::sleep(SLICE).await;
    }
}
