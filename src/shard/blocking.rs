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

use crate::commands::Ctx;
use crate::server::client::{Client, Tx};
use crate::server::resp::Reply;
use futures::channel::oneshot;
use futures::future::LocalBoxFuture;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
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

/// Parses a blocking timeout in seconds (fractions allowed) as Redis 7.0's
/// `getTimeoutFromObjectOrReply` does: a `long double` (`string2ld`), times
/// 1000 in `long double`, rounded up (`ceill`) and cast to `long long`. So
/// -0.0005 waits forever like 0, 0.0001 waits 1 ms, and infinities or
/// values whose milliseconds overflow the cast (`LLONG_MIN` on x86-64) are
/// "negative". `None` means forever.
pub fn parse_timeout(arg: &[u8]) -> Result<Option<Duration>, Reply> {
    const NOT_FLOAT: Reply = Reply::StaticError("ERR timeout is not a float or out of range");
    if crate::commands::longdouble::LongDouble::parse(arg).is_none() {
        return Err(NOT_FLOAT);
    }
    let ms = x87_bits(arg).map_or(i64::MIN, ceil_ms);
    if ms < 0 {
        return Err(Reply::StaticError("ERR timeout is negative"));
    }
    Ok((ms > 0).then(|| Duration::from_millis(ms as u64)))
}

/// The 80-bit `long double` that glibc's `strtold` reads from `arg` (through
/// `sscanf("%Lf")`, which shares its conversion): sign, biased exponent and
/// 64-bit mantissa. `None` if it cannot be read.
fn x87_bits(arg: &[u8]) -> Option<(bool, u16, u64)> {
    let cs = std::ffi::CString::new(arg).ok()?;
    let mut raw = [0u8; 16];
    // SAFETY: `%Lf` stores one `long double` (10 bytes on x86-64, at most
    // 16 anywhere) into `raw`; both strings are NUL-terminated.
    let n = unsafe { libc::sscanf(cs.as_ptr(), c"%Lf".as_ptr(), raw.as_mut_ptr()) };
    if n != 1 || !cfg!(target_arch = "x86_64") {
        return None;
    }
    let mantissa = u64::from_le_bytes(raw[..8].try_into().ok()?);
    let se = u16::from_le_bytes([raw[8], raw[9]]);
    Some((se & 0x8000 != 0, se & 0x7fff, mantissa))
}

/// `(long long) ceill(x * 1000.0)` for an x87 `long double` x, with the
/// product rounded to 64 significant bits (to nearest, ties to even) as
/// the FPU does, and `LLONG_MIN` when the result does not fit.
fn ceil_ms((neg, exp, mantissa): (bool, u16, u64)) -> i64 {
    if exp == 0x7fff {
        return i64::MIN; // inf or NaN
    }
    if mantissa == 0 {
        return 0;
    }
    // x = mantissa * 2^(exp - 16383 - 63); denormals use exponent 1.
    let mut k = exp.max(1) as i32 - 16383 - 63;
    let mut p = mantissa as u128 * 1000;
    let bits = 128 - p.leading_zeros() as i32;
    if bits > 64 {
        let shift = bits - 64;
        let rem = p & ((1u128 << shift) - 1);
        let half = 1u128 << (shift - 1);
        p >>= shift;
        k += shift;
        if rem > half || (rem == half && p & 1 == 1) {
            p += 1;
            if p >> 64 != 0 {
                p >>= 1;
                k += 1;
            }
        }
    }
    // |x * 1000| = p * 2^k; round towards +inf.
    let magnitude: u128 = if k >= 0 {
        if k >= 64 {
            return i64::MIN;
        }
        p << k
    } else if k <= -128 {
        // Below one: ceil gives 1 when positive, 0 when negative.
        return if neg { 0 } else { 1 };
    } else {
        let int = p >> -k;
        let frac = p & ((1u128 << -k) - 1) != 0;
        if neg { int } else { int + frac as u128 }
    };
    match (neg, i64::try_from(magnitude)) {
        (false, Ok(v)) => v,
        (true, Ok(v)) => -v,
        // Out of range for the cast; -2^63 itself happens to be LLONG_MIN.
        _ => i64::MIN,
    }
}

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
        if deadline.is_some_and(|d| Instant::now() >= d) {
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
        if !(expired || peer_closed(fd)) {
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
        for (shard, keys) in std::mem::take(&mut self.parts) {
            let db = self.db;
            let w = self.waiter.clone();
            // Removes this registration's entries only: the same client may
            // already wait again under a new registration.
            self.global.post(
                shard,
                Box::new(move || {
                    super::with_shard(|s| {
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

#[cfg(test)]
mod tests {
    use super::parse_timeout;

    fn ms(s: &str) -> Result<Option<u64>, String> {
        parse_timeout(s.as_bytes())
            .map(|d| d.map(|d| d.as_millis() as u64))
            .map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn timeouts_round_like_redis() {
        assert_eq!(ms("0"), Ok(None));
        assert_eq!(ms("-0"), Ok(None));
        assert_eq!(ms("1"), Ok(Some(1000)));
        assert_eq!(ms("0.01"), Ok(Some(10)));
        assert_eq!(ms("0.0001"), Ok(Some(1)));
        assert_eq!(ms("1e-400"), Ok(Some(1)));
        assert_eq!(ms("-1e-400"), Ok(None));
        assert_eq!(ms("-0.0009"), Ok(None));
        // -0.001L * 1000 rounds to just above -1 in long double.
        assert_eq!(ms("-0.001"), Ok(None));
        assert_eq!(ms("0x10"), Ok(Some(16000)));
        assert_eq!(ms("1.5"), Ok(Some(1500)));
        assert!(ms("-0.002").is_err());
        assert!(ms("inf").is_err());
        assert!(ms("1e400").is_err());
        assert!(ms("9.3e15").is_err());
        assert_eq!(ms("9.2e15"), Ok(Some(9_200_000_000_000_000_000)));
    }
}
