//! Hash values, in Redis's two encodings.
//!
//! - [`Listpack`]: while a hash has at most `hash-max-listpack-entries`
//!   fields and every field and value is at most `hash-max-listpack-value`
//!   bytes, it is one flat byte buffer of length-prefixed fields and values in
//!   insertion order, like Redis's listpack: one allocation, lookups by linear
//!   scan (the thresholds keep it short).
//! - [`Table`]: past either threshold the hash becomes a hash table, and never
//!   goes back, as in Redis.
//!
//! The table is an extendible hash table: a directory indexed by the top bits
//! of a field's hash points to segments of at most [`SEG_MAX`] fields, each a
//! small `hashbrown` table. A full segment splits in two and two sparse
//! buddies merge, so growing or shrinking never rehashes the whole hash at
//! once.
//!
//! HSCAN cursors are positions in the space of hash prefixes (the top
//! [`CURSOR_BITS`] bits of a field's hash): a call returns every field whose
//! prefix lies in `[cursor, next)`, and fields are assigned to segments by
//! prefix ranges. Whatever splits and merges happen between calls, a field
//! present for the whole scan has its prefix in exactly one of the returned
//! ranges, so it is returned exactly once. Hashes use one random seed per
//! process, so cursors stay valid for the life of the server.

use crate::shard::value::SmallBytes;
use hashbrown::HashTable;
use hashbrown::hash_table;
use rand::Rng;
use std::fmt;
use std::sync::OnceLock;

/// Redis's `LISTPACK_MAX_SAFETY_SIZE`: a listpack never grows past 1 GiB.
const LISTPACK_MAX_SAFETY_SIZE: usize = 1 << 30;

/// Fields per table segment before it splits (7/8 of 1024 buckets).
pub const SEG_MAX: usize = 896;

/// Two buddy segments merge once they hold this many fields together.
const SEG_MERGE: usize = SEG_MAX / 4;

/// Bits of hash-prefix space that HSCAN cursors address.
pub const CURSOR_BITS: u32 = 48;

/// The encoding thresholds (`hash-max-listpack-entries` and
/// `hash-max-listpack-value`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most fields a listpack hash may hold.
    pub max_entries: usize,
    /// Longest field or value a listpack hash may hold.
    pub max_value: usize,
}

/// A hash value.
#[derive(Clone)]
pub enum HashValue {
    /// Small: a flat buffer of fields and values in insertion order.
    Listpack(Listpack),
    /// Big: a segmented hash table (boxed, so a small hash's header stays
    /// at 32 bytes).
    Table(Box<Table>),
}

impl Default for HashValue {
    fn default() -> Self {
        HashValue::new()
    }
}

impl HashValue {
    /// An empty hash, in the compact encoding.
    pub fn new() -> HashValue {
        HashValue::Listpack(Listpack::default())
    }

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
            HashValue::Listpack(l) => l.count,
            HashValue::Table(t) => t.len,
        }
    }

    /// True when there are no fields.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes held.
    pub fn heap_size(&self) -> usize {
        match self {
            HashValue::Listpack(l) => l.buf.capacity(),
            HashValue::Table(t) => std::mem::size_of::<Table>() + t.heap_size(),
        }
    }

    /// The value of `field`.
    pub fn get(&self, field: &[u8]) -> Option<&[u8]> {
        match self {
            HashValue::Listpack(l) => l.get(field),
            HashValue::Table(t) => t.get(field),
        }
    }

    /// True if `field` exists.
    pub fn contains(&self, field: &[u8]) -> bool {
        self.get(field).is_some()
    }

    /// Sets `field` to `value`; returns true if the field is new. Converts to
    /// a table first when the field or value is too long for a listpack, and
    /// after inserting when there are too many fields, as Redis's
    /// `hashTypeSet` does.
    pub fn set(&mut self, field: &[u8], value: &[u8], lim: Limits) -> bool {
        if let HashValue::Listpack(l) = self
            && (field.len() > lim.max_value
                || value.len() > lim.max_value
                || l.buf.len() + field.len() + value.len() > LISTPACK_MAX_SAFETY_SIZE)
        {
            self.convert();
        }
        match self {
            HashValue::Listpack(l) => {
                let new = l.set(field, value);
                if l.count > lim.max_entries {
                    self.convert();
                }
                new
            }
            HashValue::Table(t) => t.insert(field, value),
        }
    }

    /// Removes `field`; returns true if it existed. A table stays a table.
    pub fn remove(&mut self, field: &[u8]) -> bool {
        match self {
            HashValue::Listpack(l) => l.remove(field),
            HashValue::Table(t) => t.remove(field),
        }
    }

    /// Converts a listpack to a table (no-op for a table).
    pub fn convert(&mut self) {
        if let HashValue::Listpack(l) = self {
            let mut t = Table::new();
            for (f, v) in l.iter() {
                t.insert(f, v);
            }
            *self = HashValue::Table(Box::new(t));
        }
    }

    /// All fields and values: insertion order for a listpack, table order
    /// otherwise.
    pub fn iter(&self) -> Iter<'_> {
        match self {
            HashValue::Listpack(l) => Iter::Listpack(l.iter()),
            HashValue::Table(t) => Iter::Table(t.iter()),
        }
    }

    /// One HSCAN step from `cursor`, visiting about `count` fields. A listpack
    /// is returned whole, with cursor 0, as Redis does. Returns the next
    /// cursor, 0 when the scan is complete.
    pub fn scan(&self, cursor: u64, count: usize, f: impl FnMut(&[u8], &[u8])) -> u64 {
        match self {
            HashValue::Listpack(l) => {
                let mut f = f;
                for (k, v) in l.iter() {
                    f(k, v);
                }
                0
            }
            HashValue::Table(t) => t.scan(cursor, count, f),
        }
    }

    /// A uniformly chosen field and its value, `None` when empty.
    pub fn random(&self, rng: &mut impl Rng) -> Option<(&[u8], &[u8])> {
        if self.is_empty() {
            return None;
        }
        match self {
            HashValue::Listpack(l) => l.iter().nth(rng.gen_range(0..l.count)),
            HashValue::Table(t) => t.random(rng),
        }
    }
}

impl PartialEq for HashValue {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(f, v)| other.get(f) == Some(v))
    }
}

impl fmt::Debug for HashValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.iter()
                    .map(|(k, v)| (String::from_utf8_lossy(k), String::from_utf8_lossy(v))),
            )
            .finish()
    }
}

/// Iterator over a hash's fields and values.
pub enum Iter<'a> {
    /// Over a listpack.
    Listpack(LpIter<'a>),
    /// Over a table.
    Table(TableIter<'a>),
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Listpack(i) => i.next(),
            Iter::Table(i) => i.next(),
        }
    }
}

// ---------------------------------------------------------------------------
// Listpack
// ---------------------------------------------------------------------------

/// The compact encoding: `len field len value ...` in one buffer, lengths as
/// LEB128 varints (one byte up to 127).
#[derive(Clone, Default)]
pub struct Listpack {
    buf: Vec<u8>,
    count: usize,
}

fn varint_size(mut n: usize) -> usize {
    let mut s = 1;
    while n >= 0x80 {
        n >>= 7;
        s += 1;
    }
    s
}

fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

#[inline]
fn get_varint(buf: &[u8], pos: &mut usize) -> usize {
    let mut n = 0usize;
    let mut shift = 0;
    loop {
        let b = buf[*pos];
        *pos += 1;
        n |= ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            return n;
        }
        shift += 7;
    }
}

/// Reads one length-prefixed string at `pos`, advancing it.
#[inline]
fn get_str<'a>(buf: &'a [u8], pos: &mut usize) -> &'a [u8] {
    let n = get_varint(buf, pos);
    let s = &buf[*pos..*pos + n];
    *pos += n;
    s
}

/// Iterator over a listpack's pairs.
pub struct LpIter<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for LpIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let f = get_str(self.buf, &mut self.pos);
        let v = get_str(self.buf, &mut self.pos);
        Some((f, v))
    }
}

impl Listpack {
    /// The pairs in insertion order.
    pub fn iter(&self) -> LpIter<'_> {
        LpIter {
            buf: &self.buf,
            pos: 0,
        }
    }

    /// Offsets of `field`'s pair: (pair start, value start, pair end).
    fn find(&self, field: &[u8]) -> Option<(usize, usize, usize)> {
        let buf = &self.buf[..];
        let mut pos = 0;
        while pos < buf.len() {
            let start = pos;
            let f = get_str(buf, &mut pos);
            let vstart = pos;
            let n = get_varint(buf, &mut pos);
            pos += n;
            if f == field {
                return Some((start, vstart, pos));
            }
        }
        None
    }

    fn get(&self, field: &[u8]) -> Option<&[u8]> {
        let (_, mut vpos, _) = self.find(field)?;
        Some(get_str(&self.buf, &mut vpos))
    }

    /// Gives back spare capacity, as Redis reallocates a listpack to size.
    fn trim(&mut self) {
        if self.buf.capacity() - self.buf.len() > 16 {
            self.buf.shrink_to_fit();
        }
    }

    fn set(&mut self, field: &[u8], value: &[u8]) -> bool {
        if let Some((_, vstart, end)) = self.find(field) {
            let mut enc = Vec::with_capacity(varint_size(value.len()) + value.len());
            put_varint(&mut enc, value.len());
            enc.extend_from_slice(value);
            let new_len = self.buf.len() - (end - vstart) + enc.len();
            if new_len > self.buf.len() {
                self.buf.reserve_exact(new_len - self.buf.len());
            }
            self.buf.splice(vstart..end, enc);
            self.trim();
            false
        } else {
            let add =
                varint_size(field.len()) + field.len() + varint_size(value.len()) + value.len();
            self.buf.reserve_exact(add);
            put_varint(&mut self.buf, field.len());
            self.buf.extend_from_slice(field);
            put_varint(&mut self.buf, value.len());
            self.buf.extend_from_slice(value);
            self.count += 1;
            true
        }
    }

    fn remove(&mut self, field: &[u8]) -> bool {
        match self.find(field) {
            Some((start, _, end)) => {
                self.buf.drain(start..end);
                self.count -= 1;
                self.trim();
                true
            }
            None => false,
        }
    }
}

// ---------------------------------------------------------------------------
// Table
// ---------------------------------------------------------------------------

type Pair = (SmallBytes, SmallBytes);

/// The process-wide hash seed (random per process; scan cursors depend on
/// it, so it never changes while the server runs).
fn seed() -> &'static ahash::RandomState {
    static SEED: OnceLock<ahash::RandomState> = OnceLock::new();
    SEED.get_or_init(ahash::RandomState::new)
}

#[inline]
fn hash(field: &[u8]) -> u64 {
    seed().hash_one(field)
}

/// Hash bits used inside a segment: rotated so that hashbrown's control
/// bytes and bucket index do not reuse the directory prefix, which is the
/// same for every field of a segment.
#[inline]
fn inner(h: u64) -> u64 {
    h.rotate_left(32)
}

#[inline]
fn rehash(p: &Pair) -> u64 {
    inner(hash(&p.0))
}

/// A hash's position in cursor space.
#[inline]
fn prefix(h: u64) -> u64 {
    h >> (64 - CURSOR_BITS)
}

/// Full capacity of a segment table's buckets (`capacity()` does not count
/// the slots that removals left as tombstones).
fn bucket_capacity(t: &HashTable<Pair>) -> usize {
    t.allocation_size() / (std::mem::size_of::<Pair>() + 1) * 7 / 8
}

/// Shrinks a segment table once it is less than a quarter full.
fn shrink_if_sparse(t: &mut HashTable<Pair>) {
    let cap = bucket_capacity(t);
    if cap > 8 && t.len() * 4 < cap {
        t.shrink_to(t.len(), rehash);
    }
}

/// One segment: the fields whose top `depth` hash bits equal those of `base`.
#[derive(Clone)]
struct Seg {
    depth: u32,
    /// First cursor position of the segment's range.
    base: u64,
    table: HashTable<Pair>,
}

impl Seg {
    /// Width of the segment's range in cursor space.
    fn width(&self) -> u64 {
        1u64 << (CURSOR_BITS - self.depth)
    }
}

/// The big encoding: an extendible hash table (see the module docs).
#[derive(Clone)]
pub struct Table {
    /// `2^depth` slots, each the index of the segment owning that prefix.
    dir: Vec<u32>,
    depth: u32,
    segs: Vec<Seg>,
    len: usize,
}

impl Drop for Table {
    /// A big table is freed a few segments at a time in the background.
    fn drop(&mut self) {
        if self.len > crate::shard::lazyfree::LAZYFREE_THRESHOLD {
            let per_seg = self.len / self.segs.len().max(1);
            crate::shard::lazyfree::defer(std::mem::take(&mut self.segs), 4, per_seg.max(1));
        }
    }
}

impl Default for Table {
    fn default() -> Self {
        Table::new()
    }
}

impl Table {
    /// An empty table with one segment.
    pub fn new() -> Table {
        Table {
            dir: vec![0],
            depth: 0,
            segs: vec![Seg {
                depth: 0,
                base: 0,
                table: HashTable::new(),
            }],
            len: 0,
        }
    }

    /// Number of segments (for tests and diagnostics).
    pub fn segments(&self) -> usize {
        self.segs.len()
    }

    #[inline]
    fn slot_of_pos(&self, pos: u64) -> usize {
        (pos >> (CURSOR_BITS - self.depth)) as usize
    }

    #[inline]
    fn seg_of(&self, h: u64) -> usize {
        self.dir[self.slot_of_pos(prefix(h))] as usize
    }

    fn get(&self, field: &[u8]) -> Option<&[u8]> {
        let h = hash(field);
        self.segs[self.seg_of(h)]
            .table
            .find(inner(h), |p| p.0.as_slice() == field)
            .map(|p| p.1.as_slice())
    }

    fn insert(&mut self, field: &[u8], value: &[u8]) -> bool {
        let h = hash(field);
        let mut i = self.seg_of(h);
        if let Some(p) = self.segs[i]
            .table
            .find_mut(inner(h), |p| p.0.as_slice() == field)
        {
            p.1 = SmallBytes::new(value);
            return false;
        }
        if self.segs[i].table.len() >= SEG_MAX && self.segs[i].depth < CURSOR_BITS {
            self.split(i);
            i = self.seg_of(h);
        }
        self.segs[i].table.insert_unique(
            inner(h),
            (SmallBytes::new(field), SmallBytes::new(value)),
            rehash,
        );
        self.len += 1;
        true
    }

    fn remove(&mut self, field: &[u8]) -> bool {
        let h = hash(field);
        let i = self.seg_of(h);
        let seg = &mut self.segs[i];
        match seg.table.find_entry(inner(h), |p| p.0.as_slice() == field) {
            Ok(e) => {
                e.remove();
            }
            Err(_) => return false,
        }
        self.len -= 1;
        let n = seg.table.len();
        shrink_if_sparse(&mut seg.table);
        if n <= SEG_MERGE / 2 {
            self.try_merge(i);
        }
        true
    }

    /// Splits segment `i` in two of one more bit of depth.
    fn split(&mut self, i: usize) {
        let d = self.segs[i].depth;
        if d == self.depth {
            // Double the directory: each slot becomes two adjacent slots.
            self.dir = self.dir.iter().flat_map(|&s| [s, s]).collect();
            self.depth += 1;
        }
        let half = self.segs[i].width() / 2;
        let old = &mut self.segs[i];
        old.depth = d + 1;
        let bit = 63 - d;
        let mut moved = HashTable::with_capacity(old.table.len() / 2 + 1);
        for p in old.table.extract_if(|p| hash(&p.0) >> bit & 1 == 1) {
            moved.insert_unique(rehash(&p), p, rehash);
        }
        old.table.shrink_to(old.table.len(), rehash);
        let base = old.base + half;
        let new_index = self.segs.len() as u32;
        self.segs.push(Seg {
            depth: d + 1,
            base,
            table: moved,
        });
        let first = self.slot_of_pos(base);
        let n = 1usize << (self.depth - (d + 1));
        for s in &mut self.dir[first..first + n] {
            *s = new_index;
        }
    }

    /// Merges segment `i` with its buddy while both are sparse (cascading
    /// upwards), then halves the directory while no segment needs its full
    /// depth.
    fn try_merge(&mut self, mut i: usize) {
        let mut merged = false;
        while let Some(k) = self.merge_step(i) {
            i = k;
            merged = true;
        }
        if merged {
            while self.depth > 0 && self.segs.iter().all(|s| s.depth < self.depth) {
                self.dir = self.dir.iter().step_by(2).copied().collect();
                self.depth -= 1;
            }
            self.dir.shrink_to_fit();
            self.segs.shrink_to_fit();
        }
    }

    /// Merges segment `i` into its buddy or the buddy into it, if both have
    /// the same depth and few enough fields; returns the merged segment.
    fn merge_step(&mut self, i: usize) -> Option<usize> {
        let d = self.segs[i].depth;
        if d == 0 {
            return None;
        }
        let buddy_base = self.segs[i].base ^ self.segs[i].width();
        let j = self.dir[self.slot_of_pos(buddy_base)] as usize;
        if self.segs[j].depth != d
            || self.segs[i].table.len() + self.segs[j].table.len() > SEG_MERGE
        {
            return None;
        }
        let (mut keep, gone) = if self.segs[i].table.len() >= self.segs[j].table.len() {
            (i, j)
        } else {
            (j, i)
        };
        let moved = std::mem::take(&mut self.segs[gone].table);
        let base = self.segs[i].base.min(buddy_base);
        let k = &mut self.segs[keep];
        k.depth = d - 1;
        k.base = base;
        k.table.reserve(moved.len(), rehash);
        for p in moved {
            k.table.insert_unique(rehash(&p), p, rehash);
        }
        shrink_if_sparse(&mut k.table);
        let last = self.segs.len() - 1;
        for s in &mut self.dir {
            if *s as usize == gone {
                *s = keep as u32;
            }
        }
        self.segs.swap_remove(gone);
        if gone != last {
            for s in &mut self.dir {
                if *s as usize == last {
                    *s = gone as u32;
                }
            }
            if keep == last {
                keep = gone;
            }
        }
        Some(keep)
    }

    fn iter(&self) -> TableIter<'_> {
        TableIter {
            segs: self.segs.iter(),
            cur: None,
        }
    }

    /// Returns the fields whose prefix is in `[pos, next)`, choosing `next` so
    /// that about `count` fields are returned; 0 when the end is reached. A
    /// position past the prefix space (never returned by a scan) is the end.
    fn scan(&self, mut pos: u64, count: usize, mut f: impl FnMut(&[u8], &[u8])) -> u64 {
        let end = 1u64 << CURSOR_BITS;
        let mut seen = 0;
        let mut found: Vec<(u64, &Pair)> = Vec::new();
        while pos < end && seen < count {
            let seg = &self.segs[self.dir[self.slot_of_pos(pos)] as usize];
            let seg_end = seg.base + seg.width();
            found.clear();
            found.extend(
                seg.table
                    .iter()
                    .map(|p| (prefix(hash(&p.0)), p))
                    .filter(|(h, _)| *h >= pos),
            );
            let want = count - seen;
            let stop = if found.len() <= want {
                seg_end
            } else {
                // The want+1'th smallest prefix bounds the range; ties (which
                // need 2^48-space collisions) may make the step a bit short,
                // but never empty.
                found.select_nth_unstable_by_key(want, |x| x.0);
                found[want].0.max(pos + 1)
            };
            for (h, p) in &found {
                if *h < stop {
                    f(&p.0, &p.1);
                    seen += 1;
                }
            }
            pos = stop;
        }
        if pos >= end { 0 } else { pos }
    }

    /// A uniformly chosen pair: a segment is picked at random and accepted in
    /// proportion to its size, then a field within it.
    fn random(&self, rng: &mut impl Rng) -> Option<(&[u8], &[u8])> {
        if self.len == 0 {
            return None;
        }
        let bound = if self.segs.len() == 1 {
            self.len
        } else {
            SEG_MAX
        };
        for _ in 0..64 {
            let seg = &self.segs[rng.gen_range(0..self.segs.len())];
            let k = rng.gen_range(0..bound);
            if k < seg.table.len() {
                let p = seg.table.iter().nth(k)?;
                return Some((&p.0, &p.1));
            }
        }
        // Sparse segments: walk them weighted by size.
        let mut n = rng.gen_range(0..self.len);
        for seg in &self.segs {
            if n < seg.table.len() {
                let p = seg.table.iter().nth(n)?;
                return Some((&p.0, &p.1));
            }
            n -= seg.table.len();
        }
        None
    }

    fn heap_size(&self) -> usize {
        self.dir.capacity() * 4
            + self.segs.capacity() * std::mem::size_of::<Seg>()
            + self
                .segs
                .iter()
                .map(|s| {
                    s.table.allocation_size()
                        + s.table
                            .iter()
                            .map(|(f, v)| f.heap_size() + v.heap_size())
                            .sum::<usize>()
                })
                .sum::<usize>()
    }
}

/// Iterator over a table's pairs, segment by segment.
pub struct TableIter<'a> {
    segs: std::slice::Iter<'a, Seg>,
    cur: Option<hash_table::Iter<'a, Pair>>,
}

impl<'a> Iterator for TableIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(it) = &mut self.cur
                && let Some(p) = it.next()
            {
                return Some((&p.0, &p.1));
            }
            self.cur = Some(self.segs.next()?.table.iter());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    const LIM: Limits = Limits {
        max_entries: 128,
        max_value: 64,
    };

    #[test]
    fn small_header() {
        assert_eq!(std::mem::size_of::<HashValue>(), 32);
    }

    #[test]
    fn listpack_keeps_order_and_converts() {
        let mut h = HashValue::new();
        assert!(h.set(b"a", b"1", LIM));
        assert!(h.set(b"b", b"2", LIM));
        assert!(!h.set(b"a", &[b'x'; 200][..64], LIM));
        assert_eq!(h.encoding(), "listpack");
        let order: Vec<_> = h.iter().map(|(f, _)| f.to_vec()).collect();
        assert_eq!(order, vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(h.get(b"a").unwrap().len(), 64);
        assert!(h.remove(b"a"));
        assert!(!h.remove(b"a"));
        assert_eq!(h.len(), 1);
        assert_eq!(h.heap_size(), 4);
        h.set(b"long", &[b'y'; 65], LIM);
        assert_eq!(h.encoding(), "hashtable");
        assert_eq!(h.get(b"b"), Some(&b"2"[..]));
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn table_grows_shrinks_and_matches_a_model() {
        let mut h = HashValue::new();
        h.convert();
        let mut model = HashMap::new();
        for i in 0..20_000u32 {
            let f = format!("field:{i}");
            h.set(f.as_bytes(), &i.to_le_bytes(), LIM);
            model.insert(f, i);
        }
        let HashValue::Table(t) = &h else { panic!() };
        assert!(t.segments() > 16);
        for i in (0..20_000u32).filter(|i| i % 10 != 0) {
            assert!(h.remove(format!("field:{i}").as_bytes()));
            model.remove(&format!("field:{i}"));
        }
        assert_eq!(h.len(), model.len());
        for (f, v) in &model {
            assert_eq!(h.get(f.as_bytes()), Some(&v.to_le_bytes()[..]));
        }
        let HashValue::Table(t) = &h else { panic!() };
        // 2,000 fields left: sparse buddies merged back (about 125 per segment).
        assert!(t.segments() <= 16, "{} segments", t.segments());
        assert_eq!(h.iter().count(), model.len());
        for i in (0..20_000u32).filter(|i| i % 10 == 0 && *i >= 100) {
            assert!(h.remove(format!("field:{i}").as_bytes()));
        }
        assert_eq!(h.len(), 10);
        let HashValue::Table(t) = &h else { panic!() };
        assert_eq!(t.segments(), 1);
        assert_eq!(t.depth, 0);
        assert!(
            h.heap_size() < 2048,
            "{} {:?}",
            h.heap_size(),
            t.segs
                .iter()
                .map(|s| (s.table.len(), s.table.capacity()))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn memory_is_compact() {
        let mut small = HashValue::new();
        for i in 0..100 {
            small.set(format!("f{i}").as_bytes(), format!("{i}").as_bytes(), LIM);
        }
        assert_eq!(small.encoding(), "listpack");
        // 2 length bytes + about 5 data bytes per pair, one allocation.
        assert!(small.heap_size() < 800, "{}", small.heap_size());
        let mut big = HashValue::new();
        for i in 0..100_000 {
            big.set(format!("f{i}").as_bytes(), format!("{i}").as_bytes(), LIM);
        }
        let per_field = big.heap_size() / big.len();
        assert!(per_field < 100, "{per_field} bytes per field");
    }

    #[test]
    fn scan_survives_growth_and_shrinking() {
        let mut h = HashValue::new();
        h.convert();
        for i in 0..5_000 {
            h.set(format!("a:{i}").as_bytes(), b"v", LIM);
        }
        let mut seen = HashSet::new();
        let mut cursor = 0;
        let mut step = 0;
        loop {
            let mut got = 0;
            cursor = h.scan(cursor, 50, |f, _| {
                seen.insert(f.to_vec());
                got += 1;
            });
            assert!(got <= 60, "returned {got}");
            // Alternate heavy growth and heavy shrinking between calls.
            for j in 0..300 {
                let k = format!("b:{step}:{j}");
                if step % 2 == 0 {
                    h.set(k.as_bytes(), b"v", LIM);
                } else {
                    h.remove(format!("b:{}:{j}", step - 1).as_bytes());
                }
            }
            step += 1;
            if cursor == 0 {
                break;
            }
        }
        for i in 0..5_000 {
            assert!(seen.contains(format!("a:{i}").as_bytes()), "missing a:{i}");
        }
    }

    #[test]
    fn random_reaches_every_field() {
        let mut h = HashValue::new();
        h.convert();
        for i in 0..2_000 {
            h.set(format!("{i}").as_bytes(), b"", LIM);
        }
        let mut rng = rand::thread_rng();
        let mut seen = HashSet::new();
        for _ in 0..40_000 {
            seen.insert(h.random(&mut rng).unwrap().0.to_vec());
        }
        assert!(seen.len() > 1_950, "{}", seen.len());
    }
}
