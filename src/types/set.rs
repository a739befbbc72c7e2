//! Set values, in Redis's three encodings.
//!
//! - `intset`: a sorted array of integers, 2, 4 or 8 bytes each as the
//!   values need (like Redis's intset), searched by binary search, while
//!   every member is the canonical decimal form of an integer and the set has
//!   at most `set-max-intset-entries` members.
//! - `listpack`: small non-integer sets (at most `set-max-listpack-entries`
//!   members of at most `set-max-listpack-value` bytes each, as in Redis 7.2)
//!   live in one flat byte buffer of length-prefixed members, searched
//!   linearly like Redis's listpack.
//! - `hashtable`: a [`MemberTable`], an extendible hash table of small
//!   segments. Lookups are O(1); SSCAN cursors are positions in hash space,
//!   so a cursor stays valid however the table grows (see
//!   [`MemberTable::scan`]).
//!
//! Conversions only go upward (intset → listpack → hashtable, or intset →
//! hashtable), exactly where Redis converts.

use crate::shard::value::SmallBytes;
use bytes::Bytes;
use hashbrown::HashTable;
use rand::Rng;

/// The encoding thresholds, read from the configuration by the commands.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SetLimits {
    /// `set-max-intset-entries`.
    pub intset_entries: usize,
    /// `set-max-listpack-entries`.
    pub listpack_entries: usize,
    /// `set-max-listpack-value`.
    pub listpack_value: usize,
}

/// A set value.
#[derive(Clone, Debug, PartialEq)]
pub enum SetValue {
    /// Sorted, distinct integers.
    Intset(Intset),
    /// Small non-integer sets: members in insertion order in one buffer.
    Listpack(Listpack),
    /// Big sets.
    Table(MemberTable),
}

impl Default for SetValue {
    fn default() -> Self {
        SetValue::new()
    }
}

/// Number of bytes of the decimal form of `n` (Redis's `sdigits10`).
fn digits10(n: i64) -> usize {
    itoa::Buffer::new().format(n).len()
}

impl SetValue {
    /// An empty set; like Redis's `setTypeCreate`, the first member added
    /// decides between intset and listpack.
    pub fn new() -> SetValue {
        SetValue::Intset(Intset::default())
    }

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
            SetValue::Listpack(l) => l.len(),
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
            SetValue::Intset(v) => v.heap_size(),
            SetValue::Listpack(l) => l.buf.capacity(),
            SetValue::Table(t) => t.heap_size(),
        }
    }

    /// True when adding members may change the encoding, so [`SetValue::add`]
    /// needs real limits (a hashtable never converts).
    pub fn needs_limits(&self) -> bool {
        !matches!(self, SetValue::Table(_))
    }

    /// True if `m` is a member.
    pub fn contains(&self, m: &[u8]) -> bool {
        match self {
            SetValue::Intset(v) => crate::parse::parse_i64(m).is_some_and(|n| v.contains(n)),
            SetValue::Listpack(l) => l.find(m).is_some(),
            SetValue::Table(t) => t.contains(m),
        }
    }

    /// Adds `m`; returns false if it was already a member. Converts the
    /// encoding as Redis 7.2's `setTypeAdd` does.
    pub fn add(&mut self, m: &[u8], lim: &SetLimits) -> bool {
        match self {
            SetValue::Intset(v) => {
                if let Some(n) = crate::parse::parse_i64(m) {
                    if !v.insert(n) {
                        return false;
                    }
                    if v.len() > lim.intset_entries {
                        self.convert_to_table();
                    }
                    return true;
                }
                // A non-integer: a listpack if everything fits, else a table.
                let longest = match (v.first(), v.last()) {
                    (Some(a), Some(b)) => digits10(a).max(digits10(b)),
                    _ => 0,
                };
                if v.len() < lim.listpack_entries
                    && m.len() <= lim.listpack_value
                    && longest <= lim.listpack_value
                {
                    let mut lp = Listpack::default();
                    let mut buf = itoa::Buffer::new();
                    for n in v.iter() {
                        lp.push(buf.format(n).as_bytes());
                    }
                    lp.push(m);
                    *self = SetValue::Listpack(lp);
                } else {
                    self.convert_to_table();
                    self.add(m, lim);
                }
                true
            }
            SetValue::Listpack(lp) => {
                if lp.find(m).is_some() {
                    return false;
                }
                if lp.len() < lim.listpack_entries
                    && m.len() <= lim.listpack_value
                    && lp.buf.len() + m.len() < Listpack::SAFETY_SIZE
                {
                    lp.push(m);
                } else {
                    self.convert_to_table();
                    self.add(m, lim);
                }
                true
            }
            SetValue::Table(t) => t.insert(m),
        }
    }

    /// Removes `m`; returns false if it was not a member. Never converts.
    pub fn remove(&mut self, m: &[u8]) -> bool {
        match self {
            SetValue::Intset(v) => crate::parse::parse_i64(m).is_some_and(|n| v.remove(n)),
            SetValue::Listpack(l) => match l.find(m) {
                Some(range) => {
                    l.remove_range(range);
                    true
                }
                None => false,
            },
            SetValue::Table(t) => t.remove(m),
        }
    }

    /// Converts to the hashtable encoding.
    fn convert_to_table(&mut self) {
        let mut t = MemberTable::default();
        self.for_each(|m| {
            t.insert(m);
        });
        *self = SetValue::Table(t);
    }

    /// Calls `f` with every member (integers in their decimal form).
    pub fn for_each(&self, mut f: impl FnMut(&[u8])) {
        self.for_each_while(|m| {
            f(m);
            true
        });
    }

    /// Calls `f` with members until it returns false.
    pub fn for_each_while(&self, mut f: impl FnMut(&[u8]) -> bool) {
        match self {
            SetValue::Intset(v) => {
                let mut buf = itoa::Buffer::new();
                for n in v.iter() {
                    if !f(buf.format(n).as_bytes()) {
                        return;
                    }
                }
            }
            SetValue::Listpack(l) => {
                for m in l.iter() {
                    if !f(m) {
                        return;
                    }
                }
            }
            SetValue::Table(t) => t.for_each_while(f),
        }
    }

    /// Every member, copied.
    pub fn members(&self) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(self.len());
        self.for_each(|m| out.push(Bytes::copy_from_slice(m)));
        out
    }

    /// One random member, or None when empty.
    pub fn random_member(&self, rng: &mut impl Rng) -> Option<Bytes> {
        if self.is_empty() {
            return None;
        }
        Some(match self {
            SetValue::Intset(v) => {
                let n = v.get(rng.gen_range(0..v.len()));
                Bytes::copy_from_slice(itoa::Buffer::new().format(n).as_bytes())
            }
            SetValue::Listpack(l) => {
                let i = rng.gen_range(0..l.len());
                Bytes::copy_from_slice(l.iter().nth(i).expect("index below len"))
            }
            SetValue::Table(t) => Bytes::copy_from_slice(t.random(rng)?),
        })
    }

    /// Removes and returns one random member.
    pub fn pop_random(&mut self, rng: &mut impl Rng) -> Option<Bytes> {
        let m = self.random_member(rng)?;
        self.remove(&m);
        Some(m)
    }

    /// `count` random members, possibly repeated (SRANDMEMBER with a
    /// negative count). The set must not be empty.
    pub fn random_with_repeats(&self, count: usize, rng: &mut impl Rng) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(count.min(1 << 16));
        // Small counts against a big table pick one member at a time; else
        // copy the members once and index into them.
        if matches!(self, SetValue::Table(_)) && count.saturating_mul(4) < self.len() {
            for _ in 0..count {
                out.extend(self.random_member(rng));
            }
            return out;
        }
        let all = self.members();
        for _ in 0..count {
            out.push(all[rng.gen_range(0..all.len())].clone());
        }
        out
    }

    /// `count` distinct random members; all of them when `count` reaches the
    /// set's size (SRANDMEMBER with a positive count).
    pub fn random_distinct(&self, count: usize, rng: &mut impl Rng) -> Vec<Bytes> {
        let len = self.len();
        if count >= len {
            return self.members();
        }
        // Like Redis: when the sample is a big part of the set, copy the set
        // and shuffle; otherwise pick members until enough distinct ones.
        if !matches!(self, SetValue::Table(_)) || count * 3 > len {
            let mut all = self.members();
            for i in 0..count {
                let j = rng.gen_range(i..all.len());
                all.swap(i, j);
            }
            all.truncate(count);
            return all;
        }
        let mut seen = hashbrown::HashSet::with_capacity(count);
        let mut out = Vec::with_capacity(count);
        while out.len() < count {
            let Some(m) = self.random_member(rng) else {
                break;
            };
            if seen.insert(m.clone()) {
                out.push(m);
            }
        }
        out
    }

    /// Visits members from SSCAN cursor `cursor`; returns the next cursor
    /// (0 at the end). Intsets and listpacks are returned whole with cursor
    /// 0, as Redis does.
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&[u8])) -> u64 {
        match self {
            SetValue::Table(t) => t.scan(cursor, count, f),
            _ => {
                self.for_each(&mut f);
                0
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Intset
// ---------------------------------------------------------------------------

/// Sorted distinct integers stored at the narrowest width that holds them
/// all (Redis's intset): a set of small numbers takes 2 bytes a member. The
/// width only grows.
#[derive(Clone, Debug)]
pub enum Intset {
    /// Every value fits in 16 bits.
    W16(Vec<i16>),
    /// Every value fits in 32 bits.
    W32(Vec<i32>),
    /// Any values.
    W64(Vec<i64>),
}

impl Default for Intset {
    fn default() -> Self {
        Intset::W16(Vec::new())
    }
}

impl PartialEq for Intset {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

/// Evaluates `$body` with `$v` bound to the vector of the width in use.
macro_rules! each_width {
    ($s:expr, $v:ident => $body:expr) => {
        match $s {
            Intset::W16($v) => $body,
            Intset::W32($v) => $body,
            Intset::W64($v) => $body,
        }
    };
}

impl Intset {
    /// Number of members.
    pub fn len(&self) -> usize {
        each_width!(self, v => v.len())
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`-th smallest member.
    pub fn get(&self, i: usize) -> i64 {
        match self {
            Intset::W16(v) => i64::from(v[i]),
            Intset::W32(v) => i64::from(v[i]),
            Intset::W64(v) => v[i],
        }
    }

    /// The smallest member.
    pub fn first(&self) -> Option<i64> {
        (!self.is_empty()).then(|| self.get(0))
    }

    /// The largest member.
    pub fn last(&self) -> Option<i64> {
        (!self.is_empty()).then(|| self.get(self.len() - 1))
    }

    /// Members in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = i64> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Heap bytes held.
    pub fn heap_size(&self) -> usize {
        match self {
            Intset::W16(v) => v.capacity() * 2,
            Intset::W32(v) => v.capacity() * 4,
            Intset::W64(v) => v.capacity() * 8,
        }
    }

    /// Binary search for `n`, which may be wider than the storage.
    fn search(&self, n: i64) -> Result<usize, usize> {
        let outside = Err(if n < 0 { 0 } else { self.len() });
        match self {
            Intset::W16(v) => i16::try_from(n).map_or(outside, |x| v.binary_search(&x)),
            Intset::W32(v) => i32::try_from(n).map_or(outside, |x| v.binary_search(&x)),
            Intset::W64(v) => v.binary_search(&n),
        }
    }

    /// True if `n` is a member.
    pub fn contains(&self, n: i64) -> bool {
        self.search(n).is_ok()
    }

    /// Inserts `n`, widening the storage if needed; false if present.
    pub fn insert(&mut self, n: i64) -> bool {
        let Err(pos) = self.search(n) else {
            return false;
        };
        match self {
            Intset::W16(v) if let Ok(x) = i16::try_from(n) => v.insert(pos, x),
            Intset::W32(v) if let Ok(x) = i32::try_from(n) => v.insert(pos, x),
            Intset::W64(v) => v.insert(pos, n),
            _ => {
                let mut wide: Vec<i64> = self.iter().collect();
                wide.insert(pos, n);
                *self = if i32::try_from(n).is_ok() {
                    Intset::W32(wide.into_iter().map(|x| x as i32).collect())
                } else {
                    Intset::W64(wide)
                };
            }
        }
        true
    }

    /// Removes `n`; false if absent.
    pub fn remove(&mut self, n: i64) -> bool {
        match self.search(n) {
            Ok(i) => {
                each_width!(self, v => {
                    v.remove(i);
                });
                true
            }
            Err(_) => false,
        }
    }
}

// ---------------------------------------------------------------------------
// Listpack
// ---------------------------------------------------------------------------

/// A small set in one flat buffer: each member is a LEB128 length followed by
/// its bytes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Listpack {
    buf: Vec<u8>,
    len: usize,
}

impl Listpack {
    /// Largest buffer a listpack may grow to (Redis's `LISTPACK_MAX_SAFETY_SIZE`).
    pub const SAFETY_SIZE: usize = 1 << 30;

    /// Number of members.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a member (the caller checked it is absent).
    fn push(&mut self, m: &[u8]) {
        let mut n = m.len();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.buf.push(b);
                break;
            }
            self.buf.push(b | 0x80);
        }
        self.buf.extend_from_slice(m);
        self.len += 1;
    }

    /// Decodes the entry at `pos`: (member start, member end).
    #[inline]
    fn entry_at(&self, mut pos: usize) -> (usize, usize) {
        let mut n = 0usize;
        let mut shift = 0;
        loop {
            let b = self.buf[pos];
            pos += 1;
            n |= ((b & 0x7f) as usize) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        (pos, pos + n)
    }

    /// The members in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let mut pos = 0;
        std::iter::from_fn(move || {
            if pos >= self.buf.len() {
                return None;
            }
            let (s, e) = self.entry_at(pos);
            pos = e;
            Some(&self.buf[s..e])
        })
    }

    /// The byte range of the entry holding `m` (length prefix included).
    fn find(&self, m: &[u8]) -> Option<(usize, usize)> {
        let mut pos = 0;
        while pos < self.buf.len() {
            let (s, e) = self.entry_at(pos);
            if &self.buf[s..e] == m {
                return Some((pos, e));
            }
            pos = e;
        }
        None
    }

    fn remove_range(&mut self, (s, e): (usize, usize)) {
        self.buf.drain(s..e);
        self.len -= 1;
    }
}

// ---------------------------------------------------------------------------
// MemberTable
// ---------------------------------------------------------------------------

/// Members per segment before it splits: 7/8 of 512 buckets, the load at
/// which hashbrown would grow.
const SEG_MAX: usize = 448;

/// Deepest split; beyond it a segment just grows (only reachable with
/// colliding hashes).
const MAX_DEPTH: u32 = 48;

/// Fixed seeds: SSCAN cursors are positions in hash space, so hashes must
/// not change for the life of the process.
static HASHER: ahash::RandomState = ahash::RandomState::with_seeds(
    0x9e37_79b9_7f4a_7c15,
    0xbf58_476d_1ce4_e5b9,
    0x94d0_49bb_1331_11eb,
    0x2545_f491_4f6c_dd1d,
);

#[inline]
fn hash(m: &[u8]) -> u64 {
    HASHER.hash_one(m)
}

/// Hash bits used inside a segment: rotated so that hashbrown's control
/// bytes and bucket index do not reuse the segment's common prefix.
#[inline]
fn inner(h: u64) -> u64 {
    h.rotate_left(32)
}

#[inline]
fn rehash(m: &SmallBytes) -> u64 {
    inner(hash(m.as_slice()))
}

#[derive(Clone)]
struct Segment {
    depth: u32,
    table: HashTable<SmallBytes>,
}

/// A big set: an extendible hash table. A directory indexed by the top bits
/// of a member's hash points to segments of at most [`SEG_MAX`] members;
/// a full segment splits in two, so growth never rehashes the whole set.
/// Each segment owns a contiguous range of hash space.
#[derive(Clone)]
pub struct MemberTable {
    dir: Vec<u32>,
    depth: u32,
    segs: Vec<Segment>,
    len: usize,
}

impl Drop for MemberTable {
    /// A big table is freed a few segments at a time in the background.
    fn drop(&mut self) {
        if self.len > crate::shard::lazyfree::LAZYFREE_THRESHOLD {
            let per_seg = self.len / self.segs.len().max(1);
            crate::shard::lazyfree::defer(std::mem::take(&mut self.segs), 8, per_seg.max(1));
        }
    }
}

impl Default for MemberTable {
    fn default() -> Self {
        MemberTable {
            dir: vec![0],
            depth: 0,
            segs: vec![Segment {
                depth: 0,
                table: HashTable::new(),
            }],
            len: 0,
        }
    }
}

impl std::fmt::Debug for MemberTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = f.debug_set();
        self.for_each(|m| {
            s.entry(&String::from_utf8_lossy(m));
        });
        s.finish()
    }
}

impl PartialEq for MemberTable {
    fn eq(&self, other: &Self) -> bool {
        let mut all = self.len == other.len;
        if all {
            self.for_each(|m| all &= other.contains(m));
        }
        all
    }
}

impl MemberTable {
    /// Number of members.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn seg_of(&self, h: u64) -> usize {
        let slot = h.checked_shr(64 - self.depth).unwrap_or(0);
        self.dir[slot as usize] as usize
    }

    /// True if `m` is a member.
    pub fn contains(&self, m: &[u8]) -> bool {
        let h = hash(m);
        self.segs[self.seg_of(h)]
            .table
            .find(inner(h), |e| e.as_slice() == m)
            .is_some()
    }

    /// Inserts `m`; false if already present.
    pub fn insert(&mut self, m: &[u8]) -> bool {
        let h = hash(m);
        let mut i = self.seg_of(h);
        if self.segs[i]
            .table
            .find(inner(h), |e| e.as_slice() == m)
            .is_some()
        {
            return false;
        }
        while self.segs[i].table.len() >= SEG_MAX && self.segs[i].depth < MAX_DEPTH {
            self.split(i);
            i = self.seg_of(h);
        }
        self.segs[i]
            .table
            .insert_unique(inner(h), SmallBytes::new(m), rehash);
        self.len += 1;
        true
    }

    /// Removes `m`; false if absent.
    pub fn remove(&mut self, m: &[u8]) -> bool {
        let h = hash(m);
        let i = self.seg_of(h);
        let table = &mut self.segs[i].table;
        match table.find_entry(inner(h), |e| e.as_slice() == m) {
            Ok(occ) => {
                occ.remove();
                self.len -= 1;
                // Give memory back once a segment is mostly empty.
                if table.capacity() > 64 && table.len() * 4 < table.capacity() {
                    table.shrink_to(table.len() * 2, rehash);
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Splits segment `i` into two of one more bit of depth.
    fn split(&mut self, i: usize) {
        let depth = self.segs[i].depth;
        if depth == self.depth {
            self.dir = self.dir.iter().flat_map(|&s| [s, s]).collect();
            self.depth += 1;
        }
        let bit = 63 - depth;
        let old = &mut self.segs[i];
        old.depth = depth + 1;
        let mut moved = HashTable::with_capacity(old.table.len() / 2 + 1);
        for m in old.table.extract_if(|m| hash(m.as_slice()) >> bit & 1 == 1) {
            moved.insert_unique(rehash(&m), m, rehash);
        }
        old.table.shrink_to(old.table.len(), rehash);
        let new_index = self.segs.len() as u32;
        self.segs.push(Segment {
            depth: depth + 1,
            table: moved,
        });
        let shift = self.depth - (depth + 1);
        for (slot, s) in self.dir.iter_mut().enumerate() {
            if *s as usize == i && (slot >> shift) & 1 == 1 {
                *s = new_index;
            }
        }
    }

    /// Calls `f` with every member.
    pub fn for_each(&self, mut f: impl FnMut(&[u8])) {
        self.for_each_while(|m| {
            f(m);
            true
        });
    }

    /// Calls `f` with members until it returns false.
    pub fn for_each_while(&self, mut f: impl FnMut(&[u8]) -> bool) {
        for s in &self.segs {
            for m in s.table.iter() {
                if !f(m) {
                    return;
                }
            }
        }
    }

    /// A random member: a segment chosen uniformly, accepted with
    /// probability proportional to its fill, then a member of it, so every
    /// member is equally likely. Sparse tables fall back to a weighted walk.
    pub fn random(&self, rng: &mut impl Rng) -> Option<&[u8]> {
        if self.len == 0 {
            return None;
        }
        for _ in 0..32 {
            let s = &self.segs[rng.gen_range(0..self.segs.len())];
            if rng.gen_range(0..SEG_MAX.max(s.table.len())) < s.table.len() {
                let k = rng.gen_range(0..s.table.len());
                return s.table.iter().nth(k).map(|m| m.as_slice());
            }
        }
        let mut n = rng.gen_range(0..self.len);
        for s in &self.segs {
            if n < s.table.len() {
                return s.table.iter().nth(n).map(|m| m.as_slice());
            }
            n -= s.table.len();
        }
        None
    }

    /// SSCAN over hash space. The cursor is a 64-bit hash position: a call
    /// returns every member whose hash lies in `[cursor, next)`, in hash
    /// order, and `next` (0 once the whole space is covered). Because the
    /// cursor names hash values rather than buckets, it stays valid across
    /// any growth or split: a member present for the whole iteration is
    /// returned exactly once. About `count` members are returned per call
    /// (members sharing one hash value are never separated).
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&[u8])) -> u64 {
        let count = count.max(1);
        let mut pos = cursor;
        let mut emitted = 0usize;
        loop {
            let seg = &self.segs[self.seg_of(pos)];
            let mut found: Vec<(u64, &SmallBytes)> = seg
                .table
                .iter()
                .map(|m| (hash(m.as_slice()), m))
                .filter(|(h, _)| *h >= pos)
                .collect();
            found.sort_unstable_by_key(|(h, _)| *h);
            let mut i = 0;
            while i < found.len() {
                let h = found[i].0;
                if emitted >= count {
                    return h;
                }
                while i < found.len() && found[i].0 == h {
                    f(found[i].1.as_slice());
                    emitted += 1;
                    i += 1;
                }
            }
            // The end of this segment's range of hash space.
            let shift = 64 - seg.depth;
            let end = if shift >= 64 {
                None
            } else {
                ((pos >> shift) + 1).checked_shl(shift).filter(|&e| e != 0)
            };
            match end {
                None => return 0,
                Some(e) if emitted >= count => return e,
                Some(e) => pos = e,
            }
        }
    }

    /// Heap bytes held.
    pub fn heap_size(&self) -> usize {
        let slot = std::mem::size_of::<SmallBytes>() + 1;
        self.dir.capacity() * 4
            + self.segs.capacity() * std::mem::size_of::<Segment>()
            + self
                .segs
                .iter()
                .map(|s| {
                    s.table.capacity() * slot + s.table.iter().map(|m| m.heap_size()).sum::<usize>()
                })
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIM: SetLimits = SetLimits {
        intset_entries: 512,
        listpack_entries: 128,
        listpack_value: 64,
    };

    fn set_of(items: &[&str], lim: &SetLimits) -> SetValue {
        let mut s = SetValue::new();
        for m in items {
            s.add(m.as_bytes(), lim);
        }
        s
    }

    #[test]
    fn encodings_convert_upward() {
        let mut s = set_of(&["3", "1", "2", "2"], &LIM);
        assert_eq!(s.encoding(), "intset");
        assert_eq!(s.len(), 3);
        assert_eq!(s.members(), vec!["1", "2", "3"]);
        assert!(s.contains(b"2") && !s.contains(b"02") && !s.contains(b"x"));
        s.add(b"x", &LIM);
        assert_eq!(s.encoding(), "listpack");
        assert!(s.contains(b"2") && s.contains(b"x"));
        assert!(s.remove(b"x"));
        assert_eq!(s.encoding(), "listpack");
        for i in 0..200 {
            s.add(format!("m{i}").as_bytes(), &LIM);
        }
        assert_eq!(s.encoding(), "hashtable");
        assert_eq!(s.len(), 203);
        let big = "y".repeat(65);
        let mut t = set_of(&["a"], &LIM);
        t.add(big.as_bytes(), &LIM);
        assert_eq!(t.encoding(), "hashtable");
        let mut i = SetValue::new();
        for n in 0..513 {
            i.add(n.to_string().as_bytes(), &LIM);
        }
        assert_eq!(i.encoding(), "hashtable");
    }

    #[test]
    fn intset_with_long_numbers_skips_listpack() {
        let lim = SetLimits {
            listpack_value: 3,
            ..LIM
        };
        let mut s = set_of(&["12345"], &lim);
        s.add(b"a", &lim);
        assert_eq!(s.encoding(), "hashtable");
    }

    #[test]
    fn intset_widens_as_values_need() {
        let mut i = Intset::default();
        for n in [5, -3, 100] {
            assert!(i.insert(n));
        }
        assert!(matches!(i, Intset::W16(_)));
        assert!(!i.insert(5));
        assert!(i.insert(70_000));
        assert!(matches!(i, Intset::W32(_)));
        assert!(!i.contains(i64::MAX) && !i.contains(i64::MIN));
        assert!(i.insert(i64::MIN));
        assert!(matches!(i, Intset::W64(_)));
        assert_eq!(
            i.iter().collect::<Vec<_>>(),
            vec![i64::MIN, -3, 5, 100, 70_000]
        );
        assert!(i.remove(70_000) && !i.remove(70_000));
        assert_eq!((i.first(), i.last()), (Some(i64::MIN), Some(100)));
        let mut j = Intset::default();
        assert!(!j.contains(1 << 40) && !j.remove(-(1 << 40)));
        assert!(j.insert(-(1 << 20)));
        assert!(matches!(j, Intset::W32(_)));
        assert!(!j.contains(1 << 40) && j.contains(-(1 << 20)));
    }

    #[test]
    fn listpack_long_lengths_roundtrip() {
        let mut lp = Listpack::default();
        let long = vec![b'z'; 300];
        lp.push(b"a");
        lp.push(&long);
        lp.push(b"");
        let all: Vec<&[u8]> = lp.iter().collect();
        assert_eq!(all, vec![&b"a"[..], &long[..], &b""[..]]);
        let r = lp.find(&long).unwrap();
        lp.remove_range(r);
        assert_eq!(lp.iter().collect::<Vec<_>>(), vec![&b"a"[..], &b""[..]]);
    }

    #[test]
    fn table_scan_survives_growth() {
        let mut t = MemberTable::default();
        for i in 0..5000 {
            t.insert(format!("a:{i}").as_bytes());
        }
        let mut seen = std::collections::HashMap::<Vec<u8>, usize>::new();
        let mut cursor = 0;
        let mut extra = 0;
        loop {
            cursor = t.scan(cursor, 50, |m| *seen.entry(m.to_vec()).or_default() += 1);
            for _ in 0..100 {
                t.insert(format!("b:{extra}").as_bytes());
                extra += 1;
            }
            if cursor == 0 {
                break;
            }
        }
        for i in 0..5000 {
            assert_eq!(seen.get(format!("a:{i}").as_bytes()), Some(&1), "a:{i}");
        }
        assert!(seen.values().all(|&n| n == 1));
        assert!(t.segs.len() > 10);
    }

    #[test]
    fn table_remove_and_random() {
        let mut t = MemberTable::default();
        for i in 0..3000 {
            assert!(t.insert(format!("{i}").as_bytes()));
        }
        assert!(!t.insert(b"7"));
        for i in 0..2990 {
            assert!(t.remove(format!("{i}").as_bytes()));
        }
        assert_eq!(t.len(), 10);
        let mut rng = rand::thread_rng();
        for _ in 0..100 {
            let m = t.random(&mut rng).unwrap();
            assert!(t.contains(m));
        }
    }
}
