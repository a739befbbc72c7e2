//! Sorted-set values.

use crate::shard::value::SmallBytes;

/// A sorted set: a vector sorted by (score, member) while small (Redis's
/// listpack), and past `zset-max-listpack-entries`/`-value` a member→score
/// map plus an ordered index with rank queries in O(log n) (the role of
/// Redis's skiplist).
#[derive(Clone, Debug, PartialEq)]
pub enum ZSetValue {
    /// Small: (member, score) sorted by score, then member.
    Listpack(Vec<(SmallBytes, f64)>),
}

impl ZSetValue {
    /// OBJECT ENCODING name.
    pub fn encoding(&self) -> &'static str {
        match self {
            ZSetValue::Listpack(_) => "listpack",
        }
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        match self {
            ZSetValue::Listpack(v) => v.len(),
        }
    }

    /// True when there are no members.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes held.
    pub fn heap_size(&self) -> usize {
        match self {
            ZSetValue::Listpack(v) => {
                v.capacity() * std::mem::size_of::<(SmallBytes, f64)>()
                    + v.iter().map(|(m, _)| m.heap_size()).sum::<usize>()
            }
        }
    }
}
