//! Running one command: resolving it in the table, and the bookkeeping
//! every call shares (eviction before a write, INFO commandstats and
//! errorstats, the AOF).
//!
//! The connection's dispatcher runs commands in batches with its own fast
//! paths; [`execute`] runs one command for a client that is inside a
//! transaction (EXEC, a script), whose locks it already holds.

use super::{CallOpts, CommandSpec, Handler, err};
use crate::persistence::aof;
use crate::reply::Reply;
use crate::shard::{Shard, run_on, with_shard};
use crate::transaction::Client;
use bytes::Bytes;
use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// True when maxmemory is set and eviction cannot get under it: commands
/// that may grow memory (DENYOOM) are refused.
pub fn out_of_memory() -> bool {
    with_shard(|s| s.evict.maxmemory != 0 && !crate::shard::evict::perform(s))
}

/// Counts a call refused before it ran in INFO commandstats.
pub fn count_rejected(full: &str) {
    with_shard(|s| {
        s.stats
            .commands
            .entry(full.to_string())
            .or_default()
            .rejected_calls += 1
    });
}

/// Counts an error reply in INFO errorstats.
pub fn count_error(reply: &Reply) {
    let Some(text) = reply.error_text() else {
        return;
    };
    let code = text.split(|&c| c == b' ').next().unwrap_or(b"ERR");
    let code = String::from_utf8_lossy(code).into_owned();
    with_shard(|s| {
        s.stats.total_error_replies += 1;
        *s.stats.errors.entry(code).or_default() += 1;
    });
}

/// `b` as C's `%.*s` prints it: cut at `max` bytes or at a NUL.
fn c_str(b: &[u8], max: usize) -> &[u8] {
    let b = &b[..memchr::memchr(0, b).unwrap_or(b.len())];
    &b[..b.len().min(max)]
}

/// The error for an unknown command, as Redis words it: the name and the
/// first arguments are copied raw, each cut like C's `%.*s` (at the length
/// limit or at a NUL byte).
fn unknown_command(args: &[Bytes]) -> Reply {
    let mut msg = b"ERR unknown command '".to_vec();
    msg.extend_from_slice(c_str(&args[0], 128));
    msg.extend_from_slice(b"', with args beginning with: ");
    let start = msg.len();
    for a in &args[1..] {
        let used = msg.len() - start;
        if used >= 128 {
            break;
        }
        msg.push(b'\'');
        msg.extend_from_slice(c_str(a, 128 - used));
        msg.extend_from_slice(b"' ");
    }
    Reply::ErrorBytes(msg.into())
}

/// A command's full name for statistics: `get`, or `config|get` for a
/// subcommand (allocated only then).
pub type FullName = Cow<'static, str>;

/// Resolves a command (and subcommand) and checks arity, auth and loading.
/// A failure carries the name to count a rejected call under, if known.
pub fn resolve(
    client: &Client,
    args: &[Bytes],
) -> Result<(&'static CommandSpec, FullName), (Option<String>, Reply)> {
    let Some(spec) = super::lookup(&args[0]) else {
        return Err((None, unknown_command(args)));
    };
    let (spec, full) = if let Handler::Container(bare) = spec.handler {
        if args.len() < 2 {
            return match bare {
                Some(_) => Ok((spec, Cow::Borrowed(spec.name))),
                None => Err((Some(spec.name.into()), err::arity(spec.name))),
            };
        }
        match super::lookup_sub(spec, &args[1]) {
            Some(sub) => (sub, Cow::Owned(format!("{}|{}", spec.name, sub.name))),
            None => {
                let mut msg = b"ERR unknown subcommand '".to_vec();
                msg.extend_from_slice(c_str(&args[1], 128));
                msg.extend_from_slice(
                    format!("'. Try {} HELP.", spec.name.to_uppercase()).as_bytes(),
                );
                return Err((Some(spec.name.into()), Reply::ErrorBytes(msg.into())));
            }
        }
    } else {
        (spec, Cow::Borrowed(spec.name))
    };
    if !spec.arity_ok(args.len()) {
        return Err((Some(full.to_string()), err::arity(&full)));
    }
    if !client.authenticated && !spec.has(super::flags::NO_AUTH) {
        return Err((
            Some(full.into_owned()),
            Reply::StaticError("NOAUTH Authentication required."),
        ));
    }
    // Client 0 is the AOF replay, which is the loading.
    if client.id != 0
        && !spec.has(super::flags::LOADING)
        && client.global.rdb.loading.load(Ordering::Acquire)
    {
        return Err((
            Some(full.into_owned()),
            Reply::StaticError("LOADING Redis is loading the dataset in memory"),
        ));
    }
    Ok((spec, full))
}

/// Runs a keyed handler on this shard, recording its stats.
pub fn call_keyed(
    shard: &mut Shard,
    spec: &'static CommandSpec,
    opts: CallOpts,
    f: super::KeyedFn,
    args: &[Bytes],
    full: &str,
) -> Reply {
    let start = Instant::now();
    if shard.evict.maxmemory != 0
        && !crate::shard::evict::perform(shard)
        && spec.has(super::flags::DENYOOM)
    {
        shard
            .stats
            .commands
            .entry(full.to_string())
            .or_default()
            .rejected_calls += 1;
        return crate::shard::evict::OOM;
    }
    let log = spec.has(super::flags::WRITE) && shard.global.aof.active.load(Ordering::Relaxed);
    if log {
        aof::clear_override();
    }
    let reply = opts.call(shard, |ctx| f(ctx, args));
    record(shard, full, start, &reply);
    if log && !reply.is_error() {
        let global = shard.global;
        let seq = global.aof.next_seq();
        let idx = spec.key_indices(args);
        let effects = if idx.is_empty() {
            None
        } else {
            aof::keyed_effects(shard, opts.db, spec.name, args, &idx, &reply)
        };
        match effects {
            Some(cmds) => aof::log(global, seq, opts.db, &cmds),
            None => aof::log_args(global, seq, opts.db, args),
        }
    }
    reply
}

/// Counts a call in INFO commandstats.
pub fn record(shard: &mut Shard, full: &str, start: Instant, reply: &Reply) {
    shard.stats.total_commands_processed += 1;
    let usec = start.elapsed().as_micros() as u64;
    let stat = match shard.stats.commands.get_mut(full) {
        Some(s) => s,
        None => shard.stats.commands.entry(full.to_string()).or_default(),
    };
    stat.calls += 1;
    stat.usec += usec;
    if reply.is_error() {
        stat.failed_calls += 1;
    }
}

/// Runs one resolved command for `c`, which is inside a transaction that
/// holds every key the command may touch (so nothing waits for locks). The
/// AOF effects go to the transaction's capture ([`Client::aof_capture`]).
pub async fn execute(
    c: &mut Client,
    spec: &'static CommandSpec,
    full: FullName,
    args: Vec<Bytes>,
) -> Reply {
    let reply = match spec.handler {
        Handler::Keyed(f) => {
            let idx = spec.key_indices(&args);
            let target = idx.first().map_or(c.shard, |&i| c.shard_of(&args[i]));
            if idx.iter().any(|&i| c.shard_of(&args[i]) != target) {
                return err::CROSSSLOT;
            }
            let opts = c.opts();
            let run =
                move |s: &mut Shard| aof::capture(|| call_keyed(s, spec, opts, f, &args, &full));
            let (reply, effects) = if target == c.shard {
                with_shard(run)
            } else {
                run_on(c.global, target, run).await
            };
            c.aof_capture.extend(effects);
            reply
        }
        Handler::Local(f) | Handler::Container(Some(f)) => {
            let start = Instant::now();
            let reply = f(c, &args);
            with_shard(|s| record(s, &full, start, &reply));
            reply
        }
        Handler::Async(f) => {
            if spec.has(super::flags::DENYOOM) && out_of_memory() {
                count_rejected(&full);
                return crate::shard::evict::OOM;
            }
            let start = Instant::now();
            let log = (spec.has(super::flags::WRITE)
                && c.global.aof.active.load(Ordering::Relaxed))
            .then(|| args.clone());
            let db = c.db;
            let reply = f(c, args).await;
            if let Some(a) = log
                && !reply.is_error()
            {
                c.aof_capture
                    .push((db, aof::async_effects(spec.name, &a, &reply)));
            }
            with_shard(|s| record(s, &full, start, &reply));
            reply
        }
        Handler::Container(None) => unreachable!("containers resolve to subcommands"),
    };
    if reply.is_error() {
        count_error(&reply);
    }
    reply
}
