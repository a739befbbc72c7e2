//! Sorted-set behaviour beyond the differential script: random operation
//! sequences compared with redis-server (through both encodings), a big
//! set's rank queries and full ZSCAN, ZRANK/ZREVRANK WITHSCORE (Redis 7.2,
//! which the 7.0 oracle lacks), and atomicity of cross-shard ZUNIONSTORE.

mod common;

use common::Proc;
use proptest::prelude::*;
use redis::Value;
use std::cell::RefCell;
use std::collections::HashSet;

/// Runs a command and renders its reply (or error) for comparison.
fn run(con: &mut redis::Connection, args: &[String]) -> String {
    let mut c = redis::cmd(&args[0]);
    for a in &args[1..] {
        c.arg(a.as_str());
    }
    match c.query::<Value>(con) {
        Ok(v) => format!("{v:?}"),
        Err(e) => format!("ERR {e}"),
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

const SCORES: &[&str] = &[
    "0", "1", "-1", "2.5", "0.1", "1e3", "-inf", "+inf", "3", "7", "(", "-0",
];

#[derive(Clone, Debug)]
enum Op {
    Add(usize, Vec<&'static str>, Vec<(usize, usize)>),
    Incr(usize, usize, usize),
    Rem(usize, Vec<usize>),
    RemRangeByScore(usize, usize, usize),
    LexAdd(Vec<usize>),
    LexRem(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let flags = prop::sample::subsequence(vec!["NX", "XX", "GT", "LT", "CH"], 0..=2);
    let pair = (0..SCORES.len() - 1, 0..40usize);
    prop_oneof![
        4 => (0..3usize, flags, prop::collection::vec(pair, 1..6)).prop_map(|(k, f, p)| Op::Add(k, f, p)),
        2 => (0..3usize, 0..SCORES.len(), 0..40usize).prop_map(|(k, s, m)| Op::Incr(k, s, m)),
        2 => (0..3usize, prop::collection::vec(0..40usize, 1..4)).prop_map(|(k, m)| Op::Rem(k, m)),
        1 => (0..3usize, 0..SCORES.len(), 0..SCORES.len()).prop_map(|(k, a, b)| Op::RemRangeByScore(k, a, b)),
        2 => prop::collection::vec(0..40usize, 1..8).prop_map(Op::LexAdd),
        1 => (0..40usize).prop_map(Op::LexRem),
    ]
}

fn member(i: usize) -> String {
    format!("m{:02}{}", i, "x".repeat(i % 3))
}

fn op_args(o: &Op) -> Vec<String> {
    let key = |k: usize| format!("zk{k}");
    match o {
        Op::Add(k, f, pairs) => {
            let mut v = vec!["ZADD".to_string(), key(*k)];
            v.extend(f.iter().map(|x| x.to_string()));
            for (sc, m) in pairs {
                v.push(SCORES[*sc].to_string());
                v.push(member(*m));
            }
            v
        }
        Op::Incr(k, sc, m) => s(&["ZINCRBY", &key(*k), SCORES[*sc], &member(*m)]),
        Op::Rem(k, ms) => {
            let mut v = vec!["ZREM".to_string(), key(*k)];
            v.extend(ms.iter().map(|m| member(*m)));
            v
        }
        Op::RemRangeByScore(k, a, b) => s(&["ZREMRANGEBYSCORE", &key(*k), SCORES[*a], SCORES[*b]]),
        Op::LexAdd(ms) => {
            let mut v = s(&["ZADD", "zlex"]);
            for m in ms {
                v.push("0".into());
                v.push(member(*m));
            }
            v
        }
        Op::LexRem(m) => s(&["ZREM", "zlex", &member(*m)]),
    }
}

/// Read queries asked after every sequence.
fn queries(bounds: &[(usize, usize, bool, bool)], ranks: &[usize]) -> Vec<Vec<String>> {
    let mut q = Vec::new();
    for k in ["zk0", "zk1", "zk2", "zlex"] {
        q.push(s(&["ZRANGE", k, "0", "-1", "WITHSCORES"]));
        q.push(s(&["ZCARD", k]));
        q.push(s(&["OBJECT", "ENCODING", k]));
        for &(a, b, ex1, ex2) in bounds {
            let (lo, hi) = (SCORES[a], SCORES[b]);
            let lo = if ex1 && lo != "(" {
                format!("({lo}")
            } else {
                lo.to_string()
            };
            let hi = if ex2 && hi != "(" {
                format!("({hi}")
            } else {
                hi.to_string()
            };
            q.push(s(&["ZRANGEBYSCORE", k, &lo, &hi, "WITHSCORES"]));
            q.push(s(&["ZREVRANGEBYSCORE", k, &hi, &lo, "LIMIT", "1", "3"]));
            q.push(s(&["ZCOUNT", k, &lo, &hi]));
        }
        for &r in ranks {
            q.push(s(&["ZRANK", k, &member(r)]));
            q.push(s(&["ZREVRANK", k, &member(r)]));
            q.push(s(&[
                "ZRANGE",
                k,
                &r.to_string(),
                &(r / 2).to_string(),
                "REV",
            ]));
        }
    }
    for &(a, b, ex1, ex2) in bounds {
        let lo = format!("{}{}", if ex1 { "(" } else { "[" }, member(a * 3));
        let hi = format!("{}{}", if ex2 { "(" } else { "[" }, member(b * 3));
        q.push(s(&["ZRANGEBYLEX", "zlex", &lo, &hi]));
        q.push(s(&["ZREVRANGEBYLEX", "zlex", &hi, &lo, "LIMIT", "1", "2"]));
        q.push(s(&["ZLEXCOUNT", "zlex", &lo, &hi]));
        q.push(s(&["ZRANGEBYLEX", "zlex", "-", &hi]));
    }
    q.push(s(&["ZUNION", "3", "zk0", "zk1", "zk2", "WITHSCORES"]));
    q.push(s(&["ZINTER", "2", "zk0", "zk1", "WITHSCORES"]));
    q.push(s(&["ZDIFF", "2", "zk0", "zk2", "WITHSCORES"]));
    q
}

#[test]
fn random_sequences_match_redis() {
    let redis = Proc::redis(&[]);
    let ours = Proc::ringkv(4, &[]);
    let (a, b) = (RefCell::new(redis.client()), RefCell::new(ours.client()));
    for con in [&mut *a.borrow_mut(), &mut *b.borrow_mut()] {
        // Small listpacks so sequences cross into the big encoding.
        run(
            con,
            &s(&["CONFIG", "SET", "zset-max-listpack-entries", "12"]),
        );
        run(con, &s(&["CONFIG", "SET", "zset-max-listpack-value", "5"]));
    }
    let cfg = ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(cfg, |(
        ops in prop::collection::vec(op(), 1..60),
        bounds in prop::collection::vec((0..SCORES.len() - 1, 0..SCORES.len() - 1, any::<bool>(), any::<bool>()), 1..4),
        ranks in prop::collection::vec(0..40usize, 1..4),
    )| {
        run(&mut a.borrow_mut(), &s(&["FLUSHALL"]));
        run(&mut b.borrow_mut(), &s(&["FLUSHALL"]));
        for o in &ops {
            let args = op_args(o);
            prop_assert_eq!(run(&mut a.borrow_mut(), &args), run(&mut b.borrow_mut(), &args), "{:?}", args);
        }
        for q in queries(&bounds, &ranks) {
            prop_assert_eq!(run(&mut a.borrow_mut(), &q), run(&mut b.borrow_mut(), &q), "{:?}", q);
        }
    });
}

#[test]
fn big_set_ranks_and_scan() {
    let ours = Proc::ringkv(4, &[]);
    let mut con = ours.client();
    const N: usize = 20_000;
    let mut p = redis::pipe();
    for chunk in (0..N).collect::<Vec<_>>().chunks(500) {
        let mut c = redis::cmd("ZADD");
        c.arg("big");
        for &i in chunk {
            // Scores in reverse of insertion order; members unique.
            c.arg((N - i) as f64 * 0.5).arg(format!("member:{i}"));
        }
        p.add_command(c).ignore();
    }
    p.query::<()>(&mut con).unwrap();
    let card: usize = redis::cmd("ZCARD").arg("big").query(&mut con).unwrap();
    assert_eq!(card, N);
    let enc: String = redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg("big")
        .query(&mut con)
        .unwrap();
    assert_eq!(enc, "skiplist");
    for i in (0..N).step_by(997) {
        let r: usize = redis::cmd("ZRANK")
            .arg("big")
            .arg(format!("member:{i}"))
            .query(&mut con)
            .unwrap();
        assert_eq!(r, N - 1 - i);
        let rr: usize = redis::cmd("ZREVRANK")
            .arg("big")
            .arg(format!("member:{i}"))
            .query(&mut con)
            .unwrap();
        assert_eq!(rr, i);
        let at: Vec<String> = redis::cmd("ZRANGE")
            .arg("big")
            .arg(r)
            .arg(r)
            .query(&mut con)
            .unwrap();
        assert_eq!(at, vec![format!("member:{i}")]);
    }
    // Deep ranges walk in order.
    let mid: Vec<String> = redis::cmd("ZRANGE")
        .arg("big")
        .arg(10_000)
        .arg(10_002)
        .query(&mut con)
        .unwrap();
    assert_eq!(mid, vec!["member:9999", "member:9998", "member:9997"]);
    let n: usize = redis::cmd("ZCOUNT")
        .arg("big")
        .arg("(100")
        .arg("200")
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 200);
    // A full ZSCAN returns every member exactly once, even while members
    // are removed mid-scan from both ends.
    let mut cursor = 0u64;
    let mut seen: Vec<String> = Vec::new();
    let mut steps = 0;
    loop {
        let (next, items): (u64, Vec<String>) = redis::cmd("ZSCAN")
            .arg("big")
            .arg(cursor)
            .arg("COUNT")
            .arg(100)
            .query(&mut con)
            .unwrap();
        seen.extend(items.chunks(2).map(|p| p[0].clone()));
        steps += 1;
        if steps == 50 {
            // Remove the 100 lowest and 100 highest ranks mid-scan.
            let _: usize = redis::cmd("ZREMRANGEBYRANK")
                .arg("big")
                .arg(0)
                .arg(99)
                .query(&mut con)
                .unwrap();
            let _: usize = redis::cmd("ZREMRANGEBYRANK")
                .arg("big")
                .arg(-100)
                .arg(-1)
                .query(&mut con)
                .unwrap();
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
        assert!(steps < 10_000, "scan does not end");
    }
    let uniq: HashSet<&String> = seen.iter().collect();
    assert_eq!(uniq.len(), seen.len(), "a member was returned twice");
    // Members present for the whole scan: all but the 200 removed.
    let now: Vec<String> = redis::cmd("ZRANGE")
        .arg("big")
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .unwrap();
    assert_eq!(now.len(), N - 200);
    for m in &now {
        assert!(uniq.contains(m), "{m} missed by ZSCAN");
    }
    // Pops from both ends.
    let popped: Vec<String> = redis::cmd("ZPOPMAX")
        .arg("big")
        .arg(2)
        .query(&mut con)
        .unwrap();
    assert_eq!(popped[0], "member:100");
    let _: usize = redis::cmd("ZREMRANGEBYRANK")
        .arg("big")
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .unwrap();
    let exists: i64 = redis::cmd("EXISTS").arg("big").query(&mut con).unwrap();
    assert_eq!(exists, 0);
}

#[test]
fn zrank_withscore() {
    let ours = Proc::ringkv(4, &[]);
    let mut con = ours.client();
    let _: i64 = redis::cmd("ZADD")
        .arg("z")
        .arg(&["1", "a", "2.5", "b", "0.1", "c"])
        .query(&mut con)
        .unwrap();
    let r: (i64, String) = redis::cmd("ZRANK")
        .arg("z")
        .arg("b")
        .arg("WITHSCORE")
        .query(&mut con)
        .unwrap();
    assert_eq!(r, (2, "2.5".to_string()));
    let r: (i64, String) = redis::cmd("ZREVRANK")
        .arg("z")
        .arg("c")
        .arg("withscore")
        .query(&mut con)
        .unwrap();
    assert_eq!(r, (2, "0.10000000000000001".to_string()));
    let v: Value = redis::cmd("ZRANK")
        .arg("z")
        .arg("nosuch")
        .arg("WITHSCORE")
        .query(&mut con)
        .unwrap();
    assert_eq!(v, Value::Nil);
    let e = redis::cmd("ZRANK")
        .arg("z")
        .arg("a")
        .arg("foo")
        .query::<Value>(&mut con)
        .unwrap_err();
    assert!(e.to_string().contains("syntax error"), "{e}");
    let e = redis::cmd("ZRANK")
        .arg("z")
        .arg("a")
        .arg("WITHSCORE")
        .arg("x")
        .query::<Value>(&mut con)
        .unwrap_err();
    assert!(e.to_string().contains("wrong number of arguments"), "{e}");

    // RESP3: the score is a double; a missing member is null.
    let mut raw = ours.raw();
    raw.cmd_str(&["HELLO", "3"]);
    assert_eq!(
        raw.cmd_str(&["ZRANK", "z", "b", "WITHSCORE"]),
        b"*2\r\n:2\r\n,2.5\r\n"
    );
    assert_eq!(
        raw.cmd_str(&["ZREVRANK", "z", "b", "WITHSCORE"]),
        b"*2\r\n:0\r\n,2.5\r\n"
    );
    assert_eq!(
        raw.cmd_str(&["ZRANK", "z", "nosuch", "WITHSCORE"]),
        b"_\r\n"
    );
    assert_eq!(raw.cmd_str(&["ZRANK", "nokey", "a", "WITHSCORE"]), b"_\r\n");
    let mut raw2 = ours.raw();
    assert_eq!(
        raw2.cmd_str(&["ZRANK", "nokey", "a", "WITHSCORE"]),
        b"*-1\r\n"
    );
    assert_eq!(
        raw2.cmd_str(&["ZRANK", "z", "a", "WITHSCORE"]),
        b"*2\r\n:1\r\n$1\r\n1\r\n"
    );
}

#[test]
fn cross_shard_store_is_atomic() {
    // Concurrent ZUNIONSTOREs over keys on two shards into a third key, and
    // readers of the destination: a reader only ever sees the full result.
    let ours = Proc::ringkv(4, &[]);
    let mut con = ours.client();
    // k1 and k2 live on different shards (see tests/scripts/keys.txt).
    let _: i64 = redis::cmd("ZADD")
        .arg("k1")
        .arg(&["1", "a", "2", "b"])
        .query(&mut con)
        .unwrap();
    let _: i64 = redis::cmd("ZADD")
        .arg("k2")
        .arg(&["10", "a", "20", "c"])
        .query(&mut con)
        .unwrap();
    let port = ours.port;
    let handles: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let c = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
                let mut con = c.get_connection().unwrap();
                for i in 0..200 {
                    if t % 2 == 0 {
                        let n: i64 = redis::cmd("ZUNIONSTORE")
                            .arg("k3")
                            .arg(2)
                            .arg("k1")
                            .arg("k2")
                            .query(&mut con)
                            .unwrap();
                        assert_eq!(n, 3);
                    } else {
                        let v: Vec<String> = redis::cmd("ZRANGE")
                            .arg("k3")
                            .arg(0)
                            .arg(-1)
                            .arg("WITHSCORES")
                            .query(&mut con)
                            .unwrap();
                        assert!(
                            v.is_empty() || v == ["b", "2", "a", "11", "c", "20"],
                            "{i}: {v:?}"
                        );
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}
