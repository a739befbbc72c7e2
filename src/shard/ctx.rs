//! The context a command handler runs in on its shard.

use super::Shard;
use super::db::Db;
use super::locks::TxId;
use crate::reply::Reply;
use bytes::Bytes;

/// The context of a keyed handler: the owning shard and the caller's settings.
pub struct Ctx<'a> {
    /// The shard that owns the keys.
    pub shard: &'a mut Shard,
    /// The selected database.
    pub db: usize,
    /// Unix time in milliseconds, fixed for the whole command.
    pub now_ms: u64,
    /// True when the client speaks RESP3.
    pub resp3: bool,
    /// False when the client set CLIENT NO-TOUCH.
    pub touch: bool,
    /// The transaction the command runs in ([`NO_TX`](super::locks::NO_TX) outside one): keys it
    /// holds count as free.
    pub tx: TxId,
}

impl Ctx<'_> {
    /// The selected database of this shard.
    #[inline]
    pub fn db(&mut self) -> &mut Db {
        &mut self.shard.dbs[self.db]
    }
}

/// A handler that runs on the shard owning the keys.
pub type KeyedFn = fn(&mut Ctx<'_>, &[Bytes]) -> Reply;

/// Settings a keyed handler needs from its client; `Send`, so it can travel
/// with a forwarded command.
#[derive(Clone, Copy, Debug)]
pub struct CallOpts {
    /// The selected database.
    pub db: usize,
    /// RESP3 in use.
    pub resp3: bool,
    /// Update access clocks.
    pub touch: bool,
    /// The transaction the command runs in ([`NO_TX`](super::locks::NO_TX) outside one).
    pub tx: TxId,
}

impl CallOpts {
    /// Runs `f` on `shard` with these settings, then serves the clients
    /// blocked on keys that `f` fed.
    pub fn call<R>(&self, shard: &mut Shard, f: impl FnOnce(&mut Ctx<'_>) -> R) -> R {
        let mut ctx = Ctx {
            shard,
            db: self.db,
            now_ms: crate::shard::unix_ms(),
            resp3: self.resp3,
            touch: self.touch,
            tx: self.tx,
        };
        let out = f(&mut ctx);
        crate::shard::blocking::serve_ready(shard);
        out
    }
}
