//! MemoryStore: capped, newest-first record logs per key (issue 6).
//!
//! A namespace `ns` and a key own two ordinary Redis keys, on the same slot:
//! - `mstore:{T}:<len(ns)>:<ns>:<key>:log`, a list of records, newest first,
//!   each `<timestamp-ms>:<data>`; its TTL is renewed by every write;
//! - `mstore:{T}:<len(ns)>:<ns>:<key>:cfg`, a hash with the fields
//!   `expire-ms` and `max-records`, without TTL (the configuration persists).
//!
//! `T` is the hash tag that gives both keys the slot of `key` itself (see
//! [`storage_prefix`]), so the command table declares `key` (argument 2) as
//! the command's key: routing, cluster clients and ACL key patterns all treat
//! the commands like any single-key command, and every command but
//! MSTORE.KEYS runs atomically on the shard that owns the key, in one hop.
//! Because only ordinary types are used, RDB, AOF, DUMP/RESTORE, SCAN, TYPE
//! and Redis tooling see plain lists and hashes.

use super::{
    CommandSpec, Ctx, Handler, NO_KEYS, arg_i64, err, flags::*, is, keys, list, parse_cursor,
};
use crate::glob;
use crate::parse::parse_i64;
use crate::reply::{OK, Reply};
use crate::shard::db::Db;
use crate::shard::routing::{hash_tag, key_slot};
use crate::shard::unix_ms;
use crate::shard::value::Value;
use crate::transaction::Client;
use crate::types::hash::HashValue;
use crate::types::list::ListValue;
use bytes::Bytes;
use futures::future::LocalBoxFuture;
use std::cell::RefCell;

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

const fn cmd(
    name: &'static str,
    arity: i32,
    flags: u32,
    summary: &'static str,
    acl: &'static [&'static str],
    f: super::KeyedFn,
) -> CommandSpec {
    CommandSpec::new(
        name,
        arity,
        flags,
        keys(2, 2, 1),
        "mstore",
        "7.0.0",
        summary,
        Handler::Keyed(f),
    )
    .acl(acl)
}

/// The MemoryStore commands.
pub static COMMANDS: &[CommandSpec] = &[
    cmd(
        "mstore.create",
        5,
        WRITE | DENYOOM | FAST,
        "Create or replace the configuration of a MemoryStore key",
        W,
        create,
    ),
    cmd(
        "mstore.drop",
        3,
        WRITE | FAST,
        "Remove the configuration of a MemoryStore key, keeping its records",
        W,
        drop_cmd,
    ),
    cmd(
        "mstore.write",
        4,
        WRITE | DENYOOM | FAST,
        "Prepend a record to a configured MemoryStore key, trim it and renew its expiry",
        W,
        write,
    ),
    cmd(
        "mstore.writewith",
        6,
        WRITE | DENYOOM | FAST,
        "Prepend a record to a MemoryStore key with a configuration for this call only",
        W,
        writewith,
    ),
    cmd(
        "mstore.latest",
        -4,
        READONLY,
        "Get the newest records of a MemoryStore key, newest first",
        R_SLOW,
        latest,
    ),
    cmd(
        "mstore.count",
        3,
        READONLY | FAST,
        "Get the number of records of a MemoryStore key",
        R,
        count,
    ),
    cmd(
        "mstore.del",
        3,
        WRITE,
        "Delete the records and the configuration of a MemoryStore key",
        W_SLOW,
        del,
    ),
    cmd(
        "mstore.config",
        3,
        READONLY | FAST,
        "Get the configuration of a MemoryStore key",
        R,
        config,
    ),
    CommandSpec::new(
        "mstore.keys",
        -2,
        READONLY,
        NO_KEYS,
        "mstore",
        "7.0.0",
        "Incrementally list the configured keys of a MemoryStore namespace",
        Handler::Async(keys_cmd),
    )
    .acl(&["read", "keyspace", "slow"]),
];

// ---------------------------------------------------------------------------
// Layout
// ---------------------------------------------------------------------------

/// Suffix of the record list.
pub const LOG: &[u8] = b"log";
/// Suffix of the configuration hash.
pub const CFG: &[u8] = b"cfg";
/// Configuration field: whole-key expiry in ms (0: records never expire).
pub const F_EXPIRE: &[u8] = b"expire-ms";
/// Configuration field: the cap on the number of records.
pub const F_MAX: &[u8] = b"max-records";

/// Writes `mstore:{T}:<len(ns)>:<ns>:<key>:` to `out` (cleared first); the
/// storage keys append [`LOG`] or [`CFG`].
///
/// `T` gives the storage keys the hash slot of `key`: it is `key`'s own hash
/// tag when it has one, else `key` itself; when that cannot be written
/// between braces (an empty key, or a `}` without a valid tag) it is the
/// first short alphanumeric string with the same slot. The length prefix
/// keeps namespaces apart even when they contain `:`.
pub fn storage_prefix(ns: &[u8], key: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(b"mstore:{");
    let tag = hash_tag(key);
    if !tag.is_empty() && !tag.contains(&b'}') {
        out.extend_from_slice(tag);
    } else {
        push_slot_tag(key_slot(key), out);
    }
    out.extend_from_slice(b"}:");
    out.extend_from_slice(itoa::Buffer::new().format(ns.len()).as_bytes());
    out.push(b':');
    out.extend_from_slice(ns);
    out.push(b':');
    out.extend_from_slice(key);
    out.push(b':');
}

/// Appends the first string over `[0-9A-Za-z]` (shortest first) whose hash
/// slot is `slot`. Three characters cover every slot (tested below).
fn push_slot_tag(slot: u16, out: &mut Vec<u8>) {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut buf = [0u8; 3];
    for len in 1..=buf.len() {
        let total = ALPHABET.len().pow(len as u32);
        for mut n in 0..total {
            for b in buf[..len].iter_mut().rev() {
                *b = ALPHABET[n % ALPHABET.len()];
                n /= ALPHABET.len();
            }
            if key_slot(&buf[..len]) == slot {
                out.extend_from_slice(&buf[..len]);
                return;
            }
        }
    }
    unreachable!("every slot has a tag of at most three characters");
}

/// Splits a stored record into its timestamp and data.
pub fn split_record(rec: &[u8]) -> Option<(i64, &[u8])> {
    let colon = memchr::memchr(b':', rec)?;
    Some((parse_i64(&rec[..colon])?, &rec[colon + 1..]))
}

thread_local! {
    /// Scratch space for the storage keys and the record being written.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(256));
}

/// Runs `f` with the storage key of suffix `suffix` for `args[1]` (ns) and
/// `args[2]` (key), and the scratch buffer's tail for further use.
fn with_key<R>(args: &[Bytes], suffix: &[u8], f: impl FnOnce(&mut Vec<u8>, usize) -> R) -> R {
    SCRATCH.with(|s| {
        let mut buf = s.borrow_mut();
        storage_prefix(&args[1], &args[2], &mut buf);
        buf.extend_from_slice(suffix);
        let len = buf.len();
        f(&mut buf, len)
    })
}

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

/// A key's configuration.
#[derive(Clone, Copy)]
struct Config {
    expire_ms: i64,
    max: i64,
}

const OUT_OF_RANGE: Reply = Reply::StaticError("ERR value is out of range, must be positive");
const NOT_CONFIGURED: Reply = Reply::StaticError(
    "NOTCONFIGURED MemoryStore key has no configuration, create it with MSTORE.CREATE or write with MSTORE.WRITEWITH",
);
const BAD_CONFIG: Reply = Reply::StaticError(
    "ERR MemoryStore configuration hash is missing a field or holds a non-integer",
);

/// Parses `expire-ms max-records` as given to CREATE and WRITEWITH.
fn parse_config(name: &str, expire: &[u8], max: &[u8]) -> Result<Config, Reply> {
    let expire_ms = arg_i64(expire)?;
    let max = arg_i64(max)?;
    if expire_ms < 0 {
        return Err(Reply::Error(format!(
            "ERR invalid expire time in '{name}' command"
        )));
    }
    if max < 1 {
        return Err(OUT_OF_RANGE);
    }
    Ok(Config { expire_ms, max })
}

/// The configuration stored at `cfg_key`: `Ok(None)` when missing.
fn stored_config(db: &mut Db, cfg_key: &[u8], now: u64) -> Result<Option<Config>, Reply> {
    let Some(e) = db.peek(cfg_key, now) else {
        return Ok(None);
    };
    let Value::Hash(h) = &e.value else {
        return Err(err::WRONGTYPE);
    };
    let field = |f| h.get(f).and_then(parse_i64);
    match (field(F_EXPIRE), field(F_MAX)) {
        (Some(expire_ms), Some(max)) if expire_ms >= 0 && max >= 1 => {
            Ok(Some(Config { expire_ms, max }))
        }
        _ => Err(BAD_CONFIG),
    }
}

fn create(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let c = tri!(parse_config("mstore.create", &args[3], &args[4]));
    let limits = super::hash::limits(ctx);
    let now = ctx.now_ms;
    let db = ctx.db();
    with_key(args, CFG, |key, _| {
        if db
            .peek(key, now)
            .is_some_and(|e| !matches!(e.value, Value::Hash(_)))
        {
            return err::WRONGTYPE;
        }
        let mut h = HashValue::new();
        let mut n = itoa::Buffer::new();
        h.set(F_EXPIRE, n.format(c.expire_ms).as_bytes(), limits);
        h.set(F_MAX, n.format(c.max).as_bytes(), limits);
        db.set(key, Value::Hash(Box::new(h)), 0, now);
        OK
    })
}

fn drop_cmd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    let db = ctx.db();
    with_key(args, CFG, |key, _| match db.peek(key, now) {
        None => Reply::Int(0),
        Some(e) if !matches!(e.value, Value::Hash(_)) => err::WRONGTYPE,
        Some(_) => Reply::Int(db.delete(key, now).is_some() as i64),
    })
}

fn config(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    let db = ctx.db();
    match tri!(with_key(args, CFG, |key, _| stored_config(db, key, now))) {
        None => Reply::Nil,
        Some(c) => Reply::Map(vec![
            (Reply::bulk(F_EXPIRE), Reply::Int(c.expire_ms)),
            (Reply::bulk(F_MAX), Reply::Int(c.max)),
        ]),
    }
}

// ---------------------------------------------------------------------------
// Writes
// ---------------------------------------------------------------------------

fn write(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    let stored = with_key(args, CFG, |key, _| stored_config(ctx.db(), key, now));
    match tri!(stored) {
        None => NOT_CONFIGURED,
        Some(c) => append(ctx, args, c),
    }
}

fn writewith(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let c = tri!(parse_config("mstore.writewith", &args[4], &args[5]));
    append(ctx, args, c)
}

/// Prepends `<now>:<data>` to the record list, trims it to `c.max` and sets
/// its expiry to `c.expire_ms` from now; replies with the record count.
fn append(ctx: &mut Ctx<'_>, args: &[Bytes], c: Config) -> Reply {
    let (fill, now) = (list::fill(ctx), ctx.now_ms);
    let expire_at = if c.expire_ms > 0 {
        (now as i64).checked_add(c.expire_ms).map(|t| t as u64)
    } else {
        Some(0)
    };
    let Some(expire_at) = expire_at else {
        return Reply::StaticError("ERR invalid expire time in 'mstore.write' command");
    };
    let logging = ctx
        .shard
        .global
        .aof
        .active
        .load(std::sync::atomic::Ordering::Relaxed);
    let db = ctx.db();
    with_key(args, LOG, |buf, key_len| {
        buf.extend_from_slice(itoa::Buffer::new().format(now).as_bytes());
        buf.push(b':');
        buf.extend_from_slice(&args[3]);
        let (key, rec) = buf.split_at(key_len);
        if logging {
            // The AOF replays the effect, with this write's timestamp and
            // absolute expiry, not the command.
            let b = Bytes::copy_from_slice;
            let k = b(key);
            let ttl = if expire_at > 0 {
                vec![
                    b(b"PEXPIREAT"),
                    k.clone(),
                    b(expire_at.to_string().as_bytes()),
                ]
            } else {
                vec![b(b"PERSIST"), k.clone()]
            };
            crate::persistence::aof::set_override(vec![
                vec![b(b"LPUSH"), k.clone(), b(rec)],
                vec![
                    b(b"LTRIM"),
                    k.clone(),
                    b(b"0"),
                    b((c.max - 1).to_string().as_bytes()),
                ],
                ttl,
            ]);
        }
        let len = match tri!(list::list_mut(db, key, now)) {
            Some(l) => {
                l.push(&[rec], true, fill);
                if l.len() > c.max as usize {
                    l.trim(0, c.max as usize, fill);
                    // At the cap the list only ever grows by one record:
                    // keep room for two of this size, not 25%.
                    l.shrink_spare(2 * rec.len() + 8);
                }
                l.len()
            }
            None => {
                let mut l = ListValue::new();
                l.push(&[rec], true, fill);
                db.set(key, Value::List(Box::new(l)), 0, now);
                1
            }
        };
        db.set_expire(key, expire_at);
        Reply::Int(len as i64)
    })
}

fn del(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    let db = ctx.db();
    // Check both types before deleting either.
    let has_log = tri!(with_key(args, LOG, |key, _| list::list_mut(db, key, now)
        .map(|l| l.is_some())));
    let cfg_ok = with_key(args, CFG, |key, _| {
        db.peek(key, now)
            .is_none_or(|e| matches!(e.value, Value::Hash(_)))
    });
    if !cfg_ok {
        return err::WRONGTYPE;
    }
    let removed = if has_log {
        with_key(args, LOG, |key, _| {
            match db.delete(key, now).map(|e| e.value) {
                Some(Value::List(l)) => l.len(),
                _ => 0,
            }
        })
    } else {
        0
    };
    with_key(args, CFG, |key, _| db.delete(key, now));
    Reply::Int(removed as i64)
}

// ---------------------------------------------------------------------------
// Reads
// ---------------------------------------------------------------------------

/// Runs `f` on the record list (None when missing) for a read command.
fn read_log<R>(
    ctx: &mut Ctx<'_>,
    args: &[Bytes],
    f: impl FnOnce(Option<&ListValue>) -> R,
) -> Result<R, Reply> {
    let (now, touch) = (ctx.now_ms, ctx.touch);
    let db = ctx.db();
    with_key(args, LOG, |key, _| match db.lookup(key, now, touch) {
        None => Ok(f(None)),
        Some(e) => match &e.value {
            Value::List(l) => Ok(f(Some(l))),
            _ => Err(err::WRONGTYPE),
        },
    })
}

fn count(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    Reply::Int(tri!(read_log(ctx, args, |l| l.map_or(0, |l| l.len()))) as i64)
}

fn latest(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let n = tri!(arg_i64(&args[3]));
    if n < 1 {
        return OUT_OF_RANGE;
    }
    let with_ts = match &args[4..] {
        [] => false,
        [opt] if is(opt, "withtimestamps") => true,
        _ => return err::SYNTAX,
    };
    let reply = read_log(ctx, args, |l| {
        let Some(l) = l else {
            return Ok(if with_ts {
                Reply::Map(Vec::new())
            } else {
                Reply::Array(Vec::new())
            });
        };
        let end = (n as usize).min(l.len());
        if with_ts {
            let mut out = Vec::with_capacity(end);
            for rec in l.range(0, end) {
                let (ts, data) = split_record(rec).ok_or(BAD_RECORD)?;
                out.push((Reply::bulk(data), Reply::Int(ts)));
            }
            Ok(Reply::Map(out))
        } else {
            let mut out = Vec::with_capacity(end);
            for rec in l.range(0, end) {
                out.push(Reply::bulk(split_record(rec).ok_or(BAD_RECORD)?.1));
            }
            Ok(Reply::Array(out))
        }
    });
    match tri!(reply) {
        Ok(r) | Err(r) => r,
    }
}

const BAD_RECORD: Reply =
    Reply::StaticError("ERR MemoryStore record list holds an element that is not a record");

// ---------------------------------------------------------------------------
// MSTORE.KEYS
// ---------------------------------------------------------------------------

/// MSTORE.KEYS ns [MATCH pattern] [COUNT n] [CURSOR c]: one SCAN-like step
/// over the namespace's configuration hashes on every shard, replying
/// `[next-cursor, [key...]]` (cursor 0 when done).
fn keys_cmd(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let mut count = 10usize;
        let mut pattern: Option<Bytes> = None;
        let mut cursor = 0u64;
        let mut i = 2;
        while i < args.len() {
            if i + 1 >= args.len() {
                return err::SYNTAX;
            }
            let v = &args[i + 1];
            if is(&args[i], "count") {
                match arg_i64(v) {
                    Ok(n) if n >= 1 => count = n as usize,
                    Ok(_) => return err::SYNTAX,
                    Err(e) => return e,
                }
            } else if is(&args[i], "match") {
                pattern = (&v[..] != b"*").then(|| v.clone());
            } else if is(&args[i], "cursor") {
                match parse_cursor(v) {
                    Some(n) => cursor = n,
                    None => return Reply::StaticError("ERR invalid cursor"),
                }
            } else {
                return err::SYNTAX;
            }
            i += 2;
        }
        // The part of a configuration key after the tag: `}:<len>:<ns>:`.
        let mut ns_part = b"}:".to_vec();
        ns_part.extend_from_slice(itoa::Buffer::new().format(args[1].len()).as_bytes());
        ns_part.push(b':');
        ns_part.extend_from_slice(&args[1]);
        ns_part.push(b':');
        let ns_part = Bytes::from(ns_part);
        let db = c.db;
        super::keys::scan_shards(c, cursor, count, move |s, pos, want| {
            scan_shard(&mut s.dbs[db], pos, want, &ns_part, pattern.as_deref())
        })
        .await
    })
}

/// The MemoryStore key named by a configuration key of the namespace whose
/// `}:<len>:<ns>:` part is `ns_part`.
fn config_key_name<'a>(storage: &'a [u8], ns_part: &[u8]) -> Option<&'a [u8]> {
    let rest = storage.strip_prefix(b"mstore:{")?;
    let close = memchr::memchr(b'}', rest)?;
    rest[close..].strip_prefix(ns_part)?.strip_suffix(b":cfg")
}

/// One MSTORE.KEYS step on one shard's database: the matching live keys,
/// how many entries were visited and the next position (None at the end).
fn scan_shard(
    db: &mut Db,
    pos: u64,
    count: usize,
    ns_part: &[u8],
    pattern: Option<&[u8]>,
) -> (Vec<Bytes>, usize, Option<u64>) {
    let now = unix_ms();
    let mut out = Vec::new();
    let mut seen = 0;
    let next = db.dict().scan(pos, count, |e| {
        seen += 1;
        if e.expire_at != 0 && e.expire_at <= now || !matches!(e.value, Value::Hash(_)) {
            return;
        }
        if let Some(name) = config_key_name(&e.key, ns_part)
            && pattern.is_none_or(|p| glob::matches(p, name, false))
        {
            out.push(Bytes::copy_from_slice(name));
        }
    });
    (out, seen, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::routing::SLOTS;

    #[test]
    fn three_characters_cover_every_slot() {
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut seen = vec![false; SLOTS];
        for &a in ALPHABET {
            seen[key_slot(&[a]) as usize] = true;
            for &b in ALPHABET {
                seen[key_slot(&[a, b]) as usize] = true;
                for &c in ALPHABET {
                    seen[key_slot(&[a, b, c]) as usize] = true;
                }
            }
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn storage_keys_share_the_slot_of_the_key() {
        let mut out = Vec::new();
        for key in [
            &b""[..],
            b"plain",
            b"a}b",
            b"{}",
            b"{}x}",
            b"x{y}z",
            b"{t}",
            b"a{b",
            b"}",
        ] {
            for ns in [&b"ns"[..], b"", b"{x}", b"a}:b"] {
                storage_prefix(ns, key, &mut out);
                out.extend_from_slice(LOG);
                assert_eq!(
                    key_slot(&out),
                    key_slot(key),
                    "{:?}",
                    String::from_utf8_lossy(&out)
                );
            }
        }
        storage_prefix(b"myapp", b"user:1", &mut out);
        assert_eq!(out, b"mstore:{user:1}:5:myapp:user:1:");
    }
}
