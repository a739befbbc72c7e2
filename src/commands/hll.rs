//! HyperLogLog commands: PFADD, PFCOUNT and PFMERGE, byte-compatible with
//! Redis 7.0.
//!
//! A HyperLogLog is a plain string value in Redis's exact representation, so
//! GET, DUMP-less copies between servers and `SET` of a value read from
//! redis-server all work. The layout:
//!
//! ```text
//! | "HYLL" | encoding (0 dense, 1 sparse) | 3 unused | cached cardinality (8, LE) | registers |
//! ```
//!
//! The cached cardinality's top bit marks it stale. There are 16384 6-bit
//! registers. The dense form packs them LSB first into 12288 bytes; the
//! sparse form run-length encodes them with three opcodes:
//!
//! - ZERO `00xxxxxx`: 1..64 zero registers;
//! - XZERO `01xxxxxx yyyyyyyy`: 1..16384 zero registers;
//! - VAL `1vvvvvxx`: 1..4 registers of value 1..32.
//!
//! A new HyperLogLog is sparse; it turns dense when a register needs a value
//! above 32 or the sparse string would grow past `hll-sparse-max-bytes`
//! (3000 when the option is absent). Updates follow Redis's algorithm step by
//! step (opcode split, then a merge of adjacent equal VAL opcodes), so the
//! bytes always match redis-server's. Elements are hashed with MurmurHash64A
//! (seed `0xadc83b19`) and the cardinality is the improved estimator of
//! Ertl ("New cardinality estimation algorithms for HyperLogLog sketches").
//!
//! PFCOUNT of several keys and PFMERGE may name keys on several shards: each
//! shard folds its keys into a register array under key locks and the
//! coordinator combines them, so the result is one atomic snapshot.

use super::bitmap::{one_shard, str_bytes_mut, take_bytes};
use super::{CommandSpec, Ctx, Handler, err, flags::*, keys};
use crate::reply::{OK, Reply};
use crate::shard::value::{Entry, SmallBytes, Value};
use crate::transaction::Client;
use bytes::Bytes;
use futures::future::LocalBoxFuture;

/// The HyperLogLog family's commands.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec::new(
        "pfadd",
        -2,
        WRITE | DENYOOM | FAST,
        keys(1, 1, 1),
        "hyperloglog",
        "2.8.9",
        "Adds the specified elements to the specified HyperLogLog.",
        Handler::Keyed(pfadd),
    )
    .acl(&["write", "hyperloglog", "fast"]),
    CommandSpec::new(
        "pfcount",
        -2,
        READONLY,
        keys(1, -1, 1),
        "hyperloglog",
        "2.8.9",
        "Return the approximated cardinality of the set(s) observed by the HyperLogLog at key(s).",
        Handler::Async(pfcount),
    )
    .acl(&["read", "hyperloglog", "slow"]),
    CommandSpec::new(
        "pfmerge",
        -2,
        WRITE | DENYOOM,
        keys(1, -1, 1),
        "hyperloglog",
        "2.8.9",
        "Merge N different HyperLogLogs into a single one.",
        Handler::Async(pfmerge),
    )
    .acl(&["write", "hyperloglog", "slow"]),
];

/// Error replies specific to this family, with Redis's texts.
mod errs {
    use crate::reply::Reply;

    pub const NOT_HLL: Reply =
        Reply::StaticError("WRONGTYPE Key is not a valid HyperLogLog string value.");
    pub const CORRUPT: Reply = Reply::StaticError("INVALIDOBJ Corrupted HLL object detected");
}

// ---------------------------------------------------------------------------
// Representation
// ---------------------------------------------------------------------------

/// Header size: magic, encoding, 3 unused bytes, cached cardinality.
const HDR: usize = 16;
/// log2 of the register count.
const P: u32 = 14;
/// Hash bits left for the run of zeros.
const Q: u32 = 64 - P;
/// Number of registers.
pub const REGISTERS: usize = 1 << P;
/// Bits per dense register.
const BITS: usize = 6;
/// Largest register value.
const REGISTER_MAX: u8 = (1 << BITS) - 1;
/// Size of a dense HyperLogLog string.
pub const DENSE_SIZE: usize = HDR + (REGISTERS * BITS).div_ceil(8);
/// Encoding byte of the dense form.
const DENSE: u8 = 0;
/// Encoding byte of the sparse form.
const SPARSE: u8 = 1;
/// Largest value a sparse VAL opcode holds.
const SPARSE_VAL_MAX_VALUE: u8 = 32;
/// Longest run of a VAL opcode.
const SPARSE_VAL_MAX_LEN: usize = 4;
/// Longest run of a ZERO opcode.
const SPARSE_ZERO_MAX_LEN: usize = 64;
/// Longest run of an XZERO opcode.
const SPARSE_XZERO_MAX_LEN: usize = 16384;
/// 0.5 / ln(2).
const ALPHA_INF: f64 = 0.721_347_520_444_481_7;
/// The `hll-sparse-max-bytes` default.
const DEFAULT_SPARSE_MAX_BYTES: usize = 3000;

/// The 64-bit MurmurHash2 (MurmurHash64A), reading words little-endian as
/// Redis's endian-neutral variant does.
pub fn murmur64a(key: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (key.len() as u64).wrapping_mul(M);
    let mut chunks = key.chunks_exact(8);
    for c in chunks.by_ref() {
        let mut k = u64::from_le_bytes(c.try_into().unwrap());
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate() {
            h ^= (b as u64) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The register an element maps to and the length of its `000..1` pattern
/// (1..=Q+1), as Redis's `hllPatLen`.
fn pat_len(ele: &[u8]) -> (usize, u8) {
    let hash = murmur64a(ele, 0xadc8_3b19);
    let index = (hash & (REGISTERS as u64 - 1)) as usize;
    // The sentinel bit makes the count at most Q+1.
    let rest = (hash >> P) | (1u64 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

/// Dense register `i` of the register bytes `r`.
#[inline]
fn dense_get(r: &[u8], i: usize) -> u8 {
    let byte = i * BITS / 8;
    let fb = (i * BITS) & 7;
    let b0 = r[byte] as u16;
    let b1 = r.get(byte + 1).copied().unwrap_or(0) as u16;
    (((b0 >> fb) | (b1 << (8 - fb))) & REGISTER_MAX as u16) as u8
}

/// Sets dense register `i` of the register bytes `r` to `v`.
#[inline]
fn dense_set(r: &mut [u8], i: usize, v: u8) {
    let byte = i * BITS / 8;
    let fb = (i * BITS) & 7;
    let v = v as u16;
    r[byte] &= !((REGISTER_MAX as u16) << fb) as u8;
    r[byte] |= (v << fb) as u8;
    if let Some(b1) = r.get_mut(byte + 1) {
        *b1 &= !((REGISTER_MAX as u16) >> (8 - fb)) as u8;
        *b1 |= (v >> (8 - fb)) as u8;
    }
}

/// Raises dense register `i` to `count`; true if it changed.
fn dense_raise(r: &mut [u8], i: usize, count: u8) -> bool {
    if count > dense_get(r, i) {
        dense_set(r, i, count);
        true
    } else {
        false
    }
}

/// One decoded sparse opcode.
#[derive(Clone, Copy)]
enum Op {
    /// A run of zero registers; `wide` for the two-byte XZERO form.
    Zero { len: usize, wide: bool },
    /// A run of registers holding `value`.
    Val { value: u8, len: usize },
}

impl Op {
    /// Decodes the opcode at `p` (a truncated XZERO reads a zero second
    /// byte, like the NUL terminator Redis's code reads).
    #[inline]
    fn at(s: &[u8], p: usize) -> Op {
        let b = s[p];
        if b & 0xc0 == 0 {
            Op::Zero {
                len: (b & 0x3f) as usize + 1,
                wide: false,
            }
        } else if b & 0x80 != 0 {
            Op::Val {
                value: ((b >> 2) & 0x1f) + 1,
                len: (b & 0x3) as usize + 1,
            }
        } else {
            let lo = s.get(p + 1).copied().unwrap_or(0) as usize;
            Op::Zero {
                len: (((b & 0x3f) as usize) << 8 | lo) + 1,
                wide: true,
            }
        }
    }

    /// Registers covered.
    #[inline]
    fn span(self) -> usize {
        match self {
            Op::Zero { len, .. } | Op::Val { len, .. } => len,
        }
    }

    /// Bytes taken.
    #[inline]
    fn size(self) -> usize {
        match self {
            Op::Zero { wide: true, .. } => 2,
            _ => 1,
        }
    }
}

/// A VAL opcode byte.
#[inline]
fn val_op(value: u8, len: usize) -> u8 {
    ((value - 1) << 2 | (len as u8 - 1)) | 0x80
}

/// Appends the opcode for a run of `len` zero registers: ZERO up to 64,
/// XZERO beyond.
fn push_zeros(seq: &mut Vec<u8>, len: usize) {
    if len > SPARSE_ZERO_MAX_LEN {
        let l = len - 1;
        seq.push((l >> 8) as u8 | 0x40);
        seq.push((l & 0xff) as u8);
    } else {
        seq.push((len - 1) as u8);
    }
}

/// A new, empty HyperLogLog: sparse, all registers zero, cached
/// cardinality 0 (valid).
pub fn new_hll() -> Vec<u8> {
    let mut s = Vec::with_capacity(HDR + 8);
    s.extend_from_slice(b"HYLL");
    s.push(SPARSE);
    s.extend_from_slice(&[0; 11]);
    let mut left = REGISTERS;
    while left > 0 {
        let n = left.min(SPARSE_XZERO_MAX_LEN);
        push_zeros(&mut s, n);
        left -= n;
    }
    s
}

/// Redis's `isHLLObjectOrReply` checks on a raw string: the header magic, a
/// known encoding, and the exact size of a dense value.
pub fn is_valid(s: &[u8]) -> bool {
    s.len() >= HDR
        && &s[..4] == b"HYLL"
        && s[4] <= SPARSE
        && (s[4] != DENSE || s.len() == DENSE_SIZE)
}

/// Marks the cached cardinality stale (top bit of its last byte).
fn invalidate_cache(s: &mut [u8]) {
    s[15] |= 0x80;
}

/// Walks the sparse registers of `s`, calling `f(index, value, len)` for
/// every VAL run, as Redis's decoders do: a VAL run that would end past the
/// last register stops the walk. Returns the number of registers covered,
/// which is exactly [`REGISTERS`] for a valid value.
fn sparse_walk(s: &[u8], mut f: impl FnMut(usize, u8, usize)) -> usize {
    let mut idx = 0usize;
    let mut p = HDR;
    while p < s.len() {
        let op = Op::at(s, p);
        match op {
            Op::Zero { len, .. } => idx += len,
            Op::Val { value, len } => {
                if idx + len > REGISTERS {
                    break;
                }
                f(idx, value, len);
                idx += len;
            }
        }
        p += op.size();
    }
    idx
}

/// Redis's `hllSparseToDense`: the dense form of a sparse value (keeping its
/// header and cached cardinality); None when the sparse data is corrupt.
fn sparse_to_dense(s: &[u8]) -> Option<Vec<u8>> {
    let mut d = vec![0u8; DENSE_SIZE];
    d[..HDR].copy_from_slice(&s[..HDR]);
    d[4] = DENSE;
    let regs = &mut d[HDR..];
    let covered = sparse_walk(s, |idx, value, len| {
        for i in idx..idx + len {
            dense_set(regs, i, value);
        }
    });
    (covered == REGISTERS).then_some(d)
}

/// Outcome of a register update.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Update {
    /// The register already held a value at least as large.
    Unchanged,
    /// The register was raised.
    Changed,
    /// The sparse representation is corrupt.
    Corrupt,
}

/// Turns a sparse value dense and raises register `index` to `count`.
fn promote(s: &mut Vec<u8>, index: usize, count: u8) -> Update {
    let Some(mut d) = sparse_to_dense(s) else {
        return Update::Corrupt;
    };
    // A promotion only happens for a register that needs raising.
    dense_raise(&mut d[HDR..], index, count);
    *s = d;
    Update::Changed
}

/// Redis's `hllSparseSet`: raises register `index` to `count` in a sparse
/// value, splitting the opcode that covers it and merging equal neighbours,
/// or promoting to dense when the value no longer fits the sparse form or
/// the string would exceed `max_bytes`.
fn sparse_set(s: &mut Vec<u8>, index: usize, count: u8, max_bytes: usize) -> Update {
    if count > SPARSE_VAL_MAX_VALUE {
        return promote(s, index, count);
    }
    // Step 1: find the opcode covering the register.
    let end = s.len();
    let mut p = HDR;
    let mut first = 0usize;
    let mut prev: Option<usize> = None;
    let mut span = 0usize;
    while p < end {
        let op = Op::at(s, p);
        span = op.span();
        if index < first + span {
            break;
        }
        prev = Some(p);
        p += op.size();
        first += span;
    }
    if span == 0 || p >= end {
        return Update::Corrupt;
    }
    let op = Op::at(s, p);
    let runlen = op.span();

    // Step 2: the trivial in-place updates, else build the replacement.
    let in_place = match op {
        Op::Val { value, len } => {
            if value >= count {
                return Update::Unchanged;
            }
            len == 1
        }
        Op::Zero { wide, .. } => !wide && runlen == 1,
    };
    if in_place {
        s[p] = val_op(count, 1);
    } else {
        let last = first + span - 1;
        let mut seq = Vec::with_capacity(5);
        match op {
            Op::Zero { .. } => {
                if index != first {
                    push_zeros(&mut seq, index - first);
                }
                seq.push(val_op(count, 1));
                if index != last {
                    push_zeros(&mut seq, last - index);
                }
            }
            Op::Val { value, .. } => {
                if index != first {
                    seq.push(val_op(value, index - first));
                }
                seq.push(val_op(count, 1));
                if index != last {
                    seq.push(val_op(value, last - index));
                }
            }
        }
        let oldlen = op.size();
        let new_len = end + seq.len() - oldlen;
        if seq.len() > oldlen && new_len > max_bytes {
            return promote(s, index, count);
        }
        s.splice(p..(p + oldlen).min(end), seq);
        s.truncate(new_len);
    }

    // Step 3: merge adjacent VAL opcodes of equal value, scanning up to five
    // opcodes from the one before the change.
    let mut p = prev.unwrap_or(HDR);
    let mut scan = 5;
    while p < s.len() && scan > 0 {
        scan -= 1;
        match Op::at(s, p) {
            Op::Zero { wide, .. } => {
                p += if wide { 2 } else { 1 };
                continue;
            }
            Op::Val { value, len } => {
                if p + 1 < s.len()
                    && let Op::Val {
                        value: v2,
                        len: len2,
                    } = Op::at(s, p + 1)
                    && v2 == value
                    && len + len2 <= SPARSE_VAL_MAX_LEN
                {
                    s[p + 1] = val_op(value, len + len2);
                    s.remove(p);
                    continue;
                }
            }
        }
        p += 1;
    }
    invalidate_cache(s);
    Update::Changed
}

/// Redis's `hllAdd`: adds one element to a HyperLogLog in either encoding.
fn add(s: &mut Vec<u8>, ele: &[u8], max_bytes: usize) -> Update {
    let (index, count) = pat_len(ele);
    match s[4] {
        DENSE => {
            if dense_raise(&mut s[HDR..], index, count) {
                Update::Changed
            } else {
                Update::Unchanged
            }
        }
        SPARSE => sparse_set(s, index, count, max_bytes),
        _ => Update::Corrupt,
    }
}

/// Redis's `hllMerge`: folds a valid HyperLogLog into `max` (one byte per
/// register, keeping the maximum). False when the sparse data is corrupt.
fn merge_into(max: &mut [u8], s: &[u8]) -> bool {
    if s[4] == DENSE {
        let regs = &s[HDR..];
        for (i, m) in max.iter_mut().enumerate() {
            *m = (*m).max(dense_get(regs, i));
        }
        true
    } else {
        sparse_walk(s, |idx, value, len| {
            for m in &mut max[idx..idx + len] {
                *m = (*m).max(value);
            }
        }) == REGISTERS
    }
}

/// Redis's `hllSigma` (Ertl).
fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let prev = z;
        z += x * y;
        y += y;
        if prev == z {
            return z;
        }
    }
}

/// Redis's `hllTau` (Ertl).
fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let prev = z;
        y *= 0.5;
        let d = 1.0 - x;
        z -= d * d * y;
        if prev == z {
            return z / 3.0;
        }
    }
}

/// Redis's `hllCount` estimator over a register histogram.
fn estimate(histo: &[u32; 64]) -> u64 {
    let m = REGISTERS as f64;
    let mut z = m * tau((m - histo[Q as usize + 1] as f64) / m);
    for j in (1..=Q as usize).rev() {
        z += histo[j] as f64;
        z *= 0.5;
    }
    z += m * sigma(histo[0] as f64 / m);
    (ALPHA_INF * m * m / z).round() as u64
}

/// The cardinality of one valid HyperLogLog; None when sparse data is
/// corrupt.
fn count(s: &[u8]) -> Option<u64> {
    let mut histo = [0u32; 64];
    if s[4] == DENSE {
        let regs = &s[HDR..];
        for i in 0..REGISTERS {
            histo[dense_get(regs, i) as usize] += 1;
        }
    } else {
        // Unlike a merge, the histogram walk takes every opcode as is.
        let mut idx = 0usize;
        let mut p = HDR;
        while p < s.len() {
            let op = Op::at(s, p);
            match op {
                Op::Zero { len, .. } => histo[0] += len as u32,
                Op::Val { value, len } => histo[value as usize] += len as u32,
            }
            idx += op.span();
            p += op.size();
        }
        if idx != REGISTERS {
            return None;
        }
    }
    Some(estimate(&histo))
}

/// The cardinality of a union held as one byte per register.
fn count_raw(regs: &[u8]) -> u64 {
    let mut histo = [0u32; 64];
    for &r in regs {
        histo[r as usize] += 1;
    }
    estimate(&histo)
}

// ---------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------

/// The configured `hll-sparse-max-bytes`, 3000 by default.
fn sparse_max_bytes(ctx: &mut Ctx<'_>) -> usize {
    ctx.shard.refresh_config();
    ctx.shard
        .config
        .get("hll-sparse-max-bytes")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SPARSE_MAX_BYTES)
}

/// Checks that an entry holds a HyperLogLog: WRONGTYPE (the generic text)
/// for other types, WRONGTYPE (the HyperLogLog text) for other strings.
/// Integer-encoded strings never qualify, as in Redis.
fn check_hll(e: &Entry) -> Result<(), Reply> {
    match &e.value {
        Value::Str(s) if is_valid(s) => Ok(()),
        Value::Str(_) | Value::Int(_) => Err(errs::NOT_HLL),
        _ => Err(err::WRONGTYPE),
    }
}

/// PFADD key [element ...]
fn pfadd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let max_bytes = sparse_max_bytes(ctx);
    let now = ctx.now_ms;
    let db = ctx.db();
    let key = &args[1][..];
    let (mut s, created) = match db.lookup_write(key, now) {
        None => (new_hll(), true),
        Some(e) => {
            if let Err(r) = check_hll(e) {
                return r;
            }
            (take_bytes(e), false)
        }
    };
    let mut updated = created;
    let mut reply = None;
    for ele in &args[2..] {
        match add(&mut s, ele, max_bytes) {
            Update::Changed => updated = true,
            Update::Unchanged => {}
            Update::Corrupt => {
                reply = Some(errs::CORRUPT);
                break;
            }
        }
    }
    if reply.is_none() && updated {
        invalidate_cache(&mut s);
    }
    let value = Value::Str(SmallBytes::from_vec(s));
    if created {
        db.set(key, value, 0, now);
    } else {
        db.replace_value(key, value);
    }
    reply.unwrap_or(Reply::Int(updated as i64))
}

/// PFCOUNT of one key: the cached cardinality when valid, else computed and
/// cached in the header (so it modifies the value, as in Redis).
fn pfcount_one(ctx: &mut Ctx<'_>, key: &[u8]) -> Reply {
    let (now, touch) = (ctx.now_ms, ctx.touch);
    let Some(e) = ctx.db().lookup(key, now, touch) else {
        return Reply::Int(0);
    };
    if let Err(r) = check_hll(e) {
        return r;
    }
    let s = str_bytes_mut(&mut e.value).expect("checked string");
    if s[15] & 0x80 == 0 {
        let card = u64::from_le_bytes(s[8..16].try_into().unwrap());
        return Reply::Int(card as i64);
    }
    match count(s) {
        Some(card) => {
            s[8..16].copy_from_slice(&card.to_le_bytes());
            Reply::Int(card as i64)
        }
        None => errs::CORRUPT,
    }
}

/// Folds the HyperLogLogs at `keys` (argument index, key) into `max`, in
/// order, with read lookups; missing keys count as empty. Returns whether
/// any of them is dense, or the first failing key's index and error.
fn merge_keys(
    ctx: &mut Ctx<'_>,
    keys: &[(usize, Bytes)],
    max: &mut [u8],
) -> Result<bool, (usize, Reply)> {
    let (now, touch) = (ctx.now_ms, ctx.touch);
    let mut dense = false;
    for (i, k) in keys {
        let Some(e) = ctx.db().lookup(k, now, touch) else {
            continue;
        };
        check_hll(e).map_err(|r| (*i, r))?;
        let Some(s) = e.value.as_string() else {
            unreachable!("checked string");
        };
        let ok = s.with_bytes(|b| {
            dense |= b[4] == DENSE;
            merge_into(max, b)
        });
        if !ok {
            return Err((*i, errs::CORRUPT));
        }
    }
    Ok(dense)
}

/// PFMERGE's write: raises the destination's registers to `max` (creating
/// it when missing; dense when any input was), then marks its cached
/// cardinality stale.
fn merge_store(ctx: &mut Ctx<'_>, dest: &[u8], max: &[u8], use_dense: bool) -> Reply {
    let max_bytes = sparse_max_bytes(ctx);
    let now = ctx.now_ms;
    let db = ctx.db();
    let (mut s, created) = match db.lookup_write(dest, now) {
        None => (new_hll(), true),
        Some(e) => (take_bytes(e), false),
    };
    let mut corrupt = false;
    if use_dense && s[4] == SPARSE {
        match sparse_to_dense(&s) {
            Some(d) => s = d,
            None => corrupt = true,
        }
    }
    if !corrupt {
        for (j, &m) in max.iter().enumerate() {
            if m == 0 {
                continue;
            }
            if s[4] == DENSE {
                dense_raise(&mut s[HDR..], j, m);
            } else {
                sparse_set(&mut s, j, m, max_bytes);
            }
        }
        invalidate_cache(&mut s);
    }
    let value = Value::Str(SmallBytes::from_vec(s));
    if created {
        db.set(dest, value, 0, now);
    } else {
        db.replace_value(dest, value);
    }
    if corrupt { errs::CORRUPT } else { OK }
}

/// Argument indices and keys of a multi-key command's keys.
fn indexed(keys: &[Bytes]) -> Vec<(usize, Bytes)> {
    keys.iter().cloned().enumerate().collect()
}

fn pfcount_keyed(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    if args.len() == 2 {
        return pfcount_one(ctx, &args[1]);
    }
    let mut max = vec![0u8; REGISTERS];
    match merge_keys(ctx, &indexed(&args[1..]), &mut max) {
        Ok(_) => Reply::Int(count_raw(&max) as i64),
        Err((_, r)) => r,
    }
}

fn pfmerge_keyed(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let mut max = vec![0u8; REGISTERS];
    match merge_keys(ctx, &indexed(&args[1..]), &mut max) {
        Ok(dense) => merge_store(ctx, &args[1], &max, dense),
        Err((_, r)) => r,
    }
}

/// Folds every key into one register array inside a transaction, shard by
/// shard: the union's registers and whether any input was dense, or the
/// error of the first failing key in argument order.
async fn merge_across(
    c: &Client,
    tx: &crate::transaction::Tx,
    keys: &[Bytes],
) -> Result<(Vec<u8>, bool), Reply> {
    let parts = c.group_by_shard(keys).into_iter().map(|(shard, idx)| {
        let ks: Vec<(usize, Bytes)> = idx.into_iter().map(|i| (i, keys[i].clone())).collect();
        tx.run(shard, move |ctx| {
            let mut max = vec![0u8; REGISTERS];
            merge_keys(ctx, &ks, &mut max).map(|dense| (max, dense))
        })
    });
    let mut max = vec![0u8; REGISTERS];
    let mut dense = false;
    let mut first_err: Option<(usize, Reply)> = None;
    for part in futures::future::join_all(parts).await {
        match part {
            Ok((m, d)) => {
                dense |= d;
                for (a, b) in max.iter_mut().zip(m) {
                    *a = (*a).max(b);
                }
            }
            Err((i, r)) => {
                if first_err.as_ref().is_none_or(|(j, _)| i < *j) {
                    first_err = Some((i, r));
                }
            }
        }
    }
    match first_err {
        Some((_, r)) => Err(r),
        None => Ok((max, dense)),
    }
}

/// PFCOUNT key [key ...]
fn pfcount(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let keys: Vec<Bytes> = args[1..].to_vec();
        if let Some(r) = one_shard(c, &keys, pfcount_keyed, &args).await {
            return r;
        }
        let tx = c.lock_keys(&keys).await;
        let merged = merge_across(c, &tx, &keys).await;
        drop(tx);
        match merged {
            Ok((max, _)) => Reply::Int(count_raw(&max) as i64),
            Err(r) => r,
        }
    })
}

/// PFMERGE destkey [sourcekey ...]
fn pfmerge(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let keys: Vec<Bytes> = args[1..].to_vec();
        if let Some(r) = one_shard(c, &keys, pfmerge_keyed, &args).await {
            return r;
        }
        let tx = c.lock_keys(&keys).await;
        let reply = match merge_across(c, &tx, &keys).await {
            Ok((max, dense)) => {
                let dest = args[1].clone();
                tx.run(c.shard_of(&dest), move |ctx| {
                    merge_store(ctx, &dest, &max, dense)
                })
                .await
            }
            Err(r) => r,
        };
        drop(tx);
        reply
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_registers_roundtrip() {
        let mut r = vec![0u8; DENSE_SIZE - HDR];
        for i in 0..REGISTERS {
            dense_set(&mut r, i, (i * 7 % 64) as u8);
        }
        for i in 0..REGISTERS {
            assert_eq!(dense_get(&r, i), (i * 7 % 64) as u8);
        }
    }

    #[test]
    fn empty_hll_layout() {
        let s = new_hll();
        assert_eq!(s, b"HYLL\x01\0\0\0\0\0\0\0\0\0\0\0\x7f\xff");
        assert!(is_valid(&s));
        assert_eq!(count(&s), Some(0));
    }

    #[test]
    fn sparse_and_dense_agree() {
        let mut sparse = new_hll();
        let mut dense = sparse_to_dense(&sparse).unwrap();
        for i in 0..2000u32 {
            let e = i.to_string();
            add(&mut sparse, e.as_bytes(), usize::MAX);
            add(&mut dense, e.as_bytes(), usize::MAX);
        }
        assert_eq!(sparse[4], SPARSE);
        let mut m1 = vec![0u8; REGISTERS];
        let mut m2 = vec![0u8; REGISTERS];
        assert!(merge_into(&mut m1, &sparse));
        assert!(merge_into(&mut m2, &dense));
        assert_eq!(m1, m2);
        assert_eq!(count(&sparse), count(&dense));
        let n = count(&dense).unwrap();
        assert!((1900..2100).contains(&n), "estimate {n}");
    }
}
