//! Key locks for atomic multi-shard commands.
//!
//! A command whose keys span shards runs as a transaction: the coordinator
//! locks the keys on each shard in ascending shard order (so two transactions
//! can never wait on each other in a cycle), runs its parts, and releases the
//! locks. While a key is locked, every other command that touches it on that
//! shard waits, so no client can observe half of a multi-shard MSET.
//!
//! Locks are exclusive and per `(db, key)`; a whole-shard lock serves
//! commands such as SWAPDB and FLUSHALL. The common case, no lock held, costs
//! one `is_empty` check per command.
//!
//! A lock never blocks its own transaction: the commands an EXEC or a script
//! runs pass its [`TxId`] and treat what it holds as free.

use super::Global;
use futures::channel::oneshot;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// A transaction id, unique within the process; [`NO_TX`] for a command
/// that runs outside any transaction.
pub type TxId = u64;

/// The id of no transaction.
pub const NO_TX: TxId = 0;

static NEXT_TX: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A fresh transaction id.
pub fn next_tx_id() -> TxId {
    NEXT_TX.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// What a transaction locks on one shard.
#[derive(Clone, Debug)]
pub enum LockSet {
    /// These keys of one database.
    Keys(usize, Vec<Vec<u8>>),
    /// The whole shard, all databases.
    All,
}

/// The locks held on one shard.
#[derive(Default)]
pub struct Locks {
    keys: HashMap<(usize, Vec<u8>), TxId>,
    whole: Option<TxId>,
    owned: HashMap<TxId, LockSet>,
    waiters: Vec<Waker>,
}

impl Locks {
    /// True when no lock is held: the fast path.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.owned.is_empty()
    }

    /// True when a command of transaction `tx` (or of none, [`NO_TX`]) may
    /// touch these keys now: no other transaction holds them.
    pub fn keys_free<'a>(
        &self,
        tx: TxId,
        db: usize,
        mut keys: impl Iterator<Item = &'a [u8]>,
    ) -> bool {
        if self.is_empty() {
            return true;
        }
        if let Some(w) = self.whole {
            return w == tx;
        }
        keys.all(|k| {
            self.keys
                .get(&(db, k.to_vec()))
                .is_none_or(|&owner| owner == tx)
        })
    }

    /// True when `tx` may use the whole shard: no other transaction holds
    /// anything on it.
    pub fn shard_free(&self, tx: TxId) -> bool {
        self.owned.keys().all(|&owner| owner == tx)
    }

    fn try_acquire(&mut self, tx: TxId, set: &LockSet) -> bool {
        match set {
            LockSet::All => {
                if !self.is_empty() {
                    return false;
                }
                self.whole = Some(tx);
            }
            LockSet::Keys(db, keys) => {
                if self.whole.is_some()
                    || keys
                        .iter()
                        .any(|k| self.keys.contains_key(&(*db, k.clone())))
                {
                    return false;
                }
                let uniq: HashSet<&Vec<u8>> = keys.iter().collect();
                for k in uniq {
                    self.keys.insert((*db, k.clone()), tx);
                }
            }
        }
        self.owned.insert(tx, set.clone());
        true
    }

    /// Releases everything `tx` holds and wakes the waiters.
    pub fn release(&mut self, tx: TxId) {
        match self.owned.remove(&tx) {
            Some(LockSet::All) => self.whole = None,
            Some(LockSet::Keys(db, keys)) => {
                for k in keys {
                    if self.keys.get(&(db, k.clone())) == Some(&tx) {
                        self.keys.remove(&(db, k));
                    }
                }
            }
            None => return,
        }
        for w in self.waiters.drain(..) {
            w.wake();
        }
    }

    fn park(&mut self, cx: &Context<'_>) {
        self.waiters.push(cx.waker().clone());
    }
}

/// Waits until `set` can be locked for `tx` on this thread's shard, then
/// holds it.
pub fn acquire(tx: TxId, set: LockSet) -> impl Future<Output = ()> {
    Acquire { tx, set }
}

struct Acquire {
    tx: TxId,
    set: LockSet,
}

impl Future for Acquire {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        super::with_shard(|s| {
            if s.locks.try_acquire(self.tx, &self.set) {
                Poll::Ready(())
            } else {
                s.locks.park(cx);
                Poll::Pending
            }
        })
    }
}

/// Waits until no lock of another transaction than `tx` covers these keys
/// (or, with `None`, the shard).
pub fn wait_free(tx: TxId, db: usize, keys: Option<Vec<Vec<u8>>>) -> impl Future<Output = ()> {
    WaitFree { tx, db, keys }
}

struct WaitFree {
    tx: TxId,
    db: usize,
    keys: Option<Vec<Vec<u8>>>,
}

impl Future for WaitFree {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        super::with_shard(|s| {
            let free = match &self.keys {
                Some(keys) => {
                    s.locks
                        .keys_free(self.tx, self.db, keys.iter().map(|k| k.as_slice()))
                }
                None => s.locks.shard_free(self.tx),
            };
            if free {
                Poll::Ready(())
            } else {
                s.locks.park(cx);
                Poll::Pending
            }
        })
    }
}

/// Locks held by one transaction on a set of shards, released on drop.
pub struct Held {
    global: &'static Global,
    id: TxId,
    shards: Vec<usize>,
}

impl Held {
    /// The transaction holding the locks.
    pub fn id(&self) -> TxId {
        self.id
    }
}

/// Locks `sets` for transaction `id`, one shard at a time in the given
/// (ascending) order, so that two transactions never wait on each other in
/// a cycle.
pub async fn lock(global: &'static Global, id: TxId, sets: Vec<(usize, LockSet)>) -> Held {
    let mut held = Held {
        global,
        id,
        shards: Vec::with_capacity(sets.len()),
    };
    for (s, set) in sets {
        let (done, granted) = oneshot::channel::<()>();
        let job = move || {
            glommio::spawn_local(async move {
                acquire(id, set).await;
                // The coordinator gave up (its client left): let go at once.
                if done.send(()).is_err() {
                    super::with_shard(|sh| sh.locks.release(id));
                }
            })
            .detach();
        };
        if super::current_shard_id() == Some(s) {
            job();
        } else {
            global.post(s, Box::new(job));
        }
        granted.await.expect("shard stopped while locking");
        held.shards.push(s);
    }
    held
}

/// Locks every shard whole, in order, for a server-wide operation (a save).
pub async fn lock_all_shards(global: &'static Global) -> Held {
    let sets = (0..global.nshards).map(|s| (s, LockSet::All)).collect();
    lock(global, next_tx_id(), sets).await
}

impl Drop for Held {
    fn drop(&mut self) {
        for &s in &self.shards {
            let id = self.id;
            let release: super::Task =
                Box::new(move || super::with_shard(|sh| sh.locks.release(id)));
            if super::current_shard_id() == Some(s) {
                release();
            } else {
                self.global.post(s, release);
            }
        }
    }
}
