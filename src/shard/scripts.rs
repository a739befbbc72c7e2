//! The server-wide part of scripting: the EVAL script cache and the
//! FUNCTION libraries that every shard's interpreter loads, and which shard
//! is busy running a script (for -BUSY and SCRIPT KILL).
//!
//! Each shard thread has its own Lua interpreter; what it caches follows
//! this registry by generation numbers, so a script loaded through one
//! connection runs by SHA through any other, on any shard.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{OnceLock, RwLock};

/// Scripts and libraries known to the server.
#[derive(Default)]
pub struct Registry {
    /// EVAL bodies by lowercase SHA1.
    scripts: RwLock<HashMap<String, Bytes, ahash::RandomState>>,
    /// Bumped by SCRIPT FLUSH.
    pub scripts_gen: AtomicU64,
    /// Function libraries' code, by library name, in load order.
    libraries: RwLock<Vec<(String, Bytes)>>,
    /// Bumped whenever the libraries change.
    pub libraries_gen: AtomicU64,
    /// Per shard: the script running there, if any.
    pub busy: Vec<Busy>,
    /// Scripts running now, over all shards: one load tells a command
    /// that none is.
    pub running: AtomicUsize,
    /// What a shard busy with a script does, past `busy-reply-threshold`,
    /// for its other connections; set by the server.
    pub while_busy: OnceLock<fn(&'static super::Global)>,
}

/// The script a shard is running.
#[derive(Default)]
pub struct Busy {
    /// Unix milliseconds when it started; 0 when none runs.
    pub started_ms: AtomicU64,
    /// It is a function (FCALL), not an EVAL script.
    pub function: AtomicBool,
    /// It has written: it cannot be killed.
    pub wrote: AtomicBool,
    /// SCRIPT KILL / FUNCTION KILL asked it to stop.
    pub kill: AtomicBool,
    /// A running function's name and command, for FUNCTION STATS.
    pub function_call: std::sync::Mutex<Option<(String, Vec<Bytes>)>>,
}

impl Busy {
    /// Milliseconds the running script has run, if one runs.
    pub fn running_for(&self, now_ms: u64) -> Option<u64> {
        match self.started_ms.load(Ordering::Acquire) {
            0 => None,
            t => Some(now_ms.saturating_sub(t)),
        }
    }
}

impl Registry {
    /// A registry for `nshards` shards.
    pub fn new(nshards: usize) -> Registry {
        Registry {
            busy: (0..nshards).map(|_| Busy::default()).collect(),
            ..Default::default()
        }
    }

    /// Remembers an EVAL body under its SHA1.
    pub fn add_script(&self, sha: &str, body: Bytes) {
        let mut m = self.scripts.write().unwrap();
        if !m.contains_key(sha) {
            m.insert(sha.to_string(), body);
        }
    }

    /// The body cached under `sha` (case-insensitive).
    pub fn script(&self, sha: &str) -> Option<Bytes> {
        self.scripts
            .read()
            .unwrap()
            .get(&sha.to_ascii_lowercase())
            .cloned()
    }

    /// Number of cached scripts.
    pub fn script_count(&self) -> usize {
        self.scripts.read().unwrap().len()
    }

    /// SCRIPT FLUSH.
    pub fn flush_scripts(&self) {
        self.scripts.write().unwrap().clear();
        self.scripts_gen.fetch_add(1, Ordering::AcqRel);
    }

    /// The libraries' code, in load order.
    pub fn libraries(&self) -> Vec<(String, Bytes)> {
        self.libraries.read().unwrap().clone()
    }

    /// Replaces every library (FUNCTION LOAD, DELETE, FLUSH, RESTORE, and
    /// loading an RDB file).
    pub fn set_libraries(&self, libs: Vec<(String, Bytes)>) {
        *self.libraries.write().unwrap() = libs;
        self.libraries_gen.fetch_add(1, Ordering::AcqRel);
    }

    /// Marks a script as running on `shard` (until [`Registry::end`]).
    pub fn begin(&self, shard: usize, function: bool, now_ms: u64) {
        let b = &self.busy[shard];
        b.kill.store(false, Ordering::Release);
        b.wrote.store(false, Ordering::Release);
        b.function.store(function, Ordering::Release);
        b.started_ms.store(now_ms.max(1), Ordering::Release);
        self.running.fetch_add(1, Ordering::AcqRel);
    }

    /// Marks the script of `shard` as finished.
    pub fn end(&self, shard: usize) {
        self.busy[shard].started_ms.store(0, Ordering::Release);
        self.running.fetch_sub(1, Ordering::AcqRel);
    }

    /// Replaces the libraries with those of an RDB file, named from their
    /// `#!lua name=...` line (code without a name is skipped; loading it
    /// would fail anyway).
    pub fn load_libraries(&self, codes: impl Iterator<Item = Bytes>) {
        let libs = codes
            .filter_map(|code| {
                let line = code.split(|&c| c == b'\n').next()?;
                let parts = crate::parse::split_args(line)?;
                let name = parts.iter().find_map(|p| {
                    (p.len() > 5 && p[..5].eq_ignore_ascii_case(b"name="))
                        .then(|| String::from_utf8_lossy(&p[5..]).into_owned())
                })?;
                Some((name, code))
            })
            .collect();
        self.set_libraries(libs);
    }

    /// The shard running a script, if any.
    pub fn busy_shard(&self) -> Option<usize> {
        self.busy
            .iter()
            .position(|b| b.started_ms.load(Ordering::Acquire) != 0)
    }
}
