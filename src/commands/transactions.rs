//! Transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH.
//!
//! Between MULTI and EXEC the dispatcher queues commands (answering
//! +QUEUED) after checking what it can check up front; a command refused
//! there (unknown, wrong arity, OOM...) dooms the transaction. EXEC then
//! locks, on every shard involved, the keys of all queued commands and all
//! watched keys, or whole shards for commands whose keys cannot be known in
//! advance ([`lock_plan`]), checks the watched keys, and runs the queue
//! inside that one transaction: no client observes a state between two of
//! its commands, on any shard. The AOF gets one `MULTI ... EXEC` record.

use super::call::{FullName, execute, resolve};
use super::{CommandSpec, Handler, NO_KEYS, flags::*, keys};
use crate::persistence::aof;
use crate::reply::{OK, Reply};
use crate::shard::locks::{self, LockSet, NO_TX};
use crate::shard::watch::WatchFlag;
use crate::shard::{Global, spawn_on, unix_ms, with_shard};
use crate::transaction::Client;
use crate::transaction::multi::Multi;
use bytes::Bytes;
use futures::future::LocalBoxFuture;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

const TX_FAST: &[&str] = &["fast", "transaction"];
const TX_SLOW: &[&str] = &["slow", "transaction"];

/// The transaction commands.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec::new(
        "multi",
        1,
        NOSCRIPT | LOADING | STALE | FAST | ALLOW_BUSY,
        NO_KEYS,
        "transactions",
        "1.2.0",
        "Start a transaction block",
        Handler::Local(multi),
    )
    .acl(TX_FAST),
    CommandSpec::new(
        "exec",
        1,
        NOSCRIPT | LOADING | STALE | SKIP_SLOWLOG,
        NO_KEYS,
        "transactions",
        "1.2.0",
        "Execute all commands issued after MULTI",
        Handler::Async(exec),
    )
    .acl(TX_SLOW),
    CommandSpec::new(
        "discard",
        1,
        NOSCRIPT | LOADING | STALE | FAST | ALLOW_BUSY,
        NO_KEYS,
        "transactions",
        "2.0.0",
        "Discard all commands issued after MULTI",
        Handler::Local(discard),
    )
    .acl(TX_FAST),
    CommandSpec::new(
        "watch",
        -2,
        NOSCRIPT | LOADING | STALE | FAST | ALLOW_BUSY,
        keys(1, -1, 1),
        "transactions",
        "2.2.0",
        "Watch the given keys to determine execution of the MULTI/EXEC block",
        Handler::Async(watch),
    )
    .acl(TX_FAST),
    CommandSpec::new(
        "unwatch",
        1,
        NOSCRIPT | LOADING | STALE | FAST | ALLOW_BUSY,
        NO_KEYS,
        "transactions",
        "2.2.0",
        "Forget about all watched keys",
        Handler::Local(unwatch),
    )
    .acl(TX_FAST),
];

fn multi(c: &mut Client, _args: &[Bytes]) -> Reply {
    if c.multi.is_some() {
        return Reply::StaticError("ERR MULTI calls can not be nested");
    }
    c.multi = Some(Multi::default());
    c.info.borrow_mut().multi = 0;
    OK
}

fn discard(c: &mut Client, _args: &[Bytes]) -> Reply {
    if c.multi.take().is_none() {
        return Reply::StaticError("ERR DISCARD without MULTI");
    }
    c.info.borrow_mut().multi = -1;
    c.watching = Default::default();
    OK
}

fn unwatch(c: &mut Client, _args: &[Bytes]) -> Reply {
    c.watching = Default::default();
    OK
}

fn watch(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        if c.multi.is_some() {
            return Reply::StaticError("ERR WATCH inside MULTI is not allowed");
        }
        let db = c.db;
        let mut fresh: Vec<Bytes> = Vec::new();
        for k in &args[1..] {
            if !c.watching.contains(db, k) && !fresh.contains(k) {
                fresh.push(k.clone());
            }
        }
        let flag = c.watching.flag(c.global);
        // Register under the keys' locks, so a transaction running on them
        // is either wholly before the WATCH or wholly after it.
        let tx = c.lock_keys(&fresh).await;
        for (shard, idx) in c.group_by_shard(&fresh) {
            let keys: Vec<Bytes> = idx.iter().map(|&i| fresh[i].clone()).collect();
            let flag = flag.clone();
            let reg = keys.clone();
            tx.run(shard, move |ctx| {
                for k in &reg {
                    let now = ctx.now_ms;
                    ctx.db().watch(k, flag.clone(), now);
                }
            })
            .await;
            for k in keys {
                c.watching.add(shard, db, k);
            }
        }
        OK
    })
}

/// The locks an EXEC (or a script) needs, by shard: the keys of every
/// command, in the database current when it runs, or whole shards.
///
/// A shard is taken whole when a command's keys cannot be known from its
/// arguments (keyless commands that read or write the keyspace, such as
/// FLUSHALL, KEYS or SCAN; MOVE, COPY and SORT, which reach keys outside
/// their key positions) or when keys of two databases meet on one shard.
/// Connection commands (SELECT, PING...) lock nothing.
pub struct LockPlan {
    whole: bool,
    keys: BTreeMap<usize, (usize, Vec<Bytes>)>,
    split: Vec<usize>,
}

impl LockPlan {
    /// An empty plan.
    pub fn new() -> LockPlan {
        LockPlan {
            whole: false,
            keys: BTreeMap::new(),
            split: Vec::new(),
        }
    }

    /// Takes every shard whole.
    pub fn all(&mut self) {
        self.whole = true;
    }

    /// Adds a key of database `db`, owned by `shard`.
    pub fn key(&mut self, shard: usize, db: usize, key: Bytes) {
        match self.keys.get_mut(&shard) {
            Some((d, ks)) if *d == db => {
                if !ks.contains(&key) {
                    ks.push(key);
                }
            }
            Some(_) => {
                if !self.split.contains(&shard) {
                    self.split.push(shard);
                }
            }
            None => {
                self.keys.insert(shard, (db, vec![key]));
            }
        }
    }

    /// Adds what command `args` needs when run in database `db`; returns
    /// the database the next command runs in (SELECT changes it).
    pub fn command(&mut self, c: &Client, spec: &CommandSpec, args: &[Bytes], db: usize) -> usize {
        match spec.handler {
            Handler::Local(_) | Handler::Container(Some(_)) => {
                if spec.name == "select"
                    && let Some(n) = crate::parse::parse_i64(&args[1])
                    && n >= 0
                    && (n as usize) < with_shard(|s| s.dbs.len())
                {
                    return n as usize;
                }
            }
            _ => {
                let idx = spec.key_indices(args);
                if idx.is_empty() || reaches_beyond_its_keys(spec) {
                    self.all();
                } else {
                    for i in idx {
                        self.key(c.shard_of(&args[i]), db, args[i].clone());
                    }
                }
            }
        }
        db
    }

    /// True when no shard of this plan is needed.
    pub fn is_empty(&self) -> bool {
        !self.whole && self.keys.is_empty()
    }

    /// The lock sets, ascending by shard.
    pub fn sets(self, nshards: usize) -> Vec<(usize, LockSet)> {
        if self.whole {
            return (0..nshards).map(|s| (s, LockSet::All)).collect();
        }
        self.keys
            .into_iter()
            .map(|(s, (db, ks))| {
                let set = if self.split.contains(&s) {
                    LockSet::All
                } else {
                    LockSet::Keys(db, ks.iter().map(|k| k.to_vec()).collect())
                };
                (s, set)
            })
            .collect()
    }
}

/// Commands that may touch keys outside their key positions: MOVE and COPY
/// (another database), SORT (BY and GET patterns), and scripts (any key).
pub fn reaches_beyond_its_keys(spec: &CommandSpec) -> bool {
    matches!(
        spec.name,
        "move"
            | "copy"
            | "sort"
            | "sort_ro"
            | "eval"
            | "evalsha"
            | "eval_ro"
            | "evalsha_ro"
            | "fcall"
            | "fcall_ro"
    )
}

impl Default for LockPlan {
    fn default() -> Self {
        LockPlan::new()
    }
}

/// The queued commands, resolved again (they resolved when queued).
fn resolved(
    c: &Client,
    queue: Vec<Vec<Bytes>>,
) -> Vec<(&'static CommandSpec, FullName, Vec<Bytes>)> {
    queue
        .into_iter()
        .filter_map(|args| {
            let (spec, full) = resolve(c, &args).ok()?;
            Some((spec, full, args))
        })
        .collect()
}

fn exec(c: &mut Client, _args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let Some(multi) = c.multi.take() else {
            return Reply::StaticError("ERR EXEC without MULTI");
        };
        c.info.borrow_mut().multi = -1;
        if multi.aborted {
            c.watching = Default::default();
            return Reply::StaticError(
                "EXECABORT Transaction discarded because of previous errors.",
            );
        }
        let cmds = resolved(c, multi.queue);
        let mut plan = LockPlan::new();
        let mut db = c.db;
        for (spec, _, args) in &cmds {
            db = plan.command(c, spec, args, db);
        }
        for (shard, wdb, key) in c.watching.keys() {
            plan.key(*shard, *wdb, key.clone());
        }
        let sets = plan.sets(c.global.nshards);
        if let [(shard, _)] = sets[..]
            && shard != c.shard
            && cmds.iter().all(|(spec, _, _)| {
                !matches!(
                    spec.handler,
                    Handler::Local(_) | Handler::Container(Some(_))
                )
            })
        {
            return exec_on(c, shard, cmds).await;
        }
        let tx = c.lock_or_run_alone(sets).await;
        if watched_key_changed(c, &tx).await {
            c.watching = Default::default();
            return Reply::NilArray;
        }
        c.watching.forget();
        let start_db = c.db;
        c.tx = tx.opts().tx;
        let mut replies = Vec::with_capacity(cmds.len());
        for (spec, full, args) in cmds {
            replies.push(execute(c, spec, full, args).await);
        }
        c.tx = NO_TX;
        let effects = std::mem::take(&mut c.aof_capture);
        if !effects.is_empty() {
            let seq = c.aof_seq.take().unwrap_or_else(|| c.global.aof.next_seq());
            aof::log_transaction(c.global, seq, start_db, &effects);
            c.wrote = true;
        }
        drop(tx);
        Reply::Array(replies)
    })
}

/// A resolved queued command.
type Queued = (&'static CommandSpec, FullName, Vec<Bytes>);

thread_local! {
    /// The client that EXECs shipped to this shard run their commands as.
    static EXEC_CLIENT: RefCell<Option<Client>> = const { RefCell::new(None) };
}

/// EXEC of a transaction whose keys all live on one other shard: the whole
/// queue travels there in one hop and runs at once, once no transaction
/// holds anything on that shard; nothing can interleave, as with the fast
/// path on the connection's own shard. (Connection commands such as SELECT
/// keep a transaction on the normal path.)
async fn exec_on(c: &mut Client, shard: usize, cmds: Vec<Queued>) -> Reply {
    let global = c.global;
    let watched: Vec<(usize, Bytes)> = c
        .watching
        .keys()
        .iter()
        .map(|(_, db, k)| (*db, k.clone()))
        .collect();
    let flag = (!watched.is_empty()).then(|| c.watching.flag(global));
    let who = (c.id, c.db, c.resp3);
    let out = spawn_on(global, shard, move || async move {
        locks::wait_free(NO_TX, 0, None).await;
        run_shipped(global, shard, who, cmds, watched, flag)
    })
    .await;
    match out {
        None => {
            c.watching = Default::default();
            Reply::NilArray
        }
        Some((replies, wrote)) => {
            c.watching.forget();
            c.wrote |= wrote;
            Reply::Array(replies)
        }
    }
}

/// Runs a shipped EXEC on this shard: checks and unregisters the watched
/// keys, runs the queue, logs its effects. None when a watched key changed.
fn run_shipped(
    global: &'static Global,
    shard: usize,
    (id, db, resp3): (u64, usize, bool),
    cmds: Vec<Queued>,
    watched: Vec<(usize, Bytes)>,
    flag: Option<Arc<WatchFlag>>,
) -> Option<(Vec<Reply>, bool)> {
    if let Some(flag) = &flag {
        let now = unix_ms();
        let expired = with_shard(|s| {
            watched.iter().fold(false, |any, (db, k)| {
                s.dbs[*db].unwatch_expired(k, flag, now) || any
            })
        });
        if expired || flag.is_dirty() {
            return None;
        }
    }
    let mut client = EXEC_CLIENT
        .with(|c| c.borrow_mut().take())
        .unwrap_or_else(|| Client::internal(global, shard));
    client.id = id;
    client.db = db;
    client.resp3 = resp3;
    client.tx = locks::next_tx_id();
    // Everything runs on this shard, inline: nothing here waits.
    let replies = cmds
        .into_iter()
        .map(|(spec, full, args)| {
            futures::executor::block_on(execute(&mut client, spec, full, args))
        })
        .collect();
    client.tx = NO_TX;
    let effects = std::mem::take(&mut client.aof_capture);
    EXEC_CLIENT.with(|c| *c.borrow_mut() = Some(client));
    let wrote = !effects.is_empty();
    if wrote {
        aof::log_transaction(global, global.aof.next_seq(), db, &effects);
    }
    Some((replies, wrote))
}

/// True if a watched key was touched, or expired, since WATCH. Runs under
/// the EXEC's locks, which cover the watched keys; unregisters them.
async fn watched_key_changed(c: &mut Client, tx: &crate::transaction::Tx) -> bool {
    if c.watching.is_empty() {
        return false;
    }
    let flag = c.watching.flag(c.global);
    let mut by_shard: BTreeMap<usize, Vec<(usize, Bytes)>> = BTreeMap::new();
    for (shard, db, key) in c.watching.keys() {
        by_shard.entry(*shard).or_default().push((*db, key.clone()));
    }
    let mut expired = false;
    for (shard, keys) in by_shard {
        let flag = flag.clone();
        expired |= tx
            .run(shard, move |ctx| {
                let now = ctx.now_ms;
                let mut any = false;
                for (db, k) in &keys {
                    any |= ctx.shard.dbs[*db].unwatch_expired(k, &flag, now);
                }
                any
            })
            .await;
    }
    expired || flag.is_dirty()
}
