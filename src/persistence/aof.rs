//! The append-only file: one segment per shard, one global order.
//!
//! Every write command's effect is appended, as RESP commands, to a record in
//! the segment of the shard that ran it. A record is
//!
//! ```text
//! | len: u32 | crc32(seq, db, payload): u32 | seq: u64 | db: u32 | payload: len bytes |
//! ```
//!
//! `seq` comes from one process-wide counter, taken while the command holds
//! its keys (on the owning shard for single-shard commands, once every lock
//! is held for multi-shard ones), so sorting all segments' records by `seq`
//! gives an order that agrees with every key's history. A multi-shard
//! command is one record: replay applies all of it or none of it.
//!
//! Commands are logged in a deterministic form: relative TTLs become
//! absolute (`PEXPIREAT`), SPOP becomes SREM of what it popped,
//! INCRBYFLOAT/HINCRBYFLOAT become SET/HSET of the result, a served blocking
//! pop becomes its non-blocking form, and handlers can log their own effects
//! ([`set_override`]).
//!
//! Files, in `dir/appenddirname`:
//! - `<appendfilename>.manifest`: the base file and the sequence cut it
//!   covers, and the segment generations to replay;
//! - `<appendfilename>.base.rdb`: an RDB snapshot (records below the cut are
//!   in it and skipped on replay);
//! - `<appendfilename>.<gen>.<shard>.incr.aof`: the segments.
//!
//! Durability: under `appendfsync always` a shard's writer task writes what
//! one event-loop turn logged with one `write` and one `fdatasync`, and a
//! connection that ran writes waits until every shard has synced past them
//! before it sends its replies (group commit). Under `everysec` a helper
//! thread fsyncs once a second; under `no` the kernel decides.
//!
//! BGREWRITEAOF (and turning AOF on at run time) takes a point-in-time
//! snapshot ([`super::snapshot`]) as the new base, with the sequence cut read
//! while every shard is locked, and starts a new segment generation. The
//! manifest switches to the new base atomically (write, fsync, rename), so a
//! crash during a rewrite replays the old base and segments.

use crate::reply::Reply;
use crate::shard::{Global, current_shard_id, with_shard};
use bytes::Bytes;
use glommio::io::BufferedFile;
use std::cell::RefCell;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

/// Bytes of a record header.
pub const HEADER: usize = 20;

/// `appendfsync` policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    /// fdatasync before replying.
    Always,
    /// fdatasync once a second.
    Everysec,
    /// Never explicitly.
    No,
}

impl Fsync {
    fn from_u8(v: u8) -> Fsync {
        match v {
            0 => Fsync::Always,
            1 => Fsync::Everysec,
            _ => Fsync::No,
        }
    }

    /// Parses the option value.
    pub fn parse(s: &str) -> Fsync {
        match s {
            "always" => Fsync::Always,
            "no" => Fsync::No,
            _ => Fsync::Everysec,
        }
    }
}

/// Process-wide AOF state, in [`Global`].
#[derive(Default)]
pub struct AofState {
    /// Logging is on (appendonly yes, and loading is over).
    pub active: AtomicBool,
    fsync: AtomicU8,
    /// The next record's sequence number.
    seq: AtomicU64,
    /// Segment generation new records go to.
    gen_: AtomicU64,
    /// Per shard: bytes logged, and bytes written and synced, so far.
    logged: Vec<AtomicU64>,
    synced: Vec<AtomicU64>,
    /// Total size of the segments written by this process.
    pub current_size: AtomicU64,
    /// Size of the files at startup or after the last rewrite.
    pub base_size: AtomicU64,
    /// The last write or fsync failed.
    pub write_failed: AtomicBool,
    /// A rewrite is running.
    pub rewrite_in_progress: AtomicBool,
    /// The last rewrite failed.
    pub last_rewrite_failed: AtomicBool,
    /// Rewrites done.
    pub rewrites: AtomicU64,
    /// Seconds the last rewrite took (-1: none yet).
    pub last_rewrite_secs: AtomicI64,
    /// The manifest in force.
    manifest: Mutex<Manifest>,
}

impl AofState {
    /// State for `nshards` shards.
    pub fn new(nshards: usize) -> AofState {
        AofState {
            logged: (0..nshards).map(|_| AtomicU64::new(0)).collect(),
            synced: (0..nshards).map(|_| AtomicU64::new(0)).collect(),
            last_rewrite_secs: AtomicI64::new(-1),
            ..Default::default()
        }
    }

    /// The fsync policy in force.
    pub fn fsync(&self) -> Fsync {
        Fsync::from_u8(self.fsync.load(Ordering::Relaxed))
    }

    /// Sets the fsync policy (startup and CONFIG SET).
    pub fn set_fsync(&self, f: Fsync) {
        self.fsync.store(f as u8, Ordering::Relaxed);
    }

    /// Reserves the sequence number of a record about to be logged.
    #[inline]
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::SeqCst)
    }
}

/// What the manifest says.
#[derive(Clone, Debug, Default, PartialEq)]
struct Manifest {
    /// Base RDB file name, if any.
    base: Option<String>,
    /// Records below this sequence number are in the base.
    cut: u64,
    /// Segment generations to replay.
    gens: Vec<u64>,
}

impl Manifest {
    fn parse(text: &str) -> Result<Manifest, String> {
        let mut m = Manifest::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut w = line.split_whitespace();
            match (w.next(), w.next()) {
                (Some("base"), Some(f)) => m.base = Some(f.to_string()),
                (Some("cut"), Some(n)) => m.cut = n.parse().map_err(|_| line.to_string())?,
                (Some("gen"), Some(n)) => m.gens.push(n.parse().map_err(|_| line.to_string())?),
                _ => return Err(format!("bad manifest line '{line}'")),
            }
        }
        Ok(m)
    }

    fn text(&self) -> String {
        let mut s = String::new();
        if let Some(b) = &self.base {
            s.push_str(&format!("base {b}\n"));
        }
        s.push_str(&format!("cut {}\n", self.cut));
        for g in &self.gens {
            s.push_str(&format!("gen {g}\n"));
        }
        s
    }
}

/// The AOF directory of a configuration.
pub fn aof_dir(cfg: &crate::config::Config) -> PathBuf {
    let dir = cfg.rdb_path();
    let parent = dir.parent().unwrap_or(Path::new(".")).to_path_buf();
    parent.join(cfg.get("appenddirname").unwrap_or("appendonlydir"))
}

fn file_name(cfg: &crate::config::Config) -> String {
    cfg.get("appendfilename")
        .unwrap_or("appendonly.aof")
        .to_string()
}

fn segment_name(base: &str, gen_: u64, shard: usize) -> String {
    format!("{base}.{gen_}.{shard}.incr.aof")
}

fn manifest_path(cfg: &crate::config::Config) -> PathBuf {
    aof_dir(cfg).join(format!("{}.manifest", file_name(cfg)))
}

fn write_manifest(cfg: &crate::config::Config, m: &Manifest) -> Result<(), String> {
    let path = manifest_path(cfg);
    let tmp = path.with_extension("manifest.tmp");
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(m.text().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(aof_dir(cfg))?.sync_all()
    })();
    res.map_err(|e| format!("can't write {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------
// Logging (on shard threads)
// ---------------------------------------------------------------------------

thread_local! {
    /// Records logged on this shard and not yet written, by generation.
    static PENDING: RefCell<Vec<(u64, Vec<u8>)>> = const { RefCell::new(Vec::new()) };
    /// The writer task, parked until records arrive.
    static WRITER: std::cell::Cell<Option<std::task::Waker>> = const { std::cell::Cell::new(None) };
    /// Effects a handler logged itself, replacing the default.
    static OVERRIDE: RefCell<Option<Vec<Vec<Bytes>>>> = const { RefCell::new(None) };
    /// Effects logged while a transaction's step runs here ([`capture`]).
    static CAPTURE: RefCell<Option<Vec<Effects>>> = const { RefCell::new(None) };
}

/// The commands one command logged, with the database they apply to.
pub type Effects = (usize, Vec<Vec<Bytes>>);

/// Runs `f`, collecting what it logs instead of appending it: the steps of
/// an EXEC or a script hand their effects to the transaction, which logs
/// them as one MULTI ... EXEC record ([`log_transaction`]).
pub fn capture<R>(f: impl FnOnce() -> R) -> (R, Vec<Effects>) {
    let outer = CAPTURE.with(|c| c.borrow_mut().replace(Vec::new()));
    let out = f();
    let effects = CAPTURE.with(|c| std::mem::replace(&mut *c.borrow_mut(), outer));
    (out, effects.unwrap_or_default())
}

/// Logs a transaction's effects as one record, `MULTI ... EXEC` with a
/// SELECT wherever the database changes, so replay applies all of it or
/// none of it.
pub fn log_transaction(global: &Global, seq: u64, db: usize, effects: &[Effects]) {
    if effects.iter().all(|(_, cmds)| cmds.is_empty()) {
        return;
    }
    append_record(global, seq, db, |buf| {
        encode_args_into(buf, &[bulk("MULTI")]);
        let mut cur = db;
        for (d, cmds) in effects {
            if *d != cur {
                cur = *d;
                encode_args_into(buf, &[bulk("SELECT"), bulk(&cur.to_string())]);
            }
            encode_cmds_into(buf, cmds);
        }
        encode_args_into(buf, &[bulk("EXEC")]);
    });
}

/// Lets a keyed handler log its own effect (commands run on replay) in place
/// of its arguments. Ignored unless AOF is on.
pub fn set_override(cmds: Vec<Vec<Bytes>>) {
    OVERRIDE.with(|o| *o.borrow_mut() = Some(cmds));
}

/// Clears a stale override (before running a handler).
#[inline]
pub fn clear_override() {
    OVERRIDE.with(|o| o.borrow_mut().take());
}

/// Appends `cmds` to `out` as RESP arrays of bulk strings.
fn encode_cmds_into(out: &mut Vec<u8>, cmds: &[Vec<Bytes>]) {
    for c in cmds {
        encode_args_into(out, c);
    }
}

/// Appends one command to `out` as a RESP array of bulk strings.
fn encode_args_into(out: &mut Vec<u8>, args: &[Bytes]) {
    let mut n = itoa::Buffer::new();
    out.reserve(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.push(b'*');
    out.extend_from_slice(n.format(args.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(n.format(a.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends one record of `cmds` to this shard's pending buffer.
pub fn log(global: &Global, seq: u64, db: usize, cmds: &[Vec<Bytes>]) {
    if capturing(db, || cmds.to_vec()) {
        return;
    }
    if !cmds.is_empty() {
        append_record(global, seq, db, |buf| encode_cmds_into(buf, cmds));
    }
}

/// Appends one record of a single command, `args`, to this shard's pending
/// buffer.
pub fn log_args(global: &Global, seq: u64, db: usize, args: &[Bytes]) {
    if capturing(db, || vec![args.to_vec()]) {
        return;
    }
    append_record(global, seq, db, |buf| encode_args_into(buf, args));
}

/// Hands the effects to a running [`capture`], if any; true if it took them.
#[inline]
fn capturing(db: usize, cmds: impl FnOnce() -> Vec<Vec<Bytes>>) -> bool {
    CAPTURE.with(|c| match c.borrow_mut().as_mut() {
        Some(v) => {
            v.push((db, cmds()));
            true
        }
        None => false,
    })
}

/// Appends a record to this shard's pending buffer: the header (payload
/// length, CRC32 of what follows it, sequence number, db), then the payload
/// that `encode` writes in place.
fn append_record(global: &Global, seq: u64, db: usize, encode: impl FnOnce(&mut Vec<u8>)) {
    let Some(shard) = current_shard_id() else {
        return;
    };
    let gen_ = global.aof.gen_.load(Ordering::SeqCst);
    let len = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        if !matches!(p.last(), Some((g, _)) if *g == gen_) {
            p.push((gen_, Vec::new()));
        }
        let buf = &mut p.last_mut().expect("pushed above").1;
        let start = buf.len();
        buf.extend_from_slice(&[0; 8]);
        buf.extend_from_slice(&seq.to_le_bytes());
        buf.extend_from_slice(&(db as u32).to_le_bytes());
        encode(buf);
        let payload = (buf.len() - start - HEADER) as u32;
        buf[start..start + 4].copy_from_slice(&payload.to_le_bytes());
        let crc = crc32fast::hash(&buf[start + 8..]);
        buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        buf.len() - start
    });
    global.aof.logged[shard].fetch_add(len as u64, Ordering::AcqRel);
    if let Some(w) = WRITER.with(|w| w.take()) {
        w.wake();
    }
}

/// Resolves once this shard has records to write.
fn records_pending() -> impl std::future::Future<Output = ()> {
    std::future::poll_fn(|cx| {
        if PENDING.with(|p| !p.borrow().is_empty()) {
            std::task::Poll::Ready(())
        } else {
            WRITER.with(|w| w.set(Some(cx.waker().clone())));
            std::task::Poll::Pending
        }
    })
}

fn bulk(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// The TTL of `key` in `db` on this shard, as the command that restores it:
/// PEXPIREAT when it has one, nothing when it has none, DEL when it is gone.
fn ttl_fixup(shard: &mut crate::shard::Shard, db: usize, key: &Bytes) -> Option<Vec<Bytes>> {
    let now = crate::shard::unix_ms();
    match shard.dbs[db].peek(key, now) {
        Some(e) if e.expire_at != 0 => Some(vec![
            bulk("PEXPIREAT"),
            key.clone(),
            bulk(&e.expire_at.to_string()),
        ]),
        Some(_) => None,
        None => Some(vec![bulk("DEL"), key.clone()]),
    }
}

/// The deterministic form of a keyed write command that ran on `shard`
/// and replied `reply`, or `None` when that is its arguments as they are.
pub fn keyed_effects(
    shard: &mut crate::shard::Shard,
    db: usize,
    name: &str,
    args: &[Bytes],
    key_idx: &[usize],
    reply: &Reply,
) -> Option<Vec<Vec<Bytes>>> {
    if let Some(o) = OVERRIDE.with(|o| o.borrow_mut().take()) {
        return Some(o);
    }
    let key = || args[key_idx[0]].clone();
    let then_ttl = |shard: &mut crate::shard::Shard| {
        let mut out = vec![args.to_vec()];
        out.extend(ttl_fixup(shard, db, &args[key_idx[0]]));
        Some(out)
    };
    match name {
        "spop" => Some(match reply {
            Reply::Bulk(m) => vec![vec![bulk("SREM"), key(), m.clone()]],
            Reply::Array(items) | Reply::Set(items) if !items.is_empty() => {
                let mut c = vec![bulk("SREM"), key()];
                c.extend(items.iter().filter_map(|r| match r {
                    Reply::Bulk(m) => Some(m.clone()),
                    _ => None,
                }));
                vec![c]
            }
            _ => vec![],
        }),
        "incrbyfloat" => Some(match reply {
            Reply::Bulk(v) => vec![vec![bulk("SET"), key(), v.clone(), bulk("KEEPTTL")]],
            _ => vec![],
        }),
        "hincrbyfloat" => Some(match reply {
            Reply::Bulk(v) => vec![vec![bulk("HSET"), key(), args[2].clone(), v.clone()]],
            _ => vec![],
        }),
        // Relative or possibly relative TTLs: log the command, then the
        // key's absolute TTL (or its deletion).
        "setex" | "psetex" | "expire" | "pexpire" | "restore" => then_ttl(shard),
        // Only their EX and PX options are relative.
        "set" | "getex" => {
            let first_option = if name == "set" { 3 } else { 2 };
            let relative = args
                .get(first_option..)
                .unwrap_or_default()
                .iter()
                .any(|a| a.eq_ignore_ascii_case(b"ex") || a.eq_ignore_ascii_case(b"px"));
            if relative { then_ttl(shard) } else { None }
        }
        _ => None,
    }
}

/// The deterministic form of a multi-key or blocking command's arguments,
/// given its reply.
pub fn async_effects(name: &str, args: &[Bytes], reply: &Reply) -> Vec<Vec<Bytes>> {
    let popped_key = |r: &Reply| match r {
        Reply::Array(items) => match items.first() {
            Some(Reply::Bulk(k)) => Some(k.clone()),
            _ => None,
        },
        _ => None,
    };
    match name {
        "blpop" | "brpop" | "bzpopmin" | "bzpopmax" => match popped_key(reply) {
            Some(k) => vec![vec![bulk(&name[1..]), k]],
            None => vec![],
        },
        "blmpop" | "bzmpop" => {
            // Reply: [key, [elements...]]
            let Reply::Array(items) = reply else {
                return vec![];
            };
            let (Some(Reply::Bulk(k)), Some(popped)) = (items.first(), items.get(1)) else {
                return vec![];
            };
            let count = match popped {
                Reply::Array(els) => els.len(),
                Reply::Map(pairs) => pairs.len(),
                _ => return vec![],
            };
            let dir = args
                .iter()
                .rev()
                .find(|a| {
                    let s = a.to_ascii_lowercase();
                    s == b"left" || s == b"right" || s == b"min" || s == b"max"
                })
                .cloned()
                .unwrap_or_else(|| bulk("LEFT"));
            let cmd = if name == "blmpop" {
                if dir.eq_ignore_ascii_case(b"left") {
                    "LPOP"
                } else {
                    "RPOP"
                }
            } else if dir.eq_ignore_ascii_case(b"min") {
                "ZPOPMIN"
            } else {
                "ZPOPMAX"
            };
            vec![vec![bulk(cmd), k.clone(), bulk(&count.to_string())]]
        }
        "blmove" => {
            if matches!(reply, Reply::Nil | Reply::NilArray) {
                return vec![];
            }
            vec![vec![
                bulk("LMOVE"),
                args[1].clone(),
                args[2].clone(),
                args[3].clone(),
                args[4].clone(),
            ]]
        }
        "brpoplpush" => {
            if matches!(reply, Reply::Nil | Reply::NilArray) {
                return vec![];
            }
            vec![vec![bulk("RPOPLPUSH"), args[1].clone(), args[2].clone()]]
        }
        _ => vec![args.to_vec()],
    }
}

/// Before replies go out: waits until every shard has handed everything
/// logged so far to the kernel, and under `always` synced it too (group
/// commit: one write and one fdatasync per shard cover every connection
/// waiting meanwhile). So a process crash never loses an acknowledged write.
pub async fn wait_durable(global: &'static Global) {
    let st = &global.aof;
    if !st.active.load(Ordering::Acquire) {
        return;
    }
    let targets: Vec<u64> = st
        .logged
        .iter()
        .map(|l| l.load(Ordering::Acquire))
        .collect();
    for round in 0u32.. {
        let done = targets
            .iter()
            .zip(&st.synced)
            .all(|(t, s)| s.load(Ordering::Acquire) >= *t);
        if done || st.write_failed.load(Ordering::Acquire) {
            return;
        }
        if round < 4 {
            // This shard's writer usually finishes within a turn or two.
            crate::shard::yield_now().await;
        } else {
            glommio::timer::sleep(Duration::from_micros(20)).await;
        }
    }
}

// ---------------------------------------------------------------------------
// Writing (a task per shard)
// ---------------------------------------------------------------------------

/// The writer task of shard `shard`: moves its pending records to its
/// segment files as soon as they are logged (it runs right after the
/// commands of the current event-loop turn), syncing as `appendfsync` says.
pub async fn writer_loop(global: &'static Global, shard: usize) {
    let st = &global.aof;
    // Open segments by generation, with their write positions.
    let mut files: Vec<(u64, Rc<BufferedFile>, u64)> = Vec::new();
    let mut last_sync = std::time::Instant::now();
    let mut unsynced = false;
    loop {
        let pending = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
        let mut wrote = 0u64;
        for (gen_, buf) in pending {
            let len = buf.len() as u64;
            let slot = match files.iter().position(|(g, _, _)| *g == gen_) {
                Some(i) => i,
                None => match open_segment(gen_, shard).await {
                    Ok((f, pos)) => {
                        // Older generations are finished.
                        files.retain(|(g, _, _)| *g > gen_);
                        files.push((gen_, Rc::new(f), pos));
                        files.len() - 1
                    }
                    Err(e) => {
                        tracing::warn!("can't open the AOF segment: {e}");
                        st.write_failed.store(true, Ordering::Release);
                        continue;
                    }
                },
            };
            let (_, file, pos) = &mut files[slot];
            match write_all_at(file, buf, *pos).await {
                Ok(()) => {
                    *pos += len;
                    wrote += len;
                    st.current_size.fetch_add(len, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!("Error writing to the AOF file: {e}");
                    st.write_failed.store(true, Ordering::Release);
                }
            }
            unsynced = true;
        }
        let policy = st.fsync();
        if unsynced && let Some((_, file, _)) = files.last() {
            match policy {
                Fsync::Always => {
                    if file.fdatasync().await.is_err() {
                        st.write_failed.store(true, Ordering::Release);
                    }
                    unsynced = false;
                }
                Fsync::Everysec if last_sync.elapsed() >= Duration::from_secs(1) => {
                    // In its own task: the writer keeps writing meanwhile.
                    let file = file.clone();
                    glommio::spawn_local(async move {
                        if file.fdatasync().await.is_err() {
                            st.write_failed.store(true, Ordering::Release);
                        }
                    })
                    .detach();
                    unsynced = false;
                    last_sync = std::time::Instant::now();
                }
                _ => {}
            }
        }
        if wrote > 0 {
            st.synced[shard].fetch_add(wrote, Ordering::AcqRel);
        }
        // Wait for records, or for the next once-a-second sync.
        let wake = records_pending();
        if unsynced && policy == Fsync::Everysec {
            let left = Duration::from_secs(1).saturating_sub(last_sync.elapsed());
            let tick = glommio::timer::sleep(left.max(Duration::from_millis(1)));
            futures::future::select(Box::pin(wake), Box::pin(tick)).await;
        } else {
            wake.await;
        }
    }
}

/// Opens (creating) a segment for appending through io_uring; returns it
/// with its current size.
async fn open_segment(gen_: u64, shard: usize) -> Result<(BufferedFile, u64), String> {
    let cfg = with_shard(|s| {
        s.refresh_config();
        s.config.clone()
    });
    let path = aof_dir(&cfg).join(segment_name(&file_name(&cfg), gen_, shard));
    let f = glommio::io::OpenOptions::new()
        .write(true)
        .create(true)
        .buffered_open(&path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let size = f
        .file_size()
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((f, size))
}

/// Writes all of `buf` at `pos`; a short write (a full disk) is an error.
async fn write_all_at(file: &BufferedFile, buf: Vec<u8>, pos: u64) -> std::io::Result<()> {
    let len = buf.len();
    match file.write_at(buf, pos).await {
        Ok(n) if n == len => Ok(()),
        Ok(n) => Err(std::io::Error::other(format!(
            "short write: {n} of {len} bytes"
        ))),
        Err(e) => Err(std::io::Error::other(e.to_string())),
    }
}

// ---------------------------------------------------------------------------
// Reading: replay and check
// ---------------------------------------------------------------------------

/// One record read back.
pub struct Record {
    /// Sequence number.
    pub seq: u64,
    /// Database.
    pub db: u32,
    /// RESP commands (a slice of the segment's bytes).
    pub payload: Bytes,
}

/// How reading a segment ended.
#[derive(Debug, PartialEq)]
pub enum Tail {
    /// Every byte belongs to a good record.
    Clean,
    /// The last record is cut off (or garbled) at this offset.
    Torn(u64),
    /// A bad record at this offset is followed by more data.
    Corrupt(u64),
}

/// Reads every record of a segment.
pub fn read_segment(path: &Path) -> std::io::Result<(Vec<Record>, Tail)> {
    let mut data = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut data)?;
    let data = Bytes::from(data);
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        if data.len() - pos < HEADER {
            return Ok((out, Tail::Torn(pos as u64)));
        }
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().unwrap());
        let end = pos + HEADER + len;
        if end > data.len() {
            return Ok((out, Tail::Torn(pos as u64)));
        }
        if crc32fast::hash(&data[pos + 8..end]) != crc {
            let tail = if end == data.len() {
                Tail::Torn(pos as u64)
            } else {
                Tail::Corrupt(pos as u64)
            };
            return Ok((out, tail));
        }
        out.push(Record {
            seq: u64::from_le_bytes(data[pos + 8..pos + 16].try_into().unwrap()),
            db: u32::from_le_bytes(data[pos + 16..pos + 20].try_into().unwrap()),
            payload: data.slice(pos + HEADER..end),
        });
        pos = end;
    }
    Ok((out, Tail::Clean))
}

/// The segment files of generation list `gens` in `dir`, named after `base`.
fn segments(dir: &Path, base: &str, gens: &[u64]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    name.strip_prefix(base)
                        .and_then(|r| r.strip_prefix('.'))
                        .and_then(|r| r.strip_suffix(".incr.aof"))
                        .and_then(|r| r.split('.').next())
                        .and_then(|g| g.parse::<u64>().ok())
                        .is_some_and(|g| gens.contains(&g))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// At startup with `appendonly yes`: loads the AOF if there is one (true),
/// or returns false when there is none. Call from a non-shard thread
/// before clients connect.
pub fn load_at_startup(global: &'static Global, replayer: &Replayer) -> Result<bool, String> {
    let cfg = global.config();
    let st = &global.aof;
    st.set_fsync(Fsync::parse(cfg.get("appendfsync").unwrap_or("everysec")));
    let mpath = manifest_path(&cfg);
    if !mpath.exists() {
        return Ok(false);
    }
    let text = std::fs::read_to_string(&mpath)
        .map_err(|e| format!("Can't read the AOF manifest {}: {e}", mpath.display()))?;
    let m =
        Manifest::parse(&text).map_err(|e| format!("Bad AOF manifest {}: {e}", mpath.display()))?;
    let dir = aof_dir(&cfg);
    let started = std::time::Instant::now();
    let mut size = 0u64;
    let segs = segments(&dir, &file_name(&cfg), &m.gens);
    let seg_bytes: u64 = segs.iter().map(|p| super::load::file_len(p)).sum();
    global
        .rdb
        .loading_total_bytes
        .fetch_add(seg_bytes, Ordering::Relaxed);
    if let Some(base) = &m.base {
        let path = dir.join(base);
        size += super::load::file_len(&path);
        super::load::load_rdb_file(global, &path)?;
    }
    let truncate_ok = cfg.get("aof-load-truncated") != Some("no");
    let mut records = Vec::new();
    for path in segs {
        let (recs, tail) = read_segment(&path)
            .map_err(|e| format!("Can't read the AOF file {}: {e}", path.display()))?;
        match tail {
            Tail::Clean => {}
            Tail::Torn(at) if truncate_ok => {
                tracing::warn!(
                    "!!! Warning: short read while loading the AOF file {}!!! Truncating the AOF at offset {at}",
                    path.display()
                );
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(at))
                    .map_err(|e| format!("Can't truncate {}: {e}", path.display()))?;
            }
            Tail::Torn(at) => {
                return Err(format!(
                    "Unexpected end of file reading the append only file {} at offset {at}. \
                     You can: 1) Make a backup of your AOF file, then use \
                     `ringkv check-aof --fix <dir>`. 2) Alternatively you can set the \
                     'aof-load-truncated' configuration option to yes and restart the server.",
                    path.display()
                ));
            }
            Tail::Corrupt(at) => {
                return Err(format!(
                    "Bad file format reading the append only file {} at offset {at}: \
                     make a backup of your AOF file, then use `ringkv check-aof --fix <dir>`",
                    path.display()
                ));
            }
        }
        size += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        records.extend(recs.into_iter().filter(|r| r.seq >= m.cut));
    }
    records.sort_by_key(|r| r.seq);
    let next = records.last().map_or(m.cut, |r| r.seq + 1).max(m.cut);
    let n = records.len();
    replay(global, records, replayer)?;
    st.seq.store(next, Ordering::Release);
    st.gen_
        .store(m.gens.iter().copied().max().unwrap_or(0), Ordering::Release);
    st.base_size.store(size, Ordering::Relaxed);
    st.current_size.store(size, Ordering::Relaxed);
    *st.manifest.lock().unwrap() = m;
    tracing::info!(
        "DB loaded from append only file: {:.3} seconds ({n} records)",
        started.elapsed().as_secs_f64()
    );
    Ok(true)
}

/// Runs a RESP command stream on this thread's shard through an internal
/// client, returning how many replies were errors.
pub type RunFn = fn(&'static Global, Vec<u8>) -> futures::future::LocalBoxFuture<'static, u64>;

/// How replay runs commands. The server provides it, as it owns the command
/// table and the dispatcher that the AOF's commands go through.
pub struct Replayer {
    /// Runs a stream of commands on the current shard.
    pub run: RunFn,
    /// The key positions of a command, or None for an unknown one.
    pub key_indices: fn(&[Bytes]) -> Option<Vec<usize>>,
}

/// Bytes of commands buffered per shard before a replay round runs them.
const REPLAY_ROUND: usize = 64 << 20;

/// Replays the records in `seq` order, the shards in parallel.
///
/// A record whose keys all live on one shard joins that shard's stream; the
/// shards run their streams concurrently, each through a local client, so
/// every key still sees its own history in order. A record that spans
/// shards or has no key (FLUSHALL, SWAPDB, MULTI, ...) is a barrier: the
/// streams before it finish, then it runs alone through shard 0, which
/// routes it as a client's command would be routed.
fn replay(global: &'static Global, records: Vec<Record>, r: &Replayer) -> Result<(), String> {
    let mut streams: Vec<(u32, Vec<u8>)> = vec![(u32::MAX, Vec::new()); global.nshards];
    let mut buffered = 0usize;
    let mut errors = 0u64;
    for rec in records {
        match record_shard(global, &rec.payload, r) {
            Some(shard) => {
                let (db, stream) = &mut streams[shard];
                push_record(stream, db, &rec);
                buffered += rec.payload.len();
                if buffered >= REPLAY_ROUND {
                    errors += run_streams(global, &mut streams, r.run);
                    buffered = 0;
                }
            }
            None => {
                errors += run_streams(global, &mut streams, r.run);
                buffered = 0;
                let mut alone = [(u32::MAX, Vec::new())];
                let (db, stream) = &mut alone[0];
                push_record(stream, db, &rec);
                errors += run_streams(global, &mut alone, r.run);
            }
        }
    }
    errors += run_streams(global, &mut streams, r.run);
    if errors > 0 {
        tracing::warn!("{errors} commands of the AOF replied with an error on replay");
    }
    Ok(())
}

/// Appends a record's commands to a replay stream, preceded by SELECT when
/// its database differs from the stream's (`db`, updated).
fn push_record(stream: &mut Vec<u8>, db: &mut u32, r: &Record) {
    if r.db != *db {
        *db = r.db;
        encode_args_into(stream, &[bulk("SELECT"), bulk(&r.db.to_string())]);
    }
    stream.extend_from_slice(&r.payload);
}

/// Runs each non-empty stream on its shard (stream `i` on shard `i`), all at
/// once, and empties them. Returns the number of error replies.
fn run_streams(global: &'static Global, streams: &mut [(u32, Vec<u8>)], run: RunFn) -> u64 {
    let progress = &global.rdb.loading_loaded_bytes;
    let jobs: Vec<_> = streams
        .iter_mut()
        .enumerate()
        .filter(|(_, (_, s))| !s.is_empty())
        .map(|(shard, (db, s))| {
            *db = u32::MAX;
            let stream = std::mem::take(s);
            progress.fetch_add(stream.len() as u64, Ordering::Relaxed);
            crate::shard::spawn_on(
                global,
                shard,
                move || async move { run(global, stream).await },
            )
        })
        .collect();
    futures::executor::block_on(futures::future::join_all(jobs))
        .into_iter()
        .sum()
}

/// The one shard that owns every key of a record's commands, or None when
/// they span shards or a command has no key.
///
/// A record is RESP that ringkv wrote for itself, not client input: it is
/// decoded with `redis-protocol` (the node-to-node RESP codec), not with the
/// client parser and its Redis error texts.
fn record_shard(global: &Global, payload: &Bytes, r: &Replayer) -> Option<usize> {
    use redis_protocol::resp2::{decode::decode_bytes_mut, types::BytesFrame};
    let mut buf = bytes::BytesMut::from(payload.as_ref());
    let mut shard = None;
    while !buf.is_empty() {
        let (BytesFrame::Array(items), _, _) = decode_bytes_mut(&mut buf).ok()?? else {
            return None;
        };
        let args: Vec<Bytes> = items
            .into_iter()
            .map(|f| match f {
                BytesFrame::BulkString(b) => Some(b),
                _ => None,
            })
            .collect::<Option<_>>()?;
        if args.is_empty() {
            return None;
        }
        let keys = (r.key_indices)(&args)?;
        if keys.is_empty() {
            return None;
        }
        for i in keys {
            let s = global.slots.shard_of(args.get(i)?);
            if *shard.get_or_insert(s) != s {
                return None;
            }
        }
    }
    shard
}

/// Prepares logging once loading is over: creates the directory and the
/// manifest, and writes a base of what is loaded when starting a fresh AOF
/// over existing data. Then turns logging on.
pub async fn start_logging(global: &'static Global) -> Result<(), String> {
    let cfg = global.config();
    let dir = aof_dir(&cfg);
    std::fs::create_dir_all(&dir).map_err(|e| format!("can't create {}: {e}", dir.display()))?;
    if manifest_path(&cfg).exists() {
        global.aof.active.store(true, Ordering::Release);
        return Ok(());
    }
    let keys: u64 = crate::shard::run_on_all(global, |s| {
        s.dbs.iter().map(|d| d.len() as u64).sum::<u64>()
    })
    .await
    .into_iter()
    .sum();
    if keys == 0 {
        let m = Manifest {
            base: None,
            cut: 0,
            gens: vec![global.aof.gen_.load(Ordering::Acquire)],
        };
        write_manifest(&cfg, &m)?;
        *global.aof.manifest.lock().unwrap() = m;
        global.aof.active.store(true, Ordering::Release);
        return Ok(());
    }
    rewrite(global, true).await
}

/// BGREWRITEAOF: a new base from a point-in-time snapshot, then a manifest
/// that points at it. With `enable`, logging starts at the snapshot's
/// instant (turning AOF on).
pub async fn rewrite(global: &'static Global, enable: bool) -> Result<(), String> {
    let st = &global.aof;
    if st.rewrite_in_progress.swap(true, Ordering::AcqRel) {
        return Err("Background append only file rewriting already in progress".into());
    }
    let started = std::time::Instant::now();
    let res = rewrite_inner(global, enable).await;
    st.rewrite_in_progress.store(false, Ordering::Release);
    st.last_rewrite_failed
        .store(res.is_err(), Ordering::Release);
    match &res {
        Ok(()) => {
            st.rewrites.fetch_add(1, Ordering::Relaxed);
            st.last_rewrite_secs
                .store(started.elapsed().as_secs() as i64, Ordering::Relaxed);
            tracing::info!("Background AOF rewrite finished successfully");
        }
        Err(e) => tracing::warn!("Background AOF rewrite failed: {e}"),
    }
    res
}

async fn rewrite_inner(global: &'static Global, enable: bool) -> Result<(), String> {
    let st = &global.aof;
    let cfg = global.config();
    let dir = aof_dir(&cfg);
    std::fs::create_dir_all(&dir).map_err(|e| format!("can't create {}: {e}", dir.display()))?;
    let new_gen = st.gen_.load(Ordering::Acquire) + 1;
    // The snapshot, the cut and the switch to the new generation happen
    // while every shard is locked.
    let hook = move || {
        st.gen_.store(new_gen, Ordering::SeqCst);
        if enable {
            st.active.store(true, Ordering::Release);
        }
        st.seq.load(Ordering::SeqCst)
    };
    // A running BGSAVE holds the snapshot: start right after it.
    let mut hook = Some(hook);
    let (snap, cut) = loop {
        if !super::snapshot::in_progress()
            && let Some(h) = hook.take()
        {
            match super::snapshot::begin_with(global, h).await {
                Some(v) => break v,
                None => return Err("Another snapshot is in progress".into()),
            }
        }
        glommio::timer::sleep(Duration::from_millis(10)).await;
    };
    // Until the new base is in place, the old manifest plus the new
    // generation replays everything.
    let mut m = st.manifest.lock().unwrap().clone();
    m.gens.push(new_gen);
    write_manifest(&cfg, &m)?;
    *st.manifest.lock().unwrap() = m.clone();
    let base_name = format!("{}.base.{new_gen}.rdb", file_name(&cfg));
    let base_path = dir.join(&base_name);
    super::save::write_snapshot_to(global, &snap, &base_path, true).await?;
    drop(snap);
    let old = m.clone();
    // Older generations hold only records below the cut: every record at or
    // above it was logged after the switch, into the new generation.
    let keep = vec![new_gen];
    let m = Manifest {
        base: Some(base_name),
        cut,
        gens: keep.clone(),
    };
    write_manifest(&cfg, &m)?;
    *st.manifest.lock().unwrap() = m;
    // Remove what the new manifest no longer names.
    let fname = file_name(&cfg);
    if let Some(b) = &old.base
        && old.base.as_deref() != Some(base_path.file_name().unwrap().to_str().unwrap())
    {
        let _ = std::fs::remove_file(dir.join(b));
    }
    let dropped: Vec<u64> = old.gens.into_iter().filter(|g| !keep.contains(g)).collect();
    for p in segments(&dir, &fname, &dropped) {
        let _ = std::fs::remove_file(p);
    }
    let size = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    st.base_size.store(size, Ordering::Relaxed);
    st.current_size.store(size, Ordering::Relaxed);
    Ok(())
}

/// Automatic rewrite: true when the AOF has grown past
/// `auto-aof-rewrite-min-size` and by `auto-aof-rewrite-percentage` over its
/// size after the last rewrite (or at startup), as in Redis.
pub fn rewrite_due(global: &Global, cfg: &crate::config::Config) -> bool {
    let st = &global.aof;
    let pct = cfg.int("auto-aof-rewrite-percentage");
    if !st.active.load(Ordering::Acquire)
        || pct == 0
        || st.rewrite_in_progress.load(Ordering::Acquire)
    {
        return false;
    }
    let size = st.current_size.load(Ordering::Relaxed);
    let base = st.base_size.load(Ordering::Relaxed).max(1);
    size >= cfg.int("auto-aof-rewrite-min-size") as u64
        && (size - base.min(size)) * 100 / base >= pct as u64
}

/// Stops logging (CONFIG SET appendonly no).
pub fn stop_logging(global: &Global) {
    global.aof.active.store(false, Ordering::Release);
}

/// `ringkv check-aof [--fix] DIR`: checks every segment of the AOF
/// directory; with `fix`, truncates each damaged segment at its first bad
/// record. Returns true when the AOF is (now) good.
pub fn check_aof(dir: &Path, fix: bool, out: &mut impl Write) -> bool {
    let mut ok = true;
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(".incr.aof"))
            .collect(),
        Err(e) => {
            let _ = writeln!(out, "Cannot open {}: {e}", dir.display());
            return false;
        }
    };
    files.sort();
    for path in files {
        match read_segment(&path) {
            Err(e) => {
                let _ = writeln!(out, "{}: cannot read: {e}", path.display());
                ok = false;
            }
            Ok((recs, Tail::Clean)) => {
                let _ = writeln!(out, "{}: {} records, OK", path.display(), recs.len());
            }
            Ok((recs, Tail::Torn(at) | Tail::Corrupt(at))) => {
                let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                let _ = writeln!(
                    out,
                    "{}: {} good records, then a bad record at offset {at} ({} bytes to discard)",
                    path.display(),
                    recs.len(),
                    len - at
                );
                if fix {
                    match std::fs::OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .and_then(|f| f.set_len(at))
                    {
                        Ok(()) => {
                            let _ = writeln!(out, "Successfully truncated AOF {}", path.display());
                        }
                        Err(e) => {
                            let _ = writeln!(out, "Failed to truncate {}: {e}", path.display());
                            ok = false;
                        }
                    }
                } else {
                    ok = false;
                }
            }
        }
    }
    ok
}
