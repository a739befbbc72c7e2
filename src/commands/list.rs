//! List commands (the non-blocking ones), with Redis 7.0's options, replies
//! and error texts.
//!
//! Single-key commands are keyed handlers. LMOVE, RPOPLPUSH and LMPOP may
//! name keys on several shards: when all keys share a shard they run there in
//! one hop, otherwise they lock every key first (see [`Client::lock_keys`]) so
//! that no client ever sees an element in both lists, or in neither.
//!
//! The building blocks ([`push`], [`pop`], [`lmove`], [`mpop`],
//! [`parse_mpop`]...) are public so that the blocking variants can reuse them.

use super::{CommandSpec, Ctx, Handler, NO_KEYS, arg_i64, err, flags::*, is, keys};
use crate::parse::parse_i64;
use crate::reply::{OK, Reply};
use crate::shard::db::Db;
use crate::shard::value::Value;
use crate::shard::{locks, spawn_on, with_shard};
use crate::transaction::Client;
use crate::types::list::ListValue;
use bytes::Bytes;
use futures::future::LocalBoxFuture;

const R: &[&str] = &["read", "list", "fast"];
const R_SLOW: &[&str] = &["read", "list", "slow"];
const W: &[&str] = &["write", "list", "fast"];
const W_SLOW: &[&str] = &["write", "list", "slow"];

/// Unwraps a `Result<T, Reply>` inside a handler, replying with the error.
macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
}

/// The list family's commands.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec::new(
        "lpush",
        -3,
        WRITE | DENYOOM | FAST,
        keys(1, 1, 1),
        "list",
        "1.0.0",
        "Prepend one or multiple elements to a list",
        Handler::Keyed(lpush),
    )
    .acl(W),
    CommandSpec::new(
        "rpush",
        -3,
        WRITE | DENYOOM | FAST,
        keys(1, 1, 1),
        "list",
        "1.0.0",
        "Append one or multiple elements to a list",
        Handler::Keyed(rpush),
    )
    .acl(W),
    CommandSpec::new(
        "lpushx",
        -3,
        WRITE | DENYOOM | FAST,
        keys(1, 1, 1),
        "list",
        "2.2.0",
        "Prepend an element to a list, only if the list exists",
        Handler::Keyed(lpushx),
    )
    .acl(W),
    CommandSpec::new(
        "rpushx",
        -3,
        WRITE | DENYOOM | FAST,
        keys(1, 1, 1),
        "list",
        "2.2.0",
        "Append an element to a list, only if the list exists",
        Handler::Keyed(rpushx),
    )
    .acl(W),
    CommandSpec::new(
        "lpop",
        -2,
        WRITE | FAST,
        keys(1, 1, 1),
        "list",
        "1.0.0",
        "Remove and get the first elements in a list",
        Handler::Keyed(lpop),
    )
    .acl(W),
    CommandSpec::new(
        "rpop",
        -2,
        WRITE | FAST,
        keys(1, 1, 1),
        "list",
        "1.0.0",
        "Remove and get the last elements in a list",
        Handler::Keyed(rpop),
    )
    .acl(W),
    CommandSpec::new(
        "lrange",
        4,
        READONLY,
        keys(1, 1, 1),
        "list",
        "1.0.0",
        "Get a range of elements from a list",
        Handler::Keyed(lrange),
    )
    .acl(R_SLOW),
    CommandSpec::new(
        "llen",
        2,
        READONLY | FAST,
        keys(1, 1, 1),
        "list",
        "1.0.0",
        "Get the length of a list",
        Handler::Keyed(llen),
    )
    .acl(R),
    CommandSpec::new(
        "lindex",
        3,
        READONLY,
        keys(1, 1, 1),
        "list",
        "1.0.0",
        "Get an element from a list by its index",
        Handler::Keyed(lindex),
    )
    .acl(R_SLOW),
    CommandSpec::new(
        "lset",
        4,
        WRITE | DENYOOM,
        keys(1, 1, 1),
        "list",
        "1.0.0",
        "Set the value of an element in a list by its index",
        Handler::Keyed(lset),
    )
    .acl(W_SLOW),
    CommandSpec::new(
        "linsert",
        5,
        WRITE | DENYOOM,
        keys(1, 1, 1),
        "list",
        "2.2.0",
        "Insert an element before or after another element in a list",
        Handler::Keyed(linsert),
    )
    .acl(W_SLOW),
    CommandSpec::new(
        "lrem",
        4,
        WRITE,
        keys(1, 1, 1),
        "list",
        "1.0.0",
        "Remove elements from a list",
        Handler::Keyed(lrem),
    )
    .acl(W_SLOW),
    CommandSpec::new(
        "ltrim",
        4,
        WRITE,
        keys(1, 1, 1),
        "list",
        "1.0.0",
        "Trim a list to the specified range",
        Handler::Keyed(ltrim),
    )
    .acl(W_SLOW),
    CommandSpec::new(
        "lpos",
        -3,
        READONLY,
        keys(1, 1, 1),
        "list",
        "6.0.6",
        "Return the index of matching elements on a list",
        Handler::Keyed(lpos),
    )
    .acl(R_SLOW),
    CommandSpec::new(
        "lmove",
        5,
        WRITE | DENYOOM,
        keys(1, 2, 1),
        "list",
        "6.2.0",
        "Pop an element from a list, push it to another list and return it",
        Handler::Async(lmove_cmd),
    )
    .acl(W_SLOW),
    CommandSpec::new(
        "rpoplpush",
        3,
        WRITE | DENYOOM,
        keys(1, 2, 1),
        "list",
        "1.2.0",
        "Remove the last element in a list, prepend it to another list and return it",
        Handler::Async(rpoplpush),
    )
    .acl(W_SLOW),
    CommandSpec::new(
        "lmpop",
        -4,
        WRITE | MOVABLEKEYS,
        NO_KEYS,
        "list",
        "7.0.0",
        "Pop elements from a list",
        Handler::Async(lmpop),
    )
    .keys_with(lmpop_keys)
    .acl(W_SLOW),
];

// ---------------------------------------------------------------------------
// Building blocks
// ---------------------------------------------------------------------------

/// This shard's `list-max-listpack-size`.
pub fn fill(ctx: &mut Ctx<'_>) -> i64 {
    ctx.shard.refresh_config();
    ctx.shard.thresholds.list_max_listpack_size
}

/// The list at `key` for a write: `Ok(None)` when missing, WRONGTYPE for
/// another type.
pub fn list_mut<'a>(
    db: &'a mut Db,
    key: &[u8],
    now: u64,
) -> Result<Option<&'a mut ListValue>, Reply> {
    match db.lookup_write(key, now) {
        None => Ok(None),
        Some(e) => match &mut e.value {
            Value::List(l) => Ok(Some(&mut **l)),
            _ => Err(err::WRONGTYPE),
        },
    }
}

/// The list at `key` for a read (counts a keyspace hit or miss).
fn list_read<'a>(ctx: &'a mut Ctx<'_>, key: &[u8]) -> Result<Option<&'a ListValue>, Reply> {
    let (now, touch) = (ctx.now_ms, ctx.touch);
    match ctx.db().lookup(key, now, touch) {
        None => Ok(None),
        Some(e) => match &e.value {
            Value::List(l) => Ok(Some(&**l)),
            _ => Err(err::WRONGTYPE),
        },
    }
}

/// Pushes `elems` at the head (`left`) or tail of the list at `key`,
/// creating it unless `create` is false (LPUSHX/RPUSHX). Returns the new
/// length, 0 when the key is missing and `create` is false.
pub fn push<T: AsRef<[u8]>>(
    db: &mut Db,
    key: &[u8],
    elems: &[T],
    left: bool,
    create: bool,
    fill: i64,
    now: u64,
) -> Result<usize, Reply> {
    if let Some(l) = list_mut(db, key, now)? {
        l.push(elems, left, fill);
        return Ok(l.len());
    }
    if !create {
        return Ok(0);
    }
    let mut l = ListValue::new();
    l.push(elems, left, fill);
    let n = l.len();
    db.set(key, Value::List(Box::new(l)), 0, now);
    Ok(n)
}

/// Pops up to `count` elements from the head (`left`) or tail of the list
/// at `key`, in pop order, deleting the key once empty. `Ok(None)` when the
/// key is missing.
pub fn pop(
    db: &mut Db,
    key: &[u8],
    left: bool,
    count: usize,
    fill: i64,
    now: u64,
) -> Result<Option<Vec<Bytes>>, Reply> {
    let Some(l) = list_mut(db, key, now)? else {
        return Ok(None);
    };
    let out = l.pop(left, count, fill);
    if l.is_empty() {
        db.remove(key);
    }
    Ok(Some(out))
}

/// Parses LEFT or RIGHT: true for LEFT.
pub fn parse_side(arg: &[u8]) -> Result<bool, Reply> {
    if is(arg, "left") {
        Ok(true)
    } else if is(arg, "right") {
        Ok(false)
    } else {
        Err(err::SYNTAX)
    }
}

/// Resolves a Redis list index (negative counts from the tail) against
/// `len`.
fn resolve_index(index: i64, len: usize) -> Option<usize> {
    let len = len as i64;
    let i = if index < 0 { len + index } else { index };
    (0..len).contains(&i).then_some(i as usize)
}

/// Resolves LRANGE/LTRIM's inclusive `start`/`stop` against `len` as Redis
/// does; None when the range is empty, else the half-open range.
fn resolve_range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let llen = len as i64;
    let mut start = if start < 0 { llen + start } else { start };
    let mut stop = if stop < 0 { llen + stop } else { stop };
    if start < 0 {
        start = 0;
    }
    if start > stop || start >= llen {
        return None;
    }
    if stop >= llen {
        stop = llen - 1;
    }
    Some((start as usize, stop as usize + 1))
}

// ---------------------------------------------------------------------------
// Push and pop
// ---------------------------------------------------------------------------

fn push_cmd(ctx: &mut Ctx<'_>, args: &[Bytes], left: bool, create: bool) -> Reply {
    let (fill, now) = (fill(ctx), ctx.now_ms);
    match push(ctx.db(), &args[1], &args[2..], left, create, fill, now) {
        Ok(n) => Reply::Int(n as i64),
        Err(r) => r,
    }
}

fn lpush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    push_cmd(ctx, args, true, true)
}

fn rpush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    push_cmd(ctx, args, false, true)
}

fn lpushx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    push_cmd(ctx, args, true, false)
}

fn rpushx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    push_cmd(ctx, args, false, false)
}

/// Redis's `popGenericCommand`: one element (bulk or nil) without a count;
/// with a count, an array (nil array for a missing key, empty for count 0).
fn pop_cmd(ctx: &mut Ctx<'_>, args: &[Bytes], left: bool) -> Reply {
    if args.len() > 3 {
        return err::arity(if left { "lpop" } else { "rpop" });
    }
    let count = match args.get(2) {
        None => None,
        Some(a) => match parse_i64(a) {
            Some(n) if n >= 0 => Some(n as usize),
            _ => {
                return Reply::StaticError("ERR value is out of range, must be positive");
            }
        },
    };
    let (fill, now) = (fill(ctx), ctx.now_ms);
    let db = ctx.db();
    if count == Some(0) {
        // Redis checks the key before the count's fast exit.
        return match list_mut(db, &args[1], now) {
            Err(r) => r,
            Ok(None) => Reply::NilArray,
            Ok(Some(_)) => Reply::Array(Vec::new()),
        };
    }
    match pop(db, &args[1], left, count.unwrap_or(1), fill, now) {
        Err(r) => r,
        Ok(None) if count.is_some() => Reply::NilArray,
        Ok(None) => Reply::Nil,
        Ok(Some(v)) if count.is_some() => Reply::Array(v.into_iter().map(Reply::Bulk).collect()),
        Ok(Some(mut v)) => v.pop().map_or(Reply::Nil, Reply::Bulk),
    }
}

fn lpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    pop_cmd(ctx, args, true)
}

fn rpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    pop_cmd(ctx, args, false)
}

// ---------------------------------------------------------------------------
// Reads
// ---------------------------------------------------------------------------

fn lrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let start = tri!(arg_i64(&args[2]));
    let stop = tri!(arg_i64(&args[3]));
    let Some(l) = tri!(list_read(ctx, &args[1])) else {
        return Reply::Array(Vec::new());
    };
    match resolve_range(start, stop, l.len()) {
        None => Reply::Array(Vec::new()),
        Some((a, b)) => Reply::Array(bulk_replies(l.range(a, b))),
    }
}

/// Bulk replies for `items`, all sharing one copied buffer: one allocation
/// for the whole range instead of one per element.
fn bulk_replies<'a>(items: impl Iterator<Item = &'a [u8]> + Clone) -> Vec<Reply> {
    let total: usize = items.clone().map(|e| e.len()).sum();
    let mut buf = bytes::BytesMut::with_capacity(total);
    let mut ends = Vec::new();
    for e in items {
        buf.extend_from_slice(e);
        ends.push(buf.len());
    }
    let buf = buf.freeze();
    let mut start = 0;
    ends.into_iter()
        .map(|end| {
            let r = Reply::Bulk(buf.slice(start..end));
            start = end;
            r
        })
        .collect()
}

fn llen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    match tri!(list_read(ctx, &args[1])) {
        None => Reply::Int(0),
        Some(l) => Reply::Int(l.len() as i64),
    }
}

fn lindex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    // Redis looks the key up before parsing the index.
    let Some(l) = tri!(list_read(ctx, &args[1])) else {
        return Reply::Nil;
    };
    let index = tri!(arg_i64(&args[2]));
    match resolve_index(index, l.len()).and_then(|i| l.get(i)) {
        Some(e) => Reply::bulk(e),
        None => Reply::Nil,
    }
}

/// LPOS's options.
struct LposOpts {
    rank: i64,
    /// None without COUNT; Some(0) for all matches.
    count: Option<i64>,
    /// 0 for no limit.
    maxlen: i64,
}

fn parse_lpos(args: &[Bytes]) -> Result<LposOpts, Reply> {
    let mut o = LposOpts {
        rank: 1,
        count: None,
        maxlen: 0,
    };
    let mut j = 3;
    while j < args.len() {
        let more = j + 1 < args.len();
        if is(&args[j], "rank") && more {
            j += 1;
            o.rank = arg_i64(&args[j])?;
            if o.rank == 0 {
                return Err(Reply::StaticError(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                ));
            }
        } else if is(&args[j], "count") && more {
            j += 1;
            match parse_i64(&args[j]) {
                Some(n) if n >= 0 => o.count = Some(n),
                _ => return Err(Reply::StaticError("ERR COUNT can't be negative")),
            }
        } else if is(&args[j], "maxlen") && more {
            j += 1;
            match parse_i64(&args[j]) {
                Some(n) if n >= 0 => o.maxlen = n,
                _ => return Err(Reply::StaticError("ERR MAXLEN can't be negative")),
            }
        } else {
            return Err(err::SYNTAX);
        }
        j += 1;
    }
    Ok(o)
}

/// Redis's `lposCommand`. The arithmetic wraps as Redis's C longs do, so a
/// RANK of i64::MIN behaves as it does there.
fn lpos(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let o = tri!(parse_lpos(args));
    let Some(l) = tri!(list_read(ctx, &args[1])) else {
        return match o.count {
            Some(_) => Reply::Array(Vec::new()),
            None => Reply::Nil,
        };
    };
    let ele = &args[2][..];
    let len = l.len() as i64;
    let (from_tail, rank) = if o.rank < 0 {
        (true, o.rank.wrapping_neg())
    } else {
        (false, o.rank)
    };
    let items: Box<dyn Iterator<Item = &[u8]>> = if from_tail {
        Box::new(l.iter().rev())
    } else {
        Box::new(l.iter())
    };
    let limit = if o.maxlen == 0 { i64::MAX } else { o.maxlen };
    let mut matches: i64 = 0;
    let mut found = Vec::new();
    for (index, e) in (0..limit).zip(items) {
        if e != ele {
            continue;
        }
        matches += 1;
        if matches < rank {
            continue;
        }
        found.push(if from_tail { len - index - 1 } else { index });
        match o.count {
            None => break,
            Some(c) if c != 0 && matches.wrapping_sub(rank).wrapping_add(1) >= c => break,
            Some(_) => {}
        }
    }
    match o.count {
        Some(_) => Reply::Array(found.into_iter().map(Reply::Int).collect()),
        None => found.first().map_or(Reply::Nil, |&i| Reply::Int(i)),
    }
}

// ---------------------------------------------------------------------------
// In-place edits
// ---------------------------------------------------------------------------

fn lset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let (fill, now) = (fill(ctx), ctx.now_ms);
    // Redis looks the key up before parsing the index.
    let Some(l) = tri!(list_mut(ctx.db(), &args[1], now)) else {
        return err::NO_SUCH_KEY;
    };
    let index = tri!(arg_i64(&args[2]));
    match resolve_index(index, l.len()) {
        Some(i) => {
            l.set(i, &args[3], fill);
            OK
        }
        None => Reply::StaticError("ERR index out of range"),
    }
}

fn linsert(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let after = if is(&args[2], "after") {
        true
    } else if is(&args[2], "before") {
        false
    } else {
        return err::SYNTAX;
    };
    let (fill, now) = (fill(ctx), ctx.now_ms);
    let Some(l) = tri!(list_mut(ctx.db(), &args[1], now)) else {
        return Reply::Int(0);
    };
    if l.insert(&args[3], &args[4], after, fill) {
        Reply::Int(l.len() as i64)
    } else {
        Reply::Int(-1)
    }
}

fn lrem(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let count = tri!(arg_i64(&args[2]));
    let (fill, now) = (fill(ctx), ctx.now_ms);
    let db = ctx.db();
    let Some(l) = tri!(list_mut(db, &args[1], now)) else {
        return Reply::Int(0);
    };
    let removed = l.remove(&args[3], count, fill);
    if l.is_empty() {
        db.remove(&args[1]);
    }
    Reply::Int(removed as i64)
}

fn ltrim(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let start = tri!(arg_i64(&args[2]));
    let stop = tri!(arg_i64(&args[3]));
    let (fill, now) = (fill(ctx), ctx.now_ms);
    let db = ctx.db();
    let Some(l) = tri!(list_mut(db, &args[1], now)) else {
        return OK;
    };
    match resolve_range(start, stop, l.len()) {
        Some((a, b)) => l.trim(a, b, fill),
        None => {
            db.remove(&args[1]);
            return OK;
        }
    }
    if l.is_empty() {
        db.remove(&args[1]);
    }
    OK
}

// ---------------------------------------------------------------------------
// LMOVE / RPOPLPUSH
// ---------------------------------------------------------------------------

/// Runs `f` on `shard` with a handler context once no transaction holds
/// `keys`: inline when `shard` is the connection's own and the keys are
/// free, else as a task on that shard.
async fn on_shard<R, F>(c: &Client, shard: usize, keys: &[Bytes], f: F) -> R
where
    R: Send + 'static,
    F: FnOnce(&mut Ctx<'_>) -> R + Send + 'static,
{
    let opts = c.opts();
    if shard == c.shard
        && with_shard(|s| {
            s.locks
                .keys_free(opts.tx, opts.db, keys.iter().map(|k| &k[..]))
        })
    {
        return with_shard(|s| opts.call(s, f));
    }
    let keys: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
    spawn_on(c.global, shard, move || async move {
        locks::wait_free(opts.tx, opts.db, Some(keys)).await;
        with_shard(|s| opts.call(s, f))
    })
    .await
}

/// LMOVE when both keys live on this shard: nil when the source is
/// missing; the same key rotates in place (keeping its TTL).
pub fn lmove_here(
    ctx: &mut Ctx<'_>,
    src: &[u8],
    dst: &[u8],
    from_left: bool,
    to_left: bool,
) -> Reply {
    let (fill, now) = (fill(ctx), ctx.now_ms);
    let db = ctx.db();
    let Some(l) = tri!(list_mut(db, src, now)) else {
        return Reply::Nil;
    };
    if src == dst {
        return l
            .rotate(from_left, to_left, fill)
            .map_or(Reply::Nil, Reply::Bulk);
    }
    tri!(list_mut(db, dst, now));
    let Some(v) = tri!(pop(db, src, from_left, 1, fill, now)).and_then(|mut v| v.pop()) else {
        return Reply::Nil;
    };
    tri!(push(db, dst, &[&v[..]], to_left, true, fill, now));
    Reply::Bulk(v)
}

/// LMOVE from the connection: one hop when both keys share a shard, else a
/// transaction that locks both, checks the destination's type, pops from
/// the source and pushes to the destination before letting go.
pub async fn lmove(c: &Client, src: Bytes, dst: Bytes, from_left: bool, to_left: bool) -> Reply {
    let (ss, ds) = (c.shard_of(&src), c.shard_of(&dst));
    if ss == ds {
        let keys = [src.clone(), dst.clone()];
        return on_shard(c, ss, &keys, move |ctx| {
            lmove_here(ctx, &src, &dst, from_left, to_left)
        })
        .await;
    }
    let tx = c.lock_keys(&[src.clone(), dst.clone()]).await;
    let k = dst.clone();
    let dst_ok = tx
        .run(ds, move |ctx| {
            let now = ctx.now_ms;
            list_mut(ctx.db(), &k, now).is_ok()
        })
        .await;
    let k = src.clone();
    let popped = tx
        .run(ss, move |ctx| -> Result<Option<Bytes>, Reply> {
            let (fill, now) = (fill(ctx), ctx.now_ms);
            let db = ctx.db();
            // Source errors and a missing source come first, as in Redis.
            if list_mut(db, &k, now)?.is_none() {
                return Ok(None);
            }
            if !dst_ok {
                return Err(err::WRONGTYPE);
            }
            Ok(pop(db, &k, from_left, 1, fill, now)?.and_then(|mut v| v.pop()))
        })
        .await;
    let v = match popped {
        Err(r) => return r,
        Ok(None) => return Reply::Nil,
        Ok(Some(v)) => v,
    };
    let pushed = v.clone();
    let r = tx
        .run(ds, move |ctx| {
            let (fill, now) = (fill(ctx), ctx.now_ms);
            push(ctx.db(), &dst, &[&pushed[..]], to_left, true, fill, now)
        })
        .await;
    drop(tx);
    match r {
        Ok(_) => Reply::Bulk(v),
        Err(e) => e,
    }
}

fn lmove_cmd(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let from_left = tri!(parse_side(&args[3]));
        let to_left = tri!(parse_side(&args[4]));
        lmove(c, args[1].clone(), args[2].clone(), from_left, to_left).await
    })
}

fn rpoplpush(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move { lmove(c, args[1].clone(), args[2].clone(), false, true).await })
}

// ---------------------------------------------------------------------------
// LMPOP
// ---------------------------------------------------------------------------

/// Key positions of LMPOP (`numkeys` at index 1): none when `numkeys` is
/// not a positive integer that fits the arguments.
fn lmpop_keys(args: &[Bytes]) -> Vec<usize> {
    match args.get(1).and_then(|a| parse_i64(a)) {
        Some(n) if n >= 1 && (n as u64) <= args.len().saturating_sub(2) as u64 => {
            (2..2 + n as usize).collect()
        }
        _ => Vec::new(),
    }
}

/// Parses `numkeys key [key ...] LEFT|RIGHT [COUNT count]` starting at
/// `numkeys_idx` (1 for LMPOP, 2 for BLMPOP), with Redis's errors: the keys,
/// true for LEFT, and the count (1 by default).
pub fn parse_mpop(args: &[Bytes], numkeys_idx: usize) -> Result<(Vec<Bytes>, bool, usize), Reply> {
    let numkeys = match parse_i64(&args[numkeys_idx]) {
        Some(n) if n >= 1 => n as u64,
        _ => return Err(Reply::StaticError("ERR numkeys should be greater than 0")),
    };
    let where_idx = (numkeys_idx as u64)
        .saturating_add(numkeys)
        .saturating_add(1);
    if where_idx >= args.len() as u64 {
        return Err(err::SYNTAX);
    }
    let where_idx = where_idx as usize;
    let left = parse_side(&args[where_idx])?;
    let mut count = None;
    let mut j = where_idx + 1;
    while j < args.len() {
        if count.is_none() && is(&args[j], "count") && j + 1 < args.len() {
            j += 1;
            match parse_i64(&args[j]) {
                Some(n) if n >= 1 => count = Some(n as usize),
                _ => return Err(Reply::StaticError("ERR count should be greater than 0")),
            }
        } else {
            return Err(err::SYNTAX);
        }
        j += 1;
    }
    Ok((
        args[numkeys_idx + 1..where_idx].to_vec(),
        left,
        count.unwrap_or(1),
    ))
}

/// LMPOP's reply for elements popped from `key`.
fn mpop_reply(key: Bytes, elems: Vec<Bytes>) -> Reply {
    Reply::Array(vec![
        Reply::Bulk(key),
        Reply::Array(elems.into_iter().map(Reply::Bulk).collect()),
    ])
}

/// LMPOP over keys that all live on this shard: pops from the first
/// non-empty list; nil array when there is none.
pub fn mpop_here(ctx: &mut Ctx<'_>, keys: &[Bytes], left: bool, count: usize) -> Reply {
    let (fill, now) = (fill(ctx), ctx.now_ms);
    let db = ctx.db();
    for k in keys {
        if let Some(v) = tri!(pop(db, k, left, count, fill, now)) {
            return mpop_reply(k.clone(), v);
        }
    }
    Reply::NilArray
}

/// What a key holds, for LMPOP across shards.
#[derive(Clone, Copy, PartialEq)]
enum Holds {
    Nothing,
    List,
    Other,
}

/// LMPOP from the connection: one hop when every key shares a shard, else
/// a transaction that locks them all, finds the first key holding a list
/// (or another type, an error) and pops from it.
pub async fn mpop(c: &Client, keys: Vec<Bytes>, left: bool, count: usize) -> Reply {
    let first = c.shard_of(&keys[0]);
    if keys.iter().all(|k| c.shard_of(k) == first) {
        let ks = keys.clone();
        return on_shard(c, first, &keys, move |ctx| mpop_here(ctx, &ks, left, count)).await;
    }
    let tx = c.lock_keys(&keys).await;
    let groups = c.group_by_shard(&keys);
    let probes = groups.into_iter().map(|(shard, idx)| {
        let ks: Vec<Bytes> = idx.iter().map(|&i| keys[i].clone()).collect();
        let tx = &tx;
        async move {
            let held = tx
                .run(shard, move |ctx| {
                    let now = ctx.now_ms;
                    let db = ctx.db();
                    ks.iter()
                        .map(|k| match list_mut(db, k, now) {
                            Ok(None) => Holds::Nothing,
                            Ok(Some(_)) => Holds::List,
                            Err(_) => Holds::Other,
                        })
                        .collect::<Vec<_>>()
                })
                .await;
            (idx, held)
        }
    });
    let mut held = vec![Holds::Nothing; keys.len()];
    for (idx, h) in futures::future::join_all(probes).await {
        for (i, h) in idx.into_iter().zip(h) {
            held[i] = h;
        }
    }
    let Some(i) = held.iter().position(|h| *h != Holds::Nothing) else {
        return Reply::NilArray;
    };
    if held[i] == Holds::Other {
        return err::WRONGTYPE;
    }
    let k = keys[i].clone();
    let r = tx
        .run(c.shard_of(&k), move |ctx| mpop_here(ctx, &[k], left, count))
        .await;
    drop(tx);
    r
}

fn lmpop(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let (keys, left, count) = tri!(parse_mpop(&args, 1));
        mpop(c, keys, left, count).await
    })
}
