//! SORT and SORT_RO, with Redis 7.0's semantics (`sort.c`).
//!
//! `SORT key [BY pattern] [LIMIT offset count] [GET pattern ...] [ASC|DESC]
//! [ALPHA] [STORE destination]` sorts a list, set or sorted set:
//! - numerically by default (elements parsed with C `strtod`, ties broken by
//!   comparing the elements byte-wise), or with ALPHA as strings;
//! - by the values of other keys with `BY pattern`: the first `*` is
//!   replaced by the element and `key->field` reads a hash field; a pattern
//!   without `*` (`BY nosort`) skips sorting, lists and sorted sets then keep
//!   their own order (reversed by DESC);
//! - `GET pattern` returns the pattern's values instead of the elements,
//!   `GET #` the element itself;
//! - `STORE` writes the result as a list (deleting the destination when the
//!   result is empty) and replies with its length.
//!
//! Like Redis 7.0, SORT converts a small sorted set to the skiplist encoding,
//! compares ALPHA strings with `strcoll` (byte order up to the first NUL in
//! the C / C.UTF-8 locales) unless STORE is given, where it compares whole
//! strings byte-wise, and sorts a set even under `BY nosort` when storing, so
//! the stored list does not depend on the set's internal order.
//!
//! # Patterns on a sharded keyspace
//!
//! The keys that BY and GET patterns form must live on the sorted key's
//! shard. As Redis Cluster 7.4.2+ does (it compares hash slots, ringkv
//! compares shards), a pattern that may form keys on another shard is refused
//! while the options are parsed, with Redis Cluster's texts ("BY option of
//! SORT denied in Cluster mode when keys formed by the pattern may be in
//! different slots.", and the same for GET). A pattern stays on one shard
//! when the part before its `*` holds a complete, non-empty hash tag (`{u}`)
//! of a slot that this shard owns: `SORT {u}:ids BY {u}:w_* GET {u}:h_*->f`.
//! `GET #`, and patterns without `*` (which form no key at all), are always
//! allowed. With one shard no key can leave the shard, so every pattern is
//! allowed, as in a standalone Redis. (Redis 7.0 in cluster mode refused
//! every BY pattern and every GET, with shorter texts; the 7.4.2 rule is the
//! one that lets hash-tagged patterns work.) Should a formed key still hash
//! to another shard when it is looked up, the command fails with CROSSSLOT.
//!
//! # Atomicity
//!
//! Without STORE, or with the destination on the same shard, SORT runs in one
//! hop on the sorted key's shard. With the destination on another shard both
//! keys are locked ([`Client::lock_keys`]), the result is computed on the
//! source shard and written on the destination shard inside the transaction.
//! Keys formed by patterns are not known in advance: if one of them is held
//! by another transaction, SORT waits for it (or, inside its own
//! transaction, locks it too and starts over), so it never observes half of
//! another multi-shard command.

use super::flags::*;
use super::{CommandSpec, Ctx, Handler, arg_i64, err, is, keys};
use crate::parse::parse_i64;
use crate::reply::Reply;
use crate::shard::value::Value;
use crate::shard::{Shard, locks, spawn_on, with_shard};
use crate::transaction::Client;
use crate::types::list::ListValue;
use bytes::Bytes;
use futures::future::LocalBoxFuture;
use std::cmp::Ordering;

/// SORT and SORT_RO.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec::new(
        "sort",
        -2,
        WRITE | DENYOOM | MOVABLEKEYS,
        keys(1, 1, 1),
        "generic",
        "1.0.0",
        "Sort the elements in a list, set or sorted set",
        Handler::Async(sort),
    )
    .keys_with(sort_keys)
    .acl(&["write", "set", "sortedset", "list", "slow", "dangerous"]),
    CommandSpec::new(
        "sort_ro",
        -2,
        READONLY | MOVABLEKEYS,
        keys(1, 1, 1),
        "generic",
        "7.0.0",
        "Sort the elements in a list, set or sorted set. Read-only variant of SORT.",
        Handler::Async(sort_ro),
    )
    .acl(&["read", "set", "sortedset", "list", "slow", "dangerous"]),
];

const BY_DENIED: Reply = Reply::StaticError(
    "ERR BY option of SORT denied in Cluster mode when keys formed by the pattern may be in different slots.",
);
const GET_DENIED: Reply = Reply::StaticError(
    "ERR GET option of SORT denied in Cluster mode when keys formed by the pattern may be in different slots.",
);
const NOT_DOUBLE: Reply =
    Reply::StaticError("ERR One or more scores can't be converted into double");

/// SORT's key positions, as Redis's `sortGetKeys`: the sorted key, then the
/// last STORE destination (LIMIT, GET and BY arguments are skipped).
fn sort_keys(args: &[Bytes]) -> Vec<usize> {
    let mut out = vec![1];
    let mut store = None;
    let mut i = 2;
    while i < args.len() {
        if is(&args[i], "limit") {
            i += 2;
        } else if is(&args[i], "store") && i + 1 < args.len() {
            store = Some(i + 1);
        } else if is(&args[i], "get") || is(&args[i], "by") {
            i += 1;
        }
        i += 1;
    }
    out.extend(store);
    out
}

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

/// SORT's parsed options.
#[derive(Clone, Debug)]
struct SortOpts {
    desc: bool,
    alpha: bool,
    /// Some BY pattern had no `*`.
    dontsort: bool,
    limit_start: i64,
    limit_count: i64,
    /// The last BY pattern.
    by: Option<Pattern>,
    gets: Vec<Pattern>,
    store: Option<Bytes>,
}

/// The part of a byte string a C string function sees: up to the first NUL.
fn cstr(b: &[u8]) -> &[u8] {
    &b[..memchr::memchr(0, b).unwrap_or(b.len())]
}

/// A BY or GET pattern, split as Redis's `lookupKeyByPattern` splits it.
#[derive(Clone, Debug)]
enum Pattern {
    /// `#`: the element itself.
    Elem,
    /// No `*`: forms no key, so it never finds a value.
    Fixed,
    /// `prefix*postfix`, or `prefix*postfix->field` for a hash field.
    Key {
        pat: Bytes,
        star: usize,
        post_end: usize,
        field_at: Option<usize>,
    },
}

impl Pattern {
    fn new(pat: &Bytes) -> Pattern {
        if cstr(pat) == b"#" {
            return Pattern::Elem;
        }
        let c = cstr(pat);
        let Some(star) = memchr::memchr(b'*', c) else {
            return Pattern::Fixed;
        };
        // The first "->" after the `*`, when a non-empty field follows.
        let arrow = memchr::memmem::find(&c[star + 1..], b"->")
            .map(|i| star + 1 + i)
            .filter(|&f| f + 2 < c.len());
        Pattern::Key {
            pat: pat.clone(),
            star,
            post_end: arrow.unwrap_or(pat.len()),
            field_at: arrow.map(|f| f + 2),
        }
    }

    /// The key this pattern forms for `elem`.
    fn key_for(pat: &[u8], star: usize, post_end: usize, elem: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(post_end - 1 + elem.len());
        k.extend_from_slice(&pat[..star]);
        k.extend_from_slice(elem);
        k.extend_from_slice(&pat[star + 1..post_end]);
        k
    }
}

/// True when keys formed by `pat` may hash to a shard other than
/// `key_shard`: the text before the `*` must carry a complete, non-empty
/// hash tag owned by that shard. Always false with one shard.
fn pattern_leaves_shard(c: &Client, key_shard: usize, pat: &[u8]) -> bool {
    if c.global.nshards == 1 {
        return false;
    }
    let p = cstr(pat);
    let Some(star) = memchr::memchr(b'*', p) else {
        return false;
    };
    let prefix = &p[..star];
    let tagged = memchr::memchr(b'{', prefix).is_some_and(|open| {
        memchr::memchr(b'}', &prefix[open + 1..]).is_some_and(|close| close > 0)
    });
    // The prefix hashes by its tag, as every key formed from it does.
    !tagged || c.shard_of(prefix) != key_shard
}

/// Parses the options after the key, in order, as Redis does: the first
/// problem found is the reply. `leaves` tells whether a pattern may form keys
/// on another shard.
fn parse(
    args: &[Bytes],
    readonly: bool,
    leaves: impl Fn(&[u8]) -> bool,
) -> Result<SortOpts, Reply> {
    let mut o = SortOpts {
        desc: false,
        alpha: false,
        dontsort: false,
        limit_start: 0,
        limit_count: -1,
        by: None,
        gets: Vec::new(),
        store: None,
    };
    let mut j = 2;
    while j < args.len() {
        let left = args.len() - j - 1;
        let a = &args[j];
        if is(a, "asc") {
            o.desc = false;
        } else if is(a, "desc") {
            o.desc = true;
        } else if is(a, "alpha") {
            o.alpha = true;
        } else if is(a, "limit") && left >= 2 {
            o.limit_start = arg_i64(&args[j + 1])?;
            o.limit_count = arg_i64(&args[j + 2])?;
            j += 2;
        } else if !readonly && is(a, "store") && left >= 1 {
            o.store = Some(args[j + 1].clone());
            j += 1;
        } else if is(a, "by") && left >= 1 {
            let p = &args[j + 1];
            if memchr::memchr(b'*', cstr(p)).is_none() {
                o.dontsort = true;
            } else if leaves(p) {
                return Err(BY_DENIED);
            }
            o.by = Some(Pattern::new(p));
            j += 1;
        } else if is(a, "get") && left >= 1 {
            let p = &args[j + 1];
            if cstr(p) != b"#" && leaves(p) {
                return Err(GET_DENIED);
            }
            o.gets.push(Pattern::new(p));
            j += 1;
        } else {
            return Err(err::SYNTAX);
        }
        j += 1;
    }
    Ok(o)
}

/// The output range `start..=end` for LIMIT over `len` elements, clamped as
/// Redis clamps it; empty when `end < start`.
fn limit_range(limit_start: i64, limit_count: i64, len: i64) -> (i64, i64) {
    let mut start = limit_start.max(0).min(len);
    let count = limit_count.max(-1).min(len);
    let mut end = if count < 0 {
        len - 1
    } else {
        start + count - 1
    };
    if start >= len {
        start = len - 1;
        end = len - 2;
    }
    if end >= len {
        end = len - 1;
    }
    (start, end)
}

/// A sort weight parsed as Redis parses it: C `strtod` (leading spaces,
/// hex floats and `inf` allowed), stopping at a NUL byte, refusing trailing
/// garbage, NaN and out-of-range values. An empty string is 0.
fn parse_score(b: &[u8], buf: &mut Vec<u8>) -> Option<f64> {
    if let Some(n) = parse_i64(b) {
        return Some(n as f64);
    }
    buf.clear();
    buf.extend_from_slice(b);
    buf.push(0);
    let mut end: *mut libc::c_char = std::ptr::null_mut();
    // SAFETY: `buf` is NUL-terminated and outlives the call; strtod only
    // reads up to the terminator and sets `end` inside the buffer.
    let (v, range_err, rest) = unsafe {
        *libc::__errno_location() = 0;
        let v = libc::strtod(buf.as_ptr().cast(), &mut end);
        (v, *libc::__errno_location() == libc::ERANGE, *end)
    };
    (rest == 0 && !range_err && !v.is_nan()).then_some(v)
}

// ---------------------------------------------------------------------------
// The sort itself, on the sorted key's shard
// ---------------------------------------------------------------------------

/// Why the shard part could not produce a result.
enum Fail {
    /// A reply to send (WRONGTYPE, a bad score, CROSSSLOT).
    Reply(Reply),
    /// Keys formed by patterns that another transaction holds: wait for
    /// them (or lock them) and run again.
    Busy(Vec<Bytes>),
}

/// Reads the keys that patterns form, skipping the ones another
/// transaction holds (they are reported as busy).
struct Lookups<'o> {
    /// Keys this command holds itself.
    owned: &'o [Bytes],
    busy: Vec<Bytes>,
    crossslot: bool,
}

impl Lookups<'_> {
    /// The value `pat` finds for `elem`: a string key's value or a hash
    /// field, None when missing or of another type.
    fn get(&mut self, ctx: &mut Ctx<'_>, pat: &Pattern, elem: &[u8]) -> Option<Bytes> {
        let (pat, star, post_end, field_at) = match pat {
            Pattern::Elem => return Some(Bytes::copy_from_slice(elem)),
            Pattern::Fixed => return None,
            Pattern::Key {
                pat,
                star,
                post_end,
                field_at,
            } => (pat, *star, *post_end, *field_at),
        };
        let key = Pattern::key_for(pat, star, post_end, elem);
        let shard = &ctx.shard;
        if shard.global.nshards > 1 && shard.global.slots.shard_of(&key) != shard.id {
            self.crossslot = true;
            return None;
        }
        if !self.owned.iter().any(|o| o[..] == key[..])
            && !shard
                .locks
                .keys_free(ctx.tx, ctx.db, std::iter::once(&key[..]))
        {
            self.busy.push(Bytes::from(key));
            return None;
        }
        let (now, touch) = (ctx.now_ms, ctx.touch);
        let e = ctx.db().lookup(&key, now, touch)?;
        match (&e.value, field_at) {
            (Value::Hash(h), Some(f)) => h.get(&pat[f..]).map(Bytes::copy_from_slice),
            (v, None) => v.as_string().map(|s| s.to_bytes()),
            _ => None,
        }
    }

    /// Turns what the lookups met into the command's failure, if any.
    fn check(self) -> Result<(), Fail> {
        if self.crossslot {
            Err(Fail::Reply(err::CROSSSLOT))
        } else if !self.busy.is_empty() {
            Err(Fail::Busy(self.busy))
        } else {
            Ok(())
        }
    }
}

/// One element being sorted, with its weight.
struct Item {
    elem: Bytes,
    score: f64,
    /// ALPHA with BY: the weight string, None when missing.
    cmp: Option<Bytes>,
}

/// Runs the sort on the shard owning `key` and returns the output values in
/// order (GET results flattened; None is a missing value). `owned` are keys
/// this command holds locked itself.
fn sort_values(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    o: &SortOpts,
    owned: &[Bytes],
) -> Result<Vec<Option<Bytes>>, Fail> {
    let (mut dontsort, mut alpha, mut by) = (o.dontsort, o.alpha, o.by.as_ref());
    let (now, touch) = (ctx.now_ms, ctx.touch);
    let store = o.store.is_some();
    let mut lookups = Lookups {
        owned,
        busy: Vec::new(),
        crossslot: false,
    };

    let mut elems: Vec<Bytes>;
    let (mut start, mut end);
    {
        let entry = ctx.db().lookup(key, now, touch);
        let mut value = match entry {
            None => None,
            Some(e) => match &mut e.value {
                Value::List(_) | Value::Set(_) | Value::ZSet(_) => Some(&mut e.value),
                _ => return Err(Fail::Reply(err::WRONGTYPE)),
            },
        };
        // A set has no order of its own: when storing, sort it anyway so
        // the stored list is deterministic.
        if dontsort && store && matches!(value, Some(Value::Set(_))) {
            dontsort = false;
            alpha = true;
            by = None;
        }
        // Redis converts a sorted set to its skiplist encoding for SORT.
        if let Some(Value::ZSet(z)) = value.as_deref_mut() {
            z.convert_to_big();
        }
        let len = match value.as_deref() {
            Some(Value::List(l)) => l.len(),
            Some(Value::Set(s)) => s.len(),
            Some(Value::ZSet(z)) => z.len(),
            _ => 0,
        };
        (start, end) = limit_range(o.limit_start, o.limit_count, len as i64);
        let range = if end >= start {
            start as usize..end as usize + 1
        } else {
            0..0
        };
        let copy = |b: &[u8]| Bytes::copy_from_slice(b);
        match value.as_deref() {
            // Nothing to sort: lists and sorted sets give the range in their
            // own order, from the tail with DESC.
            Some(Value::List(l)) if dontsort => {
                elems = if o.desc {
                    l.range(len - range.end, len - range.start)
                        .rev()
                        .map(copy)
                        .collect()
                } else {
                    l.range(range.start, range.end).map(copy).collect()
                };
                end -= start;
                start = 0;
            }
            Some(Value::ZSet(z)) if dontsort => {
                let it = if o.desc {
                    z.range(len - range.end, len - range.start, true)
                } else {
                    z.range(range.start, range.end, false)
                };
                elems = it.map(|(m, _)| copy(m)).collect();
                end -= start;
                start = 0;
            }
            Some(Value::List(l)) => elems = l.iter().map(copy).collect(),
            Some(Value::ZSet(z)) => elems = z.iter().map(|(m, _)| copy(m)).collect(),
            Some(Value::Set(s)) => {
                elems = Vec::with_capacity(len);
                s.for_each(|m| elems.push(copy(m)));
            }
            _ => elems = Vec::new(),
        }
    }

    if !dontsort {
        let mut items: Vec<Item> = elems
            .into_iter()
            .map(|elem| Item {
                elem,
                score: 0.0,
                cmp: None,
            })
            .collect();
        let mut bad_score = false;
        let mut buf = Vec::new();
        for it in &mut items {
            let weight = match by {
                Some(p) => match lookups.get(ctx, p, &it.elem) {
                    Some(w) => w,
                    None => continue,
                },
                None => it.elem.clone(),
            };
            if alpha {
                if by.is_some() {
                    it.cmp = Some(weight);
                }
            } else {
                match parse_score(&weight, &mut buf) {
                    Some(s) => it.score = s,
                    None => bad_score = true,
                }
            }
        }
        lookups.check()?;
        if bad_score {
            return Err(Fail::Reply(NOT_DOUBLE));
        }
        lookups = Lookups {
            owned,
            busy: Vec::new(),
            crossslot: false,
        };
        // Redis's comparison; ties keep the loading order, as glibc's
        // (merge sort) qsort keeps them.
        let text = |a: &[u8], b: &[u8]| {
            if store {
                a.cmp(b)
            } else {
                cstr(a).cmp(cstr(b))
            }
        };
        let by_pattern = by.is_some();
        let desc = o.desc;
        items.sort_by(|a, b| {
            let c = if !alpha {
                a.score
                    .partial_cmp(&b.score)
                    .filter(|c| c.is_ne())
                    .unwrap_or_else(|| a.elem.cmp(&b.elem))
            } else if by_pattern {
                match (&a.cmp, &b.cmp) {
                    (Some(x), Some(y)) => text(x, y),
                    (None, None) => Ordering::Equal,
                    (None, Some(_)) => Ordering::Less,
                    (Some(_), None) => Ordering::Greater,
                }
            } else {
                text(&a.elem, &b.elem)
            };
            if desc { c.reverse() } else { c }
        });
        elems = items.into_iter().map(|it| it.elem).collect();
    }

    let picked = if end >= start {
        &elems[start as usize..=end as usize]
    } else {
        &[][..]
    };
    let mut out = Vec::with_capacity(picked.len() * o.gets.len().max(1));
    for e in picked {
        if o.gets.is_empty() {
            out.push(Some(e.clone()));
        }
        for g in &o.gets {
            out.push(lookups.get(ctx, g, e));
        }
    }
    lookups.check()?;
    Ok(out)
}

/// Writes SORT's result under `dest` as a list, or deletes `dest` when the
/// result is empty; replies with the length.
fn store_list(ctx: &mut Ctx<'_>, dest: &[u8], vals: Vec<Option<Bytes>>) -> Reply {
    let now = ctx.now_ms;
    let n = vals.len();
    if n == 0 {
        ctx.db().delete(dest, now);
    } else {
        let fill = super::list::fill(ctx);
        let items: Vec<Bytes> = vals.into_iter().map(Option::unwrap_or_default).collect();
        let mut l = ListValue::new();
        l.push(&items, false, fill);
        ctx.db().set(dest, Value::List(Box::new(l)), 0, now);
    }
    Reply::Int(n as i64)
}

/// The whole command on one shard: sort, then reply or store there.
fn sort_here(ctx: &mut Ctx<'_>, key: &[u8], o: &SortOpts) -> Result<Reply, Fail> {
    let vals = sort_values(ctx, key, o, &[])?;
    Ok(match &o.store {
        Some(dest) => store_list(ctx, dest, vals),
        None => Reply::Array(
            vals.into_iter()
                .map(|v| v.map_or(Reply::Nil, Reply::Bulk))
                .collect(),
        ),
    })
}

/// Runs `f` on this thread's shard with a handler context.
fn with_ctx<R>(c: super::CallOpts, f: impl FnOnce(&mut Ctx<'_>) -> R) -> R {
    with_shard(|s: &mut Shard| c.call(s, f))
}

/// Runs the sort on this thread's shard once no transaction holds the key,
/// the destination or any key a pattern forms.
async fn sort_on_this_shard(opts: super::CallOpts, key: Bytes, o: SortOpts) -> Reply {
    let mut wait: Vec<Vec<u8>> = vec![key.to_vec()];
    wait.extend(o.store.iter().map(|d| d.to_vec()));
    loop {
        let free = with_shard(|s| {
            s.locks
                .keys_free(opts.tx, opts.db, wait.iter().map(|k| &k[..]))
        });
        if !free {
            locks::wait_free(opts.tx, opts.db, Some(wait.clone())).await;
        }
        match with_ctx(opts, |ctx| sort_here(ctx, &key, &o)) {
            Ok(r) | Err(Fail::Reply(r)) => return r,
            Err(Fail::Busy(keys)) => wait.extend(keys.iter().map(|k| k.to_vec())),
        }
    }
}

/// STORE into a destination on another shard, atomically: both keys (and
/// any busy pattern key met on the way) locked for the whole operation.
async fn sort_store_across(c: &Client, ss: usize, key: Bytes, dest: Bytes, o: SortOpts) -> Reply {
    let ds = c.shard_of(&dest);
    let mut extra: Vec<Bytes> = Vec::new();
    loop {
        let mut lock = vec![key.clone(), dest.clone()];
        lock.extend(extra.iter().cloned());
        let tx = c.lock_keys(&lock).await;
        let mut owned = vec![key.clone()];
        owned.extend(extra.iter().cloned());
        let (k, opts) = (key.clone(), o.clone());
        match tx
            .run(ss, move |ctx| sort_values(ctx, &k, &opts, &owned))
            .await
        {
            Ok(vals) => {
                let d = dest.clone();
                let r = tx.run(ds, move |ctx| store_list(ctx, &d, vals)).await;
                drop(tx);
                return r;
            }
            Err(Fail::Reply(r)) => return r,
            Err(Fail::Busy(keys)) => {
                drop(tx);
                extra.extend(keys);
            }
        }
    }
}

async fn sort_generic(c: &mut Client, args: Vec<Bytes>, readonly: bool) -> Reply {
    let key = args[1].clone();
    let ss = c.shard_of(&key);
    let o = match parse(&args, readonly, |p| pattern_leaves_shard(c, ss, p)) {
        Ok(o) => o,
        Err(r) => return r,
    };
    if let Some(dest) = o.store.clone()
        && c.shard_of(&dest) != ss
    {
        return sort_store_across(c, ss, key, dest, o).await;
    }
    let opts = c.opts();
    if ss == c.shard {
        sort_on_this_shard(opts, key, o).await
    } else {
        spawn_on(c.global, ss, move || sort_on_this_shard(opts, key, o)).await
    }
}

fn sort(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(sort_generic(c, args, false))
}

fn sort_ro(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(sort_generic(c, args, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_clamps_like_redis() {
        assert_eq!(limit_range(0, -1, 5), (0, 4));
        assert_eq!(limit_range(1, 2, 5), (1, 2));
        assert_eq!(limit_range(-3, 2, 5), (0, 1));
        assert_eq!(limit_range(4, 10, 5), (4, 4));
        assert_eq!(limit_range(5, 1, 5), (4, 3));
        assert_eq!(limit_range(0, 0, 5), (0, -1));
        assert_eq!(limit_range(0, -1, 0), (-1, -2));
        assert_eq!(limit_range(i64::MAX, i64::MAX, 3), (2, 1));
        assert_eq!(limit_range(i64::MIN, i64::MIN, 3), (0, 2));
    }

    #[test]
    fn scores_parse_like_strtod() {
        let mut b = Vec::new();
        let mut p = |s: &[u8]| parse_score(s, &mut b);
        assert_eq!(p(b"12"), Some(12.0));
        assert_eq!(p(b""), Some(0.0));
        assert_eq!(p(b" 5"), Some(5.0));
        assert_eq!(p(b"5 "), None);
        assert_eq!(p(b"0x10"), Some(16.0));
        assert_eq!(p(b"1e2"), Some(100.0));
        assert_eq!(p(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(p(b"nan"), None);
        assert_eq!(p(b"1e400"), None);
        assert_eq!(p(b"1e-310"), None);
        assert_eq!(p(b"3\0junk"), Some(3.0));
        assert_eq!(p(b"abc"), None);
        assert_eq!(p(b" "), None);
    }

    #[test]
    fn patterns_split_like_redis() {
        let k = |p: &str, e: &str| match Pattern::new(&Bytes::copy_from_slice(p.as_bytes())) {
            Pattern::Key {
                pat,
                star,
                post_end,
                field_at,
            } => Some((
                String::from_utf8(Pattern::key_for(&pat, star, post_end, e.as_bytes())).unwrap(),
                field_at.map(|f| String::from_utf8(pat[f..].to_vec()).unwrap()),
            )),
            _ => None,
        };
        assert_eq!(k("w_*", "a"), Some(("w_a".into(), None)));
        assert_eq!(k("h_*->f", "a"), Some(("h_a".into(), Some("f".into()))));
        assert_eq!(k("h_*->", "a"), Some(("h_a->".into(), None)));
        assert_eq!(
            k("h_*->f->g", "a"),
            Some(("h_a".into(), Some("f->g".into())))
        );
        assert_eq!(k("a->b*c", "x"), Some(("a->bxc".into(), None)));
        assert_eq!(k("*_*", "x"), Some(("x_*".into(), None)));
        assert_eq!(k("nostar", "x"), None);
        assert_eq!(k("#", "x"), None);
    }

    #[test]
    fn store_key_positions() {
        let a = |s: &str| -> Vec<Bytes> {
            s.split(' ')
                .map(|w| Bytes::copy_from_slice(w.as_bytes()))
                .collect()
        };
        assert_eq!(sort_keys(&a("sort k")), vec![1]);
        assert_eq!(sort_keys(&a("sort k store d")), vec![1, 3]);
        assert_eq!(sort_keys(&a("sort k store d store e")), vec![1, 5]);
        assert_eq!(sort_keys(&a("sort k by store get store")), vec![1]);
        assert_eq!(sort_keys(&a("sort k limit 0 1 store d")), vec![1, 6]);
    }
}
