//! Hash commands: HSET, HGET, HDEL, HGETALL, HINCRBY, HRANDFIELD, HSCAN and
//! the rest of the hash family, with Redis 7.0's replies and error texts.
//!
//! Every hash command names one key, so all are keyed handlers. Values live in
//! [`HashValue`], which switches from the compact listpack encoding to a
//! table past `hash-max-listpack-entries` / `hash-max-listpack-value`. A hash
//! whose last field is deleted is deleted itself.

use super::longdouble::LongDouble;
use super::{CommandSpec, Ctx, Handler, arg_i64, err, flags::*, keys, parse_cursor};
use crate::glob;
use crate::parse::parse_i64;
use crate::reply::{OK, Reply};
use crate::shard::value::Value;
use crate::types::hash::{HashValue, Limits};
use bytes::Bytes;
use rand::Rng;

const R: &[&str] = &["read", "hash", "fast"];
const R_SLOW: &[&str] = &["read", "hash", "slow"];
const W: &[&str] = &["write", "hash", "fast"];

const fn cmd(
    name: &'static str,
    arity: i32,
    flags: u32,
    since: &'static str,
    summary: &'static str,
    f: super::KeyedFn,
) -> CommandSpec {
    CommandSpec::new(
        name,
        arity,
        flags,
        keys(1, 1, 1),
        "hash",
        since,
        summary,
        Handler::Keyed(f),
    )
}

/// The hash family's commands.
pub static COMMANDS: &[CommandSpec] = &[
    cmd(
        "hset",
        -4,
        WRITE | DENYOOM | FAST,
        "2.0.0",
        "Set the string value of a hash field",
        hset,
    )
    .acl(W),
    cmd(
        "hsetnx",
        4,
        WRITE | DENYOOM | FAST,
        "2.0.0",
        "Set the value of a hash field, only if the field does not exist",
        hsetnx,
    )
    .acl(W),
    cmd(
        "hget",
        3,
        READONLY | FAST,
        "2.0.0",
        "Get the value of a hash field",
        hget,
    )
    .acl(R),
    cmd(
        "hmset",
        -4,
        WRITE | DENYOOM | FAST,
        "2.0.0",
        "Set multiple hash fields to multiple values",
        hmset,
    )
    .acl(W),
    cmd(
        "hmget",
        -3,
        READONLY | FAST,
        "2.0.0",
        "Get the values of all the given hash fields",
        hmget,
    )
    .acl(R),
    cmd(
        "hincrby",
        4,
        WRITE | DENYOOM | FAST,
        "2.0.0",
        "Increment the integer value of a hash field by the given number",
        hincrby,
    )
    .acl(W),
    cmd(
        "hincrbyfloat",
        4,
        WRITE | DENYOOM | FAST,
        "2.6.0",
        "Increment the float value of a hash field by the given amount",
        hincrbyfloat,
    )
    .acl(W),
    cmd(
        "hdel",
        -3,
        WRITE | FAST,
        "2.0.0",
        "Delete one or more hash fields",
        hdel,
    )
    .acl(W),
    cmd(
        "hlen",
        2,
        READONLY | FAST,
        "2.0.0",
        "Get the number of fields in a hash",
        hlen,
    )
    .acl(R),
    cmd(
        "hstrlen",
        3,
        READONLY | FAST,
        "3.2.0",
        "Get the length of the value of a hash field",
        hstrlen,
    )
    .acl(R),
    cmd(
        "hkeys",
        2,
        READONLY,
        "2.0.0",
        "Get all the fields in a hash",
        hkeys,
    )
    .acl(R_SLOW),
    cmd(
        "hvals",
        2,
        READONLY,
        "2.0.0",
        "Get all the values in a hash",
        hvals,
    )
    .acl(R_SLOW),
    cmd(
        "hgetall",
        2,
        READONLY,
        "2.0.0",
        "Get all the fields and values in a hash",
        hgetall,
    )
    .acl(R_SLOW),
    cmd(
        "hexists",
        3,
        READONLY | FAST,
        "2.0.0",
        "Determine if a hash field exists",
        hexists,
    )
    .acl(R),
    cmd(
        "hrandfield",
        -2,
        READONLY,
        "6.2.0",
        "Get one or multiple random fields from a hash",
        hrandfield,
    )
    .acl(R_SLOW),
    cmd(
        "hscan",
        -3,
        READONLY,
        "2.8.0",
        "Incrementally iterate hash fields and associated values",
        hscan,
    )
    .acl(R_SLOW),
];

mod errs {
    use crate::reply::Reply;

    pub const NOT_INT: Reply = Reply::StaticError("ERR hash value is not an integer");
    pub const NOT_FLOAT: Reply = Reply::StaticError("ERR hash value is not a float");
    pub const INCR_NAN: Reply = Reply::StaticError("ERR value is NaN or Infinity");
    pub const NAN_OR_INF: Reply = Reply::StaticError("ERR increment would produce NaN or Infinity");
    pub const COUNT_RANGE: Reply = Reply::StaticError(
        "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
    );
    pub const OUT_OF_RANGE: Reply = Reply::StaticError("ERR value is out of range");
    pub const INVALID_CURSOR: Reply = Reply::StaticError("ERR invalid cursor");
}

/// Case-insensitive keyword match with C string semantics: Redis compares
/// option keywords with `strcasecmp`, which stops at a NUL byte.
fn kw(arg: &[u8], word: &str) -> bool {
    let end = memchr::memchr(0, arg).unwrap_or(arg.len());
    arg[..end].eq_ignore_ascii_case(word.as_bytes())
}

/// The encoding thresholds currently configured.
pub fn limits(ctx: &mut Ctx<'_>) -> Limits {
    ctx.shard.refresh_config();
    let t = &ctx.shard.thresholds;
    Limits {
        max_entries: t.hash_max_listpack_entries,
        max_value: t.hash_max_listpack_value,
    }
}

/// Runs `f` on the hash at `key` for a read command (counting a hit or a
/// miss); `missing` is the reply for a missing key.
fn read_hash(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    missing: Reply,
    f: impl FnOnce(&HashValue) -> Reply,
) -> Reply {
    let (now, touch) = (ctx.now_ms, ctx.touch);
    match ctx.db().lookup(key, now, touch) {
        None => missing,
        Some(e) => match &e.value {
            Value::Hash(h) => f(h),
            _ => err::WRONGTYPE,
        },
    }
}

/// Runs `f` on the hash at `key` for a write command, as Redis's
/// `hashTypeLookupWriteOrCreate`: a missing key starts as an empty hash,
/// stored only if `f` leaves fields in it; a hash left empty is deleted.
fn write_hash(ctx: &mut Ctx<'_>, key: &[u8], f: impl FnOnce(&mut HashValue) -> Reply) -> Reply {
    let now = ctx.now_ms;
    let db = ctx.db();
    let (reply, empty) = match db.lookup_write(key, now) {
        Some(e) => match &mut e.value {
            Value::Hash(h) => {
                let r = f(h);
                (r, h.is_empty())
            }
            _ => return err::WRONGTYPE,
        },
        None => {
            let mut h = HashValue::new();
            let r = f(&mut h);
            if !h.is_empty() {
                db.set(key, Value::Hash(Box::new(h)), 0, now);
            }
            return r;
        }
    };
    if empty {
        db.remove(key);
    }
    reply
}

fn hset_generic(ctx: &mut Ctx<'_>, args: &[Bytes], name: &str) -> Reply {
    if args.len() % 2 == 1 {
        return err::arity(name);
    }
    let lim = limits(ctx);
    let hmset = name == "hmset";
    write_hash(ctx, &args[1], |h| {
        let mut created = 0;
        for pair in args[2..].chunks(2) {
            created += h.set(&pair[0], &pair[1], lim) as i64;
        }
        if hmset { OK } else { Reply::Int(created) }
    })
}

fn hset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    hset_generic(ctx, args, "hset")
}

fn hmset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    hset_generic(ctx, args, "hmset")
}

fn hsetnx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let lim = limits(ctx);
    write_hash(ctx, &args[1], |h| {
        if h.contains(&args[2]) {
            Reply::Int(0)
        } else {
            h.set(&args[2], &args[3], lim);
            Reply::Int(1)
        }
    })
}

fn hget(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    read_hash(ctx, &args[1], Reply::Nil, |h| match h.get(&args[2]) {
        Some(v) => Reply::bulk(v),
        None => Reply::Nil,
    })
}

fn hmget(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let fields = &args[2..];
    read_hash(
        ctx,
        &args[1],
        Reply::Array(vec![Reply::Nil; fields.len()]),
        |h| {
            Reply::Array(
                fields
                    .iter()
                    .map(|f| h.get(f).map_or(Reply::Nil, Reply::bulk))
                    .collect(),
            )
        },
    )
}

fn hdel(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    let db = ctx.db();
    let Some(e) = db.lookup_write(&args[1], now) else {
        return Reply::Int(0);
    };
    let Value::Hash(h) = &mut e.value else {
        return err::WRONGTYPE;
    };
    let mut deleted = 0;
    for f in &args[2..] {
        if h.remove(f) {
            deleted += 1;
            if h.is_empty() {
                break;
            }
        }
    }
    if h.is_empty() {
        db.remove(&args[1]);
    }
    Reply::Int(deleted)
}

fn hlen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    read_hash(ctx, &args[1], Reply::Int(0), |h| Reply::Int(h.len() as i64))
}

fn hstrlen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    read_hash(ctx, &args[1], Reply::Int(0), |h| {
        Reply::Int(h.get(&args[2]).map_or(0, |v| v.len() as i64))
    })
}

fn hexists(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    read_hash(ctx, &args[1], Reply::Int(0), |h| {
        Reply::Int(h.contains(&args[2]) as i64)
    })
}

fn hkeys(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    read_hash(ctx, &args[1], Reply::Array(vec![]), |h| {
        Reply::Array(h.iter().map(|(f, _)| Reply::bulk(f)).collect())
    })
}

fn hvals(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    read_hash(ctx, &args[1], Reply::Array(vec![]), |h| {
        Reply::Array(h.iter().map(|(_, v)| Reply::bulk(v)).collect())
    })
}

fn hgetall(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    read_hash(ctx, &args[1], Reply::Map(vec![]), |h| {
        Reply::Map(
            h.iter()
                .map(|(f, v)| (Reply::bulk(f), Reply::bulk(v)))
                .collect(),
        )
    })
}

fn hincrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let incr = match arg_i64(&args[3]) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let lim = limits(ctx);
    write_hash(ctx, &args[1], |h| {
        let cur = match h.get(&args[2]) {
            None => 0,
            Some(v) => match parse_i64(v) {
                Some(n) => n,
                None => return errs::NOT_INT,
            },
        };
        let Some(new) = cur.checked_add(incr) else {
            return err::OVERFLOW;
        };
        h.set(&args[2], itoa::Buffer::new().format(new).as_bytes(), lim);
        Reply::Int(new)
    })
}

fn hincrbyfloat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    // Redis parses the increment before looking at the key.
    let Some(incr) = LongDouble::parse(&args[3]) else {
        return err::NOT_FLOAT;
    };
    if !incr.is_finite() {
        return errs::INCR_NAN;
    }
    let lim = limits(ctx);
    write_hash(ctx, &args[1], |h| {
        let cur = match h.get(&args[2]) {
            None => LongDouble::from_i64(0),
            Some(v) => match LongDouble::parse(v) {
                Some(x) => x,
                None => return errs::NOT_FLOAT,
            },
        };
        let sum = cur + incr;
        if !sum.is_finite() {
            return errs::NAN_OR_INF;
        }
        let text = sum.to_human();
        h.set(&args[2], &text, lim);
        Reply::Bulk(Bytes::from(text))
    })
}

// ---------------------------------------------------------------------------
// HRANDFIELD
// ---------------------------------------------------------------------------

/// One field (and its value when `withvalues`) as HRANDFIELD replies it: in
/// RESP3 with values, each pair is a two-element array; in RESP2 the pairs
/// are flattened into the outer array.
fn push_pair(out: &mut Vec<Reply>, f: &[u8], v: &[u8], withvalues: bool, resp3: bool) {
    if !withvalues {
        out.push(Reply::bulk(f));
    } else if resp3 {
        out.push(Reply::Array(vec![Reply::bulk(f), Reply::bulk(v)]));
    } else {
        out.push(Reply::bulk(f));
        out.push(Reply::bulk(v));
    }
}

fn hrandfield(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    if args.len() < 3 {
        return read_hash(ctx, &args[1], Reply::Nil, |h| {
            match h.random(&mut rand::thread_rng()) {
                Some((f, _)) => Reply::bulk(f),
                None => Reply::Nil,
            }
        });
    }
    let l = match arg_i64(&args[2]) {
        Ok(n) => n,
        Err(e) => return e,
    };
    if l < -i64::MAX {
        return errs::COUNT_RANGE;
    }
    if args.len() > 4 || (args.len() == 4 && !kw(&args[3], "withvalues")) {
        return err::SYNTAX;
    }
    let withvalues = args.len() == 4;
    if withvalues && !(-i64::MAX / 2..=i64::MAX / 2).contains(&l) {
        return errs::OUT_OF_RANGE;
    }
    let resp3 = ctx.resp3;
    read_hash(ctx, &args[1], Reply::Array(vec![]), |h| {
        random_fields(h, l, withvalues, resp3)
    })
}

/// Redis's `hrandfieldWithCountCommand`.
fn random_fields(h: &HashValue, l: i64, withvalues: bool, resp3: bool) -> Reply {
    let size = h.len();
    let (count, uniq) = if l >= 0 {
        (l as u64, true)
    } else {
        (l.unsigned_abs(), false)
    };
    if count == 0 {
        return Reply::Array(vec![]);
    }
    let mut rng = rand::thread_rng();
    let mut out = Vec::new();
    // Any number of fields, repetitions allowed, in random order.
    if !uniq || count == 1 {
        let count = count as usize;
        out.reserve(count.min(1 << 20));
        if matches!(h, HashValue::Listpack(_)) || count >= size / 16 {
            let all: Vec<(&[u8], &[u8])> = h.iter().collect();
            for _ in 0..count {
                let (f, v) = all[rng.gen_range(0..size)];
                push_pair(&mut out, f, v, withvalues, resp3);
            }
        } else {
            for _ in 0..count {
                if let Some((f, v)) = h.random(&mut rng) {
                    push_pair(&mut out, f, v, withvalues, resp3);
                }
            }
        }
        return Reply::Array(out);
    }
    let count = count as usize;
    // The whole hash, in its own order.
    if count >= size {
        for (f, v) in h.iter() {
            push_pair(&mut out, f, v, withvalues, resp3);
        }
        return Reply::Array(out);
    }
    if matches!(h, HashValue::Listpack(_)) || count * 3 > size {
        // Selection sampling: `count` distinct fields, in the hash's order,
        // as Redis's `lpRandomPairsUnique`.
        let mut need = count;
        for (i, (f, v)) in h.iter().enumerate() {
            if rng.gen_range(0..size - i) < need {
                push_pair(&mut out, f, v, withvalues, resp3);
                need -= 1;
                if need == 0 {
                    break;
                }
            }
        }
    } else {
        // Few fields of a big hash: random picks until `count` distinct.
        let mut picked = hashbrown::HashSet::with_capacity(count);
        while picked.len() < count {
            if let Some((f, v)) = h.random(&mut rng)
                && picked.insert(f)
            {
                push_pair(&mut out, f, v, withvalues, resp3);
            }
        }
    }
    Reply::Array(out)
}

// ---------------------------------------------------------------------------
// HSCAN
// ---------------------------------------------------------------------------

/// HSCAN key cursor [MATCH pattern] [COUNT count]. A listpack hash is
/// returned whole with cursor 0; a table is walked with the growth- and
/// shrink-safe prefix cursor of [`HashValue::scan`], about `count` fields
/// per call. As in Redis, the options are checked after the key lookup.
fn hscan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let Some(cursor) = parse_cursor(&args[2]) else {
        return errs::INVALID_CURSOR;
    };
    let empty = Reply::Array(vec![Reply::bulk(b"0"), Reply::Array(vec![])]);
    read_hash(ctx, &args[1], empty, |h| {
        let mut count: i64 = 10;
        let mut pattern: Option<&[u8]> = None;
        let mut i = 3;
        while i < args.len() {
            let more = args.len() - i >= 2;
            if kw(&args[i], "count") && more {
                count = match arg_i64(&args[i + 1]) {
                    Ok(n) => n,
                    Err(e) => return e,
                };
                if count < 1 {
                    return err::SYNTAX;
                }
            } else if kw(&args[i], "match") && more {
                let p = &args[i + 1][..];
                pattern = (p != b"*").then_some(p);
            } else {
                return err::SYNTAX;
            }
            i += 2;
        }
        let mut items = Vec::new();
        let next = h.scan(cursor, count as usize, |f, v| {
            if pattern.is_none_or(|p| glob::matches(p, f, false)) {
                items.push(Reply::bulk(f));
                items.push(Reply::bulk(v));
            }
        });
        Reply::Array(vec![
            Reply::bulk(itoa::Buffer::new().format(next).as_bytes()),
            Reply::Array(items),
        ])
    })
}
