//! Generic key commands on a 4-shard ringkv, through the `redis` crate: SCAN
//! completeness while the keyspace grows, SCAN options, active expiry, and
//! cross-shard RENAME atomicity under concurrency. Every test is bounded in
//! time and stops only the server it started.

mod common;

use common::Proc;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Sets `keys` (value = key) in one pipeline.
fn set_all(con: &mut redis::Connection, keys: impl Iterator<Item = String>) {
    let mut p = redis::pipe();
    for k in keys {
        p.cmd("SET").arg(&k).arg(&k).ignore();
    }
    p.query::<()>(con).unwrap();
}

/// Runs a full SCAN with extra arguments; returns every key returned (with
/// repetitions) and the number of calls.
fn full_scan(con: &mut redis::Connection, extra: &[&str]) -> (Vec<String>, usize) {
    let mut cursor: u64 = 0;
    let mut out = Vec::new();
    let mut calls = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg(extra)
            .query(con)
            .unwrap();
        out.extend(keys);
        calls += 1;
        assert!(calls < 100_000, "SCAN does not terminate");
        if next == 0 {
            return (out, calls);
        }
        cursor = next;
    }
}

#[test]
fn scan_returns_every_key_while_another_client_inserts() {
    let srv = Proc::ringkv(4, &[]);
    let mut con = srv.client();
    const BASE: usize = 30_000;
    set_all(&mut con, (0..BASE).map(|i| format!("base:{i}")));

    // A writer grows the keyspace (splitting dict segments on every shard)
    // for the whole scan.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let mut w = srv.client();
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) && n < 400_000 {
                set_all(&mut w, (n..n + 500).map(|i| format!("new:{i}")));
                n += 500;
            }
            n
        })
    };
    let (seen, calls) = full_scan(&mut con, &["COUNT", "50"]);
    stop.store(true, Ordering::Relaxed);
    let inserted = writer.join().unwrap();
    assert!(inserted > 0);
    assert!(calls > 4, "one call per shard at least");
    let seen: HashSet<String> = seen.into_iter().collect();
    let missing: Vec<usize> = (0..BASE)
        .filter(|i| !seen.contains(&format!("base:{i}")))
        .collect();
    assert!(
        missing.is_empty(),
        "{} base keys never returned",
        missing.len()
    );
    for k in &seen {
        assert!(
            k.starts_with("base:") || k.starts_with("new:"),
            "bogus key {k}"
        );
    }
}

#[test]
fn scan_match_count_type() {
    let srv = Proc::ringkv(4, &[]);
    let mut con = srv.client();
    set_all(&mut con, (0..2000).map(|i| format!("m:{i}")));
    set_all(&mut con, (0..1000).map(|i| format!("o:{i}")));

    let want_m: HashSet<String> = (0..2000).map(|i| format!("m:{i}")).collect();
    for count in ["1", "7", "100", "100000"] {
        let (keys, _) = full_scan(&mut con, &["MATCH", "m:*", "COUNT", count]);
        let got: HashSet<String> = keys.iter().cloned().collect();
        assert_eq!(got, want_m, "MATCH m:* COUNT {count}");
        // The dict's cursor visits every key exactly once when nothing moves.
        assert_eq!(keys.len(), want_m.len(), "duplicates with COUNT {count}");
    }
    let (keys, _) = full_scan(&mut con, &["MATCH", "o:1?", "TYPE", "STRING"]);
    let got: HashSet<String> = keys.into_iter().collect();
    let want: HashSet<String> = (10..20).map(|i| format!("o:{i}")).collect();
    assert_eq!(got, want);
    let (keys, _) = full_scan(&mut con, &["TYPE", "string", "COUNT", "500"]);
    assert_eq!(keys.len(), 3000);
    let (keys, _) = full_scan(&mut con, &["TYPE", "list"]);
    assert!(keys.is_empty());

    // Expired keys are never returned.
    let mut p = redis::pipe();
    for i in 0..500 {
        p.cmd("PEXPIRE").arg(format!("o:{i}")).arg(1).ignore();
    }
    p.query::<()>(&mut con).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let (keys, _) = full_scan(&mut con, &["MATCH", "o:*"]);
    assert_eq!(keys.len(), 500);

    // Errors.
    let e = redis::cmd("SCAN").arg("x").query::<redis::Value>(&mut con);
    assert!(e.unwrap_err().to_string().contains("invalid cursor"));
    let e = redis::cmd("SCAN")
        .arg(0)
        .arg("COUNT")
        .arg(0)
        .query::<redis::Value>(&mut con);
    assert!(e.unwrap_err().to_string().contains("syntax error"));
}

/// Keys in the current database, as the server counts them: DBSIZE when the
/// server family provides it (it counts keys not yet reclaimed, so only
/// active expiry makes it fall), KEYS * otherwise.
fn key_count(con: &mut redis::Connection) -> usize {
    match redis::cmd("DBSIZE").query::<usize>(con) {
        Ok(n) => n,
        Err(_) => redis::cmd("KEYS")
            .arg("*")
            .query::<Vec<String>>(con)
            .unwrap()
            .len(),
    }
}

#[test]
fn untouched_keys_expire_actively() {
    let srv = Proc::ringkv(4, &[]);
    let mut con = srv.client();
    set_all(&mut con, (0..100).map(|i| format!("keep:{i}")));
    let mut p = redis::pipe();
    for i in 0..3000 {
        let k = format!("tmp:{i}");
        p.cmd("SET").arg(&k).arg(1).ignore();
        p.cmd("PEXPIRE").arg(&k).arg(300).ignore();
    }
    p.query::<()>(&mut con).unwrap();
    assert_eq!(key_count(&mut con), 3100);
    // Never touch the volatile keys again: only the background cycle may
    // reclaim them.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = key_count(&mut con);
        if n == 100 {
            break;
        }
        assert!(Instant::now() < deadline, "{n} keys left after 10 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let ttl: i64 = redis::cmd("TTL").arg("keep:1").query(&mut con).unwrap();
    assert_eq!(ttl, -1);
    let ttl: i64 = redis::cmd("TTL").arg("tmp:1").query(&mut con).unwrap();
    assert_eq!(ttl, -2);
}

#[test]
fn cross_shard_rename_is_atomic_under_concurrency() {
    let srv = Proc::ringkv(4, &[]);
    let mut con = srv.client();
    // "a" lives on shard 3 and "b" on shard 0 of 4.
    redis::cmd("SET")
        .arg("a")
        .arg("payload")
        .query::<()>(&mut con)
        .unwrap();
    redis::cmd("EXPIRE")
        .arg("a")
        .arg(1000)
        .query::<()>(&mut con)
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            let mut r = srv.client();
            std::thread::spawn(move || {
                let mut checks = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let n: i64 = redis::cmd("EXISTS")
                        .arg("a")
                        .arg("b")
                        .query(&mut r)
                        .unwrap();
                    assert_eq!(n, 1, "a and b: exactly one must exist");
                    checks += 1;
                }
                checks
            })
        })
        .collect();
    // A second writer copies whichever name exists to "c" (shard 1)
    // meanwhile; a successful COPY always carries the whole value.
    let copier = {
        let stop = stop.clone();
        let mut w = srv.client();
        std::thread::spawn(move || {
            let mut copies = 0;
            while !stop.load(Ordering::Relaxed) {
                let a: i64 = redis::cmd("COPY")
                    .arg("a")
                    .arg("c")
                    .arg("REPLACE")
                    .query(&mut w)
                    .unwrap();
                let b: i64 = redis::cmd("COPY")
                    .arg("b")
                    .arg("c")
                    .arg("REPLACE")
                    .query(&mut w)
                    .unwrap();
                if a + b > 0 {
                    let v: String = redis::cmd("GET").arg("c").query(&mut w).unwrap();
                    assert_eq!(v, "payload");
                    copies += 1;
                }
            }
            copies
        })
    };
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut renames = 0;
    let mut here = "a";
    while Instant::now() < deadline {
        let there = if here == "a" { "b" } else { "a" };
        let nx = renames % 2 == 0;
        if nx {
            let r: i64 = redis::cmd("RENAMENX")
                .arg(here)
                .arg(there)
                .query(&mut con)
                .unwrap();
            assert_eq!(r, 1);
        } else {
            redis::cmd("RENAME")
                .arg(here)
                .arg(there)
                .query::<()>(&mut con)
                .unwrap();
        }
        here = there;
        renames += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let checks: u64 = readers.into_iter().map(|h| h.join().unwrap()).sum();
    let copies = copier.join().unwrap();
    assert!(renames > 10 && checks > 10 && copies > 0);
    let v: String = redis::cmd("GET").arg(here).query(&mut con).unwrap();
    assert_eq!(v, "payload");
    let ttl: i64 = redis::cmd("TTL").arg(here).query(&mut con).unwrap();
    assert!(ttl > 900, "TTL travelled with the key: {ttl}");
    let ttl: i64 = redis::cmd("TTL").arg("c").query(&mut con).unwrap();
    assert!(ttl > 900, "COPY keeps the TTL: {ttl}");
}
