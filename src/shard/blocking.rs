//! Blocking commands (BLPOP, BZPOPMIN, BLMOVE...): clients waiting for keys.
//!
//! A blocked client leaves a [`Waiter`] in the queue of every key it waits
//! for, on the shard that owns each key (`Db::blocked`). A write that may
//! feed a waited-for key marks it ready (`Db::mark_ready`); after each
//! command the shard serves its ready keys' queues in FIFO order, running
//! each waiter's operation right there, so clients are served in the order
//! they blocked and before any later command, as in Redis.
//!
//! A waiter may sit in queues on several shards. Whoever serves it first
//! (a shard, the timeout, CLIENT UNBLOCK, or the client leaving) must win
//! its `claimed` flag, so it is served exactly once; stale queue entries of
//! claimed waiters are dropped when met.

use crate::commands::Ctx;
use crate::server::client::{Client, Tx};
use crate::server::resp::Reply;
use futures::channel::oneshot;
use futures::future::LocalBoxFuture;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What serving a waiter produced.
pub enum Wake {
    /// The command's reply: the waiter is done.
    Reply(Reply),
    /// The key is ready but the work spans shards: the client must redo its
    /// command under key locks (cross-shard BLMOVE).
    Retry,
}

/// Tries to serve a waiter on the shard that owns `key`: `None` when the key
/// cannot serve it (still empty, or of another type).
pub type ServeFn = dyn Fn(&mut Ctx<'_>, &[u8]) -> Option<Wake> + Send + Sync;

/// A blocked client, shared by the queues of all the keys it waits for.
pub struct Waiter {
    /// The client's id, for CLIENT UNBLOCK.
    pub client_id: u64,
    /// The client's database.
    pub db: usize,
    /// RESP3 in use, for building replies.
    pub resp3: bool,
    /// The reply when the timeout passes (or CLIENT UNBLOCK ... TIMEOUT).
    pub timeout_reply: Reply,
    claimed: AtomicBool,
    serve: Box<ServeFn>,
    done: Mutex<Option<oneshot::Sender<Wake>>>,
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter")
            .field("client_id", &self.client_id)
            .field("claimed", &self.is_claimed())
            .finish()
    }
}

impl Waiter {
    /// A new, unclaimed waiter and the receiver its outcome arrives on.
    pub fn new(
        client_id: u64,
        db: usize,
        resp3: bool,
        timeout_reply: Reply,
        serve: Box<ServeFn>,
    ) -> (Waiter, oneshot::Receiver<Wake>) {
        let (tx, rx) = oneshot::channel();
        let w = Waiter {
            client_id,
            db,
            resp3,
            timeout_reply,
            claimed: AtomicBool::new(false),
            serve,
            done: Mutex::new(Some(tx)),
        };
        (w, rx)
    }

    /// Takes the right to serve this waiter; false if someone else has it.
    pub fn try_claim(&self) -> bool {
        self.claimed
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Gives the right back (the serve attempt found nothing).
    fn unclaim(&self) {
        self.claimed.store(false, Ordering::Release);
    }

    /// True once served or cancelled.
    pub fn is_claimed(&self) -> bool {
        self.claimed.load(Ordering::Acquire)
    }

    /// Sends the outcome to the blocked client. Call after winning the claim.
    pub fn finish(&self, wake: Wake) {
        if let Some(tx) = self.done.lock().unwrap().take() {
            let _ = tx.send(wake);
        }
    }

    /// Runs the serve function on the key's shard.
    pub fn serve(&self, ctx: &mut Ctx<'_>, key: &[u8]) -> Option<Wake> {
        (self.serve)(ctx, key)
    }
}

/// Serves the waiters of every key marked ready on this shard, in FIFO order
/// per key, until each ready key runs dry or its queue empties.
pub fn serve_ready(shard: &mut super::Shard) {
    if !super::db::take_any_ready() {
        return;
    }
    for db in 0..shard.dbs.len() {
        while let Some(key) = shard.dbs[db].take_ready() {
            let Some(mut queue) = shard.dbs[db].blocked.remove(&key) else {
                continue;
            };
            while let Some(w) = queue.front().cloned() {
                if !w.try_claim() {
                    queue.pop_front();
                    continue;
                }
                let mut ctx = Ctx {
                    shard,
                    db,
                    now_ms: super::unix_ms(),
                    resp3: w.resp3,
                    touch: true,
                };
                match w.serve(&mut ctx, &key) {
                    Some(wake) => {
                        queue.pop_front();
                        w.finish(wake);
                    }
                    None => {
                        w.unclaim();
                        break;
                    }
                }
            }
            if !queue.is_empty() {
                // Waiters that blocked while we served (none can: serving is
                // synchronous) would be in a fresh queue; keep FIFO order.
                let fresh = shard.dbs[db].blocked.remove(&key).unwrap_or_default();
                queue.extend(fresh);
                shard.dbs[db].blocked.insert(key, queue);
            }
        }
    }
}

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
    /// Serves the client from one ready key on its shard.
    pub serve: Arc<ServeFn>,
}

/// Redoes a command whose serve returned [`Wake::Retry`], under the locks of
/// [`BlockSpec::lock`]; `None` if there was nothing to take after all.
pub type RetryFn = dyn for<'a> Fn(&'a Client, &'a Tx) -> LocalBoxFuture<'a, Option<Reply>>;

/// Parses a blocking timeout in seconds (fractions allowed) as Redis does;
/// zero means forever.
pub fn parse_timeout(arg: &[u8]) -> Result<Option<Duration>, Reply> {
    let secs = crate::commands::parse_f64(arg)
        .filter(|v| v.is_finite())
        .ok_or(Reply::StaticError(
            "ERR timeout is not a float or out of range",
        ))?;
    if secs < 0.0 {
        return Err(Reply::StaticError("ERR timeout is negative"));
    }
    let ms = secs * 1000.0;
    if ms > i64::MAX as f64 {
        return Err(Reply::StaticError("ERR timeout is out of range"));
    }
    // Redis rounds the milliseconds down (0.0005 s waits forever, as 0).
    let ms = ms as u64;
    Ok((ms > 0).then(|| Duration::from_millis(ms)))
}

/// Runs a blocking command: serves at once if a key can, otherwise blocks
/// until a key serves the client, the timeout passes, CLIENT UNBLOCK, or the
/// client disconnects.
pub async fn block(c: &Client, spec: BlockSpec, retry: &RetryFn) -> Reply {
    let deadline = spec.timeout.map(|t| Instant::now() + t);
    loop {
        let tx = c.lock_keys(&spec.lock).await;
        for key in &spec.wait {
            let serve = spec.serve.clone();
            let k = key.clone();
            match tx.run(c.shard_of(key), move |ctx| serve(ctx, &k)).await {
                Some(Wake::Reply(r)) => return r,
                Some(Wake::Retry) => {
                    if let Some(r) = retry(c, &tx).await {
                        return r;
                    }
                }
                None => {}
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return spec.timeout_reply;
        }
        let serve = spec.serve.clone();
        let (waiter, rx) = Waiter::new(
            c.id,
            c.db,
            c.resp3,
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
        let fd = c.info.borrow().fd;
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
    loop {
        let tick = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()).min(CLOSE_CHECK),
            None => CLOSE_CHECK,
        };
        let mut sleep = Box::pin(glommio::timer::sleep(tick).fuse());
        futures::select_biased! {
            wake = (&mut rx).fuse() => return wake.ok(),
            _ = sleep => {}
        }
        let expired = deadline.is_some_and(|d| Instant::now() >= d);
        if (expired || peer_closed(fd)) && w.try_claim() {
            return None;
        }
        if w.is_claimed() {
            // Served (or unblocked) meanwhile: the outcome is on its way.
            return rx.await.ok();
        }
    }
}

/// How often a blocked client's socket is checked for a hang-up.
const CLOSE_CHECK: Duration = Duration::from_millis(100);

/// True if the peer closed the connection (a non-blocking peek reads EOF).
fn peer_closed(fd: i32) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: peeking one byte into a local buffer on an open socket.
    let n = unsafe {
        libc::recv(
            fd,
            b.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n == 0
}

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
        let id = self.waiter.client_id;
        for (shard, keys) in std::mem::take(&mut self.parts) {
            let db = self.db;
            self.global.post(
                shard,
                Box::new(move || {
                    super::with_shard(|s| {
                        for k in &keys {
                            s.dbs[db].remove_waiter(k, id);
                        }
                    })
                }),
            );
        }
    }
}

/// CLIENT UNBLOCK: ends a client's wait with its timeout reply, or with an
/// UNBLOCKED error. True if the client was blocked and is now unblocked.
pub fn unblock(w: &Waiter, with_error: bool) -> bool {
    if !w.try_claim() {
        return false;
    }
    let reply = if with_error {
        Reply::StaticError("UNBLOCKED client unblocked via CLIENT UNBLOCK")
    } else {
        w.timeout_reply.clone()
    };
    w.finish(Wake::Reply(reply));
    true
}
