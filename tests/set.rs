//! Set family behaviour that a differential script cannot show, on a 4-shard
//! ringkv through the `redis` crate: SMOVE atomicity across shards under
//! concurrency, a property test of set algebra against redis-server, the
//! encodings ringkv reports where it follows Redis 7.2 (listpack), random
//! commands checked structurally, and SSCAN completeness while a big set
//! grows. Every test is bounded in time and stops only the servers it started.

mod common;

use common::Proc;
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestRunner};
use ringkv::shard::routing::SlotTable;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SHARDS: usize = 4;

/// `n` keys starting with `prefix`, each on a different shard.
fn keys_on_distinct_shards(prefix: &str, n: usize) -> Vec<String> {
    let table = SlotTable::contiguous(SHARDS);
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for i in 0.. {
        let k = format!("{prefix}{i}");
        let s = table.shard_of(k.as_bytes());
        if !seen.contains(&s) {
            seen.push(s);
            out.push(k);
            if out.len() == n {
                break;
            }
        }
    }
    out
}

fn members(c: &mut redis::Connection, key: &str) -> BTreeSet<String> {
    redis::cmd("SMEMBERS").arg(key).query(c).unwrap()
}

fn encoding(c: &mut redis::Connection, key: &str) -> String {
    redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg(key)
        .query(c)
        .unwrap()
}

fn sadd(c: &mut redis::Connection, key: &str, ms: &[String]) -> i64 {
    redis::cmd("SADD").arg(key).arg(ms).query(c).unwrap()
}

fn strs(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

#[test]
fn smove_across_shards_never_loses_or_duplicates_members() {
    let server = Proc::ringkv(SHARDS, &[]);
    let ks = keys_on_distinct_shards("mv", 2);
    let (a, b) = (&ks[0], &ks[1]);
    const N: usize = 60;
    let all = strs("m", 0..N);
    {
        let mut c = server.client();
        sadd(&mut c, a, &all);
    }
    let stop = AtomicBool::new(false);
    let moves = AtomicU64::new(0);
    let reads = AtomicU64::new(0);
    let deadline = Instant::now() + Duration::from_secs(2);
    std::thread::scope(|s| {
        for w in 0..4u64 {
            let (server, stop, moves, all) = (&server, &stop, &moves, &all);
            s.spawn(move || {
                let mut c = server.client();
                let mut x = w.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) && i < 20_000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let m = &all[(x % N as u64) as usize];
                    let (from, to) = if x & (1 << 40) == 0 { (a, b) } else { (b, a) };
                    let r: i64 = redis::cmd("SMOVE")
                        .arg(from)
                        .arg(to)
                        .arg(m)
                        .query(&mut c)
                        .unwrap();
                    moves.fetch_add(r as u64, Ordering::Relaxed);
                    i += 1;
                }
            });
        }
        // Atomic views of both sets: a member is always in exactly one, so
        // |A| + |B| = |A ∪ B| + |A ∩ B| stays N.
        for _ in 0..2 {
            let (server, stop, reads) = (&server, &stop, &reads);
            s.spawn(move || {
                let mut c = server.client();
                while !stop.load(Ordering::Relaxed) {
                    let u: Vec<String> = redis::cmd("SUNION").arg(a).arg(b).query(&mut c).unwrap();
                    assert_eq!(u.len(), N, "SUNION saw a half-done SMOVE");
                    let i: i64 = redis::cmd("SINTERCARD")
                        .arg(2)
                        .arg(a)
                        .arg(b)
                        .query(&mut c)
                        .unwrap();
                    assert_eq!(i, 0, "a member was in both sets at once");
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // SCARD readers. Two SCARD commands are two atomic reads (in Redis
        // too, outside MULTI), so moves may land between them: each count
        // must stay within bounds, and the atomic checks above cover the
        // total.
        for _ in 0..2 {
            let (server, stop, reads) = (&server, &stop, &reads);
            s.spawn(move || {
                let mut c = server.client();
                while !stop.load(Ordering::Relaxed) {
                    let (x, y): (usize, usize) = redis::pipe()
                        .cmd("SCARD")
                        .arg(a)
                        .cmd("SCARD")
                        .arg(b)
                        .query(&mut c)
                        .unwrap();
                    assert!(x <= N && y <= N, "SCARD out of range: {x} {y}");
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(moves.load(Ordering::Relaxed) > 0);
    assert!(reads.load(Ordering::Relaxed) > 0);
    let mut c = server.client();
    let (ma, mb) = (members(&mut c, a), members(&mut c, b));
    let scard = |c: &mut redis::Connection, k: &str| -> usize {
        redis::cmd("SCARD").arg(k).query(c).unwrap()
    };
    assert_eq!(scard(&mut c, a) + scard(&mut c, b), N);
    assert!(ma.is_disjoint(&mb));
    let union: BTreeSet<String> = ma.union(&mb).cloned().collect();
    assert_eq!(union, all.iter().cloned().collect());
}

#[test]
fn store_into_a_source_across_shards_under_concurrency() {
    // SUNIONSTORE dst=a from a and b on another shard, while SMOVE shuffles
    // members between b and c: a only ever gains whole members of b.
    let server = Proc::ringkv(SHARDS, &[]);
    let ks = keys_on_distinct_shards("st", 3);
    let mut c = server.client();
    sadd(&mut c, &ks[1], &strs("x", 0..20));
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let (server, stop, ks) = (&server, &stop, &ks);
        s.spawn(move || {
            let mut c = server.client();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && i < 5000 {
                let m = format!("x{}", i % 20);
                let (f, t) = if i % 40 < 20 { (1, 2) } else { (2, 1) };
                let _: i64 = redis::cmd("SMOVE")
                    .arg(&ks[f])
                    .arg(&ks[t])
                    .arg(&m)
                    .query(&mut c)
                    .unwrap();
                i += 1;
            }
        });
        let mut c = server.client();
        for _ in 0..300 {
            let n: usize = redis::cmd("SINTERSTORE")
                .arg("tmp{st}")
                .arg(&ks[1])
                .arg(&ks[2])
                .query(&mut c)
                .unwrap();
            assert_eq!(n, 0);
            let n: usize = redis::cmd("SUNIONSTORE")
                .arg(&ks[0])
                .arg(&ks[1])
                .arg(&ks[2])
                .query(&mut c)
                .unwrap();
            assert_eq!(n, 20, "SUNIONSTORE read a half-done SMOVE");
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(members(&mut c, &ks[0]).len(), 20);
}

/// One generated write.
#[derive(Clone, Debug)]
enum Write {
    Add(usize, Vec<String>),
    Rem(usize, Vec<String>),
}

/// One generated algebra command over key positions.
#[derive(Clone, Debug)]
enum Query {
    Union(Vec<usize>),
    Inter(Vec<usize>),
    Diff(Vec<usize>),
    Store(&'static str, usize, Vec<usize>),
    Card(Vec<usize>, usize),
}

fn member() -> impl Strategy<Value = String> {
    prop_oneof![
        (0i64..12).prop_map(|n| n.to_string()),
        (-3i64..3).prop_map(|n| (n * 1_000_000_007).to_string()),
        "[a-e]{1,2}",
        Just("x".repeat(70)),
    ]
}

fn write(nkeys: usize) -> impl Strategy<Value = Write> {
    let ms = || prop::collection::vec(member(), 1..6);
    prop_oneof![
        3 => (0..nkeys, ms()).prop_map(|(k, m)| Write::Add(k, m)),
        1 => (0..nkeys, ms()).prop_map(|(k, m)| Write::Rem(k, m)),
    ]
}

fn query(nkeys: usize) -> impl Strategy<Value = Query> {
    let ks = prop::collection::vec(0..nkeys + 1, 1..5);
    prop_oneof![
        ks.clone().prop_map(Query::Union),
        ks.clone().prop_map(Query::Inter),
        ks.clone().prop_map(Query::Diff),
        (
            prop_oneof![Just("SUNIONSTORE"), Just("SINTERSTORE"), Just("SDIFFSTORE")],
            0..nkeys + 1,
            ks.clone()
        )
            .prop_map(|(c, d, k)| Query::Store(c, d, k)),
        (ks, 0usize..4).prop_map(|(k, l)| Query::Card(k, l)),
    ]
}

/// A reply made comparable: sets sorted, errors kept as text.
fn run_query(c: &mut redis::Connection, q: &Query, keys: &[String]) -> String {
    let names = |v: &[usize]| v.iter().map(|&i| keys[i].clone()).collect::<Vec<_>>();
    let sorted = |r: redis::RedisResult<Vec<String>>| match r {
        Ok(mut v) => {
            v.sort();
            format!("{v:?}")
        }
        Err(e) => format!("err {e}"),
    };
    match q {
        Query::Union(k) => sorted(redis::cmd("SUNION").arg(names(k)).query(c)),
        Query::Inter(k) => sorted(redis::cmd("SINTER").arg(names(k)).query(c)),
        Query::Diff(k) => sorted(redis::cmd("SDIFF").arg(names(k)).query(c)),
        Query::Store(cmd, d, k) => {
            let n: redis::RedisResult<i64> = redis::cmd(cmd).arg(&keys[*d]).arg(names(k)).query(c);
            let after = sorted(redis::cmd("SMEMBERS").arg(&keys[*d]).query(c));
            format!("{n:?} {after}")
        }
        Query::Card(k, limit) => {
            let r: redis::RedisResult<i64> = redis::cmd("SINTERCARD")
                .arg(k.len())
                .arg(names(k))
                .arg("LIMIT")
                .arg(*limit)
                .query(c);
            format!("{r:?}")
        }
    }
}

#[test]
fn set_algebra_matches_redis() {
    let ours = Proc::ringkv(SHARDS, &[]);
    let redis = Proc::redis(&[]);
    let conns = std::cell::RefCell::new((ours.client(), redis.client()));
    const NKEYS: usize = 5;
    // Four keys on four shards, one sharing a shard, and a string key last.
    let mut keys = keys_on_distinct_shards("alg", 4);
    keys.push("alg-same".into());
    keys.push("alg-string".into());
    let case = (
        prop::collection::vec(write(NKEYS), 0..25),
        prop::collection::vec(query(NKEYS), 1..8),
    );
    let mut runner = TestRunner::new(PtConfig::with_cases(48));
    runner
        .run(&case, |(writes, queries)| {
            let (a, b) = &mut *conns.borrow_mut();
            for c in [&mut *a, &mut *b] {
                redis::cmd("FLUSHALL").query::<()>(c).unwrap();
                redis::cmd("SET")
                    .arg(&keys[NKEYS])
                    .arg("s")
                    .query::<()>(c)
                    .unwrap();
            }
            for w in &writes {
                let (cmd, k, ms) = match w {
                    Write::Add(k, m) => ("SADD", k, m),
                    Write::Rem(k, m) => ("SREM", k, m),
                };
                let ra: i64 = redis::cmd(cmd).arg(&keys[*k]).arg(ms).query(a).unwrap();
                let rb: i64 = redis::cmd(cmd).arg(&keys[*k]).arg(ms).query(b).unwrap();
                prop_assert_eq!(ra, rb, "{:?}", w);
            }
            for q in &queries {
                let ra = run_query(a, q, &keys);
                let rb = run_query(b, q, &keys);
                prop_assert_eq!(ra, rb, "{:?}", q);
            }
            for k in &keys[..NKEYS] {
                prop_assert_eq!(members(a, k), members(b, k));
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn encodings_follow_redis_7_2() {
    let server = Proc::ringkv(SHARDS, &[]);
    let mut c = server.client();
    // Integers: intset; a string turns a small intset into a listpack.
    sadd(&mut c, "e1", &["3".into(), "1".into(), "2".into()]);
    assert_eq!(encoding(&mut c, "e1"), "intset");
    sadd(&mut c, "e1", &["a".into()]);
    assert_eq!(encoding(&mut c, "e1"), "listpack");
    assert_eq!(members(&mut c, "e1").len(), 4);
    // Up to 128 members stay a listpack; the 129th converts; removal never
    // converts back.
    sadd(&mut c, "e1", &strs("m", 0..124));
    assert_eq!(encoding(&mut c, "e1"), "listpack");
    sadd(&mut c, "e1", &["one-more".into()]);
    assert_eq!(encoding(&mut c, "e1"), "hashtable");
    let _: i64 = redis::cmd("SREM")
        .arg("e1")
        .arg(strs("m", 0..124))
        .query(&mut c)
        .unwrap();
    assert_eq!(encoding(&mut c, "e1"), "hashtable");
    // A long member goes straight to a hashtable.
    sadd(&mut c, "e2", &["a".into(), "y".repeat(65)]);
    assert_eq!(encoding(&mut c, "e2"), "hashtable");
    sadd(&mut c, "e3", &["y".repeat(65)]);
    assert_eq!(encoding(&mut c, "e3"), "hashtable");
    // A big intset gaining a string goes to a hashtable.
    sadd(&mut c, "e4", &strs("", 0..130));
    assert_eq!(encoding(&mut c, "e4"), "intset");
    sadd(&mut c, "e4", &["a".into()]);
    assert_eq!(encoding(&mut c, "e4"), "hashtable");
    // Thresholds follow CONFIG SET.
    let set = |c: &mut redis::Connection, k: &str, v: &str| {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg(k)
            .arg(v)
            .query::<()>(c)
            .unwrap()
    };
    set(&mut c, "set-max-listpack-entries", "3");
    set(&mut c, "set-max-listpack-value", "4");
    sadd(&mut c, "e5", &strs("k", 0..3));
    assert_eq!(encoding(&mut c, "e5"), "listpack");
    sadd(&mut c, "e5", &["k9".into()]);
    assert_eq!(encoding(&mut c, "e5"), "hashtable");
    sadd(&mut c, "e6", &["abcde".into()]);
    assert_eq!(encoding(&mut c, "e6"), "hashtable");
    sadd(&mut c, "e7", &["12345".into()]);
    sadd(&mut c, "e7", &["a".into()]);
    assert_eq!(
        encoding(&mut c, "e7"),
        "hashtable",
        "intset member too long"
    );
    set(&mut c, "set-max-listpack-entries", "128");
    set(&mut c, "set-max-listpack-value", "64");
    // STORE results are built like Redis: small mixed results are listpacks.
    sadd(&mut c, "{s}a", &["1".into(), "x".into(), "y".into()]);
    sadd(&mut c, "{s}b", &["1".into(), "x".into()]);
    let _: i64 = redis::cmd("SINTERSTORE")
        .arg("{s}d")
        .arg("{s}a")
        .arg("{s}b")
        .query(&mut c)
        .unwrap();
    assert_eq!(encoding(&mut c, "{s}d"), "listpack");
    let _: i64 = redis::cmd("SDIFFSTORE")
        .arg("{s}d")
        .arg("{s}a")
        .arg("{s}b")
        .query(&mut c)
        .unwrap();
    assert_eq!(encoding(&mut c, "{s}d"), "listpack");
    // A small listpack is scanned in one call, like Redis's small encodings.
    let (cur, got): (u64, Vec<String>) = redis::cmd("SSCAN")
        .arg("{s}a")
        .arg(0)
        .arg("COUNT")
        .arg(1)
        .query(&mut c)
        .unwrap();
    assert_eq!((cur, got.len()), (0, 3));
    // SPOP leaving few members rebuilds the set, possibly smaller.
    sadd(&mut c, "e8", &strs("p", 0..200));
    assert_eq!(encoding(&mut c, "e8"), "hashtable");
    let popped: Vec<String> = redis::cmd("SPOP").arg("e8").arg(198).query(&mut c).unwrap();
    assert_eq!(popped.len(), 198);
    assert_eq!(encoding(&mut c, "e8"), "listpack");
    let rest = members(&mut c, "e8");
    assert_eq!(rest.len(), 2);
    assert!(popped.iter().all(|m| !rest.contains(m)));
    // MEMORY-style sanity: small sets are compact.
    assert_eq!(
        redis::cmd("TYPE")
            .arg("e5")
            .query::<String>(&mut c)
            .unwrap(),
        "set"
    );
}

#[test]
fn random_commands_are_structurally_right() {
    let server = Proc::ringkv(SHARDS, &[]);
    let mut c = server.client();
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("r-int", strs("", 0..10)),
        ("r-lp", strs("l", 0..10)),
        ("r-ht", strs("h", 0..1000)),
    ];
    for (key, all) in &cases {
        sadd(&mut c, key, all);
        let set: HashSet<&String> = all.iter().collect();
        let n = all.len();
        for count in [1usize, 2, 5, n / 2, n - 1, n, n + 5] {
            let got: Vec<String> = redis::cmd("SRANDMEMBER")
                .arg(key)
                .arg(count)
                .query(&mut c)
                .unwrap();
            assert_eq!(got.len(), count.min(n), "{key} {count}");
            let distinct: HashSet<&String> = got.iter().collect();
            assert_eq!(distinct.len(), got.len(), "{key} {count}: repeats");
            assert!(got.iter().all(|m| set.contains(m)));
        }
        // Negative counts repeat members; over many picks every member shows
        // up (missing one has probability below 1e-5 here).
        let picks = n * 25;
        let got: Vec<String> = redis::cmd("SRANDMEMBER")
            .arg(key)
            .arg(-(picks as i64))
            .query(&mut c)
            .unwrap();
        assert_eq!(got.len(), picks);
        assert!(got.iter().all(|m| set.contains(m)));
        let mut freq: HashMap<&String, usize> = HashMap::new();
        for m in &got {
            *freq.entry(m).or_default() += 1;
        }
        assert_eq!(freq.len(), n, "{key}: some member never picked");
        // Single picks.
        for _ in 0..20 {
            let m: String = redis::cmd("SRANDMEMBER").arg(key).query(&mut c).unwrap();
            assert!(set.contains(&m));
        }
        // SPOP: distinct members that leave the set; popped ∪ rest = all.
        let mut popped: Vec<String> = Vec::new();
        let one: String = redis::cmd("SPOP").arg(key).query(&mut c).unwrap();
        popped.push(one);
        for count in [1usize, 3, n / 4] {
            let got: Vec<String> = redis::cmd("SPOP")
                .arg(key)
                .arg(count)
                .query(&mut c)
                .unwrap();
            assert_eq!(got.len(), count);
            popped.extend(got);
        }
        let rest = members(&mut c, key);
        let distinct: HashSet<&String> = popped.iter().collect();
        assert_eq!(
            distinct.len(),
            popped.len(),
            "{key}: SPOP repeated a member"
        );
        assert!(popped.iter().all(|m| set.contains(m) && !rest.contains(m)));
        assert_eq!(rest.len() + popped.len(), n);
        // Popping most of what is left takes the rebuild path.
        let left = rest.len();
        let got: Vec<String> = redis::cmd("SPOP")
            .arg(key)
            .arg(left - 1)
            .query(&mut c)
            .unwrap();
        assert_eq!(got.len(), left - 1);
        let last = members(&mut c, key);
        assert_eq!(last.len(), 1);
        assert!(got.iter().all(|m| rest.contains(m) && !last.contains(m)));
        let got: Vec<String> = redis::cmd("SPOP").arg(key).arg(5).query(&mut c).unwrap();
        assert_eq!(got.len(), 1);
        let exists: i64 = redis::cmd("EXISTS").arg(key).query(&mut c).unwrap();
        assert_eq!(exists, 0);
    }
}

/// Full SSCAN of `key`; returns each member with how often it came back.
fn full_sscan(
    c: &mut redis::Connection,
    key: &str,
    count: usize,
    mut between: impl FnMut(),
) -> HashMap<String, usize> {
    let mut cursor: u64 = 0;
    let mut seen = HashMap::new();
    let mut calls = 0;
    loop {
        let (next, ms): (u64, Vec<String>) = redis::cmd("SSCAN")
            .arg(key)
            .arg(cursor)
            .arg("COUNT")
            .arg(count)
            .query(c)
            .unwrap();
        assert!(
            ms.len() <= count + 64,
            "one call returned {} members",
            ms.len()
        );
        for m in ms {
            *seen.entry(m).or_default() += 1;
        }
        calls += 1;
        assert!(calls < 100_000, "SSCAN does not terminate");
        between();
        if next == 0 {
            return seen;
        }
        cursor = next;
    }
}

#[test]
fn sscan_returns_every_member_while_the_set_grows() {
    let server = Proc::ringkv(SHARDS, &[]);
    let mut c = server.client();
    let mut w = server.client();
    const BASE: usize = 6000;
    for chunk in strs("base:", 0..BASE).chunks(1000) {
        sadd(&mut c, "big", chunk);
    }
    // Another client grows the set between calls (splitting segments).
    let mut extra = 0usize;
    let seen = full_sscan(&mut c, "big", 20, || {
        sadd(&mut w, "big", &strs("new:", extra..extra + 40));
        extra += 40;
    });
    for i in 0..BASE {
        assert_eq!(seen.get(&format!("base:{i}")), Some(&1), "base:{i}");
    }
    assert!(seen.values().all(|&n| n == 1), "a member came back twice");
    // MATCH filters after the scan; an unfiltered scan of a static set
    // returns exactly the members.
    let all = members(&mut c, "big");
    let seen = full_sscan(&mut c, "big", 100, || {});
    assert_eq!(seen.keys().cloned().collect::<BTreeSet<_>>(), all);
    let mut cursor = 0u64;
    let mut matched = Vec::new();
    loop {
        let (next, ms): (u64, Vec<String>) = redis::cmd("SSCAN")
            .arg("big")
            .arg(cursor)
            .arg("MATCH")
            .arg("base:1?")
            .query(&mut c)
            .unwrap();
        matched.extend(ms);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    matched.sort();
    assert_eq!(matched, strs("base:1", 0..10));
}
