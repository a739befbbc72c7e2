//! Writing `dump.rdb`: SAVE, BGSAVE, save points and the save at shutdown.
//!
//! A save takes a [`snapshot`] (one instant across all shards), then drains
//! every database of every shard in parallel, a time slice at a time, into a
//! writer thread. The writer lays the records out as Redis 7.0 does (magic,
//! aux fields, `SELECTDB`/`RESIZEDB` per non-empty database, the keys, EOF,
//! CRC64) in `dir/temp-<pid>.rdb`, fsyncs it and renames it over
//! `dir/dbfilename`, so a crash at any point leaves the previous file intact.

use super::rdb::{AuxInfo, RdbWriter, WriteOptions};
use super::snapshot;
use crate::shard::{Global, run_on_all, spawn_on, unix_secs};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Bytes of records queued for the writer before shards pause draining.
const MAX_IN_FLIGHT: usize = 32 << 20;

/// Redis's `CONFIG_BGSAVE_RETRY_DELAY`: seconds between save-point attempts
/// after a failed save.
const RETRY_DELAY_SECS: u64 = 5;

/// RDB persistence state, shared by all shards (INFO persistence).
#[derive(Debug)]
pub struct RdbState {
    /// A BGSAVE is running.
    pub bgsave_in_progress: AtomicBool,
    /// A BGSAVE SCHEDULE waits for the running snapshot to end.
    pub bgsave_scheduled: AtomicBool,
    /// Unix ms when the running save began.
    pub save_started_ms: AtomicU64,
    /// The last background save succeeded.
    pub last_bgsave_ok: AtomicBool,
    /// Seconds the last background save took (-1: none yet).
    pub last_bgsave_secs: AtomicI64,
    /// Unix seconds of the last save attempt (for the retry delay).
    pub last_attempt: AtomicU64,
    /// Saves started.
    pub saves: AtomicU64,
    /// The databases' write count saved by the last successful save.
    pub dirty_saved: AtomicU64,
    /// The dataset is being loaded.
    pub loading: AtomicBool,
    /// Unix seconds when the running load began.
    pub loading_start: AtomicU64,
    /// Bytes of files the running load reads in all.
    pub loading_total_bytes: AtomicU64,
    /// Bytes of those files read so far.
    pub loading_loaded_bytes: AtomicU64,
    /// Keys loaded by the last load.
    pub load_keys: AtomicU64,
    /// Expired keys skipped by the last load.
    pub load_expired: AtomicU64,
}

impl Default for RdbState {
    fn default() -> Self {
        RdbState {
            bgsave_in_progress: AtomicBool::new(false),
            bgsave_scheduled: AtomicBool::new(false),
            save_started_ms: AtomicU64::new(0),
            last_bgsave_ok: AtomicBool::new(true),
            last_bgsave_secs: AtomicI64::new(-1),
            last_attempt: AtomicU64::new(0),
            saves: AtomicU64::new(0),
            dirty_saved: AtomicU64::new(0),
            loading: AtomicBool::new(false),
            loading_start: AtomicU64::new(0),
            loading_total_bytes: AtomicU64::new(0),
            loading_loaded_bytes: AtomicU64::new(0),
            load_keys: AtomicU64::new(0),
            load_expired: AtomicU64::new(0),
        }
    }
}

/// What the writer thread receives.
enum Msg {
    /// Start a database: `SELECTDB` and `RESIZEDB`.
    Db(u64, snapshot::DbCounts),
    /// Key records of the current database.
    Records(Vec<u8>),
}

/// Why a save could not start.
#[derive(Debug, PartialEq, Eq)]
pub enum SaveError {
    /// A BGSAVE is running.
    BgsaveInProgress,
    /// Another snapshot user (an AOF rewrite) is running.
    OtherSnapshot,
    /// The save failed; the message says why.
    Failed(String),
}

/// Writes of all databases since startup, summed over shards.
pub async fn total_dirty(global: &'static Global) -> u64 {
    run_on_all(global, |s| s.dbs.iter().map(|d| d.dirty).sum::<u64>())
        .await
        .into_iter()
        .sum()
}

/// Runs one save to completion (SAVE, BGSAVE's task, save points, shutdown).
/// `background` marks it as a BGSAVE in INFO.
pub async fn save(global: &'static Global, background: bool) -> Result<(), SaveError> {
    if global.rdb.bgsave_in_progress.load(Ordering::Acquire) {
        return Err(SaveError::BgsaveInProgress);
    }
    let snap = start(global, background).await?;
    finish(global, snap).await
}

/// Takes the snapshot of a save whose caller checked (or claimed)
/// `bgsave_in_progress`.
async fn start(global: &'static Global, background: bool) -> Result<snapshot::Snapshot, SaveError> {
    let st = &global.rdb;
    let Some(snap) = snapshot::begin(global).await else {
        st.bgsave_in_progress.store(false, Ordering::Release);
        return Err(SaveError::OtherSnapshot);
    };
    st.bgsave_in_progress.store(background, Ordering::Release);
    st.save_started_ms.store(snap.at_ms, Ordering::Relaxed);
    st.last_attempt.store(unix_secs(), Ordering::Relaxed);
    st.saves.fetch_add(1, Ordering::Relaxed);
    Ok(snap)
}

/// Writes a started save's file and records the outcome.
async fn finish(global: &'static Global, snap: snapshot::Snapshot) -> Result<(), SaveError> {
    let st = &global.rdb;
    let started = Instant::now();
    let res = write_snapshot(global, &snap).await;
    let dirty = snap.dirty;
    drop(snap);
    st.bgsave_in_progress.store(false, Ordering::Release);
    st.last_bgsave_ok.store(res.is_ok(), Ordering::Release);
    match &res {
        Ok(()) => {
            st.dirty_saved.store(dirty, Ordering::Relaxed);
            global.lastsave.store(unix_secs(), Ordering::Relaxed);
            st.last_bgsave_secs
                .store(started.elapsed().as_secs() as i64, Ordering::Relaxed);
            tracing::info!("DB saved on disk");
        }
        Err(e) => tracing::warn!("Error saving DB on disk: {e}"),
    }
    res.map_err(SaveError::Failed)
}

/// Drains `snap` from every shard into a new RDB file and renames it in place.
async fn write_snapshot(global: &'static Global, snap: &snapshot::Snapshot) -> Result<(), String> {
    let path = global.config().rdb_path();
    write_snapshot_to(global, snap, &path, false).await
}

/// Drains `snap` into an RDB file at `path` (written under a temporary name,
/// then renamed); `aof_base` marks it as an AOF base.
pub async fn write_snapshot_to(
    global: &'static Global,
    snap: &snapshot::Snapshot,
    path: &Path,
    aof_base: bool,
) -> Result<(), String> {
    let cfg = global.config();
    let path = path.to_path_buf();
    let tmp = path.with_file_name(format!(
        "temp-{}-{}.rdb",
        std::process::id(),
        aof_base as u8
    ));
    let opts = WriteOptions::from_config(&cfg);
    let checksum = cfg.get("rdbchecksum") != Some("no");
    let aux = AuxInfo {
        redis_ver: crate::REDIS_VERSION.to_string(),
        ctime: snap.at_ms / 1000,
        used_mem: used_memory(global).await,
        aof_base,
        functions: snap.functions.clone(),
    };
    let (tx, rx) = std::sync::mpsc::channel::<Msg>();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let (done_tx, done_rx) = futures::channel::oneshot::channel();
    {
        let in_flight = in_flight.clone();
        let (tmp, path) = (tmp.clone(), path.clone());
        std::thread::Builder::new()
            .name("rdb-writer".into())
            .spawn(move || {
                let res = write_file(&tmp, &path, opts, checksum, &aux, rx, &in_flight);
                if res.is_err() {
                    let _ = std::fs::remove_file(&tmp);
                }
                let _ = done_tx.send(res);
            })
            .map_err(|e| format!("can't start the RDB writer thread: {e}"))?;
    }
    let ndb = snap.counts.first().map_or(0, Vec::len);
    for db in 0..ndb {
        let counts = snap.db_counts(db);
        if counts.keys > 0 {
            let _ = tx.send(Msg::Db(db as u64, counts));
        }
        let drains = (0..global.nshards).map(|s| {
            let (tx, in_flight) = (tx.clone(), in_flight.clone());
            spawn_on(global, s, move || drain_into(db, tx, in_flight))
        });
        futures::future::join_all(drains).await;
    }
    drop(tx);
    done_rx
        .await
        .unwrap_or_else(|_| Err("the RDB writer thread stopped".into()))
}

/// On a shard: drains database `db` into the writer, pausing while the
/// writer is behind. Continues (dropping records) if the writer failed, so
/// the snapshot always ends.
async fn drain_into(db: usize, tx: std::sync::mpsc::Sender<Msg>, in_flight: Arc<AtomicUsize>) {
    loop {
        while in_flight.load(Ordering::Acquire) > MAX_IN_FLIGHT {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        let (chunk, done) = snapshot::step(db, snapshot::SLICE);
        if !chunk.is_empty() {
            in_flight.fetch_add(chunk.len(), Ordering::AcqRel);
            let n = chunk.len();
            if tx.send(Msg::Records(chunk)).is_err() {
                in_flight.fetch_sub(n, Ordering::AcqRel);
            }
        }
        if done {
            return;
        }
        glommio::timer::sleep(snapshot::SLICE).await;
    }
}

async fn used_memory(global: &'static Global) -> u64 {
    (run_on_all(global, |_| crate::alloc::thread_allocated())
        .await
        .into_iter()
        .sum::<isize>()
        + crate::alloc::exited_threads())
    .max(0) as u64
}

/// The writer thread: builds the file from the messages, then makes it durable
/// and atomically visible.
fn write_file(
    tmp: &Path,
    path: &Path,
    opts: WriteOptions,
    checksum: bool,
    aux: &AuxInfo,
    rx: std::sync::mpsc::Receiver<Msg>,
    in_flight: &AtomicUsize,
) -> Result<(), String> {
    let fail = |what: &str, e: std::io::Error| format!("{what} {}: {e}", tmp.display());
    let file = std::fs::File::create(tmp).map_err(|e| fail("can't create", e))?;
    let mut w = RdbWriter::new(file, opts).map_err(|e| fail("can't write", e))?;
    if !checksum {
        w = w.without_checksum();
    }
    w.info_aux(aux).map_err(|e| fail("can't write", e))?;
    for msg in rx {
        match msg {
            Msg::Db(db, c) => {
                w.select_db(db).map_err(|e| fail("can't write", e))?;
                w.resize_db(c.keys, c.expires)
                    .map_err(|e| fail("can't write", e))?;
            }
            Msg::Records(r) => {
                let res = w.raw(&r);
                in_flight.fetch_sub(r.len(), Ordering::AcqRel);
                res.map_err(|e| fail("can't write", e))?;
            }
        }
    }
    let mut file = w.finish().map_err(|e| fail("can't write", e))?;
    file.flush().map_err(|e| fail("can't write", e))?;
    file.sync_all().map_err(|e| fail("can't fsync", e))?;
    drop(file);
    std::fs::rename(tmp, path)
        .map_err(|e| format!("can't rename {} to {}: {e}", tmp.display(), path.display()))?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Starts a BGSAVE: takes the snapshot (the data as of now), then writes it
/// in a task on this shard. Errors as Redis words them.
pub async fn bgsave(global: &'static Global, schedule: bool) -> Result<&'static str, &'static str> {
    let st = &global.rdb;
    if st.bgsave_in_progress.load(Ordering::Acquire) {
        return Err("ERR Background save already in progress");
    }
    if snapshot::in_progress() {
        if schedule {
            st.bgsave_scheduled.store(true, Ordering::Release);
            return Ok("Background saving scheduled");
        }
        return Err(
            "ERR Another child process is active (AOF?): can't BGSAVE right now. Use BGSAVE SCHEDULE in order to schedule a BGSAVE whenever possible.",
        );
    }
    // Claim the BGSAVE at once so that a second BGSAVE sees it.
    st.bgsave_in_progress.store(true, Ordering::Release);
    match start(global, true).await {
        Ok(snap) => {
            glommio::spawn_local(async move {
                let _ = finish(global, snap).await;
            })
            .detach();
            Ok("Background saving started")
        }
        Err(_) => Err(
            "ERR Another child process is active (AOF?): can't BGSAVE right now. Use BGSAVE SCHEDULE in order to schedule a BGSAVE whenever possible.",
        ),
    }
}

/// Writes refused under `stop-writes-on-bgsave-error` (Redis's MISCONF).
pub fn writes_refused(global: &'static Global, cfg: &crate::config::Config) -> bool {
    !global.rdb.last_bgsave_ok.load(Ordering::Relaxed)
        && cfg.get("stop-writes-on-bgsave-error") == Some("yes")
        && !cfg.save_points().is_empty()
}

/// The MISCONF error.
pub const MISCONF: &str = "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk. Commands that may modify the data set are disabled, because this instance is configured to report errors during writes if RDB snapshotting fails (stop-writes-on-bgsave-error option). Please check the Redis logs for details about the RDB error.";

/// Runs on shard 0 for the life of the server: starts scheduled BGSAVEs and
/// the saves that save points call for, checking ten times a second.
pub async fn cron(global: &'static Global) {
    loop {
        glommio::timer::sleep(Duration::from_millis(100)).await;
        let st = &global.rdb;
        if global.shutting_down.load(Ordering::Relaxed)
            || snapshot::in_progress()
            || st.loading.load(Ordering::Acquire)
        {
            continue;
        }
        if st.bgsave_scheduled.swap(false, Ordering::AcqRel) {
            let _ = save(global, true).await;
            continue;
        }
        let (points, aof_due) = crate::shard::with_shard(|s| {
            s.refresh_config();
            (
                s.config.save_points(),
                super::aof::rewrite_due(global, &s.config),
            )
        });
        if aof_due {
            tracing::info!("Starting automatic rewriting of AOF");
            let _ = super::aof::rewrite(global, true).await;
            continue;
        }
        if points.is_empty() {
            continue;
        }
        let changes = total_dirty(global)
            .await
            .saturating_sub(st.dirty_saved.load(Ordering::Relaxed));
        let now = unix_secs();
        let since = now.saturating_sub(global.lastsave.load(Ordering::Relaxed));
        let may_retry = st.last_bgsave_ok.load(Ordering::Relaxed)
            || now.saturating_sub(st.last_attempt.load(Ordering::Relaxed)) >= RETRY_DELAY_SECS;
        if let Some((secs, n)) = points
            .iter()
            .find(|(secs, n)| changes >= *n && since >= *secs)
            && may_retry
        {
            tracing::info!("{n} changes in {secs} seconds. Saving...");
            let _ = save(global, true).await;
        }
    }
}

/// The save SHUTDOWN and SIGTERM do: waits for a running snapshot, then
/// saves in the foreground.
pub async fn save_for_shutdown(global: &'static Global) -> Result<(), String> {
    tracing::info!("Saving the final RDB snapshot before exiting.");
    loop {
        match save(global, false).await {
            Err(SaveError::BgsaveInProgress | SaveError::OtherSnapshot) => {
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
            Err(SaveError::Failed(e)) => return Err(e),
            Ok(()) => return Ok(()),
        }
    }
}
