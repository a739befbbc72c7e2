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

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// A transaction id, unique within the process.
pub type TxId = u64;

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

    /// True when a command outside any transaction may touch these keys now.
    pub fn keys_free<'a>(&self, db: usize, mut keys: impl Iterator<Item = &'a [u8]>) -> bool {
        if self.is_empty() {
            return true;
        }
        if self.whole.is_some() {
            return false;
        }
        keys.all(|k| !self.keys.contains_key(&(db, k.to_vec())))
    }

    /// True when the whole shard may be used (no lock at all).
    pub fn shard_free(&self) -> bool {
        self.is_empty()
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

/// Waits until no lock covers these keys (or, with `None`, until the shard
/// holds no lock at all).
pub fn wait_free(db: usize, keys: Option<Vec<Vec<u8>>>) -> impl Future<Output = ()> {
    WaitFree { db, keys }
}

struct WaitFree {
    db: usize,
    keys: Option<Vec<Vec<u8>>>,
}

impl Future for WaitFree {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        super::with_shard(|s| {
            let free = match &self.keys {
                Some(keys) => s
                    .locks
                    .keys_free(self.db, keys.iter().map(|k| k.as_slice())),
                None => s.locks.shard_free(),
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
