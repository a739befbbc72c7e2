//! Blocking list and sorted-set commands: BLPOP, BRPOP, BLMOVE, BRPOPLPUSH,
//! BLMPOP, BZPOPMIN, BZPOPMAX and BZMPOP, with Redis 7.0's replies, errors
//! and serving rules.
//!
//! Each command parses its arguments (in Redis's order, for its errors) and
//! hands [`blocking::block`] two serve functions over one key: `first`, the
//! immediate attempt under the keys' locks, where a key of the wrong type
//! ends the command with WRONGTYPE; and `serve`, run on the owning shard
//! right after a write feeds a waited-for key, where a key of another type
//! is skipped and the client keeps waiting (Redis 7.0 only serves list
//! waiters from lists and sorted-set waiters from sorted sets).
//!
//! BLMOVE/BRPOPLPUSH move in place when source and destination share a
//! shard. Otherwise serving must not pop (the destination is elsewhere):
//! it answers [`Wake::Retry`] and the client does the move under the locks
//! of both keys, or waits again if the source emptied meanwhile.

use super::{CommandSpec, Ctx, Handler, NO_KEYS, err, flags::*, keys, list, zset};
use crate::parse::parse_i64;
use crate::reply::Reply;
use crate::shard::blocking::{ServeFn, Wake};
use crate::shard::db::Db;
use crate::shard::value::Value;
use crate::transaction::blocking::{BlockSpec, RetryFn, block};
use crate::transaction::{Client, Tx};
use bytes::Bytes;
use futures::future::LocalBoxFuture;
use std::sync::Arc;
use std::time::Duration;

const W_LIST: &[&str] = &["write", "list", "slow", "blocking"];
const W_ZSET_FAST: &[&str] = &["write", "sortedset", "fast", "blocking"];
const W_ZSET_SLOW: &[&str] = &["write", "sortedset", "slow", "blocking"];

/// Unwraps a `Result<T, Reply>` inside a handler, replying with the error.
macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
}

/// The blocking commands.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec::new(
        "blpop",
        -3,
        WRITE | NOSCRIPT | BLOCKING,
        keys(1, -2, 1),
        "list",
        "2.0.0",
        "Remove and get the first element in a list, or block until one is available",
        Handler::Async(blpop),
    )
    .acl(W_LIST),
    CommandSpec::new(
        "brpop",
        -3,
        WRITE | NOSCRIPT | BLOCKING,
        keys(1, -2, 1),
        "list",
        "2.0.0",
        "Remove and get the last element in a list, or block until one is available",
        Handler::Async(brpop),
    )
    .acl(W_LIST),
    CommandSpec::new(
        "brpoplpush",
        4,
        WRITE | DENYOOM | NOSCRIPT | BLOCKING,
        keys(1, 2, 1),
        "list",
        "2.2.0",
        "Pop an element from a list, push it to another list and return it; or block until one is available",
        Handler::Async(brpoplpush),
    )
    .acl(W_LIST),
    CommandSpec::new(
        "blmove",
        6,
        WRITE | DENYOOM | NOSCRIPT | BLOCKING,
        keys(1, 2, 1),
        "list",
        "6.2.0",
        "Pop an element from a list, push it to another list and return it; or block until one is available",
        Handler::Async(blmove),
    )
    .acl(W_LIST),
    CommandSpec::new(
        "blmpop",
        -5,
        WRITE | BLOCKING | MOVABLEKEYS,
        NO_KEYS,
        "list",
        "7.0.0",
        "Pop elements from a list, or block until one is available",
        Handler::Async(blmpop),
    )
    .keys_with(mpop_keys)
    .acl(W_LIST),
    CommandSpec::new(
        "bzpopmin",
        -3,
        WRITE | NOSCRIPT | BLOCKING | FAST,
        keys(1, -2, 1),
        "sorted-set",
        "5.0.0",
        "Remove and return the member with the lowest score from one or more sorted sets, or block until one is available",
        Handler::Async(bzpopmin),
    )
    .acl(W_ZSET_FAST),
    CommandSpec::new(
        "bzpopmax",
        -3,
        WRITE | NOSCRIPT | BLOCKING | FAST,
        keys(1, -2, 1),
        "sorted-set",
        "5.0.0",
        "Remove and return the member with the highest score from one or more sorted sets, or block until one is available",
        Handler::Async(bzpopmax),
    )
    .acl(W_ZSET_FAST),
    CommandSpec::new(
        "bzmpop",
        -5,
        WRITE | BLOCKING | MOVABLEKEYS,
        NO_KEYS,
        "sorted-set",
        "7.0.0",
        "Remove and return members with scores in a sorted set or block until one is available",
        Handler::Async(bzmpop),
    )
    .keys_with(mpop_keys)
    .acl(W_ZSET_SLOW),
];

// ---------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------

/// Key positions of BLMPOP/BZMPOP (`numkeys` at index 2): none when
/// `numkeys` is not a positive integer that fits the arguments.
fn mpop_keys(args: &[Bytes]) -> Vec<usize> {
    match args.get(2).and_then(|a| parse_i64(a)) {
        Some(n) if n >= 1 && (n as u64) <= args.len().saturating_sub(3) as u64 => {
            (3..3 + n as usize).collect()
        }
        _ => Vec::new(),
    }
}

/// What a waited-for key holds, seen without touching stats or the LRU.
#[derive(Clone, Copy, PartialEq)]
enum Holds {
    /// Missing (or expired): keep waiting.
    Nothing,
    /// A value of the wanted type; never empty, as empty collections are
    /// deleted.
    Ready,
    /// A value of another type.
    Other,
}

fn holds(db: &mut Db, key: &[u8], now: u64, zset: bool) -> Holds {
    match db.peek(key, now).map(|e| &e.value) {
        None => Holds::Nothing,
        Some(Value::List(_)) if !zset => Holds::Ready,
        Some(Value::ZSet(_)) if zset => Holds::Ready,
        Some(_) => Holds::Other,
    }
}

/// A serve function for one key: `pop` runs when the key holds the wanted
/// type. Built twice per command: `first` (WRONGTYPE on another type) and
/// `serve` (another type keeps the client waiting).
fn serve_fn<F>(zset: bool, first: bool, pop: F) -> Arc<ServeFn>
where
    F: Fn(&mut Ctx<'_>, &[u8]) -> Wake + Send + Sync + 'static,
{
    Arc::new(move |ctx: &mut Ctx<'_>, key: &[u8]| {
        let now = ctx.now_ms;
        match holds(ctx.db(), key, now, zset) {
            Holds::Nothing => None,
            Holds::Other => first.then_some(Wake::Reply(err::WRONGTYPE)),
            Holds::Ready => Some(pop(ctx, key)),
        }
    })
}

/// Runs a blocking pop whose serving never needs a retry.
async fn block_pop<F>(c: &Client, keys: Vec<Bytes>, timeout_arg: &[u8], zset: bool, pop: F) -> Reply
where
    F: Fn(&mut Ctx<'_>, &[u8]) -> Wake + Send + Sync + Clone + 'static,
{
    let timeout = tri!(parse_timeout(timeout_arg));
    let spec = BlockSpec {
        lock: keys.clone(),
        wait: keys,
        timeout,
        timeout_reply: Reply::NilArray,
        first: serve_fn(zset, true, pop.clone()),
        serve: serve_fn(zset, false, pop),
    };
    block(c, spec, &|_, _| Box::pin(async { None })).await
}

// ---------------------------------------------------------------------------
// BLPOP, BRPOP, BLMPOP
// ---------------------------------------------------------------------------

/// Pops up to `count` elements from the list at `key` (known to exist).
fn list_pop(ctx: &mut Ctx<'_>, key: &[u8], left: bool, count: usize) -> Result<Vec<Bytes>, Reply> {
    let (fill, now) = (list::fill(ctx), ctx.now_ms);
    Ok(list::pop(ctx.db(), key, left, count, fill, now)?.unwrap_or_default())
}

/// BLPOP/BRPOP key [key ...] timeout: `[key, element]`.
fn bpop(c: &Client, args: Vec<Bytes>, left: bool) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let keys = args[1..args.len() - 1].to_vec();
        let pop = move |ctx: &mut Ctx<'_>, key: &[u8]| {
            Wake::Reply(match list_pop(ctx, key, left, 1) {
                Ok(mut v) => match v.pop() {
                    Some(e) => Reply::Array(vec![Reply::bulk(key), Reply::Bulk(e)]),
                    None => Reply::NilArray,
                },
                Err(e) => e,
            })
        };
        block_pop(c, keys, &args[args.len() - 1], false, pop).await
    })
}

fn blpop(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    bpop(c, args, true)
}

fn brpop(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    bpop(c, args, false)
}

/// BLMPOP timeout numkeys key [key ...] LEFT|RIGHT [COUNT count]:
/// `[key, [element ...]]`.
fn blmpop(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        // Redis checks the timeout after the rest.
        let (keys, left, count) = tri!(list::parse_mpop(&args, 2));
        let pop = move |ctx: &mut Ctx<'_>, key: &[u8]| {
            Wake::Reply(match list_pop(ctx, key, left, count) {
                Ok(v) => Reply::Array(vec![
                    Reply::bulk(key),
                    Reply::Array(v.into_iter().map(Reply::Bulk).collect()),
                ]),
                Err(e) => e,
            })
        };
        block_pop(c, keys, &args[1], false, pop).await
    })
}

// ---------------------------------------------------------------------------
// BLMOVE, BRPOPLPUSH
// ---------------------------------------------------------------------------

/// BLMOVE source destination LEFT|RIGHT LEFT|RIGHT timeout.
fn blmove(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let from_left = tri!(list::parse_side(&args[3]));
        let to_left = tri!(list::parse_side(&args[4]));
        let timeout = tri!(parse_timeout(&args[5]));
        block_move(
            c,
            args[1].clone(),
            args[2].clone(),
            from_left,
            to_left,
            timeout,
        )
        .await
    })
}

/// BRPOPLPUSH source destination timeout: BLMOVE ... RIGHT LEFT.
fn brpoplpush(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let timeout = tri!(parse_timeout(&args[3]));
        block_move(c, args[1].clone(), args[2].clone(), false, true, timeout).await
    })
}

/// The serve function of BLMOVE over its source key. With both keys on one
/// shard it moves in place (LMOVE's own checks: WRONGTYPE for a destination
/// of another type, as Redis 7.0 replies to a served BLMOVE), unless another
/// transaction holds the destination; then, and whenever the destination is
/// on another shard, it asks for a retry under locks.
fn move_fn(
    dst: Bytes,
    same_shard: bool,
    from_left: bool,
    to_left: bool,
    first: bool,
) -> Arc<ServeFn> {
    serve_fn(false, first, move |ctx: &mut Ctx<'_>, src: &[u8]| {
        // `first` runs under this client's own locks on both keys.
        let dst_free = first
            || src == &dst[..]
            || ctx
                .shard
                .locks
                .keys_free(ctx.tx, ctx.db, std::iter::once(&dst[..]));
        if same_shard && dst_free {
            Wake::Reply(list::lmove_here(ctx, src, &dst, from_left, to_left))
        } else {
            Wake::Retry
        }
    })
}

/// BLMOVE's move under the locks of both keys, after a serve function saw
/// the source holding a list: `None` if the source is no longer a list.
fn move_locked<'a>(
    c: &'a Client,
    tx: &'a Tx,
    src: Bytes,
    dst: Bytes,
    from_left: bool,
    to_left: bool,
) -> LocalBoxFuture<'a, Option<Reply>> {
    Box::pin(async move {
        let (ss, ds) = (c.shard_of(&src), c.shard_of(&dst));
        if ss == ds {
            return tx
                .run(ss, move |ctx| {
                    let now = ctx.now_ms;
                    (holds(ctx.db(), &src, now, false) == Holds::Ready)
                        .then(|| list::lmove_here(ctx, &src, &dst, from_left, to_left))
                })
                .await;
        }
        let k = dst.clone();
        let dst_ok = tx
            .run(ds, move |ctx| {
                let now = ctx.now_ms;
                holds(ctx.db(), &k, now, false) != Holds::Other
            })
            .await;
        let popped = tx
            .run(ss, move |ctx| -> Option<Result<Bytes, Reply>> {
                let now = ctx.now_ms;
                if holds(ctx.db(), &src, now, false) != Holds::Ready {
                    return None;
                }
                if !dst_ok {
                    return Some(Err(err::WRONGTYPE));
                }
                Some(list_pop(ctx, &src, from_left, 1).map(|mut v| v.pop().unwrap_or_default()))
            })
            .await?;
        let v = match popped {
            Ok(v) => v,
            Err(e) => return Some(e),
        };
        let pushed = v.clone();
        let r = tx
            .run(ds, move |ctx| {
                let (fill, now) = (list::fill(ctx), ctx.now_ms);
                list::push(ctx.db(), &dst, &[&pushed[..]], to_left, true, fill, now)
            })
            .await;
        Some(match r {
            Ok(_) => Reply::Bulk(v),
            Err(e) => e,
        })
    })
}

/// BLMOVE/BRPOPLPUSH after parsing.
async fn block_move(
    c: &Client,
    src: Bytes,
    dst: Bytes,
    from_left: bool,
    to_left: bool,
    timeout: Option<std::time::Duration>,
) -> Reply {
    let same_shard = c.shard_of(&src) == c.shard_of(&dst);
    let spec = BlockSpec {
        lock: vec![src.clone(), dst.clone()],
        wait: vec![src.clone()],
        timeout,
        // A timed-out wait answers a null array, but inside a transaction,
        // where it cannot wait, the command answers a null bulk (Redis's
        // blmoveGenericCommand under CLIENT_DENY_BLOCKING).
        timeout_reply: if c.in_transaction() {
            Reply::Nil
        } else {
            Reply::NilArray
        },
        first: move_fn(dst.clone(), same_shard, from_left, to_left, true),
        serve: move_fn(dst.clone(), same_shard, from_left, to_left, false),
    };
    let retry: &RetryFn =
        &move |c, tx| move_locked(c, tx, src.clone(), dst.clone(), from_left, to_left);
    block(c, spec, retry).await
}

// ---------------------------------------------------------------------------
// BZPOPMIN, BZPOPMAX, BZMPOP
// ---------------------------------------------------------------------------

/// Pops up to `count` members from the sorted set at `key` (known to
/// exist), lowest scores first unless `max`.
fn zset_pop(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    max: bool,
    count: usize,
) -> Result<Vec<(crate::shard::value::SmallBytes, f64)>, Reply> {
    Ok(zset::pop_key(ctx, key, max, count)?.unwrap_or_default())
}

/// BZPOPMIN/BZPOPMAX key [key ...] timeout: `[key, member, score]`.
fn bzpop(c: &Client, args: Vec<Bytes>, max: bool) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let keys = args[1..args.len() - 1].to_vec();
        let pop = move |ctx: &mut Ctx<'_>, key: &[u8]| {
            Wake::Reply(match zset_pop(ctx, key, max, 1) {
                Ok(items) => match items.first() {
                    Some(item) => zset::bzpop_reply(key, item),
                    None => Reply::NilArray,
                },
                Err(e) => e,
            })
        };
        block_pop(c, keys, &args[args.len() - 1], true, pop).await
    })
}

fn bzpopmin(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    bzpop(c, args, false)
}

fn bzpopmax(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    bzpop(c, args, true)
}

/// BZMPOP timeout numkeys key [key ...] MIN|MAX [COUNT count]:
/// `[key, [[member, score] ...]]`.
fn bzmpop(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let a = tri!(zset::parse_mpop(&args, 2));
        let (max, count) = (a.max, a.count);
        let pop = move |ctx: &mut Ctx<'_>, key: &[u8]| {
            Wake::Reply(match zset_pop(ctx, key, max, count) {
                Ok(items) => zset::mpop_reply(key, &items),
                Err(e) => e,
            })
        };
        block_pop(c, a.keys, &args[1], true, pop).await
    })
}

/// Parses a blocking timeout in seconds (fractions allowed) as Redis 7.0's
/// `getTimeoutFromObjectOrReply` does: a `long double` (`string2ld`), times
/// 1000 in `long double`, rounded up (`ceill`) and cast to `long long`. So
/// -0.0005 waits forever like 0, 0.0001 waits 1 ms, and infinities or
/// values whose milliseconds overflow the cast (`LLONG_MIN` on x86-64) are
/// "negative". `None` means forever.
pub fn parse_timeout(arg: &[u8]) -> Result<Option<Duration>, Reply> {
    const NOT_FLOAT: Reply = Reply::StaticError("ERR timeout is not a float or out of range");
    if super::longdouble::LongDouble::parse(arg).is_none() {
        return Err(NOT_FLOAT);
    }
    let ms = x87_bits(arg).map_or(i64::MIN, ceil_ms);
    if ms < 0 {
        return Err(Reply::StaticError("ERR timeout is negative"));
    }
    Ok((ms > 0).then(|| Duration::from_millis(ms as u64)))
}

/// The 80-bit `long double` that glibc's `strtold` reads from `arg` (through
/// `sscanf("%Lf")`, which shares its conversion): sign, biased exponent and
/// 64-bit mantissa. `None` if it cannot be read.
fn x87_bits(arg: &[u8]) -> Option<(bool, u16, u64)> {
    let cs = std::ffi::CString::new(arg).ok()?;
    let mut raw = [0u8; 16];
    // SAFETY: `%Lf` stores one `long double` (10 bytes on x86-64, at most
    // 16 anywhere) into `raw`; both strings are NUL-terminated.
    let n = unsafe { libc::sscanf(cs.as_ptr(), c"%Lf".as_ptr(), raw.as_mut_ptr()) };
    if n != 1 || !cfg!(target_arch = "x86_64") {
        return None;
    }
    let mantissa = u64::from_le_bytes(raw[..8].try_into().ok()?);
    let se = u16::from_le_bytes([raw[8], raw[9]]);
    Some((se & 0x8000 != 0, se & 0x7fff, mantissa))
}

/// `(long long) ceill(x * 1000.0)` for an x87 `long double` x, with the
/// product rounded to 64 significant bits (to nearest, ties to even) as
/// the FPU does, and `LLONG_MIN` when the result does not fit.
fn ceil_ms((neg, exp, mantissa): (bool, u16, u64)) -> i64 {
    if exp == 0x7fff {
        return i64::MIN; // inf or NaN
    }
    if mantissa == 0 {
        return 0;
    }
    // x = mantissa * 2^(exp - 16383 - 63); denormals use exponent 1.
    let mut k = exp.max(1) as i32 - 16383 - 63;
    let mut p = mantissa as u128 * 1000;
    let bits = 128 - p.leading_zeros() as i32;
    if bits > 64 {
        let shift = bits - 64;
        let rem = p & ((1u128 << shift) - 1);
        let half = 1u128 << (shift - 1);
        p >>= shift;
        k += shift;
        if rem > half || (rem == half && p & 1 == 1) {
            p += 1;
            if p >> 64 != 0 {
                p >>= 1;
                k += 1;
            }
        }
    }
    // |x * 1000| = p * 2^k; round towards +inf.
    let magnitude: u128 = if k >= 0 {
        if k >= 64 {
            return i64::MIN;
        }
        p << k
    } else if k <= -128 {
        // Below one: ceil gives 1 when positive, 0 when negative.
        return if neg { 0 } else { 1 };
    } else {
        let int = p >> -k;
        let frac = p & ((1u128 << -k) - 1) != 0;
        if neg { int } else { int + frac as u128 }
    };
    match (neg, i64::try_from(magnitude)) {
        (false, Ok(v)) => v,
        (true, Ok(v)) => -v,
        // Out of range for the cast; -2^63 itself happens to be LLONG_MIN.
        _ => i64::MIN,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_timeout;

    fn ms(s: &str) -> Result<Option<u64>, String> {
        parse_timeout(s.as_bytes())
            .map(|d| d.map(|d| d.as_millis() as u64))
            .map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn timeouts_round_like_redis() {
        assert_eq!(ms("0"), Ok(None));
        assert_eq!(ms("-0"), Ok(None));
        assert_eq!(ms("1"), Ok(Some(1000)));
        assert_eq!(ms("0.01"), Ok(Some(10)));
        assert_eq!(ms("0.0001"), Ok(Some(1)));
        assert_eq!(ms("1e-400"), Ok(Some(1)));
        assert_eq!(ms("-1e-400"), Ok(None));
        assert_eq!(ms("-0.0009"), Ok(None));
        // -0.001L * 1000 rounds to just above -1 in long double.
        assert_eq!(ms("-0.001"), Ok(None));
        assert_eq!(ms("0x10"), Ok(Some(16000)));
        assert_eq!(ms("1.5"), Ok(Some(1500)));
        assert!(ms("-0.002").is_err());
        assert!(ms("inf").is_err());
        assert!(ms("1e400").is_err());
        assert!(ms("9.3e15").is_err());
        assert_eq!(ms("9.2e15"), Ok(Some(9_200_000_000_000_000_000)));
    }
}
