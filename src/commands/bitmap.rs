//! Bitmap commands: SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP, BITFIELD and
//! BITFIELD_RO, with Redis 7.0's semantics, replies and error texts.
//!
//! Bitmaps are plain string values: bit 0 is the most significant bit of the
//! first byte. Reads see an integer-encoded string through its decimal form;
//! every write stores a raw string (Redis never int-encodes the result of a
//! bit operation).
//!
//! BITOP names keys that may live on several shards: when they all share one
//! shard it runs there in one hop, otherwise it locks every key (see
//! [`Client::lock_keys`]), reads the sources shard by shard and writes the
//! destination, so no client can observe half of it.

use super::{CommandSpec, Ctx, Handler, KeyedFn, arg_i64, err, flags::*, keys};
use crate::parse::parse_i64;
use crate::reply::Reply;
use crate::shard::db::Db;
use crate::shard::value::{Entry, SmallBytes, Value};
use crate::transaction::Client;
use bytes::Bytes;
use futures::future::LocalBoxFuture;

const R_FAST: &[&str] = &["read", "bitmap", "fast"];
const R_SLOW: &[&str] = &["read", "bitmap", "slow"];
const W_SLOW: &[&str] = &["write", "bitmap", "slow"];

/// The bitmap family's commands.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec::new(
        "setbit",
        4,
        WRITE | DENYOOM,
        keys(1, 1, 1),
        "bitmap",
        "2.2.0",
        "Sets or clears the bit at offset in the string value stored at key",
        Handler::Keyed(setbit),
    )
    .acl(W_SLOW),
    CommandSpec::new(
        "getbit",
        3,
        READONLY | FAST,
        keys(1, 1, 1),
        "bitmap",
        "2.2.0",
        "Returns the bit value at offset in the string value stored at key",
        Handler::Keyed(getbit),
    )
    .acl(R_FAST),
    CommandSpec::new(
        "bitcount",
        -2,
        READONLY,
        keys(1, 1, 1),
        "bitmap",
        "2.6.0",
        "Count set bits in a string",
        Handler::Keyed(bitcount),
    )
    .acl(R_SLOW),
    CommandSpec::new(
        "bitpos",
        -3,
        READONLY,
        keys(1, 1, 1),
        "bitmap",
        "2.8.7",
        "Find first bit set or clear in a string",
        Handler::Keyed(bitpos),
    )
    .acl(R_SLOW),
    CommandSpec::new(
        "bitop",
        -4,
        WRITE | DENYOOM,
        keys(2, -1, 1),
        "bitmap",
        "2.6.0",
        "Perform bitwise operations between strings",
        Handler::Async(bitop),
    )
    .acl(W_SLOW),
    CommandSpec::new(
        "bitfield",
        -2,
        WRITE | DENYOOM,
        keys(1, 1, 1),
        "bitmap",
        "3.2.0",
        "Perform arbitrary bitfield integer operations on strings",
        Handler::Keyed(bitfield),
    )
    .acl(W_SLOW),
    CommandSpec::new(
        "bitfield_ro",
        -2,
        READONLY | FAST,
        keys(1, 1, 1),
        "bitmap",
        "6.0.0",
        "Perform arbitrary bitfield integer operations on strings. Read-only variant of BITFIELD",
        Handler::Keyed(bitfield_ro),
    )
    .acl(R_FAST),
];

/// Error replies specific to this family, with Redis's texts.
mod errs {
    use crate::reply::Reply;

    pub const BIT_OFFSET: Reply =
        Reply::StaticError("ERR bit offset is not an integer or out of range");
    pub const BIT_VALUE: Reply = Reply::StaticError("ERR bit is not an integer or out of range");
    pub const BITPOS_BIT: Reply = Reply::StaticError("ERR The bit argument must be 1 or 0.");
    pub const BITOP_NOT: Reply =
        Reply::StaticError("ERR BITOP NOT must be called with a single source key.");
    pub const BITFIELD_TYPE: Reply = Reply::StaticError(
        "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.",
    );
    pub const BITFIELD_OVERFLOW: Reply = Reply::StaticError("ERR Invalid OVERFLOW type specified");
    pub const BITFIELD_RO: Reply =
        Reply::StaticError("ERR BITFIELD_RO only supports the GET subcommand");
}

// ---------------------------------------------------------------------------
// Helpers shared with the HyperLogLog family
// ---------------------------------------------------------------------------

/// The bytes a C string function sees: up to the first NUL. Redis compares
/// keywords with `strcasecmp`, so `"and\0x"` reads as `AND`.
pub(super) fn cstr(arg: &[u8]) -> &[u8] {
    match memchr::memchr(0, arg) {
        Some(i) => &arg[..i],
        None => arg,
    }
}

/// Case-insensitive keyword match with C string semantics.
pub(super) fn kw(arg: &[u8], word: &str) -> bool {
    cstr(arg).eq_ignore_ascii_case(word.as_bytes())
}

/// The bytes of a string value, mutable in place (None for integers and
/// other types).
pub(super) fn str_bytes_mut(v: &mut Value) -> Option<&mut [u8]> {
    match v {
        Value::Str(SmallBytes::Inline { len, buf }) => Some(&mut buf[..*len as usize]),
        Value::Str(SmallBytes::Heap(b)) => Some(&mut b[..]),
        _ => None,
    }
}

/// Takes a string value out of its entry as an owned buffer (reusing a heap
/// allocation); the caller stores a new value back.
pub(super) fn take_bytes(e: &mut Entry) -> Vec<u8> {
    match std::mem::replace(&mut e.value, Value::Int(0)) {
        Value::Str(SmallBytes::Heap(b)) => b.into_vec(),
        Value::Str(s) => s.to_vec(),
        Value::Int(n) => itoa::Buffer::new().format(n).as_bytes().to_vec(),
        other => {
            // Callers check the type first; keep a non-string value intact.
            debug_assert!(false, "take_bytes on a {}", other.type_name());
            e.value = other;
            Vec::new()
        }
    }
}

/// Runs a keyed handler in one hop when every key lives on one shard;
/// None when they span shards.
pub(super) async fn one_shard(
    c: &Client,
    keys: &[Bytes],
    f: KeyedFn,
    args: &[Bytes],
) -> Option<Reply> {
    let shard = c.shard_of(&keys[0]);
    if keys[1..].iter().any(|k| c.shard_of(k) != shard) {
        return None;
    }
    let ks = keys.iter().map(|k| k.to_vec()).collect();
    Some(c.run_keyed(shard, ks, f, args.to_vec()).await)
}

/// A read lookup (counts hits and misses, honours CLIENT NO-TOUCH).
fn read<'a>(ctx: &'a mut Ctx<'_>, key: &[u8]) -> Option<&'a mut Entry> {
    let (now, touch) = (ctx.now_ms, ctx.touch);
    ctx.db().lookup(key, now, touch)
}

/// The configured proto-max-bulk-len of this shard.
fn max_bulk_len(ctx: &mut Ctx<'_>) -> i64 {
    ctx.shard.refresh_config();
    ctx.shard.config.proto_max_bulk_len()
}

/// Redis's `getBitOffsetFromArgument`: a bit offset, optionally in the
/// `#n` form (n times `bits`, BITFIELD only), below proto-max-bulk-len bytes.
fn bit_offset(arg: &[u8], hash_bits: Option<u32>, max: i64) -> Result<u64, Reply> {
    let (digits, mul) = match (arg.first(), hash_bits) {
        (Some(b'#'), Some(bits)) => (&arg[1..], Some(bits)),
        _ => (arg, None),
    };
    let mut off = parse_i64(digits).ok_or(errs::BIT_OFFSET)?;
    if let Some(bits) = mul {
        // C multiplies with signed overflow; wrap the same way.
        off = off.wrapping_mul(bits as i64);
    }
    if off < 0 || (off >> 3) >= max {
        return Err(errs::BIT_OFFSET);
    }
    Ok(off as u64)
}

/// Redis's `lookupStringForBitCommand` followed by the operation: runs `f`
/// on the string at `key`, created or zero-padded so that bit `maxbit`
/// exists. `f` also learns whether the string was created or grown.
/// Integer-encoded strings become raw strings, as Redis unshares them.
fn with_bits_mut<R>(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    maxbit: u64,
    f: impl FnOnce(&mut [u8], bool) -> R,
) -> Result<R, Reply> {
    let need = (maxbit >> 3) as usize + 1;
    let now = ctx.now_ms;
    let db = ctx.db();
    let Some(e) = db.lookup_write(key, now) else {
        let mut buf = vec![0u8; need];
        let r = f(&mut buf, true);
        db.set(key, Value::Str(SmallBytes::from_vec(buf)), 0, now);
        return Ok(r);
    };
    match &e.value {
        Value::Str(s) if s.len() >= need => {
            let bytes = str_bytes_mut(&mut e.value).expect("string value");
            Ok(f(bytes, false))
        }
        Value::Str(_) | Value::Int(_) => {
            let mut buf = take_bytes(e);
            let grown = buf.len() < need;
            if grown {
                buf.reserve_exact(need - buf.len());
                buf.resize(need, 0);
            }
            let r = f(&mut buf, grown);
            e.value = Value::Str(SmallBytes::from_vec(buf));
            Ok(r)
        }
        _ => Err(err::WRONGTYPE),
    }
}

/// Calls `f` with the bytes of the string at `key` (a read access): None
/// when the key is missing, WRONGTYPE for other types.
fn with_string<R>(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    f: impl FnOnce(Option<&[u8]>) -> R,
) -> Result<R, Reply> {
    match read(ctx, key) {
        None => Ok(f(None)),
        Some(e) => match e.value.as_string() {
            Some(s) => Ok(s.with_bytes(|b| f(Some(b)))),
            None => Err(err::WRONGTYPE),
        },
    }
}

/// Number of set bits in `b`.
fn popcount(b: &[u8]) -> u64 {
    let mut chunks = b.chunks_exact(8);
    let mut n: u64 = chunks
        .by_ref()
        .map(|c| u64::from_ne_bytes(c.try_into().unwrap()).count_ones() as u64)
        .sum();
    n += chunks
        .remainder()
        .iter()
        .map(|x| x.count_ones() as u64)
        .sum::<u64>();
    n
}

/// The value of bit `i` of `b` (MSB first), 0 past the end.
#[inline]
fn bit_at(b: &[u8], i: u64) -> u8 {
    match b.get((i >> 3) as usize) {
        Some(&byte) => (byte >> (7 - (i & 7))) & 1,
        None => 0,
    }
}

/// Resolves a BITCOUNT/BITPOS range to an inclusive bit range, as Redis does:
/// negative indexes count from the end, the range is clamped to the string,
/// and BYTE ranges cover whole bytes. None for an empty range.
fn bit_range(mut start: i64, mut end: i64, len: usize, isbit: bool) -> Option<(u64, u64)> {
    let mut total = len as i64;
    if isbit {
        total <<= 3;
    }
    if start < 0 {
        start += total;
    }
    if end < 0 {
        end += total;
    }
    start = start.max(0);
    end = end.max(0);
    if end >= total {
        end = total - 1;
    }
    if start > end {
        return None;
    }
    Some(if isbit {
        (start as u64, end as u64)
    } else {
        (start as u64 * 8, end as u64 * 8 + 7)
    })
}

// ---------------------------------------------------------------------------
// SETBIT, GETBIT
// ---------------------------------------------------------------------------

fn setbit(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let max = max_bulk_len(ctx);
    let offset = match bit_offset(&args[2], None, max) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let on = match parse_i64(&args[3]) {
        Some(v @ (0 | 1)) => v as u8,
        _ => return errs::BIT_VALUE,
    };
    let byte = (offset >> 3) as usize;
    let shift = 7 - (offset & 7) as u32;
    let old = with_bits_mut(ctx, &args[1], offset, |b, _| {
        let old = (b[byte] >> shift) & 1;
        b[byte] = (b[byte] & !(1 << shift)) | (on << shift);
        old
    });
    match old {
        Ok(v) => Reply::Int(v as i64),
        Err(r) => r,
    }
}

fn getbit(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let max = max_bulk_len(ctx);
    let offset = match bit_offset(&args[2], None, max) {
        Ok(o) => o,
        Err(r) => return r,
    };
    match with_string(ctx, &args[1], |s| s.map_or(0, |b| bit_at(b, offset))) {
        Ok(v) => Reply::Int(v as i64),
        Err(r) => r,
    }
}

// ---------------------------------------------------------------------------
// BITCOUNT, BITPOS
// ---------------------------------------------------------------------------

/// Set bits in the inclusive bit range `[sb, eb]` of `b` (within bounds).
fn count_range(b: &[u8], sb: u64, eb: u64) -> u64 {
    let (first, last) = ((sb >> 3) as usize, (eb >> 3) as usize);
    let mut n = popcount(&b[first..=last]);
    // Drop the bits of the edge bytes outside the range.
    let head = (sb & 7) as u32;
    if head > 0 {
        n -= (b[first] >> (8 - head)).count_ones() as u64;
    }
    let tail = 7 - (eb & 7) as u32;
    if tail > 0 {
        n -= (b[last] & ((1u8 << tail) - 1)).count_ones() as u64;
    }
    n
}

/// BITCOUNT key [start end [BYTE|BIT]]
fn bitcount(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let r = with_string(ctx, &args[1], |s| {
        let Some(b) = s else {
            return Reply::Int(0);
        };
        let range = match args.len() {
            2 => bit_range(0, -1, b.len(), false),
            4 | 5 => {
                let (start, end) = match (arg_i64(&args[2]), arg_i64(&args[3])) {
                    (Ok(s), Ok(e)) => (s, e),
                    (Err(r), _) | (_, Err(r)) => return r,
                };
                if start < 0 && end < 0 && start > end {
                    return Reply::Int(0);
                }
                let isbit = match args.get(4) {
                    None => false,
                    Some(u) if kw(u, "bit") => true,
                    Some(u) if kw(u, "byte") => false,
                    Some(_) => return err::SYNTAX,
                };
                bit_range(start, end, b.len(), isbit)
            }
            _ => return err::SYNTAX,
        };
        match range {
            None => Reply::Int(0),
            Some((sb, eb)) => Reply::Int(count_range(b, sb, eb) as i64),
        }
    });
    r.unwrap_or_else(|e| e)
}

/// The first bit equal to `bit` in the inclusive range `[sb, eb]` of `b`.
fn find_bit(b: &[u8], bit: u8, sb: u64, eb: u64) -> Option<u64> {
    // Skip whole bytes that cannot hold the bit, then look bit by bit.
    let skip = if bit == 1 { 0x00 } else { 0xff };
    let mut i = sb;
    while i <= eb {
        if i & 7 == 0 && i + 7 <= eb && b[(i >> 3) as usize] == skip {
            i += 8;
            continue;
        }
        if bit_at(b, i) == bit {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// BITPOS key bit [start [end [BYTE|BIT]]]
fn bitpos(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let bit = match arg_i64(&args[2]) {
        Ok(v @ (0 | 1)) => v as u8,
        Ok(_) => return errs::BITPOS_BIT,
        Err(r) => return r,
    };
    let r = with_string(ctx, &args[1], |s| {
        // A missing key is an infinite run of zero bits.
        let Some(b) = s else {
            return Reply::Int(if bit == 1 { -1 } else { 0 });
        };
        let mut end_given = false;
        let range = match args.len() {
            3 => bit_range(0, -1, b.len(), false),
            4..=6 => {
                let start = match arg_i64(&args[3]) {
                    Ok(v) => v,
                    Err(r) => return r,
                };
                let isbit = match args.get(5) {
                    None => false,
                    Some(u) if kw(u, "bit") => true,
                    Some(u) if kw(u, "byte") => false,
                    Some(_) => return err::SYNTAX,
                };
                let end = match args.get(4) {
                    Some(e) => match arg_i64(e) {
                        Ok(v) => {
                            end_given = true;
                            v
                        }
                        Err(r) => return r,
                    },
                    None => -1,
                };
                bit_range(start, end, b.len(), isbit)
            }
            _ => return err::SYNTAX,
        };
        let Some((sb, eb)) = range else {
            return Reply::Int(-1);
        };
        match find_bit(b, bit, sb, eb) {
            Some(pos) => Reply::Int(pos as i64),
            // Looking for a clear bit without an explicit end: the string is
            // taken as padded with zeros, so the answer is the first bit
            // past the range's last byte.
            None if bit == 0 && !end_given => Reply::Int((((eb >> 3) + 1) << 3) as i64),
            None => Reply::Int(-1),
        }
    });
    r.unwrap_or_else(|e| e)
}

// ---------------------------------------------------------------------------
// BITOP
// ---------------------------------------------------------------------------

/// A BITOP operation.
#[derive(Clone, Copy, PartialEq)]
enum BitOp {
    And,
    Or,
    Xor,
    Not,
}

/// Parses the operation and checks NOT's single source.
fn bitop_parse(args: &[Bytes]) -> Result<BitOp, Reply> {
    let a = &args[1];
    let op = if kw(a, "and") {
        BitOp::And
    } else if kw(a, "or") {
        BitOp::Or
    } else if kw(a, "xor") {
        BitOp::Xor
    } else if kw(a, "not") {
        BitOp::Not
    } else {
        return Err(err::SYNTAX);
    };
    if op == BitOp::Not && args.len() != 4 {
        return Err(errs::BITOP_NOT);
    }
    Ok(op)
}

/// A BITOP source: its bytes, or None when the key is missing.
fn bitop_read(ctx: &mut Ctx<'_>, key: &[u8]) -> Result<Option<Bytes>, Reply> {
    match read(ctx, key) {
        None => Ok(None),
        Some(e) => match e.value.as_string() {
            Some(s) => Ok(Some(s.to_bytes())),
            None => Err(err::WRONGTYPE),
        },
    }
}

/// The result of `op` over the sources; shorter sources (and missing keys)
/// read as zero bytes. Empty when every source is empty.
fn bitop_compute(op: BitOp, srcs: &[Option<Bytes>]) -> Vec<u8> {
    let len = |s: &Option<Bytes>| s.as_ref().map_or(0, |b| b.len());
    let maxlen = srcs.iter().map(len).max().unwrap_or(0);
    if maxlen == 0 {
        return Vec::new();
    }
    let byte =
        |s: &Option<Bytes>, i: usize| s.as_ref().and_then(|b| b.get(i).copied()).unwrap_or(0);
    let mut res: Vec<u8> = (0..maxlen).map(|i| byte(&srcs[0], i)).collect();
    match op {
        BitOp::Not => res.iter_mut().for_each(|x| *x = !*x),
        _ => {
            for s in &srcs[1..] {
                for (i, r) in res.iter_mut().enumerate() {
                    let v = byte(s, i);
                    match op {
                        BitOp::And => *r &= v,
                        BitOp::Or => *r |= v,
                        _ => *r ^= v,
                    }
                }
            }
        }
    }
    res
}

/// Stores BITOP's result (dropping any TTL), or deletes the destination when
/// the result is empty; replies with the result's length.
fn bitop_store(ctx: &mut Ctx<'_>, dest: &[u8], res: Vec<u8>) -> Reply {
    let now = ctx.now_ms;
    let db: &mut Db = ctx.db();
    let len = res.len();
    if len > 0 {
        db.set(dest, Value::Str(SmallBytes::from_vec(res)), 0, now);
    } else {
        db.delete(dest, now);
    }
    Reply::Int(len as i64)
}

fn bitop_keyed(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let op = match bitop_parse(args) {
        Ok(op) => op,
        Err(r) => return r,
    };
    let mut srcs = Vec::with_capacity(args.len() - 3);
    for k in &args[3..] {
        match bitop_read(ctx, k) {
            Ok(s) => srcs.push(s),
            Err(r) => return r,
        }
    }
    let res = bitop_compute(op, &srcs);
    bitop_store(ctx, &args[2], res)
}

/// BITOP AND|OR|XOR|NOT destkey key [key ...]
fn bitop(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let op = match bitop_parse(&args) {
            Ok(op) => op,
            Err(r) => return r,
        };
        let keys: Vec<Bytes> = args[2..].to_vec();
        if let Some(r) = one_shard(c, &keys, bitop_keyed, &args).await {
            return r;
        }
        let tx = c.lock_keys(&keys).await;
        let srcs: Vec<Bytes> = args[3..].to_vec();
        let reads = c.group_by_shard(&srcs).into_iter().map(|(shard, idx)| {
            let ks: Vec<(usize, Bytes)> = idx.into_iter().map(|i| (i, srcs[i].clone())).collect();
            tx.run(shard, move |ctx| {
                let mut out = Vec::with_capacity(ks.len());
                for (i, k) in ks {
                    let r = bitop_read(ctx, &k);
                    let stop = r.is_err();
                    out.push((i, r));
                    if stop {
                        break;
                    }
                }
                out
            })
        });
        let mut got: Vec<(usize, Result<Option<Bytes>, Reply>)> = futures::future::join_all(reads)
            .await
            .into_iter()
            .flatten()
            .collect();
        got.sort_by_key(|(i, _)| *i);
        let mut vals = Vec::with_capacity(srcs.len());
        for (_, r) in got {
            match r {
                Ok(v) => vals.push(v),
                // The first failing source in argument order answers.
                Err(e) => return e,
            }
        }
        let res = bitop_compute(op, &vals);
        let dest = args[2].clone();
        let reply = tx
            .run(c.shard_of(&dest), move |ctx| bitop_store(ctx, &dest, res))
            .await;
        drop(tx);
        reply
    })
}

// ---------------------------------------------------------------------------
// BITFIELD, BITFIELD_RO
// ---------------------------------------------------------------------------

/// OVERFLOW behaviour of BITFIELD's SET and INCRBY.
#[derive(Clone, Copy, PartialEq)]
enum Overflow {
    Wrap,
    Sat,
    Fail,
}

/// A BITFIELD subcommand.
#[derive(Clone, Copy, PartialEq)]
enum FieldOp {
    Get,
    Set,
    IncrBy,
}

/// One parsed BITFIELD operation.
struct Field {
    op: FieldOp,
    offset: u64,
    /// SET's value or INCRBY's increment.
    arg: i64,
    overflow: Overflow,
    bits: u32,
    signed: bool,
}

/// Redis's `getBitfieldTypeFromArgument`: `i1`..`i64` or `u1`..`u63`.
fn field_type(arg: &[u8]) -> Result<(bool, u32), Reply> {
    let signed = match arg.first() {
        Some(b'i') => true,
        Some(b'u') => false,
        _ => return Err(errs::BITFIELD_TYPE),
    };
    match parse_i64(cstr(&arg[1..])) {
        Some(n) if n >= 1 && n <= if signed { 64 } else { 63 } => Ok((signed, n as u32)),
        _ => Err(errs::BITFIELD_TYPE),
    }
}

/// Parses BITFIELD's subcommands in order, failing at the first bad one.
fn bitfield_parse(args: &[Bytes], max: i64) -> Result<Vec<Field>, Reply> {
    let mut ops = Vec::new();
    let mut overflow = Overflow::Wrap;
    let mut j = 2;
    while j < args.len() {
        let rem = args.len() - j - 1;
        let sub = &args[j][..];
        let op = if kw(sub, "get") && rem >= 2 {
            FieldOp::Get
        } else if kw(sub, "set") && rem >= 3 {
            FieldOp::Set
        } else if kw(sub, "incrby") && rem >= 3 {
            FieldOp::IncrBy
        } else if kw(sub, "overflow") && rem >= 1 {
            let t = &args[j + 1][..];
            overflow = if kw(t, "wrap") {
                Overflow::Wrap
            } else if kw(t, "sat") {
                Overflow::Sat
            } else if kw(t, "fail") {
                Overflow::Fail
            } else {
                return Err(errs::BITFIELD_OVERFLOW);
            };
            j += 2;
            continue;
        } else {
            return Err(err::SYNTAX);
        };
        let (signed, bits) = field_type(&args[j + 1])?;
        let offset = bit_offset(&args[j + 2], Some(bits), max)?;
        let arg = if op == FieldOp::Get {
            0
        } else {
            arg_i64(&args[j + 3])?
        };
        ops.push(Field {
            op,
            offset,
            arg,
            overflow,
            bits,
            signed,
        });
        j += if op == FieldOp::Get { 3 } else { 4 };
    }
    Ok(ops)
}

/// Reads `bits` bits at bit `offset` as an unsigned integer (MSB first);
/// bits past the end of `b` read as zero.
fn get_unsigned(b: &[u8], offset: u64, bits: u32) -> u64 {
    (0..bits as u64).fold(0u64, |v, j| (v << 1) | bit_at(b, offset + j) as u64)
}

/// Reads `bits` bits at bit `offset` as a two's complement integer.
fn get_signed(b: &[u8], offset: u64, bits: u32) -> i64 {
    let mut v = get_unsigned(b, offset, bits);
    if bits < 64 && v & (1u64 << (bits - 1)) != 0 {
        v |= u64::MAX << bits;
    }
    v as i64
}

/// Writes the low `bits` bits of `value` at bit `offset` (MSB first).
fn set_bits(b: &mut [u8], offset: u64, bits: u32, value: u64) {
    for j in 0..bits as u64 {
        let on = ((value >> (bits as u64 - 1 - j)) & 1) as u8;
        let pos = offset + j;
        let byte = (pos >> 3) as usize;
        let shift = 7 - (pos & 7) as u32;
        b[byte] = (b[byte] & !(1 << shift)) | (on << shift);
    }
}

/// Redis's `checkUnsignedBitfieldOverflow`: 0, 1 (overflow) or -1
/// (underflow), with the wrapped or saturated value for WRAP and SAT.
fn check_unsigned(value: u64, incr: i64, bits: u32, ow: Overflow) -> (i32, u64) {
    let max = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let maxincr = max.wrapping_sub(value) as i64;
    let minincr = 0u64.wrapping_sub(value) as i64;
    // Unsigned fields have at most 63 bits, so the shift is in range.
    let wrap = || value.wrapping_add(incr as u64) & !(u64::MAX << bits);
    if value > max || (incr > 0 && incr > maxincr) {
        let limit = match ow {
            Overflow::Wrap => wrap(),
            Overflow::Sat => max,
            Overflow::Fail => 0,
        };
        (1, limit)
    } else if incr < 0 && incr < minincr {
        let limit = match ow {
            Overflow::Wrap => wrap(),
            _ => 0,
        };
        (-1, limit)
    } else {
        (0, 0)
    }
}

/// Redis's `checkSignedBitfieldOverflow`: 0, 1 (overflow) or -1
/// (underflow), with the wrapped or saturated value for WRAP and SAT.
fn check_signed(value: i64, incr: i64, bits: u32, ow: Overflow) -> (i32, i64) {
    let max = if bits == 64 {
        i64::MAX
    } else {
        (1i64 << (bits - 1)) - 1
    };
    let min = -max - 1;
    let maxincr = (max as u64).wrapping_sub(value as u64) as i64;
    let minincr = min.wrapping_sub(value);
    let wrap = || {
        let mut c = (value as u64).wrapping_add(incr as u64);
        if bits < 64 {
            let mask = u64::MAX << bits;
            if c & (1u64 << (bits - 1)) != 0 {
                c |= mask;
            } else {
                c &= !mask;
            }
        }
        c as i64
    };
    if value > max || (bits != 64 && incr > maxincr) || (value >= 0 && incr > 0 && incr > maxincr) {
        let limit = match ow {
            Overflow::Wrap => wrap(),
            Overflow::Sat => max,
            Overflow::Fail => 0,
        };
        (1, limit)
    } else if value < min
        || (bits != 64 && incr < minincr)
        || (value < 0 && incr < 0 && incr < minincr)
    {
        let limit = match ow {
            Overflow::Wrap => wrap(),
            Overflow::Sat => min,
            Overflow::Fail => 0,
        };
        (-1, limit)
    } else {
        (0, 0)
    }
}

/// Runs one SET or INCRBY on `b`: the reply (old value for SET, new value
/// for INCRBY, nil when OVERFLOW FAIL refuses the write).
fn field_write(b: &mut [u8], f: &Field) -> Reply {
    let incr = f.op == FieldOp::IncrBy;
    if f.signed {
        let old = get_signed(b, f.offset, f.bits);
        let (overflow, limit, new) = if incr {
            let (o, l) = check_signed(old, f.arg, f.bits, f.overflow);
            (o, l, old.wrapping_add(f.arg))
        } else {
            let (o, l) = check_signed(f.arg, 0, f.bits, f.overflow);
            (o, l, f.arg)
        };
        if overflow != 0 && f.overflow == Overflow::Fail {
            return Reply::Nil;
        }
        let new = if overflow != 0 { limit } else { new };
        set_bits(b, f.offset, f.bits, new as u64);
        Reply::Int(if incr { new } else { old })
    } else {
        let old = get_unsigned(b, f.offset, f.bits);
        let (overflow, limit, new) = if incr {
            let (o, l) = check_unsigned(old, f.arg, f.bits, f.overflow);
            (o, l, old.wrapping_add(f.arg as u64))
        } else {
            let (o, l) = check_unsigned(f.arg as u64, 0, f.bits, f.overflow);
            (o, l, f.arg as u64)
        };
        if overflow != 0 && f.overflow == Overflow::Fail {
            return Reply::Nil;
        }
        let new = if overflow != 0 { limit } else { new };
        set_bits(b, f.offset, f.bits, new);
        Reply::Int(if incr { new as i64 } else { old as i64 })
    }
}

/// GET on `b` (zero-padded past its end).
fn field_get(b: &[u8], f: &Field) -> Reply {
    if f.signed {
        Reply::Int(get_signed(b, f.offset, f.bits))
    } else {
        Reply::Int(get_unsigned(b, f.offset, f.bits) as i64)
    }
}

/// Redis's `bitfieldGeneric`: parse everything first, then look the key up
/// for reading (GET only) or writing (grown to the farthest written bit),
/// then run the operations in order.
fn bitfield_generic(ctx: &mut Ctx<'_>, args: &[Bytes], readonly_cmd: bool) -> Reply {
    let max = max_bulk_len(ctx);
    let ops = match bitfield_parse(args, max) {
        Ok(ops) => ops,
        Err(r) => return r,
    };
    let writes = ops.iter().any(|f| f.op != FieldOp::Get);
    if !writes {
        let r = with_string(ctx, &args[1], |s| {
            let b = s.unwrap_or(&[]);
            Reply::Array(ops.iter().map(|f| field_get(b, f)).collect())
        });
        return r.unwrap_or_else(|e| e);
    }
    if readonly_cmd {
        return errs::BITFIELD_RO;
    }
    let highest = ops
        .iter()
        .filter(|f| f.op != FieldOp::Get)
        .map(|f| f.offset + f.bits as u64 - 1)
        .max()
        .unwrap_or(0);
    let r = with_bits_mut(ctx, &args[1], highest, |b, _| {
        let replies = ops
            .iter()
            .map(|f| match f.op {
                FieldOp::Get => field_get(b, f),
                _ => field_write(b, f),
            })
            .collect();
        Reply::Array(replies)
    });
    r.unwrap_or_else(|e| e)
}

/// BITFIELD key [GET type offset] [SET type offset value]
/// [INCRBY type offset increment] [OVERFLOW WRAP|SAT|FAIL] ...
fn bitfield(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    bitfield_generic(ctx, args, false)
}

/// BITFIELD_RO key [GET type offset] ...
fn bitfield_ro(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    bitfield_generic(ctx, args, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitfield_overflow_rules() {
        // u8 INCRBY past the top wraps or saturates.
        assert_eq!(check_unsigned(250, 10, 8, Overflow::Wrap), (1, 4));
        assert_eq!(check_unsigned(250, 10, 8, Overflow::Sat), (1, 255));
        assert_eq!(check_unsigned(5, -10, 8, Overflow::Sat), (-1, 0));
        assert_eq!(check_unsigned(5, -10, 8, Overflow::Wrap), (-1, 251));
        // i8 wraps towards the most negative value.
        assert_eq!(check_signed(127, 1, 8, Overflow::Wrap), (1, -128));
        assert_eq!(check_signed(-128, -1, 8, Overflow::Sat), (-1, -128));
        assert_eq!(check_signed(i64::MAX, 1, 64, Overflow::Wrap), (1, i64::MIN));
        assert_eq!(check_signed(0, i64::MIN, 64, Overflow::Sat), (0, 0));
    }

    #[test]
    fn bit_ranges() {
        let b = [0xffu8, 0x0f, 0x80];
        assert_eq!(count_range(&b, 0, 23), 13);
        assert_eq!(count_range(&b, 4, 11), 4);
        assert_eq!(count_range(&b, 12, 16), 5);
        assert_eq!(find_bit(&b, 0, 0, 23), Some(8));
        assert_eq!(find_bit(&b, 1, 8, 23), Some(12));
        assert_eq!(get_unsigned(&b, 4, 8), 0xf0);
        assert_eq!(get_signed(&b, 0, 4), -1);
    }
}
