//! Memory accounting: a global allocator wrapper that counts the bytes each
//! thread allocates and frees.
//!
//! Every shard's data is allocated on its own thread, so summing the
//! counters of all shard threads gives the exact heap in use (INFO
//! `used_memory`), without walking any structure. A value allocated on one
//! shard and freed on another (RENAME across shards) moves bytes between
//! their counters; the sum stays exact. Threads that end (the RDB loader,
//! save writers) leave their balance in a global that the sum includes.
//!
//! The binary installs it with `#[global_allocator]`; an embedding program
//! may do the same to get `used_memory`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering};

/// A thread's counter; hands its balance to [`EXITED`] when the thread ends.
struct Counter(Cell<isize>);

impl Drop for Counter {
    fn drop(&mut self) {
        EXITED.fetch_add(self.0.get(), Ordering::Relaxed);
    }
}

/// Net bytes of threads that have ended: what a loader thread allocated and
/// handed to the shards stays counted.
static EXITED: AtomicIsize = AtomicIsize::new(0);

thread_local! {
    static ALLOCATED: Counter = const { Counter(Cell::new(0)) };
}

/// The counting allocator, wrapping the system allocator.
pub struct CountingAlloc;

#[inline]
fn add(n: isize) {
    // `try_with` so that allocations during thread teardown still work.
    if ALLOCATED.try_with(|c| c.0.set(c.0.get() + n)).is_err() {
        EXITED.fetch_add(n, Ordering::Relaxed);
    }
}

// SAFETY: every call forwards to `System` with the same arguments; the
// counters have no effect on the memory returned.
unsafe impl GlobalAlloc for CountingAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add(layout.size() as isize);
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout.size() as isize);
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        add(-(layout.size() as isize));
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            add(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// Net bytes allocated by the calling thread (may be negative on a thread
/// that frees what others allocated).
pub fn thread_allocated() -> isize {
    ALLOCATED.with(|c| c.0.get())
}

/// Net bytes allocated by threads that have ended (to add to the sum of the
/// live shard threads' counters).
pub fn exited_threads() -> isize {
    EXITED.load(Ordering::Relaxed)
}
