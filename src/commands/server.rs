//! Server commands: COMMAND, CONFIG, INFO, DBSIZE, FLUSHDB, FLUSHALL, SWAPDB,
//! TIME, LASTSAVE and SHUTDOWN.
//!
//! COMMAND's replies are generated from the command table (see
//! [`super::CommandSpec`]); INFO gathers its counters from every shard with
//! [`run_on_all`]; CONFIG reads and writes [`Global::config`] and makes every
//! shard reload its cached copy before replying, so a setting is in force
//! everywhere once CONFIG SET returns.

use super::{CommandSpec, Handler, KeySpec, NO_KEYS, err, flags::*, is};
use crate::config::{self, ConfigError, OptionSpec};
use crate::parse::parse_i64;
use crate::reply::{OK, Reply};
use crate::shard::dict::Dict;
use crate::shard::{Global, Shard, ShardStats, run_on_all, unix_ms};
use crate::transaction::Client;
use bytes::Bytes;
use futures::future::LocalBoxFuture;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

/// The server family's commands.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec::new(
        "command",
        -1,
        LOADING | STALE,
        NO_KEYS,
        "server",
        "2.8.13",
        "Get array of Redis command details",
        Handler::Container(Some(command)),
    )
    .acl(&["connection"])
    .subs(COMMAND_SUBS),
    CommandSpec::new(
        "config",
        -2,
        0,
        NO_KEYS,
        "server",
        "2.0.0",
        "A container for server configuration commands",
        Handler::Container(None),
    )
    .subs(CONFIG_SUBS),
    CommandSpec::new(
        "dbsize",
        1,
        READONLY | FAST,
        NO_KEYS,
        "server",
        "1.0.0",
        "Return the number of keys in the selected database",
        Handler::Async(dbsize),
    )
    .acl(&["keyspace"]),
    CommandSpec::new(
        "flushall",
        -1,
        WRITE,
        NO_KEYS,
        "server",
        "1.0.0",
        "Remove all keys from all databases",
        Handler::Async(flushall),
    )
    .acl(&["keyspace", "dangerous"]),
    CommandSpec::new(
        "flushdb",
        -1,
        WRITE,
        NO_KEYS,
        "server",
        "1.0.0",
        "Remove all keys from the current database",
        Handler::Async(flushdb),
    )
    .acl(&["keyspace", "dangerous"]),
    CommandSpec::new(
        "info",
        -1,
        LOADING | STALE,
        NO_KEYS,
        "server",
        "1.0.0",
        "Get information and statistics about the server",
        Handler::Async(info),
    )
    .acl(&["dangerous"]),
    CommandSpec::new(
        "lastsave",
        1,
        LOADING | STALE | FAST,
        NO_KEYS,
        "server",
        "1.0.0",
        "Get the UNIX time stamp of the last successful save to disk",
        Handler::Local(lastsave),
    )
    .acl(&["admin", "dangerous"]),
    CommandSpec::new(
        "shutdown",
        -1,
        ADMIN | NOSCRIPT | LOADING | STALE | NO_MULTI | ALLOW_BUSY,
        NO_KEYS,
        "server",
        "1.0.0",
        "Synchronously save the dataset to disk and then shut down the server",
        Handler::Async(shutdown),
    ),
    CommandSpec::new(
        "swapdb",
        3,
        WRITE | FAST,
        NO_KEYS,
        "server",
        "4.0.0",
        "Swaps two Redis databases",
        Handler::Async(swapdb),
    )
    .acl(&["keyspace", "dangerous"]),
    CommandSpec::new(
        "time",
        1,
        LOADING | STALE | FAST,
        NO_KEYS,
        "server",
        "2.6.0",
        "Return the current server time",
        Handler::Local(time),
    ),
];

static COMMAND_SUBS: &[CommandSpec] = &[
    CommandSpec::new(
        "count",
        2,
        LOADING | STALE,
        NO_KEYS,
        "server",
        "2.8.13",
        "Get total number of Redis commands",
        Handler::Local(command_count),
    )
    .acl(&["connection"]),
    CommandSpec::new(
        "docs",
        -2,
        LOADING | STALE,
        NO_KEYS,
        "server",
        "7.0.0",
        "Get array of specific Redis command documentation",
        Handler::Local(command_docs),
    )
    .acl(&["connection"]),
    CommandSpec::new(
        "getkeys",
        -4,
        LOADING | STALE,
        NO_KEYS,
        "server",
        "2.8.13",
        "Extract keys given a full Redis command",
        Handler::Local(command_getkeys),
    )
    .acl(&["connection"]),
    CommandSpec::new(
        "getkeysandflags",
        -4,
        LOADING | STALE,
        NO_KEYS,
        "server",
        "7.0.0",
        "Extract keys and access flags given a full Redis command",
        Handler::Local(command_getkeysandflags),
    )
    .acl(&["connection"]),
    CommandSpec::new(
        "help",
        2,
        LOADING | STALE,
        NO_KEYS,
        "server",
        "5.0.0",
        "Show helpful text about the different subcommands",
        Handler::Local(command_help),
    )
    .acl(&["connection"]),
    CommandSpec::new(
        "info",
        -2,
        LOADING | STALE,
        NO_KEYS,
        "server",
        "2.8.13",
        "Get array of specific Redis command details, or all when no argument is given.",
        Handler::Local(command_info),
    )
    .acl(&["connection"]),
    CommandSpec::new(
        "list",
        -2,
        LOADING | STALE,
        NO_KEYS,
        "server",
        "7.0.0",
        "Get an array of Redis command names",
        Handler::Local(command_list),
    )
    .acl(&["connection"]),
];

static CONFIG_SUBS: &[CommandSpec] = &[
    CommandSpec::new(
        "get",
        -3,
        ADMIN | NOSCRIPT | LOADING | STALE,
        NO_KEYS,
        "server",
        "2.0.0",
        "Get the values of configuration parameters",
        Handler::Local(config_get),
    ),
    CommandSpec::new(
        "set",
        -4,
        ADMIN | NOSCRIPT | LOADING | STALE,
        NO_KEYS,
        "server",
        "2.0.0",
        "Set configuration parameters to the given values",
        Handler::Async(config_set),
    ),
    CommandSpec::new(
        "resetstat",
        2,
        ADMIN | NOSCRIPT | LOADING | STALE,
        NO_KEYS,
        "server",
        "2.0.0",
        "Reset the stats returned by INFO",
        Handler::Async(config_resetstat),
    ),
    CommandSpec::new(
        "help",
        2,
        LOADING | STALE,
        NO_KEYS,
        "server",
        "5.0.0",
        "Show helpful text about the different subcommands",
        Handler::Local(config_help),
    ),
];

/// A help reply in Redis's `addReplyHelp` format.
pub(crate) fn help(name: &str, lines: &[&str]) -> Reply {
    let mut out = vec![Reply::Status(format!(
        "{name} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    ))];
    out.extend(lines.iter().map(|l| Reply::Status(l.to_string())));
    out.push(Reply::Simple("HELP"));
    out.push(Reply::Simple("    Prints this help."));
    Reply::Array(out)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---------------------------------------------------------------------------
// COMMAND

/// COMMAND is not a plain container because bare `COMMAND` lists every
/// command; it resolves its subcommands itself, with the same arity and
/// "unknown subcommand" errors as the dispatcher.
/// COMMAND without a subcommand: every command's details.
fn command(_c: &mut Client, _args: &[Bytes]) -> Reply {
    Reply::Array(super::all().map(|cmd| info_entry(None, cmd)).collect())
}

fn command_count(_c: &mut Client, _args: &[Bytes]) -> Reply {
    Reply::Int(super::all().count() as i64)
}

/// Finds a command or, for `parent|sub`, a subcommand. Returns the parent
/// (for subcommands) and the spec.
fn find_command(name: &[u8]) -> Option<(Option<&'static CommandSpec>, &'static CommandSpec)> {
    match name.iter().position(|&b| b == b'|') {
        None => super::lookup(name).map(|c| (None, c)),
        Some(i) => {
            let parent = super::lookup(&name[..i])?;
            let sub = super::lookup_sub(parent, &name[i + 1..])?;
            Some((Some(parent), sub))
        }
    }
}

fn full_name(parent: Option<&CommandSpec>, cmd: &CommandSpec) -> String {
    match parent {
        Some(p) => format!("{}|{}", p.name, cmd.name),
        None => cmd.name.to_string(),
    }
}

/// ACL categories in Redis's bit order, which COMMAND INFO follows.
const ACL_ORDER: &[&str] = &[
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
];

/// A command's ACL categories: the table's own, the data type's category
/// implied by the group, and those Redis derives from the flags
/// (`setImplicitACLCategories`: write, read, admin+dangerous, fast or slow,
/// blocking).
pub fn acl_categories(cmd: &CommandSpec) -> Vec<&'static str> {
    let mut cats: Vec<&'static str> = cmd.acl.to_vec();
    let by_group = match cmd.group {
        "generic" => Some("keyspace"),
        "string" => Some("string"),
        "list" => Some("list"),
        "hash" => Some("hash"),
        "set" => Some("set"),
        "sorted-set" | "sorted_set" => Some("sortedset"),
        "bitmap" => Some("bitmap"),
        "hyperloglog" => Some("hyperloglog"),
        "geo" => Some("geo"),
        "stream" => Some("stream"),
        "pubsub" => Some("pubsub"),
        "connection" => Some("connection"),
        "transactions" => Some("transaction"),
        "scripting" => Some("scripting"),
        _ => None,
    };
    cats.extend(by_group);
    if cmd.has(WRITE) {
        cats.push("write");
    }
    if cmd.has(READONLY) {
        cats.push("read");
    }
    if cmd.has(ADMIN) {
        cats.extend(["admin", "dangerous"]);
    }
    if cmd.has(BLOCKING) {
        cats.push("blocking");
    }
    cats.push(if cmd.has(FAST) { "fast" } else { "slow" });
    let rank = |c: &str| ACL_ORDER.iter().position(|o| *o == c).unwrap_or(usize::MAX);
    cats.sort_by_key(|c| rank(c));
    cats.dedup();
    cats
}

fn flag_names(cmd: &CommandSpec) -> Vec<&'static str> {
    NAMES
        .iter()
        .filter(|(bit, _)| cmd.flags & bit != 0)
        .map(|(_, n)| *n)
        .collect()
}

/// Access flags of a command's keys, derived from the command's flags.
fn key_flags(cmd: &CommandSpec) -> &'static [&'static str] {
    if cmd.has(READONLY) {
        &["RO", "access"]
    } else if cmd.has(WRITE) {
        &["RW", "update"]
    } else {
        &["RW"]
    }
}

fn s(v: &str) -> Reply {
    Reply::bulk(v.as_bytes())
}

/// Redis 7 key specs, derived from the legacy (first, last, step) triple:
/// an `index` begin-search and a `range` find-keys.
fn key_specs(cmd: &CommandSpec) -> Vec<Reply> {
    let KeySpec { first, last, step } = cmd.keys;
    if first <= 0 {
        return Vec::new();
    }
    let flags = key_flags(cmd).iter().map(|f| Reply::Simple(f)).collect();
    let lastkey = if last < 0 { last } else { last - first };
    vec![Reply::Map(vec![
        (s("flags"), Reply::Set(flags)),
        (
            s("begin_search"),
            Reply::Map(vec![
                (s("type"), s("index")),
                (
                    s("spec"),
                    Reply::Map(vec![(s("index"), Reply::Int(first as i64))]),
                ),
            ]),
        ),
        (
            s("find_keys"),
            Reply::Map(vec![
                (s("type"), s("range")),
                (
                    s("spec"),
                    Reply::Map(vec![
                        (s("lastkey"), Reply::Int(lastkey as i64)),
                        (s("keystep"), Reply::Int(step as i64)),
                        (s("limit"), Reply::Int(0)),
                    ]),
                ),
            ]),
        ),
    ])]
}

/// One COMMAND INFO entry: name, arity, flags, first, last, step, ACL
/// categories, tips, key specs, subcommands.
fn info_entry(parent: Option<&CommandSpec>, cmd: &'static CommandSpec) -> Reply {
    let subs = if cmd.subcommands.is_empty() {
        Reply::Set(vec![])
    } else {
        Reply::Array(
            cmd.subcommands
                .iter()
                .map(|sc| info_entry(Some(cmd), sc))
                .collect(),
        )
    };
    Reply::Array(vec![
        s(&full_name(parent, cmd)),
        Reply::Int(cmd.arity as i64),
        Reply::Set(flag_names(cmd).into_iter().map(Reply::Simple).collect()),
        Reply::Int(cmd.keys.first as i64),
        Reply::Int(cmd.keys.last as i64),
        Reply::Int(cmd.keys.step as i64),
        Reply::Set(
            acl_categories(cmd)
                .into_iter()
                .map(|c| Reply::Status(format!("@{c}")))
                .collect(),
        ),
        Reply::Set(vec![]),
        Reply::Set(key_specs(cmd)),
        subs,
    ])
}

fn command_info(_c: &mut Client, args: &[Bytes]) -> Reply {
    if args.len() == 2 {
        return Reply::Array(super::all().map(|cmd| info_entry(None, cmd)).collect());
    }
    Reply::Array(
        args[2..]
            .iter()
            .map(|name| match find_command(name) {
                Some((parent, cmd)) => info_entry(parent, cmd),
                None => Reply::Nil,
            })
            .collect(),
    )
}

/// One COMMAND DOCS entry: summary, since, group and, for containers, the
/// subcommands' docs. ringkv's table has no complexity or argument
/// descriptions, which are optional fields.
fn docs_entry(parent: Option<&CommandSpec>, cmd: &'static CommandSpec) -> (Reply, Reply) {
    let mut doc = vec![
        (s("summary"), s(cmd.summary)),
        (s("since"), s(cmd.since)),
        (s("group"), s(cmd.group)),
    ];
    if !cmd.subcommands.is_empty() {
        doc.push((
            s("subcommands"),
            Reply::Map(
                cmd.subcommands
                    .iter()
                    .map(|sc| docs_entry(Some(cmd), sc))
                    .collect(),
            ),
        ));
    }
    (s(&full_name(parent, cmd)), Reply::Map(doc))
}

fn command_docs(_c: &mut Client, args: &[Bytes]) -> Reply {
    if args.len() == 2 {
        return Reply::Map(super::all().map(|cmd| docs_entry(None, cmd)).collect());
    }
    Reply::Map(
        args[2..]
            .iter()
            .filter_map(|name| find_command(name))
            .map(|(parent, cmd)| docs_entry(parent, cmd))
            .collect(),
    )
}

/// Every command and subcommand with its full name, parents first.
fn all_with_subs() -> impl Iterator<Item = (String, &'static CommandSpec)> {
    super::all().flat_map(|cmd| {
        std::iter::once((cmd.name.to_string(), cmd)).chain(
            cmd.subcommands
                .iter()
                .map(move |sc| (full_name(Some(cmd), sc), sc)),
        )
    })
}

fn command_list(_c: &mut Client, args: &[Bytes]) -> Reply {
    let names: Vec<String> = match args.len() {
        2 => all_with_subs().map(|(n, _)| n).collect(),
        5 if is(&args[2], "filterby") => {
            let arg = &args[4];
            if is(&args[3], "module") {
                // ringkv has no modules.
                Vec::new()
            } else if is(&args[3], "aclcat") {
                all_with_subs()
                    .filter(|(_, cmd)| acl_categories(cmd).iter().any(|c| is(arg, c)))
                    .map(|(n, _)| n)
                    .collect()
            } else if is(&args[3], "pattern") {
                all_with_subs()
                    .filter(|(n, _)| crate::glob::matches(arg, n.as_bytes(), true))
                    .map(|(n, _)| n)
                    .collect()
            } else {
                return err::SYNTAX;
            }
        }
        _ => return err::SYNTAX,
    };
    Reply::Array(names.iter().map(|n| s(n)).collect())
}

/// Resolves the command of COMMAND GETKEYS and finds its key positions, with
/// Redis's errors.
fn getkeys(args: &[Bytes]) -> Result<(&'static CommandSpec, Vec<usize>), Reply> {
    let call = &args[2..];
    let invalid = Reply::StaticError("ERR Invalid command specified");
    let top = super::lookup(&call[0]).ok_or(invalid.clone())?;
    let cmd = if top.subcommands.is_empty() || call.len() == 1 {
        top
    } else {
        super::lookup_sub(top, &call[1]).ok_or(invalid)?
    };
    if cmd.keys.first <= 0 && cmd.keys_fn.is_none() {
        return Err(Reply::StaticError("ERR The command has no key arguments"));
    }
    if !cmd.arity_ok(call.len()) {
        return Err(Reply::StaticError(
            "ERR Invalid number of arguments specified for command",
        ));
    }
    let idx = cmd.key_indices(call);
    if idx.is_empty() {
        return Err(Reply::StaticError(
            "ERR Invalid arguments specified for command",
        ));
    }
    Ok((cmd, idx))
}

fn command_getkeys(_c: &mut Client, args: &[Bytes]) -> Reply {
    match getkeys(args) {
        Ok((_, idx)) => Reply::Array(
            idx.iter()
                .map(|&i| Reply::Bulk(args[2 + i].clone()))
                .collect(),
        ),
        Err(e) => e,
    }
}

fn command_getkeysandflags(_c: &mut Client, args: &[Bytes]) -> Reply {
    match getkeys(args) {
        Ok((cmd, idx)) => Reply::Array(
            idx.iter()
                .map(|&i| {
                    Reply::Array(vec![
                        Reply::Bulk(args[2 + i].clone()),
                        Reply::Set(key_flags(cmd).iter().map(|f| Reply::Simple(f)).collect()),
                    ])
                })
                .collect(),
        ),
        Err(e) => e,
    }
}

fn command_help(_c: &mut Client, _args: &[Bytes]) -> Reply {
    help(
        "COMMAND",
        &[
            "(no subcommand)",
            "    Return details about all Redis commands.",
            "COUNT",
            "    Return the total number of commands in this Redis server.",
            "LIST",
            "    Return a list of all commands in this Redis server.",
            "INFO [<command-name> ...]",
            "    Return details about multiple Redis commands.",
            "    If no command names are given, documentation details for all",
            "    commands are returned.",
            "DOCS [<command-name> ...]",
            "    Return documentation details about multiple Redis commands.",
            "    If no command names are given, documentation details for all",
            "    commands are returned.",
            "GETKEYS <full-command>",
            "    Return the keys from a full Redis command.",
            "GETKEYSANDFLAGS <full-command>",
            "    Return the keys and the access flags from a full Redis command.",
        ],
    )
}

// ---------------------------------------------------------------------------
// CONFIG

fn has_glob(p: &[u8]) -> bool {
    p.iter().any(|c| matches!(c, b'*' | b'?' | b'['))
}

/// CONFIG GET: a name without glob characters is looked up directly and
/// echoed as given (as Redis does); patterns match option names without
/// regard to case.
fn config_get(c: &mut Client, args: &[Bytes]) -> Reply {
    let cfg = c.global.config();
    let mut seen: Vec<&'static str> = Vec::new();
    let mut out = Vec::new();
    for pat in &args[2..] {
        if !has_glob(pat) {
            let name = lossy(pat);
            if let Some(spec) = config::spec(&name)
                && !seen.contains(&spec.name)
            {
                seen.push(spec.name);
                out.push((s(&name), s(cfg.get(spec.name).unwrap_or(""))));
            }
            continue;
        }
        for (name, value) in cfg.iter() {
            if !seen.contains(&name) && crate::glob::matches(pat, name.as_bytes(), true) {
                seen.push(name);
                out.push((s(name), s(value)));
            }
        }
    }
    Reply::Map(out)
}

/// CONFIG SET name value [name value ...], all or nothing as in Redis 7:
/// names are checked first (unknown, immutable, duplicate), then every value,
/// and only then is anything written. Every shard reloads its copy of the
/// configuration before the reply.
fn config_set(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        if args.len() % 2 == 1 {
            return err::SYNTAX;
        }
        match validate_set(&args[2..]) {
            Err(e) => e,
            Ok(values) => {
                let global = c.global;
                let snapshot = {
                    let mut cfg = global.config.write().unwrap();
                    for (spec, v) in &values {
                        cfg.set(spec.name, v, true).expect("value validated above");
                    }
                    cfg.clone()
                };
                global.config_gen.fetch_add(1, Ordering::AcqRel);
                run_on_all(global, |s: &mut Shard| s.refresh_config()).await;
                let names: Vec<&str> = values.iter().map(|(spec, _)| spec.name).collect();
                config::apply_runtime(&snapshot, &names);
                if names.contains(&"appendfsync") {
                    let f = snapshot.get("appendfsync").unwrap_or("everysec");
                    global
                        .aof
                        .set_fsync(crate::persistence::aof::Fsync::parse(f));
                }
                if names.contains(&"appendonly") {
                    let on = snapshot.get("appendonly") == Some("yes");
                    let active = global.aof.active.load(Ordering::Acquire);
                    if on && !active && c.in_transaction() {
                        // The EXEC holds the shards the first rewrite must
                        // lock: start once it ends.
                        glommio::spawn_local(async move {
                            if let Err(e) = crate::persistence::aof::start_logging(global).await {
                                tracing::warn!("can't turn the AOF on: {e}");
                            }
                        })
                        .detach();
                    } else if on && !active {
                        if let Err(e) = crate::persistence::aof::start_logging(global).await {
                            tracing::warn!("can't turn the AOF on: {e}");
                        }
                    } else if !on && active {
                        crate::persistence::aof::stop_logging(global);
                    }
                }
                OK
            }
        }
    })
}

/// Checks CONFIG SET's pairs with Redis's precedence of errors; returns the
/// canonical values to write.
fn validate_set(pairs: &[Bytes]) -> Result<Vec<(&'static OptionSpec, String)>, Reply> {
    let mut unknown: Option<String> = None;
    let mut failed: Option<(String, String)> = None;
    let mut specs: Vec<(&'static OptionSpec, String)> = Vec::new();
    for pair in pairs.chunks(2) {
        let name = lossy(&pair[0]);
        let Some(spec) = config::spec(&name) else {
            if unknown.is_none() && failed.is_none() {
                unknown = Some(name);
            }
            continue;
        };
        if unknown.is_some() || failed.is_some() {
            continue;
        }
        if !spec.mutable {
            let why = if config::PROTECTED.contains(&spec.name) {
                "can't set protected config"
            } else {
                "can't set immutable config"
            };
            failed = Some((name, why.into()));
            continue;
        }
        if specs.iter().any(|(s, _)| std::ptr::eq(*s, spec)) {
            failed = Some((name, "duplicate parameter".into()));
            continue;
        }
        specs.push((spec, lossy(&pair[1])));
    }
    if let Some(name) = unknown {
        return Err(Reply::Error(format!(
            "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
        )));
    }
    let fail = |name: &str, why: &str| {
        Reply::Error(format!(
            "ERR CONFIG SET failed (possibly related to argument '{name}') - {why}"
        ))
    };
    if let Some((name, why)) = failed {
        return Err(fail(&name, &why));
    }
    specs
        .into_iter()
        .map(|(spec, v)| match config::canonical(spec, &v) {
            Ok(canon) => Ok((spec, canon)),
            Err(ConfigError::BadValue(_, why)) => Err(fail(spec.name, &why)),
            Err(e) => Err(fail(spec.name, &e.to_string())),
        })
        .collect()
}

fn config_resetstat(c: &mut Client, _args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        run_on_all(c.global, |s: &mut Shard| {
            s.stats = ShardStats::default();
            for db in s.dbs.iter_mut() {
                db.stats = Default::default();
            }
            crate::shard::lazyfree::reset_stats();
            crate::shard::expiry::reset_stats();
            s.evict.evicted_keys = 0;
        })
        .await;
        OK
    })
}

fn config_help(_c: &mut Client, _args: &[Bytes]) -> Reply {
    help(
        "CONFIG",
        &[
            "GET <pattern>",
            "    Return parameters matching the glob-like <pattern> and their values.",
            "SET <directive> <value>",
            "    Set the configuration <directive> to <value>.",
            "RESETSTAT",
            "    Reset statistics reported by the INFO command.",
        ],
    )
}

// ---------------------------------------------------------------------------
// Keyspace-wide commands

/// DBSIZE sums the shards' counts. With several shards it first locks them
/// all, like SWAPDB and FLUSHALL do, so that it counts a consistent cut: never
/// half of a SWAPDB or of a multi-shard write.
fn dbsize(c: &mut Client, _args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let db = c.db;
        let tx = if c.global.nshards > 1 {
            Some(c.lock_all().await)
        } else {
            None
        };
        let counts = run_on_all(c.global, move |s: &mut Shard| s.dbs[db].len()).await;
        drop(tx);
        Reply::Int(counts.into_iter().sum::<usize>() as i64)
    })
}

/// Parses FLUSHALL/FLUSHDB's optional `ASYNC|SYNC`; true means async.
fn flush_mode(args: &[Bytes]) -> Result<bool, Reply> {
    match args.len() {
        1 => Ok(false),
        2 if is(&args[1], "sync") => Ok(false),
        2 if is(&args[1], "async") => Ok(true),
        _ => Err(err::SYNTAX),
    }
}

/// Empties database `db` (or all with `None`) on every shard, atomically:
/// every shard is locked first, so no client sees a partly flushed keyspace.
async fn flush(c: &mut Client, db: Option<usize>, lazy: bool) {
    let tx = c.lock_all().await;
    run_on_all(c.global, move |s: &mut Shard| {
        let dicts: Vec<Dict> = match db {
            Some(i) => vec![s.dbs[i].clear()],
            None => s.dbs.iter_mut().map(|d| d.clear()).collect(),
        };
        if lazy {
            crate::shard::lazyfree::free_dicts(dicts);
        }
    })
    .await;
    drop(tx);
}

fn flushall(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        match flush_mode(&args) {
            Ok(lazy) => {
                flush(c, None, lazy).await;
                OK
            }
            Err(e) => e,
        }
    })
}

fn flushdb(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        match flush_mode(&args) {
            Ok(lazy) => {
                let db = c.db;
                flush(c, Some(db), lazy).await;
                OK
            }
            Err(e) => e,
        }
    })
}

/// Parses a DB index as Redis's `getIntFromObject` (a 32-bit integer).
fn db_index(arg: &[u8]) -> Option<i64> {
    parse_i64(arg).filter(|n| i32::try_from(*n).is_ok())
}

/// SWAPDB a b: swaps the two databases on every shard while all shards are
/// locked, so the swap is atomic for every client.
fn swapdb(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let Some(a) = db_index(&args[1]) else {
            return Reply::StaticError("ERR invalid first DB index");
        };
        let Some(b) = db_index(&args[2]) else {
            return Reply::StaticError("ERR invalid second DB index");
        };
        let dbs = crate::shard::with_shard(|s| s.dbs.len()) as i64;
        if a < 0 || a >= dbs || b < 0 || b >= dbs {
            return err::DB_RANGE;
        }
        let (a, b) = (a as usize, b as usize);
        let tx = c.lock_all().await;
        run_on_all(c.global, move |s: &mut Shard| {
            if a != b {
                let now = crate::shard::unix_ms();
                let (x, y) = (a.min(b), a.max(b));
                let (lo, hi) = s.dbs.split_at_mut(y);
                lo[x].touch_all_watched(Some(&hi[0]), now);
                hi[0].touch_all_watched(Some(&lo[x]), now);
            }
            s.dbs.swap(a, b);
            // Blocked and watching clients stay with their database index,
            // as in Redis; the blocked ones are served if the swapped-in data
            // can serve them.
            if a != b {
                let (x, y) = (a.min(b), a.max(b));
                let (lo, hi) = s.dbs.split_at_mut(y);
                std::mem::swap(&mut lo[x].blocked, &mut hi[0].blocked);
                lo[x].swap_watchers(&mut hi[0]);
            }
            for db in [a, b] {
                let keys: Vec<Vec<u8>> = s.dbs[db].blocked.keys().cloned().collect();
                for k in keys {
                    s.dbs[db].mark_ready(&k);
                }
            }
            crate::shard::blocking::serve_ready(s);
        })
        .await;
        drop(tx);
        OK
    })
}

fn time(_c: &mut Client, _args: &[Bytes]) -> Reply {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Reply::Array(vec![
        s(&now.as_secs().to_string()),
        s(&now.subsec_micros().to_string()),
    ])
}

fn lastsave(c: &mut Client, _args: &[Bytes]) -> Reply {
    Reply::Int(c.global.lastsave.load(Ordering::Relaxed) as i64)
}

/// SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]. Saves the RDB file first
/// with SAVE, or when save points are set and NOSAVE is not given; if that
/// save fails (and FORCE is not given) the server keeps running and replies
/// with an error, as Redis. Otherwise it raises SIGTERM, which the binary's
/// signal thread turns into a clean shutdown, and, like Redis, never replies.
fn shutdown(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let (mut save, mut nosave, mut other, mut abort) = (false, false, false, false);
        let mut force = false;
        for a in &args[1..] {
            if is(a, "nosave") {
                nosave = true;
            } else if is(a, "save") {
                save = true;
            } else if is(a, "now") {
                other = true;
            } else if is(a, "force") {
                other = true;
                force = true;
            } else if is(a, "abort") {
                abort = true;
            } else {
                return err::SYNTAX;
            }
        }
        if (abort && (save || nosave || other)) || (save && nosave) {
            return err::SYNTAX;
        }
        if abort {
            return Reply::StaticError("ERR No shutdown in progress.");
        }
        tracing::warn!("User requested shutdown...");
        let points = !c.global.config().save_points().is_empty();
        if (save || points)
            && !nosave
            && let Err(e) = crate::persistence::save::save_for_shutdown(c.global).await
            && !force
        {
            tracing::warn!("Error trying to save the DB, can't exit: {e}");
            return Reply::StaticError("ERR Errors trying to SHUTDOWN. Check logs.");
        }
        c.global.shutting_down.store(true, Ordering::SeqCst);
        // SAFETY: sends a signal to this very process.
        unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
        futures::future::pending::<Reply>().await
    })
}

// ---------------------------------------------------------------------------
// INFO

/// What one shard contributes to INFO.
#[derive(Default)]
struct ShardInfo {
    stats: ShardStats,
    /// Per database: keys, keys with a TTL, average TTL in ms.
    dbs: Vec<(usize, usize, u64)>,
    hits: u64,
    misses: u64,
    expired: u64,
    /// Bytes held by the dicts and their entries (only when asked for).
    memory: isize,
    max_qbuf: usize,
    lazy_pending: u64,
    lazyfreed: u64,
    /// Writes counted by the databases.
    dirty: u64,
    expiry: crate::shard::expiry::ExpiryStats,
    evicted: u64,
}

fn gather(s: &mut Shard) -> ShardInfo {
    let now = unix_ms();
    let mut out = ShardInfo {
        stats: s.stats.clone(),
        lazy_pending: crate::shard::lazyfree::pending(),
        lazyfreed: crate::shard::lazyfree::freed(),
        expiry: crate::shard::expiry::stats(),
        ..Default::default()
    };
    for db in &s.dbs {
        out.dbs.push((db.len(), db.expires(), db.avg_ttl(now)));
        out.hits += db.stats.keyspace_hits;
        out.misses += db.stats.keyspace_misses;
        out.expired += db.stats.expired_keys;
        out.dirty += db.dirty;
    }
    out.memory = crate::alloc::thread_allocated();
    out.evicted = s.evict.evicted_keys;
    out.max_qbuf = s
        .clients
        .values()
        .map(|c| c.borrow().qbuf)
        .max()
        .unwrap_or(0);
    out
}

/// INFO sections in Redis's order; `true` when part of the default set.
const SECTIONS: &[(&str, bool)] = &[
    ("server", true),
    ("clients", true),
    ("memory", true),
    ("persistence", true),
    ("stats", true),
    ("replication", true),
    ("cpu", true),
    ("modules", true),
    ("commandstats", false),
    ("errorstats", true),
    ("cluster", true),
    ("keyspace", true),
];

/// Which sections INFO's arguments select, as Redis 7's
/// `genInfoSectionDict`: `default`, `all` (everything but modules),
/// `everything`, or names; unknown names select nothing.
fn selected_sections(args: &[Bytes]) -> Vec<&'static str> {
    let mut want: Vec<&'static str> = Vec::new();
    let mut add = |n: &'static str| {
        if !want.contains(&n) {
            want.push(n);
        }
    };
    if args.len() == 1 {
        SECTIONS
            .iter()
            .filter(|(_, d)| *d)
            .for_each(|(n, _)| add(n));
    }
    for a in &args[1..] {
        if is(a, "default") {
            SECTIONS
                .iter()
                .filter(|(_, d)| *d)
                .for_each(|(n, _)| add(n));
        } else if is(a, "all") {
            SECTIONS
                .iter()
                .filter(|(n, _)| *n != "modules")
                .for_each(|(n, _)| add(n));
        } else if is(a, "everything") {
            SECTIONS.iter().for_each(|(n, _)| add(n));
        } else if let Some((n, _)) = SECTIONS.iter().find(|(n, _)| is(a, n)) {
            add(n);
        }
    }
    want
}

fn info(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let want = selected_sections(&args);
        let shards = run_on_all(c.global, gather).await;
        let mut out = String::new();
        for (name, _) in SECTIONS {
            if !want.contains(name) {
                continue;
            }
            if !out.is_empty() {
                out.push_str("\r\n");
            }
            write_section(&mut out, name, c.global, &shards);
        }
        Reply::Verbatim(out)
    })
}

/// Redis's `bytesToHuman`.
pub(crate) fn human(n: u64) -> String {
    let n = n as f64;
    const K: f64 = 1024.0;
    if n < K {
        format!("{n}B")
    } else if n < K * K {
        format!("{:.2}K", n / K)
    } else if n < K * K * K {
        format!("{:.2}M", n / (K * K))
    } else if n < K * K * K * K {
        format!("{:.2}G", n / (K * K * K))
    } else {
        format!("{:.2}T", n / (K * K * K * K))
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as u64 }
}

/// Resident set size from /proc/self/statm.
pub(crate) fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|t| t.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * page_size())
        .unwrap_or(0)
}

fn total_system_memory() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    (pages.max(0) as u64) * page_size()
}

fn os_name() -> String {
    // SAFETY: uname fills a plain struct of NUL-terminated arrays.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return "Linux".into();
        }
        let f = |a: &[libc::c_char]| {
            std::ffi::CStr::from_ptr(a.as_ptr())
                .to_string_lossy()
                .into_owned()
        };
        format!("{} {} {}", f(&u.sysname), f(&u.release), f(&u.machine))
    }
}

fn rusage(who: libc::c_int) -> (String, String) {
    // SAFETY: getrusage fills a plain struct.
    let r = unsafe {
        let mut r: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut r);
        r
    };
    let t = |tv: libc::timeval| format!("{}.{:06}", tv.tv_sec, tv.tv_usec);
    (t(r.ru_stime), t(r.ru_utime))
}

fn write_section(out: &mut String, name: &str, g: &'static Global, shards: &[ShardInfo]) {
    let cfg = crate::shard::with_shard(|s| s.config.clone());
    let sum = |f: &dyn Fn(&ShardInfo) -> u64| shards.iter().map(f).sum::<u64>();
    macro_rules! field {
        ($k:expr, $v:expr) => {
            let _ = write!(out, "{}:{}\r\n", $k, $v);
        };
    }
    match name {
        "server" => {
            out.push_str("# Server\r\n");
            let now = unix_ms();
            let uptime = g.started.elapsed().as_secs();
            field!("redis_version", crate::REDIS_VERSION);
            field!("ringkv_version", env!("CARGO_PKG_VERSION"));
            field!("redis_mode", "standalone");
            field!("os", os_name());
            field!("arch_bits", usize::BITS);
            field!("multiplexing_api", "io_uring");
            field!("process_id", std::process::id());
            field!("process_supervised", "no");
            field!("run_id", g.run_id);
            field!("tcp_port", g.port.load(Ordering::Relaxed));
            field!(
                "server_time_usec",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_micros())
                    .unwrap_or(0)
            );
            field!("uptime_in_seconds", uptime);
            field!("uptime_in_days", uptime / 86400);
            field!("hz", cfg.hz());
            field!("configured_hz", cfg.hz());
            field!("lru_clock", crate::shard::db::lru_clock(now));
            field!(
                "executable",
                std::env::current_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            );
            field!("config_file", cfg.config_file());
            field!("shards", g.nshards);
        }
        "clients" => {
            out.push_str("# Clients\r\n");
            field!(
                "connected_clients",
                g.connected_clients.load(Ordering::Relaxed)
            );
            field!("cluster_connections", 0);
            field!("maxclients", cfg.maxclients());
            field!(
                "client_recent_max_input_buffer",
                shards.iter().map(|s| s.max_qbuf).max().unwrap_or(0)
            );
        }
        "memory" => {
            out.push_str("# Memory\r\n");
            let used = (shards.iter().map(|s| s.memory).sum::<isize>()
                + crate::alloc::exited_threads())
            .max(0) as u64;
            let rss = rss_bytes();
            let total = total_system_memory();
            field!("used_memory", used);
            field!("used_memory_human", human(used));
            field!("used_memory_rss", rss);
            field!("used_memory_rss_human", human(rss));
            field!("total_system_memory", total);
            field!("total_system_memory_human", human(total));
            // jemalloc's view, with Redis's ratios: unused room in active
            // pages (frag) and resident pages not active (rss).
            let a = crate::alloc::allocator_stats();
            field!("allocator_allocated", a.allocated);
            field!("allocator_active", a.active);
            field!("allocator_resident", a.resident);
            let ratio = |num: usize, den: usize| {
                format!(
                    "{:.2}",
                    if den > 0 {
                        num as f64 / den as f64
                    } else {
                        0.0
                    }
                )
            };
            field!("allocator_frag_ratio", ratio(a.active, a.allocated));
            field!("allocator_frag_bytes", a.active as i64 - a.allocated as i64);
            field!("allocator_rss_ratio", ratio(a.resident, a.active));
            field!("allocator_rss_bytes", a.resident as i64 - a.active as i64);
            field!(
                "mem_fragmentation_ratio",
                ratio(rss as usize, used as usize)
            );
            let maxmemory = cfg.int("maxmemory").max(0) as u64;
            field!("maxmemory", maxmemory);
            field!("maxmemory_human", human(maxmemory));
            field!(
                "maxmemory_policy",
                cfg.get("maxmemory-policy").unwrap_or("noeviction")
            );
            field!("mem_allocator", crate::alloc::ALLOCATOR);
            field!("lazyfree_pending_objects", sum(&|s| s.lazy_pending));
            field!("lazyfreed_objects", sum(&|s| s.lazyfreed));
        }
        "persistence" => {
            crate::persistence::info::write_section(out, g, sum(&|s| s.dirty));
        }
        "stats" => {
            out.push_str("# Stats\r\n");
            field!(
                "total_connections_received",
                sum(&|s| s.stats.total_connections_received)
            );
            field!(
                "total_commands_processed",
                sum(&|s| s.stats.total_commands_processed)
            );
            field!("total_net_input_bytes", sum(&|s| s.stats.net_input_bytes));
            field!("total_net_output_bytes", sum(&|s| s.stats.net_output_bytes));
            field!(
                "rejected_connections",
                sum(&|s| s.stats.rejected_connections)
            );
            field!("expired_keys", sum(&|s| s.expired));
            let stale = shards.iter().map(|s| s.expiry.stale_perc).sum::<f64>();
            field!(
                "expired_stale_perc",
                format!("{:.2}", stale / shards.len().max(1) as f64)
            );
            field!(
                "expired_time_cap_reached_count",
                sum(&|s| s.expiry.time_cap_reached)
            );
            field!(
                "expire_cycle_cpu_milliseconds",
                sum(&|s| s.expiry.cpu_us) / 1000
            );
            field!("evicted_keys", sum(&|s| s.evicted));
            field!("keyspace_hits", sum(&|s| s.hits));
            field!("keyspace_misses", sum(&|s| s.misses));
            field!("total_error_replies", sum(&|s| s.stats.total_error_replies));
        }
        "replication" => {
            out.push_str("# Replication\r\n");
            field!("role", "master");
            field!("connected_slaves", 0);
        }
        "cpu" => {
            out.push_str("# CPU\r\n");
            let (sys, user) = rusage(libc::RUSAGE_SELF);
            let (csys, cuser) = rusage(libc::RUSAGE_CHILDREN);
            field!("used_cpu_sys", sys);
            field!("used_cpu_user", user);
            field!("used_cpu_sys_children", csys);
            field!("used_cpu_user_children", cuser);
        }
        "modules" => out.push_str("# Modules\r\n"),
        "commandstats" => {
            out.push_str("# Commandstats\r\n");
            let mut merged: BTreeMap<&str, crate::shard::CommandStat> = BTreeMap::new();
            for sh in shards {
                for (name, st) in &sh.stats.commands {
                    let m = merged.entry(name.as_str()).or_default();
                    m.calls += st.calls;
                    m.usec += st.usec;
                    m.rejected_calls += st.rejected_calls;
                    m.failed_calls += st.failed_calls;
                }
            }
            for (name, st) in merged {
                if st.calls == 0 && st.rejected_calls == 0 && st.failed_calls == 0 {
                    continue;
                }
                let per = if st.calls > 0 {
                    st.usec as f64 / st.calls as f64
                } else {
                    0.0
                };
                let _ = write!(
                    out,
                    "cmdstat_{name}:calls={},usec={},usec_per_call={per:.2},rejected_calls={},failed_calls={}\r\n",
                    st.calls, st.usec, st.rejected_calls, st.failed_calls
                );
            }
        }
        "errorstats" => {
            out.push_str("# Errorstats\r\n");
            let mut merged: BTreeMap<&str, u64> = BTreeMap::new();
            for sh in shards {
                for (code, n) in &sh.stats.errors {
                    *merged.entry(code.as_str()).or_default() += n;
                }
            }
            for (code, n) in merged {
                let _ = write!(out, "errorstat_{code}:count={n}\r\n");
            }
        }
        "cluster" => {
            out.push_str("# Cluster\r\n");
            field!("cluster_enabled", 0);
        }
        "keyspace" => {
            out.push_str("# Keyspace\r\n");
            let ndb = shards.first().map(|s| s.dbs.len()).unwrap_or(0);
            for i in 0..ndb {
                let keys: usize = shards.iter().map(|s| s.dbs[i].0).sum();
                if keys == 0 {
                    continue;
                }
                let expires: usize = shards.iter().map(|s| s.dbs[i].1).sum();
                // Average over shards, weighted by their keys with a TTL.
                let ttl_sum: u128 = shards
                    .iter()
                    .map(|s| s.dbs[i].2 as u128 * s.dbs[i].1 as u128)
                    .sum();
                let avg = if expires > 0 {
                    (ttl_sum / expires as u128) as u64
                } else {
                    0
                };
                let _ = write!(out, "db{i}:keys={keys},expires={expires},avg_ttl={avg}\r\n");
            }
        }
        _ => {}
    }
}
