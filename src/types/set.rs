//! Set values.

use crate::shard::value::SmallBytes;

/// A set: sorted integers while every member is an integer and the set is
/// small (Redis's intset), a flat vector for small non-integer sets
/// (listpack), a hash set beyond the configured thresholds.
#[derive(Clone, Debug, PartialEq)]
pub enum SetValue {
    /// Sorted, distinct integers.
    Intset(Vec<i64>),
    /// Small: members in insertion order.
    Listpack(Vec<SmallBytes>),
    /// Big.
    Table(hashbrown::HashSet<Box<[u8]>>),
}

impl SetValue {
    /// OBJECT ENCODING name.
    pub fn encoding(&self) -> &'static str {
        match self {
            SetValue::Intset(_) => "intset",
            SetValue::Listpack(_) => "listpack",
            SetValue::Table(_) => "hashtable",
        }
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        match self {
            SetValue::Intset(v) => v.len(),
            SetValue::Listpack(v) => v.len(),
            SetValue::Table(t) => t.len(),
        }
    }

    /// True when there are no members.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes held.
    pub fn heap_size(&self) -> usize {
        match self {
            SetValue::Intset(v) => v.capacity() * 8,
            SetValue::Listpack(v) => {
                v.capacity() * std::mem::size_of::<SmallBytes>()
                    + v.iter().map(|e| e.heap_size()).sum::<usize>()
            }
            SetValue::Table(t) => {
                t.capacity() * (std::mem::size_of::<Box<[u8]>>() + 1)
                    + t.iter().map(|m| m.len()).sum::<usize>()
            }
        }
    }
}
