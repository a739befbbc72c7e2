//! Scripting: EVAL, EVALSHA, EVAL_RO, EVALSHA_RO, SCRIPT, FCALL, FCALL_RO
//! and FUNCTION.
//!
//! Each shard thread has a Lua interpreter ([`Engine`]); the server-wide
//! script cache and function libraries live in
//! [`crate::shard::scripts::Registry`], which every interpreter follows.
//!
//! A script runs on its *home* shard, the shard of its first key (or the
//! connection's shard when it declares none), synchronously, as a script
//! runs in Redis. Before it starts it locks whole every shard that owns one
//! of its declared keys, plus its home shard (with `lua-lock-all-shards
//! yes`, every shard), so no other command interleaves with it there. Its
//! `redis.call`s may touch any key of those shards, declared or not; a key
//! on a shard it did not lock is refused with a clear error. A call for
//! another locked shard is a synchronous hop: that shard is not running
//! anything else, since the script holds it. When the script's only shard
//! is the connection's own and no transaction holds anything there, it
//! runs at once, without taking any lock: nothing else can run on this
//! thread until it ends.
//!
//! The effects of a script's commands go to the AOF as one MULTI ... EXEC
//! record, as Redis 7.0 replicates scripts by effects.

use super::call::{FullName, execute, out_of_memory};
use super::{CommandSpec, Handler, NO_KEYS, err, flags::*, is, lookup, lookup_sub};
use crate::persistence::{aof, rdb};
use crate::reply::{OK, Reply};
use crate::scripting::{Engine, ScriptFlags, ScriptHost};
use crate::shard::locks::{self, LockSet, NO_TX, next_tx_id};
use crate::shard::{Global, spawn_on, unix_ms, with_shard};
use crate::transaction::Client;
use bytes::Bytes;
use futures::future::LocalBoxFuture;
use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::atomic::Ordering;

const SCRIPTING: &[&str] = &["slow", "scripting"];
const SCRIPTING_W: &[&str] = &["write", "slow", "scripting"];
const EVAL_FLAGS: u32 = NOSCRIPT | STALE | SKIP_MONITOR | NO_MANDATORY_KEYS | MOVABLEKEYS;

/// The scripting commands.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec::new(
        "eval",
        -3,
        EVAL_FLAGS,
        NO_KEYS,
        "scripting",
        "2.6.0",
        "Execute a Lua script server side",
        Handler::Async(eval),
    )
    .keys_with(script_keys)
    .acl(SCRIPTING),
    CommandSpec::new(
        "evalsha",
        -3,
        EVAL_FLAGS,
        NO_KEYS,
        "scripting",
        "2.6.0",
        "Execute a Lua script server side",
        Handler::Async(evalsha),
    )
    .keys_with(script_keys)
    .acl(SCRIPTING),
    CommandSpec::new(
        "eval_ro",
        -3,
        READONLY | EVAL_FLAGS,
        NO_KEYS,
        "scripting",
        "7.0.0",
        "Execute a read-only Lua script server side",
        Handler::Async(eval_ro),
    )
    .keys_with(script_keys)
    .acl(SCRIPTING),
    CommandSpec::new(
        "evalsha_ro",
        -3,
        READONLY | EVAL_FLAGS,
        NO_KEYS,
        "scripting",
        "7.0.0",
        "Execute a read-only Lua script server side",
        Handler::Async(evalsha_ro),
    )
    .keys_with(script_keys)
    .acl(SCRIPTING),
    CommandSpec::new(
        "fcall",
        -3,
        EVAL_FLAGS,
        NO_KEYS,
        "scripting",
        "7.0.0",
        "Invoke a function",
        Handler::Async(fcall),
    )
    .keys_with(script_keys)
    .acl(SCRIPTING),
    CommandSpec::new(
        "fcall_ro",
        -3,
        READONLY | EVAL_FLAGS,
        NO_KEYS,
        "scripting",
        "7.0.0",
        "Invoke a read-only function",
        Handler::Async(fcall_ro),
    )
    .keys_with(script_keys)
    .acl(SCRIPTING),
    CommandSpec::new(
        "script",
        -2,
        0,
        NO_KEYS,
        "scripting",
        "2.6.0",
        "A container for Lua scripts management commands",
        Handler::Container(None),
    )
    .subs(SCRIPT_SUBS),
    CommandSpec::new(
        "function",
        -2,
        0,
        NO_KEYS,
        "scripting",
        "7.0.0",
        "A container for function commands",
        Handler::Container(None),
    )
    .subs(FUNCTION_SUBS),
];

static SCRIPT_SUBS: &[CommandSpec] = &[
    CommandSpec::new(
        "load",
        3,
        NOSCRIPT | STALE,
        NO_KEYS,
        "scripting",
        "2.6.0",
        "Load the specified Lua script into the script cache",
        Handler::Local(script_load),
    )
    .acl(SCRIPTING),
    CommandSpec::new(
        "exists",
        -3,
        NOSCRIPT,
        NO_KEYS,
        "scripting",
        "2.6.0",
        "Check existence of scripts in the script cache",
        Handler::Local(script_exists),
    )
    .acl(SCRIPTING),
    CommandSpec::new(
        "flush",
        -2,
        NOSCRIPT,
        NO_KEYS,
        "scripting",
        "2.6.0",
        "Remove all the scripts from the script cache",
        Handler::Local(script_flush),
    )
    .acl(SCRIPTING),
    CommandSpec::new(
        "kill",
        2,
        NOSCRIPT | ALLOW_BUSY,
        NO_KEYS,
        "scripting",
        "2.6.0",
        "Kill the script currently in execution",
        Handler::Local(script_kill),
    )
    .acl(SCRIPTING),
    CommandSpec::new(
        "help",
        2,
        LOADING | STALE,
        NO_KEYS,
        "scripting",
        "5.0.0",
        "Show helpful text about the different subcommands",
        Handler::Local(script_help),
    )
    .acl(SCRIPTING),
];

static FUNCTION_SUBS: &[CommandSpec] = &[
    CommandSpec::new(
        "load",
        -3,
        WRITE | DENYOOM | NOSCRIPT,
        NO_KEYS,
        "scripting",
        "7.0.0",
        "Create a function with the given arguments (name, code, description)",
        Handler::Async(function_load),
    )
    .acl(SCRIPTING_W),
    CommandSpec::new(
        "delete",
        3,
        WRITE | NOSCRIPT,
        NO_KEYS,
        "scripting",
        "7.0.0",
        "Delete a function by name",
        Handler::Async(function_delete),
    )
    .acl(SCRIPTING_W),
    CommandSpec::new(
        "flush",
        -2,
        WRITE | NOSCRIPT,
        NO_KEYS,
        "scripting",
        "7.0.0",
        "Deleting all functions",
        Handler::Async(function_flush),
    )
    .acl(SCRIPTING_W),
    CommandSpec::new(
        "list",
        -2,
        NOSCRIPT,
        NO_KEYS,
        "scripting",
        "7.0.0",
        "List information about all the functions",
        Handler::Local(function_list),
    )
    .acl(SCRIPTING),
    CommandSpec::new(
        "stats",
        2,
        NOSCRIPT | ALLOW_BUSY,
        NO_KEYS,
        "scripting",
        "7.0.0",
        "Return information about the function currently running (name, description, duration)",
        Handler::Local(function_stats),
    )
    .acl(SCRIPTING),
    CommandSpec::new(
        "kill",
        2,
        NOSCRIPT | ALLOW_BUSY,
        NO_KEYS,
        "scripting",
        "7.0.0",
        "Kill the function currently in execution.",
        Handler::Local(function_kill),
    )
    .acl(SCRIPTING),
    CommandSpec::new(
        "dump",
        2,
        NOSCRIPT,
        NO_KEYS,
        "scripting",
        "7.0.0",
        "Dump all functions into a serialized binary payload",
        Handler::Local(function_dump),
    )
    .acl(SCRIPTING),
    CommandSpec::new(
        "restore",
        -3,
        WRITE | DENYOOM | NOSCRIPT,
        NO_KEYS,
        "scripting",
        "7.0.0",
        "Restore all the functions on the given payload",
        Handler::Async(function_restore),
    )
    .acl(SCRIPTING_W),
    CommandSpec::new(
        "help",
        2,
        LOADING | STALE,
        NO_KEYS,
        "scripting",
        "7.0.0",
        "Show helpful text about the different subcommands",
        Handler::Local(function_help),
    )
    .acl(SCRIPTING),
];

/// Key positions of EVAL & co: `numkeys` keys after the script.
fn script_keys(args: &[Bytes]) -> Vec<usize> {
    super::zset::numkeys_keys(args, 2)
}

// ---------------------------------------------------------------------------
// The shard's interpreter

/// This thread's interpreter and the registry generations it reflects.
struct Local {
    engine: Engine,
    scripts_gen: u64,
    libraries_gen: u64,
}

thread_local! {
    static ENGINE: RefCell<Option<Local>> = const { RefCell::new(None) };
    /// The client that scripts on this shard run their commands as.
    static SCRIPT_CLIENT: RefCell<Option<Client>> = const { RefCell::new(None) };
}

/// Runs `f` with this shard's interpreter, brought up to date with the
/// registry first (SCRIPT FLUSH, and libraries changed elsewhere).
fn with_engine<R>(global: &'static Global, f: impl FnOnce(&mut Engine) -> R) -> R {
    ENGINE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let local = slot.get_or_insert_with(|| Local {
            engine: Engine::new(),
            scripts_gen: 0,
            libraries_gen: 0,
        });
        let reg = &global.scripts;
        let sg = reg.scripts_gen.load(Ordering::Acquire);
        if local.scripts_gen != sg {
            local.engine.flush_scripts();
            local.scripts_gen = sg;
        }
        let lg = reg.libraries_gen.load(Ordering::Acquire);
        if local.libraries_gen != lg {
            local.engine.function_flush();
            for (_, code) in reg.libraries() {
                // Each library loaded once already; it loads again.
                let _ = local.engine.function_load(&code, false);
            }
            local.libraries_gen = lg;
        }
        f(&mut local.engine)
    })
}

/// Loads the registry's script `sha` into `engine` if it lacks it; false
/// when the server does not know the script.
fn ensure_script(global: &Global, engine: &mut Engine, sha: &str) -> bool {
    if engine.has_script(sha) {
        return true;
    }
    match global.scripts.script(sha) {
        Some(body) => engine.load_script(&body).is_ok(),
        None => false,
    }
}

// ---------------------------------------------------------------------------
// EVAL & co

fn eval(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(eval_generic(c, args, false, false))
}

fn evalsha(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(eval_generic(c, args, true, false))
}

fn eval_ro(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(eval_generic(c, args, false, true))
}

fn evalsha_ro(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(eval_generic(c, args, true, true))
}

fn fcall(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(fcall_generic(c, args, false))
}

fn fcall_ro(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(fcall_generic(c, args, true))
}

/// Splits `numkeys`, KEYS and ARGV, with Redis's errors.
fn split_keys(args: &[Bytes]) -> Result<(Vec<Bytes>, Vec<Bytes>), Reply> {
    let n = super::arg_i64(&args[2])?;
    if n > (args.len() - 3) as i64 {
        return Err(Reply::StaticError(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    if n < 0 {
        return Err(Reply::StaticError("ERR Number of keys can't be negative"));
    }
    let n = n as usize;
    Ok((args[3..3 + n].to_vec(), args[3 + n..].to_vec()))
}

const WRITE_FLAG_RO: Reply =
    Reply::StaticError("ERR Can not execute a script with write flag using *_ro command.");

async fn eval_generic(c: &mut Client, args: Vec<Bytes>, by_sha: bool, ro: bool) -> Reply {
    let (keys, argv) = match split_keys(&args) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let global = c.global;
    let found = with_engine(global, |e| {
        let sha = if by_sha {
            let sha = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
            if !ensure_script(global, e, &sha) {
                return Err(Reply::StaticError(
                    "NOSCRIPT No matching script. Please use EVAL.",
                ));
            }
            sha
        } else {
            let sha = e.load_script(&args[1])?;
            global.scripts.add_script(&sha, args[1].clone());
            sha
        };
        let flags = e.script_flags(&sha).unwrap_or_default();
        Ok((sha, flags))
    });
    let (sha, flags) = match found {
        Ok(v) => v,
        Err(e) => return e,
    };
    if let Err(e) = check_flags(flags, ro) {
        return e;
    }
    run(
        c,
        Target::Script(sha),
        keys,
        argv,
        ro || flags.no_writes,
        flags,
    )
    .await
}

async fn fcall_generic(c: &mut Client, args: Vec<Bytes>, ro: bool) -> Reply {
    let (keys, argv) = match split_keys(&args) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let name = String::from_utf8_lossy(&args[1]).into_owned();
    let Some(flags) = with_engine(c.global, |e| e.function_flags(&name)) else {
        return Reply::StaticError("ERR Function not found");
    };
    if let Err(e) = check_flags(flags, ro) {
        return e;
    }
    run(
        c,
        Target::Function(name, args.clone()),
        keys,
        argv,
        ro || flags.no_writes,
        flags,
    )
    .await
}

/// The checks Redis makes before a script with a shebang (or a function)
/// runs: a script that may write is refused by *_RO commands and, unless
/// it allows it, under OOM.
fn check_flags(flags: ScriptFlags, ro: bool) -> Result<(), Reply> {
    if flags.eval_compat || flags.no_writes {
        return Ok(());
    }
    if ro {
        return Err(WRITE_FLAG_RO);
    }
    if !flags.allow_oom && out_of_memory() {
        return Err(crate::shard::evict::OOM);
    }
    Ok(())
}

/// What to run.
enum Target {
    /// A cached EVAL script, by SHA1.
    Script(String),
    /// A function, by name, with the FCALL command that called it.
    Function(String, Vec<Bytes>),
}

/// What a script run hands back to its connection.
struct Outcome {
    reply: Reply,
    /// The effects, when the caller's transaction logs them.
    effects: Vec<aof::Effects>,
    /// The script wrote (group commit must wait for the AOF).
    wrote: bool,
}

/// Locks the script's shards, runs it on its home shard and logs its
/// effects.
async fn run(
    c: &mut Client,
    target: Target,
    keys: Vec<Bytes>,
    argv: Vec<Bytes>,
    read_only: bool,
    flags: ScriptFlags,
) -> Reply {
    let global = c.global;
    let n = global.nshards;
    let home = keys.first().map_or(c.shard, |k| c.shard_of(k));
    let lock_all =
        c.in_transaction() || with_shard(|s| s.config.get("lua-lock-all-shards") == Some("yes"));
    let mut locked = vec![lock_all; n];
    locked[home] = true;
    for k in &keys {
        locked[c.shard_of(k)] = true;
    }
    // A script whose only shard is its home needs no lock: it runs there
    // synchronously once no other transaction holds anything on it.
    let alone = !c.in_transaction() && locked.iter().filter(|&&l| l).count() == 1;
    let tx = if c.in_transaction() || alone {
        None
    } else {
        let sets = (0..n)
            .filter(|&s| locked[s])
            .map(|s| (s, LockSet::All))
            .collect();
        Some(c.lock(sets).await)
    };
    let job = Job {
        global,
        home,
        db: c.db,
        client_id: c.id,
        tx: match &tx {
            Some(t) => t.opts().tx,
            None if c.in_transaction() => c.tx,
            None => next_tx_id(),
        },
        target,
        keys,
        argv,
        read_only,
        compat: flags.eval_compat,
        locked,
        log: !c.in_transaction(),
    };
    let out = if home != c.shard {
        spawn_on(global, home, move || async move {
            if alone {
                locks::wait_free(NO_TX, 0, None).await;
            }
            job.run()
        })
        .await
    } else {
        if alone && !with_shard(|s| s.locks.is_empty()) {
            locks::wait_free(NO_TX, 0, None).await;
        }
        job.run()
    };
    c.aof_capture.extend(out.effects);
    c.wrote |= out.wrote;
    drop(tx);
    out.reply
}

/// A script run, sent to its home shard.
struct Job {
    global: &'static Global,
    home: usize,
    db: usize,
    client_id: u64,
    tx: crate::shard::locks::TxId,
    target: Target,
    keys: Vec<Bytes>,
    argv: Vec<Bytes>,
    read_only: bool,
    compat: bool,
    locked: Vec<bool>,
    /// Log the effects here (outside EXEC), while nothing can interleave.
    log: bool,
}

impl Job {
    /// Runs the script on this (its home) shard's thread.
    fn run(self) -> Outcome {
        let global = self.global;
        let function = matches!(self.target, Target::Function(..));
        if let Target::Function(name, command) = &self.target {
            *global.scripts.busy[self.home].function_call.lock().unwrap() =
                Some((name.clone(), command.clone()));
        }
        global.scripts.begin(self.home, function, unix_ms());
        // The shard's script client, made once.
        let mut client = SCRIPT_CLIENT
            .with(|c| c.borrow_mut().take())
            .unwrap_or_else(|| Client::internal(global, self.home));
        client.id = self.client_id;
        client.db = self.db;
        client.tx = self.tx;
        let mut host = Host {
            client,
            locked: self.locked,
            read_only: self.read_only,
            compat: self.compat,
            wrote: false,
            propagate: true,
            effects: Vec::new(),
        };
        let reply = with_engine(global, |e| match &self.target {
            Target::Script(sha) => {
                if !ensure_script(global, e, sha) {
                    return Reply::StaticError("NOSCRIPT No matching script. Please use EVAL.");
                }
                e.run_script(sha, &self.keys, &self.argv, &mut host)
            }
            Target::Function(name, _) => e.run_function(name, &self.keys, &self.argv, &mut host),
        });
        global.scripts.end(self.home);
        SCRIPT_CLIENT.with(|c| *c.borrow_mut() = Some(host.client));
        let mut effects = host.effects;
        let wrote = !effects.is_empty();
        if self.log && wrote {
            aof::log_transaction(global, global.aof.next_seq(), self.db, &effects);
            effects.clear();
        }
        Outcome {
            reply,
            effects,
            wrote,
        }
    }
}

/// Runs `redis.call` for a script on its home shard.
struct Host {
    /// The script's own client: its database, its transaction.
    client: Client,
    /// The shards the script holds.
    locked: Vec<bool>,
    /// EVAL_RO, FCALL_RO or a `no-writes` script.
    read_only: bool,
    /// A script without shebang (Redis's compatibility rules).
    compat: bool,
    /// A write command ran.
    wrote: bool,
    /// `redis.set_repl` leaves the AOF on.
    propagate: bool,
    /// The AOF effects so far.
    effects: Vec<aof::Effects>,
}

impl Host {
    /// Resolves a command called from the script, with the errors Redis's
    /// `scriptCall` gives.
    fn resolve(&self, args: &[Bytes]) -> Result<(&'static CommandSpec, FullName), Reply> {
        const UNKNOWN: Reply = Reply::StaticError("ERR Unknown Redis command called from script");
        const ARITY: Reply =
            Reply::StaticError("ERR Wrong number of args calling Redis command from script");
        let spec = lookup(&args[0]).ok_or(UNKNOWN)?;
        let (spec, full) = match spec.handler {
            Handler::Container(bare) if args.len() >= 2 || bare.is_none() => {
                let sub = args
                    .get(1)
                    .and_then(|a| lookup_sub(spec, a))
                    .ok_or(if args.len() < 2 { ARITY } else { UNKNOWN })?;
                (sub, Cow::Owned(format!("{}|{}", spec.name, sub.name)))
            }
            _ => (spec, Cow::Borrowed(spec.name)),
        };
        if !spec.arity_ok(args.len()) {
            return Err(ARITY);
        }
        if spec.has(NOSCRIPT) {
            return Err(Reply::StaticError(
                "ERR This Redis command is not allowed from script",
            ));
        }
        Ok((spec, full))
    }

    /// Refuses a command that needs a shard the script does not hold.
    fn check_shards(&self, spec: &CommandSpec, args: &[Bytes]) -> Result<(), Reply> {
        if matches!(
            spec.handler,
            Handler::Local(_) | Handler::Container(Some(_))
        ) {
            return Ok(());
        }
        let idx = spec.key_indices(args);
        let everywhere = idx.is_empty() || super::transactions::reaches_beyond_its_keys(spec);
        if everywhere && !self.locked.iter().all(|&l| l) {
            return Err(Reply::Error(format!(
                "ERR Script attempted to run '{}', which needs every shard, while holding only \
                 the shards of its keys; set lua-lock-all-shards yes",
                spec.name
            )));
        }
        for i in idx {
            if !self.locked[self.client.shard_of(&args[i])] {
                return Err(Reply::Error(format!(
                    "ERR Script attempted to access key '{}' on a shard it did not lock; declare \
                     it in KEYS, or set lua-lock-all-shards yes",
                    String::from_utf8_lossy(&args[i])
                )));
            }
        }
        Ok(())
    }
}

impl ScriptHost for Host {
    fn call(&mut self, args: Vec<Bytes>) -> Reply {
        if args.is_empty() {
            return Reply::StaticError(
                "ERR Please specify at least one argument for this redis lib call",
            );
        }
        let (spec, full) = match self.resolve(&args) {
            Ok(v) => v,
            Err(e) => return e,
        };
        if spec.has(WRITE) {
            if self.read_only {
                return Reply::StaticError(
                    "ERR Write commands are not allowed from read-only scripts.",
                );
            }
            // Redis refuses the first growing write of an old-style script
            // under OOM; once it has written, it lets it finish.
            if self.compat && !self.wrote && spec.has(DENYOOM) && out_of_memory() {
                return crate::shard::evict::OOM;
            }
        }
        if let Err(e) = self.check_shards(spec, &args) {
            return e;
        }
        let write = spec.has(WRITE);
        let (reply, mut effects) = aof::capture(|| {
            futures::executor::block_on(execute(&mut self.client, spec, full, args))
        });
        effects.append(&mut self.client.aof_capture);
        if self.propagate {
            self.effects.append(&mut effects);
        }
        if write && !reply.is_error() {
            self.wrote = true;
            self.client.global.scripts.busy[self.client.shard]
                .wrote
                .store(true, Ordering::Release);
        }
        reply
    }

    fn tick(&mut self) -> bool {
        let g = self.client.global;
        if let Some(serve) = g.scripts.while_busy.get()
            && busy_error(g, with_shard(|s| s.config.int("busy-reply-threshold"))).is_some()
        {
            serve(g);
        }
        g.scripts.busy[self.client.shard]
            .kill
            .load(Ordering::Acquire)
            || g.shutting_down.load(Ordering::Acquire)
    }

    fn log(&mut self, level: i32, msg: &str) {
        match level {
            0 | 1 => tracing::debug!(target: "script", "{msg}"),
            2 => tracing::info!(target: "script", "{msg}"),
            _ => tracing::warn!(target: "script", "{msg}"),
        }
    }

    fn set_repl(&mut self, flags: i32) {
        self.propagate = flags & 1 != 0;
    }

    fn acl_check_cmd(&mut self, args: &[Bytes]) -> Option<bool> {
        self.resolve(args).ok().map(|_| true)
    }
}

/// The -BUSY error while a script has run longer than
/// `busy-reply-threshold`, as Redis answers every command but those flagged
/// `allow-busy` then; None when no script runs that long.
pub fn busy_error(global: &Global, threshold_ms: i64) -> Option<Reply> {
    if global.scripts.running.load(Ordering::Acquire) == 0 {
        return None;
    }
    let shard = global.scripts.busy_shard()?;
    let busy = &global.scripts.busy[shard];
    let ran = busy.running_for(unix_ms())?;
    if (ran as i64) < threshold_ms {
        return None;
    }
    Some(if busy.function.load(Ordering::Acquire) {
        Reply::StaticError(
            "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.",
        )
    } else {
        Reply::StaticError(
            "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
        )
    })
}

// ---------------------------------------------------------------------------
// SCRIPT

fn script_load(c: &mut Client, args: &[Bytes]) -> Reply {
    let global = c.global;
    match with_engine(global, |e| e.load_script(&args[2])) {
        Ok(sha) => {
            global.scripts.add_script(&sha, args[2].clone());
            Reply::Bulk(sha.into())
        }
        Err(e) => e,
    }
}

fn script_exists(c: &mut Client, args: &[Bytes]) -> Reply {
    Reply::Array(
        args[2..]
            .iter()
            .map(|sha| {
                let known = c
                    .global
                    .scripts
                    .script(&String::from_utf8_lossy(sha))
                    .is_some();
                Reply::Int(known as i64)
            })
            .collect(),
    )
}

/// Checks FLUSH's optional ASYNC|SYNC argument.
fn flush_mode(args: &[Bytes], what: &str) -> Result<(), Reply> {
    match args.len() {
        2 => Ok(()),
        3 if is(&args[2], "async") || is(&args[2], "sync") => Ok(()),
        _ => Err(Reply::Error(format!(
            "ERR {what} FLUSH only support SYNC|ASYNC option"
        ))),
    }
}

fn script_flush(c: &mut Client, args: &[Bytes]) -> Reply {
    if let Err(e) = flush_mode(args, "SCRIPT") {
        return e;
    }
    c.global.scripts.flush_scripts();
    OK
}

/// SCRIPT KILL (`function` false) or FUNCTION KILL: stops the running
/// script unless it has written.
pub fn kill_running(global: &Global, function: bool) -> Reply {
    let reg = &global.scripts;
    let Some(shard) = reg.busy_shard() else {
        return Reply::StaticError("NOTBUSY No scripts in execution right now.");
    };
    let busy = &reg.busy[shard];
    if busy.function.load(Ordering::Acquire) != function {
        return Reply::StaticError("NOTBUSY No scripts in execution right now.");
    }
    if busy.wrote.load(Ordering::Acquire) {
        return Reply::StaticError(
            "UNKILLABLE Sorry the script already executed write commands against the dataset. \
             You can either wait the script termination or kill the server in a hard way using \
             the SHUTDOWN NOSAVE command.",
        );
    }
    busy.kill.store(true, Ordering::Release);
    OK
}

fn script_kill(c: &mut Client, _args: &[Bytes]) -> Reply {
    kill_running(c.global, false)
}

fn script_help(_c: &mut Client, _args: &[Bytes]) -> Reply {
    super::server::help(
        "SCRIPT",
        &[
            "EXISTS <sha1> [<sha1> ...]",
            "    Return information about the existence of the scripts in the script cache.",
            "FLUSH [ASYNC|SYNC]",
            "    Flush the Lua scripts cache. Very dangerous on replicas.",
            "    When called without the optional mode argument, the behavior is determined by the",
            "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
            "    * ASYNC: Asynchronously flush the scripts cache.",
            "    * SYNC: Synchronously flush the scripts cache.",
            "KILL",
            "    Kill the currently executing Lua script.",
            "LOAD <script>",
            "    Load a script into the scripts cache without executing it.",
        ],
    )
}

// ---------------------------------------------------------------------------
// FUNCTION

fn function_load(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    // Async only so that the dispatcher logs it to the AOF, as a write.
    Box::pin(async move { function_load_now(c, &args) })
}

fn function_load_now(c: &mut Client, args: &[Bytes]) -> Reply {
    let replace = match args.len() {
        3 => false,
        4 if is(&args[2], "replace") => true,
        4 => {
            let mut msg = b"ERR Unknown option given: ".to_vec();
            msg.extend_from_slice(&args[2]);
            return Reply::ErrorBytes(msg.into());
        }
        _ => return err::SYNTAX,
    };
    let code = args[args.len() - 1].clone();
    let global = c.global;
    // Loaded here first, where the registry's libraries already are, so
    // the errors (name taken, function clash...) come from the real thing.
    match with_engine(global, |e| e.function_load(&code, replace)) {
        Ok(name) => {
            let mut libs = global.scripts.libraries();
            match libs.iter_mut().find(|(n, _)| *n == name) {
                Some(slot) => slot.1 = code,
                None => libs.push((name.clone(), code)),
            }
            global.scripts.set_libraries(libs);
            Reply::Bulk(name.into())
        }
        Err(e) => e,
    }
}

fn function_delete(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    // Async only so that the dispatcher logs it to the AOF, as a write.
    Box::pin(async move { function_delete_now(c, &args) })
}

fn function_delete_now(c: &mut Client, args: &[Bytes]) -> Reply {
    let name = String::from_utf8_lossy(&args[2]).into_owned();
    let mut libs = c.global.scripts.libraries();
    let before = libs.len();
    libs.retain(|(n, _)| *n != name);
    if libs.len() == before {
        return Reply::StaticError("ERR Library not found");
    }
    c.global.scripts.set_libraries(libs);
    OK
}

fn function_flush(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    // Async only so that the dispatcher logs it to the AOF, as a write.
    Box::pin(async move { function_flush_now(c, &args) })
}

fn function_flush_now(c: &mut Client, args: &[Bytes]) -> Reply {
    if let Err(e) = flush_mode(args, "FUNCTION") {
        return e;
    }
    c.global.scripts.set_libraries(Vec::new());
    OK
}

fn function_list(c: &mut Client, args: &[Bytes]) -> Reply {
    let mut pattern: Option<&[u8]> = None;
    let mut with_code = false;
    let mut i = 2;
    while i < args.len() {
        if is(&args[i], "withcode") && !with_code {
            with_code = true;
        } else if is(&args[i], "libraryname") && pattern.is_none() {
            let Some(p) = args.get(i + 1) else {
                return Reply::StaticError("ERR library name argument was not given");
            };
            pattern = Some(p);
            i += 1;
        } else {
            let mut msg = b"ERR Unknown argument ".to_vec();
            msg.extend_from_slice(&args[i]);
            return Reply::ErrorBytes(msg.into());
        }
        i += 1;
    }
    let libs = with_engine(c.global, |e| e.libraries());
    let s = |t: &'static str| Reply::Bulk(Bytes::from_static(t.as_bytes()));
    Reply::Array(
        libs.into_iter()
            .filter(|l| pattern.is_none_or(|p| crate::glob::matches(p, l.name.as_bytes(), false)))
            .map(|l| {
                let functions = l
                    .functions
                    .iter()
                    .map(|f| {
                        Reply::Map(vec![
                            (s("name"), Reply::bulk(f.name.as_bytes())),
                            (
                                s("description"),
                                f.description.clone().map_or(Reply::Nil, Reply::Bulk),
                            ),
                            (
                                s("flags"),
                                Reply::Set(
                                    f.flags.names().into_iter().map(Reply::Simple).collect(),
                                ),
                            ),
                        ])
                    })
                    .collect();
                let mut fields = vec![
                    (s("library_name"), Reply::bulk(l.name.as_bytes())),
                    (s("engine"), Reply::bulk(l.engine.as_bytes())),
                    (s("functions"), Reply::Array(functions)),
                ];
                if with_code {
                    fields.push((s("library_code"), Reply::Bulk(l.code.clone())));
                }
                Reply::Map(fields)
            })
            .collect(),
    )
}

fn function_stats(c: &mut Client, _args: &[Bytes]) -> Reply {
    let (libraries, functions) = with_engine(c.global, |e| {
        let libs = e.libraries();
        let n: usize = libs.iter().map(|l| l.functions.len()).sum();
        (libs.len(), n)
    });
    let s = |t: &'static str| Reply::Bulk(Bytes::from_static(t.as_bytes()));
    let reg = &c.global.scripts;
    let running = reg
        .busy_shard()
        .filter(|&sh| reg.busy[sh].function.load(Ordering::Acquire))
        .and_then(|sh| {
            let ms = reg.busy[sh].running_for(unix_ms())?;
            let (name, command) = reg.busy[sh].function_call.lock().unwrap().clone()?;
            Some(Reply::Map(vec![
                (s("name"), Reply::Bulk(name.into())),
                (
                    s("command"),
                    Reply::Array(command.into_iter().map(Reply::Bulk).collect()),
                ),
                (s("duration_ms"), Reply::Int(ms as i64)),
            ]))
        })
        .unwrap_or(Reply::Nil);
    Reply::Map(vec![
        (s("running_script"), running),
        (
            s("engines"),
            Reply::Map(vec![(
                s("LUA"),
                Reply::Map(vec![
                    (s("libraries_count"), Reply::Int(libraries as i64)),
                    (s("functions_count"), Reply::Int(functions as i64)),
                ]),
            )]),
        ),
    ])
}

/// FUNCTION DUMP: each library as a `FUNCTION2` record, then the RDB
/// version and a CRC64, as Redis's payload.
fn function_dump(c: &mut Client, _args: &[Bytes]) -> Reply {
    let compress = with_shard(|s| s.config.get("rdbcompression") != Some("no"));
    let mut out = Vec::new();
    for (_, code) in c.global.scripts.libraries() {
        out.push(rdb::opcodes::FUNCTION2);
        rdb::write_string(&mut out, &code, compress);
    }
    out.extend_from_slice(&rdb::RDB_VERSION.to_le_bytes());
    let crc = crate::persistence::crc64::crc64(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    Reply::Bulk(out.into())
}

fn function_restore(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    // Async only so that the dispatcher logs it to the AOF, as a write.
    Box::pin(async move { function_restore_now(c, &args) })
}

fn function_restore_now(c: &mut Client, args: &[Bytes]) -> Reply {
    #[derive(PartialEq)]
    enum Policy {
        Flush,
        Append,
        Replace,
    }
    let policy = match args.get(3) {
        _ if args.len() > 4 => {
            let mut msg = b"ERR unknown subcommand or wrong number of arguments for '".to_vec();
            msg.extend_from_slice(&args[1]);
            msg.extend_from_slice(b"'. Try FUNCTION HELP.");
            return Reply::ErrorBytes(msg.into());
        }
        None => Policy::Append,
        Some(p) if is(p, "flush") => Policy::Flush,
        Some(p) if is(p, "append") => Policy::Append,
        Some(p) if is(p, "replace") => Policy::Replace,
        Some(_) => {
            return Reply::StaticError(
                "ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.",
            );
        }
    };
    let payload = &args[2];
    if !rdb::verify_dump_payload(payload) {
        return Reply::StaticError("ERR DUMP payload version or checksum are wrong");
    }
    let body = &payload[..payload.len() - 10];
    let mut src = rdb::SliceSrc::new(body);
    let mut codes = Vec::new();
    while src.position() < body.len() {
        let code = match rdb::Src::byte(&mut src) {
            Ok(rdb::opcodes::FUNCTION2) => rdb::read_string(&mut src),
            Ok(rdb::opcodes::FUNCTION_PRE_GA) => {
                return Reply::StaticError("ERR Pre-GA function format not supported");
            }
            Ok(_) => return Reply::StaticError("ERR given type is not a function"),
            Err(_) => return Reply::StaticError("ERR Failed loading library payload"),
        };
        match code {
            Ok(code) => codes.push(Bytes::from(code)),
            Err(_) => return Reply::StaticError("ERR Failed loading library payload"),
        }
    }
    // Check the result in a scratch interpreter: names, clashes, errors.
    let mut scratch = Engine::new();
    let mut libs = Vec::new();
    if policy != Policy::Flush {
        for (name, code) in c.global.scripts.libraries() {
            let _ = scratch.function_load(&code, false);
            libs.push((name, code));
        }
    }
    for code in codes {
        let name = match scratch.function_load(&code, policy == Policy::Replace) {
            Ok(name) => name,
            Err(e) => {
                // Redis words a library clash without quotes here.
                if let Some(t) = e.error_text()
                    && t.starts_with(b"ERR Library '")
                    && t.ends_with(b"' already exists")
                {
                    let name = &t[13..t.len() - 16];
                    let mut msg = b"ERR Library ".to_vec();
                    msg.extend_from_slice(name);
                    msg.extend_from_slice(b" already exists");
                    return Reply::ErrorBytes(msg.into());
                }
                return e;
            }
        };
        match libs.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = code,
            None => libs.push((name, code)),
        }
    }
    c.global.scripts.set_libraries(libs);
    OK
}

fn function_kill(c: &mut Client, _args: &[Bytes]) -> Reply {
    kill_running(c.global, true)
}

fn function_help(_c: &mut Client, _args: &[Bytes]) -> Reply {
    super::server::help(
        "FUNCTION",
        &[
            "LOAD [REPLACE] <FUNCTION CODE>",
            "    Create a new library with the given library name and code.",
            "DELETE <LIBRARY NAME>",
            "    Delete the given library.",
            "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
            "    Return general information on all the libraries:",
            "    * Library name",
            "    * The engine used to run the Library",
            "    * Library description",
            "    * Functions list",
            "    * Library code (if WITHCODE is given)",
            "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
            "STATS",
            "    Return information about the current function running:",
            "    * Function name",
            "    * Command used to run the function",
            "    * Duration in MS that the function is running",
            "    If no function is running, return nil",
            "    In addition, returns a list of available engines.",
            "KILL",
            "    Kill the current running function.",
            "FLUSH [ASYNC|SYNC]",
            "    Delete all the libraries.",
            "    When called without the optional mode argument, the behavior is determined by the",
            "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
            "    * ASYNC: Asynchronously flush the libraries.",
            "    * SYNC: Synchronously flush the libraries.",
            "DUMP",
            "    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command",
            "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
            "    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
            "    control how to handle existing libraries (default APPEND):",
            "    * FLUSH: delete all existing libraries.",
            "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
            "    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
            "      libraries with the new libraries (notice that even on this option there is a chance of failure",
            "      in case of functions name collision with another library).",
        ],
    )
}
