//! Set commands: SADD, SREM, SMEMBERS, SISMEMBER, SMISMEMBER, SCARD, SPOP,
//! SRANDMEMBER, SMOVE, SUNION, SINTER, SDIFF, their STORE variants,
//! SINTERCARD and SSCAN, with Redis 7.0's options, replies and errors.
//!
//! Single-key commands are keyed handlers. The multi-key ones (SMOVE, the
//! algebra commands and SINTERCARD) run in one hop when every key lives on
//! one shard; otherwise they lock all their keys (see [`Client::lock_keys`])
//! and work in rounds under the locks, so no client ever sees a half-done
//! SMOVE or a union of sets read at different moments:
//! - SUNION: every shard sends the members of its keys.
//! - SINTER/SINTERCARD: every shard reports its keys' sizes and types; the
//!   smallest set's members become the candidates, which every shard then
//!   filters against its keys. Only the smallest set travels.
//! - SDIFF: the first set's members are the candidates, filtered likewise.
//! - The STORE variants then write the result on the destination's shard in
//!   the same transaction (the destination may be one of the sources).

use super::{CommandSpec, Ctx, Handler, KeyedFn, NO_KEYS, arg_i64, err, flags::*, is, keys};
use crate::parse::parse_i64;
use crate::reply::Reply;
use crate::shard::db::Db;
use crate::shard::value::Value;
use crate::transaction::{Client, Tx};
use crate::types::set::{SetLimits, SetValue};
use bytes::Bytes;
use futures::future::{LocalBoxFuture, join_all};

const R: &[&str] = &["read", "set", "fast"];
const R_SLOW: &[&str] = &["read", "set", "slow"];
const W: &[&str] = &["write", "set", "fast"];
const W_SLOW: &[&str] = &["write", "set", "slow"];

/// The set family's commands.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec::new(
        "sadd",
        -3,
        WRITE | DENYOOM | FAST,
        keys(1, 1, 1),
        "set",
        "1.0.0",
        "Add one or more members to a set",
        Handler::Keyed(sadd),
    )
    .acl(W),
    CommandSpec::new(
        "srem",
        -3,
        WRITE | FAST,
        keys(1, 1, 1),
        "set",
        "1.0.0",
        "Remove one or more members from a set",
        Handler::Keyed(srem),
    )
    .acl(W),
    CommandSpec::new(
        "smembers",
        2,
        READONLY,
        keys(1, 1, 1),
        "set",
        "1.0.0",
        "Get all the members in a set",
        Handler::Keyed(smembers),
    )
    .acl(R_SLOW),
    CommandSpec::new(
        "sismember",
        3,
        READONLY | FAST,
        keys(1, 1, 1),
        "set",
        "1.0.0",
        "Determine if a given value is a member of a set",
        Handler::Keyed(sismember),
    )
    .acl(R),
    CommandSpec::new(
        "smismember",
        -3,
        READONLY | FAST,
        keys(1, 1, 1),
        "set",
        "6.2.0",
        "Returns the membership associated with the given elements for a set",
        Handler::Keyed(smismember),
    )
    .acl(R),
    CommandSpec::new(
        "scard",
        2,
        READONLY | FAST,
        keys(1, 1, 1),
        "set",
        "1.0.0",
        "Get the number of members in a set",
        Handler::Keyed(scard),
    )
    .acl(R),
    CommandSpec::new(
        "spop",
        -2,
        WRITE | FAST,
        keys(1, 1, 1),
        "set",
        "1.0.0",
        "Remove and return one or multiple random members from a set",
        Handler::Keyed(spop),
    )
    .acl(W),
    CommandSpec::new(
        "srandmember",
        -2,
        READONLY,
        keys(1, 1, 1),
        "set",
        "1.0.0",
        "Get one or multiple random members from a set",
        Handler::Keyed(srandmember),
    )
    .acl(R_SLOW),
    CommandSpec::new(
        "smove",
        4,
        WRITE | FAST,
        keys(1, 2, 1),
        "set",
        "1.0.0",
        "Move a member from one set to another",
        Handler::Async(smove),
    )
    .acl(W),
    CommandSpec::new(
        "sunion",
        -2,
        READONLY,
        keys(1, -1, 1),
        "set",
        "1.0.0",
        "Add multiple sets",
        Handler::Async(sunion),
    )
    .acl(R_SLOW),
    CommandSpec::new(
        "sinter",
        -2,
        READONLY,
        keys(1, -1, 1),
        "set",
        "1.0.0",
        "Intersect multiple sets",
        Handler::Async(sinter),
    )
    .acl(R_SLOW),
    CommandSpec::new(
        "sdiff",
        -2,
        READONLY,
        keys(1, -1, 1),
        "set",
        "1.0.0",
        "Subtract multiple sets",
        Handler::Async(sdiff),
    )
    .acl(R_SLOW),
    CommandSpec::new(
        "sunionstore",
        -3,
        WRITE | DENYOOM,
        keys(1, -1, 1),
        "set",
        "1.0.0",
        "Add multiple sets and store the resulting set in a key",
        Handler::Async(sunionstore),
    )
    .acl(W_SLOW),
    CommandSpec::new(
        "sinterstore",
        -3,
        WRITE | DENYOOM,
        keys(1, -1, 1),
        "set",
        "1.0.0",
        "Intersect multiple sets and store the resulting set in a key",
        Handler::Async(sinterstore),
    )
    .acl(W_SLOW),
    CommandSpec::new(
        "sdiffstore",
        -3,
        WRITE | DENYOOM,
        keys(1, -1, 1),
        "set",
        "1.0.0",
        "Subtract multiple sets and store the resulting set in a key",
        Handler::Async(sdiffstore),
    )
    .acl(W_SLOW),
    CommandSpec::new(
        "sintercard",
        -3,
        READONLY | MOVABLEKEYS,
        NO_KEYS,
        "set",
        "7.0.0",
        "Intersect multiple sets and return the cardinality of the result",
        Handler::Async(sintercard),
    )
    .keys_with(sintercard_keys)
    .acl(R_SLOW),
    CommandSpec::new(
        "sscan",
        -3,
        READONLY,
        keys(1, 1, 1),
        "set",
        "2.8.0",
        "Incrementally iterate Set elements",
        Handler::Keyed(sscan),
    )
    .acl(R_SLOW),
];

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// The selected database and the (refreshed) configuration, borrowed apart.
fn db_and_limits<'a>(ctx: &'a mut Ctx<'_>) -> (&'a mut Db, SetLimits) {
    let db = ctx.db;
    let s = &mut *ctx.shard;
    s.refresh_config();
    let t = &s.thresholds;
    let lim = SetLimits {
        intset_entries: t.set_max_intset_entries,
        listpack_entries: t.set_max_listpack_entries,
        listpack_value: t.set_max_listpack_value,
    };
    (&mut s.dbs[db], lim)
}

/// The encoding limits of this shard's configuration.
fn shard_limits(ctx: &mut Ctx<'_>) -> SetLimits {
    db_and_limits(ctx).1
}

/// A set for a read command: `Ok(None)` when missing, WRONGTYPE for other
/// types. Counts a keyspace hit or miss.
fn read_set<'a>(ctx: &'a mut Ctx<'_>, key: &[u8]) -> Result<Option<&'a mut SetValue>, Reply> {
    let (now, touch) = (ctx.now_ms, ctx.touch);
    match ctx.db().lookup(key, now, touch) {
        None => Ok(None),
        Some(e) => match &mut e.value {
            Value::Set(s) => Ok(Some(s)),
            _ => Err(err::WRONGTYPE),
        },
    }
}

/// Like [`read_set`] for write commands (no hit/miss accounting).
fn write_set<'a>(db: &'a mut Db, key: &[u8], now: u64) -> Result<Option<&'a mut SetValue>, Reply> {
    match db.lookup_write(key, now) {
        None => Ok(None),
        Some(e) => match &mut e.value {
            Value::Set(s) => Ok(Some(s)),
            _ => Err(err::WRONGTYPE),
        },
    }
}

/// The set stored at `key` without any accounting or expiry (used once a
/// first pass has looked every key up).
fn set_ref<'a>(db: &'a Db, key: &[u8]) -> Option<&'a SetValue> {
    match &db.dict().get(key)?.value {
        Value::Set(s) => Some(s),
        _ => None,
    }
}

/// Members as bulk replies.
fn bulks(members: Vec<Bytes>) -> Vec<Reply> {
    members.into_iter().map(Reply::Bulk).collect()
}

/// Every member of `s` as a bulk reply.
fn member_replies(s: &SetValue) -> Vec<Reply> {
    let mut out = Vec::with_capacity(s.len());
    s.for_each(|m| out.push(Reply::bulk(m)));
    out
}

/// Deletes `key` when its set became empty.
fn drop_if_empty(db: &mut Db, key: &[u8]) {
    if let Some(e) = db.dict().get(key)
        && matches!(&e.value, Value::Set(s) if s.is_empty())
    {
        db.remove(key);
    }
}

/// Stores `set` at `key` (replacing any value and TTL), or deletes `key`
/// when `set` is empty; replies with the new size.
fn store(ctx: &mut Ctx<'_>, key: &[u8], set: SetValue) -> Reply {
    let now = ctx.now_ms;
    let n = set.len();
    if n == 0 {
        ctx.db().delete(key, now);
    } else {
        ctx.db().set(key, Value::Set(Box::new(set)), 0, now);
    }
    Reply::Int(n as i64)
}

/// Runs a keyed handler in one hop when all `keys` live on one shard;
/// returns None when they span shards.
async fn one_shard(c: &Client, keys: &[Bytes], f: KeyedFn, args: &[Bytes]) -> Option<Reply> {
    let shard = c.shard_of(&keys[0]);
    if keys[1..].iter().any(|k| c.shard_of(k) != shard) {
        return None;
    }
    let ks = keys.iter().map(|k| k.to_vec()).collect();
    Some(c.run_keyed(shard, ks, f, args.to_vec()).await)
}

// ---------------------------------------------------------------------------
// Single-key commands
// ---------------------------------------------------------------------------

fn sadd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    let key = &args[1];
    let (db, lim) = db_and_limits(ctx);
    let add_all = |s: &mut SetValue| {
        let lim = if s.needs_limits() {
            lim
        } else {
            SetLimits {
                intset_entries: 0,
                listpack_entries: 0,
                listpack_value: 0,
            }
        };
        args[2..].iter().filter(|m| s.add(m, &lim)).count() as i64
    };
    match write_set(db, key, now) {
        Err(e) => e,
        Ok(Some(s)) => Reply::Int(add_all(s)),
        Ok(None) => {
            let mut s = SetValue::new();
            let n = add_all(&mut s);
            db.set(key, Value::Set(Box::new(s)), 0, now);
            Reply::Int(n)
        }
    }
}

fn srem(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    let key = &args[1];
    let db = ctx.db();
    let n = match write_set(db, key, now) {
        Err(e) => return e,
        Ok(None) => return Reply::Int(0),
        Ok(Some(s)) => args[2..].iter().filter(|m| s.remove(m)).count(),
    };
    drop_if_empty(db, key);
    Reply::Int(n as i64)
}

fn smembers(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    match read_set(ctx, &args[1]) {
        Err(e) => e,
        Ok(None) => Reply::Set(Vec::new()),
        Ok(Some(s)) => Reply::Set(member_replies(s)),
    }
}

fn sismember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    match read_set(ctx, &args[1]) {
        Err(e) => e,
        Ok(None) => Reply::Int(0),
        Ok(Some(s)) => Reply::Int(s.contains(&args[2]) as i64),
    }
}

fn smismember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    match read_set(ctx, &args[1]) {
        Err(e) => e,
        Ok(s) => Reply::Array(
            args[2..]
                .iter()
                .map(|m| Reply::Int(s.as_ref().is_some_and(|s| s.contains(m)) as i64))
                .collect(),
        ),
    }
}

fn scard(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    match read_set(ctx, &args[1]) {
        Err(e) => e,
        Ok(s) => Reply::Int(s.map_or(0, |s| s.len()) as i64),
    }
}

/// SPOP's strategy switch (Redis's `SPOP_MOVE_STRATEGY_MUL`): when fewer
/// than count/5 members remain, the remaining ones are moved to a new set.
const SPOP_MOVE_STRATEGY_MUL: usize = 5;

fn spop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    if args.len() > 3 {
        return err::SYNTAX;
    }
    let count = match args.get(2) {
        None => None,
        // Redis's getPositiveLongFromObjectOrReply: one message for both
        // a non-integer and a negative count.
        Some(a) => match parse_i64(a) {
            Some(n) if n >= 0 => Some(n as usize),
            _ => return Reply::StaticError("ERR value is out of range, must be positive"),
        },
    };
    let now = ctx.now_ms;
    let key = &args[1];
    let (db, lim) = db_and_limits(ctx);
    let mut rng = rand::thread_rng();
    let s = match write_set(db, key, now) {
        Err(e) => return e,
        Ok(None) if count.is_none() => return Reply::Nil,
        Ok(None) => return Reply::Set(Vec::new()),
        Ok(Some(s)) => s,
    };
    let reply = match count {
        None => match s.pop_random(&mut rng) {
            Some(m) => Reply::Bulk(m),
            None => Reply::Nil,
        },
        Some(0) => return Reply::Set(Vec::new()),
        Some(n) if n >= s.len() => {
            let all = s.members();
            db.remove(key);
            return Reply::Set(bulks(all));
        }
        Some(n) => {
            let remaining = s.len() - n;
            if remaining * SPOP_MOVE_STRATEGY_MUL > n {
                Reply::Set(
                    (0..n)
                        .filter_map(|_| s.pop_random(&mut rng))
                        .map(Reply::Bulk)
                        .collect(),
                )
            } else {
                // Few members stay: pick those, build a new set of them (as
                // Redis does, so a big set may shrink to a small encoding)
                // and return all the others.
                let mut all = s.members();
                for i in 0..remaining {
                    let j = rand::Rng::gen_range(&mut rng, i..all.len());
                    all.swap(i, j);
                }
                let popped = all.split_off(remaining);
                let mut kept = SetValue::new();
                for m in &all {
                    kept.add(m, &lim);
                }
                *s = kept;
                Reply::Set(bulks(popped))
            }
        }
    };
    drop_if_empty(db, key);
    reply
}

fn srandmember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    if args.len() > 3 {
        return err::SYNTAX;
    }
    let count = match args.get(2) {
        None => None,
        Some(a) => match arg_i64(a) {
            Err(e) => return e,
            Ok(i64::MIN) => {
                return Reply::StaticError(
                    "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
                );
            }
            Ok(n) => Some(n),
        },
    };
    let s = match read_set(ctx, &args[1]) {
        Err(e) => return e,
        Ok(None) if count.is_none() => return Reply::Nil,
        Ok(None) => return Reply::Array(Vec::new()),
        Ok(Some(s)) => s,
    };
    let mut rng = rand::thread_rng();
    match count {
        None => match s.random_member(&mut rng) {
            Some(m) => Reply::Bulk(m),
            None => Reply::Nil,
        },
        Some(0) => Reply::Array(Vec::new()),
        Some(n) if n < 0 || n == 1 => Reply::Array(bulks(
            s.random_with_repeats(n.unsigned_abs() as usize, &mut rng),
        )),
        Some(n) => Reply::Array(bulks(s.random_distinct(n as usize, &mut rng))),
    }
}

/// Redis's `parseScanCursorOrReply`: `strtoul` rules (an optional sign,
/// negative values wrap, the empty string is 0), no leading space.
fn parse_cursor(b: &[u8]) -> Option<u64> {
    if b.is_empty() {
        return Some(0);
    }
    if matches!(b[0], b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
        return None;
    }
    let (neg, digits) = match b[0] {
        b'+' => (false, &b[1..]),
        b'-' => (true, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        v = v.checked_mul(10)?.checked_add((d - b'0') as u64)?;
    }
    Some(if neg { v.wrapping_neg() } else { v })
}

/// SSCAN key cursor [MATCH pattern] [COUNT count]. Intsets and listpacks
/// come back whole with cursor 0, like Redis; hashtables scan by hash
/// position (see `MemberTable::scan`), which survives any growth.
fn sscan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let Some(cursor) = parse_cursor(&args[2]) else {
        return Reply::StaticError("ERR invalid cursor");
    };
    let s = match read_set(ctx, &args[1]) {
        Err(e) => return e,
        Ok(None) => {
            return Reply::Array(vec![
                Reply::Bulk(Bytes::from_static(b"0")),
                Reply::Array(vec![]),
            ]);
        }
        Ok(Some(s)) => s,
    };
    let mut count: i64 = 10;
    let mut pattern: Option<&[u8]> = None;
    let mut i = 3;
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
            let p = &args[i + 1][..];
            pattern = (p != b"*").then_some(p);
        } else {
            return err::SYNTAX;
        }
        i += 2;
    }
    let mut out = Vec::new();
    let next = s.scan(cursor, count as usize, |m| {
        if pattern.is_none_or(|p| crate::glob::matches(p, m, false)) {
            out.push(Reply::bulk(m));
        }
    });
    Reply::Array(vec![
        Reply::Bulk(Bytes::copy_from_slice(
            itoa::Buffer::new().format(next).as_bytes(),
        )),
        Reply::Array(out),
    ])
}

// ---------------------------------------------------------------------------
// SMOVE
// ---------------------------------------------------------------------------

fn smove_keyed(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let (src, dst, m) = (&args[1], &args[2], &args[3]);
    let now = ctx.now_ms;
    let (db, lim) = db_and_limits(ctx);
    let member = match write_set(db, src, now) {
        Err(e) => return e,
        Ok(None) => return Reply::Int(0),
        Ok(Some(s)) => s.contains(m),
    };
    if let Err(e) = write_set(db, dst, now) {
        return e;
    }
    if src == dst || !member {
        return Reply::Int(member as i64);
    }
    if let Ok(Some(s)) = write_set(db, src, now) {
        s.remove(m);
    }
    drop_if_empty(db, src);
    match write_set(db, dst, now) {
        Ok(Some(s)) => {
            s.add(m, &lim);
        }
        _ => {
            let mut s = SetValue::new();
            s.add(m, &lim);
            db.set(dst, Value::Set(Box::new(s)), 0, now);
        }
    }
    Reply::Int(1)
}

fn smove(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let keys = args[1..3].to_vec();
        if let Some(r) = one_shard(c, &keys, smove_keyed, &args).await {
            return r;
        }
        let (src, dst, m) = (args[1].clone(), args[2].clone(), args[3].clone());
        let tx = c.lock_keys(&keys).await;
        let (ss, ds) = (c.shard_of(&src), c.shard_of(&dst));
        // Check both sides first: nothing changes unless the move happens.
        let (k, mm) = (src.clone(), m.clone());
        let src_state = tx.run(ss, move |ctx| {
            let now = ctx.now_ms;
            write_set(ctx.db(), &k, now).map(|s| s.map(|s| s.contains(&mm)))
        });
        let k = dst.clone();
        let dst_ok = tx.run(ds, move |ctx| {
            let now = ctx.now_ms;
            write_set(ctx.db(), &k, now).map(|_| ())
        });
        let (src_state, dst_ok) = futures::join!(src_state, dst_ok);
        let member = match src_state {
            Ok(None) => return Reply::Int(0),
            Err(e) => return e,
            Ok(Some(member)) => member,
        };
        if let Err(e) = dst_ok {
            return e;
        }
        if !member {
            return Reply::Int(0);
        }
        let mm = m.clone();
        let remove = tx.run(ss, move |ctx| {
            let now = ctx.now_ms;
            let db = ctx.db();
            if let Ok(Some(s)) = write_set(db, &src, now) {
                s.remove(&mm);
            }
            drop_if_empty(db, &src);
        });
        let add = tx.run(ds, move |ctx| {
            let now = ctx.now_ms;
            let lim = shard_limits(ctx);
            let db = ctx.db();
            match write_set(db, &dst, now) {
                Ok(Some(s)) => {
                    s.add(&m, &lim);
                }
                _ => {
                    let mut s = SetValue::new();
                    s.add(&m, &lim);
                    db.set(&dst, Value::Set(Box::new(s)), 0, now);
                }
            }
        });
        futures::join!(remove, add);
        drop(tx);
        Reply::Int(1)
    })
}

// ---------------------------------------------------------------------------
// Set algebra
// ---------------------------------------------------------------------------

/// Which operation.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Op {
    Union,
    Inter,
    Diff,
}

/// Looks up every key (a read or a write lookup, as Redis does for the plain
/// and STORE variants) and checks its type. Returns each key's size, None
/// for a missing key.
fn sizes<'k>(
    ctx: &mut Ctx<'_>,
    keys: impl Iterator<Item = &'k [u8]>,
    write: bool,
) -> Result<Vec<Option<usize>>, Reply> {
    let now = ctx.now_ms;
    keys.map(|k| {
        let s = if write {
            write_set(ctx.db(), k, now)?
        } else {
            read_set(ctx, k)?
        };
        Ok(s.map(|s| s.len()))
    })
    .collect()
}

/// Calls `f` with each member of the intersection of `sets` (a missing set
/// is empty) until it returns false.
fn for_each_inter(sets: &[Option<&SetValue>], mut f: impl FnMut(&[u8]) -> bool) {
    let Some(mut order) = sets.iter().copied().collect::<Option<Vec<&SetValue>>>() else {
        return;
    };
    order.sort_by_key(|s| s.len());
    let (first, rest) = order.split_first().expect("at least one key");
    first.for_each_while(|m| !rest.iter().all(|s| s.contains(m)) || f(m));
}

/// Computes an operation over sets of this shard.
fn compute(op: Op, sets: &[Option<&SetValue>], lim: &SetLimits) -> SetValue {
    let mut out = SetValue::new();
    match op {
        Op::Union => {
            for s in sets.iter().flatten() {
                s.for_each(|m| {
                    out.add(m, lim);
                });
            }
        }
        Op::Inter => for_each_inter(sets, |m| {
            out.add(m, lim);
            true
        }),
        Op::Diff => {
            if let Some(first) = sets[0] {
                let rest: Vec<&SetValue> = sets[1..].iter().flatten().copied().collect();
                first.for_each(|m| {
                    if !rest.iter().any(|s| s.contains(m)) {
                        out.add(m, lim);
                    }
                });
            }
        }
    }
    out
}

/// An operation over keys of this shard: type checks, then the result.
fn compute_here(ctx: &mut Ctx<'_>, op: Op, keys: &[Bytes], write: bool) -> Result<SetValue, Reply> {
    sizes(ctx, keys.iter().map(|k| &k[..]), write)?;
    let lim = shard_limits(ctx);
    let db = ctx.db();
    let sets: Vec<Option<&SetValue>> = keys.iter().map(|k| set_ref(db, k)).collect();
    Ok(compute(op, &sets, &lim))
}

fn algebra_keyed(ctx: &mut Ctx<'_>, op: Op, args: &[Bytes]) -> Reply {
    match compute_here(ctx, op, &args[1..], false) {
        Ok(s) => Reply::Set(member_replies(&s)),
        Err(e) => e,
    }
}

fn algebra_store_keyed(ctx: &mut Ctx<'_>, op: Op, args: &[Bytes]) -> Reply {
    match compute_here(ctx, op, &args[2..], true) {
        Ok(s) => store(ctx, &args[1], s),
        Err(e) => e,
    }
}

fn sunion_keyed(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    algebra_keyed(ctx, Op::Union, args)
}
fn sinter_keyed(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    algebra_keyed(ctx, Op::Inter, args)
}
fn sdiff_keyed(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    algebra_keyed(ctx, Op::Diff, args)
}
fn sunionstore_keyed(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    algebra_store_keyed(ctx, Op::Union, args)
}
fn sinterstore_keyed(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    algebra_store_keyed(ctx, Op::Inter, args)
}
fn sdiffstore_keyed(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    algebra_store_keyed(ctx, Op::Diff, args)
}

/// The keys of one shard with their argument positions.
type Part = (usize, Vec<(usize, Bytes)>);

fn parts(c: &Client, keys: &[Bytes]) -> Vec<Part> {
    c.group_by_shard(keys)
        .into_iter()
        .map(|(s, idx)| (s, idx.into_iter().map(|i| (i, keys[i].clone())).collect()))
        .collect()
}

/// Round one over every shard: type checks and sizes, by key position.
async fn sizes_everywhere(
    tx: &Tx,
    parts: &[Part],
    nkeys: usize,
    write: bool,
) -> Result<Vec<Option<usize>>, Reply> {
    let futs = parts.iter().map(|(shard, ks)| {
        let ks = ks.clone();
        tx.run(*shard, move |ctx| {
            let r = sizes(ctx, ks.iter().map(|(_, k)| &k[..]), write);
            r.map(|v| ks.iter().map(|(i, _)| *i).zip(v).collect::<Vec<_>>())
        })
    });
    let mut out = vec![None; nkeys];
    for r in join_all(futs).await {
        for (i, n) in r? {
            out[i] = n;
        }
    }
    Ok(out)
}

/// The members of one key, copied (a missing key is empty).
async fn fetch(tx: &Tx, shard: usize, key: Bytes) -> Vec<Bytes> {
    tx.run(shard, move |ctx| {
        set_ref(ctx.db(), &key).map_or_else(Vec::new, |s| s.members())
    })
    .await
}

/// Asks every shard which candidates are members of its keys (other than
/// position `skip`): with `all`, of every such key; otherwise of any.
async fn filter_everywhere(
    tx: &Tx,
    parts: &[Part],
    skip: usize,
    candidates: &[Bytes],
    all: bool,
) -> Vec<Vec<bool>> {
    let shared = std::sync::Arc::new(candidates.to_vec());
    let futs = parts.iter().filter_map(|(shard, ks)| {
        let ks: Vec<Bytes> = ks
            .iter()
            .filter(|(i, _)| *i != skip)
            .map(|(_, k)| k.clone())
            .collect();
        if ks.is_empty() {
            return None;
        }
        let cands = shared.clone();
        Some(tx.run(*shard, move |ctx| {
            let db = ctx.db();
            let sets: Vec<Option<&SetValue>> = ks.iter().map(|k| set_ref(db, k)).collect();
            cands
                .iter()
                .map(|m| {
                    let mut hits = sets.iter().map(|s| s.is_some_and(|s| s.contains(m)));
                    if all {
                        hits.all(|h| h)
                    } else {
                        hits.any(|h| h)
                    }
                })
                .collect::<Vec<bool>>()
        }))
    });
    join_all(futs).await
}

/// An operation over keys on several shards, under the transaction's locks.
async fn compute_across(
    c: &Client,
    tx: &Tx,
    op: Op,
    keys: &[Bytes],
    write: bool,
) -> Result<Vec<Bytes>, Reply> {
    let parts = parts(c, keys);
    if op == Op::Union {
        // One round: every shard type-checks and sends its members.
        let futs = parts.iter().map(|(shard, ks)| {
            let ks = ks.clone();
            tx.run(*shard, move |ctx| {
                sizes(ctx, ks.iter().map(|(_, k)| &k[..]), write)?;
                let db = ctx.db();
                Ok::<_, Reply>(
                    ks.into_iter()
                        .map(|(i, k)| (i, set_ref(db, &k).map_or_else(Vec::new, |s| s.members())))
                        .collect::<Vec<_>>(),
                )
            })
        });
        let mut by_key: Vec<Vec<Bytes>> = vec![Vec::new(); keys.len()];
        for r in join_all(futs).await {
            for (i, ms) in r? {
                by_key[i] = ms;
            }
        }
        let mut seen = hashbrown::HashSet::new();
        return Ok(by_key
            .into_iter()
            .flatten()
            .filter(|m| seen.insert(m.clone()))
            .collect());
    }
    let sizes = sizes_everywhere(tx, &parts, keys.len(), write).await?;
    // The candidates: the smallest set for SINTER, the first for SDIFF.
    let base = match op {
        Op::Inter => {
            if sizes.iter().any(|s| s.is_none()) {
                return Ok(Vec::new());
            }
            (0..keys.len()).min_by_key(|&i| sizes[i]).expect("keys")
        }
        _ => {
            if sizes[0].is_none() {
                return Ok(Vec::new());
            }
            0
        }
    };
    let candidates = fetch(tx, c.shard_of(&keys[base]), keys[base].clone()).await;
    let masks = filter_everywhere(tx, &parts, base, &candidates, op == Op::Inter).await;
    Ok(candidates
        .into_iter()
        .enumerate()
        .filter(|(j, _)| {
            if op == Op::Inter {
                masks.iter().all(|m| m[*j])
            } else {
                !masks.iter().any(|m| m[*j])
            }
        })
        .map(|(_, m)| m)
        .collect())
}

/// SUNION / SINTER / SDIFF.
async fn algebra(c: &Client, op: Op, args: Vec<Bytes>, f: KeyedFn) -> Reply {
    let keys = args[1..].to_vec();
    if let Some(r) = one_shard(c, &keys, f, &args).await {
        return r;
    }
    let tx = c.lock_keys(&keys).await;
    let r = compute_across(c, &tx, op, &keys, false).await;
    drop(tx);
    match r {
        Ok(ms) => Reply::Set(bulks(ms)),
        Err(e) => e,
    }
}

/// SUNIONSTORE / SINTERSTORE / SDIFFSTORE.
async fn algebra_store(c: &Client, op: Op, args: Vec<Bytes>, f: KeyedFn) -> Reply {
    let all = args[1..].to_vec();
    if let Some(r) = one_shard(c, &all, f, &args).await {
        return r;
    }
    let tx = c.lock_keys(&all).await;
    let result = match compute_across(c, &tx, op, &all[1..], true).await {
        Ok(ms) => ms,
        Err(e) => return e,
    };
    let dst = args[1].clone();
    let reply = tx
        .run(c.shard_of(&dst), move |ctx| {
            let lim = shard_limits(ctx);
            let mut set = SetValue::new();
            for m in &result {
                set.add(m, &lim);
            }
            store(ctx, &dst, set)
        })
        .await;
    drop(tx);
    reply
}

fn sunion(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(algebra(c, Op::Union, args, sunion_keyed))
}
fn sinter(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(algebra(c, Op::Inter, args, sinter_keyed))
}
fn sdiff(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(algebra(c, Op::Diff, args, sdiff_keyed))
}
fn sunionstore(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(algebra_store(c, Op::Union, args, sunionstore_keyed))
}
fn sinterstore(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(algebra_store(c, Op::Inter, args, sinterstore_keyed))
}
fn sdiffstore(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(algebra_store(c, Op::Diff, args, sdiffstore_keyed))
}

// ---------------------------------------------------------------------------
// SINTERCARD
// ---------------------------------------------------------------------------

/// Key positions of SINTERCARD numkeys key [key ...] [LIMIT limit].
fn sintercard_keys(args: &[Bytes]) -> Vec<usize> {
    match args.get(1).and_then(|a| parse_i64(a)) {
        Some(n) if n > 0 && (n as usize) <= args.len().saturating_sub(2) => {
            (2..2 + n as usize).collect()
        }
        _ => Vec::new(),
    }
}

/// Parses SINTERCARD's arguments: (numkeys, limit; 0 = none).
fn sintercard_args(args: &[Bytes]) -> Result<(usize, usize), Reply> {
    let numkeys = match parse_i64(&args[1]) {
        Some(n) if n >= 1 => n as usize,
        _ => return Err(Reply::StaticError("ERR numkeys should be greater than 0")),
    };
    if numkeys > args.len() - 2 {
        return Err(Reply::StaticError(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    let mut limit = 0usize;
    let mut j = 2 + numkeys;
    while j < args.len() {
        if is(&args[j], "limit") && j + 1 < args.len() {
            j += 1;
            limit = match parse_i64(&args[j]) {
                Some(n) if n >= 0 => n as usize,
                _ => return Err(Reply::StaticError("ERR LIMIT can't be negative")),
            };
        } else {
            return Err(err::SYNTAX);
        }
        j += 1;
    }
    Ok((numkeys, limit))
}

fn sintercard_keyed(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let (numkeys, limit) = match sintercard_args(args) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let keys = &args[2..2 + numkeys];
    if let Err(e) = sizes(ctx, keys.iter().map(|k| &k[..]), false) {
        return e;
    }
    let db = ctx.db();
    let sets: Vec<Option<&SetValue>> = keys.iter().map(|k| set_ref(db, k)).collect();
    let mut n = 0usize;
    for_each_inter(&sets, |_| {
        n += 1;
        limit == 0 || n < limit
    });
    Reply::Int(n as i64)
}

fn sintercard(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let (numkeys, limit) = match sintercard_args(&args) {
            Ok(v) => v,
            Err(e) => return e,
        };
        let keys = args[2..2 + numkeys].to_vec();
        if let Some(r) = one_shard(c, &keys, sintercard_keyed, &args).await {
            return r;
        }
        let tx = c.lock_keys(&keys).await;
        let r = compute_across(c, &tx, Op::Inter, &keys, false).await;
        drop(tx);
        match r {
            Ok(ms) if limit > 0 => Reply::Int(ms.len().min(limit) as i64),
            Ok(ms) => Reply::Int(ms.len() as i64),
            Err(e) => e,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(v: &[&str]) -> Vec<Bytes> {
        v.iter()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect()
    }

    #[test]
    fn sintercard_key_positions() {
        assert_eq!(
            sintercard_keys(&b(&["sintercard", "2", "a", "b", "limit", "1"])),
            vec![2, 3]
        );
        assert!(sintercard_keys(&b(&["sintercard", "3", "a", "b"])).is_empty());
        assert!(sintercard_keys(&b(&["sintercard", "0", "a"])).is_empty());
    }

    #[test]
    fn cursor_parsing_follows_strtoul() {
        assert_eq!(parse_cursor(b""), Some(0));
        assert_eq!(parse_cursor(b"-1"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"+7"), Some(7));
        assert_eq!(parse_cursor(b" 1"), None);
        assert_eq!(parse_cursor(b"18446744073709551616"), None);
    }
}
