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
//!
//! Point-in-time snapshots are copy-on-write per entry: [`Dict::snapshot_begin`]
//! flips the dict's parity, which makes every entry "unsaved" at once; the
//! snapshot walks the table in slices ([`Dict::snapshot_step`]), and every
//! path that changes or drops an unsaved entry (`get_mut`, `insert`, `remove`,
//! `sweep`) first hands its current contents to the snapshot's sink. Entries
//! inserted during the snapshot carry the new parity and are not saved.

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

/// Receives each entry of a snapshot, as it was when the snapshot began.
pub type SnapshotSink = Box<dyn FnMut(&Entry)>;

/// A running snapshot: its caller's tag, sink and walk position (in cursor
/// space).
struct SnapState {
    tag: usize,
    sink: SnapshotSink,
    pos: u64,
}

/// Hands `e` to the snapshot sink if the running snapshot has not saved it yet.
#[inline]
fn save_unsaved(snap: &mut Option<Box<SnapState>>, parity: bool, e: &mut Entry) {
    if let Some(st) = snap
        && e.snap_mark != parity
    {
        (st.sink)(e);
        e.snap_mark = parity;
    }
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
    /// Parity of saved entries (see the module doc).
    parity: bool,
    snap: Option<Box<SnapState>>,
    /// The last split as (old segment, new segment), until taken.
    last_split: Option<(u32, u32)>,
}

/// What [`Dict::expire_segment`] found in one segment.
#[derive(Default, Debug, Clone, Copy)]
pub struct SegmentExpiry {
    /// Keys removed because their deadline had passed.
    pub removed: usize,
    /// Keys with a TTL visited (removed or not).
    pub with_ttl: usize,
    /// Earliest deadline left in the segment (`u64::MAX` when none).
    pub next: u64,
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
            parity: false,
            snap: None,
            last_split: None,
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

    /// The segment that holds (or would hold) `key`. Segment numbers are
    /// stable: segments never merge, and a split keeps the old number for one
    /// half (see [`Dict::take_split`]).
    #[inline]
    pub fn segment_of(&self, key: &[u8]) -> u32 {
        self.seg_index(self.hash(key)) as u32
    }

    /// The split made by the last insert, as (old segment, new segment).
    #[inline]
    pub fn take_split(&mut self) -> Option<(u32, u32)> {
        self.last_split.take()
    }

    /// Removes the entries of segment `seg` whose deadline is at or before
    /// `now_ms`, calling `removed` on each before it is dropped, and shrinks
    /// the segment's table when it has become mostly empty.
    pub fn expire_segment(
        &mut self,
        seg: u32,
        now_ms: u64,
        mut removed: impl FnMut(&Entry),
    ) -> SegmentExpiry {
        let mut out = SegmentExpiry {
            next: u64::MAX,
            ..Default::default()
        };
        let hasher = &self.hasher;
        let (snap, parity) = (&mut self.snap, self.parity);
        let Some(s) = self.segments.get_mut(seg as usize) else {
            return out;
        };
        s.table.retain(|e| {
            if e.expire_at == 0 {
                return true;
            }
            out.with_ttl += 1;
            if e.expire_at <= now_ms {
                save_unsaved(snap, parity, e);
                removed(e);
                out.removed += 1;
                false
            } else {
                out.next = out.next.min(e.expire_at);
                true
            }
        });
        if s.table.len() < s.table.capacity() * 3 / 8 {
            s.table
                .shrink_to(s.table.len(), |e| inner(hasher.hash_one(e.key.as_slice())));
        }
        self.len -= out.removed;
        out
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
        let e = self.segments[i]
            .table
            .find_mut(inner(h), |e| e.key.as_slice() == key)?;
        save_unsaved(&mut self.snap, self.parity, e);
        Some(e)
    }

    /// Inserts an entry, returning the entry it replaced.
    pub fn insert(&mut self, mut entry: Entry) -> Option<Entry> {
        entry.snap_mark = self.parity;
        let h = self.hash(&entry.key);
        let mut i = self.seg_index(h);
        if let Some(slot) = self.segments[i]
            .table
            .find_mut(inner(h), |e| e.key == entry.key)
        {
            save_unsaved(&mut self.snap, self.parity, slot);
            return Some(std::mem::replace(slot, entry));
        }
        if self.segments[i].table.len() >= SEGMENT_MAX {
            self.split(i);
            i = self.seg_index(h);
        }
        let hasher = &self.hasher;
        let rehash = |e: &Entry| inner(hasher.hash_one(e.key.as_slice()));
        let table = &mut self.segments[i].table;
        if table.len() == table.capacity() && table.len() >= SEGMENT_MAX / 2 {
            // No room left, because deletes left tombstones. hashbrown would
            // double a table holding just over half its capacity (a split
            // leaves halves right there), so under churn tables would grow
            // past the 4096 buckets a segment ever needs. Rebuild at that
            // size instead: about 1,800 moves, once per that many inserts.
            let mut fresh = HashTable::with_capacity(SEGMENT_MAX);
            for e in table.drain() {
                fresh.insert_unique(rehash(&e), e, rehash);
            }
            *table = fresh;
        }
        table.insert_unique(inner(h), entry, rehash);
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
                let mut e = occ.remove().0;
                save_unsaved(&mut self.snap, self.parity, &mut e);
                Some(e)
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
        self.last_split = Some((i as u32, new_index));
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
            let (snap, parity) = (&mut self.snap, self.parity);
            seg.table.retain(|e| {
                let out = remove(e);
                if out {
                    save_unsaved(snap, parity, e);
                }
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

    /// Starts a snapshot: every entry present now becomes unsaved and will
    /// reach `sink` exactly once, either from [`Dict::snapshot_step`] or just
    /// before it is changed or removed. `tag` identifies the snapshot to its
    /// caller. Ends any running snapshot first.
    pub fn snapshot_begin(&mut self, tag: usize, sink: SnapshotSink) {
        self.snapshot_finish();
        self.parity = !self.parity;
        self.snap = Some(Box::new(SnapState { tag, sink, pos: 0 }));
    }

    /// The tag of the running snapshot, while it has entries left to save.
    pub fn snapshot_tag(&self) -> Option<usize> {
        self.snap.as_ref().map(|s| s.tag)
    }

    /// Saves up to `budget` unsaved entries, in segment order. Returns true
    /// (and drops the sink) once every entry is saved, or if no snapshot runs.
    pub fn snapshot_step(&mut self, mut budget: usize) -> bool {
        let Some(st) = self.snap.as_mut() else {
            return true;
        };
        let end = 1u64 << CURSOR_BITS;
        while st.pos < end {
            let slot = st.pos >> (CURSOR_BITS - self.global_depth);
            let seg = &mut self.segments[self.dir[slot as usize] as usize];
            for e in seg.table.iter_mut() {
                if e.snap_mark != self.parity {
                    if budget == 0 {
                        return false;
                    }
                    (st.sink)(e);
                    e.snap_mark = self.parity;
                    budget -= 1;
                }
            }
            let width = 1u64 << (CURSOR_BITS - seg.depth);
            st.pos = (st.pos / width + 1) * width;
        }
        self.snap = None;
        true
    }

    /// Saves every entry the running snapshot has not saved yet.
    pub fn snapshot_finish(&mut self) {
        while !self.snapshot_step(usize::MAX) {}
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
            snap_mark: false,
        }
    }

    #[test]
    fn churn_at_a_steady_size_does_not_grow_the_tables() {
        // An evicting cache: every insert of a new key deletes an old one,
        // at sizes that leave segments full to different degrees.
        for n in [24_000, 48_000, 100_000] {
            let mut d = Dict::new();
            for i in 0..n {
                d.insert(entry(&format!("key:{i}")));
            }
            let fresh = d.table_bytes();
            for i in n..6 * n {
                assert!(d.remove(format!("key:{}", i - n).as_bytes()).is_some());
                d.insert(entry(&format!("key:{i}")));
            }
            assert_eq!(d.len(), n);
            assert!(
                d.table_bytes() <= fresh * 5 / 4,
                "{n} keys: tables grew under churn: {fresh} -> {}",
                d.table_bytes()
            );
            for i in 5 * n..6 * n {
                assert!(d.get(format!("key:{i}").as_bytes()).is_some());
            }
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

    #[test]
    fn snapshot_sees_the_dict_as_it_was_at_begin() {
        use std::cell::RefCell;
        use std::collections::HashMap;
        use std::rc::Rc;
        let val = |e: &Entry| match e.value {
            Value::Int(n) => n,
            _ => unreachable!(),
        };
        let mut d = Dict::new();
        for i in 0..20_000 {
            d.insert(entry(&format!("k:{i}")));
        }
        for round in 0..2 {
            let expect: HashMap<Vec<u8>, i64> =
                d.iter().map(|e| (e.key.to_vec(), val(e))).collect();
            let saved: Rc<RefCell<HashMap<Vec<u8>, i64>>> = Rc::default();
            let out = saved.clone();
            d.snapshot_begin(
                round,
                Box::new(move |e: &Entry| {
                    assert!(out.borrow_mut().insert(e.key.to_vec(), val(e)).is_none());
                }),
            );
            let mut i = 0;
            while !d.snapshot_step(300) {
                // Overwrite, remove, add and grow between slices.
                for _ in 0..200 {
                    let k = format!("k:{}", (i * 7919) % 20_000);
                    if let Some(e) = d.get_mut(k.as_bytes()) {
                        e.value = Value::Int(-1);
                    }
                    d.remove(format!("k:{}", (i * 104_729) % 20_000).as_bytes());
                    d.insert(entry(&format!("new:{round}:{i}")));
                    i += 1;
                }
                d.sweep(i as u64 * 1000, 100, |e| e.key.as_slice().ends_with(b"3"));
            }
            assert_eq!(d.snapshot_tag(), None);
            assert_eq!(*saved.borrow(), expect);
            // Put the values back for the next round.
            for i in 0..20_000 {
                d.insert(entry(&format!("k:{i}")));
            }
        }
    }
}
