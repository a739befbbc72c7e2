//! Which of this shard's client sockets have data, learned with one
//! `epoll_wait` per executor round instead of one system call per waiting
//! connection.
//!
//! A busy shard should not sleep in io_uring between requests: glommio's
//! sleep and wake-up cost several system calls, and every completion on a
//! running thread costs an interrupt. So while the shard is active, a
//! connection that waits for its next request parks on the shard's poller
//! instead. Every socket is registered, edge-triggered, in one epoll set per
//! shard; the poller task runs once per round of the executor's run queue
//! while connections wait, and one non-blocking `epoll_wait` tells it which
//! of them to wake, as Redis's event loop does. When the shard has been idle
//! for [`SPIN_IDLE`], the poller releases every waiter to an io_uring wait,
//! which sleeps, and parks itself.
//!
//! Readiness is a hint: a socket marked ready may turn out empty (its data
//! was already read), in which case its connection simply waits again.

use std::cell::RefCell;
use std::future::Future;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How long the poller keeps polling while nothing at all happens on the
/// shard, before waiting connections fall back to io_uring. Sleeping and
/// waking through glommio costs more CPU than this much polling: at one
/// client, polling for the next request doubled both throughput and
/// requests per CPU-second.
pub const SPIN_IDLE: Duration = Duration::from_micros(50);

/// Poller rounds between two passes through glommio's reactor, which
/// harvests io_uring completions (AOF writes, timers) only when its run queue
/// drains or its preempt timer fires.
const ROUNDS_PER_REACTOR_PASS: u32 = 32;

/// Events fetched per `epoll_wait`.
const BATCH: usize = 256;

/// Per fd: no mark.
const IDLE: u8 = 0;
/// Per fd: data arrived since its connection last looked.
const READY: u8 = 1;

struct Readiness {
    /// The shard's epoll set, or -1 when it could not be created (then every
    /// wait falls back to io_uring at once).
    epfd: RawFd,
    /// Per descriptor: [`IDLE`] or [`READY`].
    marks: Vec<u8>,
    /// Per descriptor: the waiting connection.
    waiters: Vec<Option<Waker>>,
    /// Per descriptor: a connection released to io_uring, which the poller
    /// still wakes if it sees its data first.
    sleepers: Vec<Option<Waker>>,
    /// Number of `Some` in `waiters`.
    nwaiters: usize,
    /// Bumped each time the poller releases its waiters to io_uring.
    release: u64,
    /// The poller, parked while nobody waits.
    poller: Option<Waker>,
    /// Bumped by every read that returned data and every readiness event:
    /// tells the poller whether the shard is active.
    activity: u64,
}

impl Readiness {
    fn slot(&mut self, fd: RawFd) -> usize {
        let i = fd as usize;
        if i >= self.marks.len() {
            self.marks.resize(i + 1, IDLE);
            self.waiters.resize(i + 1, None);
            self.sleepers.resize(i + 1, None);
        }
        i
    }
}

thread_local! {
    static STATE: RefCell<Readiness> = RefCell::new(Readiness {
        // SAFETY: plain system call.
        epfd: unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) },
        marks: Vec::new(),
        waiters: Vec::new(),
        sleepers: Vec::new(),
        nwaiters: 0,
        release: 0,
        poller: None,
        activity: 0,
    });
}

/// Adds a connection's socket to this shard's epoll set. Returns false if it
/// could not (the connection then always waits through io_uring).
pub fn register(fd: RawFd) -> bool {
    STATE.with(|r| {
        let mut r = r.borrow_mut();
        if r.epfd < 0 || fd < 0 {
            return false;
        }
        let i = r.slot(fd);
        r.marks[i] = IDLE;
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: fd as u64,
        };
        // SAFETY: both descriptors are open; `ev` is a valid event.
        unsafe { libc::epoll_ctl(r.epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) == 0 }
    })
}

/// Removes a socket before it is closed, so that a later socket reusing the
/// descriptor number starts clean.
pub fn deregister(fd: RawFd) {
    STATE.with(|r| {
        let mut r = r.borrow_mut();
        let i = r.slot(fd);
        r.marks[i] = IDLE;
        r.sleepers[i] = None;
        // SAFETY: as in `register`; a failure (already gone) is harmless.
        unsafe { libc::epoll_ctl(r.epfd, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
    })
}

/// Takes the ready mark of `fd`: true if data arrived since the last call.
pub fn take_ready(fd: RawFd) -> bool {
    STATE.with(|r| {
        let mut r = r.borrow_mut();
        let i = r.slot(fd);
        std::mem::replace(&mut r.marks[i], IDLE) == READY
    })
}

/// Records that a read returned data.
pub fn note_activity() {
    STATE.with(|r| r.borrow_mut().activity += 1);
}

/// Waits until the poller sees data on `fd` (true) or releases its waiters
/// because the shard went idle (false).
pub fn readable(fd: RawFd) -> impl Future<Output = bool> {
    Readable {
        fd,
        release: None,
        registered: false,
    }
}

struct Readable {
    fd: RawFd,
    /// The poller's release count when the wait began.
    release: Option<u64>,
    registered: bool,
}

impl Future for Readable {
    type Output = bool;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let fd = self.fd;
        let outcome = STATE.with(|r| {
            let mut r = r.borrow_mut();
            let i = r.slot(fd);
            let release = *self.release.get_or_insert(r.release);
            if std::mem::replace(&mut r.marks[i], IDLE) == READY {
                return Some(true);
            }
            if r.epfd < 0 || r.release != release {
                return Some(false);
            }
            if r.waiters[i].replace(cx.waker().clone()).is_none() {
                r.nwaiters += 1;
            }
            if let Some(w) = r.poller.take() {
                w.wake();
            }
            None
        });
        match outcome {
            Some(v) => {
                self.unregister();
                Poll::Ready(v)
            }
            None => {
                self.registered = true;
                Poll::Pending
            }
        }
    }
}

impl Readable {
    fn unregister(&mut self) {
        if std::mem::take(&mut self.registered) {
            STATE.with(|r| {
                let mut r = r.borrow_mut();
                let i = r.slot(self.fd);
                if r.waiters[i].take().is_some() {
                    r.nwaiters -= 1;
                }
            });
        }
    }
}

impl Drop for Readable {
    fn drop(&mut self) {
        self.unregister();
    }
}

/// Waits until the poller marks `fd` ready, without keeping the poller
/// running: a connection waiting in io_uring races this against its own
/// wait, so that while the poller runs anyway it is woken from there.
pub fn marked(fd: RawFd) -> impl Future<Output = ()> {
    futures::future::poll_fn(move |cx| {
        STATE.with(|r| {
            let mut r = r.borrow_mut();
            let i = r.slot(fd);
            if r.marks[i] == READY {
                r.sleepers[i] = None;
                Poll::Ready(())
            } else {
                r.sleepers[i] = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    })
}

/// The shard's poller: while connections wait, one non-blocking
/// `epoll_wait` per executor round wakes those whose sockets got data.
pub async fn poller_loop() {
    let mut events: Vec<libc::epoll_event> = vec![libc::epoll_event { events: 0, u64: 0 }; BATCH];
    let mut rounds = 0u32;
    loop {
        // Park until a connection waits.
        futures::future::poll_fn(|cx| {
            STATE.with(|r| {
                let mut r = r.borrow_mut();
                if r.nwaiters > 0 {
                    Poll::Ready(())
                } else {
                    r.poller = Some(cx.waker().clone());
                    Poll::Pending
                }
            })
        })
        .await;
        let mut idle_since: Option<Instant> = None;
        let mut seen = STATE.with(|r| r.borrow().activity);
        loop {
            let (more, idle) = STATE.with(|r| {
                let mut r = r.borrow_mut();
                // SAFETY: `events` has room for BATCH entries.
                let n = unsafe { libc::epoll_wait(r.epfd, events.as_mut_ptr(), BATCH as i32, 0) };
                if n > 0 {
                    r.activity += 1;
                    for ev in &events[..n as usize] {
                        let i = r.slot(ev.u64 as RawFd);
                        r.marks[i] = READY;
                        if let Some(w) = r.waiters[i].take() {
                            r.nwaiters -= 1;
                            w.wake();
                        } else if let Some(w) = r.sleepers[i].take() {
                            w.wake();
                        }
                    }
                }
                let idle = r.activity == seen;
                if !idle {
                    seen = r.activity;
                    idle_since = None;
                } else if idle_since.get_or_insert_with(Instant::now).elapsed() > SPIN_IDLE {
                    // Idle: hand every waiter to io_uring, which can sleep.
                    r.release += 1;
                    for w in r.waiters.iter_mut().filter_map(Option::take) {
                        w.wake();
                    }
                    r.nwaiters = 0;
                }
                (r.nwaiters > 0, idle)
            });
            if !more {
                break;
            }
            if idle {
                // Let other threads on this CPU (more shards than CPUs, or a
                // client sharing it) run instead of the spin.
                // SAFETY: plain system call.
                unsafe { libc::sched_yield() };
            }
            rounds += 1;
            if rounds.is_multiple_of(ROUNDS_PER_REACTOR_PASS) {
                glommio::timer::sleep(Duration::ZERO).await;
            } else {
                crate::shard::yield_now().await;
            }
        }
    }
}
