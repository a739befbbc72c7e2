//! Keys, values and dict entries, in their compact in-memory encodings.
//!
//! Layout of one [`Entry`] (64 bytes on x86-64):
//!
//! ```text
//! | key: SmallBytes (24) | value: Value (24) | expire_at: u64 (8) | lru: u32 (4) | snap_mark (1) | pad (3) |
//! ```
//!
//! Keys up to 22 bytes and string values up to 22 bytes live inline in the
//! entry, so a small SET makes no heap allocation at all; integers that
//! round-trip through their decimal form are stored as `i64`.

use crate::types::{hash::HashValue, list::ListValue, set::SetValue, zset::ZSetValue};
use bytes::Bytes;
use std::fmt;

/// Bytes stored inline when they fit in 22 bytes, on the heap otherwise.
#[derive(Clone, PartialEq, Eq)]
pub enum SmallBytes {
    /// Up to [`SmallBytes::INLINE`] bytes, no allocation.
    Inline {
        len: u8,
        buf: [u8; SmallBytes::INLINE],
    },
    /// Longer strings.
    Heap(Box<[u8]>),
}

impl SmallBytes {
    /// Largest length kept inline.
    pub const INLINE: usize = 22;

    /// Copies `b` into the smallest encoding.
    pub fn new(b: &[u8]) -> SmallBytes {
        if b.len() <= Self::INLINE {
            let mut buf = [0u8; Self::INLINE];
            buf[..b.len()].copy_from_slice(b);
            SmallBytes::Inline {
                len: b.len() as u8,
                buf,
            }
        } else {
            SmallBytes::Heap(b.into())
        }
    }

    /// Takes ownership of a vector, reusing its allocation when it is long.
    pub fn from_vec(v: Vec<u8>) -> SmallBytes {
        if v.len() <= Self::INLINE {
            Self::new(&v)
        } else {
            SmallBytes::Heap(v.into_boxed_slice())
        }
    }

    /// The bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        match self {
            SmallBytes::Inline { len, buf } => &buf[..*len as usize],
            SmallBytes::Heap(b) => b,
        }
    }

    /// Heap bytes owned beyond the inline struct.
    pub fn heap_size(&self) -> usize {
        match self {
            SmallBytes::Inline { .. } => 0,
            SmallBytes::Heap(b) => b.len(),
        }
    }
}

impl std::ops::Deref for SmallBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl fmt::Debug for SmallBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_slice()))
    }
}

/// A stored value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A string that is not a canonical integer.
    Str(SmallBytes),
    /// A string that is the canonical decimal form of an `i64`.
    Int(i64),
    /// A hash.
    Hash(Box<HashValue>),
    /// A list.
    List(Box<ListValue>),
    /// A set.
    Set(Box<SetValue>),
    /// A sorted set.
    ZSet(Box<ZSetValue>),
}

impl Value {
    /// Stores a string value, as an integer when it round-trips.
    pub fn from_bytes(b: &[u8]) -> Value {
        if b.len() <= 20
            && let Some(n) = crate::parse::parse_i64(b)
        {
            return Value::Int(n);
        }
        Value::Str(SmallBytes::new(b))
    }

    /// The Redis type name, as TYPE prints it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) | Value::Int(_) => "string",
            Value::Hash(_) => "hash",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::ZSet(_) => "zset",
        }
    }

    /// The encoding name, as OBJECT ENCODING prints it.
    pub fn encoding(&self) -> &'static str {
        match self {
            Value::Int(_) => "int",
            Value::Str(s) if s.len() <= 44 => "embstr",
            Value::Str(_) => "raw",
            Value::Hash(h) => h.encoding(),
            Value::List(l) => l.encoding(),
            Value::Set(s) => s.encoding(),
            Value::ZSet(z) => z.encoding(),
        }
    }

    /// The string value as bytes, when this is a string.
    pub fn as_string(&self) -> Option<StrRef<'_>> {
        match self {
            Value::Str(s) => Some(StrRef::Bytes(s.as_slice())),
            Value::Int(n) => Some(StrRef::Int(*n)),
            _ => None,
        }
    }

    /// Approximate heap bytes held beyond the entry itself.
    pub fn heap_size(&self) -> usize {
        match self {
            Value::Str(s) => s.heap_size(),
            Value::Int(_) => 0,
            Value::Hash(h) => std::mem::size_of::<HashValue>() + h.heap_size(),
            Value::List(l) => std::mem::size_of::<ListValue>() + l.heap_size(),
            Value::Set(s) => std::mem::size_of::<SetValue>() + s.heap_size(),
            Value::ZSet(z) => std::mem::size_of::<ZSetValue>() + z.heap_size(),
        }
    }
}

/// A borrowed view of a string value.
pub enum StrRef<'a> {
    /// Raw bytes.
    Bytes(&'a [u8]),
    /// An integer-encoded string.
    Int(i64),
}

impl StrRef<'_> {
    /// The string's bytes, formatting integers.
    pub fn to_bytes(&self) -> Bytes {
        match self {
            StrRef::Bytes(b) => Bytes::copy_from_slice(b),
            StrRef::Int(n) => Bytes::copy_from_slice(itoa::Buffer::new().format(*n).as_bytes()),
        }
    }

    /// Length in bytes of the string form.
    pub fn len(&self) -> usize {
        match self {
            StrRef::Bytes(b) => b.len(),
            StrRef::Int(n) => itoa::Buffer::new().format(*n).len(),
        }
    }

    /// True for the empty string.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with the string's bytes without allocating.
    pub fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        match self {
            StrRef::Bytes(b) => f(b),
            StrRef::Int(n) => f(itoa::Buffer::new().format(*n).as_bytes()),
        }
    }
}

/// One key of the keyspace with its value and metadata.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The key.
    pub key: SmallBytes,
    /// The value.
    pub value: Value,
    /// Absolute expiry in Unix milliseconds; 0 means no expiry.
    pub(crate) expire_at: u64,
    /// Access clock (seconds, 24 bits as in Redis) for OBJECT IDLETIME and LRU.
    pub(crate) lru: u32,
    /// Snapshot parity, managed by [`super::dict::Dict`]: an entry is not yet
    /// saved by the running snapshot while it differs from the dict's parity.
    pub(crate) snap_mark: bool,
}

impl Entry {
    /// The absolute expiry time in Unix milliseconds, if any.
    pub fn expire_at(&self) -> Option<u64> {
        (self.expire_at != 0).then_some(self.expire_at)
    }

    /// Bytes this entry holds on the heap beyond its slot in the dict.
    pub fn heap_size(&self) -> usize {
        self.key.heap_size() + self.value.heap_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_compact() {
        assert_eq!(std::mem::size_of::<SmallBytes>(), 24);
        assert_eq!(std::mem::size_of::<Value>(), 24);
        assert_eq!(std::mem::size_of::<Entry>(), 64);
    }

    #[test]
    fn ints_roundtrip_only_when_canonical() {
        assert_eq!(Value::from_bytes(b"123"), Value::Int(123));
        assert!(matches!(Value::from_bytes(b"0123"), Value::Str(_)));
        assert!(matches!(Value::from_bytes(b"+1"), Value::Str(_)));
    }
}
