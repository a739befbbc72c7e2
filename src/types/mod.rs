//! In-memory encodings of the collection types, each with a compact form for
//! small values (like Redis's listpack and intset) and a big form past the
//! configured thresholds. The command families in `crate::commands` operate on
//! these through their methods.

pub mod geohash;
pub mod hash;
pub mod list;
pub mod set;
pub mod zset;
