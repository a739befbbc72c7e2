//! Sorted-set values.
//!
//! Two encodings, reported as Redis 7.0 names them:
//!
//! - `listpack`: one vector of `(member, score)` sorted by score, then member
//!   bytes. Members up to 22 bytes live inline in the vector, so a small
//!   sorted set is a single allocation. Member lookups are linear, as in
//!   Redis's listpack; the vector never holds more than
//!   `zset-max-listpack-entries` members.
//! - `skiplist`: past the thresholds, a [`BigZSet`]: an order-statistic treap
//!   (a randomized balanced search tree whose nodes carry subtree sizes) kept
//!   in an arena of nodes addressed by `u32`, plus a member → node hash index.
//!   Insert, delete, score update, rank and select are O(log n) expected;
//!   range walks are O(log n + m). It plays the role of Redis's skiplist with
//!   spans (same complexities); the name `skiplist` is what OBJECT ENCODING
//!   reports.
//!
//! The conversion rules are Redis 7.0's: a listpack converts when an insert
//! would make it longer than `zset-max-listpack-entries` or the new member is
//! longer than `zset-max-listpack-value`; a big set never converts back,
//! except that results built by the STORE commands are created in the
//! encoding their final size calls for ([`ZSetValue::from_sorted`]).
//!
//! Geo commands and the blocking pops build on this API: [`ZSetValue::add`],
//! [`ZSetValue::score`], [`ZSetValue::rank`], the rank bounds of score and
//! lex ranges ([`ZSetValue::score_bounds`], [`ZSetValue::lex_bounds`]),
//! [`ZSetValue::range`] for ordered walks, [`ZSetValue::remove`] and
//! [`ZSetValue::pop`].

use crate::shard::value::SmallBytes;
use hashbrown::HashTable;
use std::cmp::Ordering;

/// The encoding thresholds (`zset-max-listpack-entries`/`-value`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most members a listpack holds.
    pub max_entries: usize,
    /// Longest member a listpack holds, in bytes.
    pub max_value: usize,
}

impl Default for Limits {
    /// Redis's defaults: 128 entries of up to 64 bytes.
    fn default() -> Limits {
        Limits {
            max_entries: 128,
            max_value: 64,
        }
    }
}

/// ZADD's option flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddFlags {
    /// Only add new members.
    pub nx: bool,
    /// Only update existing members.
    pub xx: bool,
    /// Only update when the new score is greater.
    pub gt: bool,
    /// Only update when the new score is less.
    pub lt: bool,
    /// The score is an increment.
    pub incr: bool,
}

/// What [`ZSetValue::add`] did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AddOutcome {
    /// A new member with this score.
    Added(f64),
    /// An existing member got this new score.
    Updated(f64),
    /// The member exists and already had this score.
    Unchanged(f64),
    /// Nothing was done (NX, XX, GT or LT said no).
    Nop,
}

impl AddOutcome {
    /// The member's score after the operation, unless it was a no-op.
    pub fn score(&self) -> Option<f64> {
        match *self {
            AddOutcome::Added(s) | AddOutcome::Updated(s) | AddOutcome::Unchanged(s) => Some(s),
            AddOutcome::Nop => None,
        }
    }
}

/// The resulting score would be NaN (e.g. `+inf` incremented by `-inf`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NanScore;

/// A score interval with optionally exclusive ends (`(1.5`), as parsed by
/// Redis's `zslParseRange`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoreRange {
    /// Lower end.
    pub min: f64,
    /// Lower end excluded.
    pub minex: bool,
    /// Upper end.
    pub max: f64,
    /// Upper end excluded.
    pub maxex: bool,
}

impl ScoreRange {
    /// True if `s` is at or above the lower end.
    #[inline]
    pub fn gte_min(&self, s: f64) -> bool {
        if self.minex {
            s > self.min
        } else {
            s >= self.min
        }
    }

    /// True if `s` is at or below the upper end.
    #[inline]
    pub fn lte_max(&self, s: f64) -> bool {
        if self.maxex {
            s < self.max
        } else {
            s <= self.max
        }
    }

    /// True when no score can be in the range.
    pub fn is_empty(&self) -> bool {
        self.min > self.max || (self.min == self.max && (self.minex || self.maxex))
    }
}

/// One end of a lexicographic range (`-`, `+`, `[x`, `(x`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LexBound {
    /// `-`: below every string.
    Min,
    /// `+`: above every string.
    Max,
    /// `[x` (`excl == false`) or `(x` (`excl == true`).
    Val {
        /// The string.
        s: Vec<u8>,
        /// Exclusive.
        excl: bool,
    },
}

impl LexBound {
    /// Compares a member with the bound's string, `-` and `+` being below
    /// and above everything (Redis's `sdscmplex`).
    fn cmp_member(&self, m: &[u8]) -> Ordering {
        match self {
            LexBound::Min => Ordering::Greater,
            LexBound::Max => Ordering::Less,
            LexBound::Val { s, .. } => m.cmp(s),
        }
    }

    fn excl(&self) -> bool {
        match self {
            LexBound::Min | LexBound::Max => true,
            LexBound::Val { excl, .. } => *excl,
        }
    }
}

/// A lexicographic range, as parsed by Redis's `zslParseLexRange`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LexRange {
    /// Lower end.
    pub min: LexBound,
    /// Upper end.
    pub max: LexBound,
}

impl LexRange {
    /// True if `m` is at or above the lower end.
    pub fn gte_min(&self, m: &[u8]) -> bool {
        let c = self.min.cmp_member(m);
        if self.min.excl() {
            c == Ordering::Greater
        } else {
            c != Ordering::Less
        }
    }

    /// True if `m` is at or below the upper end.
    pub fn lte_max(&self, m: &[u8]) -> bool {
        let c = self.max.cmp_member(m);
        if self.max.excl() {
            c == Ordering::Less
        } else {
            c != Ordering::Greater
        }
    }

    /// True when no string can be in the range.
    pub fn is_empty(&self) -> bool {
        use LexBound::*;
        let cmp = match (&self.min, &self.max) {
            (Min, Min) | (Max, Max) => Ordering::Equal,
            (Min, _) | (_, Max) => Ordering::Less,
            (Max, _) | (_, Min) => Ordering::Greater,
            (Val { s: a, .. }, Val { s: b, .. }) => a.cmp(b),
        };
        cmp == Ordering::Greater || (cmp == Ordering::Equal && (self.min.excl() || self.max.excl()))
    }
}

/// The order of a sorted set: by score, then by member bytes.
#[inline]
fn cmp_entry(s1: f64, m1: &[u8], s2: f64, m2: &[u8]) -> Ordering {
    match s1.partial_cmp(&s2) {
        Some(Ordering::Equal) | None => m1.cmp(m2),
        Some(o) => o,
    }
}

/// A score as a listpack stores it: the listpack keeps scores as strings
/// and reads `-0` back as the integer 0, so the sign of zero is lost there
/// (and only there) in Redis.
#[inline]
fn lp_score(s: f64) -> f64 {
    if s == 0.0 { 0.0 } else { s }
}

/// A key for scores that orders like the scores themselves (used by ZSCAN
/// cursors): the IEEE bits with the sign handled.
pub fn score_key(s: f64) -> u64 {
    let b = s.to_bits();
    if b >> 63 == 1 { !b } else { b | (1 << 63) }
}

/// A sorted set; see the module documentation.
#[derive(Clone, Debug, PartialEq)]
pub enum ZSetValue {
    /// Small: (member, score) sorted by score, then member.
    Listpack(Vec<(SmallBytes, f64)>),
    /// Big: an order-statistic tree plus a member index.
    Skiplist(Box<BigZSet>),
}

impl Default for ZSetValue {
    fn default() -> Self {
        ZSetValue::Listpack(Vec::new())
    }
}

impl ZSetValue {
    /// An empty listpack-encoded set.
    pub fn new() -> ZSetValue {
        ZSetValue::default()
    }

    /// Builds a set from entries sorted by (score, member) with distinct
    /// members, in the encoding Redis picks for a STORE result: listpack
    /// when it has at most `max_entries` members of at most `max_value`
    /// bytes, skiplist otherwise.
    pub fn from_sorted(entries: Vec<(SmallBytes, f64)>, lim: Limits) -> ZSetValue {
        let small = entries.len() <= lim.max_entries
            && entries.iter().all(|(m, _)| m.len() <= lim.max_value);
        if small {
            let mut entries = entries;
            for e in &mut entries {
                e.1 = lp_score(e.1);
            }
            ZSetValue::Listpack(entries)
        } else {
            let mut big = BigZSet::with_capacity(entries.len());
            for (m, s) in entries {
                big.insert(m, s);
            }
            ZSetValue::Skiplist(Box::new(big))
        }
    }

    /// OBJECT ENCODING name.
    pub fn encoding(&self) -> &'static str {
        match self {
            ZSetValue::Listpack(_) => "listpack",
            ZSetValue::Skiplist(_) => "skiplist",
        }
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        match self {
            ZSetValue::Listpack(v) => v.len(),
            ZSetValue::Skiplist(b) => b.len(),
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
            ZSetValue::Skiplist(b) => std::mem::size_of::<BigZSet>() + b.heap_size(),
        }
    }

    /// The score of `member`.
    pub fn score(&self, member: &[u8]) -> Option<f64> {
        match self {
            ZSetValue::Listpack(v) => v.iter().find(|(m, _)| &m[..] == member).map(|e| e.1),
            ZSetValue::Skiplist(b) => b.find(member).map(|i| b.node(i).score),
        }
    }

    /// The member and score at rank `i` (0-based, ascending).
    pub fn get(&self, i: usize) -> Option<(&[u8], f64)> {
        match self {
            ZSetValue::Listpack(v) => v.get(i).map(|(m, s)| (&m[..], *s)),
            ZSetValue::Skiplist(b) => (i < b.len()).then(|| {
                let n = b.node(b.select(i));
                (&n.member[..], n.score)
            }),
        }
    }

    /// The 0-based rank of `member` (from the highest score when `rev`) and
    /// its score.
    pub fn rank(&self, member: &[u8], rev: bool) -> Option<(usize, f64)> {
        let (r, s) = match self {
            ZSetValue::Listpack(v) => {
                let i = v.iter().position(|(m, _)| &m[..] == member)?;
                (i, v[i].1)
            }
            ZSetValue::Skiplist(b) => {
                let n = b.find(member)?;
                (b.rank_of(n), b.node(n).score)
            }
        };
        Some((if rev { self.len() - 1 - r } else { r }, s))
    }

    /// Number of members (a prefix of the order) for which `pred` holds;
    /// `pred` must be true on a prefix.
    fn count_prefix(&self, pred: impl Fn(&[u8], f64) -> bool) -> usize {
        match self {
            ZSetValue::Listpack(v) => v.partition_point(|(m, s)| pred(m, *s)),
            ZSetValue::Skiplist(b) => b.count_prefix(|n| pred(&n.member, n.score)),
        }
    }

    /// The ranks `[lo, hi)` of the members whose score is in `r`.
    pub fn score_bounds(&self, r: &ScoreRange) -> (usize, usize) {
        if r.is_empty() {
            return (0, 0);
        }
        let lo = self.count_prefix(|_, s| !r.gte_min(s));
        let hi = self.count_prefix(|_, s| r.lte_max(s));
        (lo, hi.max(lo))
    }

    /// The ranks `[lo, hi)` of the members in the lex range `r`. Meaningful
    /// when all scores are equal, as in Redis; otherwise, like Redis, the
    /// result is the run that starts at the first member at or above the
    /// lower end.
    pub fn lex_bounds(&self, r: &LexRange) -> (usize, usize) {
        let n = self.len();
        if r.is_empty() || n == 0 {
            return (0, 0);
        }
        match self {
            ZSetValue::Listpack(v) => {
                // Redis's zzlFirstInLexRange: a linear walk from the head.
                if !r.gte_min(&v[n - 1].0) || !r.lte_max(&v[0].0) {
                    return (0, 0);
                }
                let Some(lo) = v.iter().position(|(m, _)| r.gte_min(m)) else {
                    return (0, 0);
                };
                let hi = lo + v[lo..].iter().take_while(|(m, _)| r.lte_max(m)).count();
                (lo, hi)
            }
            ZSetValue::Skiplist(_) => {
                let lo = self.count_prefix(|m, _| !r.gte_min(m));
                let hi = self.count_prefix(|m, _| r.lte_max(m));
                (lo, hi.max(lo))
            }
        }
    }

    /// The ranks `[lo, hi)` of a reverse lex walk (Redis's
    /// `zzlLastInLexRange`): the run that ends at the last member at or below
    /// the upper end. Same as [`ZSetValue::lex_bounds`] when all scores are
    /// equal.
    pub fn lex_bounds_rev(&self, r: &LexRange) -> (usize, usize) {
        let n = self.len();
        if r.is_empty() || n == 0 {
            return (0, 0);
        }
        match self {
            ZSetValue::Listpack(v) => {
                if !r.gte_min(&v[n - 1].0) || !r.lte_max(&v[0].0) {
                    return (0, 0);
                }
                let Some(last) = v.iter().rposition(|(m, _)| r.lte_max(m)) else {
                    return (0, 0);
                };
                let len = v[..=last]
                    .iter()
                    .rev()
                    .take_while(|(m, _)| r.gte_min(m))
                    .count();
                (last + 1 - len, last + 1)
            }
            ZSetValue::Skiplist(_) => self.lex_bounds(r),
        }
    }

    /// Walks ranks `[lo, hi)` in order, or from `hi - 1` down to `lo` when
    /// `rev`.
    pub fn range(
        &self,
        lo: usize,
        hi: usize,
        rev: bool,
    ) -> Box<dyn Iterator<Item = (&[u8], f64)> + '_> {
        let hi = hi.min(self.len());
        if lo >= hi {
            return Box::new(std::iter::empty());
        }
        match self {
            ZSetValue::Listpack(v) => {
                let it = v[lo..hi].iter().map(|(m, s)| (&m[..], *s));
                if rev {
                    Box::new(it.rev())
                } else {
                    Box::new(it)
                }
            }
            ZSetValue::Skiplist(b) => {
                Box::new(b.iter_at(if rev { hi - 1 } else { lo }, hi - lo, rev))
            }
        }
    }

    /// Every member and score in order.
    pub fn iter(&self) -> Box<dyn Iterator<Item = (&[u8], f64)> + '_> {
        self.range(0, self.len(), false)
    }

    /// ZADD's core (Redis's `zsetAdd`): adds or updates `member` under the
    /// flags, converting to the big encoding when the thresholds say so.
    pub fn add(
        &mut self,
        member: &[u8],
        score: f64,
        f: AddFlags,
        lim: Limits,
    ) -> Result<AddOutcome, NanScore> {
        if score.is_nan() {
            return Err(NanScore);
        }
        let cur = self.score(member);
        let Some(cur) = cur else {
            if f.xx {
                return Ok(AddOutcome::Nop);
            }
            if let ZSetValue::Listpack(v) = self
                && (v.len() + 1 > lim.max_entries || member.len() > lim.max_value)
            {
                self.convert_to_big();
            }
            self.insert_new(member, score);
            return Ok(AddOutcome::Added(score));
        };
        if f.nx {
            return Ok(AddOutcome::Nop);
        }
        let mut score = score;
        if f.incr {
            score += cur;
            if score.is_nan() {
                return Err(NanScore);
            }
        }
        if (f.lt && score >= cur) || (f.gt && score <= cur) {
            return Ok(AddOutcome::Nop);
        }
        if score == cur {
            return Ok(AddOutcome::Unchanged(score));
        }
        self.update_score(member, score);
        Ok(AddOutcome::Updated(score))
    }

    /// Inserts a member known to be absent, in the current encoding.
    fn insert_new(&mut self, member: &[u8], score: f64) {
        match self {
            ZSetValue::Listpack(v) => {
                let score = lp_score(score);
                let i = v.partition_point(|(m, s)| cmp_entry(*s, m, score, member).is_lt());
                v.insert(i, (SmallBytes::new(member), score));
            }
            ZSetValue::Skiplist(b) => b.insert(SmallBytes::new(member), score),
        }
    }

    /// Moves an existing member to a new score.
    fn update_score(&mut self, member: &[u8], score: f64) {
        match self {
            ZSetValue::Listpack(v) => {
                let Some(i) = v.iter().position(|(m, _)| &m[..] == member) else {
                    return;
                };
                let (m, _) = v.remove(i);
                let score = lp_score(score);
                let j = v.partition_point(|(x, s)| cmp_entry(*s, x, score, &m).is_lt());
                v.insert(j, (m, score));
            }
            ZSetValue::Skiplist(b) => {
                if let Some(n) = b.find(member) {
                    b.set_score(n, score);
                }
            }
        }
    }

    /// Switches a listpack to the big encoding.
    pub fn convert_to_big(&mut self) {
        if let ZSetValue::Listpack(v) = self {
            let mut big = BigZSet::with_capacity(v.len() + 1);
            for (m, s) in std::mem::take(v) {
                big.insert(m, s);
            }
            *self = ZSetValue::Skiplist(Box::new(big));
        }
    }

    /// Removes `member`; true if it was there.
    pub fn remove(&mut self, member: &[u8]) -> bool {
        match self {
            ZSetValue::Listpack(v) => match v.iter().position(|(m, _)| &m[..] == member) {
                Some(i) => {
                    v.remove(i);
                    true
                }
                None => false,
            },
            ZSetValue::Skiplist(b) => match b.find(member) {
                Some(n) => {
                    b.delete(n);
                    true
                }
                None => false,
            },
        }
    }

    /// Removes the members at ranks `[lo, hi)`; returns how many.
    pub fn remove_range(&mut self, lo: usize, hi: usize) -> usize {
        let hi = hi.min(self.len());
        if lo >= hi {
            return 0;
        }
        match self {
            ZSetValue::Listpack(v) => {
                v.drain(lo..hi);
            }
            ZSetValue::Skiplist(b) => b.delete_ranks(lo, hi),
        }
        hi - lo
    }

    /// Removes and returns the member with the lowest score (`max == false`)
    /// or the highest (`max == true`).
    pub fn pop(&mut self, max: bool) -> Option<(SmallBytes, f64)> {
        let n = self.len();
        if n == 0 {
            return None;
        }
        match self {
            ZSetValue::Listpack(v) => Some(if max { v.pop()? } else { v.remove(0) }),
            ZSetValue::Skiplist(b) => {
                let i = b.select(if max { n - 1 } else { 0 });
                let (m, s) = (b.node(i).member.clone(), b.node(i).score);
                b.delete(i);
                Some((m, s))
            }
        }
    }

    /// Pops up to `count` members from one end, in pop order.
    pub fn pop_n(&mut self, max: bool, count: usize) -> Vec<(SmallBytes, f64)> {
        let k = count.min(self.len());
        let mut out = Vec::with_capacity(k);
        for _ in 0..k {
            match self.pop(max) {
                Some(e) => out.push(e),
                None => break,
            }
        }
        out
    }

    /// One ZSCAN step. A listpack returns everything and cursor 0, as in
    /// Redis. The big encoding's cursor is the [`score_key`] of the next
    /// score to visit (plus one, so 0 stays "start/done"): a step returns at
    /// least `count` members and always finishes the run of equal scores it
    /// is in, so members present for the whole scan with an unchanged score
    /// are returned exactly once, however the set grows or shrinks.
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&[u8], f64)) -> u64 {
        match self {
            ZSetValue::Listpack(v) => {
                for (m, s) in v {
                    f(m, *s);
                }
                0
            }
            ZSetValue::Skiplist(b) => {
                let from = cursor.saturating_sub(1);
                let lo = if cursor == 0 {
                    0
                } else {
                    b.count_prefix(|n| score_key(n.score) < from)
                };
                let mut last: Option<f64> = None;
                for (seen, (m, s)) in self.range(lo, self.len(), false).enumerate() {
                    if seen >= count && last.is_some_and(|l| l != s) {
                        return score_key(s) + 1;
                    }
                    f(m, s);
                    last = Some(s);
                }
                0
            }
        }
    }
}

/// No node.
const NIL: u32 = u32::MAX;

/// A node of the treap.
#[derive(Clone, Debug)]
struct Node {
    member: SmallBytes,
    score: f64,
    left: u32,
    right: u32,
    /// Nodes in this subtree, itself included.
    size: u32,
    /// Heap priority (random).
    prio: u32,
}

/// The big encoding: an order-statistic treap over (score, member) in a node
/// arena, and a hash index from member to node.
#[derive(Clone)]
pub struct BigZSet {
    nodes: Vec<Node>,
    free: Vec<u32>,
    root: u32,
    index: HashTable<u32>,
    hasher: ahash::RandomState,
    rng: u64,
}

impl Drop for BigZSet {
    /// A big sorted set's nodes are freed in chunks in the background.
    fn drop(&mut self) {
        if self.nodes.len() > crate::shard::lazyfree::LAZYFREE_THRESHOLD {
            crate::shard::lazyfree::defer(std::mem::take(&mut self.nodes), 4096, 1);
        }
    }
}

impl std::fmt::Debug for BigZSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter_at(0, self.len(), false))
            .finish()
    }
}

impl PartialEq for BigZSet {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self
                .iter_at(0, self.len(), false)
                .eq(other.iter_at(0, other.len(), false))
    }
}

impl BigZSet {
    fn with_capacity(n: usize) -> BigZSet {
        BigZSet {
            nodes: Vec::with_capacity(n),
            free: Vec::new(),
            root: NIL,
            index: HashTable::with_capacity(n),
            hasher: ahash::RandomState::with_seeds(
                0x9e37_79b9_7f4a_7c15,
                0xbf58_476d_1ce4_e5b9,
                0x94d0_49bb_1331_11eb,
                0x2545_f491_4f6c_dd1d,
            ),
            rng: 0x853c_49e6_748f_ea9b,
        }
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.sz(self.root)
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.root == NIL
    }

    fn heap_size(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node>()
            + self.free.capacity() * 4
            + self.index.capacity() * 5
            + self
                .nodes
                .iter()
                .map(|n| n.member.heap_size())
                .sum::<usize>()
    }

    #[inline]
    fn node(&self, i: u32) -> &Node {
        &self.nodes[i as usize]
    }

    #[inline]
    fn sz(&self, t: u32) -> usize {
        if t == NIL {
            0
        } else {
            self.nodes[t as usize].size as usize
        }
    }

    #[inline]
    fn pull(&mut self, t: u32) {
        let (l, r) = (self.node(t).left, self.node(t).right);
        let s = 1 + self.sz(l) + self.sz(r);
        self.nodes[t as usize].size = s as u32;
    }

    fn next_prio(&mut self) -> u32 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }

    fn hash(&self, m: &[u8]) -> u64 {
        self.hasher.hash_one(m)
    }

    /// The node holding `member`.
    fn find(&self, member: &[u8]) -> Option<u32> {
        let h = self.hash(member);
        self.index
            .find(h, |&i| &self.nodes[i as usize].member[..] == member)
            .copied()
    }

    /// True if node `a` sorts before node `b`.
    #[inline]
    fn before(&self, a: u32, b: u32) -> bool {
        let (x, y) = (self.node(a), self.node(b));
        cmp_entry(x.score, &x.member, y.score, &y.member).is_lt()
    }

    /// Splits `t` into the nodes before `k` and the rest.
    fn split(&mut self, t: u32, k: u32) -> (u32, u32) {
        if t == NIL {
            return (NIL, NIL);
        }
        if self.before(t, k) {
            let (l, r) = self.split(self.node(t).right, k);
            self.nodes[t as usize].right = l;
            self.pull(t);
            (t, r)
        } else {
            let (l, r) = self.split(self.node(t).left, k);
            self.nodes[t as usize].left = r;
            self.pull(t);
            (l, t)
        }
    }

    /// Splits `t` into its first `k` nodes and the rest.
    fn split_rank(&mut self, t: u32, k: usize) -> (u32, u32) {
        if t == NIL {
            return (NIL, NIL);
        }
        let ls = self.sz(self.node(t).left);
        if k <= ls {
            let (l, r) = self.split_rank(self.node(t).left, k);
            self.nodes[t as usize].left = r;
            self.pull(t);
            (l, t)
        } else {
            let (l, r) = self.split_rank(self.node(t).right, k - ls - 1);
            self.nodes[t as usize].right = l;
            self.pull(t);
            (t, r)
        }
    }

    /// Joins two treaps whose nodes are all ordered `a` before `b`.
    fn merge(&mut self, a: u32, b: u32) -> u32 {
        if a == NIL {
            return b;
        }
        if b == NIL {
            return a;
        }
        if self.node(a).prio > self.node(b).prio {
            let r = self.merge(self.node(a).right, b);
            self.nodes[a as usize].right = r;
            self.pull(a);
            a
        } else {
            let l = self.merge(a, self.node(b).left);
            self.nodes[b as usize].left = l;
            self.pull(b);
            b
        }
    }

    fn insert_at(&mut self, t: u32, k: u32) -> u32 {
        if t == NIL {
            return k;
        }
        if self.node(k).prio > self.node(t).prio {
            let (l, r) = self.split(t, k);
            let n = &mut self.nodes[k as usize];
            n.left = l;
            n.right = r;
            self.pull(k);
            return k;
        }
        if self.before(k, t) {
            let l = self.insert_at(self.node(t).left, k);
            self.nodes[t as usize].left = l;
        } else {
            let r = self.insert_at(self.node(t).right, k);
            self.nodes[t as usize].right = r;
        }
        self.pull(t);
        t
    }

    fn erase_at(&mut self, t: u32, k: u32) -> u32 {
        if t == NIL {
            return NIL;
        }
        if t == k {
            let (l, r) = (self.node(t).left, self.node(t).right);
            return self.merge(l, r);
        }
        if self.before(k, t) {
            let l = self.erase_at(self.node(t).left, k);
            self.nodes[t as usize].left = l;
        } else {
            let r = self.erase_at(self.node(t).right, k);
            self.nodes[t as usize].right = r;
        }
        self.pull(t);
        t
    }

    /// Adds a member known to be absent.
    fn insert(&mut self, member: SmallBytes, score: f64) {
        let prio = self.next_prio();
        let h = self.hash(&member);
        let node = Node {
            member,
            score,
            left: NIL,
            right: NIL,
            size: 1,
            prio,
        };
        let k = match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        let nodes = &self.nodes;
        let hasher = &self.hasher;
        self.index
            .insert_unique(h, k, |&i| hasher.hash_one(&nodes[i as usize].member[..]));
        self.root = self.insert_at(self.root, k);
    }

    /// Gives node `k` a new score, keeping its place in the index.
    fn set_score(&mut self, k: u32, score: f64) {
        self.root = self.erase_at(self.root, k);
        let n = &mut self.nodes[k as usize];
        n.score = score;
        n.left = NIL;
        n.right = NIL;
        n.size = 1;
        self.root = self.insert_at(self.root, k);
    }

    /// Drops node `k` from the index and frees its slot.
    fn forget(&mut self, k: u32) {
        let h = self.hash(&self.nodes[k as usize].member);
        if let Ok(e) = self.index.find_entry(h, |&i| i == k) {
            e.remove();
        }
        self.nodes[k as usize].member = SmallBytes::new(b"");
        self.free.push(k);
    }

    /// Removes node `k`.
    fn delete(&mut self, k: u32) {
        self.root = self.erase_at(self.root, k);
        self.forget(k);
        self.shrink_if_empty();
    }

    /// Removes the nodes at ranks `[lo, hi)`.
    fn delete_ranks(&mut self, lo: usize, hi: usize) {
        let (a, rest) = self.split_rank(self.root, lo);
        let (mid, c) = self.split_rank(rest, hi - lo);
        self.root = self.merge(a, c);
        let mut stack = vec![mid];
        while let Some(t) = stack.pop() {
            if t == NIL {
                continue;
            }
            stack.push(self.node(t).left);
            stack.push(self.node(t).right);
            self.forget(t);
        }
        self.shrink_if_empty();
    }

    fn shrink_if_empty(&mut self) {
        if self.root == NIL {
            self.nodes.clear();
            self.free.clear();
        }
    }

    /// The 0-based rank of node `k`.
    fn rank_of(&self, k: u32) -> usize {
        let mut r = 0;
        let mut t = self.root;
        while t != NIL && t != k {
            if self.before(k, t) {
                t = self.node(t).left;
            } else {
                r += self.sz(self.node(t).left) + 1;
                t = self.node(t).right;
            }
        }
        r + self.sz(self.node(k).left)
    }

    /// The node at rank `i`, which must be below `len()`.
    fn select(&self, mut i: usize) -> u32 {
        let mut t = self.root;
        loop {
            let ls = self.sz(self.node(t).left);
            match i.cmp(&ls) {
                Ordering::Less => t = self.node(t).left,
                Ordering::Equal => return t,
                Ordering::Greater => {
                    i -= ls + 1;
                    t = self.node(t).right;
                }
            }
        }
    }

    /// Number of nodes, a prefix of the order, for which `pred` holds.
    fn count_prefix(&self, pred: impl Fn(&Node) -> bool) -> usize {
        let mut c = 0;
        let mut t = self.root;
        while t != NIL {
            if pred(self.node(t)) {
                c += self.sz(self.node(t).left) + 1;
                t = self.node(t).right;
            } else {
                t = self.node(t).left;
            }
        }
        c
    }

    /// An in-order walk of `n` nodes from rank `start`, backwards if `rev`.
    fn iter_at(&self, start: usize, n: usize, rev: bool) -> TreeIter<'_> {
        let mut stack = Vec::with_capacity(64);
        if start < self.len() {
            let mut t = self.root;
            let mut k = start;
            while t != NIL {
                let ls = self.sz(self.node(t).left);
                match k.cmp(&ls) {
                    Ordering::Less => {
                        if !rev {
                            stack.push(t);
                        }
                        t = self.node(t).left;
                    }
                    Ordering::Equal => {
                        stack.push(t);
                        break;
                    }
                    Ordering::Greater => {
                        if rev {
                            stack.push(t);
                        }
                        k -= ls + 1;
                        t = self.node(t).right;
                    }
                }
            }
        }
        TreeIter {
            z: self,
            stack,
            left: n,
            rev,
        }
    }
}

/// In-order iterator over a [`BigZSet`].
struct TreeIter<'a> {
    z: &'a BigZSet,
    stack: Vec<u32>,
    left: usize,
    rev: bool,
}

impl<'a> Iterator for TreeIter<'a> {
    type Item = (&'a [u8], f64);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let n = self.stack.pop()?;
        self.left -= 1;
        let z = self.z;
        // The in-order neighbour is the near end of the other subtree.
        let mut t = if self.rev {
            z.node(n).left
        } else {
            z.node(n).right
        };
        while t != NIL {
            self.stack.push(t);
            t = if self.rev {
                z.node(t).right
            } else {
                z.node(t).left
            };
        }
        let node = z.node(n);
        Some((&node.member[..], node.score))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim(e: usize) -> Limits {
        Limits {
            max_entries: e,
            max_value: 64,
        }
    }

    #[test]
    fn big_matches_small() {
        let mut rng = 12345u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut small = ZSetValue::new();
        let mut big = ZSetValue::new();
        for _ in 0..4000 {
            let m = format!("m{}", next() % 300);
            let s = (next() % 50) as f64;
            match next() % 4 {
                0 => {
                    small.remove(m.as_bytes());
                    big.remove(m.as_bytes());
                }
                _ => {
                    let f = AddFlags {
                        incr: next() % 2 == 0,
                        ..Default::default()
                    };
                    let a = small.add(m.as_bytes(), s, f, lim(100000));
                    let b = big.add(m.as_bytes(), s, f, lim(0));
                    assert_eq!(a, b);
                }
            }
            assert_eq!(small.len(), big.len());
        }
        assert_eq!(big.encoding(), "skiplist");
        let a: Vec<_> = small.iter().map(|(m, s)| (m.to_vec(), s)).collect();
        let b: Vec<_> = big.iter().map(|(m, s)| (m.to_vec(), s)).collect();
        assert_eq!(a, b);
        let ra: Vec<_> = small.range(3, 40, true).map(|(m, _)| m.to_vec()).collect();
        let rb: Vec<_> = big.range(3, 40, true).map(|(m, _)| m.to_vec()).collect();
        assert_eq!(ra, rb);
        for (i, (m, _)) in a.iter().enumerate() {
            assert_eq!(big.rank(m, false).unwrap().0, i);
            assert_eq!(big.get(i).unwrap().0, &m[..]);
        }
        let r = ScoreRange {
            min: 10.0,
            minex: true,
            max: 20.0,
            maxex: false,
        };
        assert_eq!(small.score_bounds(&r), big.score_bounds(&r));
        assert_eq!(small.remove_range(5, 20), big.remove_range(5, 20));
        let a: Vec<_> = small.iter().map(|(m, s)| (m.to_vec(), s)).collect();
        let b: Vec<_> = big.iter().map(|(m, s)| (m.to_vec(), s)).collect();
        assert_eq!(a, b);
        let mut seen = Vec::new();
        let mut cur = 0;
        loop {
            cur = big.scan(cur, 7, |m, _| seen.push(m.to_vec()));
            if cur == 0 {
                break;
            }
        }
        assert_eq!(seen.len(), big.len());
    }
}
