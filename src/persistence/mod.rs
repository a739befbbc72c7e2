//! Redis RDB serialization: the format of DUMP/RESTORE payloads and of
//! `dump.rdb` snapshots, compatible with Redis 7.0 (RDB version 10).
//!
//! The layer works on a neutral form, [`RdbValue`], independent of ringkv's
//! in-memory collection types; [`value_glue`] is the only place that knows
//! about [`crate::shard::value::Value`]. Output follows what Redis 7.0
//! writes for the same data (integer-encoded and LZF-compressed strings,
//! listpacks, intsets, quicklist-2 lists), so DUMP payloads are
//! byte-identical in the common cases; input covers every encoding a 7.0
//! server can load, including the older ziplist/zipmap ones.
//!
//! - [`rdb`]: lengths, strings, values, DUMP payloads, [`rdb::RdbWriter`]
//!   and [`rdb::RdbReader`] for whole files.
//! - [`listpack`], [`ziplist`], [`intset`]: the compact blob encodings.
//! - [`lzf`], [`crc64`]: compression and checksum as in Redis.

pub mod aof;
pub mod check;
pub mod crc64;
pub mod info;
pub mod intset;
pub mod listpack;
pub mod load;
pub mod lzf;
pub mod rdb;
pub mod save;
pub mod snapshot;
pub mod value_glue;
pub mod ziplist;

use std::fmt;

/// (field, value) pairs of a hash.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// A value in neutral form, as stored in or loaded from RDB.
#[derive(Clone, Debug, PartialEq)]
pub enum RdbValue {
    /// A string.
    String(Vec<u8>),
    /// A list, head first.
    List(Vec<Vec<u8>>),
    /// A set's members.
    Set(Vec<Vec<u8>>),
    /// A sorted set's (member, score) pairs, in any order.
    ZSet(Vec<(Vec<u8>, f64)>),
    /// A hash's (field, value) pairs, in the order they should be written.
    Hash(Pairs),
}

impl RdbValue {
    /// The Redis type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            RdbValue::String(_) => "string",
            RdbValue::List(_) => "list",
            RdbValue::Set(_) => "set",
            RdbValue::ZSet(_) => "zset",
            RdbValue::Hash(_) => "hash",
        }
    }
}

/// Which encoding a value has (after loading) or should be written with.
/// It selects the RDB type of collections: a listpack hash is written as
/// `HASH_LISTPACK`, a table hash as `HASH`, and so on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Strings (no choice to make).
    Raw,
    /// Lists: a quicklist of listpack nodes (the only list RDB type 7.0 writes).
    Quicklist,
    /// Small hashes, sorted sets (and, in 7.2, sets).
    Listpack,
    /// Small all-integer sets.
    Intset,
    /// Big hashes and sets (hash table) and sorted sets (skiplist).
    Table,
}

impl Encoding {
    /// The encoding Redis 7.0 gives this data when it is built by commands
    /// under the thresholds `t`.
    pub fn choose(v: &RdbValue, t: &Thresholds) -> Encoding {
        match v {
            RdbValue::String(_) => Encoding::Raw,
            RdbValue::List(_) => Encoding::Quicklist,
            RdbValue::Set(m) => {
                if m.len() <= t.set_max_intset_entries
                    && m.iter().all(|s| crate::parse::parse_i64(s).is_some())
                {
                    Encoding::Intset
                } else {
                    Encoding::Table
                }
            }
            RdbValue::ZSet(m) => {
                if m.len() <= t.zset_max_listpack_entries
                    && m.iter().all(|(s, _)| s.len() <= t.zset_max_listpack_value)
                {
                    Encoding::Listpack
                } else {
                    Encoding::Table
                }
            }
            RdbValue::Hash(p) => {
                if p.len() <= t.hash_max_listpack_entries
                    && p.iter().all(|(f, v)| {
                        f.len() <= t.hash_max_listpack_value && v.len() <= t.hash_max_listpack_value
                    })
                {
                    Encoding::Listpack
                } else {
                    Encoding::Table
                }
            }
        }
    }
}

/// A loaded value with the encoding Redis 7.0 would give it.
#[derive(Clone, Debug, PartialEq)]
pub struct RdbObject {
    /// The data.
    pub value: RdbValue,
    /// Its encoding after loading, under the thresholds in effect.
    pub encoding: Encoding,
}

/// The encoding thresholds (the `*-max-listpack-*` and intset options).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// `hash-max-listpack-entries`.
    pub hash_max_listpack_entries: usize,
    /// `hash-max-listpack-value`.
    pub hash_max_listpack_value: usize,
    /// `list-max-listpack-size` (negative: a byte limit, -1..-5 = 4..64 KiB).
    pub list_max_listpack_size: i64,
    /// `set-max-intset-entries`.
    pub set_max_intset_entries: usize,
    /// `set-max-listpack-entries`.
    pub set_max_listpack_entries: usize,
    /// `set-max-listpack-value`.
    pub set_max_listpack_value: usize,
    /// `zset-max-listpack-entries`.
    pub zset_max_listpack_entries: usize,
    /// `zset-max-listpack-value`.
    pub zset_max_listpack_value: usize,
}

impl Default for Thresholds {
    /// Redis's defaults.
    fn default() -> Self {
        Thresholds {
            hash_max_listpack_entries: 128,
            hash_max_listpack_value: 64,
            list_max_listpack_size: -2,
            set_max_intset_entries: 512,
            set_max_listpack_entries: 128,
            set_max_listpack_value: 64,
            zset_max_listpack_entries: 128,
            zset_max_listpack_value: 64,
        }
    }
}

impl Thresholds {
    /// Reads the thresholds from a configuration (defaults for missing ones).
    pub fn from_config(c: &crate::config::Config) -> Thresholds {
        let d = Thresholds::default();
        let u = |name: &str, def: usize| {
            c.get(name)
                .and_then(|v| v.parse::<i64>().ok())
                .map_or(def, |v| v.max(0) as usize)
        };
        Thresholds {
            hash_max_listpack_entries: u("hash-max-listpack-entries", d.hash_max_listpack_entries),
            hash_max_listpack_value: u("hash-max-listpack-value", d.hash_max_listpack_value),
            list_max_listpack_size: c
                .get("list-max-listpack-size")
                .and_then(|v| v.parse().ok())
                .unwrap_or(d.list_max_listpack_size),
            set_max_intset_entries: u("set-max-intset-entries", d.set_max_intset_entries),
            set_max_listpack_entries: u("set-max-listpack-entries", d.set_max_listpack_entries),
            set_max_listpack_value: u("set-max-listpack-value", d.set_max_listpack_value),
            zset_max_listpack_entries: u("zset-max-listpack-entries", d.zset_max_listpack_entries),
            zset_max_listpack_value: u("zset-max-listpack-value", d.zset_max_listpack_value),
        }
    }
}

/// Why RDB data could not be read.
#[derive(Debug)]
pub enum RdbError {
    /// The input ended early.
    Truncated,
    /// Structurally invalid data.
    Corrupt(&'static str),
    /// A collection with no elements (Redis refuses to load them; file
    /// readers skip such keys).
    EmptyKey,
    /// A valid type ringkv cannot load (streams, modules, functions...).
    Unsupported(&'static str),
    /// Not an RDB file.
    BadMagic,
    /// An RDB version this reader does not know.
    Version(u32),
    /// The CRC64 does not match.
    Checksum,
    /// An I/O error of the underlying reader or writer.
    Io(std::io::Error),
}

impl fmt::Display for RdbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RdbError::Truncated => write!(f, "unexpected end of RDB data"),
            RdbError::Corrupt(what) => write!(f, "corrupt RDB data: {what}"),
            RdbError::EmptyKey => write!(f, "empty collection in RDB data"),
            RdbError::Unsupported(what) => write!(f, "unsupported RDB content: {what}"),
            RdbError::BadMagic => write!(f, "wrong signature, not an RDB file"),
            RdbError::Version(v) => write!(f, "can't handle RDB format version {v}"),
            RdbError::Checksum => write!(f, "wrong RDB checksum"),
            RdbError::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

impl std::error::Error for RdbError {}

impl From<std::io::Error> for RdbError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            RdbError::Truncated
        } else {
            RdbError::Io(e)
        }
    }
}
