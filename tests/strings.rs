//! String family behaviour that a differential script cannot show: atomicity
//! of multi-shard MSET/MSETNX/MGET under concurrency, and INCR from many
//! clients, against ringkv with 4 shards over TCP.

mod common;

use common::Proc;
use ringkv::shard::routing::SlotTable;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const SHARDS: usize = 4;

/// `n` keys named `{prefix}{i}`-ish, each on a different shard.
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

#[test]
fn keys_really_span_shards() {
    let table = SlotTable::contiguous(SHARDS);
    let ks = keys_on_distinct_shards("k", 4);
    let mut shards: Vec<usize> = ks.iter().map(|k| table.shard_of(k.as_bytes())).collect();
    shards.sort();
    assert_eq!(shards, vec![0, 1, 2, 3]);
}

#[test]
fn mset_is_never_seen_half_done() {
    let server = Proc::ringkv(SHARDS, &[]);
    let keys = keys_on_distinct_shards("pair", 4);
    {
        let mut c = server.client();
        let mut cmd = redis::cmd("MSET");
        for k in &keys {
            cmd.arg(k).arg("init");
        }
        cmd.query::<()>(&mut c).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(2);
    std::thread::scope(|s| {
        for w in 0..3 {
            let (keys, stop, server) = (&keys, &stop, &server);
            s.spawn(move || {
                let mut c = server.client();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) && i < 5000 {
                    let v = format!("w{w}-{i}");
                    let mut cmd = redis::cmd("MSET");
                    // Writers also vary the order the shards are named in.
                    for k in keys.iter().cycle().skip(w).take(keys.len()) {
                        cmd.arg(k).arg(&v);
                    }
                    cmd.query::<()>(&mut c).unwrap();
                    i += 1;
                }
            });
        }
        for _ in 0..3 {
            let (keys, stop, reads, server) = (&keys, &stop, &reads, &server);
            s.spawn(move || {
                let mut c = server.client();
                while !stop.load(Ordering::Relaxed) {
                    let vals: Vec<String> = redis::cmd("MGET").arg(keys).query(&mut c).unwrap();
                    assert!(
                        vals.iter().all(|v| v == &vals[0]),
                        "MGET saw a half-applied MSET: {vals:?}"
                    );
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(reads.load(Ordering::Relaxed) > 0);
}

#[test]
fn msetnx_is_all_or_nothing_across_shards() {
    let server = Proc::ringkv(SHARDS, &[]);
    let mut c = server.client();

    // One existing key blocks the whole MSETNX; nothing else is written.
    let ks = keys_on_distinct_shards("nx", 4);
    redis::cmd("SET")
        .arg(&ks[2])
        .arg("old")
        .query::<()>(&mut c)
        .unwrap();
    let mut cmd = redis::cmd("MSETNX");
    for k in &ks {
        cmd.arg(k).arg("new");
    }
    assert_eq!(cmd.query::<i64>(&mut c).unwrap(), 0);
    let vals: Vec<Option<String>> = redis::cmd("MGET").arg(&ks).query(&mut c).unwrap();
    assert_eq!(vals, vec![None, None, Some("old".into()), None]);

    // Racing MSETNX on fresh keys: exactly one wins, and wins everywhere.
    for round in 0..30 {
        let ks = keys_on_distinct_shards(&format!("race{round}-"), 4);
        let barrier = Barrier::new(4);
        let wins: Vec<i64> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|t| {
                    let (ks, barrier, server) = (&ks, &barrier, &server);
                    s.spawn(move || {
                        let mut c = server.client();
                        let mut cmd = redis::cmd("MSETNX");
                        for k in ks.iter().cycle().skip(t).take(ks.len()) {
                            cmd.arg(k).arg(format!("t{t}"));
                        }
                        barrier.wait();
                        cmd.query::<i64>(&mut c).unwrap()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(wins.iter().sum::<i64>(), 1, "round {round}: {wins:?}");
        let winner = format!("t{}", wins.iter().position(|&w| w == 1).unwrap());
        let vals: Vec<String> = redis::cmd("MGET").arg(&ks).query(&mut c).unwrap();
        assert!(vals.iter().all(|v| *v == winner), "round {round}: {vals:?}");
    }
}

#[test]
fn incr_from_many_clients_sums_exactly() {
    let server = Proc::ringkv(SHARDS, &[]);
    let keys = keys_on_distinct_shards("ctr", 2);
    const THREADS: i64 = 8;
    const ROUNDS: i64 = 300;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (keys, server) = (&keys, &server);
            s.spawn(move || {
                let mut c = server.client();
                for i in 0..ROUNDS {
                    redis::cmd("INCR")
                        .arg(&keys[0])
                        .query::<i64>(&mut c)
                        .unwrap();
                    let by = if (i + t) % 2 == 0 { 3 } else { -1 };
                    redis::cmd("INCRBY")
                        .arg(&keys[1])
                        .arg(by)
                        .query::<i64>(&mut c)
                        .unwrap();
                    redis::cmd("DECRBY")
                        .arg(&keys[1])
                        .arg(1)
                        .query::<i64>(&mut c)
                        .unwrap();
                }
            });
        }
    });
    let mut c = server.client();
    let a: i64 = redis::cmd("GET").arg(&keys[0]).query(&mut c).unwrap();
    let b: i64 = redis::cmd("GET").arg(&keys[1]).query(&mut c).unwrap();
    assert_eq!(a, THREADS * ROUNDS);
    // Per thread: ROUNDS/2 rounds of +3 and ROUNDS/2 of -1, minus 1 each round.
    assert_eq!(b, THREADS * (ROUNDS / 2 * 3 - ROUNDS / 2 - ROUNDS));
}

#[test]
fn incrbyfloat_from_many_clients_is_exact() {
    let server = Proc::ringkv(SHARDS, &[]);
    std::thread::scope(|s| {
        for _ in 0..4 {
            let server = &server;
            s.spawn(move || {
                let mut c = server.client();
                for _ in 0..200 {
                    redis::cmd("INCRBYFLOAT")
                        .arg("fl")
                        .arg("0.5")
                        .query::<String>(&mut c)
                        .unwrap();
                }
            });
        }
    });
    let mut c = server.client();
    let v: String = redis::cmd("GET").arg("fl").query(&mut c).unwrap();
    assert_eq!(v, "400");
}

#[test]
fn pipelined_cross_shard_commands_keep_their_order() {
    let server = Proc::ringkv(SHARDS, &[]);
    let ks = keys_on_distinct_shards("pipe", 4);
    let mut raw = server.raw();
    let mut out = Vec::new();
    let n = 100;
    for i in 0..n {
        let v = i.to_string();
        let mut mset: Vec<&[u8]> = vec![b"MSET"];
        for k in &ks {
            mset.push(k.as_bytes());
            mset.push(v.as_bytes());
        }
        out.extend(common::encode_cmd(&mset));
        out.extend(common::encode_cmd(&[b"GET", ks[2].as_bytes()]));
        out.extend(common::encode_cmd(&[b"INCR", b"pipe-counter"]));
        out.extend(common::encode_cmd(&[
            b"MGET",
            ks[0].as_bytes(),
            ks[3].as_bytes(),
        ]));
    }
    raw.send(&out);
    for i in 0..n {
        let v = i.to_string();
        assert_eq!(raw.read_reply().unwrap(), b"+OK\r\n");
        assert_eq!(
            raw.read_reply().unwrap(),
            format!("${}\r\n{v}\r\n", v.len()).into_bytes()
        );
        assert_eq!(
            raw.read_reply().unwrap(),
            format!(":{}\r\n", i + 1).into_bytes()
        );
        assert_eq!(
            raw.read_reply().unwrap(),
            format!("*2\r\n${0}\r\n{1}\r\n${0}\r\n{1}\r\n", v.len(), v).into_bytes()
        );
    }
}
