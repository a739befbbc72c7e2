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
//! its claim, so it is served exactly once; stale queue entries of finished
//! waiters are dropped when met. A shard that tries to serve a waiter holds
//! a temporary claim; another shard that meets it meanwhile leaves a note
//! (`missed`), and a try that finds nothing then sends the client back to
//! redo its command ([`Wake::Retry`]) so that no wakeup is lost.

use crate::reply::Reply;
use crate::shard::ctx::Ctx;
use futures::channel::oneshot;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

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
    /// The client's socket, to skip a client that hung up.
    pub fd: i32,
    /// FREE, TRYING (a shard is running `serve`) or DONE.
    state: AtomicU8,
    /// Set when a shard met the waiter while another one was trying it.
    missed: AtomicBool,
    serve: Box<ServeFn>,
    done: Mutex<Option<oneshot::Sender<Wake>>>,
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter")
            .field("client_id", &self.client_id)
            .field("state", &self.state.load(Ordering::SeqCst))
            .finish()
    }
}

impl Waiter {
    /// A new, unclaimed waiter and the receiver its outcome arrives on.
    pub fn new(
        client_id: u64,
        db: usize,
        resp3: bool,
        fd: i32,
        timeout_reply: Reply,
        serve: Box<ServeFn>,
    ) -> (Waiter, oneshot::Receiver<Wake>) {
        let (tx, rx) = oneshot::channel();
        let w = Waiter {
            client_id,
            db,
            resp3,
            timeout_reply,
            fd,
            state: AtomicU8::new(FREE),
            missed: AtomicBool::new(false),
            serve,
            done: Mutex::new(Some(tx)),
        };
        (w, rx)
    }

    /// Takes the right to end this wait for good; false if it is ended or a
    /// shard is trying it right now.
    pub fn try_claim(&self) -> bool {
        self.state
            .compare_exchange(FREE, DONE, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Takes the temporary right to try serving this waiter on this shard.
    fn claim_to_try(&self) -> Claim {
        loop {
            match self
                .state
                .compare_exchange(FREE, TRYING, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return Claim::Got,
                Err(DONE) => return Claim::Done,
                Err(_) => {
                    // Another shard is trying: leave it a note, then look
                    // again in case it let go before seeing the note.
                    self.missed.store(true, Ordering::SeqCst);
                    if self.state.load(Ordering::SeqCst) == TRYING {
                        return Claim::Busy;
                    }
                }
            }
        }
    }

    /// Ends a try that found nothing. If another shard met the waiter
    /// meanwhile, the client redoes its command instead of waiting on.
    fn release_try(&self) {
        self.state.store(FREE, Ordering::SeqCst);
        if self.missed.swap(false, Ordering::SeqCst) && self.try_claim() {
            self.finish(Wake::Retry);
        }
    }

    /// Ends a try that served the waiter.
    fn end_try(&self) {
        self.state.store(DONE, Ordering::SeqCst);
    }

    /// True once served or cancelled.
    pub fn is_claimed(&self) -> bool {
        self.state.load(Ordering::SeqCst) == DONE
    }

    /// Ends the wait without an outcome (the client went away).
    fn abandon(&self) {
        drop(self.done.lock().unwrap().take());
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

/// Claim states of a [`Waiter`].
const FREE: u8 = 0;
const TRYING: u8 = 1;
const DONE: u8 = 2;

/// What trying to claim a waiter for a serve attempt gave.
enum Claim {
    Got,
    Busy,
    Done,
}

/// Serves the waiters of every key marked ready on this shard: keys in the
/// order they became ready, each key's waiters in the order they blocked,
/// until the key is gone or its queue is done.
pub fn serve_ready(shard: &mut super::Shard) {
    if !super::db::take_any_ready() {
        return;
    }
    for db in 0..shard.dbs.len() {
        loop {
            let mut keys = Vec::new();
            while let Some(k) = shard.dbs[db].take_ready() {
                keys.push(k);
            }
            if keys.is_empty() {
                break;
            }
            // `take_ready` hands out the latest first.
            for key in keys.into_iter().rev() {
                serve_key(shard, db, key);
            }
        }
    }
}

/// Serves `key`'s queue in FIFO order. A waiter the key cannot serve (of
/// another type: BLPOP on a key that became a sorted set) keeps its place
/// and the next one is tried, as Redis 7.0 skips clients blocked for
/// another type; serving stops once the key is gone.
fn serve_key(shard: &mut super::Shard, db: usize, key: Vec<u8>) {
    let Some(mut queue) = shard.dbs[db].blocked.remove(&key) else {
        return;
    };
    let mut kept = VecDeque::with_capacity(queue.len());
    while let Some(w) = queue.pop_front() {
        match w.claim_to_try() {
            Claim::Done => continue,
            Claim::Busy => {
                kept.push_back(w);
                continue;
            }
            Claim::Got => {}
        }
        if peer_closed(w.fd) {
            // Hung up: serving it would lose the data.
            w.end_try();
            w.abandon();
            continue;
        }
        let now_ms = super::unix_ms();
        let mut ctx = Ctx {
            shard,
            db,
            now_ms,
            resp3: w.resp3,
            touch: true,
            tx: super::locks::NO_TX,
        };
        match w.serve(&mut ctx, &key) {
            Some(Wake::Reply(r)) => {
                w.end_try();
                w.finish(Wake::Reply(r));
            }
            Some(Wake::Retry) => {
                // The client redoes its command under locks; the waiters
                // behind it wait for that, to keep their order.
                w.end_try();
                w.finish(Wake::Retry);
                break;
            }
            None => {
                w.release_try();
                kept.push_back(w);
            }
        }
        if shard.dbs[db].peek(&key, now_ms).is_none() {
            break;
        }
    }
    kept.extend(queue);
    // Serving is synchronous, so nobody queued meanwhile; keep FIFO anyway.
    if let Some(fresh) = shard.dbs[db].blocked.remove(&key) {
        kept.extend(fresh);
    }
    if !kept.is_empty() {
        shard.dbs[db].blocked.insert(key, kept);
    }
}

/// True if the peer closed the connection (a non-blocking peek reads EOF).
pub fn peer_closed(fd: i32) -> bool {
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

/// CLIENT UNBLOCK: ends a client's wait with its timeout reply, or with an
/// UNBLOCKED error. True if the client was blocked and is now unblocked.
pub fn unblock(w: &Waiter, with_error: bool) -> bool {
    // A shard may be trying to serve it this very moment (a short,
    // synchronous attempt on another thread): wait for that to settle.
    while !w.try_claim() {
        if w.is_claimed() {
            return false;
        }
        std::hint::spin_loop();
    }
    let reply = if with_error {
        Reply::StaticError("UNBLOCKED client unblocked via CLIENT UNBLOCK")
    } else {
        w.timeout_reply.clone()
    };
    w.finish(Wake::Reply(reply));
    true
}
