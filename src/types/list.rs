//! List values, in two encodings (the names OBJECT ENCODING reports are
//! Redis 7.2's):
//!
//! - `listpack`: while small, one flat byte buffer ([`Listpack`]). Each entry
//!   is `varint(len) | bytes | reversed varint(len)`, so it can be walked from
//!   either end like Redis's listpack, and a short element costs its length
//!   plus two bytes.
//! - `quicklist`: past `list-max-listpack-size`, a ring buffer of elements
//!   ([`Quicklist`], a `VecDeque` of inline-or-boxed strings): O(1) push and
//!   pop at both ends and O(1) indexing, which LINDEX, LSET and LRANGE use to
//!   reach any position without walking the list.
//!
//! Conversions follow Redis 7.2: a listpack becomes a quicklist when an
//! addition would take it past the size limit (negative
//! `list-max-listpack-size`: -1..-5 = 4..64 KiB for the whole list) or past
//! the entry limit (positive values, which also cap the size at 8 KiB as
//! Redis's safety limit does). A quicklist converts back once a removal
//! leaves it at half of both limits or less, so a list near the limit does
//! not flip back and forth.

use crate::shard::value::SmallBytes;
use bytes::Bytes;
use std::collections::VecDeque;

/// Bytes counted for the flat form besides its entries (Redis's listpack
/// header and end marker), so sizes compare like `lpBytes`.
const LP_OVERHEAD: usize = 7;
/// Size cap of the flat form when `list-max-listpack-size` is a count
/// (Redis's `SIZE_SAFETY_LIMIT`).
const SIZE_SAFETY_LIMIT: usize = 8192;
/// Size limits for `list-max-listpack-size` -1..-5.
const BYTE_LIMITS: [usize; 5] = [4096, 8192, 16384, 32768, 65536];

/// The flat form's limits for a `list-max-listpack-size` value: (bytes,
/// entries).
pub fn limits(fill: i64) -> (usize, usize) {
    if fill >= 0 {
        (SIZE_SAFETY_LIMIT, fill.max(1) as usize)
    } else {
        let offset = (-(fill + 1)).min(4) as usize;
        (BYTE_LIMITS[offset], usize::MAX)
    }
}

/// Length of `n` as a LEB128 varint.
fn varint_len(mut n: usize) -> usize {
    let mut k = 1;
    while n >= 0x80 {
        n >>= 7;
        k += 1;
    }
    k
}

/// Bytes one element of `n` bytes takes in the flat form.
#[inline]
fn entry_size(n: usize) -> usize {
    n + 2 * varint_len(n)
}

/// Appends one encoded entry to `out`.
fn write_entry(out: &mut Vec<u8>, data: &[u8]) {
    let mut tmp = [0u8; 10];
    let mut n = data.len();
    let mut k = 0;
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            tmp[k] = b;
            k += 1;
            break;
        }
        tmp[k] = b | 0x80;
        k += 1;
    }
    out.extend_from_slice(&tmp[..k]);
    out.extend_from_slice(data);
    out.extend(tmp[..k].iter().rev());
}

/// Reads the entry starting at `pos`: (data range start, data length,
/// offset of the next entry).
#[inline]
fn read_fwd(buf: &[u8], pos: usize) -> (usize, usize, usize) {
    let (mut n, mut shift, mut i) = (0usize, 0, pos);
    loop {
        let b = buf[i];
        i += 1;
        n |= ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let k = i - pos;
    (i, n, i + n + k)
}

/// Reads the entry ending at `end`: (data range start, data length, offset
/// where the entry starts).
#[inline]
fn read_back(buf: &[u8], end: usize) -> (usize, usize, usize) {
    let (mut n, mut shift, mut i) = (0usize, 0, end);
    loop {
        i -= 1;
        let b = buf[i];
        n |= ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let k = end - i;
    let start = i - n;
    (start, n, start - k)
}

/// The flat encoding: every element in one buffer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Listpack {
    buf: Vec<u8>,
    len: usize,
}

impl Listpack {
    /// Size as the conversion rules count it.
    fn bytes(&self) -> usize {
        self.buf.len() + LP_OVERHEAD
    }

    /// Byte offset of entry `index` (`index == len` gives the end), walking
    /// from the nearer end.
    fn offset_of(&self, index: usize) -> usize {
        if index <= self.len / 2 {
            let mut pos = 0;
            for _ in 0..index {
                pos = read_fwd(&self.buf, pos).2;
            }
            pos
        } else {
            let mut pos = self.buf.len();
            for _ in index..self.len {
                pos = read_back(&self.buf, pos).2;
            }
            pos
        }
    }

    fn iter_range(&self, start: usize, end: usize) -> LpIter<'_> {
        LpIter {
            buf: &self.buf,
            front: self.offset_of(start),
            back: self.offset_of(end),
            remaining: end - start,
        }
    }

    fn from_iter<'a>(items: impl Iterator<Item = &'a [u8]>) -> Listpack {
        let mut lp = Listpack::default();
        for e in items {
            write_entry(&mut lp.buf, e);
            lp.len += 1;
        }
        lp
    }

    /// Gives back spare capacity once the buffer is mostly empty.
    fn shrink(&mut self) {
        if self.buf.capacity() > 2 * self.buf.len() + 64 {
            self.buf.shrink_to(self.buf.len() + self.buf.len() / 4);
        }
    }
}

/// An iterator over a [`Listpack`]'s elements.
#[derive(Clone)]
struct LpIter<'a> {
    buf: &'a [u8],
    front: usize,
    back: usize,
    remaining: usize,
}

impl<'a> Iterator for LpIter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let (s, n, next) = read_fwd(self.buf, self.front);
        self.front = next;
        Some(&self.buf[s..s + n])
    }
}

impl<'a> DoubleEndedIterator for LpIter<'a> {
    fn next_back(&mut self) -> Option<&'a [u8]> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let (s, n, prev) = read_back(self.buf, self.back);
        self.back = prev;
        Some(&self.buf[s..s + n])
    }
}

/// The big encoding: a ring buffer of elements.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Quicklist {
    items: VecDeque<SmallBytes>,
    /// What the flat form of these elements would take, for conversions.
    bytes: usize,
    /// Heap bytes of the elements too long to be inline.
    heap: usize,
}

impl Drop for Quicklist {
    /// A long list is freed in chunks in the background.
    fn drop(&mut self) {
        if self.items.len() > crate::shard::lazyfree::LAZYFREE_THRESHOLD {
            crate::shard::lazyfree::defer(std::mem::take(&mut self.items), 4096, 1);
        }
    }
}

impl Quicklist {
    fn add(&mut self, e: &SmallBytes) {
        self.bytes += entry_size(e.len());
        self.heap += e.heap_size();
    }

    fn sub(&mut self, e: &SmallBytes) {
        self.bytes -= entry_size(e.len());
        self.heap -= e.heap_size();
    }

    fn from_iter<'a>(items: impl Iterator<Item = &'a [u8]>) -> Quicklist {
        let mut q = Quicklist {
            items: VecDeque::new(),
            bytes: LP_OVERHEAD,
            heap: 0,
        };
        for e in items {
            let e = SmallBytes::new(e);
            q.add(&e);
            q.items.push_back(e);
        }
        q
    }

    /// Gives back spare capacity once the ring is mostly empty.
    fn shrink(&mut self) {
        if self.items.capacity() > 64 && self.items.len() < self.items.capacity() / 4 {
            self.items.shrink_to(self.items.len() * 2);
        }
    }
}

/// A list value; see the module docs for the encodings.
#[derive(Clone, Debug, PartialEq)]
pub enum ListValue {
    /// Small: one flat buffer.
    Listpack(Listpack),
    /// Big: a ring buffer with O(1) access at both ends and by index.
    Quicklist(Quicklist),
}

impl Default for ListValue {
    fn default() -> Self {
        ListValue::new()
    }
}

/// An iterator over list elements, front to back (reversible).
#[derive(Clone)]
pub struct Iter<'a>(IterInner<'a>);

#[derive(Clone)]
enum IterInner<'a> {
    Lp(LpIter<'a>),
    Ql(std::collections::vec_deque::Iter<'a, SmallBytes>),
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a [u8];
    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        match &mut self.0 {
            IterInner::Lp(it) => it.next(),
            IterInner::Ql(it) => it.next().map(|e| e.as_slice()),
        }
    }
}

impl<'a> DoubleEndedIterator for Iter<'a> {
    #[inline]
    fn next_back(&mut self) -> Option<&'a [u8]> {
        match &mut self.0 {
            IterInner::Lp(it) => it.next_back(),
            IterInner::Ql(it) => it.next_back().map(|e| e.as_slice()),
        }
    }
}

impl ListValue {
    /// An empty list in the flat encoding.
    pub fn new() -> ListValue {
        ListValue::Listpack(Listpack::default())
    }

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
            ListValue::Listpack(lp) => lp.len,
            ListValue::Quicklist(q) => q.items.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes held.
    pub fn heap_size(&self) -> usize {
        match self {
            ListValue::Listpack(lp) => lp.buf.capacity(),
            ListValue::Quicklist(q) => {
                q.items.capacity() * std::mem::size_of::<SmallBytes>() + q.heap
            }
        }
    }

    /// Size of the flat form of this list (what the conversion limits
    /// compare against).
    pub fn flat_bytes(&self) -> usize {
        match self {
            ListValue::Listpack(lp) => lp.bytes(),
            ListValue::Quicklist(q) => q.bytes,
        }
    }

    /// Every element, front to back.
    pub fn iter(&self) -> Iter<'_> {
        self.range(0, self.len())
    }

    /// Elements `start..end` (clamped to the list), front to back. Reaches
    /// `start` in O(1) on the big form; only the range is visited.
    pub fn range(&self, start: usize, end: usize) -> Iter<'_> {
        let end = end.min(self.len());
        let start = start.min(end);
        match self {
            ListValue::Listpack(lp) => Iter(IterInner::Lp(lp.iter_range(start, end))),
            ListValue::Quicklist(q) => Iter(IterInner::Ql(q.items.range(start..end))),
        }
    }

    /// The element at `index`, if any.
    pub fn get(&self, index: usize) -> Option<&[u8]> {
        if index >= self.len() {
            return None;
        }
        match self {
            ListValue::Listpack(lp) => {
                let (s, n, _) = read_fwd(&lp.buf, lp.offset_of(index));
                Some(&lp.buf[s..s + n])
            }
            ListValue::Quicklist(q) => Some(q.items[index].as_slice()),
        }
    }

    /// Converts to the big form if adding `add_bytes` (flat size) and
    /// `add_count` elements takes the flat form past its limits.
    fn grow_to_fit(&mut self, add_bytes: usize, add_count: usize, fill: i64) {
        if let ListValue::Listpack(lp) = self {
            let (max_bytes, max_count) = limits(fill);
            if lp.bytes() + add_bytes > max_bytes || lp.len + add_count > max_count {
                *self = ListValue::Quicklist(Quicklist::from_iter(lp.iter_range(0, lp.len)));
            }
        }
    }

    /// After a removal: converts back to the flat form once the list is at
    /// half of both limits or less; trims spare capacity otherwise.
    fn shrunk(&mut self, fill: i64) {
        match self {
            ListValue::Quicklist(q) => {
                let (max_bytes, max_count) = limits(fill);
                if q.bytes <= max_bytes / 2 && q.items.len() <= max_count / 2 {
                    *self = ListValue::Listpack(Listpack::from_iter(
                        q.items.iter().map(|e| e.as_slice()),
                    ));
                } else {
                    q.shrink();
                }
            }
            ListValue::Listpack(lp) => lp.shrink(),
        }
    }

    /// Pushes `elems` one by one at the head (`left`, so the last ends up
    /// first, as LPUSH does) or the tail, converting first if they would not
    /// fit the flat form. `fill` is `list-max-listpack-size`.
    pub fn push<T: AsRef<[u8]>>(&mut self, elems: &[T], left: bool, fill: i64) {
        if matches!(self, ListValue::Listpack(_)) {
            let add: usize = elems.iter().map(|e| entry_size(e.as_ref().len())).sum();
            self.grow_to_fit(add, elems.len(), fill);
        }
        match self {
            ListValue::Listpack(lp) => {
                if left {
                    let mut head = Vec::new();
                    for e in elems.iter().rev() {
                        write_entry(&mut head, e.as_ref());
                    }
                    lp.buf.splice(0..0, head);
                } else {
                    for e in elems {
                        write_entry(&mut lp.buf, e.as_ref());
                    }
                }
                lp.len += elems.len();
            }
            ListValue::Quicklist(q) => {
                for e in elems {
                    let e = SmallBytes::new(e.as_ref());
                    q.add(&e);
                    if left {
                        q.items.push_front(e);
                    } else {
                        q.items.push_back(e);
                    }
                }
            }
        }
    }

    /// Pops up to `count` elements from the head (`left`) or the tail, in
    /// pop order.
    pub fn pop(&mut self, left: bool, count: usize, fill: i64) -> Vec<Bytes> {
        let count = count.min(self.len());
        let mut out = Vec::with_capacity(count);
        match self {
            ListValue::Listpack(lp) => {
                if left {
                    let mut pos = 0;
                    for _ in 0..count {
                        let (s, n, next) = read_fwd(&lp.buf, pos);
                        out.push(Bytes::copy_from_slice(&lp.buf[s..s + n]));
                        pos = next;
                    }
                    lp.buf.drain(..pos);
                } else {
                    let mut pos = lp.buf.len();
                    for _ in 0..count {
                        let (s, n, prev) = read_back(&lp.buf, pos);
                        out.push(Bytes::copy_from_slice(&lp.buf[s..s + n]));
                        pos = prev;
                    }
                    lp.buf.truncate(pos);
                }
                lp.len -= count;
            }
            ListValue::Quicklist(q) => {
                for _ in 0..count {
                    let e = if left {
                        q.items.pop_front()
                    } else {
                        q.items.pop_back()
                    };
                    let e = e.expect("count is within the length");
                    q.sub(&e);
                    out.push(match e {
                        SmallBytes::Heap(b) => Bytes::from(b),
                        inline => Bytes::copy_from_slice(&inline),
                    });
                }
            }
        }
        if count > 0 {
            self.shrunk(fill);
        }
        out
    }

    /// Replaces the element at `index`; false when out of range.
    pub fn set(&mut self, index: usize, elem: &[u8], fill: i64) -> bool {
        let len = self.len();
        if index >= len {
            return false;
        }
        if let ListValue::Listpack(lp) = self {
            let pos = lp.offset_of(index);
            let (_, n, _) = read_fwd(&lp.buf, pos);
            let add = entry_size(elem.len()).saturating_sub(entry_size(n));
            self.grow_to_fit(add, 0, fill);
        }
        match self {
            ListValue::Listpack(lp) => {
                let pos = lp.offset_of(index);
                let next = read_fwd(&lp.buf, pos).2;
                let mut e = Vec::with_capacity(entry_size(elem.len()));
                write_entry(&mut e, elem);
                lp.buf.splice(pos..next, e);
            }
            ListValue::Quicklist(q) => {
                let e = SmallBytes::new(elem);
                q.add(&e);
                let old = std::mem::replace(&mut q.items[index], e);
                q.sub(&old);
            }
        }
        self.shrunk(fill);
        true
    }

    /// Inserts `elem` before or after the first element equal to `pivot`;
    /// false when there is no such element.
    pub fn insert(&mut self, pivot: &[u8], elem: &[u8], after: bool, fill: i64) -> bool {
        let Some(at) = self.iter().position(|e| e == pivot) else {
            return false;
        };
        let at = if after { at + 1 } else { at };
        self.grow_to_fit(entry_size(elem.len()), 1, fill);
        match self {
            ListValue::Listpack(lp) => {
                let pos = lp.offset_of(at);
                let mut e = Vec::with_capacity(entry_size(elem.len()));
                write_entry(&mut e, elem);
                lp.buf.splice(pos..pos, e);
                lp.len += 1;
            }
            ListValue::Quicklist(q) => {
                let e = SmallBytes::new(elem);
                q.add(&e);
                q.items.insert(at, e);
            }
        }
        true
    }

    /// Removes elements equal to `elem`: the first `count` from the head
    /// when positive, the last `-count` from the tail when negative, all
    /// when zero. Returns how many went.
    pub fn remove(&mut self, elem: &[u8], count: i64, fill: i64) -> usize {
        let limit = if count == 0 {
            usize::MAX
        } else {
            count.unsigned_abs().min(usize::MAX as u64) as usize
        };
        let len = self.len();
        // Indices (ascending) of the elements to drop.
        let mut drop: Vec<usize> = if count >= 0 {
            self.iter()
                .enumerate()
                .filter(|(_, e)| *e == elem)
                .map(|(i, _)| i)
                .take(limit)
                .collect()
        } else {
            self.iter()
                .rev()
                .enumerate()
                .filter(|(_, e)| *e == elem)
                .map(|(i, _)| len - 1 - i)
                .take(limit)
                .collect()
        };
        if drop.is_empty() {
            return 0;
        }
        if count < 0 {
            drop.reverse();
        }
        let removed = drop.len();
        self.retain_indices(&drop);
        self.shrunk(fill);
        removed
    }

    /// Drops the elements at the ascending indices `drop`.
    fn retain_indices(&mut self, drop: &[usize]) {
        match self {
            ListValue::Listpack(lp) => {
                let mut next_drop = drop.iter().peekable();
                let kept = Listpack::from_iter(lp.iter_range(0, lp.len).enumerate().filter_map(
                    |(i, e)| {
                        if next_drop.peek() == Some(&&i) {
                            next_drop.next();
                            None
                        } else {
                            Some(e)
                        }
                    },
                ));
                *lp = kept;
            }
            ListValue::Quicklist(q) => {
                let mut next_drop = drop.iter().peekable();
                let mut i = 0;
                let (mut bytes, mut heap) = (0, 0);
                q.items.retain(|e| {
                    let gone = next_drop.peek() == Some(&&i);
                    i += 1;
                    if gone {
                        next_drop.next();
                        bytes += entry_size(e.len());
                        heap += e.heap_size();
                    }
                    !gone
                });
                q.bytes -= bytes;
                q.heap -= heap;
            }
        }
    }

    /// Gives back the flat form's spare capacity beyond `slack` bytes once
    /// it exceeds twice that; for lists held at a cap (MSTORE), which never
    /// grow by more than one element, so the usual 25% headroom is waste.
    pub fn shrink_spare(&mut self, slack: usize) {
        if let ListValue::Listpack(lp) = self
            && lp.buf.capacity() > lp.buf.len() + 2 * slack
        {
            lp.buf.shrink_to(lp.buf.len() + slack);
        }
    }

    /// Keeps only the elements `start..end` (clamped).
    pub fn trim(&mut self, start: usize, end: usize, fill: i64) {
        let len = self.len();
        let end = end.min(len);
        let start = start.min(end);
        if start == 0 && end == len {
            return;
        }
        match self {
            ListValue::Listpack(lp) => {
                let (a, b) = (lp.offset_of(start), lp.offset_of(end));
                lp.buf.truncate(b);
                lp.buf.drain(..a);
                lp.len = end - start;
            }
            ListValue::Quicklist(q) => {
                for e in q.items.drain(end..) {
                    q.bytes -= entry_size(e.len());
                    q.heap -= e.heap_size();
                }
                for e in q.items.drain(..start) {
                    q.bytes -= entry_size(e.len());
                    q.heap -= e.heap_size();
                }
            }
        }
        self.shrunk(fill);
    }

    /// Moves one element from one end to the other (LMOVE with the same
    /// source and destination); returns it. None when empty.
    pub fn rotate(&mut self, from_left: bool, to_left: bool, fill: i64) -> Option<Bytes> {
        let v = self.pop(from_left, 1, fill).pop()?;
        self.push(&[&v[..]], to_left, fill);
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(l: &ListValue) -> Vec<Vec<u8>> {
        l.iter().map(|e| e.to_vec()).collect()
    }

    #[test]
    fn flat_entries_walk_both_ways() {
        let long = vec![b'x'; 300];
        let mut l = ListValue::new();
        l.push(&[&b"a"[..], &long[..], b""], false, -2);
        l.push(&[&b"z"[..], b"y"], true, -2);
        assert_eq!(l.encoding(), "listpack");
        let want: Vec<Vec<u8>> = vec![
            b"y".to_vec(),
            b"z".to_vec(),
            b"a".to_vec(),
            long.clone(),
            b"".to_vec(),
        ];
        assert_eq!(items(&l), want);
        let rev: Vec<Vec<u8>> = l.iter().rev().map(|e| e.to_vec()).collect();
        assert_eq!(rev, want.iter().rev().cloned().collect::<Vec<_>>());
        assert_eq!(l.get(3), Some(&long[..]));
        assert_eq!(
            l.range(1, 3).map(|e| e.to_vec()).collect::<Vec<_>>(),
            want[1..3]
        );
        assert_eq!(l.pop(false, 2, -2), vec![Bytes::new(), Bytes::from(long)]);
        assert_eq!(l.pop(true, 1, -2), vec![Bytes::from_static(b"y")]);
        assert_eq!(items(&l), vec![b"z".to_vec(), b"a".to_vec()]);
    }

    #[test]
    fn converts_both_ways_with_hysteresis() {
        let mut l = ListValue::new();
        for i in 0..10 {
            l.push(&[format!("{i}")], false, 8);
        }
        assert_eq!(l.encoding(), "quicklist");
        l.pop(true, 5, 8);
        assert_eq!(l.encoding(), "quicklist");
        l.pop(true, 1, 8);
        assert_eq!(l.encoding(), "listpack");
        assert_eq!(
            items(&l),
            vec![b"6".to_vec(), b"7".to_vec(), b"8".to_vec(), b"9".to_vec()]
        );
    }

    #[test]
    fn edits_keep_both_forms_equal() {
        for fill in [-2, 1] {
            let mut l = ListValue::new();
            l.push(&["a", "b", "a", "c", "a"], false, fill);
            assert!(l.set(1, b"B", fill));
            assert!(!l.set(5, b"x", fill));
            assert!(l.insert(b"c", b"C", true, fill));
            assert!(!l.insert(b"nope", b"C", true, fill));
            assert_eq!(l.remove(b"a", -2, fill), 2);
            l.trim(1, 4, fill);
            let want: Vec<Vec<u8>> = vec![b"B".to_vec(), b"c".to_vec(), b"C".to_vec()];
            assert_eq!(items(&l), want, "fill {fill}");
            assert_eq!(l.rotate(true, false, fill), Some(Bytes::from_static(b"B")));
            assert_eq!(l.get(2), Some(&b"B"[..]));
        }
    }
}
