//! Per-connection state, and the coordination helpers that commands running
//! on the connection use to reach other shards.

use super::Tx;
use super::multi::{Multi, Watching};
use crate::reply::Reply;
use crate::shard::clients::ClientInfo;
use crate::shard::ctx::{CallOpts, KeyedFn};
use crate::shard::locks::{self, LockSet, NO_TX, TxId};
use crate::shard::{Global, run_on, spawn_on, with_shard};
use bytes::Bytes;
use std::cell::RefCell;
use std::rc::Rc;

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
    /// Commands queued since MULTI.
    pub multi: Option<Multi>,
    /// Keys under WATCH.
    pub watching: Watching,
    /// The AOF effects of the running transaction's commands, logged as one
    /// record when it ends.
    pub aof_capture: Vec<crate::persistence::aof::Effects>,
    /// The transaction (EXEC or script) whose commands are running, or
    /// [`NO_TX`]: its locks are this client's own, and nothing blocks.
    pub tx: TxId,
}

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
            multi: None,
            watching: Watching::default(),
            aof_capture: Vec::new(),
            tx: NO_TX,
        }
    }

    /// A client for commands the server runs itself (AOF replay, scripts,
    /// shipped EXECs) on shard `shard`: id 0, authenticated, no socket.
    pub fn internal(global: &'static Global, shard: usize) -> Client {
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
        let info = Rc::new(RefCell::new(ClientInfo::new(0, addr, addr, -1)));
        Client::new(global, shard, 0, true, info)
    }

    /// The options keyed handlers run with.
    pub fn opts(&self) -> CallOpts {
        CallOpts {
            db: self.db,
            resp3: self.resp3,
            touch: !self.info.borrow().no_touch,
            tx: self.tx,
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
    /// on one shard), once no other transaction holds them.
    pub async fn run_keyed(
        &self,
        shard: usize,
        keys: Vec<Vec<u8>>,
        f: KeyedFn,
        args: Vec<Bytes>,
    ) -> Reply {
        let opts = self.opts();
        if self.in_transaction() {
            // The transaction holds the keys: nothing to wait for.
            return run_on(self.global, shard, move |s| {
                opts.call(s, |ctx| f(ctx, &args))
            })
            .await;
        }
        let (reply, seq) = spawn_on(self.global, shard, move || async move {
            locks::wait_free(opts.tx, opts.db, Some(keys)).await;
            with_shard(|s| {
                let reply = opts.call(s, |ctx| f(ctx, &args));
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
    /// the returned [`Tx`] is dropped. Inside an EXEC or a script, which
    /// already holds every key it may touch, nothing more is locked.
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

    /// Locks `sets` (ascending by shard) as a new transaction, or joins the
    /// running one.
    pub async fn lock(&self, sets: Vec<(usize, LockSet)>) -> Tx {
        let tx = if self.tx == NO_TX {
            Tx::lock(self.global, self.opts(), sets).await
        } else {
            Tx::joined(self.global, self.opts())
        };
        // Every key is held: a later writer of any of them logs after this.
        self.reserve_seq(self.global.aof.next_seq());
        tx
    }

    /// Like [`Client::lock`], but when every set is on this shard and no
    /// transaction holds anything here, it takes no lock at all: the caller
    /// promises to finish without yielding to the executor (everything it
    /// runs is on this shard, inline), so nothing can interleave with it.
    /// EXEC's fast path.
    pub async fn lock_or_run_alone(&self, sets: Vec<(usize, LockSet)>) -> Tx {
        if self.tx == NO_TX
            && sets.iter().all(|(s, _)| *s == self.shard)
            && with_shard(|s| s.locks.is_empty())
        {
            let mut opts = self.opts();
            opts.tx = locks::next_tx_id();
            return Tx::joined(self.global, opts);
        }
        self.lock(sets).await
    }

    /// True inside an EXEC or a script, where commands never block.
    pub fn in_transaction(&self) -> bool {
        self.tx != NO_TX
    }
}
