//! Active expiry over 1 and 4 shards, through the `redis` crate: keys that
//! are set to expire and never touched again disappear and DBSIZE falls,
//! with many keys on the same deadline, mixed deadlines, cancelled and moved
//! deadlines, segment splits while TTLs are pending, other databases, FLUSHDB
//! and SWAPDB. Every wait is bounded; no test asserts on timing.

mod common;

use common::Proc;
use std::time::{Duration, Instant};

/// Runs `cmds` (one command per item) in pipelines of 10,000.
fn pipe_all(con: &mut redis::Connection, cmds: impl Iterator<Item = Vec<String>>) {
    let mut p = redis::pipe();
    let mut n = 0;
    for c in cmds {
        let mut cmd = redis::cmd(&c[0]);
        for a in &c[1..] {
            cmd.arg(a);
        }
        p.add_command(cmd).ignore();
        n += 1;
        if n == 10_000 {
            p.query::<()>(con).unwrap();
            p = redis::pipe();
            n = 0;
        }
    }
    p.query::<()>(con).unwrap();
}

fn cmd(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn dbsize(con: &mut redis::Connection) -> usize {
    redis::cmd("DBSIZE").query(con).unwrap()
}

/// Waits (at most 60 s) until DBSIZE is `want`, without touching any key.
fn wait_dbsize(con: &mut redis::Connection, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = dbsize(con);
        if n == want {
            return;
        }
        assert!(Instant::now() < deadline, "DBSIZE {n}, want {want}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A field of INFO.
fn info_field(con: &mut redis::Connection, section: &str, name: &str) -> String {
    let info: String = redis::cmd("INFO").arg(section).query(con).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in INFO {section}"))
        .to_string()
}

#[test]
fn many_keys_on_one_deadline_are_reclaimed_untouched() {
    for shards in [1, 4] {
        let srv = Proc::ringkv(shards, &[]);
        let mut con = srv.client();
        pipe_all(
            &mut con,
            (0..1000).map(|i| cmd(&["SET", &format!("keep:{i}"), "v"])),
        );
        let at = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            + 1500)
            .to_string();
        pipe_all(
            &mut con,
            (0..100_000).map(|i| cmd(&["SET", &format!("tmp:{i}"), "v", "PXAT", &at])),
        );
        wait_dbsize(&mut con, 1000);
        let expired: u64 = info_field(&mut con, "stats", "expired_keys")
            .parse()
            .unwrap();
        assert_eq!(expired, 100_000, "{shards} shards");
        let ks = info_field(&mut con, "keyspace", "db0");
        assert!(ks.starts_with("keys=1000,expires=0,"), "{ks}");
        let cpu: u64 = info_field(&mut con, "stats", "expire_cycle_cpu_milliseconds")
            .parse()
            .unwrap();
        assert!(cpu < 1_000_000);
        let stale: f64 = info_field(&mut con, "stats", "expired_stale_perc")
            .parse()
            .unwrap();
        assert!((0.0..=100.0).contains(&stale), "{stale}");
        info_field(&mut con, "stats", "expired_time_cap_reached_count")
            .parse::<u64>()
            .unwrap();
        let v: Option<String> = redis::cmd("GET").arg("keep:7").query(&mut con).unwrap();
        assert_eq!(v.as_deref(), Some("v"));
    }
}

#[test]
fn mixed_deadlines_go_and_long_ttls_stay() {
    for shards in [1, 4] {
        let srv = Proc::ringkv(shards, &[]);
        let mut con = srv.client();
        // 20,000 keys due over two seconds, 5,000 due in an hour, 500
        // without a TTL, on every type.
        pipe_all(
            &mut con,
            (0..20_000).flat_map(|i| {
                let k = format!("short:{i}");
                let ms = (100 + i % 2000).to_string();
                let write = match i % 5 {
                    0 => cmd(&["SET", &k, "v"]),
                    1 => cmd(&["HSET", &k, "f", "v"]),
                    2 => cmd(&["RPUSH", &k, "a", "b"]),
                    3 => cmd(&["SADD", &k, "m"]),
                    _ => cmd(&["ZADD", &k, "1", "m"]),
                };
                [write, cmd(&["PEXPIRE", &k, &ms])]
            }),
        );
        pipe_all(
            &mut con,
            (0..5000).map(|i| cmd(&["SET", &format!("long:{i}"), "v", "EX", "3600"])),
        );
        pipe_all(
            &mut con,
            (0..500).map(|i| cmd(&["SET", &format!("none:{i}"), "v"])),
        );
        wait_dbsize(&mut con, 5500);
        let ttl: i64 = redis::cmd("TTL").arg("long:42").query(&mut con).unwrap();
        assert!(ttl > 3000, "{ttl}");
        let ks = info_field(&mut con, "keyspace", "db0");
        assert!(ks.starts_with("keys=5500,expires=5000,avg_ttl="), "{ks}");
        let avg: u64 = ks.rsplit('=').next().unwrap().parse().unwrap();
        assert!(avg > 3_000_000 && avg <= 3_600_000, "{ks}");
    }
}

#[test]
fn persist_and_overwrite_cancel_an_expiry() {
    for shards in [1, 4] {
        let srv = Proc::ringkv(shards, &[]);
        let mut con = srv.client();
        pipe_all(
            &mut con,
            (0..4000).map(|i| cmd(&["SET", &format!("k:{i}"), "old", "PX", "400"])),
        );
        // Cancel half: PERSIST, SET without KEEPTTL, GETEX PERSIST.
        pipe_all(
            &mut con,
            (0..2000).map(|i| {
                let k = format!("k:{i}");
                match i % 3 {
                    0 => cmd(&["PERSIST", &k]),
                    1 => cmd(&["SET", &k, "new"]),
                    _ => cmd(&["GETEX", &k, "PERSIST"]),
                }
            }),
        );
        // SET KEEPTTL keeps the deadline.
        pipe_all(
            &mut con,
            (2000..2500).map(|i| cmd(&["SET", &format!("k:{i}"), "new", "KEEPTTL"])),
        );
        wait_dbsize(&mut con, 2000);
        for i in [0, 1, 2, 1999] {
            let ttl: i64 = redis::cmd("TTL")
                .arg(format!("k:{i}"))
                .query(&mut con)
                .unwrap();
            assert_eq!(ttl, -1, "k:{i}");
        }
        let v: Option<String> = redis::cmd("GET").arg("k:2100").query(&mut con).unwrap();
        assert_eq!(v, None);
    }
}

#[test]
fn expire_moves_a_deadline_earlier_and_later() {
    for shards in [1, 4] {
        let srv = Proc::ringkv(shards, &[]);
        let mut con = srv.client();
        pipe_all(
            &mut con,
            (0..3000).flat_map(|i| {
                let k = format!("early:{i}");
                [
                    cmd(&["SET", &k, "v", "EX", "3600"]),
                    cmd(&["PEXPIRE", &k, "300"]),
                ]
            }),
        );
        pipe_all(
            &mut con,
            (0..3000).flat_map(|i| {
                let k = format!("late:{i}");
                [
                    cmd(&["SET", &k, "v", "PX", "300"]),
                    cmd(&["EXPIRE", &k, "3600"]),
                ]
            }),
        );
        // EXPIREAT / PEXPIREAT with GT and LT move deadlines too.
        pipe_all(
            &mut con,
            (0..1000).flat_map(|i| {
                let k = format!("lt:{i}");
                [
                    cmd(&["SET", &k, "v", "EX", "3600"]),
                    cmd(&["PEXPIRE", &k, "200", "LT"]),
                ]
            }),
        );
        wait_dbsize(&mut con, 3000);
        // Well past the old deadline, the postponed keys are all there.
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(dbsize(&mut con), 3000);
        let ttl: i64 = redis::cmd("TTL").arg("late:5").query(&mut con).unwrap();
        assert!(ttl > 3000, "{ttl}");
    }
}

#[test]
fn pending_ttls_survive_segment_splits() {
    for shards in [1, 4] {
        let srv = Proc::ringkv(shards, &[]);
        let mut con = srv.client();
        // Few keys (one segment per shard), half due soon, half in an hour...
        pipe_all(
            &mut con,
            (0..3000).map(|i| {
                let ttl = if i % 2 == 0 { "2000" } else { "3600000" };
                cmd(&["SET", &format!("ttl:{i}"), "v", "PX", ttl])
            }),
        );
        // ...then the table grows tenfold, splitting every segment many times.
        pipe_all(
            &mut con,
            (0..60_000).map(|i| cmd(&["SET", &format!("grow:{i}"), "v"])),
        );
        wait_dbsize(&mut con, 61_500);
        let ks = info_field(&mut con, "keyspace", "db0");
        assert!(ks.starts_with("keys=61500,expires=1500,"), "{ks}");
        let ttl: i64 = redis::cmd("TTL").arg("ttl:1").query(&mut con).unwrap();
        assert!(ttl > 3000, "{ttl}");
    }
}

#[test]
fn other_databases_flushdb_and_swapdb() {
    for shards in [1, 4] {
        let srv = Proc::ringkv(shards, &[]);
        let mut con = srv.client();
        redis::cmd("SELECT").arg(3).query::<()>(&mut con).unwrap();
        pipe_all(
            &mut con,
            (0..2000).map(|i| cmd(&["SET", &format!("a:{i}"), "v", "PX", "300"])),
        );
        wait_dbsize(&mut con, 0);

        // Pending deadlines dropped by FLUSHDB do not disturb new keys.
        pipe_all(
            &mut con,
            (0..2000).map(|i| cmd(&["SET", &format!("b:{i}"), "v", "PX", "300"])),
        );
        redis::cmd("FLUSHDB").query::<()>(&mut con).unwrap();
        pipe_all(
            &mut con,
            (0..2000).map(|i| cmd(&["SET", &format!("c:{i}"), "v", "PX", "600"])),
        );
        pipe_all(
            &mut con,
            (0..100).map(|i| cmd(&["SET", &format!("d:{i}"), "v"])),
        );
        wait_dbsize(&mut con, 100);

        // Deadlines follow their keys through SWAPDB.
        pipe_all(
            &mut con,
            (0..2000).map(|i| cmd(&["SET", &format!("e:{i}"), "v", "PX", "600"])),
        );
        redis::cmd("SWAPDB")
            .arg(3)
            .arg(5)
            .query::<()>(&mut con)
            .unwrap();
        assert_eq!(dbsize(&mut con), 0);
        redis::cmd("SELECT").arg(5).query::<()>(&mut con).unwrap();
        wait_dbsize(&mut con, 100);
    }
}
