//! Hash values.

use crate::shard::value::SmallBytes;

/// A hash: a flat vector of field/value pairs while small (Redis's listpack),
/// a hash table once it passes `hash-max-listpack-entries` or
/// `hash-max-listpack-value`.
#[derive(Clone, Debug, PartialEq)]
pub enum HashValue {
    /// Small: pairs in insertion order.
    Listpack(Vec<(SmallBytes, SmallBytes)>),
    /// Big: a hash table.
    Table(hashbrown::HashMap<Box<[u8]>, SmallBytes>),
}

impl HashValue {
    /// OBJECT ENCODING name.
    pub fn encoding(&self) -> &'static str {
        match self {
            HashValue::Listpack(_) => "listpack",
            HashValue::Table(_) => "hashtable",
        }
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        match self {
            HashValue::Listpack(v) => v.len(),
            HashValue::Table(t) => t.len(),
        }
    }

    /// True when there are no fields.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes held.
    pub fn heap_size(&self) -> usize {
        match self {
            HashValue::Listpack(v) => {
                v.capacity() * std::mem::size_of::<(SmallBytes, SmallBytes)>()
                    + v.iter()
                        .map(|(f, x)| f.heap_size() + x.heap_size())
                        .sum::<usize>()
            }
            HashValue::Table(t) => {
                t.capacity() * (std::mem::size_of::<(Box<[u8]>, SmallBytes)>() + 1)
                    + t.iter()
                        .map(|(f, x)| f.len() + x.heap_size())
                        .sum::<usize>()
            }
        }
    }
}
