//! Lists on a 4-shard ringkv, through the `redis` crate: the encoding
//! transitions (listpack <-> quicklist, which redis-server 7.0 cannot be
//! compared on since it reports `quicklist` for every list), a property test
//! that runs random edit sequences on ringkv and on redis-server and compares
//! every reply and the final lists, and cross-shard LMOVE atomicity under
//! concurrency. Every test is bounded in time and stops only its own servers.

mod common;

use common::Proc;
use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestRunner};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn encoding(con: &mut redis::Connection, key: &str) -> String {
    redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg(key)
        .query(con)
        .unwrap()
}

fn config_set(con: &mut redis::Connection, fill: i64) {
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("list-max-listpack-size")
        .arg(fill)
        .query::<()>(con)
        .unwrap();
}

fn cmd(con: &mut redis::Connection, args: &[&str]) -> redis::Value {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(con).unwrap()
}

fn llen(con: &mut redis::Connection, key: &str) -> usize {
    redis::cmd("LLEN").arg(key).query(con).unwrap()
}

/// Flat size the conversion rules count for `n` elements of 100 bytes: 7
/// bytes of header plus 102 per entry (see src/types/list.rs).
fn flat_bytes_100(n: usize) -> usize {
    7 + 102 * n
}

#[test]
fn encodings_follow_the_size_limits_both_ways() {
    let srv = Proc::ringkv(4, &[]);
    let mut con = srv.client();
    let elem = "e".repeat(100);

    // Byte budgets: -1..-5 are 4..64 KiB; lower values act like -5.
    for (fill, limit) in [
        (-1i64, 4096usize),
        (-2, 8192),
        (-3, 16384),
        (-4, 32768),
        (-5, 65536),
        (-9, 65536),
    ] {
        config_set(&mut con, fill);
        let key = format!("bytes{fill}");
        let mut n = 0;
        while flat_bytes_100(n + 1) <= limit {
            n += 1;
            let _: usize = redis::cmd("RPUSH")
                .arg(&key)
                .arg(&elem)
                .query(&mut con)
                .unwrap();
            assert_eq!(
                encoding(&mut con, &key),
                "listpack",
                "fill {fill}, {n} elements"
            );
        }
        let _: usize = redis::cmd("LPUSH")
            .arg(&key)
            .arg(&elem)
            .query(&mut con)
            .unwrap();
        assert_eq!(
            encoding(&mut con, &key),
            "quicklist",
            "fill {fill}, {} elements",
            n + 1
        );
        // Back to the flat form only at half the budget or below.
        let mut len = n + 1;
        while flat_bytes_100(len - 1) > limit / 2 {
            let _: String = redis::cmd("RPOP").arg(&key).query(&mut con).unwrap();
            len -= 1;
            assert_eq!(
                encoding(&mut con, &key),
                "quicklist",
                "fill {fill}, {len} elements"
            );
        }
        let _: String = redis::cmd("LPOP").arg(&key).query(&mut con).unwrap();
        assert_eq!(
            encoding(&mut con, &key),
            "listpack",
            "fill {fill}, {} elements",
            len - 1
        );
        assert_eq!(llen(&mut con, &key), len - 1);
    }

    // Entry counts: positive values.
    config_set(&mut con, 4);
    cmd(&mut con, &["RPUSH", "cnt", "1", "2", "3", "4"]);
    assert_eq!(encoding(&mut con, "cnt"), "listpack");
    cmd(&mut con, &["RPUSH", "cnt", "5"]);
    assert_eq!(encoding(&mut con, "cnt"), "quicklist");
    cmd(&mut con, &["LPOP", "cnt", "2"]);
    assert_eq!(encoding(&mut con, "cnt"), "quicklist");
    cmd(&mut con, &["LPOP", "cnt"]);
    assert_eq!(encoding(&mut con, "cnt"), "listpack");
    // A count still caps the flat form at 8 KiB.
    let big = "b".repeat(5000);
    cmd(&mut con, &["RPUSH", "cnt2", &big]);
    assert_eq!(encoding(&mut con, "cnt2"), "listpack");
    cmd(&mut con, &["RPUSH", "cnt2", &big]);
    assert_eq!(encoding(&mut con, "cnt2"), "quicklist");
    // 0 means one entry: two elements are a quicklist for good.
    config_set(&mut con, 0);
    cmd(&mut con, &["RPUSH", "zero", "a"]);
    assert_eq!(encoding(&mut con, "zero"), "listpack");
    cmd(&mut con, &["RPUSH", "zero", "b"]);
    assert_eq!(encoding(&mut con, "zero"), "quicklist");
    cmd(&mut con, &["RPOP", "zero"]);
    assert_eq!(encoding(&mut con, "zero"), "quicklist");

    // Every way of growing converts; every way of shrinking converts back.
    config_set(&mut con, -1);
    let huge = "h".repeat(5000);
    cmd(&mut con, &["RPUSH", "one", &huge]);
    assert_eq!(
        encoding(&mut con, "one"),
        "quicklist",
        "one element past the budget"
    );
    cmd(&mut con, &["RPUSH", "ins", "pivot", "x"]);
    cmd(&mut con, &["LINSERT", "ins", "BEFORE", "pivot", &huge]);
    assert_eq!(encoding(&mut con, "ins"), "quicklist", "LINSERT");
    cmd(&mut con, &["LSET", "ins", "0", "small"]);
    assert_eq!(encoding(&mut con, "ins"), "listpack", "LSET shrinking");
    cmd(&mut con, &["LSET", "ins", "1", &huge]);
    assert_eq!(encoding(&mut con, "ins"), "quicklist", "LSET growing");
    cmd(&mut con, &["LREM", "ins", "0", &huge]);
    assert_eq!(encoding(&mut con, "ins"), "listpack", "LREM");
    cmd(&mut con, &["RPUSH", "b", &huge, "x", "y"]);
    assert_eq!(encoding(&mut con, "b"), "quicklist");
    cmd(&mut con, &["LTRIM", "b", "1", "-1"]);
    assert_eq!(encoding(&mut con, "b"), "listpack", "LTRIM");
    // LMOVE across shards (a: shard 3, b: shard 0): the destination
    // converts as it grows, the source as it shrinks.
    cmd(&mut con, &["RPUSH", "a", &huge, "tail"]);
    assert_eq!(encoding(&mut con, "a"), "quicklist");
    let moved: String = redis::cmd("LMOVE")
        .arg("a")
        .arg("b")
        .arg("LEFT")
        .arg("RIGHT")
        .query(&mut con)
        .unwrap();
    assert_eq!(moved, huge);
    assert_eq!(encoding(&mut con, "a"), "listpack");
    assert_eq!(encoding(&mut con, "b"), "quicklist");
    // The same data, whatever the encoding.
    let items: Vec<String> = redis::cmd("LRANGE")
        .arg("b")
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .unwrap();
    assert_eq!(items, vec!["x".to_string(), "y".to_string(), huge.clone()]);
}

#[test]
fn big_lists_index_and_range_quickly() {
    let srv = Proc::ringkv(4, &[]);
    let mut con = srv.client();
    const N: usize = 200_000;
    for chunk in 0..(N / 10_000) {
        let mut c = redis::cmd("RPUSH");
        c.arg("big");
        for i in chunk * 10_000..(chunk + 1) * 10_000 {
            c.arg(i);
        }
        c.query::<usize>(&mut con).unwrap();
    }
    assert_eq!(encoding(&mut con, "big"), "quicklist");
    // Many LINDEX / LSET / short LRANGE calls in the middle of a big list
    // must be cheap: each is O(1) to reach (a list walk would take seconds).
    let start = Instant::now();
    let mut p = redis::pipe();
    for i in 0..2_000 {
        let at = (i * 97) % N;
        p.cmd("LINDEX").arg("big").arg(at);
        p.cmd("LRANGE")
            .arg("big")
            .arg(at as i64 - N as i64)
            .arg(at as i64 - N as i64 + 2);
        p.cmd("LSET").arg("big").arg(at).arg(at).ignore();
    }
    let replies: Vec<redis::Value> = p.query(&mut con).unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    for (i, pair) in replies.chunks(2).enumerate() {
        let at = (i * 97) % N;
        let got: String = redis::from_redis_value(&pair[0]).unwrap();
        assert_eq!(got, at.to_string());
        let range: Vec<String> = redis::from_redis_value(&pair[1]).unwrap();
        let want: Vec<String> = (at..(at + 3).min(N)).map(|i| i.to_string()).collect();
        assert_eq!(range, want);
    }
}

// ---------------------------------------------------------------------------
// Property test against redis-server
// ---------------------------------------------------------------------------

/// Keys a b c d live on shards 3 0 1 2 of a 4-shard ringkv.
const KEYS: [&str; 4] = ["a", "b", "c", "d"];

#[derive(Clone, Debug)]
enum Op {
    Push(bool, usize, Vec<usize>),
    Pop(bool, usize, Option<u8>),
    Set(usize, i8, usize),
    Insert(usize, bool, usize, usize),
    Rem(usize, i8, usize),
    Trim(usize, i8, i8),
    Move(usize, usize, bool, bool),
    Mpop(Vec<usize>, bool, Option<u8>),
}

/// The element pool: short, empty, just past the inline size, and long
/// enough to push the list past small byte budgets.
fn elements() -> Vec<String> {
    vec![
        "x".into(),
        "y".into(),
        "z".into(),
        String::new(),
        "l".repeat(23),
        "L".repeat(700),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    // Mostly two keys on different shards and a few elements, so that
    // duplicates (for LREM, LINSERT, LPOS-like searches) and moves are common.
    let key = prop_oneof![4 => Just(0usize), 4 => Just(1), 1 => Just(2), 1 => Just(3)];
    let elem = prop_oneof![
        7 => Just(0usize),
        5 => Just(1),
        2 => Just(2),
        2 => Just(3),
        2 => Just(4),
        2 => Just(5),
    ];
    prop_oneof![
        3 => (any::<bool>(), key.clone(), prop::collection::vec(elem.clone(), 1..4))
            .prop_map(|(l, k, e)| Op::Push(l, k, e)),
        2 => (any::<bool>(), key.clone(), prop::option::of(0u8..4))
            .prop_map(|(l, k, c)| Op::Pop(l, k, c)),
        1 => (key.clone(), -6i8..6, elem.clone()).prop_map(|(k, i, e)| Op::Set(k, i, e)),
        1 => (key.clone(), any::<bool>(), elem.clone(), elem.clone())
            .prop_map(|(k, a, p, e)| Op::Insert(k, a, p, e)),
        1 => (key.clone(), -3i8..3, elem.clone()).prop_map(|(k, c, e)| Op::Rem(k, c, e)),
        1 => (key.clone(), -6i8..6, -6i8..6).prop_map(|(k, a, b)| Op::Trim(k, a, b)),
        2 => (key.clone(), key.clone(), any::<bool>(), any::<bool>())
            .prop_map(|(s, d, f, t)| Op::Move(s, d, f, t)),
        1 => (prop::collection::vec(key, 1..4), any::<bool>(), prop::option::of(1u8..4))
            .prop_map(|(ks, l, c)| Op::Mpop(ks, l, c)),
    ]
}

fn side(left: bool) -> &'static str {
    if left { "LEFT" } else { "RIGHT" }
}

/// The command an op stands for.
fn op_args(op: &Op, pool: &[String]) -> Vec<String> {
    let k = |i: usize| KEYS[i].to_string();
    match op {
        Op::Push(left, key, es) => {
            let mut v = vec![if *left { "LPUSH" } else { "RPUSH" }.into(), k(*key)];
            v.extend(es.iter().map(|&e| pool[e].clone()));
            v
        }
        Op::Pop(left, key, count) => {
            let mut v = vec![if *left { "LPOP" } else { "RPOP" }.into(), k(*key)];
            v.extend(count.map(|c| c.to_string()));
            v
        }
        Op::Set(key, i, e) => vec!["LSET".into(), k(*key), i.to_string(), pool[*e].clone()],
        Op::Insert(key, after, p, e) => vec![
            "LINSERT".into(),
            k(*key),
            if *after { "AFTER" } else { "BEFORE" }.into(),
            pool[*p].clone(),
            pool[*e].clone(),
        ],
        Op::Rem(key, c, e) => vec!["LREM".into(), k(*key), c.to_string(), pool[*e].clone()],
        Op::Trim(key, a, b) => vec!["LTRIM".into(), k(*key), a.to_string(), b.to_string()],
        Op::Move(s, d, f, t) => vec![
            "LMOVE".into(),
            k(*s),
            k(*d),
            side(*f).into(),
            side(*t).into(),
        ],
        Op::Mpop(keys, left, count) => {
            let mut v = vec!["LMPOP".into(), keys.len().to_string()];
            v.extend(keys.iter().map(|&i| k(i)));
            v.push(side(*left).into());
            if let Some(c) = count {
                v.extend(["COUNT".to_string(), c.to_string()]);
            }
            v
        }
    }
}

/// A reply in comparable form (errors by their text).
fn run(con: &mut redis::Connection, args: &[String]) -> String {
    let mut c = redis::cmd(&args[0]);
    for a in &args[1..] {
        c.arg(a);
    }
    match c.query::<redis::Value>(con) {
        Ok(v) => format!("{v:?}"),
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn random_edit_sequences_match_redis() {
    let redis_srv = Proc::redis(&[]);
    let ours = Proc::ringkv(4, &[]);
    // The runner takes a `Fn`: the connections live in RefCells.
    let theirs = std::cell::RefCell::new(redis_srv.client());
    let mine = std::cell::RefCell::new(ours.client());
    let pool = elements();
    let mut runner = TestRunner::new(PropConfig {
        cases: 64,
        failure_persistence: None,
        ..PropConfig::default()
    });
    // The flat form's limit varies per case so that conversions happen in
    // the middle of the sequences; it does not change any reply.
    let fills = prop::sample::select(vec![-2i64, -1, 0, 1, 3, 8]);
    let strategy = (fills, prop::collection::vec(op_strategy(), 1..60));
    runner
        .run(&strategy, |(fill, ops)| {
            let (mut theirs, mut mine) = (theirs.borrow_mut(), mine.borrow_mut());
            for c in [&mut *theirs, &mut *mine] {
                redis::cmd("FLUSHALL").query::<()>(c).unwrap();
            }
            config_set(&mut mine, fill);
            for (step, op) in ops.iter().enumerate() {
                let args = op_args(op, &pool);
                let want = run(&mut theirs, &args);
                let got = run(&mut mine, &args);
                prop_assert_eq!(&got, &want, "step {}: {:?}", step, args);
            }
            for k in KEYS {
                let args: Vec<String> = vec!["LRANGE".into(), k.into(), "0".into(), "-1".into()];
                prop_assert_eq!(
                    run(&mut mine, &args),
                    run(&mut theirs, &args),
                    "LRANGE {}",
                    k
                );
                let args: Vec<String> = vec!["EXISTS".into(), k.into()];
                prop_assert_eq!(
                    run(&mut mine, &args),
                    run(&mut theirs, &args),
                    "EXISTS {}",
                    k
                );
            }
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------

/// A small, well-mixed pseudo-random generator.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Many clients LMOVE elements between lists on different shards while
/// readers look for a half-done move. Without MULTI, two LLEN calls are not
/// one atomic read, so the readers check the atomic cross-shard form of the
/// invariant: one token element ping-pongs between `c` and `d` (shards 1
/// and 2) and `EXISTS c d` (a locked multi-shard read) must always count
/// exactly one list, which a move visible half-way would break (0 or 2).
/// Once the movers stop, `LLEN a + LLEN b` must be what it was and every
/// element must be there exactly once.
#[test]
fn cross_shard_lmove_is_atomic_under_concurrency() {
    let srv = Proc::ringkv(4, &[]);
    let mut con = srv.client();
    const N: usize = 300;
    let mut c = redis::cmd("RPUSH");
    c.arg("a");
    for i in 0..N {
        c.arg(i);
    }
    c.query::<usize>(&mut con).unwrap();
    cmd(&mut con, &["RPUSH", "c", "token"]);

    let stop = Arc::new(AtomicBool::new(false));
    let moves = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for t in 0..6usize {
        let (stop, moves) = (stop.clone(), moves.clone());
        let mut w = srv.client();
        handles.push(std::thread::spawn(move || {
            let mut state = t as u64;
            while !stop.load(Ordering::Relaxed) {
                let i = splitmix64(&mut state) as usize;
                let (src, dst) = match (i >> 8) % 4 {
                    0 => ("a", "b"),
                    1 => ("b", "a"),
                    2 => ("c", "d"),
                    _ => ("d", "c"),
                };
                let r: Option<String> = if i.is_multiple_of(3) {
                    redis::cmd("RPOPLPUSH")
                        .arg(src)
                        .arg(dst)
                        .query(&mut w)
                        .unwrap()
                } else {
                    redis::cmd("LMOVE")
                        .arg(src)
                        .arg(dst)
                        .arg(side(i.is_multiple_of(2)))
                        .arg(side(i % 5 < 2))
                        .query(&mut w)
                        .unwrap()
                };
                if r.is_some() {
                    moves.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let bad = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    for _ in 0..2 {
        let (stop, bad, reads) = (stop.clone(), bad.clone(), reads.clone());
        let mut r = srv.client();
        handles.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let n: i64 = redis::cmd("EXISTS")
                    .arg("c")
                    .arg("d")
                    .query(&mut r)
                    .unwrap();
                if n != 1 {
                    bad.fetch_add(1, Ordering::Relaxed);
                }
                reads.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(2000));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    assert!(
        moves.load(Ordering::Relaxed) > 100,
        "movers made no progress"
    );
    assert!(
        reads.load(Ordering::Relaxed) > 100,
        "readers made no progress"
    );
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "a reader saw a half-done move"
    );

    assert_eq!(llen(&mut con, "a") + llen(&mut con, "b"), N);
    assert_eq!(llen(&mut con, "c") + llen(&mut con, "d"), 1);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for k in ["a", "b"] {
        let items: Vec<String> = redis::cmd("LRANGE")
            .arg(k)
            .arg(0)
            .arg(-1)
            .query(&mut con)
            .unwrap();
        for e in items {
            *seen.entry(e).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), N);
    assert!(seen.values().all(|&n| n == 1));
}
