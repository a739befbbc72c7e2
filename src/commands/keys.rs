//! Generic key commands (DEL, EXISTS, TYPE, KEYS, SCAN, RENAME, COPY, MOVE,
//! OBJECT...) and the TTL commands (EXPIRE, TTL, PERSIST...), with Redis
//! 7.0's semantics and error replies.
//!
//! Single-key commands are `Keyed`. Commands whose keys may live on several
//! shards are `Async`: when every key is on one shard they run there in one
//! step (after any transaction holding the keys is done); otherwise they lock
//! their keys with [`Client::lock_keys`] and run their parts inside the
//! resulting [`Tx`], so no client sees a half-done DEL, RENAME or COPY.
//!
//! COPY ... DB n and MOVE touch keys in two databases. Key locks are per
//! `(db, key)` and `lock_keys` locks in the client's database, so these lock
//! each `(db, key)` with its own single-shard [`Tx`], acquired in ascending
//! `(shard, db)` order. Every other transaction also acquires in ascending
//! shard order and takes each shard's part at once, so the order stays
//! global and two transactions can never wait on each other in a cycle.

use super::{
    CommandSpec, Ctx, Handler, KeyedFn, NO_KEYS, arg_i64, err, flags::*, is, keys, parse_cursor,
};
use crate::glob;
use crate::reply::{OK, Reply};
use crate::shard::db::{Db, LRU_CLOCK_MAX, idle_seconds};
use crate::shard::value::{Entry, SmallBytes};
use crate::shard::{Shard, run_on, run_on_all, unix_ms, with_shard};
use crate::transaction::{Client, Tx};
use bytes::Bytes;
use futures::future::LocalBoxFuture;
use rand::Rng;

const KS_W_SLOW: &[&str] = &["keyspace", "write", "slow"];
const KS_W_FAST: &[&str] = &["keyspace", "write", "fast"];
const KS_R_SLOW: &[&str] = &["keyspace", "read", "slow"];
const KS_R_FAST: &[&str] = &["keyspace", "read", "fast"];

/// Spec of an OBJECT subcommand that takes a key.
const fn object_sub(
    name: &'static str,
    summary: &'static str,
    since: &'static str,
    f: KeyedFn,
) -> CommandSpec {
    CommandSpec::new(
        name,
        3,
        READONLY,
        keys(2, 2, 1),
        "generic",
        since,
        summary,
        Handler::Keyed(f),
    )
    .acl(KS_R_SLOW)
}

static OBJECT_SUBS: &[CommandSpec] = &[
    object_sub(
        "encoding",
        "Inspect the internal encoding of a Redis object",
        "2.2.3",
        object_encoding,
    ),
    object_sub(
        "freq",
        "Get the logarithmic access frequency counter of a Redis object",
        "4.0.0",
        object_freq,
    ),
    CommandSpec::new(
        "help",
        2,
        LOADING | STALE,
        NO_KEYS,
        "generic",
        "6.2.0",
        "Show helpful text about the different subcommands",
        Handler::Local(object_help),
    )
    .acl(&["keyspace", "slow"]),
    object_sub(
        "idletime",
        "Get the time since a Redis object was last accessed",
        "2.2.3",
        object_idletime,
    ),
    object_sub(
        "refcount",
        "Get the number of references to the value of the key",
        "2.2.3",
        object_refcount,
    ),
];

/// The generic family's commands.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec::new(
        "del",
        -2,
        WRITE,
        keys(1, -1, 1),
        "generic",
        "1.0.0",
        "Delete a key",
        Handler::Async(del),
    )
    .acl(KS_W_SLOW),
    CommandSpec::new(
        "unlink",
        -2,
        WRITE | FAST,
        keys(1, -1, 1),
        "generic",
        "4.0.0",
        "Delete a key asynchronously in another thread. Otherwise it is just as DEL, but non blocking.",
        Handler::Async(unlink),
    )
    .acl(KS_W_FAST),
    CommandSpec::new(
        "exists",
        -2,
        READONLY | FAST,
        keys(1, -1, 1),
        "generic",
        "1.0.0",
        "Determine if a key exists",
        Handler::Async(exists),
    )
    .acl(KS_R_FAST),
    CommandSpec::new(
        "touch",
        -2,
        READONLY | FAST,
        keys(1, -1, 1),
        "generic",
        "3.2.1",
        "Alters the last access time of a key(s). Returns the number of existing keys specified.",
        Handler::Async(touch),
    )
    .acl(KS_R_FAST),
    CommandSpec::new(
        "type",
        2,
        READONLY | FAST,
        keys(1, 1, 1),
        "generic",
        "1.0.0",
        "Determine the type stored at key",
        Handler::Keyed(type_cmd),
    )
    .acl(KS_R_FAST),
    CommandSpec::new(
        "keys",
        2,
        READONLY,
        NO_KEYS,
        "generic",
        "1.0.0",
        "Find all keys matching the given pattern",
        Handler::Async(keys_cmd),
    )
    .acl(&["keyspace", "read", "slow", "dangerous"]),
    CommandSpec::new(
        "randomkey",
        1,
        READONLY,
        NO_KEYS,
        "generic",
        "1.0.0",
        "Return a random key from the keyspace",
        Handler::Async(randomkey),
    )
    .acl(KS_R_SLOW),
    CommandSpec::new(
        "rename",
        3,
        WRITE,
        keys(1, 2, 1),
        "generic",
        "1.0.0",
        "Rename a key",
        Handler::Async(rename),
    )
    .acl(KS_W_SLOW),
    CommandSpec::new(
        "renamenx",
        3,
        WRITE | FAST,
        keys(1, 2, 1),
        "generic",
        "1.0.0",
        "Rename a key, only if the new key does not exist",
        Handler::Async(renamenx),
    )
    .acl(KS_W_FAST),
    CommandSpec::new(
        "copy",
        -3,
        WRITE | DENYOOM,
        keys(1, 2, 1),
        "generic",
        "6.2.0",
        "Copy a key",
        Handler::Async(copy),
    )
    .acl(KS_W_SLOW),
    CommandSpec::new(
        "move",
        3,
        WRITE | FAST,
        keys(1, 1, 1),
        "generic",
        "1.0.0",
        "Move a key to another database",
        Handler::Async(move_cmd),
    )
    .acl(KS_W_FAST),
    CommandSpec::new(
        "object",
        -2,
        0,
        NO_KEYS,
        "generic",
        "2.2.3",
        "A container for object introspection commands",
        Handler::Container(None),
    )
    .acl(&["slow"])
    .subs(OBJECT_SUBS),
    CommandSpec::new(
        "scan",
        -2,
        READONLY,
        NO_KEYS,
        "generic",
        "2.8.0",
        "Incrementally iterate the keys space",
        Handler::Async(scan),
    )
    .acl(KS_R_SLOW),
    CommandSpec::new(
        "expire",
        -3,
        WRITE | FAST,
        keys(1, 1, 1),
        "generic",
        "1.0.0",
        "Set a key's time to live in seconds",
        Handler::Keyed(expire),
    )
    .acl(KS_W_FAST),
    CommandSpec::new(
        "pexpire",
        -3,
        WRITE | FAST,
        keys(1, 1, 1),
        "generic",
        "2.6.0",
        "Set a key's time to live in milliseconds",
        Handler::Keyed(pexpire),
    )
    .acl(KS_W_FAST),
    CommandSpec::new(
        "expireat",
        -3,
        WRITE | FAST,
        keys(1, 1, 1),
        "generic",
        "1.2.0",
        "Set the expiration for a key as a UNIX timestamp",
        Handler::Keyed(expireat),
    )
    .acl(KS_W_FAST),
    CommandSpec::new(
        "pexpireat",
        -3,
        WRITE | FAST,
        keys(1, 1, 1),
        "generic",
        "2.6.0",
        "Set the expiration for a key as a UNIX timestamp specified in milliseconds",
        Handler::Keyed(pexpireat),
    )
    .acl(KS_W_FAST),
    CommandSpec::new(
        "ttl",
        2,
        READONLY | FAST,
        keys(1, 1, 1),
        "generic",
        "1.0.0",
        "Get the time to live for a key in seconds",
        Handler::Keyed(ttl),
    )
    .acl(KS_R_FAST),
    CommandSpec::new(
        "pttl",
        2,
        READONLY | FAST,
        keys(1, 1, 1),
        "generic",
        "2.6.0",
        "Get the time to live for a key in milliseconds",
        Handler::Keyed(pttl),
    )
    .acl(KS_R_FAST),
    CommandSpec::new(
        "expiretime",
        2,
        READONLY | FAST,
        keys(1, 1, 1),
        "generic",
        "7.0.0",
        "Get the expiration Unix timestamp for a key",
        Handler::Keyed(expiretime),
    )
    .acl(KS_R_FAST),
    CommandSpec::new(
        "pexpiretime",
        2,
        READONLY | FAST,
        keys(1, 1, 1),
        "generic",
        "7.0.0",
        "Get the expiration Unix timestamp for a key in milliseconds",
        Handler::Keyed(pexpiretime),
    )
    .acl(KS_R_FAST),
    CommandSpec::new(
        "persist",
        2,
        WRITE | FAST,
        keys(1, 1, 1),
        "generic",
        "2.2.0",
        "Remove the expiration from a key",
        Handler::Keyed(persist),
    )
    .acl(KS_W_FAST),
];

/// COPY to the same key in the same database, MOVE to the current database.
const SAME_OBJECT: Reply = Reply::StaticError("ERR source and destination objects are the same");

/// Parses a database index as Redis's `getIntFromObjectOrReply` does.
fn arg_int(b: &[u8]) -> Result<i64, Reply> {
    let n = arg_i64(b)?;
    if n < i32::MIN as i64 || n > i32::MAX as i64 {
        return Err(Reply::StaticError(
            "ERR value is out of range, value must between -2147483648 and 2147483647",
        ));
    }
    Ok(n)
}

/// Parses a target database index and checks it exists.
fn arg_db(b: &[u8]) -> Result<usize, Reply> {
    let n = arg_int(b)?;
    let ndb = with_shard(|s| s.dbs.len()) as i64;
    if n < 0 || n >= ndb {
        return Err(err::DB_RANGE);
    }
    Ok(n as usize)
}

fn is_expired(e: &Entry, now_ms: u64) -> bool {
    e.expire_at != 0 && e.expire_at <= now_ms
}

/// Runs a keyed handler on `shard`, which owns every one of `keys`: inline
/// when that is this connection's shard and no transaction holds the keys,
/// otherwise once the keys are free.
async fn run_single(
    c: &Client,
    shard: usize,
    keys: &[Bytes],
    f: KeyedFn,
    args: Vec<Bytes>,
) -> Reply {
    if shard == c.shard {
        let opts = c.opts();
        let done = with_shard(|s| {
            s.locks
                .keys_free(opts.tx, opts.db, keys.iter().map(|k| &k[..]))
                .then(|| opts.call(s, |ctx| f(ctx, &args)))
        });
        if let Some(r) = done {
            return r;
        }
    }
    let keys = keys.iter().map(|k| k.to_vec()).collect();
    c.run_keyed(shard, keys, f, args).await
}

/// Locks `(db, key)` pairs that may lie in different databases: one
/// single-shard [`Tx`] per pair, acquired in ascending `(shard, db)` order
/// (see the module docs for why this cannot deadlock).
async fn lock_in_dbs(c: &Client, items: &[(usize, Bytes)]) -> Vec<Tx> {
    let mut order: Vec<(usize, usize, Bytes)> = items
        .iter()
        .map(|(db, k)| (c.shard_of(k), *db, k.clone()))
        .collect();
    order.sort_by_key(|(s, d, _)| (*s, *d));
    let mut txs = Vec::with_capacity(order.len());
    for (_, db, k) in order {
        txs.push(c.lock_keys_in(db, std::slice::from_ref(&k)).await);
    }
    txs
}

// ---------------------------------------------------------------------------
// DEL, UNLINK, EXISTS, TOUCH

#[derive(Clone, Copy)]
enum Multi {
    Del,
    Exists,
    Touch,
}

/// Applies a multi-key operation to keys of this shard, in order, counting
/// the keys it found (duplicates count each time, as in Redis).
fn multi_here(ctx: &mut Ctx<'_>, keys: &[Bytes], op: Multi) -> i64 {
    let now = ctx.now_ms;
    let db = ctx.db();
    keys.iter()
        .filter(|k| match op {
            Multi::Del => db.delete(k, now).is_some(),
            Multi::Exists => db.lookup(k, now, false).is_some(),
            // TOUCH always updates the access clock.
            Multi::Touch => db.lookup(k, now, true).is_some(),
        })
        .count() as i64
}

fn del_keyed(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    Reply::Int(multi_here(ctx, &args[1..], Multi::Del))
}

fn exists_keyed(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    Reply::Int(multi_here(ctx, &args[1..], Multi::Exists))
}

fn touch_keyed(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    Reply::Int(multi_here(ctx, &args[1..], Multi::Touch))
}

async fn multi_key(c: &mut Client, args: Vec<Bytes>, op: Multi) -> Reply {
    let keys: Vec<Bytes> = args[1..].to_vec();
    let groups = c.group_by_shard(&keys);
    if groups.len() == 1 {
        let f: KeyedFn = match op {
            Multi::Del => del_keyed,
            Multi::Exists => exists_keyed,
            Multi::Touch => touch_keyed,
        };
        return run_single(c, groups[0].0, &keys, f, args).await;
    }
    let tx = c.lock_keys(&keys).await;
    let futs = groups.into_iter().map(|(shard, idx)| {
        let ks: Vec<Bytes> = idx.iter().map(|&i| keys[i].clone()).collect();
        tx.run(shard, move |ctx| multi_here(ctx, &ks, op))
    });
    let n: i64 = futures::future::join_all(futs).await.into_iter().sum();
    drop(tx);
    Reply::Int(n)
}

fn del(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(multi_key(c, args, Multi::Del))
}

/// UNLINK: DEL without the blocking free; values here free cheaply.
fn unlink(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(multi_key(c, args, Multi::Del))
}

fn exists(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(multi_key(c, args, Multi::Exists))
}

fn touch(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(multi_key(c, args, Multi::Touch))
}

// ---------------------------------------------------------------------------
// TYPE, KEYS, RANDOMKEY, SCAN

fn type_cmd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    match ctx.db().lookup(&args[1], now, false) {
        Some(e) => Reply::Simple(e.value.type_name()),
        None => Reply::Simple("none"),
    }
}

/// KEYS: atomic like Redis's (the whole keyspace is locked while it runs).
fn keys_cmd(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let db = c.db;
        let pattern = args[1].clone();
        let all = &pattern[..] == b"*";
        let tx = c.lock_all().await;
        let parts = run_on_all(c.global, move |s: &mut Shard| {
            let mut out = Vec::new();
            s.dbs[db].for_each_live(unix_ms(), |e| {
                if all || glob::matches(&pattern, &e.key, false) {
                    out.push(Reply::Bulk(Bytes::copy_from_slice(&e.key)));
                }
            });
            out
        })
        .await;
        drop(tx);
        Reply::Array(parts.into_iter().flatten().collect())
    })
}

/// RANDOMKEY: picks a shard weighted by its key count, then a key there.
fn randomkey(c: &mut Client, _args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let db = c.db;
        // Counts include expired keys not yet reclaimed; a shard may also
        // empty between the count and the pick. Retry a few times then.
        for _ in 0..8 {
            let counts = run_on_all(c.global, move |s: &mut Shard| s.dbs[db].len()).await;
            let total: usize = counts.iter().sum();
            if total == 0 {
                return Reply::Nil;
            }
            let mut r = rand::thread_rng().gen_range(0..total);
            let shard = counts
                .iter()
                .position(|&n| {
                    if r < n {
                        true
                    } else {
                        r -= n;
                        false
                    }
                })
                .unwrap_or(0);
            let key = run_on(c.global, shard, move |s: &mut Shard| {
                s.dbs[db].random_key(unix_ms())
            })
            .await;
            if let Some(k) = key {
                return Reply::Bulk(Bytes::from(k));
            }
        }
        Reply::Nil
    })
}

/// Bits of a global SCAN cursor that hold the position within a shard.
const SHARD_SHIFT: u32 = crate::shard::dict::CURSOR_BITS;

/// SCAN cursor [MATCH p] [COUNT n] [TYPE t]. The cursor is
/// `shard << 32 | position`, the position being the dict's growth-safe scan
/// cursor, so every key present for the whole scan is returned.
fn scan(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let Some(cursor) = parse_cursor(&args[1]) else {
            return Reply::StaticError("ERR invalid cursor");
        };
        let mut count: i64 = 10;
        let mut pattern: Option<Bytes> = None;
        let mut typ: Option<Bytes> = None;
        let mut i = 2;
        while i < args.len() {
            let more = args.len() - i >= 2;
            if is(&args[i], "count") && more {
                count = match arg_i64(&args[i + 1]) {
                    Ok(n) => n,
                    Err(e) => return e,
                };
                if count < 1 {
                    return err::SYNTAX;
                }
            } else if is(&args[i], "match") && more {
                let p = args[i + 1].clone();
                pattern = (&p[..] != b"*").then_some(p);
            } else if is(&args[i], "type") && more {
                typ = Some(args[i + 1].clone());
            } else {
                return err::SYNTAX;
            }
            i += 2;
        }
        let db = c.db;
        scan_shards(c, cursor, count as usize, move |s, pos, want| {
            scan_shard(
                &mut s.dbs[db],
                pos,
                want,
                pattern.as_deref(),
                typ.as_deref(),
            )
        })
        .await
    })
}

/// One SCAN-style step over every shard: the cursor's high bits name the
/// shard and its low bits a position in that shard's dict. `step` runs on a
/// shard from a position, for about `want` keys, and returns the keys found,
/// how many entries it visited and the next position (None: shard done).
/// Replies `[next-cursor, [key...]]`.
pub async fn scan_shards<F>(c: &Client, cursor: u64, count: usize, step: F) -> Reply
where
    F: Fn(&mut Shard, u64, usize) -> (Vec<Bytes>, usize, Option<u64>)
        + Send
        + Sync
        + Clone
        + 'static,
{
    let nshards = c.global.nshards;
    let mut shard = (cursor >> SHARD_SHIFT) as usize;
    let mut pos = cursor & ((1u64 << SHARD_SHIFT) - 1);
    let mut keys: Vec<Reply> = Vec::new();
    let mut visited = 0usize;
    let mut next_cursor = 0u64;
    // A cursor naming a shard past the last one is treated as finished.
    while shard < nshards {
        let want = count - visited;
        let step = step.clone();
        let (found, seen, next) =
            run_on(c.global, shard, move |s: &mut Shard| step(s, pos, want)).await;
        keys.extend(found.into_iter().map(Reply::Bulk));
        visited += seen;
        match next {
            Some(p) => {
                next_cursor = ((shard as u64) << SHARD_SHIFT) | p;
                break;
            }
            None => {
                shard += 1;
                pos = 0;
                next_cursor = if shard < nshards {
                    (shard as u64) << SHARD_SHIFT
                } else {
                    0
                };
            }
        }
        if visited >= count {
            break;
        }
    }
    let cur = itoa::Buffer::new().format(next_cursor).as_bytes().to_vec();
    Reply::Array(vec![Reply::Bulk(Bytes::from(cur)), Reply::Array(keys)])
}

/// One SCAN step on one shard's database: returns the matching live keys,
/// how many entries were visited and the next position (None at the end).
/// Expired keys met on the way are reclaimed, as Redis does.
fn scan_shard(
    db: &mut Db,
    pos: u64,
    count: usize,
    pattern: Option<&[u8]>,
    typ: Option<&[u8]>,
) -> (Vec<Bytes>, usize, Option<u64>) {
    let now = unix_ms();
    let mut out = Vec::new();
    let mut expired = Vec::new();
    let mut seen = 0;
    let next = db.dict().scan(pos, count, |e| {
        seen += 1;
        if pattern.is_some_and(|p| !glob::matches(p, &e.key, false)) {
            return;
        }
        if typ.is_some_and(|t| !t.eq_ignore_ascii_case(e.value.type_name().as_bytes())) {
            return;
        }
        if is_expired(e, now) {
            expired.push(e.key.to_vec());
            return;
        }
        out.push(Bytes::copy_from_slice(&e.key));
    });
    for k in expired {
        db.delete(&k, now);
    }
    (out, seen, next)
}

// ---------------------------------------------------------------------------
// RENAME, RENAMENX, COPY, MOVE

/// RENAME/RENAMENX when both keys live on this shard.
fn rename_here(ctx: &mut Ctx<'_>, src: &[u8], dst: &[u8], nx: bool) -> Reply {
    let now = ctx.now_ms;
    let db = ctx.db();
    if db.lookup_write(src, now).is_none() {
        return err::NO_SUCH_KEY;
    }
    if src == dst {
        return if nx { Reply::Int(0) } else { OK };
    }
    if db.lookup_write(dst, now).is_some() && nx {
        return Reply::Int(0);
    }
    if let Some(mut e) = db.remove(src) {
        e.key = SmallBytes::new(dst);
        db.insert_entry(e);
    }
    if nx { Reply::Int(1) } else { OK }
}

fn rename_keyed(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    rename_here(ctx, &args[1], &args[2], false)
}

fn renamenx_keyed(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    rename_here(ctx, &args[1], &args[2], true)
}

/// RENAME/RENAMENX. Across shards the whole entry (value, TTL, access
/// clock) moves inside one transaction holding both keys.
async fn rename_generic(c: &mut Client, args: Vec<Bytes>, nx: bool) -> Reply {
    let (src, dst) = (args[1].clone(), args[2].clone());
    let (ss, ds) = (c.shard_of(&src), c.shard_of(&dst));
    if ss == ds {
        let f: KeyedFn = if nx { renamenx_keyed } else { rename_keyed };
        return run_single(c, ss, &[src, dst], f, args).await;
    }
    let tx = c.lock_keys(&[src.clone(), dst.clone()]).await;
    let k = src.clone();
    let found = tx
        .run(ss, move |ctx| {
            let now = ctx.now_ms;
            ctx.db().lookup_write(&k, now).is_some()
        })
        .await;
    if !found {
        return err::NO_SUCH_KEY;
    }
    let k = dst.clone();
    let taken = tx
        .run(ds, move |ctx| {
            let now = ctx.now_ms;
            ctx.db().lookup_write(&k, now).is_some()
        })
        .await;
    if nx && taken {
        return Reply::Int(0);
    }
    // Take the entry as is: if its TTL passed since the check, it arrives
    // expired and lazy expiry reclaims it, as if it expired after the rename.
    let k = src.clone();
    if let Some(mut e) = tx.run(ss, move |ctx| ctx.db().remove(&k)).await {
        e.key = SmallBytes::new(&dst);
        tx.run(ds, move |ctx| {
            ctx.db().insert_entry(e);
        })
        .await;
    }
    drop(tx);
    if nx { Reply::Int(1) } else { OK }
}

fn rename(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(rename_generic(c, args, false))
}

fn renamenx(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(rename_generic(c, args, true))
}

/// Parses COPY's options: the target database and REPLACE.
fn parse_copy(args: &[Bytes], db: usize) -> Result<(usize, bool), Reply> {
    let (mut dst_db, mut replace) = (db, false);
    let mut j = 3;
    while j < args.len() {
        if is(&args[j], "replace") {
            replace = true;
        } else if is(&args[j], "db") && j + 1 < args.len() {
            dst_db = arg_db(&args[j + 1])?;
            j += 1;
        } else {
            return Err(err::SYNTAX);
        }
        j += 1;
    }
    Ok((dst_db, replace))
}

/// Reads the value and TTL COPY duplicates (a read access of the source).
fn copy_read(db: &mut Db, key: &[u8], now: u64, touch: bool) -> Option<Entry> {
    db.lookup(key, now, touch).map(|e| e.clone())
}

/// Writes COPY's duplicate under `key`; false if the key exists and
/// `replace` is not set.
fn copy_write(db: &mut Db, key: &[u8], src: Entry, replace: bool, now: u64) -> bool {
    if db.lookup_write(key, now).is_some() && !replace {
        return false;
    }
    db.insert_entry(Entry {
        key: SmallBytes::new(key),
        value: src.value,
        expire_at: src.expire_at,
        lru: crate::shard::evict::new_lru(now),
        snap_mark: false,
    });
    true
}

fn copy_keyed(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let replace = args[3..].iter().any(|a| is(a, "replace"));
    let (now, touch) = (ctx.now_ms, ctx.touch);
    let Some(e) = copy_read(ctx.db(), &args[1], now, touch) else {
        return Reply::Int(0);
    };
    Reply::Int(copy_write(ctx.db(), &args[2], e, replace, now) as i64)
}

/// COPY source destination [DB n] [REPLACE].
fn copy(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let (dst_db, replace) = match parse_copy(&args, c.db) {
            Ok(v) => v,
            Err(e) => return e,
        };
        let (src, dst) = (args[1].clone(), args[2].clone());
        let src_db = c.db;
        if dst_db == src_db && src == dst {
            return SAME_OBJECT;
        }
        let (ss, ds) = (c.shard_of(&src), c.shard_of(&dst));
        if ss == ds && dst_db == src_db {
            return run_single(c, ss, &[src, dst], copy_keyed, args).await;
        }
        let txs = if dst_db == src_db {
            vec![c.lock_keys(&[src.clone(), dst.clone()]).await]
        } else {
            lock_in_dbs(c, &[(src_db, src.clone()), (dst_db, dst.clone())]).await
        };
        let tx = &txs[0];
        let entry = tx
            .run(ss, move |ctx| {
                let (now, touch) = (ctx.now_ms, ctx.touch);
                copy_read(&mut ctx.shard.dbs[src_db], &src, now, touch)
            })
            .await;
        let Some(e) = entry else {
            return Reply::Int(0);
        };
        let done = tx
            .run(ds, move |ctx| {
                let now = ctx.now_ms;
                copy_write(&mut ctx.shard.dbs[dst_db], &dst, e, replace, now)
            })
            .await;
        drop(txs);
        Reply::Int(done as i64)
    })
}

/// MOVE key db: both databases of the key's shard are locked for the key.
fn move_cmd(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let dst_db = match arg_db(&args[2]) {
            Ok(n) => n,
            Err(e) => return e,
        };
        let src_db = c.db;
        if dst_db == src_db {
            return SAME_OBJECT;
        }
        let key = args[1].clone();
        let shard = c.shard_of(&key);
        let txs = lock_in_dbs(c, &[(src_db, key.clone()), (dst_db, key.clone())]).await;
        let moved = txs[0]
            .run(shard, move |ctx| {
                let now = ctx.now_ms;
                let dbs = &mut ctx.shard.dbs;
                if dbs[src_db].lookup_write(&key, now).is_none()
                    || dbs[dst_db].lookup_write(&key, now).is_some()
                {
                    return false;
                }
                match dbs[src_db].remove(&key) {
                    Some(e) => {
                        dbs[dst_db].insert_entry(e);
                        true
                    }
                    None => false,
                }
            })
            .await;
        drop(txs);
        Reply::Int(moved as i64)
    })
}

// ---------------------------------------------------------------------------
// OBJECT

/// The shard's `maxmemory-policy` (Redis's default when not configured).
fn maxmemory_policy(s: &Shard) -> &str {
    s.config.get("maxmemory-policy").unwrap_or("noeviction")
}

fn lfu_policy(s: &Shard) -> bool {
    s.evict.policy.is_lfu()
}

fn object_encoding(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    match ctx.db().lookup(&args[2], now, false) {
        Some(e) => Reply::Bulk(Bytes::from_static(e.value.encoding().as_bytes())),
        None => Reply::Nil,
    }
}

/// OBJECT FREQ: only tracked under an LFU policy, where the access clock
/// holds Redis's LFU format (16-bit minutes << 8 | 8-bit log counter).
fn object_freq(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    let Some(lru) = ctx.db().lookup(&args[2], now, false).map(|e| e.lru) else {
        return Reply::Nil;
    };
    if !lfu_policy(ctx.shard) {
        return Reply::StaticError(
            "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
        );
    }
    let counter = crate::shard::evict::lfu_counter(lru, now, crate::shard::evict::mode().decay);
    Reply::Int(counter as i64)
}

fn object_idletime(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    let Some(lru) = ctx.db().lookup(&args[2], now, false).map(|e| e.lru) else {
        return Reply::Nil;
    };
    if lfu_policy(ctx.shard) {
        return Reply::StaticError(
            "ERR An LFU maxmemory policy is selected, idle time not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
        );
    }
    Reply::Int(idle_seconds(lru & LRU_CLOCK_MAX, now) as i64)
}

/// Redis shares the integers 0..10000 (refcount INT_MAX) unless maxmemory is
/// set with an LRU/LFU policy; every other value has one reference.
fn object_refcount(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    let Some(value) = ctx
        .db()
        .lookup(&args[2], now, false)
        .map(|e| e.value.clone())
    else {
        return Reply::Nil;
    };
    let s = &*ctx.shard;
    let maxmemory = s
        .config
        .get("maxmemory")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let policy = maxmemory_policy(s);
    let sharing = maxmemory == 0 || !(policy.contains("lru") || policy.contains("lfu"));
    let shared = matches!(value, crate::shard::value::Value::Int(n) if (0..10_000).contains(&n));
    Reply::Int(if sharing && shared {
        i32::MAX as i64
    } else {
        1
    })
}

const OBJECT_HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
];

fn object_help(_c: &mut Client, _args: &[Bytes]) -> Reply {
    Reply::Array(OBJECT_HELP.iter().map(|l| Reply::Simple(l)).collect())
}

// ---------------------------------------------------------------------------
// EXPIRE family, TTL family, PERSIST

const EXPIRE_NX: u8 = 1;
const EXPIRE_XX: u8 = 2;
const EXPIRE_GT: u8 = 4;
const EXPIRE_LT: u8 = 8;

/// Parses NX/XX/GT/LT as Redis's `parseExtendedExpireArgumentsOrReply`.
fn expire_flags(args: &[Bytes]) -> Result<u8, Reply> {
    let mut flags = 0;
    for a in args {
        flags |= if is(a, "nx") {
            EXPIRE_NX
        } else if is(a, "xx") {
            EXPIRE_XX
        } else if is(a, "gt") {
            EXPIRE_GT
        } else if is(a, "lt") {
            EXPIRE_LT
        } else {
            let opt: String = String::from_utf8_lossy(a)
                .chars()
                .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
                .collect();
            return Err(Reply::Error(format!("ERR Unsupported option {opt}")));
        };
    }
    if flags & EXPIRE_NX != 0 && flags & (EXPIRE_XX | EXPIRE_GT | EXPIRE_LT) != 0 {
        return Err(Reply::StaticError(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if flags & EXPIRE_GT != 0 && flags & EXPIRE_LT != 0 {
        return Err(Reply::StaticError(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    Ok(flags)
}

/// EXPIRE/PEXPIRE/EXPIREAT/PEXPIREAT: `relative` adds the current time,
/// `seconds` scales by 1000; `name` is used in the overflow error.
fn expire_generic(
    ctx: &mut Ctx<'_>,
    args: &[Bytes],
    relative: bool,
    seconds: bool,
    name: &str,
) -> Reply {
    let flags = match expire_flags(&args[3..]) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let mut when = match arg_i64(&args[2]) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let invalid = || Reply::Error(format!("ERR invalid expire time in '{name}' command"));
    if seconds {
        if !(i64::MIN / 1000..=i64::MAX / 1000).contains(&when) {
            return invalid();
        }
        when *= 1000;
    }
    let now = ctx.now_ms;
    let base = if relative { now as i64 } else { 0 };
    if when > i64::MAX - base {
        return invalid();
    }
    when += base;
    let key = &args[1];
    let db = ctx.db();
    let current = match db.lookup_write(key, now) {
        None => return Reply::Int(0),
        Some(e) if e.expire_at == 0 => -1,
        Some(e) => e.expire_at as i64,
    };
    if flags & EXPIRE_NX != 0 && current != -1
        || flags & EXPIRE_XX != 0 && current == -1
        || flags & EXPIRE_GT != 0 && (when <= current || current == -1)
        || flags & EXPIRE_LT != 0 && current != -1 && when >= current
    {
        return Reply::Int(0);
    }
    if when <= now as i64 {
        db.remove(key);
    } else {
        db.set_expire(key, when as u64);
    }
    Reply::Int(1)
}

fn expire(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    expire_generic(ctx, args, true, true, "expire")
}

fn pexpire(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    expire_generic(ctx, args, true, false, "pexpire")
}

fn expireat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    expire_generic(ctx, args, false, true, "expireat")
}

fn pexpireat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    expire_generic(ctx, args, false, false, "pexpireat")
}

/// TTL/PTTL/EXPIRETIME/PEXPIRETIME: -2 for a missing key, -1 without TTL;
/// seconds are rounded as Redis does.
fn ttl_generic(ctx: &mut Ctx<'_>, args: &[Bytes], ms: bool, absolute: bool) -> Reply {
    let now = ctx.now_ms;
    let expire_at = match ctx.db().lookup(&args[1], now, false) {
        None => return Reply::Int(-2),
        Some(e) => e.expire_at,
    };
    if expire_at == 0 {
        return Reply::Int(-1);
    }
    let t = if absolute {
        expire_at as i64
    } else {
        (expire_at as i64 - now as i64).max(0)
    };
    Reply::Int(if ms { t } else { (t + 500) / 1000 })
}

fn ttl(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    ttl_generic(ctx, args, false, false)
}

fn pttl(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    ttl_generic(ctx, args, true, false)
}

fn expiretime(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    ttl_generic(ctx, args, false, true)
}

fn pexpiretime(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    ttl_generic(ctx, args, true, true)
}

fn persist(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    let db = ctx.db();
    let had_ttl = db
        .lookup_write(&args[1], now)
        .is_some_and(|e| e.expire_at != 0);
    if had_ttl {
        db.set_expire(&args[1], 0);
    }
    Reply::Int(had_ttl as i64)
}
