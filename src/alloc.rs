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
//!
//! # The allocator underneath: jemalloc
//! As in Redis. Measured with `benches/fragmentation.sh` (maxmemory 100mb,
//! mixed 32-4096 B overwrites; RSS / used_memory after the churn): glibc
//! malloc 1.53, mimalloc 1.41 (1.36 with immediate purging), jemalloc with
//! its defaults 1.43. jemalloc keeps freed pages for `dirty_decay_ms` (10 s
//! by default) before returning them; with a background purging thread and
//! a 1 s decay ([`MALLOC_CONF`], set by the binary) it is 1.17, where
//! purging at once (decay 0) reached 1.12 at the cost of an madvise per
//! freed page run. mimalloc also kept 40% more RSS per key on the 1M-key
//! memory test (191 B against 145 for jemalloc and 140 for glibc).

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering};
use tikv_jemallocator::Jemalloc;

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

/// The counting allocator, wrapping jemalloc.
pub struct CountingAlloc;

/// Largest of jemalloc's small (slab) size classes, with 4 KiB pages.
const SMALL_MAX: usize = 14 << 10;

/// The bytes an allocation of `size` takes, as counted in `used_memory`.
///
/// A small allocation takes its whole size class in a densely packed slab,
/// so it counts as that (Redis counts `malloc_usable_size` the same way):
/// a 33-byte value takes 48 bytes. A large one is page-aligned, and the
/// tail beyond `size` that rounding to its class adds is never touched, so
/// it costs no memory and counts as `size`.
#[inline]
fn charged(size: usize, align: usize) -> isize {
    if size == 0 || size > SMALL_MAX {
        return size as isize;
    }
    // jemalloc's flags for this layout, as the Jemalloc allocator passes
    // them: alignment beyond the natural one as MALLOCX_LG_ALIGN.
    let flags = if align <= 16 && align <= size {
        0
    } else {
        align.trailing_zeros() as std::ffi::c_int
    };
    // SAFETY: nallocx only computes a size class; size is non-zero.
    unsafe { tikv_jemalloc_sys::nallocx(size, flags) as isize }
}

#[inline]
fn add(n: isize) {
    // `try_with` so that allocations during thread teardown still work.
    if ALLOCATED.try_with(|c| c.0.set(c.0.get() + n)).is_err() {
        EXITED.fetch_add(n, Ordering::Relaxed);
    }
}

// SAFETY: every call forwards to `Jemalloc` with the same arguments; the
// counters have no effect on the memory returned.
unsafe impl GlobalAlloc for CountingAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { Jemalloc.alloc(layout) };
        if !p.is_null() {
            add(charged(layout.size(), layout.align()));
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { Jemalloc.alloc_zeroed(layout) };
        if !p.is_null() {
            add(charged(layout.size(), layout.align()));
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { Jemalloc.dealloc(ptr, layout) };
        add(-charged(layout.size(), layout.align()));
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { Jemalloc.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            add(charged(new_size, layout.align()) - charged(layout.size(), layout.align()));
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

/// jemalloc's options for the server: purge freed pages from a background
/// thread after one second (see the module doc for the measurements).
pub const MALLOC_CONF: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

/// The allocator's name and version, for INFO `mem_allocator`.
pub const ALLOCATOR: &str = "jemalloc-5.3.0";

/// Reads a `size_t` jemalloc statistic (`name` ends in a NUL).
fn mallctl_usize(name: &[u8]) -> usize {
    let mut v: usize = 0;
    let mut len = std::mem::size_of::<usize>();
    // SAFETY: `name` is NUL-terminated and names a size_t statistic, so
    // jemalloc writes at most `len` bytes into `v`.
    let rc = unsafe {
        tikv_jemalloc_sys::mallctl(
            name.as_ptr().cast(),
            (&mut v as *mut usize).cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    if rc == 0 { v } else { 0 }
}

/// jemalloc's own totals, as Redis reports them in INFO memory.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllocatorStats {
    /// Bytes the application holds.
    pub allocated: usize,
    /// Bytes in active pages (allocated plus unused room in them).
    pub active: usize,
    /// Bytes in pages mapped and resident for the allocator.
    pub resident: usize,
}

/// Refreshes and reads jemalloc's statistics.
pub fn allocator_stats() -> AllocatorStats {
    let mut epoch: u64 = 1;
    let mut len = std::mem::size_of::<u64>();
    // SAFETY: writing "epoch" takes a u64 and refreshes the cached totals;
    // the old value is written into `epoch` (8 bytes).
    unsafe {
        tikv_jemalloc_sys::mallctl(
            c"epoch".as_ptr(),
            (&mut epoch as *mut u64).cast(),
            &mut len,
            (&mut epoch as *mut u64).cast(),
            len,
        );
    }
    AllocatorStats {
        allocated: mallctl_usize(b"stats.allocated\0"),
        active: mallctl_usize(b"stats.active\0"),
        resident: mallctl_usize(b"stats.resident\0"),
    }
}

/// Returns the dirty pages of every arena to the system (MEMORY PURGE).
pub fn purge() {
    // SAFETY: "arena.<MALLCTL_ARENAS_ALL>.purge" takes no arguments.
    unsafe {
        tikv_jemalloc_sys::mallctl(
            c"arena.4096.purge".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        );
    }
}

/// jemalloc's statistics report (MEMORY MALLOC-STATS).
pub fn stats_text() -> String {
    unsafe extern "C" fn write(out: *mut std::ffi::c_void, text: *const std::ffi::c_char) {
        // SAFETY: `out` is the String passed below, and jemalloc hands a
        // NUL-terminated string.
        unsafe {
            let out = &mut *out.cast::<String>();
            out.push_str(&std::ffi::CStr::from_ptr(text).to_string_lossy());
        }
    }
    let mut out = String::new();
    // SAFETY: the callback only appends to `out`, which outlives the call.
    unsafe {
        tikv_jemalloc_sys::malloc_stats_print(
            Some(write),
            (&mut out as *mut String).cast(),
            std::ptr::null(),
        );
    }
    out
}
