//! Sorted-set commands (Redis 7.0's non-blocking ones), with Redis's options,
//! replies and error texts over RESP2 and RESP3.
//!
//! Single-key commands are keyed handlers. Commands that read or write
//! several keys (ZUNION/ZINTER/ZDIFF and their STORE forms, ZINTERCARD,
//! ZRANGESTORE, ZMPOP) lock every key first (see [`Client::lock_keys`]) and
//! then visit the shards: when every key is on one shard the whole command
//! runs there in one hop on the stored values; otherwise the inputs are
//! copied from their shards, combined here and the result written to the
//! destination's shard, all under the locks, so the operation is atomic.
//!
//! The pop helpers ([`pop_key`], [`pop_reply`], [`mpop_reply`],
//! [`bzpop_reply`]) are public for the blocking variants.

use super::{CommandSpec, Ctx, Handler, arg_i64, err, flags::*, keys, parse_cursor};
use crate::reply::{Reply, format_double};
use crate::shard::value::{SmallBytes, Value};
use crate::transaction::Client;
use crate::types::set::SetValue;
use crate::types::zset::{AddFlags, AddOutcome, LexBound, LexRange, Limits, ScoreRange, ZSetValue};
use bytes::Bytes;
use futures::future::LocalBoxFuture;
use rand::Rng;

const R: &[&str] = &["read", "sortedset", "fast"];
const R_SLOW: &[&str] = &["read", "sortedset", "slow"];
const W: &[&str] = &["write", "sortedset", "fast"];
const W_SLOW: &[&str] = &["write", "sortedset", "slow"];

const G: &str = "sorted-set";

/// The sorted-set family's commands.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec::new(
        "zadd",
        -4,
        WRITE | DENYOOM | FAST,
        keys(1, 1, 1),
        G,
        "1.2.0",
        "Add one or more members to a sorted set, or update its score if it already exists",
        Handler::Keyed(zadd),
    )
    .acl(W),
    CommandSpec::new(
        "zincrby",
        4,
        WRITE | DENYOOM | FAST,
        keys(1, 1, 1),
        G,
        "1.2.0",
        "Increment the score of a member in a sorted set",
        Handler::Keyed(zincrby),
    )
    .acl(W),
    CommandSpec::new(
        "zrem",
        -3,
        WRITE | FAST,
        keys(1, 1, 1),
        G,
        "1.2.0",
        "Remove one or more members from a sorted set",
        Handler::Keyed(zrem),
    )
    .acl(W),
    CommandSpec::new(
        "zcard",
        2,
        READONLY | FAST,
        keys(1, 1, 1),
        G,
        "1.2.0",
        "Get the number of members in a sorted set",
        Handler::Keyed(zcard),
    )
    .acl(R),
    CommandSpec::new(
        "zscore",
        3,
        READONLY | FAST,
        keys(1, 1, 1),
        G,
        "1.2.0",
        "Get the score associated with the given member in a sorted set",
        Handler::Keyed(zscore),
    )
    .acl(R),
    CommandSpec::new(
        "zmscore",
        -3,
        READONLY | FAST,
        keys(1, 1, 1),
        G,
        "6.2.0",
        "Get the score associated with the given members in a sorted set",
        Handler::Keyed(zmscore),
    )
    .acl(R),
    CommandSpec::new(
        "zrank",
        -3,
        READONLY | FAST,
        keys(1, 1, 1),
        G,
        "2.0.0",
        "Determine the index of a member in a sorted set",
        Handler::Keyed(zrank),
    )
    .acl(R),
    CommandSpec::new(
        "zrevrank",
        -3,
        READONLY | FAST,
        keys(1, 1, 1),
        G,
        "2.0.0",
        "Determine the index of a member in a sorted set, with scores ordered from high to low",
        Handler::Keyed(zrevrank),
    )
    .acl(R),
    CommandSpec::new(
        "zcount",
        4,
        READONLY | FAST,
        keys(1, 1, 1),
        G,
        "2.0.0",
        "Count the members in a sorted set with scores within the given values",
        Handler::Keyed(zcount),
    )
    .acl(R),
    CommandSpec::new(
        "zlexcount",
        4,
        READONLY | FAST,
        keys(1, 1, 1),
        G,
        "2.8.9",
        "Count the number of members in a sorted set between a given lexicographical range",
        Handler::Keyed(zlexcount),
    )
    .acl(R),
    CommandSpec::new(
        "zrange",
        -4,
        READONLY,
        keys(1, 1, 1),
        G,
        "1.2.0",
        "Return a range of members in a sorted set",
        Handler::Keyed(zrange),
    )
    .acl(R_SLOW),
    CommandSpec::new(
        "zrangestore",
        -5,
        WRITE | DENYOOM,
        keys(1, 2, 1),
        G,
        "6.2.0",
        "Store a range of members from sorted set into another key",
        Handler::Async(zrangestore),
    )
    .acl(W_SLOW),
    CommandSpec::new(
        "zrevrange",
        -4,
        READONLY,
        keys(1, 1, 1),
        G,
        "1.2.0",
        "Return a range of members in a sorted set, by index, with scores ordered from high to low",
        Handler::Keyed(zrevrange),
    )
    .acl(R_SLOW),
    CommandSpec::new(
        "zrangebyscore",
        -4,
        READONLY,
        keys(1, 1, 1),
        G,
        "1.0.5",
        "Return a range of members in a sorted set, by score",
        Handler::Keyed(zrangebyscore),
    )
    .acl(R_SLOW),
    CommandSpec::new(
        "zrevrangebyscore",
        -4,
        READONLY,
        keys(1, 1, 1),
        G,
        "2.2.0",
        "Return a range of members in a sorted set, by score, with scores ordered from high to low",
        Handler::Keyed(zrevrangebyscore),
    )
    .acl(R_SLOW),
    CommandSpec::new(
        "zrangebylex",
        -4,
        READONLY,
        keys(1, 1, 1),
        G,
        "2.8.9",
        "Return a range of members in a sorted set, by lexicographical range",
        Handler::Keyed(zrangebylex),
    )
    .acl(R_SLOW),
    CommandSpec::new(
        "zrevrangebylex",
        -4,
        READONLY,
        keys(1, 1, 1),
        G,
        "2.8.9",
        "Return a range of members in a sorted set, by lexicographical range, ordered from higher to lower strings.",
        Handler::Keyed(zrevrangebylex),
    )
    .acl(R_SLOW),
    CommandSpec::new(
        "zremrangebyrank",
        4,
        WRITE,
        keys(1, 1, 1),
        G,
        "2.0.0",
        "Remove all members in a sorted set within the given indexes",
        Handler::Keyed(zremrangebyrank),
    )
    .acl(W_SLOW),
    CommandSpec::new(
        "zremrangebyscore",
        4,
        WRITE,
        keys(1, 1, 1),
        G,
        "1.2.0",
        "Remove all members in a sorted set within the given scores",
        Handler::Keyed(zremrangebyscore),
    )
    .acl(W_SLOW),
    CommandSpec::new(
        "zremrangebylex",
        4,
        WRITE,
        keys(1, 1, 1),
        G,
        "2.8.9",
        "Remove all members in a sorted set between the given lexicographical range",
        Handler::Keyed(zremrangebylex),
    )
    .acl(W_SLOW),
    CommandSpec::new(
        "zpopmin",
        -2,
        WRITE | FAST,
        keys(1, 1, 1),
        G,
        "5.0.0",
        "Remove and return members with the lowest scores in a sorted set",
        Handler::Keyed(zpopmin),
    )
    .acl(W),
    CommandSpec::new(
        "zpopmax",
        -2,
        WRITE | FAST,
        keys(1, 1, 1),
        G,
        "5.0.0",
        "Remove and return members with the highest scores in a sorted set",
        Handler::Keyed(zpopmax),
    )
    .acl(W),
    CommandSpec::new(
        "zmpop",
        -4,
        WRITE | MOVABLEKEYS,
        NO_KEYS_SPEC,
        G,
        "7.0.0",
        "Remove and return members with scores in a sorted set",
        Handler::Async(zmpop),
    )
    .keys_with(numkeys_at_1)
    .acl(W_SLOW),
    CommandSpec::new(
        "zrandmember",
        -2,
        READONLY,
        keys(1, 1, 1),
        G,
        "6.2.0",
        "Get one or multiple random elements from a sorted set",
        Handler::Keyed(zrandmember),
    )
    .acl(R_SLOW),
    CommandSpec::new(
        "zunion",
        -3,
        READONLY | MOVABLEKEYS,
        NO_KEYS_SPEC,
        G,
        "6.2.0",
        "Add multiple sorted sets",
        Handler::Async(zunion),
    )
    .keys_with(numkeys_at_1)
    .acl(R_SLOW),
    CommandSpec::new(
        "zinter",
        -3,
        READONLY | MOVABLEKEYS,
        NO_KEYS_SPEC,
        G,
        "6.2.0",
        "Intersect multiple sorted sets",
        Handler::Async(zinter),
    )
    .keys_with(numkeys_at_1)
    .acl(R_SLOW),
    CommandSpec::new(
        "zdiff",
        -3,
        READONLY | MOVABLEKEYS,
        NO_KEYS_SPEC,
        G,
        "6.2.0",
        "Subtract multiple sorted sets",
        Handler::Async(zdiff),
    )
    .keys_with(numkeys_at_1)
    .acl(R_SLOW),
    CommandSpec::new(
        "zunionstore",
        -4,
        WRITE | DENYOOM | MOVABLEKEYS,
        keys(1, 1, 1),
        G,
        "2.0.0",
        "Add multiple sorted sets and store the resulting sorted set in a new key",
        Handler::Async(zunionstore),
    )
    .keys_with(store_keys)
    .acl(W_SLOW),
    CommandSpec::new(
        "zinterstore",
        -4,
        WRITE | DENYOOM | MOVABLEKEYS,
        keys(1, 1, 1),
        G,
        "2.0.0",
        "Intersect multiple sorted sets and store the resulting sorted set in a new key",
        Handler::Async(zinterstore),
    )
    .keys_with(store_keys)
    .acl(W_SLOW),
    CommandSpec::new(
        "zdiffstore",
        -4,
        WRITE | DENYOOM | MOVABLEKEYS,
        keys(1, 1, 1),
        G,
        "6.2.0",
        "Subtract multiple sorted sets and store the resulting sorted set in a new key",
        Handler::Async(zdiffstore),
    )
    .keys_with(store_keys)
    .acl(W_SLOW),
    CommandSpec::new(
        "zintercard",
        -3,
        READONLY | MOVABLEKEYS,
        NO_KEYS_SPEC,
        G,
        "7.0.0",
        "Intersect multiple sorted sets and return the cardinality of the result",
        Handler::Async(zintercard),
    )
    .keys_with(numkeys_at_1)
    .acl(R_SLOW),
    CommandSpec::new(
        "zscan",
        -3,
        READONLY,
        keys(1, 1, 1),
        G,
        "2.8.0",
        "Incrementally iterate sorted sets elements and associated scores",
        Handler::Keyed(zscan),
    )
    .acl(R_SLOW),
];

const NO_KEYS_SPEC: super::KeySpec = super::NO_KEYS;

/// Error replies specific to this family, with Redis's texts.
mod errs {
    use crate::reply::Reply;

    pub const XX_NX: Reply =
        Reply::StaticError("ERR XX and NX options at the same time are not compatible");
    pub const GT_LT_NX: Reply =
        Reply::StaticError("ERR GT, LT, and/or NX options at the same time are not compatible");
    pub const INCR_PAIR: Reply =
        Reply::StaticError("ERR INCR option supports a single increment-element pair");
    pub const NAN: Reply = Reply::StaticError("ERR resulting score is not a number (NaN)");
    pub const NOT_FLOAT: Reply = Reply::StaticError("ERR value is not a valid float");
    pub const RANGE_FLOAT: Reply = Reply::StaticError("ERR min or max is not a float");
    pub const RANGE_LEX: Reply = Reply::StaticError("ERR min or max not valid string range item");
    pub const WITHSCORES_BYLEX: Reply =
        Reply::StaticError("ERR syntax error, WITHSCORES not supported in combination with BYLEX");
    pub const LIMIT_RANK: Reply = Reply::StaticError(
        "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
    );
    pub const POSITIVE: Reply = Reply::StaticError("ERR value is out of range, must be positive");
    pub const NUMKEYS: Reply = Reply::StaticError("ERR numkeys should be greater than 0");
    pub const COUNT: Reply = Reply::StaticError("ERR count should be greater than 0");
    pub const WEIGHT: Reply = Reply::StaticError("ERR weight value is not a float");
    pub const LIMIT_NEG: Reply = Reply::StaticError("ERR LIMIT can't be negative");
    pub const OUT_OF_RANGE: Reply = Reply::StaticError("ERR value is out of range");
    pub const RANDMEMBER_RANGE: Reply = Reply::StaticError(
        "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
    );
    pub const CURSOR: Reply = Reply::StaticError("ERR invalid cursor");
}

// ---------------------------------------------------------------------------
// Parsing helpers
// ---------------------------------------------------------------------------

/// The bytes a C string view of `arg` sees: up to the first NUL. Redis
/// compares option keywords with `strcasecmp`, so `"nx\0junk"` reads as NX.
fn cstr(arg: &[u8]) -> &[u8] {
    match memchr::memchr(0, arg) {
        Some(i) => &arg[..i],
        None => arg,
    }
}

/// Case-insensitive keyword match with C string semantics.
fn kw(arg: &[u8], word: &str) -> bool {
    cstr(arg).eq_ignore_ascii_case(word.as_bytes())
}

/// C's `strtod` over the C string view of `b`: the value, the number of
/// bytes consumed and whether `errno` was `ERANGE`.
fn strtod(b: &[u8]) -> (f64, usize, bool) {
    let mut buf = Vec::with_capacity(b.len() + 1);
    buf.extend_from_slice(cstr(b));
    buf.push(0);
    let mut end: *mut libc::c_char = std::ptr::null_mut();
    // SAFETY: `buf` is NUL-terminated and outlives the call; errno is the
    // calling thread's.
    unsafe {
        *libc::__errno_location() = 0;
        let v = libc::strtod(buf.as_ptr() as *const libc::c_char, &mut end);
        let used = end.offset_from(buf.as_ptr() as *const libc::c_char) as usize;
        (v, used, *libc::__errno_location() == libc::ERANGE)
    }
}

/// Redis's `string2d`: the whole argument must be a float (no leading
/// space, no NaN, no overflow or underflow to zero); `inf` and hex allowed.
pub fn string2d(b: &[u8]) -> Option<f64> {
    if b.is_empty() || b[0].is_ascii_whitespace() || b[0] == 0x0b {
        return None;
    }
    let (v, used, erange) = strtod(b);
    if used != b.len() || v.is_nan() || (erange && (v.is_infinite() || v == 0.0)) {
        return None;
    }
    Some(v)
}

/// A score argument (ZADD, ZINCRBY).
fn arg_score(b: &[u8]) -> Result<f64, Reply> {
    string2d(b).ok_or(errs::NOT_FLOAT)
}

/// One end of a score range: `(x` is exclusive. Like Redis, `strtod` must
/// consume the whole C string.
fn score_item(b: &[u8]) -> Option<(f64, bool)> {
    let c = cstr(b);
    let (ex, num) = match c.first() {
        Some(b'(') => (true, &c[1..]),
        _ => (false, c),
    };
    let (v, used, _) = strtod(num);
    (used == num.len() && !v.is_nan()).then_some((v, ex))
}

/// Parses a score range (Redis's `zslParseRange`).
pub fn parse_score_range(min: &[u8], max: &[u8]) -> Result<ScoreRange, Reply> {
    match (score_item(min), score_item(max)) {
        (Some((min, minex)), Some((max, maxex))) => Ok(ScoreRange {
            min,
            minex,
            max,
            maxex,
        }),
        _ => Err(errs::RANGE_FLOAT),
    }
}

/// One end of a lex range (Redis's `zslParseLexRangeItem`).
fn lex_item(b: &[u8]) -> Option<LexBound> {
    let single = b.len() == 1 || b.get(1) == Some(&0);
    match b.first()? {
        b'+' if single => Some(LexBound::Max),
        b'-' if single => Some(LexBound::Min),
        b'(' => Some(LexBound::Val {
            s: b[1..].to_vec(),
            excl: true,
        }),
        b'[' => Some(LexBound::Val {
            s: b[1..].to_vec(),
            excl: false,
        }),
        _ => None,
    }
}

/// Parses a lex range (Redis's `zslParseLexRange`).
pub fn parse_lex_range(min: &[u8], max: &[u8]) -> Result<LexRange, Reply> {
    match (lex_item(min), lex_item(max)) {
        (Some(min), Some(max)) => Ok(LexRange { min, max }),
        _ => Err(errs::RANGE_LEX),
    }
}

/// An integer in `[min, max]`, with `msg` for both a bad integer and one
/// out of range (Redis's `getRangeLongFromObjectOrReply` with a message).
fn arg_range(b: &[u8], min: i64, max: i64, msg: Reply) -> Result<i64, Reply> {
    match crate::parse::parse_i64(b) {
        Some(n) if n >= min && n <= max => Ok(n),
        _ => Err(msg),
    }
}

/// The encoding thresholds as currently configured.
pub fn limits(ctx: &mut Ctx<'_>) -> Limits {
    ctx.shard.refresh_config();
    let t = &ctx.shard.thresholds;
    Limits {
        max_entries: t.zset_max_listpack_entries,
        max_value: t.zset_max_listpack_value,
    }
}

// ---------------------------------------------------------------------------
// Key access
// ---------------------------------------------------------------------------

/// A read lookup of a sorted set: None when missing, WRONGTYPE for others.
pub fn read_zset<'a>(ctx: &'a mut Ctx<'_>, key: &[u8]) -> Result<Option<&'a mut ZSetValue>, Reply> {
    let (now, touch) = (ctx.now_ms, ctx.touch);
    match ctx.db().lookup(key, now, touch) {
        None => Ok(None),
        Some(e) => match &mut e.value {
            Value::ZSet(z) => Ok(Some(z)),
            _ => Err(err::WRONGTYPE),
        },
    }
}

/// A write lookup of a sorted set: None when missing, WRONGTYPE for others.
pub fn write_zset<'a>(
    ctx: &'a mut Ctx<'_>,
    key: &[u8],
) -> Result<Option<&'a mut ZSetValue>, Reply> {
    let now = ctx.now_ms;
    match ctx.db().lookup_write(key, now) {
        None => Ok(None),
        Some(e) => match &mut e.value {
            Value::ZSet(z) => Ok(Some(z)),
            _ => Err(err::WRONGTYPE),
        },
    }
}

/// Deletes `key` if it holds an empty sorted set.
fn drop_if_empty(ctx: &mut Ctx<'_>, key: &[u8]) {
    let now = ctx.now_ms;
    let db = ctx.db();
    if let Some(e) = db.peek(key, now)
        && matches!(&e.value, Value::ZSet(z) if z.is_empty())
    {
        db.remove(key);
    }
}

/// Stores `entries` (sorted, distinct) at `dst` replacing whatever was there,
/// or deletes `dst` when empty. Returns the stored count.
fn store_result(ctx: &mut Ctx<'_>, dst: &[u8], entries: Vec<(SmallBytes, f64)>) -> usize {
    let now = ctx.now_ms;
    let n = entries.len();
    if n == 0 {
        ctx.db().delete(dst, now);
        return 0;
    }
    let lim = limits(ctx);
    let z = ZSetValue::from_sorted(entries, lim);
    ctx.db().set(dst, Value::ZSet(Box::new(z)), 0, now);
    n
}

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
}

// ---------------------------------------------------------------------------
// Reply helpers
// ---------------------------------------------------------------------------

/// Members, optionally with scores: flat in RESP2, `[member, score]` pairs
/// in RESP3.
fn scored_reply<'a>(
    items: impl Iterator<Item = (&'a [u8], f64)>,
    withscores: bool,
    resp3: bool,
) -> Reply {
    let mut out = Vec::with_capacity(items.size_hint().0);
    for (m, s) in items {
        let m = Reply::bulk(m);
        if !withscores {
            out.push(m);
        } else if resp3 {
            out.push(Reply::Array(vec![m, Reply::Double(s)]));
        } else {
            out.push(m);
            out.push(Reply::Double(s));
        }
    }
    Reply::Array(out)
}

/// Popped members as ZPOPMIN replies: flat, or `[member, score]` pairs when
/// `nested` (RESP3 with a COUNT).
pub fn pop_reply(items: &[(SmallBytes, f64)], nested: bool) -> Reply {
    let mut out = Vec::with_capacity(items.len() * 2);
    for (m, s) in items {
        if nested {
            out.push(Reply::Array(vec![Reply::bulk(m), Reply::Double(*s)]));
        } else {
            out.push(Reply::bulk(m));
            out.push(Reply::Double(*s));
        }
    }
    Reply::Array(out)
}

/// ZMPOP/BZMPOP's reply: `[key, [[member, score], ...]]`.
pub fn mpop_reply(key: &[u8], items: &[(SmallBytes, f64)]) -> Reply {
    Reply::Array(vec![Reply::bulk(key), pop_reply(items, true)])
}

/// BZPOPMIN/BZPOPMAX's reply: `[key, member, score]`.
pub fn bzpop_reply(key: &[u8], item: &(SmallBytes, f64)) -> Reply {
    Reply::Array(vec![
        Reply::bulk(key),
        Reply::bulk(&item.0),
        Reply::Double(item.1),
    ])
}

/// Pops up to `count` members from the low (`max == false`) or high end of
/// the sorted set at `key` on this shard, deleting the key when it empties.
/// `Ok(None)` when the key does not exist; WRONGTYPE for other types.
pub fn pop_key(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    max: bool,
    count: usize,
) -> Result<Option<Vec<(SmallBytes, f64)>>, Reply> {
    let Some(z) = write_zset(ctx, key)? else {
        return Ok(None);
    };
    let items = z.pop_n(max, count);
    drop_if_empty(ctx, key);
    Ok(Some(items))
}

// ---------------------------------------------------------------------------
// ZADD, ZINCRBY, ZREM, ZCARD, ZSCORE, ZMSCORE, ZRANK
// ---------------------------------------------------------------------------

fn zadd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    zadd_generic(ctx, args, false)
}

fn zincrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    zadd_generic(ctx, args, true)
}

/// Redis's `zaddGenericCommand`.
fn zadd_generic(ctx: &mut Ctx<'_>, args: &[Bytes], incr: bool) -> Reply {
    let mut f = AddFlags {
        incr,
        ..Default::default()
    };
    let mut ch = false;
    let mut idx = 2;
    while idx < args.len() {
        let a = &args[idx];
        if kw(a, "nx") {
            f.nx = true;
        } else if kw(a, "xx") {
            f.xx = true;
        } else if kw(a, "ch") {
            ch = true;
        } else if kw(a, "incr") {
            f.incr = true;
        } else if kw(a, "gt") {
            f.gt = true;
        } else if kw(a, "lt") {
            f.lt = true;
        } else {
            break;
        }
        idx += 1;
    }
    let elements = args.len() - idx;
    if elements % 2 == 1 || elements == 0 {
        return err::SYNTAX;
    }
    let elements = elements / 2;
    if f.nx && f.xx {
        return errs::XX_NX;
    }
    if (f.nx && (f.gt || f.lt)) || (f.gt && f.lt) {
        return errs::GT_LT_NX;
    }
    if f.incr && elements > 1 {
        return errs::INCR_PAIR;
    }
    let mut scores = Vec::with_capacity(elements);
    for j in 0..elements {
        scores.push(tri!(arg_score(&args[idx + 2 * j])));
    }
    let lim = limits(ctx);
    let key = &args[1];
    let (mut added, mut updated, mut processed) = (0i64, 0i64, 0i64);
    let mut last = 0.0;
    let mut apply = |z: &mut ZSetValue| -> Result<(), Reply> {
        for (j, &score) in scores.iter().enumerate() {
            let member = &args[idx + 2 * j + 1];
            let out = z.add(member, score, f, lim).map_err(|_| errs::NAN)?;
            match out {
                AddOutcome::Added(_) => added += 1,
                AddOutcome::Updated(_) => updated += 1,
                _ => {}
            }
            if let Some(s) = out.score() {
                processed += 1;
                last = s;
            }
        }
        Ok(())
    };
    let res = match write_zset(ctx, key) {
        Err(e) => return e,
        Ok(Some(z)) => apply(z),
        Ok(None) if f.xx => Ok(()),
        Ok(None) => {
            let mut z = ZSetValue::new();
            let r = apply(&mut z);
            if !z.is_empty() {
                let now = ctx.now_ms;
                ctx.db().set(key, Value::ZSet(Box::new(z)), 0, now);
            }
            r
        }
    };
    if let Err(e) = res {
        return e;
    }
    if f.incr {
        if processed > 0 {
            Reply::Double(last)
        } else {
            Reply::Nil
        }
    } else {
        Reply::Int(if ch { added + updated } else { added })
    }
}

fn zrem(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let key = &args[1];
    let Some(z) = tri!(write_zset(ctx, key)) else {
        return Reply::Int(0);
    };
    let mut n = 0;
    for m in &args[2..] {
        if z.remove(m) {
            n += 1;
            if z.is_empty() {
                break;
            }
        }
    }
    drop_if_empty(ctx, key);
    Reply::Int(n)
}

fn zcard(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    match tri!(read_zset(ctx, &args[1])) {
        Some(z) => Reply::Int(z.len() as i64),
        None => Reply::Int(0),
    }
}

fn zscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    match tri!(read_zset(ctx, &args[1])).and_then(|z| z.score(&args[2])) {
        Some(s) => Reply::Double(s),
        None => Reply::Nil,
    }
}

fn zmscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let z = tri!(read_zset(ctx, &args[1]));
    Reply::Array(
        args[2..]
            .iter()
            .map(|m| match z.as_ref().and_then(|z| z.score(m)) {
                Some(s) => Reply::Double(s),
                None => Reply::Nil,
            })
            .collect(),
    )
}

fn zrank(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    zrank_generic(ctx, args, false)
}

fn zrevrank(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    zrank_generic(ctx, args, true)
}

/// ZRANK/ZREVRANK key member [WITHSCORE] (WITHSCORE as in Redis 7.2).
fn zrank_generic(ctx: &mut Ctx<'_>, args: &[Bytes], rev: bool) -> Reply {
    if args.len() > 4 {
        let name = if rev { "zrevrank" } else { "zrank" };
        return err::arity(name);
    }
    let withscore = args.len() == 4;
    if withscore && !kw(&args[3], "withscore") {
        return err::SYNTAX;
    }
    let missing = if withscore {
        Reply::NilArray
    } else {
        Reply::Nil
    };
    match tri!(read_zset(ctx, &args[1])).and_then(|z| z.rank(&args[2], rev)) {
        None => missing,
        Some((r, s)) if withscore => Reply::Array(vec![Reply::Int(r as i64), Reply::Double(s)]),
        Some((r, _)) => Reply::Int(r as i64),
    }
}

fn zcount(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let r = tri!(parse_score_range(&args[2], &args[3]));
    match tri!(read_zset(ctx, &args[1])) {
        Some(z) => {
            let (lo, hi) = z.score_bounds(&r);
            Reply::Int((hi - lo) as i64)
        }
        None => Reply::Int(0),
    }
}

fn zlexcount(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let r = tri!(parse_lex_range(&args[2], &args[3]));
    match tri!(read_zset(ctx, &args[1])) {
        Some(z) => {
            let (lo, hi) = z.lex_bounds(&r);
            Reply::Int((hi - lo) as i64)
        }
        None => Reply::Int(0),
    }
}

// ---------------------------------------------------------------------------
// ZRANGE and friends
// ---------------------------------------------------------------------------

/// What a ZRANGE-like command selects.
#[derive(Clone, Debug)]
enum RangeKind {
    Rank(i64, i64),
    Score(ScoreRange),
    Lex(LexRange),
}

/// A parsed ZRANGE-like request.
#[derive(Clone, Debug)]
struct RangeReq {
    kind: RangeKind,
    rev: bool,
    withscores: bool,
    offset: i64,
    limit: i64,
}

/// The range type a command fixes, or `Auto` for ZRANGE's BYSCORE/BYLEX.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Auto,
    Rank,
    Score,
    Lex,
}

/// Redis's `zrangeGenericCommand` argument parsing. `src` is the index of
/// the source key; the range follows it.
fn parse_range(
    args: &[Bytes],
    src: usize,
    store: bool,
    mut kind: Kind,
    dir: Option<bool>,
) -> Result<RangeReq, Reply> {
    let mut rev = dir;
    let mut withscores = false;
    let (mut offset, mut limit) = (0i64, -1i64);
    let mut j = src + 3;
    while j < args.len() {
        let left = args.len() - j - 1;
        let a = &args[j];
        if !store && kw(a, "withscores") {
            withscores = true;
        } else if kw(a, "limit") && left >= 2 {
            offset = arg_i64(&args[j + 1])?;
            limit = arg_i64(&args[j + 2])?;
            j += 2;
        } else if rev.is_none() && kw(a, "rev") {
            rev = Some(true);
        } else if kind == Kind::Auto && kw(a, "bylex") {
            kind = Kind::Lex;
        } else if kind == Kind::Auto && kw(a, "byscore") {
            kind = Kind::Score;
        } else {
            return Err(err::SYNTAX);
        }
        j += 1;
    }
    let rev = rev.unwrap_or(false);
    if kind == Kind::Auto {
        kind = Kind::Rank;
    }
    if limit != -1 && kind == Kind::Rank {
        return Err(errs::LIMIT_RANK);
    }
    if withscores && kind == Kind::Lex {
        return Err(errs::WITHSCORES_BYLEX);
    }
    let (mut a, mut b) = (&args[src + 1], &args[src + 2]);
    if rev && kind != Kind::Rank {
        std::mem::swap(&mut a, &mut b);
    }
    let kind = match kind {
        Kind::Score => RangeKind::Score(parse_score_range(a, b)?),
        Kind::Lex => RangeKind::Lex(parse_lex_range(a, b)?),
        _ => RangeKind::Rank(arg_i64(a)?, arg_i64(b)?),
    };
    Ok(RangeReq {
        kind,
        rev,
        withscores,
        offset,
        limit,
    })
}

/// Normalizes Redis rank indices (negative from the end) against `len`:
/// the inclusive `[start, end]`, or None when empty.
fn rank_span(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let llen = len as i64;
    let mut start = if start < 0 { llen + start } else { start };
    let mut end = if end < 0 { llen + end } else { end };
    if start < 0 {
        start = 0;
    }
    if start > end || start >= llen {
        return None;
    }
    if end >= llen {
        end = llen - 1;
    }
    Some((start as usize, end as usize))
}

/// The ascending ranks `[lo, hi)` a request selects and whether to walk them
/// backwards.
fn select(z: &ZSetValue, req: &RangeReq) -> (usize, usize) {
    let n = z.len();
    let (lo, hi) = match &req.kind {
        RangeKind::Rank(s, e) => {
            return match rank_span(*s, *e, n) {
                None => (0, 0),
                Some((s, e)) if req.rev => (n - 1 - e, n - s),
                Some((s, e)) => (s, e + 1),
            };
        }
        RangeKind::Score(r) => z.score_bounds(r),
        RangeKind::Lex(r) if req.rev => z.lex_bounds_rev(r),
        RangeKind::Lex(r) => z.lex_bounds(r),
    };
    if req.offset < 0 {
        return (0, 0);
    }
    let count = hi - lo;
    let off = req.offset as usize;
    if off >= count {
        return (0, 0);
    }
    let take = if req.limit < 0 {
        count - off
    } else {
        (req.limit as usize).min(count - off)
    };
    if req.rev {
        (hi - off - take, hi - off)
    } else {
        (lo + off, lo + off + take)
    }
}

fn zrange_generic(ctx: &mut Ctx<'_>, args: &[Bytes], kind: Kind, dir: Option<bool>) -> Reply {
    let req = tri!(parse_range(args, 1, false, kind, dir));
    let resp3 = ctx.resp3;
    let Some(z) = tri!(read_zset(ctx, &args[1])) else {
        return Reply::Array(vec![]);
    };
    let (lo, hi) = select(z, &req);
    scored_reply(z.range(lo, hi, req.rev), req.withscores, resp3)
}

fn zrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    zrange_generic(ctx, args, Kind::Auto, None)
}

fn zrevrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    zrange_generic(ctx, args, Kind::Rank, Some(true))
}

fn zrangebyscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    zrange_generic(ctx, args, Kind::Score, Some(false))
}

fn zrevrangebyscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    zrange_generic(ctx, args, Kind::Score, Some(true))
}

fn zrangebylex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    zrange_generic(ctx, args, Kind::Lex, Some(false))
}

fn zrevrangebylex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    zrange_generic(ctx, args, Kind::Lex, Some(true))
}

/// ZRANGESTORE dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count].
fn zrangestore(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let req = tri!(parse_range(&args, 2, true, Kind::Auto, None));
        let (dst, src) = (args[1].clone(), args[2].clone());
        let tx = c.lock_keys(&[dst.clone(), src.clone()]).await;
        let picked = tx
            .run(c.shard_of(&src), move |ctx| {
                let z = read_zset(ctx, &src)?;
                Ok::<_, Reply>(z.map(|z| {
                    let (lo, hi) = select(z, &req);
                    z.range(lo, hi, false)
                        .map(|(m, s)| (SmallBytes::new(m), s))
                        .collect::<Vec<_>>()
                }))
            })
            .await;
        let items = tri!(picked).unwrap_or_default();
        let n = tx
            .run(c.shard_of(&dst), move |ctx| store_result(ctx, &dst, items))
            .await;
        Reply::Int(n as i64)
    })
}

// ---------------------------------------------------------------------------
// ZREMRANGEBY*
// ---------------------------------------------------------------------------

fn zremrange_generic(ctx: &mut Ctx<'_>, args: &[Bytes], kind: Kind) -> Reply {
    let req = RangeReq {
        kind: match kind {
            Kind::Score => RangeKind::Score(tri!(parse_score_range(&args[2], &args[3]))),
            Kind::Lex => RangeKind::Lex(tri!(parse_lex_range(&args[2], &args[3]))),
            _ => RangeKind::Rank(tri!(arg_i64(&args[2])), tri!(arg_i64(&args[3]))),
        },
        rev: false,
        withscores: false,
        offset: 0,
        limit: -1,
    };
    let key = &args[1];
    let Some(z) = tri!(write_zset(ctx, key)) else {
        return Reply::Int(0);
    };
    let (lo, hi) = select(z, &req);
    let n = z.remove_range(lo, hi);
    drop_if_empty(ctx, key);
    Reply::Int(n as i64)
}

fn zremrangebyrank(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    zremrange_generic(ctx, args, Kind::Rank)
}

fn zremrangebyscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    zremrange_generic(ctx, args, Kind::Score)
}

fn zremrangebylex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    zremrange_generic(ctx, args, Kind::Lex)
}

// ---------------------------------------------------------------------------
// ZPOPMIN, ZPOPMAX, ZMPOP, ZRANDMEMBER
// ---------------------------------------------------------------------------

fn zpop_generic(ctx: &mut Ctx<'_>, args: &[Bytes], max: bool) -> Reply {
    if args.len() > 3 {
        return err::SYNTAX;
    }
    let count = match args.get(2) {
        Some(a) => Some(tri!(arg_range(a, 0, i64::MAX, errs::POSITIVE))),
        None => None,
    };
    let nested = ctx.resp3 && count.is_some();
    if tri!(write_zset(ctx, &args[1])).is_none() || count == Some(0) {
        return Reply::Array(vec![]);
    }
    let items = tri!(pop_key(ctx, &args[1], max, count.unwrap_or(1) as usize)).unwrap_or_default();
    pop_reply(&items, nested)
}

fn zpopmin(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    zpop_generic(ctx, args, false)
}

fn zpopmax(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    zpop_generic(ctx, args, true)
}

/// Parsed arguments of ZMPOP (and BZMPOP, whose `numkeys` sits one later).
pub struct MpopArgs {
    /// The keys, in order.
    pub keys: Vec<Bytes>,
    /// Pop the highest scores.
    pub max: bool,
    /// Most members to pop.
    pub count: usize,
}

/// Parses `numkeys key... MIN|MAX [COUNT count]` starting at `numkeys_idx`,
/// with Redis's errors.
pub fn parse_mpop(args: &[Bytes], numkeys_idx: usize) -> Result<MpopArgs, Reply> {
    let numkeys = arg_range(&args[numkeys_idx], 1, i64::MAX, errs::NUMKEYS)? as usize;
    let where_idx = numkeys_idx.saturating_add(numkeys).saturating_add(1);
    if where_idx >= args.len() {
        return Err(err::SYNTAX);
    }
    let max = if kw(&args[where_idx], "min") {
        false
    } else if kw(&args[where_idx], "max") {
        true
    } else {
        return Err(err::SYNTAX);
    };
    let mut count: Option<i64> = None;
    let mut j = where_idx + 1;
    while j < args.len() {
        let more = args.len() - 1 - j;
        if count.is_none() && kw(&args[j], "count") && more > 0 {
            j += 1;
            count = Some(arg_range(&args[j], 1, i64::MAX, errs::COUNT)?);
        } else {
            return Err(err::SYNTAX);
        }
        j += 1;
    }
    Ok(MpopArgs {
        keys: args[numkeys_idx + 1..where_idx].to_vec(),
        max,
        count: count.unwrap_or(1) as usize,
    })
}

/// ZMPOP numkeys key... MIN|MAX [COUNT count]: pops from the first non-empty
/// key, atomically over all the keys.
fn zmpop(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let a = tri!(parse_mpop(&args, 1));
        let tx = c.lock_keys(&a.keys).await;
        for key in a.keys {
            let (max, count) = (a.max, a.count);
            let k = key.clone();
            let r = tx
                .run(c.shard_of(&key), move |ctx| pop_key(ctx, &k, max, count))
                .await;
            match r {
                Err(e) => return e,
                Ok(None) => continue,
                Ok(Some(items)) => return mpop_reply(&key, &items),
            }
        }
        Reply::NilArray
    })
}

fn zrandmember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let resp3 = ctx.resp3;
    if args.len() < 3 {
        let Some(z) = tri!(read_zset(ctx, &args[1])) else {
            return Reply::Nil;
        };
        let i = rand::thread_rng().gen_range(0..z.len());
        return z.get(i).map(|(m, _)| Reply::bulk(m)).unwrap_or(Reply::Nil);
    }
    let l = match crate::parse::parse_i64(&args[2]) {
        None => return err::NOT_INT,
        Some(i64::MIN) => return errs::RANDMEMBER_RANGE,
        Some(n) => n,
    };
    let withscores = match args.len() {
        3 => false,
        4 if kw(&args[3], "withscores") => true,
        _ => return err::SYNTAX,
    };
    if withscores && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&l) {
        return errs::OUT_OF_RANGE;
    }
    let Some(z) = tri!(read_zset(ctx, &args[1])) else {
        return Reply::Array(vec![]);
    };
    let size = z.len();
    let count = l.unsigned_abs() as usize;
    if count == 0 {
        return Reply::Array(vec![]);
    }
    let mut rng = rand::thread_rng();
    let picks: Vec<usize> = if l < 0 || count == 1 {
        (0..count).map(|_| rng.gen_range(0..size)).collect()
    } else if count >= size {
        // Redis walks the whole set from its tail here.
        return scored_reply(z.range(0, size, true), withscores, resp3);
    } else {
        rand::seq::index::sample(&mut rng, size, count).into_vec()
    };
    scored_reply(
        picks.into_iter().filter_map(|i| z.get(i)),
        withscores,
        resp3,
    )
}

// ---------------------------------------------------------------------------
// ZUNION, ZINTER, ZDIFF, their STORE forms, ZINTERCARD
// ---------------------------------------------------------------------------

/// Which set operation.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Op {
    Union,
    Inter,
    Diff,
}

/// How scores of a member present in several inputs combine.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Agg {
    Sum,
    Min,
    Max,
}

/// Options after the keys.
#[derive(Clone, Debug)]
struct SetOpOpts {
    weights: Vec<f64>,
    agg: Agg,
    withscores: bool,
    limit: usize,
}

/// An input of a set operation: a sorted set or a plain set (whose members
/// score 1).
#[derive(Clone, Copy)]
enum Src<'a> {
    Z(&'a ZSetValue),
    S(&'a SetValue),
}

/// An owned copy of an input, carried between shards.
enum OwnedSrc {
    Z(Box<ZSetValue>),
    S(Box<SetValue>),
}

impl OwnedSrc {
    fn as_src(&self) -> Src<'_> {
        match self {
            OwnedSrc::Z(z) => Src::Z(z),
            OwnedSrc::S(s) => Src::S(s),
        }
    }
}

impl Src<'_> {
    fn len(&self) -> usize {
        match self {
            Src::Z(z) => z.len(),
            Src::S(s) => crate::types::set::SetValue::len(s),
        }
    }

    fn for_each(&self, mut f: impl FnMut(&[u8], f64)) {
        match self {
            Src::Z(z) => z.iter().for_each(|(m, s)| f(m, s)),
            Src::S(s) => crate::types::set::SetValue::for_each(s, |m| f(m, 1.0)),
        }
    }

    fn find(&self, m: &[u8]) -> Option<f64> {
        match self {
            Src::Z(z) => z.score(m),
            Src::S(s) => crate::types::set::SetValue::contains(s, m).then_some(1.0),
        }
    }
}

/// Redis's `zunionInterAggregate`.
fn aggregate(target: &mut f64, val: f64, agg: Agg) {
    match agg {
        Agg::Sum => {
            *target += val;
            if target.is_nan() {
                *target = 0.0;
            }
        }
        Agg::Min => {
            if val < *target {
                *target = val;
            }
        }
        Agg::Max => {
            if val > *target {
                *target = val;
            }
        }
    }
}

/// The result of a set operation.
enum SetOpOut {
    /// ZINTERCARD.
    Card(usize),
    /// Members sorted by (score, member).
    Entries(Vec<(SmallBytes, f64)>),
}

/// Computes a set operation as Redis's `zunionInterDiffGenericCommand` does,
/// inputs ordered by size for union and intersection (so floating-point
/// sums add up in Redis's order).
fn compute(op: Op, srcs: &[Option<Src<'_>>], o: &SetOpOpts, card_only: bool) -> SetOpOut {
    let weight = |i: usize| o.weights.get(i).copied().unwrap_or(1.0);
    let mut order: Vec<(usize, Option<Src<'_>>)> = srcs.iter().copied().enumerate().collect();
    if op != Op::Diff {
        order.sort_by_key(|(_, s)| s.map_or(0, |s| s.len()));
    }
    let mut out: Vec<(SmallBytes, f64)> = Vec::new();
    match op {
        Op::Inter => {
            let Some((w0, Some(first))) = order.first().map(|(i, s)| (weight(*i), *s)) else {
                return if card_only {
                    SetOpOut::Card(0)
                } else {
                    SetOpOut::Entries(out)
                };
            };
            let mut card = 0usize;
            let mut done = false;
            first.for_each(|m, s| {
                if done {
                    return;
                }
                let mut score = w0 * s;
                if score.is_nan() {
                    score = 0.0;
                }
                for (i, src) in &order[1..] {
                    let Some(v) = src.and_then(|src| src.find(m)) else {
                        return;
                    };
                    aggregate(&mut score, v * weight(*i), o.agg);
                }
                if card_only {
                    card += 1;
                    if o.limit > 0 && card >= o.limit {
                        done = true;
                    }
                } else {
                    out.push((SmallBytes::new(m), score));
                }
            });
            if card_only {
                return SetOpOut::Card(card);
            }
        }
        Op::Union => {
            let mut acc: hashbrown::HashMap<Vec<u8>, f64> = hashbrown::HashMap::new();
            let mut keys_in_order: Vec<Vec<u8>> = Vec::new();
            for (i, src) in &order {
                let Some(src) = src else { continue };
                let w = weight(*i);
                src.for_each(|m, s| {
                    let mut score = w * s;
                    if score.is_nan() {
                        score = 0.0;
                    }
                    match acc.get_mut(m) {
                        Some(t) => aggregate(t, score, o.agg),
                        None => {
                            acc.insert(m.to_vec(), score);
                            keys_in_order.push(m.to_vec());
                        }
                    }
                });
            }
            out = keys_in_order
                .into_iter()
                .map(|m| {
                    let s = acc[&m];
                    (SmallBytes::from_vec(m), s)
                })
                .collect();
        }
        Op::Diff => {
            if let Some(Some(first)) = srcs.first() {
                first.for_each(|m, s| {
                    if !srcs[1..].iter().flatten().any(|o| o.find(m).is_some()) {
                        out.push((SmallBytes::new(m), s));
                    }
                });
            }
        }
    }
    // By score (-0 and 0 being equal, as in Redis), then member.
    out.sort_by(|a, b| {
        a.1.partial_cmp(&b.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.0[..].cmp(&b.0[..]))
    });
    SetOpOut::Entries(out)
}

/// The shape of a set-operation command.
#[derive(Clone, Copy)]
struct SetOpCmd {
    op: Op,
    store: bool,
    card_only: bool,
    name: &'static str,
}

/// Parses the options after the keys (Redis's order of checks).
fn parse_setop_opts(
    args: &[Bytes],
    mut j: usize,
    n: usize,
    cmd: SetOpCmd,
) -> Result<SetOpOpts, Reply> {
    let mut o = SetOpOpts {
        weights: vec![1.0; n],
        agg: Agg::Sum,
        withscores: false,
        limit: 0,
    };
    let full = cmd.op != Op::Diff && !cmd.card_only;
    while j < args.len() {
        let remaining = args.len() - j;
        let a = &args[j];
        if full && remaining > n && kw(a, "weights") {
            j += 1;
            for i in 0..n {
                o.weights[i] = string2d(&args[j]).ok_or(errs::WEIGHT)?;
                j += 1;
            }
        } else if full && remaining >= 2 && kw(a, "aggregate") {
            let v = &args[j + 1];
            o.agg = if kw(v, "sum") {
                Agg::Sum
            } else if kw(v, "min") {
                Agg::Min
            } else if kw(v, "max") {
                Agg::Max
            } else {
                return Err(err::SYNTAX);
            };
            j += 2;
        } else if !cmd.store && !cmd.card_only && kw(a, "withscores") {
            o.withscores = true;
            j += 1;
        } else if cmd.card_only && remaining >= 2 && kw(a, "limit") {
            o.limit = arg_range(&args[j + 1], 0, i64::MAX, errs::LIMIT_NEG)? as usize;
            j += 2;
        } else {
            return Err(err::SYNTAX);
        }
    }
    Ok(o)
}

/// The value at `key` as a set-operation input: Ok(None) when missing,
/// WRONGTYPE unless it is a set or sorted set.
fn src_of<'a>(v: Option<&'a Value>) -> Result<Option<Src<'a>>, Reply> {
    match v {
        None => Ok(None),
        Some(Value::ZSet(z)) => Ok(Some(Src::Z(z))),
        Some(Value::Set(s)) => Ok(Some(Src::S(s))),
        Some(_) => Err(err::WRONGTYPE),
    }
}

/// Runs a set operation whose keys all live on this shard, on the stored
/// values themselves.
fn setop_local(
    ctx: &mut Ctx<'_>,
    keys: &[Bytes],
    dst: Option<&Bytes>,
    opts: Result<SetOpOpts, Reply>,
    cmd: SetOpCmd,
) -> Result<SetOpOut, Reply> {
    let (now, touch) = (ctx.now_ms, ctx.touch);
    let db = ctx.db();
    for k in keys {
        db.lookup(k, now, touch);
    }
    let out = {
        let dict = db.dict();
        let mut srcs = Vec::with_capacity(keys.len());
        for k in keys {
            srcs.push(src_of(dict.get(k).map(|e| &e.value))?);
        }
        let opts = opts?;
        compute(cmd.op, &srcs, &opts, cmd.card_only)
    };
    match (dst, out) {
        (Some(dst), SetOpOut::Entries(e)) => Ok(SetOpOut::Card(store_result(ctx, dst, e))),
        (_, out) => Ok(out),
    }
}

/// Key positions of ZUNION/ZINTER/ZDIFF/ZINTERCARD/ZMPOP: `numkeys` at 1.
fn numkeys_at_1(args: &[Bytes]) -> Vec<usize> {
    numkeys_keys(args, 1)
}

/// Key positions of the STORE forms: the destination, then `numkeys` keys.
fn store_keys(args: &[Bytes]) -> Vec<usize> {
    let mut v = numkeys_keys(args, 2);
    if !v.is_empty() {
        v.insert(0, 1);
    }
    v
}

/// Key positions after a `numkeys` argument at `at`: none when it is not a
/// positive count that fits the arguments.
pub fn numkeys_keys(args: &[Bytes], at: usize) -> Vec<usize> {
    match args.get(at).and_then(|a| crate::parse::parse_i64(a)) {
        Some(n) if n >= 1 && (n as u64) < args.len() as u64 && at + (n as usize) < args.len() => {
            (at + 1..=at + n as usize).collect()
        }
        _ => Vec::new(),
    }
}

/// The shared body of the set-operation commands.
async fn setop(c: &mut Client, args: Vec<Bytes>, cmd: SetOpCmd) -> Reply {
    let idx = if cmd.store { 2 } else { 1 };
    let n = tri!(arg_i64(&args[idx]));
    if n < 1 {
        return Reply::Error(format!(
            "ERR at least 1 input key is needed for '{}' command",
            cmd.name
        ));
    }
    if n > (args.len() - idx - 1) as i64 {
        return err::SYNTAX;
    }
    let n = n as usize;
    let keys: Vec<Bytes> = args[idx + 1..idx + 1 + n].to_vec();
    let opts = parse_setop_opts(&args, idx + 1 + n, n, cmd);
    let withscores = opts.as_ref().is_ok_and(|o| o.withscores);
    let dst = cmd.store.then(|| args[1].clone());
    let mut all = keys.clone();
    all.extend(dst.iter().cloned());
    let tx = c.lock_keys(&all).await;
    let resp3 = c.resp3;
    let shard = c.shard_of(&all[0]);
    let out = if all.iter().all(|k| c.shard_of(k) == shard) {
        tx.run(shard, move |ctx| {
            setop_local(ctx, &keys, dst.as_ref(), opts, cmd)
        })
        .await
    } else {
        // Copy the inputs from their shards, in key order within each.
        let mut copies: Vec<Option<Result<Option<OwnedSrc>, Reply>>> = Vec::new();
        copies.resize_with(n, || None);
        let groups = c.group_by_shard(&keys);
        let futs = groups.into_iter().map(|(s, idx)| {
            let ks: Vec<Bytes> = idx.iter().map(|&i| keys[i].clone()).collect();
            let tx = &tx;
            async move {
                let got = tx
                    .run(s, move |ctx| {
                        let (now, touch) = (ctx.now_ms, ctx.touch);
                        ks.iter()
                            .map(|k| match ctx.db().lookup(k, now, touch).map(|e| &e.value) {
                                None => Ok(None),
                                Some(Value::ZSet(z)) => Ok(Some(OwnedSrc::Z(z.clone()))),
                                Some(Value::Set(s)) => Ok(Some(OwnedSrc::S(s.clone()))),
                                Some(_) => Err(err::WRONGTYPE),
                            })
                            .collect::<Vec<_>>()
                    })
                    .await;
                (idx, got)
            }
        });
        for (idx, got) in futures::future::join_all(futs).await {
            for (i, r) in idx.into_iter().zip(got) {
                copies[i] = Some(r);
            }
        }
        let mut owned = Vec::with_capacity(n);
        for r in copies {
            owned.push(tri!(r.unwrap_or(Ok(None))));
        }
        let opts = tri!(opts);
        let srcs: Vec<Option<Src<'_>>> = owned
            .iter()
            .map(|o| o.as_ref().map(|o| o.as_src()))
            .collect();
        let out = compute(cmd.op, &srcs, &opts, cmd.card_only);
        match (dst, out) {
            (Some(dst), SetOpOut::Entries(e)) => {
                let n = tx
                    .run(c.shard_of(&dst), move |ctx| store_result(ctx, &dst, e))
                    .await;
                Ok(SetOpOut::Card(n))
            }
            (_, out) => Ok(out),
        }
    };
    drop(tx);
    match tri!(out) {
        SetOpOut::Card(n) => Reply::Int(n as i64),
        SetOpOut::Entries(e) => {
            scored_reply(e.iter().map(|(m, s)| (&m[..], *s)), withscores, resp3)
        }
    }
}

macro_rules! setop_cmd {
    ($fn:ident, $op:expr, $store:expr, $card:expr, $name:expr) => {
        fn $fn(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
            Box::pin(setop(
                c,
                args,
                SetOpCmd {
                    op: $op,
                    store: $store,
                    card_only: $card,
                    name: $name,
                },
            ))
        }
    };
}

setop_cmd!(zunion, Op::Union, false, false, "zunion");
setop_cmd!(zinter, Op::Inter, false, false, "zinter");
setop_cmd!(zdiff, Op::Diff, false, false, "zdiff");
setop_cmd!(zunionstore, Op::Union, true, false, "zunionstore");
setop_cmd!(zinterstore, Op::Inter, true, false, "zinterstore");
setop_cmd!(zdiffstore, Op::Diff, true, false, "zdiffstore");
setop_cmd!(zintercard, Op::Inter, false, true, "zintercard");

// ---------------------------------------------------------------------------
// ZSCAN
// ---------------------------------------------------------------------------

fn zscan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let Some(cursor) = parse_cursor(&args[2]) else {
        return errs::CURSOR;
    };
    let empty = || Reply::Array(vec![Reply::bulk(b"0"), Reply::Array(vec![])]);
    let Some(z) = tri!(read_zset(ctx, &args[1])) else {
        return empty();
    };
    let mut count = 10i64;
    let mut pattern: Option<&[u8]> = None;
    let mut i = 3;
    while i < args.len() {
        let more = args.len() - i >= 2;
        if kw(&args[i], "count") && more {
            count = tri!(arg_i64(&args[i + 1]));
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
    let next = z.scan(cursor, count as usize, |m, s| {
        if pattern.is_none_or(|p| crate::glob::matches(p, m, false)) {
            items.push(Reply::bulk(m));
            items.push(Reply::bulk(format_double(s).as_bytes()));
        }
    });
    Reply::Array(vec![
        Reply::bulk(itoa::Buffer::new().format(next).as_bytes()),
        Reply::Array(items),
    ])
}
