//! The hash family on a 4-shard ringkv, through the `redis` crate: encoding
//! conversion at the configured thresholds, HSCAN completeness on a big hash
//! while another client grows and shrinks it, HRANDFIELD's structure, and a
//! property test that runs random HSET/HDEL/HINCRBY sequences against ringkv
//! and a real redis-server and compares the results. Every test is bounded in
//! time and stops only the servers it started.

mod common;

use common::Proc;
use proptest::prelude::*;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

fn encoding(con: &mut redis::Connection, key: &str) -> String {
    redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg(key)
        .query(con)
        .unwrap()
}

fn config_set(con: &mut redis::Connection, name: &str, value: &str) {
    redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query::<()>(con)
        .unwrap();
}

/// HSETs `fields` (value = "v:" + field) in pipelined batches.
fn hset_all(con: &mut redis::Connection, key: &str, fields: impl Iterator<Item = String>) {
    let fields: Vec<String> = fields.collect();
    for chunk in fields.chunks(500) {
        let mut c = redis::cmd("HSET");
        c.arg(key);
        for f in chunk {
            c.arg(f).arg(format!("v:{f}"));
        }
        c.query::<i64>(con).unwrap();
    }
}

#[test]
fn encoding_converts_at_the_thresholds_and_never_back() {
    let srv = Proc::ringkv(4, &[]);
    let mut con = srv.client();

    // Entry count: 128 fields stay compact, the 129th converts.
    hset_all(&mut con, "h", (0..128).map(|i| format!("f{i}")));
    assert_eq!(encoding(&mut con, "h"), "listpack");
    let _: i64 = redis::cmd("HSET")
        .arg("h")
        .arg("f0")
        .arg("updated")
        .query(&mut con)
        .unwrap();
    assert_eq!(encoding(&mut con, "h"), "listpack");
    hset_all(&mut con, "h", std::iter::once("f128".to_string()));
    assert_eq!(encoding(&mut con, "h"), "hashtable");
    let fields: Vec<String> = (1..129).map(|i| format!("f{i}")).collect();
    let n: i64 = redis::cmd("HDEL")
        .arg("h")
        .arg(&fields)
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 128);
    assert_eq!(encoding(&mut con, "h"), "hashtable");
    let all: HashMap<String, String> = redis::cmd("HGETALL").arg("h").query(&mut con).unwrap();
    assert_eq!(all, HashMap::from([("f0".into(), "updated".into())]));

    // Value length: 64 bytes stay compact, 65 convert; same for fields.
    let v64 = "x".repeat(64);
    let v65 = "x".repeat(65);
    let _: i64 = redis::cmd("HSET")
        .arg("v")
        .arg(&v64)
        .arg(&v64)
        .query(&mut con)
        .unwrap();
    assert_eq!(encoding(&mut con, "v"), "listpack");
    let _: i64 = redis::cmd("HSET")
        .arg("v")
        .arg("a")
        .arg(&v65)
        .query(&mut con)
        .unwrap();
    assert_eq!(encoding(&mut con, "v"), "hashtable");
    let _: i64 = redis::cmd("HSETNX")
        .arg("w")
        .arg(&v65)
        .arg("1")
        .query(&mut con)
        .unwrap();
    assert_eq!(encoding(&mut con, "w"), "hashtable");

    // CONFIG SET changes the thresholds for later writes.
    config_set(&mut con, "hash-max-listpack-entries", "3");
    config_set(&mut con, "hash-max-listpack-value", "4");
    let _: i64 = redis::cmd("HSET")
        .arg("c")
        .arg(&["a", "1", "b", "2", "c", "1234"])
        .query(&mut con)
        .unwrap();
    assert_eq!(encoding(&mut con, "c"), "listpack");
    let _: i64 = redis::cmd("HINCRBY")
        .arg("c")
        .arg("a")
        .arg(1)
        .query(&mut con)
        .unwrap();
    assert_eq!(encoding(&mut con, "c"), "listpack");
    // HINCRBYFLOAT's printed result is 5 bytes long: past the value limit.
    let s: String = redis::cmd("HINCRBYFLOAT")
        .arg("c")
        .arg("b")
        .arg("0.25")
        .query(&mut con)
        .unwrap();
    assert_eq!(s, "2.25");
    assert_eq!(encoding(&mut con, "c"), "listpack");
    let s: String = redis::cmd("HINCRBYFLOAT")
        .arg("c")
        .arg("b")
        .arg("10")
        .query(&mut con)
        .unwrap();
    assert_eq!(s, "12.25");
    assert_eq!(encoding(&mut con, "c"), "hashtable");
    let _: i64 = redis::cmd("HSET")
        .arg("d")
        .arg(&["a", "1", "b", "2", "c", "3", "d", "4"])
        .query(&mut con)
        .unwrap();
    assert_eq!(encoding(&mut con, "d"), "hashtable");
    // The ziplist alias sets the same option.
    config_set(&mut con, "hash-max-ziplist-entries", "0");
    let _: i64 = redis::cmd("HSET")
        .arg("e")
        .arg("a")
        .arg("1")
        .query(&mut con)
        .unwrap();
    assert_eq!(encoding(&mut con, "e"), "hashtable");
    // Raising the thresholds does not convert existing tables back.
    config_set(&mut con, "hash-max-listpack-entries", "128");
    config_set(&mut con, "hash-max-listpack-value", "64");
    let _: i64 = redis::cmd("HSET")
        .arg("e")
        .arg("b")
        .arg("2")
        .query(&mut con)
        .unwrap();
    assert_eq!(encoding(&mut con, "e"), "hashtable");
    let _: i64 = redis::cmd("HSET")
        .arg("f")
        .arg("a")
        .arg("1")
        .query(&mut con)
        .unwrap();
    assert_eq!(encoding(&mut con, "f"), "listpack");
}

/// Runs a full HSCAN; returns every (field, value) returned, with
/// repetitions, and the number of calls.
fn full_hscan(
    con: &mut redis::Connection,
    key: &str,
    extra: &[&str],
) -> (Vec<(String, String)>, usize) {
    let mut cursor: u64 = 0;
    let mut out = Vec::new();
    let mut calls = 0;
    loop {
        let (next, items): (u64, Vec<String>) = redis::cmd("HSCAN")
            .arg(key)
            .arg(cursor)
            .arg(extra)
            .query(con)
            .unwrap();
        assert_eq!(items.len() % 2, 0);
        out.extend(items.chunks(2).map(|c| (c[0].clone(), c[1].clone())));
        calls += 1;
        assert!(calls < 100_000, "HSCAN does not terminate");
        if next == 0 {
            return (out, calls);
        }
        cursor = next;
    }
}

#[test]
fn hscan_returns_every_field_while_the_hash_grows_and_shrinks() {
    let srv = Proc::ringkv(4, &[]);
    let mut con = srv.client();
    const BASE: usize = 20_000;
    hset_all(&mut con, "big", (0..BASE).map(|i| format!("base:{i}")));
    // Fields the writer deletes during the scan, so segments also merge.
    hset_all(&mut con, "big", (0..10_000).map(|i| format!("doomed:{i}")));

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let mut w = srv.client();
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) && n < 200_000 {
                hset_all(&mut w, "big", (n..n + 250).map(|i| format!("new:{i}")));
                if n < 10_000 {
                    let doomed: Vec<String> = (n..n + 250).map(|i| format!("doomed:{i}")).collect();
                    redis::cmd("HDEL")
                        .arg("big")
                        .arg(&doomed)
                        .query::<i64>(&mut w)
                        .unwrap();
                }
                n += 250;
            }
            n
        })
    };
    let (seen, calls) = full_hscan(&mut con, "big", &["COUNT", "50"]);
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(written > 0);
    assert!(calls > BASE / 100, "COUNT 50 gave only {calls} calls");
    let seen: HashMap<String, String> = seen.into_iter().collect();
    for i in 0..BASE {
        let f = format!("base:{i}");
        assert_eq!(
            seen.get(&f).map(String::as_str),
            Some(format!("v:{f}").as_str()),
            "{f} missing or wrong"
        );
    }

    // Without concurrent writes every field comes back exactly once.
    let len: usize = redis::cmd("HLEN").arg("big").query(&mut con).unwrap();
    let (seen, _) = full_hscan(&mut con, "big", &["COUNT", "100"]);
    assert_eq!(seen.len(), len);
    assert_eq!(seen.iter().map(|p| &p.0).collect::<HashSet<_>>().len(), len);

    // MATCH filters fields (not values); COUNT bounds the work per call.
    let (matched, _) = full_hscan(&mut con, "big", &["MATCH", "base:1*", "COUNT", "1000"]);
    let want = (0..BASE).filter(|i| i.to_string().starts_with('1')).count();
    assert_eq!(matched.len(), want);
    assert!(matched.iter().all(|(f, _)| f.starts_with("base:1")));
    let (next, items): (u64, Vec<String>) = redis::cmd("HSCAN")
        .arg("big")
        .arg(0)
        .query(&mut con)
        .unwrap();
    assert_ne!(next, 0);
    assert!(
        (2..=40).contains(&items.len()),
        "default COUNT 10 returned {} items",
        items.len()
    );
}

#[test]
fn hscan_of_a_small_hash_is_one_call() {
    let srv = Proc::ringkv(4, &[]);
    let mut con = srv.client();
    hset_all(&mut con, "small", (0..100).map(|i| format!("f{i}")));
    for cursor in ["0", "77", "18446744073709551615"] {
        let (next, items): (u64, Vec<String>) = redis::cmd("HSCAN")
            .arg("small")
            .arg(cursor)
            .arg("COUNT")
            .arg(1)
            .query(&mut con)
            .unwrap();
        assert_eq!(next, 0);
        assert_eq!(items.len(), 200);
        // Insertion order, as a listpack.
        assert_eq!(items[0], "f0");
        assert_eq!(items[198], "f99");
    }
}

#[test]
fn hrandfield_shapes_and_coverage() {
    let srv = Proc::ringkv(4, &[]);
    let mut con = srv.client();
    hset_all(&mut con, "small", (0..10).map(|i| format!("f{i}")));
    hset_all(&mut con, "big", (0..5_000).map(|i| format!("f{i}")));
    for key in ["small", "big"] {
        let size: usize = redis::cmd("HLEN").arg(key).query(&mut con).unwrap();
        // Positive count: distinct fields.
        for count in [1usize, 3, 9, size / 2, size - 1, size, size + 5] {
            let got: Vec<String> = redis::cmd("HRANDFIELD")
                .arg(key)
                .arg(count)
                .query(&mut con)
                .unwrap();
            assert_eq!(got.len(), count.min(size), "{key} {count}");
            let uniq: HashSet<&String> = got.iter().collect();
            assert_eq!(uniq.len(), got.len(), "{key} {count}: repeated fields");
            assert!(got.iter().all(|f| f.starts_with('f')));
        }
        // With values: pairs that match the hash.
        let got: Vec<String> = redis::cmd("HRANDFIELD")
            .arg(key)
            .arg(-7)
            .arg("WITHVALUES")
            .query(&mut con)
            .unwrap();
        assert_eq!(got.len(), 14);
        for p in got.chunks(2) {
            assert_eq!(p[1], format!("v:{}", p[0]));
        }
        // Negative count: repetitions allowed, every field reachable.
        let got: Vec<String> = redis::cmd("HRANDFIELD")
            .arg(key)
            .arg(-20_000)
            .query(&mut con)
            .unwrap();
        assert_eq!(got.len(), 20_000);
        let mut freq: HashMap<&str, usize> = HashMap::new();
        for f in &got {
            *freq.entry(f).or_default() += 1;
        }
        if key == "small" {
            assert_eq!(freq.len(), 10);
            assert!(freq.values().all(|&n| n > 1_500), "skewed: {freq:?}");
        } else {
            assert!(freq.len() > 4_000, "only {} distinct", freq.len());
        }
        let one: String = redis::cmd("HRANDFIELD").arg(key).query(&mut con).unwrap();
        assert!(one.starts_with('f'));
    }

    // RESP3: WITHVALUES pairs are nested two-element arrays.
    let mut raw = srv.raw();
    raw.cmd_str(&["HELLO", "3"]);
    let r = raw.cmd_str(&["HRANDFIELD", "small", "-3", "WITHVALUES"]);
    assert!(
        r.starts_with(b"*3\r\n*2\r\n$"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    let r = raw.cmd_str(&["HRANDFIELD", "big", "2", "WITHVALUES"]);
    assert!(
        r.starts_with(b"*2\r\n*2\r\n$"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    let r = raw.cmd_str(&["HGETALL", "small"]);
    assert!(r.starts_with(b"%10\r\n$2\r\nf0\r\n$4\r\nv:f0\r\n"));
}

/// One random operation of the property test.
#[derive(Debug, Clone)]
enum Op {
    Set(usize, Vec<(usize, String)>),
    Del(usize, Vec<usize>),
    Incr(usize, usize, i64),
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..3usize;
    let field = 0..12usize;
    let value = prop_oneof![
        (-1000i64..1000).prop_map(|n| n.to_string()),
        "[a-z]{0,10}",
        Just("9223372036854775800".to_string()),
    ];
    prop_oneof![
        (
            key.clone(),
            prop::collection::vec((field.clone(), value), 1..5)
        )
            .prop_map(|(k, fv)| Op::Set(k, fv)),
        (key.clone(), prop::collection::vec(field.clone(), 1..4)).prop_map(|(k, f)| Op::Del(k, f)),
        (
            key,
            field,
            prop_oneof![-100i64..100, Just(i64::MAX), Just(i64::MIN)]
        )
            .prop_map(|(k, f, by)| Op::Incr(k, f, by)),
    ]
}

/// Runs one command and renders its reply or error as text.
fn run(con: &mut redis::Connection, c: &redis::Cmd) -> String {
    match c.query::<redis::Value>(con) {
        Ok(v) => format!("{v:?}"),
        Err(e) => format!("error {:?} {:?}", e.code(), e.detail()),
    }
}

fn to_cmd(op: &Op) -> redis::Cmd {
    match op {
        Op::Set(k, fv) => {
            let mut c = redis::cmd("HSET");
            c.arg(format!("k{k}"));
            for (f, v) in fv {
                c.arg(format!("f{f}")).arg(v);
            }
            c
        }
        Op::Del(k, fs) => {
            let mut c = redis::cmd("HDEL");
            c.arg(format!("k{k}"));
            for f in fs {
                c.arg(format!("f{f}"));
            }
            c
        }
        Op::Incr(k, f, by) => {
            let mut c = redis::cmd("HINCRBY");
            c.arg(format!("k{k}")).arg(format!("f{f}")).arg(*by);
            c
        }
    }
}

/// A key's state: sorted HGETALL, encoding (or "none").
fn state(con: &mut redis::Connection, key: &str) -> (Vec<(String, String)>, String) {
    let mut all: Vec<(String, String)> = redis::cmd("HGETALL").arg(key).query(con).unwrap();
    all.sort();
    let enc: Option<String> = redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg(key)
        .query(con)
        .unwrap();
    (all, enc.unwrap_or_else(|| "none".into()))
}

#[test]
fn random_sequences_match_redis() {
    let ours = Proc::ringkv(4, &[]);
    let redis = Proc::redis(&[]);
    let mut a = ours.client();
    let mut b = redis.client();
    // Small thresholds, so sequences cross between the encodings.
    for con in [&mut a, &mut b] {
        config_set(con, "hash-max-listpack-entries", "6");
        config_set(con, "hash-max-listpack-value", "8");
    }
    // The runner takes an `Fn` closure: the connections live in RefCells.
    let (a, b) = (RefCell::new(a), RefCell::new(b));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(64));
    runner
        .run(&prop::collection::vec(op(), 1..40), |ops| {
            let (mut a, mut b) = (a.borrow_mut(), b.borrow_mut());
            for con in [&mut *a, &mut *b] {
                redis::cmd("FLUSHALL").query::<()>(con).unwrap();
            }
            for o in &ops {
                let c = to_cmd(o);
                prop_assert_eq!(run(&mut a, &c), run(&mut b, &c), "{:?}", o);
            }
            for k in 0..3 {
                let key = format!("k{k}");
                prop_assert_eq!(state(&mut a, &key), state(&mut b, &key), "{}", key);
            }
            Ok(())
        })
        .unwrap();
}
