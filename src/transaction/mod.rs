//! The transaction layer: atomic work over keys that may live on several
//! shards.
//!
//! A [`Tx`] locks a set of keys, or whole shards, on every shard involved
//! (in ascending shard order, so transactions never deadlock), runs steps on
//! those shards, and releases the locks when dropped. While a key is locked,
//! other clients' commands on it wait (see [`crate::shard::locks`]), so no
//! one observes a state between two steps. Multi-key commands (MGET, MSET,
//! RENAME...), blocking commands, EXEC and scripts all go through it; they
//! reach it through the connection's [`Client`].

pub mod blocking;
pub mod client;
pub mod multi;

pub use client::{Client, ReplyMode};

use crate::shard::ctx::{CallOpts, Ctx};
use crate::shard::locks::{self, Held, LockSet};
use crate::shard::{Global, Shard, run_on};

/// An atomic multi-shard operation holding key locks; see
/// [`Client::lock_keys`].
pub struct Tx {
    global: &'static Global,
    opts: CallOpts,
    /// The locks, or None when this joined a running transaction that
    /// holds them.
    held: Option<Held>,
}

impl Tx {
    /// Locks `sets` as a new transaction running with `opts`.
    pub async fn lock(
        global: &'static Global,
        mut opts: CallOpts,
        sets: Vec<(usize, LockSet)>,
    ) -> Tx {
        let held = locks::lock(global, locks::next_tx_id(), sets).await;
        opts.tx = held.id();
        Tx {
            global,
            opts,
            held: Some(held),
        }
    }

    /// A handle on the running transaction `opts.tx`, which already holds
    /// the locks.
    pub fn joined(global: &'static Global, opts: CallOpts) -> Tx {
        Tx {
            global,
            opts,
            held: None,
        }
    }

    /// The options the steps run with; `tx` is this transaction.
    pub fn opts(&self) -> CallOpts {
        self.opts
    }

    /// True when this handle owns the locks (it is not a joined one).
    pub fn owns_locks(&self) -> bool {
        self.held.is_some()
    }

    /// Runs `f` on `shard` inside the transaction, with a handler context.
    pub async fn run<R, F>(&self, shard: usize, f: F) -> R
    where
        R: Send + 'static,
        F: FnOnce(&mut Ctx<'_>) -> R + Send + 'static,
    {
        let opts = self.opts;
        run_on(self.global, shard, move |s: &mut Shard| opts.call(s, f)).await
    }
}
