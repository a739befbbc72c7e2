//! MULTI/EXEC/WATCH over TCP, beyond the differential script
//! (tests/scripts/multi.txt): atomicity across shards under concurrent
//! clients, a WATCH race, WATCH across connections and shards, EXEC in the
//! AOF (replayed whole; a torn EXEC record dropped whole), a huge queue,
//! and redis-rs's transaction helpers.

mod common;

use common::Proc;
use std::path::{Path, PathBuf};

const ACCOUNTS: usize = 8;
const START: i64 = 1000;

fn account(i: usize) -> String {
    format!("acct:{i}")
}

#[test]
fn exec_is_atomic_across_shards() {
    let p = Proc::ringkv(4, &[]);
    let mut c = p.client();
    for i in 0..ACCOUNTS {
        let _: () = redis::cmd("SET")
            .arg(account(i))
            .arg(START)
            .query(&mut c)
            .unwrap();
    }
    let total = START * ACCOUNTS as i64;
    std::thread::scope(|s| {
        for w in 0..4 {
            let p = &p;
            s.spawn(move || {
                let mut c = p.client();
                for n in 0..300 {
                    let from = account((w + n) % ACCOUNTS);
                    let to = account((w * 3 + n * 5 + 1) % ACCOUNTS);
                    let amount = (n % 7) as i64 + 1;
                    let (_, _): (i64, i64) = redis::pipe()
                        .atomic()
                        .cmd("DECRBY")
                        .arg(&from)
                        .arg(amount)
                        .cmd("INCRBY")
                        .arg(&to)
                        .arg(amount)
                        .query(&mut c)
                        .unwrap();
                }
            });
        }
        for r in 0..2 {
            let p = &p;
            s.spawn(move || {
                let mut c = p.client();
                let keys: Vec<String> = (0..ACCOUNTS).map(account).collect();
                for n in 0..300 {
                    // Alternate a transaction of single GETs and an MGET.
                    let vals: Vec<i64> = if (n + r) % 2 == 0 {
                        let mut pipe = redis::pipe();
                        pipe.atomic();
                        for k in &keys {
                            pipe.cmd("GET").arg(k);
                        }
                        pipe.query(&mut c).unwrap()
                    } else {
                        redis::cmd("MGET").arg(&keys).query(&mut c).unwrap()
                    };
                    assert_eq!(vals.iter().sum::<i64>(), total, "read {n}: {vals:?}");
                }
            });
        }
    });
    let keys: Vec<String> = (0..ACCOUNTS).map(account).collect();
    let vals: Vec<i64> = redis::cmd("MGET").arg(&keys).query(&mut c).unwrap();
    assert_eq!(vals.iter().sum::<i64>(), total);
}

#[test]
fn watch_race_counts_every_increment_once() {
    let p = Proc::ringkv(4, &[]);
    const CLIENTS: usize = 6;
    const EACH: usize = 60;
    std::thread::scope(|s| {
        for _ in 0..CLIENTS {
            let p = &p;
            s.spawn(move || {
                let mut c = p.client();
                let mut done = 0;
                let mut tries = 0;
                while done < EACH {
                    tries += 1;
                    assert!(tries < 100_000, "no progress");
                    let _: () = redis::cmd("WATCH").arg("counter").query(&mut c).unwrap();
                    let v: Option<i64> = redis::cmd("GET").arg("counter").query(&mut c).unwrap();
                    let res: Option<((),)> = redis::pipe()
                        .atomic()
                        .cmd("SET")
                        .arg("counter")
                        .arg(v.unwrap_or(0) + 1)
                        .query(&mut c)
                        .unwrap();
                    if res.is_some() {
                        done += 1;
                    }
                }
            });
        }
    });
    let v: i64 = redis::cmd("GET")
        .arg("counter")
        .query(&mut p.client())
        .unwrap();
    assert_eq!(v, (CLIENTS * EACH) as i64);
}

#[test]
fn watch_sees_writes_of_other_clients_on_any_shard() {
    for server in [Proc::redis(&[]), Proc::ringkv(4, &[])] {
        let mut a = server.client();
        let mut b = server.client();
        for n in 0..16 {
            let key = format!("w{n}");
            let _: () = redis::cmd("WATCH").arg(&key).query(&mut a).unwrap();
            let _: () = redis::cmd("SET").arg(&key).arg("x").query(&mut b).unwrap();
            let res: Option<(String,)> = redis::pipe()
                .atomic()
                .cmd("SET")
                .arg(&key)
                .arg("mine")
                .query(&mut a)
                .unwrap();
            assert_eq!(res, None, "{}: {key}", server.label);
            // An expiry set by another client touches the key too.
            let _: () = redis::cmd("WATCH").arg(&key).query(&mut a).unwrap();
            let _: () = redis::cmd("EXPIRE")
                .arg(&key)
                .arg(100)
                .query(&mut b)
                .unwrap();
            let res: Option<(String,)> = redis::pipe()
                .atomic()
                .cmd("GET")
                .arg(&key)
                .query(&mut a)
                .unwrap();
            assert_eq!(res, None, "{}: {key} after EXPIRE", server.label);
            // Untouched, it runs.
            let _: () = redis::cmd("WATCH").arg(&key).query(&mut a).unwrap();
            let res: Option<(String,)> = redis::pipe()
                .atomic()
                .cmd("GET")
                .arg(&key)
                .query(&mut a)
                .unwrap();
            assert_eq!(res, Some(("x".to_string(),)), "{}", server.label);
        }
    }
}

#[test]
fn redis_rs_transaction_helper_retries_until_it_wins() {
    let p = Proc::ringkv(4, &[]);
    let mut c = p.client();
    let _: () = redis::cmd("SET").arg("a").arg(10).query(&mut c).unwrap();
    let _: () = redis::cmd("SET").arg("b").arg(0).query(&mut c).unwrap();
    let (a, b): (i64, i64) = redis::transaction(&mut c, &["a", "b"], |con, pipe| {
        let a: i64 = redis::cmd("GET").arg("a").query(con)?;
        pipe.cmd("SET")
            .arg("a")
            .arg(a - 3)
            .ignore()
            .cmd("INCRBY")
            .arg("b")
            .arg(3)
            .ignore()
            .cmd("GET")
            .arg("a")
            .cmd("GET")
            .arg("b")
            .query(con)
    })
    .unwrap();
    assert_eq!((a, b), (7, 3));
}

#[test]
fn a_huge_queue_runs_and_other_clients_stay_served() {
    let p = Proc::ringkv(4, &[]);
    let mut c = p.client();
    const N: usize = 100_000;
    let mut pipe = redis::pipe();
    pipe.atomic();
    for i in 0..N {
        pipe.cmd("SET")
            .arg(format!("q{}", i % 1000))
            .arg(i)
            .ignore();
    }
    pipe.cmd("DBSIZE");
    let (n,): (usize,) = pipe.query(&mut c).unwrap();
    assert_eq!(n, 1000);
    let mut other = p.client();
    let pong: String = redis::cmd("PING").query(&mut other).unwrap();
    assert_eq!(pong, "PONG");
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("appendonlydir"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".incr.aof"))
        .collect();
    v.sort();
    v
}

fn multi_set(c: &mut redis::Connection, prefix: &str, n: usize) {
    let mut pipe = redis::pipe();
    pipe.atomic();
    for i in 0..n {
        pipe.cmd("SET").arg(format!("{prefix}{i}")).arg(i).ignore();
    }
    pipe.cmd("SELECT").arg(3).ignore();
    pipe.cmd("SET").arg(format!("{prefix}db3")).arg(1).ignore();
    pipe.cmd("SELECT").arg(0).ignore();
    let _: () = pipe.query(c).unwrap();
}

#[test]
fn exec_replays_whole_from_the_aof_and_a_torn_exec_is_dropped_whole() {
    let flags = ["--appendonly", "yes", "--appendfsync", "always"];
    let mut p = Proc::ringkv(4, &flags);
    let mut c = p.client();
    multi_set(&mut c, "first", 32);
    p.kill9();
    let dir = p.dir.clone();
    drop(p);
    let mut p = Proc::ringkv_in(&dir, 4, &flags);
    let mut c2 = p.client();
    let n: usize = redis::cmd("DBSIZE").query(&mut c2).unwrap();
    assert_eq!(n, 32, "the whole EXEC replays");
    let _: () = redis::cmd("SELECT").arg(3).query(&mut c2).unwrap();
    let v: Option<String> = redis::cmd("GET").arg("firstdb3").query(&mut c2).unwrap();
    assert_eq!(v.as_deref(), Some("1"), "SELECT inside EXEC replays");
    // One more EXEC, whose record is then torn.
    let mut c = p.client();
    multi_set(&mut c, "second", 32);
    p.kill9();
    drop(p);
    let before: Vec<(PathBuf, u64)> = segments(&dir)
        .into_iter()
        .map(|s| {
            let len = std::fs::metadata(&s).unwrap().len();
            (s, len)
        })
        .collect();
    let tail = b"*1\r\n$4\r\nEXEC\r\n";
    let (seg, len) = before
        .iter()
        .find(|(s, _)| std::fs::read(s).unwrap().ends_with(tail))
        .expect("a segment ends with the EXEC record");
    std::fs::OpenOptions::new()
        .write(true)
        .open(seg)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let p = Proc::ringkv_in(&dir, 4, &flags);
    let mut c = p.client();
    let n: usize = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 32, "none of the torn EXEC replays, all of the first");
    let _: () = redis::cmd("SELECT").arg(3).query(&mut c).unwrap();
    let n: usize = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 1);
}

#[test]
fn redis_py_pipelines_and_transactions_work_unchanged() {
    let p = Proc::ringkv(4, &[]);
    common::redis_py(p.port, &["transactions"]);
}

#[test]
fn exec_with_bgsave_and_turning_the_aof_on_does_not_deadlock() {
    let p = Proc::ringkv(4, &[]);
    let mut c = p.client();
    let (saving, ok): (String, String) = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("k")
        .arg(1)
        .ignore()
        .cmd("BGSAVE")
        .cmd("CONFIG")
        .arg(&["SET", "appendonly", "yes"])
        .query(&mut c)
        .unwrap();
    assert_eq!(
        (saving.as_str(), ok.as_str()),
        ("Background saving started", "OK")
    );
    // Both finish once the EXEC has released its shards.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let info: String = redis::cmd("INFO").arg("persistence").query(&mut c).unwrap();
        let done = info.contains("rdb_bgsave_in_progress:0")
            && info.contains("aof_enabled:1")
            && info.contains("aof_rewrite_in_progress:0");
        if done {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{info}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let v: i64 = redis::cmd("GET").arg("k").query(&mut c).unwrap();
    assert_eq!(v, 1);
}

#[test]
fn client_list_shows_a_client_inside_multi() {
    for server in [Proc::redis(&[]), Proc::ringkv(4, &[])] {
        let mut a = server.raw();
        let id = String::from_utf8(a.cmd(&[b"CLIENT", b"ID"])).unwrap();
        let id = id.trim_start_matches(':').trim().to_string();
        assert_eq!(a.cmd(&[b"MULTI"]), b"+OK\r\n");
        assert_eq!(a.cmd(&[b"SET", b"x", b"1"]), b"+QUEUED\r\n");
        assert_eq!(a.cmd(&[b"SET", b"y", b"1"]), b"+QUEUED\r\n");
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut server.client())
            .unwrap();
        let line = list
            .lines()
            .find(|l| l.starts_with(&format!("id={id} ")))
            .unwrap_or_else(|| panic!("{}: no client {id} in {list}", server.label));
        assert!(
            line.contains(" flags=x ") && line.contains(" multi=2 "),
            "{}: {line}",
            server.label
        );
        assert_eq!(a.cmd(&[b"DISCARD"]), b"+OK\r\n");
    }
}
