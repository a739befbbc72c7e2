//! The per-database hash table of one shard.
//!
//! [`Dict`] is an extendible hash table: a directory indexed by the top
//! `global_depth` bits of a key's hash points to segments, and each segment is a
//! small `hashbrown` table holding at most [`SEGMENT_MAX`] entries. When a
//! segment fills up, only that segment splits in two (moving about 1,800
//! entries); the directory doubles when needed, which copies only pointers.
//! So the table grows without a stop-the-world rehash: the longest pause is one
//! segment split, a few tens of microseconds.
//!
//! Segments own contiguous ranges of hash-prefix space, and a split divides a
//! range in two. A [`Dict::scan`] cursor is a position in that space: it walks
//! whole segments in prefix order, so it stays valid however the table grows,
//! and every key present for the whole scan is returned at least once (exactly
//! once, since segments never merge). Snapshots iterate segment by segment too.

use super::value::Entry;
use hashbrown::HashTable;

/// Entries per segment before it splits (7/8 of 4096 buckets).
pub const SEGMENT_MAX: usize = 3584;

/// Bits of hash-prefix space that scan cursors address.
pub const CURSOR_BITS: u32 = 32;

/// Fixed hash seeds: hashes must be stable for the life of the process, since
/// scan cursors are positions in hash space.
fn hasher() -> ahash::RandomState {
    ahash::RandomState::with_seeds(
        0x243f_6a88_85a3_08d3,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89,
    )
}

struct Segment {
    depth: u32,
    table: HashTable<Entry>,
}

/// An extendible hash table of [`Entry`] keyed by the entry's key bytes.
pub struct Dict {
    hasher: ahash::RandomState,
    dir: Vec<u32>,
    global_depth: u32,
    segments: Vec<Segment>,
    len: usize,
}

impl Default for Dict {
    fn default() -> Self {
        Dict::new()
    }
}

/// Hash bits used inside a segment: rotated so that hashbrown's control bytes
/// (top 7 bits) and bucket index (low bits) do not reuse the directory prefix,
/// which is the same for every key of a segment.
#[inline]
fn inner(h: u64) -> u64 {
    h.rotate_left(32)
}

impl Dict {
    /// An empty dict; allocates only the directory slot.
    pub fn new() -> Dict {
        Dict {
            hasher: hasher(),
            dir: vec![0],
            global_depth: 0,
            segments: vec![Segment {
                depth: 0,
                table: HashTable::new(),
            }],
            len: 0,
        }
    }

    /// Number of keys.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no keys.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The hash of a key.
    #[inline]
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    #[inline]
    fn seg_index(&self, h: u64) -> usize {
        let slot = h.checked_shr(64 - self.global_depth).unwrap_or(0);
        self.dir[slot as usize] as usize
    }

    /// Looks a key up.
    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<&Entry> {
        let h = self.hash(key);
        let seg = &self.segments[self.seg_index(h)];
        seg.table.find(inner(h), |e| e.key.as_slice() == key)
    }

    /// Looks a key up for modification.
    #[inline]
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut Entry> {
        let h = self.hash(key);
        let i = self.seg_index(h);
        self.segments[i]
            .table
            .find_mut(inner(h), |e| e.key.as_slice() == key)
    }

    /// Inserts an entry, returning the entry it replaced.
    pub fn insert(&mut self, entry: Entry) -> Option<Entry> {
        let h = self.hash(&entry.key);
        let mut i = self.seg_index(h);
        if let Some(slot) = self.segments[i]
            .table
            .find_mut(inner(h), |e| e.key == entry.key)
        {
            return Some(std::mem::replace(slot, entry));
        }
        if self.segments[i].table.len() >= SEGMENT_MAX {
            self.split(i);
            i = self.seg_index(h);
        }
        let hasher = &self.hasher;
        self.segments[i].table.insert_unique(inner(h), entry, |e| {
            inner(hasher.hash_one(e.key.as_slice()))
        });
        self.len += 1;
        None
    }

    /// Removes a key, returning its entry.
    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let h = self.hash(key);
        let i = self.seg_index(h);
        let found = self.segments[i]
            .table
            .find_entry(inner(h), |e| e.key.as_slice() == key);
        match found {
            Ok(occ) => {
                self.len -= 1;
                Some(occ.remove().0)
            }
            Err(_) => None,
        }
    }

    /// Splits segment `i` into two of one more bit of depth.
    fn split(&mut self, i: usize) {
        let depth = self.segments[i].depth;
        if depth == self.global_depth {
            // Double the directory: each slot becomes two adjacent slots.
            self.dir = self.dir.iter().flat_map(|&s| [s, s]).collect();
            self.global_depth += 1;
        }
        let new_depth = depth + 1;
        let bit = 63 - depth;
        let hasher = &self.hasher;
        let old = &mut self.segments[i];
        old.depth = new_depth;
        let mut moved = HashTable::with_capacity(old.table.len() / 2 + 1);
        let rehash = |e: &Entry| inner(hasher.hash_one(e.key.as_slice()));
        let leaving = old
            .table
            .extract_if(|e| hasher.hash_one(e.key.as_slice()) >> bit & 1 == 1);
        for e in leaving {
            moved.insert_unique(rehash(&e), e, rehash);
        }
        old.table.shrink_to(old.table.len(), rehash);
        let new_index = self.segments.len() as u32;
        self.segments.push(Segment {
            depth: new_depth,
            table: moved,
        });
        // Directory slots of the old segment whose next bit is 1 move over.
        let shift = self.global_depth - new_depth;
        for (slot, s) in self.dir.iter_mut().enumerate() {
            if *s as usize == i && (slot >> shift) & 1 == 1 {
                *s = new_index;
            }
        }
    }

    /// Visits segments from cursor position `pos` (in [`CURSOR_BITS`]-bit prefix
    /// space) until `f` has been called on at least `count` entries or the end
    /// is reached. Returns the next position, or `None` at the end.
    pub fn scan(&self, mut pos: u64, count: usize, mut f: impl FnMut(&Entry)) -> Option<u64> {
        let mut seen = 0;
        let end = 1u64 << CURSOR_BITS;
        while pos < end {
            let slot = pos >> (CURSOR_BITS - self.global_depth);
            let seg = &self.segments[self.dir[slot as usize] as usize];
            for e in seg.table.iter() {
                f(e);
            }
            seen += seg.table.len();
            let width = 1u64 << (CURSOR_BITS - seg.depth);
            pos = (pos / width + 1) * width;
            if seen >= count {
                break;
            }
        }
        (pos < end).then_some(pos)
    }

    /// Removes, segment by segment from cursor `pos`, the entries for which
    /// `remove` returns true, visiting at least `count` entries. Returns the
    /// next position, wrapping to 0 at the end.
    pub fn sweep(
        &mut self,
        mut pos: u64,
        count: usize,
        mut remove: impl FnMut(&Entry) -> bool,
    ) -> u64 {
        let end = 1u64 << CURSOR_BITS;
        let mut seen = 0;
        while seen < count.max(1) {
            let slot = pos >> (CURSOR_BITS - self.global_depth);
            let seg = &mut self.segments[self.dir[slot as usize] as usize];
            seen += seg.table.len() + 1;
            let mut gone = 0;
            seg.table.retain(|e| {
                let out = remove(e);
                gone += out as usize;
                !out
            });
            self.len -= gone;
            let width = 1u64 << (CURSOR_BITS - seg.depth);
            pos = (pos / width + 1) * width;
            if pos >= end {
                return 0;
            }
        }
        pos
    }

    /// Iterates over all entries.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.segments.iter().flat_map(|s| s.table.iter())
    }

    /// Eviction sampling: calls `f` on up to `visit` consecutive entries of
    /// a random segment, from a random start (Redis's `dictGetSomeKeys`
    /// walks consecutive buckets the same way). `f` returns false to stop.
    pub fn sample(
        &self,
        rng: &mut impl rand::Rng,
        visit: usize,
        mut f: impl FnMut(&Entry) -> bool,
    ) {
        if self.len == 0 {
            return;
        }
        // A few tries to land on a non-empty segment (splits keep them full).
        for _ in 0..8 {
            let slot = rng.gen_range(0..self.dir.len());
            let table = &self.segments[self.dir[slot] as usize].table;
            if table.is_empty() {
                continue;
            }
            let start = rng.gen_range(0..table.len());
            let n = visit.min(table.len());
            for e in table.iter().skip(start).chain(table.iter()).take(n) {
                if !f(e) {
                    return;
                }
            }
            return;
        }
    }

    /// A uniformly chosen segment's random entry, for RANDOMKEY and sampling.
    pub fn random_entry(&self, rng: &mut impl rand::Rng) -> Option<&Entry> {
        if self.len == 0 {
            return None;
        }
        // Segments are chosen in proportion to their size.
        let mut n = rng.gen_range(0..self.len);
        for seg in &self.segments {
            if n < seg.table.len() {
                return seg.table.iter().nth(n);
            }
            n -= seg.table.len();
        }
        None
    }

    /// Bytes held by the table structure itself (slots and control bytes).
    pub fn table_bytes(&self) -> usize {
        let slot = std::mem::size_of::<Entry>() + 1;
        self.segments
            .iter()
            .map(|s| s.table.capacity() * 8 / 7 * slot)
            .sum::<usize>()
            + self.dir.len() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::value::{SmallBytes, Value};

    fn entry(k: &str) -> Entry {
        Entry {
            key: SmallBytes::new(k.as_bytes()),
            value: Value::Int(1),
            expire_at: 0,
            lru: 0,
        }
    }

    #[test]
    fn grows_by_splitting_and_keeps_every_key() {
        let mut d = Dict::new();
        for i in 0..50_000 {
            assert!(d.insert(entry(&format!("key:{i}"))).is_none());
        }
        assert_eq!(d.len(), 50_000);
        assert!(d.global_depth >= 4);
        for i in 0..50_000 {
            assert!(d.get(format!("key:{i}").as_bytes()).is_some());
        }
        assert!(d.remove(b"key:7").is_some());
        assert!(d.get(b"key:7").is_none());
        assert_eq!(d.len(), 49_999);
    }

    #[test]
    fn scan_cursor_survives_growth() {
        let mut d = Dict::new();
        for i in 0..20_000 {
            d.insert(entry(&format!("a:{i}")));
        }
        let mut seen = std::collections::HashSet::new();
        let mut pos = 0;
        let mut extra = 0;
        loop {
            let next = d.scan(pos, 100, |e| {
                seen.insert(e.key.as_slice().to_vec());
            });
            // Grow the table between calls.
            for _ in 0..500 {
                d.insert(entry(&format!("b:{extra}")));
                extra += 1;
            }
            match next {
                Some(p) => pos = p,
                None => break,
            }
        }
        for i in 0..20_000 {
            assert!(seen.contains(format!("a:{i}").as_bytes()), "missing a:{i}");
        }
    }
}
