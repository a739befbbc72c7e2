//! Loading `dump.rdb` at startup.
//!
//! One thread parses the file once (the format is sequential); keys go to
//! their shards in batches through the shards' mailboxes, and each shard
//! builds the in-memory values and inserts them in parallel with the
//! parsing. A damaged file stops the load with an error naming the file and
//! the offset of the bad record; the server then refuses to start, so a
//! partial load is never served.

use super::rdb::{KeyRecord, RdbReader};
use super::{Thresholds, value_glue};
use crate::shard::db::lru_clock;
use crate::shard::value::{Entry, SmallBytes};
use crate::shard::{Global, unix_ms, with_shard};
use bytes::Bytes;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Keys per batch sent to a shard.
const BATCH: usize = 256;

/// Batches queued per shard before the parser waits.
const MAX_QUEUED: usize = 64;

/// What a load did.
#[derive(Debug, Default, Clone, Copy)]
pub struct LoadStats {
    /// Keys loaded.
    pub keys: u64,
    /// Keys skipped because their TTL had passed.
    pub expired: u64,
}

/// Loads the data at startup: `dir/dbfilename` if it exists. This is the
/// one place that chooses what to load (an AOF, when enabled, goes first).
/// Clients may connect meanwhile: INFO shows `loading:1` and its progress,
/// and commands without the `loading` flag get `-LOADING`.
pub fn load_at_startup(
    global: &'static Global,
    replayer: &super::aof::Replayer,
) -> Result<(), String> {
    let st = &global.rdb;
    st.loading_start.store(unix_ms() / 1000, Ordering::Relaxed);
    st.loading_total_bytes.store(0, Ordering::Relaxed);
    st.loading_loaded_bytes.store(0, Ordering::Relaxed);
    st.loading.store(true, Ordering::Release);
    let res = load_data(global, replayer);
    st.loading.store(false, Ordering::Release);
    res
}

fn load_data(global: &'static Global, replayer: &super::aof::Replayer) -> Result<(), String> {
    let cfg = global.config();
    if cfg.get("appendonly") == Some("yes") {
        if !super::aof::load_at_startup(global, replayer)? {
            load_rdb_if_present(global)?;
        }
        // Logging starts before clients may write (they get -LOADING
        // until then), so no acknowledged write escapes the AOF.
        let start = crate::shard::spawn_on(global, 0, move || super::aof::start_logging(global));
        return futures::executor::block_on(start);
    }
    load_rdb_if_present(global)
}

fn load_rdb_if_present(global: &'static Global) -> Result<(), String> {
    let path = global.config().rdb_path();
    if !path.exists() {
        return Ok(());
    }
    let started = Instant::now();
    let stats = load_rdb_file(global, &path)?;
    tracing::info!(
        "DB loaded from disk: {:.3} seconds ({} keys, {} expired keys skipped)",
        started.elapsed().as_secs_f64(),
        stats.keys,
        stats.expired
    );
    Ok(())
}

/// Loads an RDB file into the (empty) shards, while the server is loading,
/// from a thread that is not a shard.
pub fn load_rdb_file(global: &'static Global, path: &Path) -> Result<LoadStats, String> {
    let stats = load(global, path)?;
    // Loading is not a change to save again.
    let st = &global.rdb;
    st.dirty_saved.fetch_add(stats.keys, Ordering::Relaxed);
    st.load_keys.store(stats.keys, Ordering::Relaxed);
    st.load_expired.store(stats.expired, Ordering::Relaxed);
    Ok(stats)
}

fn load(global: &'static Global, path: &Path) -> Result<LoadStats, String> {
    let cfg = global.config();
    let t = Thresholds::from_config(&cfg);
    let databases = cfg.databases() as u64;
    let file = std::fs::File::open(path)
        .map_err(|e| format!("Can't open the RDB file {}: {e}", path.display()))?;
    let mut reader = RdbReader::new(file, t).map_err(|e| {
        format!(
            "Bad RDB file {} at offset 0: {e}. Refusing to start.",
            path.display()
        )
    })?;
    let progress = &global.rdb.loading_loaded_bytes;
    let base = progress.load(Ordering::Relaxed);
    global
        .rdb
        .loading_total_bytes
        .fetch_add(file_len(path), Ordering::Relaxed);
    let now = unix_ms();
    let queued: Arc<Vec<AtomicUsize>> =
        Arc::new((0..global.nshards).map(|_| AtomicUsize::new(0)).collect());
    let mut batches: Vec<Vec<KeyRecord>> = (0..global.nshards).map(|_| Vec::new()).collect();
    let mut stats = LoadStats::default();
    let send = |shard: usize, batch: Vec<KeyRecord>| {
        while queued[shard].load(Ordering::Acquire) >= MAX_QUEUED {
            std::thread::sleep(Duration::from_micros(100));
        }
        queued[shard].fetch_add(1, Ordering::AcqRel);
        let queued = queued.clone();
        global.post(
            shard,
            Box::new(move || {
                with_shard(|s| {
                    let now = unix_ms();
                    for r in batch {
                        let entry = Entry {
                            key: SmallBytes::from_vec(r.key),
                            value: value_glue::from_rdb(r.value, &t),
                            expire_at: r.expire_ms.map_or(0, |ms| ms.max(1) as u64),
                            lru: lru_clock(now),
                            snap_mark: false,
                        };
                        s.dbs[r.db as usize].insert_entry(entry);
                    }
                });
                queued[shard].fetch_sub(1, Ordering::AcqRel);
            }),
        );
    };
    loop {
        let rec = match reader.next_key() {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => {
                return Err(format!(
                    "Bad RDB file {} at offset {}: {e}. Refusing to start (check it with `ringkv check-rdb`).",
                    path.display(),
                    reader.offset()
                ));
            }
        };
        if rec.db >= databases {
            return Err(format!(
                "Bad RDB file {}: it uses database {}, but only {databases} are configured",
                path.display(),
                rec.db
            ));
        }
        if rec.expire_ms.is_some_and(|ms| ms <= now as i64) {
            stats.expired += 1;
            continue;
        }
        stats.keys += 1;
        let shard = global.slots.shard_of(&rec.key);
        batches[shard].push(rec);
        if batches[shard].len() >= BATCH {
            send(shard, std::mem::take(&mut batches[shard]));
            progress.store(base + reader.position(), Ordering::Relaxed);
        }
    }
    for (shard, b) in batches.into_iter().enumerate() {
        if !b.is_empty() {
            send(shard, b);
        }
    }
    for q in queued.iter() {
        while q.load(Ordering::Acquire) > 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    progress.store(base + reader.position(), Ordering::Relaxed);
    if !reader.functions.is_empty() {
        global
            .scripts
            .load_libraries(reader.functions.drain(..).map(Bytes::from));
    }
    Ok(stats)
}

/// The size of a file to load, for the progress fields (0 if unknown).
pub(super) fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}
