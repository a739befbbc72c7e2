//! RDB persistence over TCP: files written by ringkv load into redis-server
//! 7.0 and the other way round (compared key by key: type, value, expiry),
//! BGSAVE is a point in time, a crash during BGSAVE keeps the previous file,
//! damaged files refuse to load, check-rdb, save points, SHUTDOWN and
//! stop-writes-on-bgsave-error.

mod common;

use common::data::{keyspace, populate, run_ringkv};
use common::{Proc, free_port};
use std::time::{Duration, Instant};

fn reply(c: &mut redis::Connection, cmd: &str) -> String {
    match redis::cmd(cmd).query::<redis::Value>(c) {
        Ok(redis::Value::Okay) => "OK".into(),
        Ok(redis::Value::SimpleString(s)) => s,
        Ok(v) => format!("{v:?}"),
        Err(e) => e.to_string(),
    }
}

fn info_field(c: &mut redis::Connection, name: &str) -> String {
    let info: String = redis::cmd("INFO").arg("persistence").query(c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in INFO"))
        .trim()
        .to_string()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_bgsave(c: &mut redis::Connection) {
    wait_until("the BGSAVE to end", || {
        info_field(c, "rdb_bgsave_in_progress") == "0"
    });
}

fn tempdir() -> std::path::PathBuf {
    tempfile::tempdir().unwrap().keep()
}

#[test]
fn ringkv_dump_loads_into_redis_with_identical_contents() {
    for shards in [1, 4] {
        let ours = Proc::ringkv(shards, &[]);
        let mut c = ours.client();
        populate(&mut c);
        assert_eq!(reply(&mut c, "SAVE"), "OK");
        let want = keyspace(&ours);
        assert!(want.len() > 25, "{}", want.len());
        let dir = ours.dir.to_str().unwrap();
        let redis = Proc::redis(&["--dir", dir, "--dbfilename", "dump.rdb"]);
        assert_eq!(keyspace(&redis), want, "ringkv/{shards} → redis");
    }
}

#[test]
fn redis_dump_loads_into_ringkv_with_identical_contents() {
    let rdir = tempdir();
    let redis = Proc::redis(&["--dir", rdir.to_str().unwrap()]);
    let mut c = redis.client();
    populate(&mut c);
    assert_eq!(reply(&mut c, "SAVE"), "OK");
    let want = keyspace(&redis);
    for shards in [1, 4] {
        let dir = tempdir();
        std::fs::copy(rdir.join("dump.rdb"), dir.join("dump.rdb")).unwrap();
        let ours = Proc::ringkv_in(&dir, shards, &[]);
        assert_eq!(keyspace(&ours), want, "redis → ringkv/{shards}");
        let mut c = ours.client();
        assert_eq!(info_field(&mut c, "rdb_changes_since_last_save"), "0");
        assert_eq!(info_field(&mut c, "loading"), "0");
    }
}

#[test]
fn bgsave_is_a_point_in_time_while_clients_write() {
    const N: usize = 30_000;
    for shards in [1, 4] {
        let ours = Proc::ringkv(shards, &["--save", ""]);
        let mut c = ours.client();
        for chunk in (0..N).collect::<Vec<_>>().chunks(1000) {
            let mut p = redis::pipe();
            for i in chunk {
                p.cmd("SET")
                    .arg(format!("k:{i}"))
                    .arg(format!("old:{i}:{}", "o".repeat(150)))
                    .ignore();
            }
            p.query::<()>(&mut c).unwrap();
        }
        assert_eq!(reply(&mut c, "BGSAVE"), "Background saving started");
        // Overwrite, delete and add while the save runs.
        let mut w = ours.client();
        for chunk in (0..N).collect::<Vec<_>>().chunks(500) {
            let mut p = redis::pipe();
            for i in chunk {
                match i % 3 {
                    0 => p.cmd("SET").arg(format!("k:{i}")).arg("new").ignore(),
                    1 => p.cmd("DEL").arg(format!("k:{i}")).ignore(),
                    _ => p.cmd("APPEND").arg(format!("k:{i}")).arg("+").ignore(),
                };
                p.cmd("SET").arg(format!("n:{i}")).arg("added").ignore();
            }
            p.query::<()>(&mut w).unwrap();
        }
        wait_bgsave(&mut c);
        assert_eq!(info_field(&mut c, "rdb_last_bgsave_status"), "ok");
        let reloaded = Proc::ringkv_in(&ours.dir, shards, &["--save", ""]);
        let mut r = reloaded.client();
        let n: usize = redis::cmd("DBSIZE").query(&mut r).unwrap();
        assert_eq!(n, N, "ringkv/{shards}");
        for chunk in (0..N).collect::<Vec<_>>().chunks(1000) {
            let keys: Vec<String> = chunk.iter().map(|i| format!("k:{i}")).collect();
            let vals: Vec<String> = redis::cmd("MGET").arg(&keys).query(&mut r).unwrap();
            for (i, v) in chunk.iter().zip(vals) {
                assert_eq!(v, format!("old:{i}:{}", "o".repeat(150)), "ringkv/{shards}");
            }
        }
    }
}

#[test]
fn kill9_during_bgsave_keeps_the_previous_dump() {
    let mut ours = Proc::ringkv(4, &["--save", ""]);
    let mut c = ours.client();
    for i in 0..10 {
        redis::cmd("SET")
            .arg(format!("first:{i}"))
            .arg(i)
            .query::<()>(&mut c)
            .unwrap();
    }
    assert_eq!(reply(&mut c, "SAVE"), "OK");
    let before = std::fs::read(ours.dir.join("dump.rdb")).unwrap();
    for chunk in (0..200_000).collect::<Vec<_>>().chunks(2000) {
        let mut p = redis::pipe();
        for i in chunk {
            p.cmd("SET")
                .arg(format!("bulk:{i}"))
                .arg("v".repeat(100))
                .ignore();
        }
        p.query::<()>(&mut c).unwrap();
    }
    assert_eq!(reply(&mut c, "BGSAVE"), "Background saving started");
    ours.kill9();
    assert_eq!(std::fs::read(ours.dir.join("dump.rdb")).unwrap(), before);
    let restarted = Proc::ringkv_in(&ours.dir, 4, &["--save", ""]);
    let mut r = restarted.client();
    let n: usize = redis::cmd("DBSIZE").query(&mut r).unwrap();
    assert_eq!(n, 10);
    let v: i64 = redis::cmd("GET").arg("first:7").query(&mut r).unwrap();
    assert_eq!(v, 7);
}

#[test]
fn damaged_files_refuse_to_load_and_check_rdb_names_the_offset() {
    let ours = Proc::ringkv(1, &[]);
    let mut c = ours.client();
    populate(&mut c);
    assert_eq!(reply(&mut c, "SAVE"), "OK");
    let good = std::fs::read(ours.dir.join("dump.rdb")).unwrap();
    let (ok, text) = run_ringkv(&["check-rdb", "dump.rdb"], &ours.dir);
    assert!(ok && text.contains("RDB looks OK"), "{text}");

    let torn = good[..good.len() / 2].to_vec();
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x5a;
    let mut no_crc = good.clone();
    let end = no_crc.len();
    no_crc[end - 1] ^= 1;
    for (name, data) in [("torn", torn), ("flipped", flipped), ("crc", no_crc)] {
        let dir = tempdir();
        std::fs::write(dir.join("dump.rdb"), &data).unwrap();
        let (ok, text) = run_ringkv(&["check-rdb", "dump.rdb"], &dir);
        assert!(!ok && text.contains("[offset "), "{name}: {text}");
        let port = free_port().to_string();
        let (ok, text) = run_ringkv(&["--port", &port, "--shards", "2"], &dir);
        assert!(!ok, "{name}: started on a damaged file");
        assert!(
            text.contains("dump.rdb") && text.contains("offset"),
            "{name}: {text}"
        );
    }
}

#[test]
fn save_points_shutdown_and_rdbchecksum() {
    let mut ours = Proc::ringkv(4, &["--save", "1 2", "--rdbchecksum", "no"]);
    let mut c = ours.client();
    let before: i64 = redis::cmd("LASTSAVE").query(&mut c).unwrap();
    redis::cmd("SET")
        .arg("a")
        .arg("1")
        .query::<()>(&mut c)
        .unwrap();
    redis::cmd("SET")
        .arg("b")
        .arg("2")
        .query::<()>(&mut c)
        .unwrap();
    assert_eq!(info_field(&mut c, "rdb_changes_since_last_save"), "2");
    wait_until("a save point to save", || {
        info_field(&mut c, "rdb_changes_since_last_save") == "0"
    });
    let after: i64 = redis::cmd("LASTSAVE").query(&mut c).unwrap();
    assert!(after >= before);
    let data = std::fs::read(ours.dir.join("dump.rdb")).unwrap();
    assert!(data.starts_with(b"REDIS0010"));
    assert_eq!(&data[data.len() - 8..], &[0; 8], "rdbchecksum no");

    // SHUTDOWN saves when save points are set.
    redis::cmd("SET")
        .arg("c")
        .arg("3")
        .query::<()>(&mut c)
        .unwrap();
    let _ = redis::cmd("SHUTDOWN").query::<()>(&mut c);
    wait_until("the server to exit", || !ours.alive());
    let again = Proc::ringkv_in(&ours.dir, 1, &[]);
    let mut r = again.client();
    let v: Vec<Option<i64>> = redis::cmd("MGET")
        .arg(&["a", "b", "c"])
        .query(&mut r)
        .unwrap();
    assert_eq!(v, vec![Some(1), Some(2), Some(3)]);
}

#[test]
fn failed_bgsave_stops_writes_until_allowed() {
    let base = tempdir();
    let sub = base.join("gone");
    std::fs::create_dir(&sub).unwrap();
    let ours = Proc::ringkv(2, &["--dir", sub.to_str().unwrap()]);
    std::fs::remove_dir(&sub).unwrap();
    let mut c = ours.client();
    assert_eq!(reply(&mut c, "BGSAVE"), "Background saving started");
    wait_bgsave(&mut c);
    assert_eq!(info_field(&mut c, "rdb_last_bgsave_status"), "err");
    let e = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query::<()>(&mut c)
        .unwrap_err();
    assert_eq!(e.code(), Some("MISCONF"), "{e}");
    let v: Option<String> = redis::cmd("GET").arg("k").query(&mut c).unwrap();
    assert_eq!(v, None);
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("stop-writes-on-bgsave-error")
        .arg("no")
        .query::<()>(&mut c)
        .unwrap();
    redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query::<()>(&mut c)
        .unwrap();
    let e = redis::cmd("SAVE").query::<()>(&mut c).unwrap_err();
    assert_eq!(e.code(), Some("ERR"), "{e}");
}

#[test]
fn bgsave_replies_like_redis() {
    let ours = Proc::ringkv(2, &["--save", ""]);
    let redis = Proc::redis(&[]);
    for server in [&ours, &redis] {
        let mut c = server.client();
        assert_eq!(reply(&mut c, "BGSAVE"), "Background saving started");
        let e = redis::cmd("BGSAVE")
            .arg("x")
            .query::<()>(&mut c)
            .unwrap_err();
        assert!(
            e.to_string().contains("syntax error"),
            "{}: {e}",
            server.label
        );
        let e = redis::cmd("CONFIG")
            .arg("SET")
            .arg("save")
            .arg("1 2 3")
            .query::<()>(&mut c)
            .unwrap_err();
        assert!(e.to_string().contains("Invalid save parameters"), "{e}");
        let e = redis::cmd("CONFIG")
            .arg("SET")
            .arg("dir")
            .arg("/tmp")
            .query::<()>(&mut c)
            .unwrap_err();
        assert!(e.to_string().contains("can't set protected config"), "{e}");
        wait_bgsave(&mut c);
        let s: String = redis::cmd("BGSAVE").arg("SCHEDULE").query(&mut c).unwrap();
        assert_eq!(s, "Background saving started", "{}", server.label);
        wait_bgsave(&mut c);
    }
}

/// While a large dump loads, clients can connect: commands get Redis's
/// -LOADING error and INFO shows `loading:1` with the progress fields. Once
/// loaded, every key is there.
#[test]
fn clients_see_loading_while_a_large_dump_loads() {
    const KEYS: usize = 600_000;
    let redis = Proc::redis(&["--enable-debug-command", "yes"]);
    let mut rc = redis.client();
    redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(KEYS)
        .arg("key")
        .arg(200)
        .query::<()>(&mut rc)
        .unwrap();
    assert_eq!(reply(&mut rc, "SAVE"), "OK");
    let dir = tempdir();
    std::fs::copy(redis.dir.join("dump.rdb"), dir.join("dump.rdb")).unwrap();
    drop(redis);

    let ours = Proc::spawn_ringkv(&dir, 4, &["--save", ""]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut saw_loading_error, mut saw_progress) = (false, false);
    loop {
        assert!(Instant::now() < deadline, "ringkv did not finish loading");
        if std::net::TcpStream::connect(("127.0.0.1", ours.port)).is_err() {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let mut raw = ours.raw();
        let info = String::from_utf8(raw.cmd_str(&["INFO", "persistence"])).unwrap();
        if info.contains("loading:1") {
            saw_progress |= [
                "loading_loaded_perc:",
                "loading_total_bytes:",
                "loading_eta_seconds:",
            ]
            .iter()
            .all(|f| info.contains(f));
        }
        let get = raw.cmd_str(&["GET", "key:1"]);
        if get.starts_with(b"-LOADING") {
            assert_eq!(get, b"-LOADING Redis is loading the dataset in memory\r\n");
            saw_loading_error = true;
        } else {
            assert!(get.starts_with(b"$200\r\nvalue:1"), "{get:?}");
            break;
        }
    }
    assert!(
        saw_loading_error,
        "the load ended before a client could see -LOADING"
    );
    assert!(
        saw_progress,
        "INFO never showed loading:1 with its progress fields"
    );
    let mut c = ours.client();
    assert_eq!(info_field(&mut c, "loading"), "0");
    let n: usize = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, KEYS);
}
