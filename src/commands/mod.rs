//! The command table and the families that fill it.
//!
//! Each family file (`string.rs`, `keys.rs`, ...) exports a `COMMANDS` slice
//! of [`CommandSpec`]s: name, arity, flags, key positions and handler, as in
//! Redis's command table. [`lookup`] finds a command by name; COMMAND,
//! COMMAND INFO and COMMAND DOCS are generated from the same table.
//!
//! A handler comes in one of three kinds ([`Handler`]):
//! - `Keyed` runs on the shard that owns the command's keys, with a [`Ctx`]
//!   that gives it that shard's data. Most data commands are keyed.
//! - `Local` runs on the connection's shard with the [`Client`]: connection
//!   state commands such as SELECT or HELLO.
//! - `Async` also runs with the [`Client`] but may await other shards: the
//!   multi-key and whole-keyspace commands (MGET, MSET, DEL, SCAN, INFO...).

pub mod bitmap;
pub mod blocking;
pub mod call;
pub mod connection;
pub mod dump;
pub mod geo;
pub mod hash;
pub mod hll;
pub mod keys;
pub mod list;
pub mod longdouble;
pub mod memory;
pub mod mstore;
pub mod persistence;
pub mod scripting;
pub mod server;
pub mod set;
pub mod sort;
pub mod string;
pub mod transactions;
pub mod zset;

use crate::reply::Reply;
pub use crate::shard::ctx::{CallOpts, Ctx, KeyedFn};
use crate::transaction::Client;
use bytes::Bytes;
use futures::future::LocalBoxFuture;
use std::collections::HashMap;
use std::sync::OnceLock;

/// A handler that runs with the connection's state.
pub type LocalFn = fn(&mut Client, &[Bytes]) -> Reply;
/// A handler that may await other shards.
pub type AsyncFn = for<'a> fn(&'a mut Client, Vec<Bytes>) -> LocalBoxFuture<'a, Reply>;
/// Finds the key positions of a command with movable keys.
pub type KeysFn = fn(&[Bytes]) -> Vec<usize>;

/// How a command runs.
#[derive(Clone, Copy)]
pub enum Handler {
    /// On the shard that owns the keys.
    Keyed(KeyedFn),
    /// On the connection, synchronously.
    Local(LocalFn),
    /// On the connection, coordinating shards.
    Async(AsyncFn),
    /// A container such as CLIENT or CONFIG: dispatches on its subcommands.
    /// The handler, if any, serves a bare call without a subcommand (COMMAND).
    Container(Option<LocalFn>),
}

/// Command flags, as COMMAND reports them.
pub mod flags {
    /// May modify the keyspace.
    pub const WRITE: u32 = 1;
    /// Only reads.
    pub const READONLY: u32 = 1 << 1;
    /// May grow memory use.
    pub const DENYOOM: u32 = 1 << 2;
    /// Administrative.
    pub const ADMIN: u32 = 1 << 3;
    /// Not allowed in scripts.
    pub const NOSCRIPT: u32 = 1 << 4;
    /// Allowed while loading.
    pub const LOADING: u32 = 1 << 5;
    /// Allowed on a stale replica.
    pub const STALE: u32 = 1 << 6;
    /// O(1) or O(log N).
    pub const FAST: u32 = 1 << 7;
    /// Allowed before AUTH.
    pub const NO_AUTH: u32 = 1 << 8;
    /// May block the client.
    pub const BLOCKING: u32 = 1 << 9;
    /// Key positions depend on the arguments.
    pub const MOVABLEKEYS: u32 = 1 << 10;
    /// Not allowed inside MULTI.
    pub const NO_MULTI: u32 = 1 << 11;
    /// Not shown by MONITOR.
    pub const SKIP_MONITOR: u32 = 1 << 12;
    /// Not logged in the slow log.
    pub const SKIP_SLOWLOG: u32 = 1 << 13;
    /// May replicate even when read-only.
    pub const MAY_REPLICATE: u32 = 1 << 14;
    /// May run while a script is busy.
    pub const ALLOW_BUSY: u32 = 1 << 15;
    /// Keys are optional (scripts).
    pub const NO_MANDATORY_KEYS: u32 = 1 << 16;

    /// Flag names in COMMAND's order.
    pub const NAMES: &[(u32, &str)] = &[
        (WRITE, "write"),
        (READONLY, "readonly"),
        (DENYOOM, "denyoom"),
        (ADMIN, "admin"),
        (NOSCRIPT, "noscript"),
        (BLOCKING, "blocking"),
        (LOADING, "loading"),
        (STALE, "stale"),
        (SKIP_MONITOR, "skip_monitor"),
        (SKIP_SLOWLOG, "skip_slowlog"),
        (FAST, "fast"),
        (NO_AUTH, "no_auth"),
        (MAY_REPLICATE, "may_replicate"),
        (NO_MULTI, "no_multi"),
        (NO_MANDATORY_KEYS, "no_mandatory_keys"),
        (MOVABLEKEYS, "movablekeys"),
        (ALLOW_BUSY, "allow_busy"),
    ];
}

/// Legacy key positions: `first`, `last` (negative counts from the end) and
/// `step`, as in Redis's command table. `first == 0` means no keys.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KeySpec {
    /// Index of the first key.
    pub first: i32,
    /// Index of the last key; -1 is the last argument.
    pub last: i32,
    /// Distance between keys.
    pub step: i32,
}

/// No keys.
pub const NO_KEYS: KeySpec = KeySpec {
    first: 0,
    last: 0,
    step: 0,
};

/// Keys at `first..=last` every `step`.
pub const fn keys(first: i32, last: i32, step: i32) -> KeySpec {
    KeySpec { first, last, step }
}

/// One command (or subcommand) of the table.
pub struct CommandSpec {
    /// Lowercase name (the subcommand's own name for subcommands).
    pub name: &'static str,
    /// Redis arity: exact argument count including the name when positive,
    /// minimum when negative.
    pub arity: i32,
    /// [`flags`] bits.
    pub flags: u32,
    /// Key positions.
    pub keys: KeySpec,
    /// Key positions for commands with movable keys.
    pub keys_fn: Option<KeysFn>,
    /// Group for COMMAND DOCS (`string`, `generic`, `connection`, `server`...).
    pub group: &'static str,
    /// One-line description for COMMAND DOCS.
    pub summary: &'static str,
    /// First Redis version with the command.
    pub since: &'static str,
    /// ACL categories (without `@`).
    pub acl: &'static [&'static str],
    /// How it runs.
    pub handler: Handler,
    /// Subcommands of a container.
    pub subcommands: &'static [CommandSpec],
}

impl CommandSpec {
    /// A command with the common fields; the builder methods set the rest.
    #[allow(clippy::too_many_arguments)]
    pub const fn new(
        name: &'static str,
        arity: i32,
        flags: u32,
        keys: KeySpec,
        group: &'static str,
        since: &'static str,
        summary: &'static str,
        handler: Handler,
    ) -> CommandSpec {
        CommandSpec {
            name,
            arity,
            flags,
            keys,
            keys_fn: None,
            group,
            summary,
            since,
            acl: &[],
            handler,
            subcommands: &[],
        }
    }

    /// Sets the ACL categories.
    pub const fn acl(mut self, acl: &'static [&'static str]) -> CommandSpec {
        self.acl = acl;
        self
    }

    /// Sets the subcommands of a container.
    pub const fn subs(mut self, subs: &'static [CommandSpec]) -> CommandSpec {
        self.subcommands = subs;
        self
    }

    /// Sets a key finder for movable keys.
    pub const fn keys_with(mut self, f: KeysFn) -> CommandSpec {
        self.keys_fn = Some(f);
        self
    }

    /// True if the command has flag `f`.
    #[inline]
    pub fn has(&self, f: u32) -> bool {
        self.flags & f != 0
    }

    /// Argument indices holding keys, for a call with these arguments.
    pub fn key_indices(&self, args: &[Bytes]) -> Vec<usize> {
        if let Some(f) = self.keys_fn {
            return f(args);
        }
        let KeySpec { first, last, step } = self.keys;
        if first <= 0 || step <= 0 {
            return Vec::new();
        }
        let argc = args.len() as i32;
        let last = if last < 0 {
            argc + last
        } else {
            last.min(argc - 1)
        };
        (first..=last)
            .step_by(step as usize)
            .map(|i| i as usize)
            .collect()
    }

    /// True if `argc` arguments satisfy the arity.
    #[inline]
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i32;
        if self.arity >= 0 {
            argc == self.arity
        } else {
            argc >= -self.arity
        }
    }
}

/// Every family's table, in COMMAND order.
fn families() -> impl Iterator<Item = &'static CommandSpec> {
    [
        connection::COMMANDS,
        server::COMMANDS,
        string::COMMANDS,
        keys::COMMANDS,
        zset::COMMANDS,
        bitmap::COMMANDS,
        hll::COMMANDS,
        hash::COMMANDS,
        set::COMMANDS,
        list::COMMANDS,
        dump::COMMANDS,
        geo::COMMANDS,
        sort::COMMANDS,
        blocking::COMMANDS,
        persistence::COMMANDS,
        mstore::COMMANDS,
        transactions::COMMANDS,
        scripting::COMMANDS,
        memory::COMMANDS,
    ]
    .into_iter()
    .flat_map(|t| t.iter())
}

fn table() -> &'static HashMap<&'static str, &'static CommandSpec> {
    static TABLE: OnceLock<HashMap<&'static str, &'static CommandSpec>> = OnceLock::new();
    TABLE.get_or_init(|| families().map(|c| (c.name, c)).collect())
}

/// Finds a command by name, case-insensitively.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    let mut buf = [0u8; 32];
    if name.len() > buf.len() {
        return None;
    }
    let lower = &mut buf[..name.len()];
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    table().get(std::str::from_utf8(lower).ok()?).copied()
}

/// Finds a subcommand of a container, case-insensitively.
pub fn lookup_sub(parent: &'static CommandSpec, name: &[u8]) -> Option<&'static CommandSpec> {
    parent
        .subcommands
        .iter()
        .find(|s| s.name.as_bytes().eq_ignore_ascii_case(name))
}

/// All commands, for COMMAND and COMMAND COUNT.
pub fn all() -> impl Iterator<Item = &'static CommandSpec> {
    families()
}

/// Common error replies, with Redis's exact texts.
pub mod err {
    use crate::reply::Reply;

    /// Wrong type of value for the command.
    pub const WRONGTYPE: Reply =
        Reply::StaticError("WRONGTYPE Operation against a key holding the wrong kind of value");
    /// Malformed arguments.
    pub const SYNTAX: Reply = Reply::StaticError("ERR syntax error");
    /// Not an integer.
    pub const NOT_INT: Reply = Reply::StaticError("ERR value is not an integer or out of range");
    /// Not a float.
    pub const NOT_FLOAT: Reply = Reply::StaticError("ERR value is not a valid float");
    /// Missing key.
    pub const NO_SUCH_KEY: Reply = Reply::StaticError("ERR no such key");
    /// Integer overflow.
    pub const OVERFLOW: Reply = Reply::StaticError("ERR increment or decrement would overflow");
    /// SELECT/MOVE/SWAPDB index out of range.
    pub const DB_RANGE: Reply = Reply::StaticError("ERR DB index is out of range");
    /// Keys of a command that must share a slot do not.
    pub const CROSSSLOT: Reply =
        Reply::StaticError("CROSSSLOT Keys in request don't hash to the same slot");

    /// `ERR wrong number of arguments for '<name>' command`.
    pub fn arity(name: &str) -> Reply {
        Reply::Error(format!(
            "ERR wrong number of arguments for '{name}' command"
        ))
    }
}

/// Parses an integer argument with Redis's rules.
pub fn arg_i64(b: &[u8]) -> Result<i64, Reply> {
    crate::parse::parse_i64(b).ok_or(err::NOT_INT)
}

/// Parses a float argument as Redis's `getLongDoubleFromObject` does: no
/// spaces, no NaN; `inf`, `-inf` and exponents allowed.
pub fn arg_f64(b: &[u8]) -> Result<f64, Reply> {
    parse_f64(b).ok_or(err::NOT_FLOAT)
}

/// Parses a float with Redis's rules (see [`arg_f64`]).
pub fn parse_f64(b: &[u8]) -> Option<f64> {
    if b.is_empty() || b[0].is_ascii_whitespace() || b[b.len() - 1].is_ascii_whitespace() {
        return None;
    }
    let s = std::str::from_utf8(b).ok()?;
    let lower = s.to_ascii_lowercase();
    let v = match lower.as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        _ => {
            if lower.contains("nan") || lower.contains("inf") {
                return None;
            }
            // strtod accepts hex floats too, which Rust's parser does not.
            s.parse::<f64>().ok()?
        }
    };
    (!v.is_nan()).then_some(v)
}

/// Parses a SCAN-family cursor as Redis does (`strtoul` in base 10): an
/// empty string is 0, a leading space or trailing garbage is invalid, a
/// negative number wraps around, and overflow is invalid.
pub fn parse_cursor(b: &[u8]) -> Option<u64> {
    // C string semantics: the argument ends at a NUL byte.
    let b = &b[..memchr::memchr(0, b).unwrap_or(b.len())];
    if b.is_empty() {
        return Some(0);
    }
    if matches!(b[0], b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
        return None;
    }
    let (neg, digits) = match b[0] {
        b'+' => (false, &b[1..]),
        b'-' => (true, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        v = v.checked_mul(10)?.checked_add((d - b'0') as u64)?;
    }
    Some(if neg { v.wrapping_neg() } else { v })
}

/// Case-insensitive comparison of an argument with an ASCII keyword.
#[inline]
pub fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::parse_cursor;

    #[test]
    fn cursor_parses_like_strtoul() {
        assert_eq!(parse_cursor(b""), Some(0));
        assert_eq!(parse_cursor(b"0"), Some(0));
        assert_eq!(parse_cursor(b"+7"), Some(7));
        assert_eq!(parse_cursor(b"-1"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"18446744073709551616"), None);
        assert_eq!(parse_cursor(b" 1"), None);
        assert_eq!(parse_cursor(b"1 "), None);
        assert_eq!(parse_cursor(b"+"), None);
        assert_eq!(parse_cursor(b"x"), None);
        assert_eq!(parse_cursor(b"12\0junk"), Some(12));
    }
}
