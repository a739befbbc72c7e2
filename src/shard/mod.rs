//! Shards: the unit of ownership and execution.
//!
//! Each shard is one glommio executor pinned to a core. It owns a hash
//! partition of the keyspace (its [`Db`]s), its key locks, its clients and its
//! counters, all in a thread-local [`Shard`] that only its own thread touches.
//! Other shards reach it by sending [`Task`]s to its mailbox ([`run_on`]); the
//! results come back over oneshot channels. Nothing is shared between shards
//! but the read-mostly [`Global`].

pub mod blocking;
pub mod clients;
pub mod ctx;
pub mod db;
pub mod dict;
pub mod evict;
pub mod expiry;
pub mod hop;
pub mod lazyfree;
pub mod locks;
pub mod routing;
pub mod scripts;
pub mod value;
pub mod watch;

use crate::config::Config;
use clients::ClientInfo;
use db::Db;
use futures::channel::{mpsc, oneshot};
use locks::Locks;
use routing::SlotTable;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A closure sent to a shard's mailbox, run on that shard's thread.
pub type Task = Box<dyn FnOnce() + Send>;

/// State shared by all shards: immutable topology plus a few atomics.
pub struct Global {
    /// Number of shards.
    pub nshards: usize,
    /// Slot → shard routing.
    pub slots: SlotTable,
    /// Each shard's mailbox.
    pub mailboxes: Vec<mpsc::UnboundedSender<Task>>,
    /// The configuration; shards cache a copy and reload it when
    /// `config_gen` changes.
    pub config: RwLock<Config>,
    /// Bumped on every CONFIG SET.
    pub config_gen: AtomicU64,
    /// Source of CLIENT IDs.
    pub next_client_id: AtomicU64,
    /// Clients connected, over all shards.
    pub connected_clients: AtomicUsize,
    /// Process start, for uptime.
    pub started: Instant,
    /// Unix time of the last successful save.
    pub lastsave: AtomicU64,
    /// Set once shutdown has begun.
    pub shutting_down: AtomicBool,
    /// The port actually listened on (differs from config when it was 0).
    pub port: AtomicUsize,
    /// Run id for INFO.
    pub run_id: String,
    /// Serializes whole-server operations such as FLUSHALL and SWAPDB.
    pub admin: Mutex<()>,
    /// RDB persistence state.
    pub rdb: crate::persistence::save::RdbState,
    /// Append-only file state.
    pub aof: crate::persistence::aof::AofState,
    /// Each shard's memory counter as last published (see [`evict`]).
    pub used: Vec<evict::MemSlot>,
    /// Cached scripts, function libraries, and running scripts.
    pub scripts: scripts::Registry,
}

impl Global {
    /// Creates the shared state and the mailbox receivers, one per shard.
    pub fn new(config: Config, nshards: usize) -> (Global, Vec<mpsc::UnboundedReceiver<Task>>) {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..nshards).map(|_| mpsc::unbounded()).unzip();
        let run_id: String = {
            use rand::Rng;
            let mut r = rand::thread_rng();
            (0..40)
                .map(|_| char::from_digit(r.gen_range(0..16), 16).unwrap())
                .collect()
        };
        let g = Global {
            nshards,
            slots: SlotTable::contiguous(nshards),
            mailboxes: txs,
            port: AtomicUsize::new(config.port() as usize),
            config: RwLock::new(config),
            config_gen: AtomicU64::new(0),
            next_client_id: AtomicU64::new(1),
            connected_clients: AtomicUsize::new(0),
            started: Instant::now(),
            lastsave: AtomicU64::new(unix_secs()),
            shutting_down: AtomicBool::new(false),
            run_id,
            admin: Mutex::new(()),
            rdb: Default::default(),
            aof: crate::persistence::aof::AofState::new(nshards),
            used: (0..nshards).map(|_| evict::MemSlot::default()).collect(),
            scripts: scripts::Registry::new(nshards),
        };
        (g, rxs)
    }

    /// A copy of the current configuration.
    pub fn config(&self) -> Config {
        self.config.read().unwrap().clone()
    }

    /// Sends a task to a shard's mailbox without waiting for it.
    pub fn post(&self, shard: usize, task: Task) {
        // A closed mailbox means the shard is shutting down; dropping is fine.
        let _ = self.mailboxes[shard].unbounded_send(task);
    }
}

/// Command counters for INFO commandstats.
#[derive(Default, Debug, Clone, Copy)]
pub struct CommandStat {
    /// Calls.
    pub calls: u64,
    /// Total microseconds spent.
    pub usec: u64,
    /// Calls rejected before running (arity, auth...).
    pub rejected_calls: u64,
    /// Calls that replied with an error.
    pub failed_calls: u64,
}

/// Counters for INFO stats, per shard.
#[derive(Default, Debug, Clone)]
pub struct ShardStats {
    /// Connections accepted.
    pub total_connections_received: u64,
    /// Connections refused over maxclients.
    pub rejected_connections: u64,
    /// Commands processed.
    pub total_commands_processed: u64,
    /// Bytes read from clients.
    pub net_input_bytes: u64,
    /// Bytes written to clients.
    pub net_output_bytes: u64,
    /// Error replies sent.
    pub total_error_replies: u64,
    /// Per-command counters.
    pub commands: HashMap<String, CommandStat, ahash::RandomState>,
    /// Error replies by code (`ERR`, `WRONGTYPE`...).
    pub errors: HashMap<String, u64>,
}

/// Everything one shard owns.
pub struct Shard {
    /// This shard's index.
    pub id: usize,
    /// The shared state.
    pub global: &'static Global,
    /// This shard's part of each database.
    pub dbs: Vec<Db>,
    /// Key locks held by multi-shard transactions.
    pub locks: Locks,
    /// Cached copy of the configuration.
    pub config: Config,
    /// The encoding thresholds of `config`, parsed once per change.
    pub thresholds: crate::persistence::Thresholds,
    config_gen: u64,
    /// Counters.
    pub stats: ShardStats,
    /// Clients connected to this shard, by id.
    pub clients: HashMap<u64, Rc<RefCell<ClientInfo>>>,
    /// maxmemory settings and eviction state.
    pub evict: evict::Evictor,
}

thread_local! {
    static SHARD: RefCell<Option<Shard>> = const { RefCell::new(None) };
    /// This thread's shard id, readable while the shard is borrowed.
    static SHARD_ID: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

impl Shard {
    /// Installs this thread's shard.
    pub fn install(id: usize, global: &'static Global) {
        let config = global.config();
        let dbs = (0..config.databases()).map(|_| Db::default()).collect();
        let mut evict = evict::Evictor::default();
        evict.configure(&config);
        let shard = Shard {
            id,
            global,
            dbs,
            locks: Locks::default(),
            config_gen: global.config_gen.load(Ordering::Acquire),
            thresholds: crate::persistence::Thresholds::from_config(&config),
            config,
            stats: ShardStats::default(),
            clients: HashMap::new(),
            evict,
        };
        SHARD.with(|s| *s.borrow_mut() = Some(shard));
        SHARD_ID.with(|s| s.set(Some(id)));
    }

    /// Removes this thread's shard, dropping its data.
    pub fn uninstall() {
        SHARD_ID.with(|s| s.set(None));
        SHARD.with(|s| s.borrow_mut().take());
    }

    /// Reloads the cached configuration if CONFIG SET changed it.
    pub fn refresh_config(&mut self) {
        let g = self.global.config_gen.load(Ordering::Acquire);
        if g != self.config_gen {
            self.config = self.global.config();
            self.config_gen = g;
            self.thresholds = crate::persistence::Thresholds::from_config(&self.config);
            self.evict.configure(&self.config);
        }
    }
}

/// Runs `f` on this thread's shard.
///
/// # Panics
/// When called off a shard thread, or re-entrantly.
#[inline]
pub fn with_shard<R>(f: impl FnOnce(&mut Shard) -> R) -> R {
    SHARD.with(|s| f(s.borrow_mut().as_mut().expect("not on a shard thread")))
}

/// This thread's shard id, if it is a shard thread.
#[inline]
pub fn current_shard_id() -> Option<usize> {
    SHARD_ID.with(|s| s.get())
}

/// Runs `f` on shard `shard` and returns its result. Runs inline when `shard`
/// is this thread's shard.
pub async fn run_on<R, F>(global: &'static Global, shard: usize, f: F) -> R
where
    R: Send + 'static,
    F: FnOnce(&mut Shard) -> R + Send + 'static,
{
    if current_shard_id() == Some(shard) {
        return with_shard(f);
    }
    let (tx, rx) = oneshot::channel();
    global.post(
        shard,
        Box::new(move || {
            let _ = tx.send(with_shard(f));
        }),
    );
    rx.await.expect("shard stopped while running a task")
}

/// Runs `f` on every shard concurrently and collects the results in shard
/// order.
pub async fn run_on_all<R, F>(global: &'static Global, f: F) -> Vec<R>
where
    R: Send + 'static,
    F: Fn(&mut Shard) -> R + Send + Sync + Clone + 'static,
{
    let futs = (0..global.nshards).map(|s| {
        let f = f.clone();
        run_on(global, s, move |sh: &mut Shard| f(sh))
    });
    futures::future::join_all(futs).await
}

/// Runs an async job on shard `shard` (spawned there as a local task), for
/// work that must wait, such as acquiring key locks.
pub async fn spawn_on<R, F, Fut>(global: &'static Global, shard: usize, f: F) -> R
where
    R: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = R> + 'static,
{
    let (tx, rx) = oneshot::channel();
    let job = move || {
        glommio::spawn_local(async move {
            let _ = tx.send(f().await);
        })
        .detach();
    };
    if current_shard_id() == Some(shard) {
        job();
    } else {
        global.post(shard, Box::new(job));
    }
    rx.await.expect("shard stopped while running a task")
}

/// Yields once to the executor's other tasks.
pub fn yield_now() -> impl std::future::Future<Output = ()> {
    let mut yielded = false;
    futures::future::poll_fn(move |cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
}

/// Current Unix time in milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Current Unix time in seconds.
pub fn unix_secs() -> u64 {
    unix_ms() / 1000
}

/// Serves a shard's mailbox until every sender is gone or a stop arrives.
pub async fn serve_mailbox(mut rx: mpsc::UnboundedReceiver<Task>) {
    use futures::StreamExt;
    while let Some(task) = rx.next().await {
        task();
        if STOP.with(|s| s.get()) {
            break;
        }
    }
}

thread_local! {
    static STOP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A task that makes the receiving shard's mailbox loop end.
pub fn stop_task() -> Task {
    Box::new(|| STOP.with(|s| s.set(true)))
}
