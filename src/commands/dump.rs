//! DUMP and RESTORE: values serialized in Redis's RDB format (see
//! `crate::persistence`), so payloads move between ringkv and Redis 7.0.

use super::flags::*;
use super::{CommandSpec, Ctx, Handler, arg_i64, err, is, keys};
use crate::persistence::Thresholds;
use crate::persistence::rdb::{WriteOptions, dump_payload, load_dump_payload, verify_dump_payload};
use crate::persistence::value_glue::{from_rdb, to_rdb};
use crate::reply::{OK, Reply};
use crate::shard::Shard;
use crate::shard::db::{LRU_CLOCK_MAX, lru_clock};
use crate::shard::value::{Entry, SmallBytes};
use bytes::Bytes;

/// The DUMP/RESTORE family.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec::new(
        "dump",
        2,
        READONLY,
        keys(1, 1, 1),
        "generic",
        "2.6.0",
        "Return a serialized version of the value stored at the specified key.",
        Handler::Keyed(dump),
    )
    .acl(&["keyspace", "read", "slow"]),
    CommandSpec::new(
        "restore",
        -4,
        WRITE | DENYOOM,
        keys(1, 1, 1),
        "generic",
        "2.6.0",
        "Create a key using the provided serialized value, previously obtained using DUMP.",
        Handler::Keyed(restore),
    )
    .acl(&["keyspace", "write", "slow", "dangerous"]),
];

const BUSYKEY: Reply = Reply::StaticError("BUSYKEY Target key name already exists.");
const BAD_TTL: Reply = Reply::StaticError("ERR Invalid TTL value, must be >= 0");
const BAD_PAYLOAD: Reply = Reply::StaticError("ERR DUMP payload version or checksum are wrong");
const BAD_FORMAT: Reply = Reply::StaticError("ERR Bad data format");
const BAD_IDLE: Reply = Reply::StaticError("ERR Invalid IDLETIME value, must be >= 0");
const BAD_FREQ: Reply = Reply::StaticError("ERR Invalid FREQ value, must be >= 0 and <= 255");

/// How DUMP shapes its output: `rdbcompression` (default yes) and the list
/// node size.
fn write_options(s: &Shard) -> WriteOptions {
    WriteOptions::from_config(&s.config)
}

fn lfu_policy(s: &Shard) -> bool {
    s.evict.policy.is_lfu()
}

/// DUMP key: the value's RDB serialization, or nil.
fn dump(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let opts = write_options(ctx.shard);
    let thresholds = Thresholds::from_config(&ctx.shard.config);
    let (now, touch) = (ctx.now_ms, ctx.touch);
    match ctx.db().lookup(&args[1], now, touch) {
        Some(e) => {
            let (value, enc) = to_rdb(&e.value, &thresholds);
            Reply::Bulk(Bytes::from(dump_payload(&value, enc, &opts)))
        }
        None => Reply::Nil,
    }
}

/// RESTORE options.
struct RestoreOpts {
    replace: bool,
    absttl: bool,
    idle: Option<i64>,
    freq: Option<i64>,
}

fn parse_restore_opts(args: &[Bytes]) -> Result<RestoreOpts, Reply> {
    let mut o = RestoreOpts {
        replace: false,
        absttl: false,
        idle: None,
        freq: None,
    };
    let mut j = 4;
    while j < args.len() {
        let more = args.len() - j - 1;
        let a = &args[j];
        if is(a, "replace") {
            o.replace = true;
        } else if is(a, "absttl") {
            o.absttl = true;
        } else if is(a, "idletime") && more >= 1 && o.freq.is_none() {
            let v = arg_i64(&args[j + 1])?;
            if v < 0 {
                return Err(BAD_IDLE);
            }
            o.idle = Some(v);
            j += 1;
        } else if is(a, "freq") && more >= 1 && o.idle.is_none() {
            let v = arg_i64(&args[j + 1])?;
            if !(0..=255).contains(&v) {
                return Err(BAD_FREQ);
            }
            o.freq = Some(v);
            j += 1;
        } else {
            return Err(err::SYNTAX);
        }
        j += 1;
    }
    Ok(o)
}

/// The access clock of a restored key, as `objectSetLRUOrLFU` sets it: the
/// LFU counter under an LFU policy, the idle time otherwise.
fn restored_lru(lfu: bool, o: &RestoreOpts, now_ms: u64) -> u32 {
    if lfu {
        let minutes = ((now_ms / 60_000) & 65535) as u32;
        let counter = o
            .freq
            .map_or(crate::shard::evict::LFU_INIT_VAL, |f| f as u32);
        return (minutes << 8) | counter;
    }
    let clock = lru_clock(now_ms) as i64;
    match o.idle {
        Some(idle) => {
            let abs = clock - idle;
            if abs < 0 {
                ((clock + (LRU_CLOCK_MAX / 2) as i64) % LRU_CLOCK_MAX as i64) as u32
            } else {
                abs as u32
            }
        }
        None => clock as u32,
    }
}

/// RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f].
fn restore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let o = match parse_restore_opts(args) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let now = ctx.now_ms;
    let key = &args[1];
    if !o.replace && ctx.db().contains(key, now) {
        return BUSYKEY;
    }
    let ttl = match arg_i64(&args[2]) {
        Ok(t) if t < 0 => return BAD_TTL,
        Ok(t) => t,
        Err(e) => return e,
    };
    let payload = &args[3];
    if !verify_dump_payload(payload) {
        return BAD_PAYLOAD;
    }
    let thresholds = Thresholds::from_config(&ctx.shard.config);
    let obj = match load_dump_payload(payload, &thresholds) {
        Ok(obj) => obj,
        Err(_) => return BAD_FORMAT,
    };
    let lfu = lfu_policy(ctx.shard);
    if o.replace {
        ctx.db().delete(key, now);
    }
    let expire_at = if ttl != 0 && !o.absttl {
        ttl.saturating_add(now as i64)
    } else {
        ttl
    };
    if expire_at != 0 && expire_at <= now as i64 {
        // Already expired: nothing is created (an old key was replaced).
        return OK;
    }
    let value = from_rdb(obj, &thresholds);
    ctx.db().insert_entry(Entry {
        key: SmallBytes::new(key),
        value,
        expire_at: expire_at as u64,
        lru: restored_lru(lfu, &o, now),
        snap_mark: false,
    });
    OK
}
