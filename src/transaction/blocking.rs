//! Blocking a client (BLPOP, BZPOPMIN, BLMOVE...) until a key can serve it:
//! the coordinating half, which locks the keys, tries them, and registers a
//! [`Waiter`] on every shard that owns one. The shards' half, the waiter
//! queues and serving ready keys, is [`crate::shard::blocking`].

use super::{Client, Tx};
use crate::reply::Reply;
use crate::shard::blocking::{ServeFn, Waiter, Wake};
use crate::shard::ctx::Ctx;
use futures::channel::oneshot;
use futures::future::LocalBoxFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a blocking command waits for.
pub struct BlockSpec {
    /// Keys to lock while trying and registering (the waited keys plus any
    /// destination key).
    pub lock: Vec<bytes::Bytes>,
    /// Keys to wait on, in the command's order.
    pub wait: Vec<bytes::Bytes>,
    /// How long to wait; `None` waits forever.
    pub timeout: Option<Duration>,
    /// The reply when the time runs out.
    pub timeout_reply: Reply,
    /// The immediate attempt on one key, under the locks: like `serve`, but
    /// a key of the wrong type ends the command with WRONGTYPE, as Redis
    /// checks types before blocking (while a blocked client ignores a key
    /// that becomes another type).
    pub first: Arc<ServeFn>,
    /// Serves the client from one ready key on its shard.
    pub serve: Arc<ServeFn>,
}

/// Redoes a command whose serve returned [`Wake::Retry`], under the locks of
/// [`BlockSpec::lock`]; `None` if there was nothing to take after all.
pub type RetryFn = dyn for<'a> Fn(&'a Client, &'a Tx) -> LocalBoxFuture<'a, Option<Reply>>;

/// Runs a blocking command: serves at once if a key can, otherwise blocks
/// until a key serves the client, the timeout passes, CLIENT UNBLOCK, or the
/// client disconnects.
pub async fn block(c: &Client, spec: BlockSpec, retry: &RetryFn) -> Reply {
    // A deadline beyond what Instant can hold is as good as none.
    let deadline = spec.timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let tx = c.lock_keys(&spec.lock).await;
        for key in &spec.wait {
            let first = spec.first.clone();
            let k = key.clone();
            match tx.run(c.shard_of(key), move |ctx| first(ctx, &k)).await {
                Some(Wake::Reply(r)) => return r,
                Some(Wake::Retry) => {
                    if let Some(r) = retry(c, &tx).await {
                        return r;
                    }
                }
                None => {}
            }
        }
        // Inside EXEC or a script a blocking command acts as if its timeout
        // had passed, as in Redis.
        if c.in_transaction() || deadline.is_some_and(|d| Instant::now() >= d) {
            return spec.timeout_reply;
        }
        let serve = spec.serve.clone();
        let fd = c.info.borrow().fd;
        let (waiter, rx) = Waiter::new(
            c.id,
            c.db,
            c.resp3,
            fd,
            spec.timeout_reply.clone(),
            Box::new(move |ctx: &mut Ctx<'_>, k: &[u8]| serve(ctx, k)),
        );
        let w = Arc::new(waiter);
        let groups = c.group_by_shard(&spec.wait);
        let reg = Registration {
            global: c.global,
            waiter: w.clone(),
            db: c.db,
            parts: groups
                .iter()
                .map(|(s, idx)| (*s, idx.iter().map(|&i| spec.wait[i].to_vec()).collect()))
                .collect(),
        };
        for (shard, keys) in reg.parts.clone() {
            let w = w.clone();
            tx.run(shard, move |ctx| {
                for k in &keys {
                    ctx.db().add_waiter(k, w.clone());
                }
            })
            .await;
        }
        c.info.borrow_mut().blocked = Some(w.clone());
        drop(tx);
        let outcome = wait(rx, &w, deadline, fd).await;
        c.info.borrow_mut().blocked = None;
        drop(reg);
        match outcome {
            Some(Wake::Reply(r)) => return r,
            Some(Wake::Retry) => continue,
            None => return spec.timeout_reply,
        }
    }
}

/// Waits for the waiter's outcome; `None` when the deadline passed or the
/// client went away (and this side won the claim).
async fn wait(
    mut rx: oneshot::Receiver<Wake>,
    w: &Waiter,
    deadline: Option<Instant>,
    fd: i32,
) -> Option<Wake> {
    use futures::FutureExt;
    let mut tick = CLOSE_CHECK;
    loop {
        if let Some(d) = deadline {
            tick = tick.min(d.saturating_duration_since(Instant::now()));
        }
        let mut sleep = Box::pin(glommio::timer::sleep(tick).fuse());
        futures::select_biased! {
            wake = (&mut rx).fuse() => return wake.ok(),
            _ = sleep => {}
        }
        tick = CLOSE_CHECK;
        let expired = deadline.is_some_and(|d| Instant::now() >= d);
        if !(expired || crate::shard::blocking::peer_closed(fd)) {
            continue;
        }
        if w.try_claim() {
            return None;
        }
        if w.is_claimed() {
            // Served (or unblocked) meanwhile: the outcome is on its way.
            return rx.await.ok();
        }
        // A shard is trying to serve it right now: look again shortly.
        tick = Duration::from_millis(1);
    }
}

/// How often a blocked client's socket is checked for a hang-up.
const CLOSE_CHECK: Duration = Duration::from_millis(100);

/// A waiter's queue entries; removed from every shard when dropped, and the
/// waiter claimed so no shard serves a client that stopped waiting.
struct Registration {
    global: &'static super::Global,
    waiter: Arc<Waiter>,
    db: usize,
    parts: Vec<(usize, Vec<Vec<u8>>)>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.waiter.try_claim();
        for (shard, keys) in std::mem::take(&mut self.parts) {
            let db = self.db;
            let w = self.waiter.clone();
            // Removes this registration's entries only: the same client may
            // already wait again under a new registration.
            self.global.post(
                shard,
                Box::new(move || {
                    crate::shard::with_shard(|s| {
                        for k in &keys {
                            if let Some(q) = s.dbs[db].blocked.get_mut(&k[..]) {
                                q.retain(|x| !Arc::ptr_eq(x, &w));
                                if q.is_empty() {
                                    s.dbs[db].blocked.remove(&k[..]);
                                }
                            }
                        }
                    })
                }),
            );
        }
    }
}
