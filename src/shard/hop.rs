//! Cross-shard calls, batched per executor round.
//!
//! A connection whose command belongs to another shard hands the work to
//! that shard and waits for the result. Sent one by one, each such hop would
//! cost a mailbox message and a cross-thread wake-up each way. Here the jobs
//! of every connection on this shard that are bound for one destination
//! during one round of the run queue travel as one message, and the results
//! come back the same way: the destination runs the whole message, and the
//! replies it produces meanwhile leave as one message per origin.
//!
//! The batching is a local flusher task, spawned by the first job of a round:
//! it runs after the tasks already queued, so everything they send joins the
//! same message. glommio wakes a destination thread only when it sleeps, so a
//! busy shard is not woken at all.

use super::{Global, current_shard_id};
use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Work to run on another shard.
pub type Job = Box<dyn FnOnce() + Send>;

/// Jobs waiting for this round's flush, per destination shard.
#[derive(Default)]
struct Outbox {
    jobs: Vec<Vec<Job>>,
    scheduled: bool,
}

/// A call waiting for its result on this shard.
#[derive(Default)]
struct Pending {
    /// `Some(None)`: the destination dropped the call without answering.
    result: Option<Option<Box<dyn Any + Send>>>,
    waker: Option<Waker>,
}

#[derive(Default)]
struct Calls {
    next: u64,
    pending: HashMap<u64, Pending, ahash::RandomState>,
}

thread_local! {
    static OUTBOX: RefCell<Outbox> = RefCell::default();
    static CALLS: RefCell<Calls> = RefCell::default();
}

/// Queues `job` for shard `dest`; it leaves with this round's message to
/// `dest`. Must be called on a shard thread.
pub fn post(global: &'static Global, dest: usize, job: Job) {
    let spawn = OUTBOX.with(|o| {
        let mut o = o.borrow_mut();
        if o.jobs.len() < global.nshards {
            o.jobs.resize_with(global.nshards, Vec::new);
        }
        o.jobs[dest].push(job);
        !std::mem::replace(&mut o.scheduled, true)
    });
    if spawn {
        glommio::spawn_local(async move { flush(global) }).detach();
    }
}

/// Sends each destination's queued jobs as one mailbox message.
fn flush(global: &'static Global) {
    let batches: Vec<(usize, Vec<Job>)> = OUTBOX.with(|o| {
        let mut o = o.borrow_mut();
        o.scheduled = false;
        o.jobs
            .iter_mut()
            .enumerate()
            .filter(|(_, j)| !j.is_empty())
            .map(|(d, j)| (d, std::mem::take(j)))
            .collect()
    });
    for (dest, jobs) in batches {
        global.post(
            dest,
            Box::new(move || {
                for job in jobs {
                    job();
                }
            }),
        );
    }
}

/// The way back for one call's result; see [`call`].
pub struct Answer<R: Send + 'static> {
    global: &'static Global,
    origin: usize,
    id: u64,
    sent: bool,
    _result: std::marker::PhantomData<fn(R)>,
}

impl<R: Send + 'static> Answer<R> {
    /// Sends the result to the calling shard, batched with this round's
    /// other traffic to it.
    pub fn send(mut self, result: R) {
        self.sent = true;
        self.deliver(Some(Box::new(result)));
    }

    fn deliver(&self, result: Option<Box<dyn Any + Send>>) {
        let id = self.id;
        post(
            self.global,
            self.origin,
            Box::new(move || {
                CALLS.with(|c| {
                    if let Some(p) = c.borrow_mut().pending.get_mut(&id) {
                        p.result = Some(result);
                        if let Some(w) = p.waker.take() {
                            w.wake();
                        }
                    }
                })
            }),
        );
    }
}

impl<R: Send + 'static> Drop for Answer<R> {
    fn drop(&mut self) {
        // Unsent: tell the caller, unless this thread is no longer a shard
        // (the process is stopping).
        if !self.sent && current_shard_id().is_some() {
            self.deliver(None);
        }
    }
}

/// Runs `f` on shard `dest` and waits for the result it sends through its
/// [`Answer`] (at once, or later from a task it spawns there).
///
/// # Panics
/// If the destination drops the answer unsent (the shard is stopping).
pub async fn call<R, F>(global: &'static Global, dest: usize, f: F) -> R
where
    R: Send + 'static,
    F: FnOnce(Answer<R>) + Send + 'static,
{
    let origin = current_shard_id().expect("hop::call on a shard thread");
    let id = CALLS.with(|c| {
        let mut c = c.borrow_mut();
        c.next += 1;
        let id = c.next;
        c.pending.insert(id, Pending::default());
        id
    });
    let answer = Answer {
        global,
        origin,
        id,
        sent: false,
        _result: std::marker::PhantomData,
    };
    post(global, dest, Box::new(move || f(answer)));
    let result = Wait { id }.await;
    *result
        .expect("shard stopped while running a call")
        .downcast::<R>()
        .expect("hop result of the call's type")
}

struct Wait {
    id: u64,
}

impl Future for Wait {
    type Output = Option<Box<dyn Any + Send>>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        CALLS.with(|c| {
            let mut c = c.borrow_mut();
            let p = c.pending.get_mut(&self.id).expect("a pending call");
            match p.result.take() {
                Some(r) => {
                    c.pending.remove(&self.id);
                    Poll::Ready(r)
                }
                None => {
                    p.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        // A call abandoned before its answer: forget it (a late answer finds
        // nothing and is dropped).
        let _ = CALLS.try_with(|c| c.borrow_mut().pending.remove(&self.id));
    }
}
