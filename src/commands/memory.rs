//! MEMORY: USAGE, STATS, DOCTOR, PURGE, MALLOC-STATS and HELP, from the
//! counting allocator ([`crate::alloc`]) and the entries' own sizes.

use super::server::{help, human, rss_bytes};
use super::{CommandSpec, Ctx, Handler, NO_KEYS, arg_i64, err, flags::*, is, keys};
use crate::reply::{OK, Reply};
use crate::shard::{Shard, run_on_all};
use crate::transaction::Client;
use bytes::Bytes;
use futures::future::LocalBoxFuture;

const SLOW: &[&str] = &["slow"];

static MEMORY_SUBS: &[CommandSpec] = &[
    CommandSpec::new(
        "doctor",
        2,
        0,
        NO_KEYS,
        "server",
        "4.0.0",
        "Outputs memory problems report",
        Handler::Async(memory_doctor),
    )
    .acl(SLOW),
    CommandSpec::new(
        "help",
        2,
        LOADING | STALE,
        NO_KEYS,
        "server",
        "4.0.0",
        "Show helpful text about the different subcommands",
        Handler::Local(memory_help),
    )
    .acl(SLOW),
    CommandSpec::new(
        "malloc-stats",
        2,
        0,
        NO_KEYS,
        "server",
        "4.0.0",
        "Show allocator internal stats",
        Handler::Local(memory_malloc_stats),
    )
    .acl(SLOW),
    CommandSpec::new(
        "purge",
        2,
        0,
        NO_KEYS,
        "server",
        "4.0.0",
        "Ask the allocator to release memory",
        Handler::Local(memory_purge),
    )
    .acl(SLOW),
    CommandSpec::new(
        "stats",
        2,
        0,
        NO_KEYS,
        "server",
        "4.0.0",
        "Show memory usage details",
        Handler::Async(memory_stats),
    )
    .acl(SLOW),
    CommandSpec::new(
        "usage",
        -3,
        READONLY,
        keys(2, 2, 1),
        "server",
        "4.0.0",
        "Estimate the memory usage of a key",
        Handler::Keyed(memory_usage),
    )
    .acl(&["read", "slow"]),
];

/// The MEMORY family.
pub static COMMANDS: &[CommandSpec] = &[CommandSpec::new(
    "memory",
    -2,
    0,
    NO_KEYS,
    "server",
    "4.0.0",
    "A container for memory diagnostics commands",
    Handler::Container(None),
)
.acl(SLOW)
.subs(MEMORY_SUBS)];

/// MEMORY USAGE key [SAMPLES n]: the entry's slot in the dict plus every
/// heap byte its key and value own. The size is computed exactly, so SAMPLES
/// is checked as Redis does but not needed.
fn memory_usage(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let mut j = 3;
    while j < args.len() {
        if is(&args[j], "samples") && j + 1 < args.len() {
            match arg_i64(&args[j + 1]) {
                Ok(n) if n < 0 => return err::SYNTAX,
                Ok(_) => {}
                Err(e) => return e,
            }
            j += 2;
        } else {
            return err::SYNTAX;
        }
    }
    let now = ctx.now_ms;
    match ctx.db().peek(&args[2], now) {
        Some(e) => Reply::Int((std::mem::size_of_val(e) + e.heap_size()) as i64),
        None => Reply::Nil,
    }
}

/// What one shard contributes to MEMORY STATS and DOCTOR.
#[derive(Clone)]
struct ShardMem {
    allocated: i64,
    startup: i64,
    keys: u64,
    expires: u64,
    /// Per database: (keys, bytes of the dictionary's table).
    dbs: Vec<(u64, u64)>,
}

async fn gather(c: &Client) -> Vec<ShardMem> {
    run_on_all(c.global, |s: &mut Shard| ShardMem {
        allocated: crate::alloc::thread_allocated() as i64,
        startup: s.evict.startup.unwrap_or(0),
        keys: s.dbs.iter().map(|d| d.len() as u64).sum(),
        expires: s.dbs.iter().map(|d| d.expires() as u64).sum(),
        dbs: s
            .dbs
            .iter()
            .map(|d| (d.len() as u64, d.dict().table_bytes() as u64))
            .collect(),
    })
    .await
}

/// Totals over the shards: (allocated, startup, keys, keys with a TTL).
fn totals(m: &[ShardMem]) -> (u64, u64, u64, u64) {
    let alloc = (m.iter().map(|s| s.allocated).sum::<i64>() + crate::alloc::exited_threads() as i64)
        .max(0) as u64;
    let startup = m.iter().map(|s| s.startup).sum::<i64>().max(0) as u64;
    (
        alloc,
        startup.min(alloc),
        m.iter().map(|s| s.keys).sum(),
        m.iter().map(|s| s.expires).sum(),
    )
}

fn memory_stats(c: &mut Client, _args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let mem = gather(c).await;
        let (alloc, startup, keys, expires) = totals(&mem);
        // Each database's table overhead, as Redis's `db.N` entries (TTLs
        // live in the entries and the timing wheel, so `expires` costs 0).
        let mut per_db = vec![(0u64, 0u64); mem.first().map_or(0, |m| m.dbs.len())];
        for m in &mem {
            for (acc, (k, b)) in per_db.iter_mut().zip(&m.dbs) {
                acc.0 += k;
                acc.1 += b;
            }
        }
        let peak = crate::shard::evict::peak().max(alloc);
        let rss = rss_bytes();
        let dataset = alloc - startup;
        let pct = |a: u64, b: u64| {
            if b == 0 {
                0.0
            } else {
                a as f64 * 100.0 / b as f64
            }
        };
        let int = |k: &'static str, v: u64| (Reply::Simple(k), Reply::Int(v as i64));
        let dbl = |k: &'static str, v: f64| (Reply::Simple(k), Reply::Double(v));
        let mut fields = vec![
            int("peak.allocated", peak),
            int("total.allocated", alloc),
            int("startup.allocated", startup),
        ];
        for (db, (k, bytes)) in per_db.iter().enumerate() {
            if *k > 0 {
                fields.push((
                    Reply::Bulk(Bytes::from(format!("db.{db}"))),
                    Reply::Map(vec![
                        int("overhead.hashtable.main", *bytes),
                        int("overhead.hashtable.expires", 0),
                    ]),
                ));
            }
        }
        fields.extend([
            int("keys.count", keys),
            int("keys.with-expire", expires),
            int("keys.bytes-per-key", dataset.checked_div(keys).unwrap_or(0)),
            int("dataset.bytes", dataset),
            dbl("dataset.percentage", pct(dataset, alloc)),
            dbl("peak.percentage", pct(alloc, peak)),
            int("rss.bytes", rss),
            dbl(
                "fragmentation",
                if alloc == 0 {
                    0.0
                } else {
                    rss as f64 / alloc as f64
                },
            ),
            int("fragmentation.bytes", rss.saturating_sub(alloc)),
        ]);
        Reply::Map(fields)
    })
}

fn memory_doctor(c: &mut Client, _args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let (alloc, startup, keys, _) = totals(&gather(c).await);
        let peak = crate::shard::evict::peak().max(alloc);
        let rss = rss_bytes();
        let text = if alloc - startup < 5 * 1024 * 1024 || keys == 0 {
            "Hi Sam, this instance is empty or is using very little memory, my issues detector can't be used in these conditions. Please, leave for your mission on Earth and fill it with some data. The new Sam and I will be back to our programming as soon as I finished rebooting.".to_string()
        } else {
            let mut issues = Vec::new();
            if peak as f64 > alloc as f64 * 1.5 {
                issues.push(format!(
                    " * Peak memory: in the past this instance used more than 150% the memory that is currently using. The allocator is normally not able to release memory after a peak, so you can expect to see a big fragmentation ratio, however this is actually harmless and is only due to the memory peak, and if the Redis instance Resident Set Size (RSS) is currently bigger than expected, the memory will be used as soon as you fill the Redis instance with more data. If the memory peak was only occasional and you want to try to reclaim memory, please try the MEMORY PURGE command, otherwise the only other option is to shutdown and restart the instance.\n\n(peak {}, now {})\n",
                    human(peak),
                    human(alloc)
                ));
            }
            if rss as f64 > alloc as f64 * 1.4 {
                issues.push(format!(
                    " * High total RSS: This instance has a memory fragmentation and RSS overhead greater than 1.4 (RSS {}, used {}). MEMORY PURGE returns freed pages to the system.\n",
                    human(rss),
                    human(alloc)
                ));
            }
            if issues.is_empty() {
                "Hi Sam, I can't find any memory issue in your instance. I can only account for what occurs on this base.".to_string()
            } else {
                format!(
                    "Sam, I detected a few issues in this Redis instance memory implants:\n\n{}\nI'm here to keep you safe, Sam. I want to help you.",
                    issues.join("\n")
                )
            }
        };
        Reply::Verbatim(text)
    })
}

/// MEMORY PURGE: returns the allocator's dirty pages to the system.
fn memory_purge(_c: &mut Client, _args: &[Bytes]) -> Reply {
    crate::alloc::purge();
    OK
}

/// MEMORY MALLOC-STATS: jemalloc's statistics report, as Redis prints it.
fn memory_malloc_stats(_c: &mut Client, _args: &[Bytes]) -> Reply {
    Reply::Bulk(Bytes::from(crate::alloc::stats_text()))
}

fn memory_help(_c: &mut Client, _args: &[Bytes]) -> Reply {
    help(
        "MEMORY",
        &[
            "DOCTOR",
            "    Return memory problems reports.",
            "MALLOC-STATS",
            "    Return internal statistics report from the memory allocator.",
            "PURGE",
            "    Attempt to purge dirty pages for reclamation by the allocator.",
            "STATS",
            "    Return information about the memory usage of the server.",
            "USAGE <key> [SAMPLES <count>]",
            "    Return memory in bytes used by <key> and its value. Nested values are",
            "    sampled up to <count> times (default: 5, 0 means sample all).",
        ],
    )
}
