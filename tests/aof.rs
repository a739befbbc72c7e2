//! The append-only file over TCP: replay of every type and database (also
//! onto a different shard count), absolute TTLs, kill -9 under a write load
//! with `appendfsync always` (every acknowledged write survives, multi-shard
//! MSETs all or nothing) and `everysec` (the loss is measured), torn tails,
//! corrupt records, check-aof, turning AOF on at run time, BGREWRITEAOF and
//! kill -9 during BGREWRITEAOF (the previous files stay intact and load).

mod common;

use common::Proc;
use common::data::{keyspace, populate, run_ringkv};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const AOF: [&str; 2] = ["--appendonly", "yes"];

fn flags(fsync: &str) -> Vec<&str> {
    vec!["--appendonly", "yes", "--appendfsync", fsync]
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("appendonlydir"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".incr.aof"))
        .filter(|p| std::fs::metadata(p).unwrap().len() > 0)
        .collect();
    v.sort();
    v
}

fn info_field(c: &mut redis::Connection, name: &str) -> String {
    let info: String = redis::cmd("INFO").arg("persistence").query(c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn every_type_and_database_replays_with_absolute_ttls() {
    for (shards, reload_shards) in [(1, 1), (4, 4), (4, 2)] {
        let p = Proc::ringkv(shards, &flags("everysec"));
        let mut c = p.client();
        populate(&mut c);
        // Commands whose effect is not their arguments.
        let _: () = redis::cmd("SADD")
            .arg("pop")
            .arg(&["a", "b", "c", "d", "e"])
            .query(&mut c)
            .unwrap();
        let _: Vec<String> = redis::cmd("SPOP").arg("pop").arg(2).query(&mut c).unwrap();
        let _: String = redis::cmd("INCRBYFLOAT")
            .arg("float")
            .arg("1.25")
            .query(&mut c)
            .unwrap();
        let _: String = redis::cmd("HINCRBYFLOAT")
            .arg("hf")
            .arg("f")
            .arg("0.5")
            .query(&mut c)
            .unwrap();
        let _: () = redis::cmd("MSET")
            .arg(&["m1", "1", "m2", "2", "m3", "3"])
            .query(&mut c)
            .unwrap();
        let _: i64 = redis::cmd("DEL")
            .arg(&["m3", "s:empty"])
            .query(&mut c)
            .unwrap();
        let _: () = redis::cmd("RENAME")
            .arg("m1")
            .arg("m1b")
            .query(&mut c)
            .unwrap();
        let _: i64 = redis::cmd("EXPIRE")
            .arg("m2")
            .arg(1000)
            .query(&mut c)
            .unwrap();
        let want = keyspace(&p);
        // The AOF has reached the disk once `everysec` had a second.
        std::thread::sleep(Duration::from_millis(1500));
        let dir = p.dir.clone();
        drop(c);
        drop(p);
        let p = Proc::ringkv_in(&dir, reload_shards, &AOF);
        assert_eq!(keyspace(&p), want, "{shards} → {reload_shards} shards");
    }
}

/// Kills the server with SIGKILL while one client SETs single keys and
/// another MSETs pairs of keys on different shards. Returns the
/// acknowledged singles, the acknowledged pairs and how many pairs were sent.
fn crash_under_load(p: &mut Proc) -> (Vec<u64>, Vec<u64>, u64) {
    let port = p.port;
    let single = std::thread::spawn(move || {
        let mut c = common::Raw::connect(port);
        let mut acked = Vec::new();
        for i in 0u64..5_000_000 {
            let k = format!("single:{i}");
            match c.try_cmd(&[b"SET", k.as_bytes(), i.to_string().as_bytes()]) {
                Some(r) if r == b"+OK\r\n" => acked.push(i),
                _ => break,
            }
        }
        acked
    });
    let pair = std::thread::spawn(move || {
        let mut c = common::Raw::connect(port);
        let mut acked = Vec::new();
        let mut sent = 0;
        for i in 0u64..5_000_000 {
            sent = i + 1;
            let (a, b, v) = (format!("pa:{i}"), format!("pb:{i}"), i.to_string());
            let cmd: [&[u8]; 5] = [
                b"MSET",
                a.as_bytes(),
                v.as_bytes(),
                b.as_bytes(),
                v.as_bytes(),
            ];
            match c.try_cmd(&cmd) {
                Some(r) if r == b"+OK\r\n" => acked.push(i),
                _ => break,
            }
        }
        (acked, sent)
    });
    std::thread::sleep(Duration::from_millis(1500));
    p.kill9();
    let singles = single.join().unwrap();
    let (pairs, sent) = pair.join().unwrap();
    (singles, pairs, sent)
}

/// Checks a restarted server against what was acknowledged; returns how
/// many acknowledged writes are missing. Pairs are always all or nothing.
fn lost_after_restart(p: &Proc, singles: &[u64], pairs: &[u64], sent: u64) -> usize {
    let mut c = p.client();
    let mut lost = 0;
    for chunk in singles.chunks(1000) {
        let keys: Vec<String> = chunk.iter().map(|i| format!("single:{i}")).collect();
        let vals: Vec<Option<u64>> = redis::cmd("MGET").arg(&keys).query(&mut c).unwrap();
        lost += vals.iter().filter(|v| v.is_none()).count();
    }
    let acked: std::collections::HashSet<u64> = pairs.iter().copied().collect();
    for i in 0..sent {
        let (a, b) = (format!("pa:{i}"), format!("pb:{i}"));
        let vals: Vec<Option<u64>> = redis::cmd("MGET").arg(&a).arg(&b).query(&mut c).unwrap();
        assert_eq!(vals[0], vals[1], "MSET {i} is torn");
        if vals[0].is_none() && acked.contains(&i) {
            lost += 1;
        }
    }
    lost
}

#[test]
fn kill9_with_appendfsync_always_loses_no_acknowledged_write() {
    for shards in [1, 4] {
        let mut p = Proc::ringkv(shards, &flags("always"));
        let (singles, pairs, sent) = crash_under_load(&mut p);
        assert!(singles.len() > 10 && pairs.len() > 10, "too few writes");
        let p2 = Proc::ringkv_in(&p.dir, shards, &AOF);
        let lost = lost_after_restart(&p2, &singles, &pairs, sent);
        assert_eq!(lost, 0, "{shards} shards: acknowledged writes lost");
    }
}

#[test]
fn kill9_with_appendfsync_everysec_loses_no_acknowledged_write() {
    for shards in [1, 4] {
        let mut p = Proc::ringkv(shards, &flags("everysec"));
        let (singles, pairs, sent) = crash_under_load(&mut p);
        let p2 = Proc::ringkv_in(&p.dir, shards, &AOF);
        let lost = lost_after_restart(&p2, &singles, &pairs, sent);
        // A process crash loses nothing the kernel has: the writer hands
        // records to the kernel every event-loop turn; fsync only matters
        // for a machine crash.
        println!(
            "everysec, {shards} shards: {lost} of {} acknowledged writes lost",
            singles.len() + pairs.len()
        );
        assert_eq!(lost, 0);
    }
}

/// Writes a few keys with `appendfsync always` and returns the server's
/// directory (after stopping it) and its keyspace.
fn small_aof(shards: usize) -> (PathBuf, common::data::Keyspace) {
    let p = Proc::ringkv(shards, &flags("always"));
    let mut c = p.client();
    for i in 0..50 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    let ks = keyspace(&p);
    (p.dir.clone(), ks)
}

fn start_fails(dir: &Path, extra: &[&str]) -> String {
    let port = common::free_port().to_string();
    let mut args = vec!["--port", &port, "--appendonly", "yes"];
    args.extend_from_slice(extra);
    let (ok, text) = run_ringkv(&args, dir);
    assert!(!ok, "ringkv started on a damaged AOF: {text}");
    text
}

#[test]
fn torn_tail_is_truncated_or_refused_as_configured() {
    let (dir, _) = small_aof(1);
    let seg = segments(&dir).pop().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let text = start_fails(&dir, &["--aof-load-truncated", "no"]);
    assert!(
        text.contains(seg.to_str().unwrap()) && text.contains("offset"),
        "{text}"
    );
    let p = Proc::ringkv_in(&dir, 1, &AOF);
    let mut c = p.client();
    let n: usize = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 49, "only the torn last record is dropped");
    let _: () = redis::cmd("SET").arg("after").arg(1).query(&mut c).unwrap();
    let dir = p.dir.clone();
    drop(c);
    drop(p);
    let p = Proc::ringkv_in(&dir, 1, &AOF);
    let n: usize = redis::cmd("DBSIZE").query(&mut p.client()).unwrap();
    assert_eq!(n, 50, "writes after the truncation replay");
}

#[test]
fn corrupt_record_refuses_to_start_and_check_aof_finds_and_fixes_it() {
    let (dir, _) = small_aof(1);
    let aofdir = dir.join("appendonlydir");
    let (ok, text) = run_ringkv(&["check-aof", aofdir.to_str().unwrap()], &dir);
    assert!(ok, "{text}");
    let seg = segments(&dir).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&seg, &bytes).unwrap();
    let text = start_fails(&dir, &[]);
    assert!(
        text.contains("check-aof") && text.contains("offset"),
        "{text}"
    );
    let (ok, text) = run_ringkv(&["check-aof", aofdir.to_str().unwrap()], &dir);
    assert!(!ok && text.contains("offset"), "{text}");
    let (ok, text) = run_ringkv(&["check-aof", "--fix", aofdir.to_str().unwrap()], &dir);
    assert!(ok, "{text}");
    let p = Proc::ringkv_in(&dir, 1, &AOF);
    let n: usize = redis::cmd("DBSIZE").query(&mut p.client()).unwrap();
    assert!(n > 0 && n < 50, "the records before the damage load: {n}");
}

#[test]
fn config_set_appendonly_writes_a_base_and_rewrite_compacts() {
    for shards in [1, 4] {
        let p = Proc::ringkv(shards, &[]);
        let mut c = p.client();
        populate(&mut c);
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("appendonly")
            .arg("yes")
            .query(&mut c)
            .unwrap();
        assert_eq!(info_field(&mut c, "aof_enabled"), "1");
        let _: () = redis::cmd("SET")
            .arg("after-on")
            .arg("1")
            .query(&mut c)
            .unwrap();
        let want = keyspace(&p);
        std::thread::sleep(Duration::from_millis(1500));
        let dir = p.dir.clone();
        drop(c);
        drop(p);
        let p = Proc::ringkv_in(&dir, shards, &AOF);
        assert_eq!(keyspace(&p), want, "base + segments after CONFIG SET");

        // BGREWRITEAOF while writing, then more writes, then a crash.
        let mut c = p.client();
        for i in 0..2000 {
            let _: () = redis::cmd("SET")
                .arg(format!("w{i}"))
                .arg(i)
                .query(&mut c)
                .unwrap();
        }
        let r: String = redis::cmd("BGREWRITEAOF").query(&mut c).unwrap();
        assert!(r.starts_with("Background append only file rewriting"));
        for i in 0..2000 {
            let _: () = redis::cmd("INCR")
                .arg(format!("w{i}"))
                .query(&mut c)
                .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while info_field(&mut c, "aof_rewrite_in_progress") != "0"
            || info_field(&mut c, "aof_rewrites") == "0"
        {
            assert!(Instant::now() < deadline, "rewrite did not finish");
            std::thread::sleep(Duration::from_millis(20));
        }
        let _: () = redis::cmd("SET")
            .arg("after-rewrite")
            .arg(1)
            .query(&mut c)
            .unwrap();
        let want = keyspace(&p);
        std::thread::sleep(Duration::from_millis(1500));
        let dir = p.dir.clone();
        drop(c);
        drop(p);
        let p = Proc::ringkv_in(&dir, shards, &AOF);
        assert_eq!(keyspace(&p), want, "after BGREWRITEAOF");
        let v: i64 = redis::cmd("GET")
            .arg("w1999")
            .query(&mut p.client())
            .unwrap();
        assert_eq!(v, 2000);
    }
}

#[test]
fn automatic_rewrite_starts_when_the_aof_doubles() {
    let p = Proc::ringkv(
        2,
        &[
            "--appendonly",
            "yes",
            "--auto-aof-rewrite-min-size",
            "64kb",
            "--auto-aof-rewrite-percentage",
            "0",
        ],
    );
    let mut c = p.client();
    let big = "x".repeat(1000);
    for i in 0..200 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{}", i % 20))
            .arg(&big)
            .query(&mut c)
            .unwrap();
    }
    // Enabled once every write is in: the rewrite sees all of them.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("auto-aof-rewrite-percentage")
        .arg(100)
        .query(&mut c)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while info_field(&mut c, "aof_rewrites") == "0" {
        assert!(Instant::now() < deadline, "no automatic rewrite");
        std::thread::sleep(Duration::from_millis(20));
    }
    while info_field(&mut c, "aof_rewrite_in_progress") != "0" {
        assert!(Instant::now() < deadline, "rewrite did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let size: u64 = info_field(&mut c, "aof_current_size").parse().unwrap();
    assert!(
        size < 100_000,
        "the rewrite compacted 200 KB of writes to 20 keys: {size}"
    );
    let want = keyspace(&p);
    let dir = p.dir.clone();
    drop(c);
    drop(p);
    let p = Proc::ringkv_in(&dir, 2, &AOF);
    assert_eq!(keyspace(&p), want);
}

/// The files of the AOF directory and their contents.
fn aof_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir.join("appendonlydir"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn kill9_during_bgrewriteaof_keeps_the_previous_files() {
    const N: usize = 100_000;
    let mut p = Proc::ringkv(4, &flags("always"));
    let mut c = p.client();
    for chunk in (0..N).collect::<Vec<_>>().chunks(2000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("SET")
                .arg(format!("bulk:{i}"))
                .arg(format!("{i:0>100}"))
                .ignore();
        }
        pipe.query::<()>(&mut c).unwrap();
    }
    let n: usize = redis::cmd("DBSIZE").query(&mut c).unwrap();
    let before = aof_files(&p.dir);
    let r: String = redis::cmd("BGREWRITEAOF").query(&mut c).unwrap();
    assert!(r.starts_with("Background append only file rewriting"));
    // Killed while the rewrite runs (its new base is being written).
    assert_eq!(info_field(&mut c, "aof_rewrite_in_progress"), "1");
    p.kill9();
    drop(c);
    // Every file is as before the rewrite, except the manifest: a rewrite
    // first adds the new segment generation to it (atomically, by rename).
    // The rewrite's unfinished output may sit beside them.
    let after = aof_files(&p.dir);
    for (path, data) in &before {
        if path.to_string_lossy().ends_with(".manifest") {
            continue;
        }
        let now = after.iter().find(|(p, _)| p == path);
        assert!(
            now.is_some_and(|(_, d)| d == data),
            "{} changed during the rewrite",
            path.display()
        );
    }
    let restarted = Proc::ringkv_in(&p.dir, 4, &AOF);
    let mut c = restarted.client();
    let now: usize = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(now, n, "keys after kill -9 in BGREWRITEAOF");
    for chunk in (0..N).collect::<Vec<_>>().chunks(5000) {
        let keys: Vec<String> = chunk.iter().map(|i| format!("bulk:{i}")).collect();
        let got: Vec<String> = redis::cmd("MGET").arg(&keys).query(&mut c).unwrap();
        for (i, v) in chunk.iter().zip(got) {
            assert_eq!(v, format!("{i:0>100}"));
        }
    }
    // The AOF keeps working, and a later rewrite completes.
    let _: () = redis::cmd("SET").arg("later").arg(1).query(&mut c).unwrap();
    let _: String = redis::cmd("BGREWRITEAOF").query(&mut c).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while info_field(&mut c, "aof_rewrite_in_progress") != "0"
        || info_field(&mut c, "aof_rewrites") == "0"
    {
        assert!(Instant::now() < deadline, "rewrite did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(info_field(&mut c, "aof_last_bgrewrite_status"), "ok");
}
