//! String commands: GET, SET and the rest of the string family, with Redis
//! 7.0's options, replies and error texts.
//!
//! Single-key commands are keyed handlers. MGET, MSET, MSETNX and LCS may
//! name keys on several shards: when all keys share a shard they run there in
//! one hop, otherwise they lock every key first (see [`Client::lock_keys`]) so
//! that no client ever observes half of the operation.

pub use super::longdouble::{LongDouble, long_double_add};

use super::{CommandSpec, Ctx, Handler, arg_i64, err, flags::*, keys};
use crate::parse::parse_i64;
use crate::reply::{OK, Reply};
use crate::shard::db::Db;
use crate::shard::value::{Entry, SmallBytes, StrRef, Value};
use crate::transaction::Client;
use bytes::Bytes;
use futures::future::LocalBoxFuture;

const R: &[&str] = &["read", "string", "fast"];
const R_SLOW: &[&str] = &["read", "string", "slow"];
const W: &[&str] = &["write", "string", "fast"];
const W_SLOW: &[&str] = &["write", "string", "slow"];

/// The string family's commands.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec::new(
        "get",
        2,
        READONLY | FAST,
        keys(1, 1, 1),
        "string",
        "1.0.0",
        "Get the value of a key",
        Handler::Keyed(get),
    )
    .acl(R),
    CommandSpec::new(
        "set",
        -3,
        WRITE | DENYOOM,
        keys(1, 1, 1),
        "string",
        "1.0.0",
        "Set the string value of a key",
        Handler::Keyed(set),
    )
    .acl(W_SLOW),
    CommandSpec::new(
        "setnx",
        3,
        WRITE | DENYOOM | FAST,
        keys(1, 1, 1),
        "string",
        "1.0.0",
        "Set the value of a key, only if the key does not exist",
        Handler::Keyed(setnx),
    )
    .acl(W),
    CommandSpec::new(
        "setex",
        4,
        WRITE | DENYOOM,
        keys(1, 1, 1),
        "string",
        "2.0.0",
        "Set the value and expiration of a key",
        Handler::Keyed(setex),
    )
    .acl(W_SLOW),
    CommandSpec::new(
        "psetex",
        4,
        WRITE | DENYOOM,
        keys(1, 1, 1),
        "string",
        "2.6.0",
        "Set the value and expiration in milliseconds of a key",
        Handler::Keyed(psetex),
    )
    .acl(W_SLOW),
    CommandSpec::new(
        "getset",
        3,
        WRITE | DENYOOM | FAST,
        keys(1, 1, 1),
        "string",
        "1.0.0",
        "Set the string value of a key and return its old value",
        Handler::Keyed(getset),
    )
    .acl(W),
    CommandSpec::new(
        "getdel",
        2,
        WRITE | FAST,
        keys(1, 1, 1),
        "string",
        "6.2.0",
        "Get the value of a key and delete the key",
        Handler::Keyed(getdel),
    )
    .acl(W),
    CommandSpec::new(
        "getex",
        -2,
        WRITE | FAST,
        keys(1, 1, 1),
        "string",
        "6.2.0",
        "Get the value of a key and optionally set its expiration",
        Handler::Keyed(getex),
    )
    .acl(W),
    CommandSpec::new(
        "mget",
        -2,
        READONLY | FAST,
        keys(1, -1, 1),
        "string",
        "1.0.0",
        "Get the values of all the given keys",
        Handler::Async(mget),
    )
    .acl(R),
    CommandSpec::new(
        "mset",
        -3,
        WRITE | DENYOOM,
        keys(1, -1, 2),
        "string",
        "1.0.1",
        "Set multiple keys to multiple values",
        Handler::Async(mset),
    )
    .acl(W_SLOW),
    CommandSpec::new(
        "msetnx",
        -3,
        WRITE | DENYOOM,
        keys(1, -1, 2),
        "string",
        "1.0.1",
        "Set multiple keys to multiple values, only if none of the keys exist",
        Handler::Async(msetnx),
    )
    .acl(W_SLOW),
    CommandSpec::new(
        "incr",
        2,
        WRITE | DENYOOM | FAST,
        keys(1, 1, 1),
        "string",
        "1.0.0",
        "Increment the integer value of a key by one",
        Handler::Keyed(incr),
    )
    .acl(W),
    CommandSpec::new(
        "incrby",
        3,
        WRITE | DENYOOM | FAST,
        keys(1, 1, 1),
        "string",
        "1.0.0",
        "Increment the integer value of a key by the given amount",
        Handler::Keyed(incrby),
    )
    .acl(W),
    CommandSpec::new(
        "incrbyfloat",
        3,
        WRITE | DENYOOM | FAST,
        keys(1, 1, 1),
        "string",
        "2.6.0",
        "Increment the float value of a key by the given amount",
        Handler::Keyed(incrbyfloat),
    )
    .acl(W),
    CommandSpec::new(
        "decr",
        2,
        WRITE | DENYOOM | FAST,
        keys(1, 1, 1),
        "string",
        "1.0.0",
        "Decrement the integer value of a key by one",
        Handler::Keyed(decr),
    )
    .acl(W),
    CommandSpec::new(
        "decrby",
        3,
        WRITE | DENYOOM | FAST,
        keys(1, 1, 1),
        "string",
        "1.0.0",
        "Decrement the integer value of a key by the given number",
        Handler::Keyed(decrby),
    )
    .acl(W),
    CommandSpec::new(
        "append",
        3,
        WRITE | DENYOOM | FAST,
        keys(1, 1, 1),
        "string",
        "2.0.0",
        "Append a value to a key",
        Handler::Keyed(append),
    )
    .acl(W),
    CommandSpec::new(
        "strlen",
        2,
        READONLY | FAST,
        keys(1, 1, 1),
        "string",
        "2.2.0",
        "Get the length of the value stored in a key",
        Handler::Keyed(strlen),
    )
    .acl(R),
    CommandSpec::new(
        "getrange",
        4,
        READONLY,
        keys(1, 1, 1),
        "string",
        "2.4.0",
        "Get a substring of the string stored at a key",
        Handler::Keyed(getrange),
    )
    .acl(R_SLOW),
    CommandSpec::new(
        "setrange",
        4,
        WRITE | DENYOOM,
        keys(1, 1, 1),
        "string",
        "2.2.0",
        "Overwrite part of a string at key starting at the specified offset",
        Handler::Keyed(setrange),
    )
    .acl(W_SLOW),
    CommandSpec::new(
        "substr",
        4,
        READONLY,
        keys(1, 1, 1),
        "string",
        "1.0.0",
        "Get a substring of the string stored at a key",
        Handler::Keyed(getrange),
    )
    .acl(R_SLOW),
    CommandSpec::new(
        "lcs",
        -3,
        READONLY,
        keys(1, 2, 1),
        "string",
        "7.0.0",
        "Find longest common substring",
        Handler::Async(lcs),
    )
    .acl(R_SLOW),
];

/// Error replies specific to this family, with Redis's texts.
mod errs {
    use crate::reply::Reply;

    pub const OFFSET_RANGE: Reply = Reply::StaticError("ERR offset is out of range");
    pub const TOO_BIG: Reply =
        Reply::StaticError("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
    pub const DECR_OVERFLOW: Reply = Reply::StaticError("ERR decrement would overflow");
    pub const NAN_OR_INF: Reply = Reply::StaticError("ERR increment would produce NaN or Infinity");
    pub const LCS_TYPES: Reply =
        Reply::StaticError("ERR The specified keys must contain string values");
    pub const LCS_LEN_AND_IDX: Reply =
        Reply::StaticError("ERR If you want both the length and indexes, please just use IDX.");
    pub const LCS_TOO_LONG: Reply = Reply::StaticError("ERR String too long for LCS");
    pub const LCS_OVER_LIMIT: Reply = Reply::StaticError(
        "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
    );
    pub const LCS_ALLOC: Reply =
        Reply::StaticError("ERR Insufficient memory, failed allocating transient memory for LCS");

    /// `ERR invalid expire time in '<cmd>' command`.
    pub fn expire_time(cmd: &str) -> Reply {
        Reply::Error(format!("ERR invalid expire time in '{cmd}' command"))
    }
}

// ---------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------

/// The bytes a C string view of `arg` sees: up to the first NUL. Redis parses
/// option keywords with C string functions, so `"nx\0junk"` reads as `NX`.
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

/// The string bytes of a value, or WRONGTYPE.
fn string_bytes(e: &Entry) -> Result<Bytes, Reply> {
    e.value
        .as_string()
        .map(|s| s.to_bytes())
        .ok_or(err::WRONGTYPE)
}

/// A read lookup (counts hits and misses, honours CLIENT NO-TOUCH).
fn read<'a>(ctx: &'a mut Ctx<'_>, key: &[u8]) -> Option<&'a mut Entry> {
    let (now, touch) = (ctx.now_ms, ctx.touch);
    ctx.db().lookup(key, now, touch)
}

/// Redis's `getGenericCommand`: the value as a bulk reply, nil when missing,
/// WRONGTYPE for other types.
fn get_generic(ctx: &mut Ctx<'_>, key: &[u8]) -> Reply {
    match read(ctx, key) {
        None => Reply::Nil,
        Some(e) => match string_bytes(e) {
            Ok(b) => Reply::Bulk(b),
            Err(r) => r,
        },
    }
}

/// The configured proto-max-bulk-len of this shard.
fn max_bulk_len(ctx: &mut Ctx<'_>) -> i64 {
    ctx.shard.refresh_config();
    ctx.shard.config.proto_max_bulk_len()
}

/// Redis's `checkStringLength`: `size + append` must fit proto-max-bulk-len.
fn check_len(size: i64, append: usize, max: i64) -> Result<(), Reply> {
    match size.checked_add(append as i64) {
        Some(total) if total <= max => Ok(()),
        _ => Err(errs::TOO_BIG),
    }
}

// ---------------------------------------------------------------------------
// SET family
// ---------------------------------------------------------------------------

/// Option bits of SET and GETEX, as Redis's `OBJ_*` flags.
mod opt {
    pub const NX: u32 = 1;
    pub const XX: u32 = 1 << 1;
    pub const EX: u32 = 1 << 2;
    pub const PX: u32 = 1 << 3;
    pub const KEEPTTL: u32 = 1 << 4;
    pub const GET: u32 = 1 << 5;
    pub const EXAT: u32 = 1 << 6;
    pub const PXAT: u32 = 1 << 7;
    pub const PERSIST: u32 = 1 << 8;
    /// Any expiry option.
    pub const ANY_EXPIRE: u32 = EX | PX | EXAT | PXAT;
}

/// Parsed SET/GETEX options.
struct ExtArgs<'a> {
    flags: u32,
    /// True when the expire argument is in seconds (EX, EXAT).
    seconds: bool,
    expire: Option<&'a [u8]>,
}

/// Redis's `parseExtendedStringArgumentsOrReply`, with its exact rules on
/// which options may be combined (a repeated EX or PX is allowed and the
/// last one wins; conflicting ones are a syntax error).
fn parse_ext(args: &[Bytes], is_set: bool) -> Result<ExtArgs<'_>, Reply> {
    use opt::*;
    let mut out = ExtArgs {
        flags: 0,
        seconds: true,
        expire: None,
    };
    let mut j = if is_set { 3 } else { 2 };
    while j < args.len() {
        let a = &args[j][..];
        let next = args.get(j + 1).map(|b| &b[..]);
        let f = out.flags;
        if kw(a, "nx") && f & XX == 0 && is_set {
            out.flags |= NX;
        } else if kw(a, "xx") && f & NX == 0 && is_set {
            out.flags |= XX;
        } else if kw(a, "get") && is_set {
            out.flags |= GET;
        } else if kw(a, "keepttl") && f & (PERSIST | ANY_EXPIRE) == 0 && is_set {
            out.flags |= KEEPTTL;
        } else if kw(a, "persist") && !is_set && f & (ANY_EXPIRE | KEEPTTL) == 0 {
            out.flags |= PERSIST;
        } else if kw(a, "ex") && f & (KEEPTTL | PERSIST | EXAT | PX | PXAT) == 0 && next.is_some() {
            out.flags |= EX;
            out.expire = next;
            j += 1;
        } else if kw(a, "px") && f & (KEEPTTL | PERSIST | EX | EXAT | PXAT) == 0 && next.is_some() {
            out.flags |= PX;
            out.seconds = false;
            out.expire = next;
            j += 1;
        } else if kw(a, "exat") && f & (KEEPTTL | PERSIST | EX | PX | PXAT) == 0 && next.is_some() {
            out.flags |= EXAT;
            out.expire = next;
            j += 1;
        } else if kw(a, "pxat") && f & (KEEPTTL | PERSIST | EX | EXAT | PX) == 0 && next.is_some() {
            out.flags |= PXAT;
            out.seconds = false;
            out.expire = next;
            j += 1;
        } else {
            return Err(err::SYNTAX);
        }
        j += 1;
    }
    Ok(out)
}

/// Redis's `getExpireMillisecondsOrReply`: the absolute expiry in ms, or an
/// error. Relative forms (EX, PX) add `now`; overflow is an error, as is a
/// non-positive value.
fn expire_ms(expire: &[u8], flags: u32, seconds: bool, now: u64, cmd: &str) -> Result<u64, Reply> {
    let mut ms = arg_i64(expire)?;
    if ms <= 0 || (seconds && ms > i64::MAX / 1000) {
        return Err(errs::expire_time(cmd));
    }
    if seconds {
        ms *= 1000;
    }
    if flags & (opt::PX | opt::EX) != 0 {
        // Redis adds with signed overflow and then rejects the negative sum.
        ms = ms.wrapping_add(now as i64);
    }
    if ms <= 0 {
        return Err(errs::expire_time(cmd));
    }
    Ok(ms as u64)
}

/// Redis's `setGenericCommand` for SET, SETNX, SETEX and PSETEX.
#[allow(clippy::too_many_arguments)]
fn set_generic(
    ctx: &mut Ctx<'_>,
    flags: u32,
    key: &[u8],
    val: &[u8],
    expire: Option<&[u8]>,
    seconds: bool,
    cmd: &str,
    ok: Reply,
    abort: Reply,
) -> Reply {
    let now = ctx.now_ms;
    let at = match expire {
        Some(e) => match expire_ms(e, flags, seconds, now, cmd) {
            Ok(ms) => Some(ms),
            Err(r) => return r,
        },
        None => None,
    };
    let old = if flags & opt::GET != 0 {
        let r = get_generic(ctx, key);
        if r.is_error() {
            return r;
        }
        Some(r)
    } else {
        None
    };
    let existing = ctx.db().lookup_write(key, now).map(|e| e.expire_at);
    if (flags & opt::NX != 0 && existing.is_some()) || (flags & opt::XX != 0 && existing.is_none())
    {
        return old.unwrap_or(abort);
    }
    let keep = if flags & opt::KEEPTTL != 0 {
        existing.unwrap_or(0)
    } else {
        0
    };
    ctx.db()
        .set(key, Value::from_bytes(val), at.unwrap_or(keep), now);
    old.unwrap_or(ok)
}

fn get(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    get_generic(ctx, &args[1])
}

fn set(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let ext = match parse_ext(args, true) {
        Ok(e) => e,
        Err(r) => return r,
    };
    set_generic(
        ctx,
        ext.flags,
        &args[1],
        &args[2],
        ext.expire,
        ext.seconds,
        "set",
        OK,
        Reply::Nil,
    )
}

fn setnx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    set_generic(
        ctx,
        opt::NX,
        &args[1],
        &args[2],
        None,
        true,
        "setnx",
        Reply::Int(1),
        Reply::Int(0),
    )
}

fn setex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    set_generic(
        ctx,
        opt::EX,
        &args[1],
        &args[3],
        Some(&args[2]),
        true,
        "setex",
        OK,
        Reply::Nil,
    )
}

fn psetex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    set_generic(
        ctx,
        opt::PX,
        &args[1],
        &args[3],
        Some(&args[2]),
        false,
        "psetex",
        OK,
        Reply::Nil,
    )
}

fn getset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let old = get_generic(ctx, &args[1]);
    if old.is_error() {
        return old;
    }
    let now = ctx.now_ms;
    ctx.db().set(&args[1], Value::from_bytes(&args[2]), 0, now);
    old
}

fn getdel(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let old = get_generic(ctx, &args[1]);
    if matches!(old, Reply::Bulk(_)) {
        let now = ctx.now_ms;
        ctx.db().delete(&args[1], now);
    }
    old
}

fn getex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let ext = match parse_ext(args, false) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let key = &args[1][..];
    let value = match read(ctx, key) {
        None => return Reply::Nil,
        Some(e) => match string_bytes(e) {
            Ok(b) => b,
            Err(r) => return r,
        },
    };
    let now = ctx.now_ms;
    let at = match ext.expire {
        Some(e) => match expire_ms(e, ext.flags, ext.seconds, now, "getex") {
            Ok(ms) => Some(ms),
            Err(r) => return r,
        },
        None => None,
    };
    let db = ctx.db();
    match at {
        // An absolute time already in the past deletes the key.
        Some(ms) if ext.flags & (opt::EXAT | opt::PXAT) != 0 && ms <= now => {
            db.remove(key);
        }
        Some(ms) => {
            db.set_expire(key, ms);
        }
        None if ext.flags & opt::PERSIST != 0 => {
            db.set_expire(key, 0);
        }
        None => {}
    }
    Reply::Bulk(value)
}

// ---------------------------------------------------------------------------
// Counters
// ---------------------------------------------------------------------------

/// Redis's `incrDecrCommand`: adds `by` to the integer at `key` (0 when
/// missing), keeping its TTL.
fn incr_decr(ctx: &mut Ctx<'_>, key: &[u8], by: i64) -> Reply {
    let now = ctx.now_ms;
    let db = ctx.db();
    let cur = match db.lookup_write(key, now) {
        None => None,
        Some(e) => match &e.value {
            Value::Int(n) => Some(*n),
            v => match v.as_string() {
                None => return err::WRONGTYPE,
                Some(s) => match s.with_bytes(parse_i64) {
                    Some(n) => Some(n),
                    None => return err::NOT_INT,
                },
            },
        },
    };
    let Some(new) = cur.unwrap_or(0).checked_add(by) else {
        return err::OVERFLOW;
    };
    match cur {
        Some(_) => db.replace_value(key, Value::Int(new)),
        None => {
            db.set(key, Value::Int(new), 0, now);
        }
    }
    Reply::Int(new)
}

fn incr(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    incr_decr(ctx, &args[1], 1)
}

fn decr(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    incr_decr(ctx, &args[1], -1)
}

fn incrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    match arg_i64(&args[2]) {
        Ok(by) => incr_decr(ctx, &args[1], by),
        Err(r) => r,
    }
}

fn decrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    match arg_i64(&args[2]) {
        Ok(i64::MIN) => errs::DECR_OVERFLOW,
        Ok(by) => incr_decr(ctx, &args[1], -by),
        Err(r) => r,
    }
}

fn incrbyfloat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let key = &args[1][..];
    let now = ctx.now_ms;
    let db = ctx.db();
    let (exists, cur) = match db.lookup_write(key, now) {
        None => (false, LongDouble::from_i64(0)),
        Some(e) => match e.value.as_string() {
            None => return err::WRONGTYPE,
            Some(StrRef::Int(n)) => (true, LongDouble::from_i64(n)),
            Some(StrRef::Bytes(b)) => match LongDouble::parse(b) {
                Some(v) => (true, v),
                None => return err::NOT_FLOAT,
            },
        },
    };
    let Some(by) = LongDouble::parse(&args[2]) else {
        return err::NOT_FLOAT;
    };
    let sum = cur + by;
    if !sum.is_finite() {
        return errs::NAN_OR_INF;
    }
    let text = sum.to_human();
    let reply = Reply::bulk(&text);
    // Redis stores the printed form as a plain string, never int-encoded.
    let value = Value::Str(SmallBytes::from_vec(text));
    if exists {
        db.replace_value(key, value);
    } else {
        db.set(key, value, 0, now);
    }
    reply
}

// ---------------------------------------------------------------------------
// APPEND, STRLEN, GETRANGE, SETRANGE
// ---------------------------------------------------------------------------

/// Takes a live string value out of its entry as an owned buffer (reusing a
/// heap allocation), leaving a placeholder the caller must overwrite.
fn take_string(e: &mut Entry) -> Vec<u8> {
    match std::mem::replace(&mut e.value, Value::Int(0)) {
        Value::Str(SmallBytes::Heap(b)) => b.into_vec(),
        Value::Str(s) => s.to_vec(),
        Value::Int(n) => itoa::Buffer::new().format(n).as_bytes().to_vec(),
        other => {
            // Callers check the type first; keep a non-string value intact.
            debug_assert!(false, "take_string on a {}", other.type_name());
            e.value = other;
            Vec::new()
        }
    }
}

fn append(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let max = max_bulk_len(ctx);
    let now = ctx.now_ms;
    let (key, add) = (&args[1][..], &args[2][..]);
    let db = ctx.db();
    match db.lookup_write(key, now) {
        None => {
            db.set(key, Value::from_bytes(add), 0, now);
            Reply::Int(add.len() as i64)
        }
        Some(e) => {
            let Some(s) = e.value.as_string() else {
                return err::WRONGTYPE;
            };
            if let Err(r) = check_len(s.len() as i64, add.len(), max) {
                return r;
            }
            let mut buf = take_string(e);
            buf.extend_from_slice(add);
            let len = buf.len();
            // Redis's appended value is a raw string, never int-encoded.
            e.value = Value::Str(SmallBytes::from_vec(buf));
            Reply::Int(len as i64)
        }
    }
}

fn strlen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    match read(ctx, &args[1]) {
        None => Reply::Int(0),
        Some(e) => match e.value.as_string() {
            Some(s) => Reply::Int(s.len() as i64),
            None => err::WRONGTYPE,
        },
    }
}

/// GETRANGE and SUBSTR.
fn getrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let (mut start, mut end) = match (arg_i64(&args[2]), arg_i64(&args[3])) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let empty = Reply::Bulk(Bytes::new());
    let s = match read(ctx, &args[1]) {
        None => return empty,
        Some(e) => match string_bytes(e) {
            Ok(b) => b,
            Err(r) => return r,
        },
    };
    let len = s.len() as i64;
    if start < 0 && end < 0 && start > end {
        return empty;
    }
    if start < 0 {
        start += len;
    }
    if end < 0 {
        end += len;
    }
    start = start.max(0);
    end = end.max(0);
    if end >= len {
        end = len - 1;
    }
    if start > end || len == 0 {
        return empty;
    }
    Reply::Bulk(s.slice(start as usize..=end as usize))
}

fn setrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let offset = match arg_i64(&args[2]) {
        Ok(o) if o < 0 => return errs::OFFSET_RANGE,
        Ok(o) => o,
        Err(r) => return r,
    };
    let (key, val) = (&args[1][..], &args[3][..]);
    let max = max_bulk_len(ctx);
    let now = ctx.now_ms;
    let db = ctx.db();
    match db.lookup_write(key, now) {
        None => {
            if val.is_empty() {
                return Reply::Int(0);
            }
            if let Err(r) = check_len(offset, val.len(), max) {
                return r;
            }
            let mut buf = vec![0u8; offset as usize + val.len()];
            buf[offset as usize..].copy_from_slice(val);
            let len = buf.len();
            db.set(key, Value::Str(SmallBytes::from_vec(buf)), 0, now);
            Reply::Int(len as i64)
        }
        Some(e) => {
            let Some(s) = e.value.as_string() else {
                return err::WRONGTYPE;
            };
            let olen = s.len();
            if val.is_empty() {
                return Reply::Int(olen as i64);
            }
            if let Err(r) = check_len(offset, val.len(), max) {
                return r;
            }
            let mut buf = take_string(e);
            let end = offset as usize + val.len();
            if buf.len() < end {
                buf.resize(end, 0);
            }
            buf[offset as usize..end].copy_from_slice(val);
            let len = buf.len();
            e.value = Value::Str(SmallBytes::from_vec(buf));
            Reply::Int(len as i64)
        }
    }
}

// ---------------------------------------------------------------------------
// Multi-key commands
// ---------------------------------------------------------------------------

/// Runs a keyed handler in one hop when all `keys` live on one shard;
/// returns None when they span shards.
async fn one_shard(c: &Client, keys: &[Bytes], f: super::KeyedFn, args: &[Bytes]) -> Option<Reply> {
    let shard = c.shard_of(&keys[0]);
    if keys[1..].iter().any(|k| c.shard_of(k) != shard) {
        return None;
    }
    let ks = keys.iter().map(|k| k.to_vec()).collect();
    Some(c.run_keyed(shard, ks, f, args.to_vec()).await)
}

/// MGET's reply for one key: non-strings read as nil.
fn mget_one(ctx: &mut Ctx<'_>, key: &[u8]) -> Reply {
    match read(ctx, key).and_then(|e| e.value.as_string().map(|s| s.to_bytes())) {
        Some(b) => Reply::Bulk(b),
        None => Reply::Nil,
    }
}

fn mget_keyed(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    Reply::Array(args[1..].iter().map(|k| mget_one(ctx, k)).collect())
}

fn mget(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let keys: Vec<Bytes> = args[1..].to_vec();
        if let Some(r) = one_shard(c, &keys, mget_keyed, &args).await {
            return r;
        }
        let tx = c.lock_keys(&keys).await;
        let mut out = vec![Reply::Nil; keys.len()];
        let groups = c.group_by_shard(&keys);
        let futs = groups.into_iter().map(|(shard, idx)| {
            let ks: Vec<Bytes> = idx.iter().map(|&i| keys[i].clone()).collect();
            let tx = &tx;
            async move {
                let replies = tx
                    .run(shard, move |ctx| {
                        ks.iter().map(|k| mget_one(ctx, k)).collect::<Vec<_>>()
                    })
                    .await;
                (idx, replies)
            }
        });
        for (idx, replies) in futures::future::join_all(futs).await {
            for (i, r) in idx.into_iter().zip(replies) {
                out[i] = r;
            }
        }
        drop(tx);
        Reply::Array(out)
    })
}

/// Sets key/value pairs in order (so a repeated key keeps its last value).
fn set_pairs<'a>(db: &mut Db, pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>, now: u64) {
    for (k, v) in pairs {
        db.set(k, Value::from_bytes(v), 0, now);
    }
}

fn mset_keyed(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    set_pairs(
        ctx.db(),
        args[1..].chunks(2).map(|p| (&p[0][..], &p[1][..])),
        now,
    );
    OK
}

fn msetnx_keyed(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    let db = ctx.db();
    if args[1..]
        .chunks(2)
        .any(|p| db.lookup_write(&p[0], now).is_some())
    {
        return Reply::Int(0);
    }
    set_pairs(db, args[1..].chunks(2).map(|p| (&p[0][..], &p[1][..])), now);
    Reply::Int(1)
}

/// Key/value pairs of an MSET-like command grouped by shard, in argument
/// order within each shard.
type ShardPairs = Vec<(usize, Vec<(Bytes, Bytes)>)>;

fn pairs_by_shard(c: &Client, args: &[Bytes], keys: &[Bytes]) -> ShardPairs {
    c.group_by_shard(keys)
        .into_iter()
        .map(|(s, idx)| {
            let pairs = idx
                .into_iter()
                .map(|i| (args[1 + 2 * i].clone(), args[2 + 2 * i].clone()))
                .collect();
            (s, pairs)
        })
        .collect()
}

/// Sets every group's pairs on its shard inside the transaction.
async fn apply_pairs(tx: &crate::transaction::Tx, groups: ShardPairs) {
    let futs = groups.into_iter().map(|(shard, pairs)| {
        tx.run(shard, move |ctx| {
            let now = ctx.now_ms;
            set_pairs(ctx.db(), pairs.iter().map(|(k, v)| (&k[..], &v[..])), now);
        })
    });
    futures::future::join_all(futs).await;
}

fn mset(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        if args.len().is_multiple_of(2) {
            return err::arity("mset");
        }
        let keys: Vec<Bytes> = args[1..].iter().step_by(2).cloned().collect();
        if let Some(r) = one_shard(c, &keys, mset_keyed, &args).await {
            return r;
        }
        let tx = c.lock_keys(&keys).await;
        apply_pairs(&tx, pairs_by_shard(c, &args, &keys)).await;
        drop(tx);
        OK
    })
}

fn msetnx(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        if args.len().is_multiple_of(2) {
            return err::arity("msetnx");
        }
        let keys: Vec<Bytes> = args[1..].iter().step_by(2).cloned().collect();
        if let Some(r) = one_shard(c, &keys, msetnx_keyed, &args).await {
            return r;
        }
        let tx = c.lock_keys(&keys).await;
        let groups = pairs_by_shard(c, &args, &keys);
        // Phase one: does any key exist? The locks keep the answer valid
        // until phase two has written every shard.
        let checks = groups.iter().map(|(shard, pairs)| {
            let ks: Vec<Bytes> = pairs.iter().map(|(k, _)| k.clone()).collect();
            tx.run(*shard, move |ctx| {
                let now = ctx.now_ms;
                let db = ctx.db();
                ks.iter().any(|k| db.lookup_write(k, now).is_some())
            })
        });
        if futures::future::join_all(checks)
            .await
            .into_iter()
            .any(|found| found)
        {
            return Reply::Int(0);
        }
        apply_pairs(&tx, groups).await;
        drop(tx);
        Reply::Int(1)
    })
}

// ---------------------------------------------------------------------------
// LCS
// ---------------------------------------------------------------------------

/// A key's value as LCS sees it: missing keys read as empty strings; None
/// for a non-string value.
fn lcs_input(ctx: &mut Ctx<'_>, key: &[u8]) -> Option<Bytes> {
    match read(ctx, key) {
        None => Some(Bytes::new()),
        Some(e) => e.value.as_string().map(|s| s.to_bytes()),
    }
}

fn lcs_keyed(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let a = lcs_input(ctx, &args[1]);
    let b = lcs_input(ctx, &args[2]);
    let max = max_bulk_len(ctx);
    lcs_reply(a, b, args, max)
}

fn lcs(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let keys: Vec<Bytes> = args[1..3].to_vec();
        if let Some(r) = one_shard(c, &keys, lcs_keyed, &args).await {
            return r;
        }
        // Read both values atomically, then compute here.
        let tx = c.lock_keys(&keys).await;
        let reads = keys.iter().map(|k| {
            let k = k.clone();
            tx.run(c.shard_of(&k), move |ctx| lcs_input(ctx, &k))
        });
        let mut vals = futures::future::join_all(reads).await.into_iter();
        drop(tx);
        let (a, b) = (vals.next().flatten(), vals.next().flatten());
        let max = crate::shard::with_shard(|s| {
            s.refresh_config();
            s.config.proto_max_bulk_len()
        });
        lcs_reply(a, b, &args, max)
    })
}

/// Redis's `lcsCommand` once both values are read: option parsing, the
/// dynamic-programming table and the reply (string, LEN, or IDX map).
fn lcs_reply(a: Option<Bytes>, b: Option<Bytes>, args: &[Bytes], max: i64) -> Reply {
    let (Some(a), Some(b)) = (a, b) else {
        return errs::LCS_TYPES;
    };
    let (mut getlen, mut getidx, mut withmatchlen) = (false, false, false);
    let mut minmatchlen: i64 = 0;
    let mut j = 3;
    while j < args.len() {
        let o = &args[j][..];
        let more = args.len() - 1 - j;
        if kw(o, "idx") {
            getidx = true;
        } else if kw(o, "len") {
            getlen = true;
        } else if kw(o, "withmatchlen") {
            withmatchlen = true;
        } else if kw(o, "minmatchlen") && more > 0 {
            match arg_i64(&args[j + 1]) {
                Ok(n) => minmatchlen = n.max(0),
                Err(r) => return r,
            }
            j += 1;
        } else {
            return err::SYNTAX;
        }
        j += 1;
    }
    if getlen && getidx {
        return errs::LCS_LEN_AND_IDX;
    }
    if a.len() >= u32::MAX as usize - 1 || b.len() >= u32::MAX as usize - 1 {
        return errs::LCS_TOO_LONG;
    }
    let (alen, blen) = (a.len(), b.len());
    let cells = (alen as u64 + 1) * (blen as u64 + 1);
    let bytes = cells.checked_mul(4);
    match bytes {
        Some(n) if n <= max as u64 => {}
        Some(_) => return errs::LCS_OVER_LIMIT,
        None => return errs::LCS_ALLOC,
    }
    let mut table: Vec<u32> = Vec::new();
    if table.try_reserve_exact(cells as usize).is_err() {
        return errs::LCS_ALLOC;
    }
    table.resize(cells as usize, 0);
    let w = blen + 1;
    for i in 1..=alen {
        for jj in 1..=blen {
            table[i * w + jj] = if a[i - 1] == b[jj - 1] {
                table[(i - 1) * w + jj - 1] + 1
            } else {
                table[(i - 1) * w + jj].max(table[i * w + jj - 1])
            };
        }
    }
    let total = table[alen * w + blen];
    let compute = getidx || !getlen;
    let mut result = vec![0u8; if compute { total as usize } else { 0 }];
    let mut matches: Vec<Reply> = Vec::new();
    let mut idx = total as usize;
    // `astart == alen` means no range is open.
    let (mut astart, mut aend, mut bstart, mut bend) = (alen, 0usize, 0usize, 0usize);
    let (mut i, mut jj) = (alen, blen);
    while compute && i > 0 && jj > 0 {
        let mut emit = false;
        if a[i - 1] == b[jj - 1] {
            result[idx - 1] = a[i - 1];
            if astart == alen {
                astart = i - 1;
                aend = i - 1;
                bstart = jj - 1;
                bend = jj - 1;
            } else if astart == i && bstart == jj {
                // Contiguous with the open range: extend it backwards.
                astart -= 1;
                bstart -= 1;
            } else {
                emit = true;
            }
            if astart == 0 || bstart == 0 {
                emit = true;
            }
            idx -= 1;
            i -= 1;
            jj -= 1;
        } else {
            if table[(i - 1) * w + jj] > table[i * w + jj - 1] {
                i -= 1;
            } else {
                jj -= 1;
            }
            if astart != alen {
                emit = true;
            }
        }
        // Redis computes this in uint32_t, so it wraps when no range is open.
        let match_len = (aend as u32).wrapping_sub(astart as u32).wrapping_add(1);
        if emit {
            if (minmatchlen == 0 || match_len as i64 >= minmatchlen) && getidx {
                let mut m = vec![
                    Reply::Array(vec![Reply::Int(astart as i64), Reply::Int(aend as i64)]),
                    Reply::Array(vec![Reply::Int(bstart as i64), Reply::Int(bend as i64)]),
                ];
                if withmatchlen {
                    m.push(Reply::Int(match_len as i64));
                }
                matches.push(Reply::Array(m));
            }
            astart = alen;
        }
    }
    if getidx {
        Reply::Map(vec![
            (Reply::bulk(b"matches"), Reply::Array(matches)),
            (Reply::bulk(b"len"), Reply::Int(total as i64)),
        ])
    } else if getlen {
        Reply::Int(total as i64)
    } else {
        Reply::Bulk(Bytes::from(result))
    }
}
