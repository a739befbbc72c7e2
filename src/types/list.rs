//! List values.

use crate::shard::value::SmallBytes;
use std::collections::VecDeque;

/// A list: one flat vector while small (Redis's listpack), a deque once it
/// passes `list-max-listpack-size` (Redis's quicklist), with O(1) push and
/// pop at both ends.
#[derive(Clone, Debug, PartialEq)]
pub enum ListValue {
    /// Small.
    Listpack(Vec<SmallBytes>),
    /// Big.
    Quicklist(VecDeque<SmallBytes>),
}

impl ListValue {
    /// OBJECT ENCODING name.
    pub fn encoding(&self) -> &'static str {
        match self {
            ListValue::Listpack(_) => "listpack",
            ListValue::Quicklist(_) => "quicklist",
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            ListValue::Listpack(v) => v.len(),
            ListValue::Quicklist(d) => d.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes held.
    pub fn heap_size(&self) -> usize {
        let item = std::mem::size_of::<SmallBytes>();
        match self {
            ListValue::Listpack(v) => {
                v.capacity() * item + v.iter().map(|e| e.heap_size()).sum::<usize>()
            }
            ListValue::Quicklist(d) => {
                d.capacity() * item + d.iter().map(|e| e.heap_size()).sum::<usize>()
            }
        }
    }
}
