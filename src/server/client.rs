//! Per-connection state, and the coordination helpers that commands running
//! on the connection use to reach other shards.

use crate::commands::{CallOpts, Ctx, KeyedFn};
use crate::server::resp::Reply;
use crate::shard::locks::{self, LockSet, TxId};
use crate::shard::{Global, Shard, run_on, spawn_on, unix_ms, with_shard};
use bytes::Bytes;
use futures::channel::oneshot;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// What CLIENT REPLY set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReplyMode {
    /// Normal.
    On,
    /// No replies at all.
    Off,
    /// Skip the next command's reply.
    Skip,
}

/// What a shard knows of a client, for CLIENT LIST / INFO / KILL.
#[derive(Debug)]
pub struct ClientInfo {
    /// CLIENT ID.
    pub id: u64,
    /// Peer address.
    pub addr: SocketAddr,
    /// Local address.
    pub laddr: SocketAddr,
    /// Socket descriptor, for CLIENT KILL (shut down on the owning shard).
    pub fd: i32,
    /// CLIENT SETNAME.
    pub name: String,
    /// CLIENT SETINFO LIB-NAME.
    pub lib_name: String,
    /// CLIENT SETINFO LIB-VER.
    pub lib_ver: String,
    /// Selected database.
    pub db: usize,
    /// Protocol version.
    pub resp: u8,
    /// Connection time.
    pub created: Instant,
    /// Last command time.
    pub last_active: Instant,
    /// Last command's full name.
    pub last_cmd: String,
    /// CLIENT NO-EVICT.
    pub no_evict: bool,
    /// CLIENT NO-TOUCH.
    pub no_touch: bool,
    /// Bytes waiting in the query buffer.
    pub qbuf: usize,
    /// Set by CLIENT KILL; the connection closes.
    pub killed: bool,
    /// The wait of a client blocked in BLPOP & co, for CLIENT UNBLOCK.
    pub blocked: Option<std::sync::Arc<crate::shard::blocking::Waiter>>,
}

impl ClientInfo {
    /// The state of a connection just accepted: db 0, RESP2, no name, no
    /// flags.
    pub fn new(id: u64, addr: SocketAddr, laddr: SocketAddr, fd: i32) -> ClientInfo {
        let now = Instant::now();
        ClientInfo {
            id,
            addr,
            laddr,
            fd,
            name: String::new(),
            lib_name: String::new(),
            lib_ver: String::new(),
            db: 0,
            resp: 2,
            created: now,
            last_active: now,
            last_cmd: String::new(),
            no_evict: false,
            no_touch: false,
            qbuf: 0,
            killed: false,
            blocked: None,
        }
    }

    /// One line of CLIENT LIST / CLIENT INFO: Redis 7.0's fields in its
    /// order, then `lib-name` and `lib-ver` as Redis 7.2 appends them.
    pub fn list_line(&self) -> String {
        let now = Instant::now();
        let mut flags = String::new();
        if self.blocked.is_some() {
            flags.push('b');
        }
        if self.no_evict {
            flags.push('e');
        }
        if self.no_touch {
            flags.push('T');
        }
        if flags.is_empty() {
            flags.push('N');
        }
        format!(
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db={} sub=0 psub=0 ssub=0 multi=-1 qbuf={} qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            self.fd,
            self.name,
            now.duration_since(self.created).as_secs(),
            now.duration_since(self.last_active).as_secs(),
            flags,
            self.db,
            self.qbuf,
            if self.last_cmd.is_empty() {
                "NULL"
            } else {
                &self.last_cmd
            },
            self.resp,
            self.lib_name,
            self.lib_ver,
        )
    }
}

/// A connection's state.
pub struct Client {
    /// Shared server state.
    pub global: &'static Global,
    /// The shard this connection lives on.
    pub shard: usize,
    /// CLIENT ID.
    pub id: u64,
    /// Selected database.
    pub db: usize,
    /// RESP3 after HELLO 3.
    pub resp3: bool,
    /// True once AUTH succeeded (or when no password is set).
    pub authenticated: bool,
    /// CLIENT REPLY mode.
    pub reply_mode: ReplyMode,
    /// Drop the reply of the command being run (CLIENT REPLY OFF/SKIP).
    pub suppress_reply: bool,
    /// Close once the pending replies are written (QUIT, protocol errors).
    pub close_after_reply: bool,
    /// Shared with the shard's client registry.
    pub info: Rc<RefCell<ClientInfo>>,
    /// AOF sequence number reserved while the running command held its keys.
    pub aof_seq: std::cell::Cell<Option<u64>>,
    /// The current batch ran a write command (group commit waits for it).
    pub wrote: bool,
}

static NEXT_TX: AtomicU64 = AtomicU64::new(1);

impl Client {
    /// A client of shard `shard` in its initial state (database 0, RESP2).
    pub fn new(
        global: &'static Global,
        shard: usize,
        id: u64,
        authenticated: bool,
        info: Rc<RefCell<ClientInfo>>,
    ) -> Client {
        Client {
            global,
            shard,
            id,
            db: 0,
            resp3: false,
            authenticated,
            reply_mode: ReplyMode::On,
            suppress_reply: false,
            close_after_reply: false,
            info,
            aof_seq: Default::default(),
            wrote: false,
        }
    }

    /// The options keyed handlers run with.
    pub fn opts(&self) -> CallOpts {
        CallOpts {
            db: self.db,
            resp3: self.resp3,
            touch: !self.info.borrow().no_touch,
        }
    }

    /// The shard that owns `key`.
    #[inline]
    pub fn shard_of(&self, key: &[u8]) -> usize {
        self.global.slots.shard_of(key)
    }

    /// Groups argument indices by owning shard, in ascending shard order.
    pub fn group_by_shard(&self, keys: &[Bytes]) -> Vec<(usize, Vec<usize>)> {
        let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let s = self.shard_of(k);
            match groups.iter_mut().find(|(g, _)| *g == s) {
                Some((_, v)) => v.push(i),
                None => groups.push((s, vec![i])),
            }
        }
        groups.sort_by_key(|(s, _)| *s);
        groups
    }

    /// Runs a keyed handler on the shard that owns `keys` (which must all be
    /// on one shard), once no transaction holds them.
    pub async fn run_keyed(
        &self,
        shard: usize,
        keys: Vec<Vec<u8>>,
        f: KeyedFn,
        args: Vec<Bytes>,
    ) -> Reply {
        let opts = self.opts();
        let db = self.db;
        let (reply, seq) = spawn_on(self.global, shard, move || async move {
            locks::wait_free(db, Some(keys)).await;
            with_shard(|s| {
                let reply = opts.call(s, f, &args);
                (reply, s.global.aof.next_seq())
            })
        })
        .await;
        self.reserve_seq(seq);
        reply
    }

    /// Keeps the first AOF sequence number reserved by the running command.
    fn reserve_seq(&self, seq: u64) {
        if self.aof_seq.get().is_none() {
            self.aof_seq.set(Some(seq));
        }
    }

    /// Starts an atomic operation over `keys`, which may span shards: locks
    /// them shard by shard in ascending order. The locks are released when
    /// the returned [`Tx`] is dropped.
    pub async fn lock_keys(&self, keys: &[Bytes]) -> Tx {
        self.lock_keys_in(self.db, keys).await
    }

    /// Like [`Client::lock_keys`], for keys of database `db`.
    pub async fn lock_keys_in(&self, db: usize, keys: &[Bytes]) -> Tx {
        let groups = self.group_by_shard(keys);
        let sets = groups
            .into_iter()
            .map(|(s, idx)| {
                (
                    s,
                    LockSet::Keys(db, idx.into_iter().map(|i| keys[i].to_vec()).collect()),
                )
            })
            .collect();
        self.lock(sets).await
    }

    /// Locks whole shards (every shard, in order) for server-wide operations.
    pub async fn lock_all(&self) -> Tx {
        let sets = (0..self.global.nshards)
            .map(|s| (s, LockSet::All))
            .collect();
        self.lock(sets).await
    }

    async fn lock(&self, sets: Vec<(usize, LockSet)>) -> Tx {
        let tx = lock_sets(self.global, self.opts(), sets).await;
        // Every key is held: a later writer of any of them logs after this.
        self.reserve_seq(self.global.aof.next_seq());
        tx
    }
}

/// Locks every shard, in order, for a server-wide operation that has no
/// client (a scheduled save); the [`Tx`] runs in database 0.
pub async fn lock_all_shards(global: &'static Global) -> Tx {
    let sets = (0..global.nshards).map(|s| (s, LockSet::All)).collect();
    let opts = CallOpts {
        db: 0,
        resp3: false,
        touch: false,
    };
    lock_sets(global, opts, sets).await
}

async fn lock_sets(global: &'static Global, opts: CallOpts, sets: Vec<(usize, LockSet)>) -> Tx {
    let id = NEXT_TX.fetch_add(1, Ordering::Relaxed);
    let mut tx = Tx {
        global,
        id,
        shards: Vec::new(),
        opts,
    };
    for (s, set) in sets {
        let (done, granted) = oneshot::channel::<()>();
        let job = move || {
            glommio::spawn_local(async move {
                locks::acquire(id, set).await;
                // The coordinator gave up (its client left): let go at once.
                if done.send(()).is_err() {
                    with_shard(|sh| sh.locks.release(id));
                }
            })
            .detach();
        };
        if crate::shard::current_shard_id() == Some(s) {
            job();
        } else {
            global.post(s, Box::new(job));
        }
        granted.await.expect("shard stopped while locking");
        tx.shards.push(s);
    }
    tx
}

/// An atomic multi-shard operation holding key locks; see [`Client::lock_keys`].
pub struct Tx {
    global: &'static Global,
    id: TxId,
    shards: Vec<usize>,
    opts: CallOpts,
}

impl Tx {
    /// The shards involved, ascending.
    pub fn shards(&self) -> &[usize] {
        &self.shards
    }

    /// Runs `f` on `shard` inside the transaction, with a handler context.
    pub async fn run<R, F>(&self, shard: usize, f: F) -> R
    where
        R: Send + 'static,
        F: FnOnce(&mut Ctx<'_>) -> R + Send + 'static,
    {
        let opts = self.opts;
        run_on(self.global, shard, move |s: &mut Shard| {
            let mut ctx = Ctx {
                shard: s,
                db: opts.db,
                now_ms: unix_ms(),
                resp3: opts.resp3,
                touch: opts.touch,
            };
            let out = f(&mut ctx);
            crate::shard::blocking::serve_ready(s);
            out
        })
        .await
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        for &s in &self.shards {
            let id = self.id;
            let release: crate::shard::Task =
                Box::new(move || with_shard(|sh| sh.locks.release(id)));
            if crate::shard::current_shard_id() == Some(s) {
                release();
            } else {
                self.global.post(s, release);
            }
        }
    }
}
