//! The server-wide part of scripting: the EVAL script cache and the
//! FUNCTION libraries that every shard's interpreter loads, and which shard
//! is busy running a script (for -BUSY and SCRIPT KILL).
//!
//! Each shard thread has its own Lua interpreter; what it caches follows
//! this registry by generation numbers, so a script loaded through one
//! connection runs by SHA through any other, on any shard.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Scripts and libraries known to the server.
#[derive(Default)]
pub struct Registry {
    /// EVAL bodies by lowercase SHA1.
    scripts: RwLock<HashMap<String, Bytes>>,
    /// Bumped by SCRIPT FLUSH.
    pub scripts_gen: AtomicU64,
    /// Function libraries' code, by library name, in load order.
    libraries: RwLock<Vec<(String, Bytes)>>,
    /// Bumped whenever the libraries change.
    pub libraries_gen: AtomicU64,
    /// Per shard: the script running there, if any.
    pub busy: Vec<Busy>,
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

    /// The shard running a script, if any.
    pub fn busy_shard(&self) -> Option<usize> {
        self.busy
            .iter()
            .position(|b| b.started_ms.load(Ordering::Acquire) != 0)
    }
}
