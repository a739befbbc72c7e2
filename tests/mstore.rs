//! MemoryStore (issue 6) over TCP: the MSTORE.* commands on a 1- and a
//! 4-shard ringkv (order, cap under concurrent writers, expiry renewal,
//! WRITEWITH, namespaces, MSTORE.KEYS, errors, RESP2/RESP3 shapes, command
//! table), and, with the `memorystore-client` feature, the Rust client API in
//! its native mode (ringkv) and its Redis mode (a real redis-server). Every
//! test is bounded in time and stops only the servers it started.

mod common;

use common::Proc;
use redis::Connection;
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn q<T: redis::FromRedisValue>(con: &mut Connection, args: &[&str]) -> T {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(con)
        .unwrap_or_else(|e| panic!("{args:?} failed: {e}"))
}

/// The error text of a command that must fail.
fn err(con: &mut Connection, args: &[&str]) -> String {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    match c.query::<redis::Value>(con) {
        Ok(v) => panic!("{args:?} succeeded with {v:?}"),
        Err(e) => {
            let code = e.code().unwrap_or("");
            format!("{code} {}", e.detail().unwrap_or(""))
                .trim()
                .to_string()
        }
    }
}

fn latest(con: &mut Connection, ns: &str, key: &str, n: usize) -> Vec<String> {
    q(con, &["MSTORE.LATEST", ns, key, &n.to_string()])
}

#[test]
fn newest_first_capped_and_counted() {
    for shards in [1, 4] {
        let p = Proc::ringkv(shards, &[]);
        let mut con = p.client();
        let () = q(&mut con, &["MSTORE.CREATE", "ns", "k", "60000", "3"]);
        for i in 1..=5 {
            let n: i64 = q(&mut con, &["MSTORE.WRITE", "ns", "k", &format!("d{i}")]);
            assert_eq!(n, i.min(3));
        }
        assert_eq!(latest(&mut con, "ns", "k", 10), ["d5", "d4", "d3"]);
        assert_eq!(latest(&mut con, "ns", "k", 2), ["d5", "d4"]);
        assert_eq!(q::<i64>(&mut con, &["MSTORE.COUNT", "ns", "k"]), 3);
        assert_eq!(q::<i64>(&mut con, &["MSTORE.COUNT", "ns", "missing"]), 0);
        assert!(latest(&mut con, "ns", "missing", 3).is_empty());
        // Ordinary types, on the slot of the key.
        assert_eq!(
            q::<String>(&mut con, &["TYPE", "mstore:{k}:2:ns:k:log"]),
            "list"
        );
        assert_eq!(
            q::<String>(&mut con, &["TYPE", "mstore:{k}:2:ns:k:cfg"]),
            "hash"
        );
        assert_eq!(
            q::<Vec<String>>(&mut con, &["HGETALL", "mstore:{k}:2:ns:k:cfg"]),
            ["expire-ms", "60000", "max-records", "3"]
        );
        // MSTORE.CREATE replaces; the new cap applies on the next write.
        let () = q(&mut con, &["MSTORE.CREATE", "ns", "k", "60000", "2"]);
        assert_eq!(q::<i64>(&mut con, &["MSTORE.WRITE", "ns", "k", "d6"]), 2);
        assert_eq!(latest(&mut con, "ns", "k", 10), ["d6", "d5"]);
        // DEL removes records and configuration and counts the records.
        assert_eq!(q::<i64>(&mut con, &["MSTORE.DEL", "ns", "k"]), 2);
        assert_eq!(q::<i64>(&mut con, &["MSTORE.DEL", "ns", "k"]), 0);
        assert_eq!(q::<i64>(&mut con, &["EXISTS", "mstore:{k}:2:ns:k:cfg"]), 0);
        assert!(err(&mut con, &["MSTORE.WRITE", "ns", "k", "x"]).starts_with("NOTCONFIGURED"));
    }
}

#[test]
fn cap_holds_under_concurrent_writers() {
    const THREADS: usize = 4;
    const WRITES: usize = 300;
    for shards in [1, 4] {
        let p = Proc::ringkv(shards, &[]);
        let mut con = p.client();
        // "all" keeps every record, "cap" only the newest 50.
        let () = q(&mut con, &["MSTORE.CREATE", "ns", "all", "60000", "10000"]);
        let () = q(&mut con, &["MSTORE.CREATE", "ns", "cap", "60000", "50"]);
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let mut c = p.client();
                s.spawn(move || {
                    for j in 0..WRITES {
                        let d = format!("{t}-{j:04}");
                        let mut pipe = redis::pipe();
                        pipe.cmd("MSTORE.WRITE").arg("ns").arg("all").arg(&d);
                        pipe.cmd("MSTORE.WRITE").arg("ns").arg("cap").arg(&d);
                        let (a, b): (i64, i64) = pipe.query(&mut c).unwrap();
                        assert!(a >= 1 && (1..=50).contains(&b));
                    }
                });
            }
        });
        for (key, want) in [("all", THREADS * WRITES), ("cap", 50)] {
            let recs = latest(&mut con, "ns", key, 100_000);
            assert_eq!(recs.len(), want, "{key}");
            let distinct: HashSet<&String> = recs.iter().collect();
            assert_eq!(distinct.len(), want, "{key}: duplicated records");
            // Newest first: each writer's records appear in reverse order.
            for t in 0..THREADS {
                let mine: Vec<&String> = recs
                    .iter()
                    .filter(|r| r.starts_with(&format!("{t}-")))
                    .collect();
                assert!(mine.windows(2).all(|w| w[0] > w[1]), "{key}: writer {t}");
                if key == "cap" {
                    // Whatever survives of a writer is its newest records.
                    for (i, r) in mine.iter().enumerate() {
                        assert_eq!(**r, format!("{t}-{:04}", WRITES - 1 - i));
                    }
                }
            }
        }
    }
}

#[test]
fn writes_renew_the_expiry_and_records_expire() {
    let p = Proc::ringkv(4, &[]);
    let mut con = p.client();
    let log = "mstore:{k}:2:ns:k:log";
    let () = q(&mut con, &["MSTORE.CREATE", "ns", "k", "100000", "10"]);
    let _: i64 = q(&mut con, &["MSTORE.WRITE", "ns", "k", "a"]);
    let ttl: i64 = q(&mut con, &["PTTL", log]);
    assert!(ttl > 0 && ttl <= 100_000, "{ttl}");
    // Shorten the TTL by hand: the next write sets it back to expire-ms.
    let _: i64 = q(&mut con, &["PEXPIRE", log, "5000"]);
    let _: i64 = q(&mut con, &["MSTORE.WRITE", "ns", "k", "b"]);
    let ttl: i64 = q(&mut con, &["PTTL", log]);
    assert!(ttl > 5000, "write did not renew the expiry: {ttl}");
    // The configuration itself has no TTL.
    assert_eq!(q::<i64>(&mut con, &["PTTL", "mstore:{k}:2:ns:k:cfg"]), -1);
    // expire-ms 0: records never expire.
    let () = q(&mut con, &["MSTORE.CREATE", "ns", "k", "0", "10"]);
    let _: i64 = q(&mut con, &["MSTORE.WRITE", "ns", "k", "c"]);
    assert_eq!(q::<i64>(&mut con, &["PTTL", log]), -1);
    // Without writes, the records expire after expire-ms; the configuration
    // stays.
    let () = q(&mut con, &["MSTORE.CREATE", "ns", "k", "150", "10"]);
    let _: i64 = q(&mut con, &["MSTORE.WRITE", "ns", "k", "d"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while q::<i64>(&mut con, &["MSTORE.COUNT", "ns", "k"]) != 0 {
        assert!(Instant::now() < deadline, "records did not expire");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        q::<Vec<String>>(&mut con, &["MSTORE.CONFIG", "ns", "k"]),
        ["expire-ms", "150", "max-records", "10"]
    );
}

#[test]
fn writewith_leaves_the_stored_config_alone() {
    let p = Proc::ringkv(4, &[]);
    let mut con = p.client();
    let () = q(&mut con, &["MSTORE.CREATE", "ns", "k", "100000", "5"]);
    for i in 0..4 {
        let n: i64 = q(
            &mut con,
            &["MSTORE.WRITEWITH", "ns", "k", &i.to_string(), "0", "2"],
        );
        assert_eq!(n, (i + 1).min(2));
    }
    assert_eq!(q::<i64>(&mut con, &["PTTL", "mstore:{k}:2:ns:k:log"]), -1);
    assert_eq!(
        q::<Vec<String>>(&mut con, &["MSTORE.CONFIG", "ns", "k"]),
        ["expire-ms", "100000", "max-records", "5"]
    );
    // On a key without configuration it writes, and creates none.
    let _: i64 = q(
        &mut con,
        &["MSTORE.WRITEWITH", "ns", "u", "x", "100000", "3"],
    );
    assert_eq!(latest(&mut con, "ns", "u", 5), ["x"]);
    assert_eq!(
        q::<redis::Value>(&mut con, &["MSTORE.CONFIG", "ns", "u"]),
        redis::Value::Nil
    );
    assert!(err(&mut con, &["MSTORE.WRITE", "ns", "u", "y"]).starts_with("NOTCONFIGURED"));
    // DROP removes the configuration only.
    assert_eq!(q::<i64>(&mut con, &["MSTORE.DROP", "ns", "k"]), 1);
    assert_eq!(q::<i64>(&mut con, &["MSTORE.DROP", "ns", "k"]), 0);
    assert_eq!(q::<i64>(&mut con, &["MSTORE.COUNT", "ns", "k"]), 2);
}

#[test]
fn namespaces_are_isolated_and_listed() {
    let p = Proc::ringkv(4, &[]);
    let mut con = p.client();
    // Colons and braces in names cannot make two namespaces meet.
    let pairs = [
        ("a:b", "c"),
        ("a", "b:c"),
        ("a", "{t}x"),
        ("a:b", "{t}x"),
        ("n}", ""),
    ];
    for (i, (ns, key)) in pairs.iter().enumerate() {
        let () = q(&mut con, &["MSTORE.CREATE", ns, key, "0", "10"]);
        let _: i64 = q(&mut con, &["MSTORE.WRITE", ns, key, &i.to_string()]);
    }
    for (i, (ns, key)) in pairs.iter().enumerate() {
        assert_eq!(latest(&mut con, ns, key, 10), [i.to_string()], "{ns} {key}");
    }
    assert_eq!(q::<i64>(&mut con, &["DBSIZE"]), 2 * pairs.len() as i64);
    // MSTORE.KEYS walks every shard with a cursor and sees only its
    // namespace's configured keys.
    for i in 0..300 {
        let ns = if i % 3 == 0 { "other" } else { "svc" };
        let () = q(
            &mut con,
            &["MSTORE.CREATE", ns, &format!("key:{i}"), "0", "1"],
        );
    }
    // Records without configuration are not listed.
    let _: i64 = q(
        &mut con,
        &["MSTORE.WRITEWITH", "svc", "nocfg", "x", "0", "1"],
    );
    let list = |con: &mut Connection, ns: &str, extra: &[&str]| {
        let mut seen = Vec::new();
        let mut cursor = "0".to_string();
        for _ in 0..10_000 {
            let mut args = vec!["MSTORE.KEYS", ns, "COUNT", "7", "CURSOR", &cursor];
            args.extend_from_slice(extra);
            let (next, keys): (String, Vec<String>) = q(con, &args);
            seen.extend(keys);
            cursor = next;
            if cursor == "0" {
                return seen;
            }
        }
        panic!("MSTORE.KEYS did not finish");
    };
    let svc = list(&mut con, "svc", &[]);
    let want: HashSet<String> = (0..300)
        .filter(|i| i % 3 != 0)
        .map(|i| format!("key:{i}"))
        .collect();
    assert_eq!(svc.len(), want.len(), "duplicates or misses");
    assert_eq!(svc.into_iter().collect::<HashSet<_>>(), want);
    let other = list(&mut con, "other", &["MATCH", "key:1*"]);
    let want: HashSet<String> = (0..300)
        .filter(|i| i % 3 == 0 && i.to_string().starts_with('1'))
        .map(|i| format!("key:{i}"))
        .collect();
    assert_eq!(other.into_iter().collect::<HashSet<_>>(), want);
    let mut a = list(&mut con, "a", &[]);
    a.sort();
    assert_eq!(a, ["b:c", "{t}x"]);
    assert_eq!(list(&mut con, "n}", &[]), [""]);
    // Without CURSOR and COUNT: the first step of the scan.
    let (_, keys): (String, Vec<String>) = q(&mut con, &["MSTORE.KEYS", "a:b"]);
    assert!(keys.len() <= 2);
}

#[test]
fn bad_input_errors() {
    let p = Proc::ringkv(1, &[]);
    let mut con = p.client();
    for (args, want) in [
        (
            &["MSTORE.CREATE", "ns", "k", "1"][..],
            "ERR wrong number of arguments for 'mstore.create' command",
        ),
        (
            &["MSTORE.WRITE", "ns", "k"],
            "ERR wrong number of arguments for 'mstore.write' command",
        ),
        (
            &["MSTORE.WRITEWITH", "ns", "k", "d", "1"],
            "ERR wrong number of arguments for 'mstore.writewith' command",
        ),
        (
            &["MSTORE.LATEST", "ns", "k"],
            "ERR wrong number of arguments for 'mstore.latest' command",
        ),
        (
            &["MSTORE.COUNT", "ns"],
            "ERR wrong number of arguments for 'mstore.count' command",
        ),
        (
            &["MSTORE.DEL", "ns", "k", "x"],
            "ERR wrong number of arguments for 'mstore.del' command",
        ),
        (
            &["MSTORE.DROP", "ns"],
            "ERR wrong number of arguments for 'mstore.drop' command",
        ),
        (
            &["MSTORE.CONFIG", "ns"],
            "ERR wrong number of arguments for 'mstore.config' command",
        ),
        (
            &["MSTORE.KEYS"],
            "ERR wrong number of arguments for 'mstore.keys' command",
        ),
        (
            &["MSTORE.CREATE", "ns", "k", "abc", "1"],
            "ERR value is not an integer or out of range",
        ),
        (
            &["MSTORE.CREATE", "ns", "k", "1.5", "1"],
            "ERR value is not an integer or out of range",
        ),
        (
            &["MSTORE.CREATE", "ns", "k", "-1", "1"],
            "ERR invalid expire time in 'mstore.create' command",
        ),
        (
            &["MSTORE.CREATE", "ns", "k", "1", "0"],
            "ERR value is out of range, must be positive",
        ),
        (
            &["MSTORE.CREATE", "ns", "k", "1", "x"],
            "ERR value is not an integer or out of range",
        ),
        (
            &["MSTORE.WRITEWITH", "ns", "k", "d", "-5", "1"],
            "ERR invalid expire time in 'mstore.writewith' command",
        ),
        (
            &["MSTORE.WRITEWITH", "ns", "k", "d", "5", "-1"],
            "ERR value is out of range, must be positive",
        ),
        (
            &["MSTORE.LATEST", "ns", "k", "0"],
            "ERR value is out of range, must be positive",
        ),
        (
            &["MSTORE.LATEST", "ns", "k", "x"],
            "ERR value is not an integer or out of range",
        ),
        (
            &["MSTORE.LATEST", "ns", "k", "1", "WITHSCORES"],
            "ERR syntax error",
        ),
        (&["MSTORE.KEYS", "ns", "COUNT", "0"], "ERR syntax error"),
        (&["MSTORE.KEYS", "ns", "COUNT"], "ERR syntax error"),
        (&["MSTORE.KEYS", "ns", "CURSOR", "x"], "ERR invalid cursor"),
        (
            &["MSTORE.WRITE", "ns", "k", "d"],
            "NOTCONFIGURED MemoryStore key has no configuration, create it with MSTORE.CREATE or write with MSTORE.WRITEWITH",
        ),
    ] {
        assert_eq!(err(&mut con, args), want, "{args:?}");
    }
    // Another type in either slot.
    let wrong = "WRONGTYPE Operation against a key holding the wrong kind of value";
    let () = q(&mut con, &["SET", "mstore:{k}:2:ns:k:cfg", "x"]);
    for args in [
        &["MSTORE.CREATE", "ns", "k", "1", "1"][..],
        &["MSTORE.WRITE", "ns", "k", "d"],
        &["MSTORE.CONFIG", "ns", "k"],
        &["MSTORE.DROP", "ns", "k"],
        &["MSTORE.DEL", "ns", "k"],
    ] {
        assert_eq!(err(&mut con, args), wrong, "{args:?}");
    }
    let () = q(&mut con, &["SET", "mstore:{j}:2:ns:j:log", "x"]);
    for args in [
        &["MSTORE.WRITEWITH", "ns", "j", "d", "1", "1"][..],
        &["MSTORE.LATEST", "ns", "j", "1"],
        &["MSTORE.COUNT", "ns", "j"],
        &["MSTORE.DEL", "ns", "j"],
    ] {
        assert_eq!(err(&mut con, args), wrong, "{args:?}");
    }
    // Nothing was changed by the failed calls.
    assert_eq!(
        q::<String>(&mut con, &["GET", "mstore:{k}:2:ns:k:cfg"]),
        "x"
    );
    assert_eq!(
        q::<String>(&mut con, &["GET", "mstore:{j}:2:ns:j:log"]),
        "x"
    );
}

#[test]
fn resp2_and_resp3_shapes() {
    let p = Proc::ringkv(4, &[]);
    let mut raw = p.raw();
    raw.cmd_str(&["MSTORE.CREATE", "ns", "k", "0", "5"]);
    raw.cmd_str(&["MSTORE.WRITE", "ns", "k", "a"]);
    raw.cmd_str(&["MSTORE.WRITE", "ns", "k", "b"]);
    let ts: Vec<i64> = {
        let mut con = p.client();
        let recs: Vec<String> = q(&mut con, &["LRANGE", "mstore:{k}:2:ns:k:log", "0", "-1"]);
        recs.iter()
            .map(|r| r.split_once(':').unwrap().0.parse().unwrap())
            .collect()
    };
    let r2 = raw.cmd_str(&["MSTORE.LATEST", "ns", "k", "5", "withtimestamps"]);
    let want2 = format!("*4\r\n$1\r\nb\r\n:{}\r\n$1\r\na\r\n:{}\r\n", ts[0], ts[1]);
    assert_eq!(String::from_utf8_lossy(&r2), want2);
    let plain = raw.cmd_str(&["MSTORE.LATEST", "ns", "k", "5"]);
    assert_eq!(plain, b"*2\r\n$1\r\nb\r\n$1\r\na\r\n");
    let cfg2 = raw.cmd_str(&["MSTORE.CONFIG", "ns", "k"]);
    assert_eq!(
        cfg2,
        b"*4\r\n$9\r\nexpire-ms\r\n:0\r\n$11\r\nmax-records\r\n:5\r\n"
    );
    assert_eq!(raw.cmd_str(&["MSTORE.CONFIG", "ns", "none"]), b"$-1\r\n");
    raw.cmd_str(&["HELLO", "3"]);
    let r3 = raw.cmd_str(&["MSTORE.LATEST", "ns", "k", "5", "WITHTIMESTAMPS"]);
    let want3 = format!("%2\r\n$1\r\nb\r\n:{}\r\n$1\r\na\r\n:{}\r\n", ts[0], ts[1]);
    assert_eq!(String::from_utf8_lossy(&r3), want3);
    let empty = raw.cmd_str(&["MSTORE.LATEST", "ns", "none", "5", "WITHTIMESTAMPS"]);
    assert_eq!(empty, b"%0\r\n");
    let cfg3 = raw.cmd_str(&["MSTORE.CONFIG", "ns", "k"]);
    assert_eq!(
        cfg3,
        b"%2\r\n$9\r\nexpire-ms\r\n:0\r\n$11\r\nmax-records\r\n:5\r\n"
    );
    assert_eq!(raw.cmd_str(&["MSTORE.CONFIG", "ns", "none"]), b"_\r\n");
}

#[test]
fn command_table_entries() {
    let p = Proc::ringkv(1, &[]);
    let mut con = p.client();
    for (name, arity, flag) in [
        ("mstore.create", 5, "write"),
        ("mstore.drop", 3, "write"),
        ("mstore.write", 4, "denyoom"),
        ("mstore.writewith", 6, "denyoom"),
        ("mstore.latest", -4, "readonly"),
        ("mstore.count", 3, "readonly"),
        ("mstore.del", 3, "write"),
        ("mstore.config", 3, "readonly"),
        ("mstore.keys", -2, "readonly"),
    ] {
        let info: Vec<redis::Value> = q(&mut con, &["COMMAND", "INFO", name]);
        let redis::Value::Array(fields) = &info[0] else {
            panic!("{name}: {info:?}")
        };
        assert_eq!(fields[0], redis::Value::BulkString(name.into()));
        assert_eq!(fields[1], redis::Value::Int(arity), "{name}");
        let flags: Vec<String> = redis::from_redis_value(&fields[2]).unwrap();
        assert!(flags.iter().any(|f| f == flag), "{name}: {flags:?}");
        let first = if name == "mstore.keys" { 0 } else { 2 };
        assert_eq!(fields[3], redis::Value::Int(first), "{name}");
    }
    let keys: Vec<String> = q(
        &mut con,
        &["COMMAND", "GETKEYS", "MSTORE.WRITE", "ns", "k", "d"],
    );
    assert_eq!(keys, ["k"]);
}

#[cfg(feature = "memorystore-client")]
mod client {
    use super::*;
    use ringkv::memorystore::{Bincode, Error, MemoryStore, Record};
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct Action {
        user_id: u64,
        action: String,
    }

    fn action(i: u64) -> Action {
        Action {
            user_id: i,
            action: format!("login-{i}"),
        }
    }

    /// The whole API against one server; `native` is the mode it must pick.
    fn scenario(p: &Proc, native: bool) {
        let mut ms = MemoryStore::new(p.client(), "myservice").unwrap();
        assert_eq!(ms.is_native(), native, "{}", p.label);
        let mut other = MemoryStore::new(p.client(), "other").unwrap();
        let key = "user_actions";
        match ms.write_record(key, &action(0)) {
            Err(Error::KeyNotConfigured { key: k }) => assert_eq!(k, key),
            r => panic!("{}: {r:?}", p.label),
        }
        ms.create_key(key, Duration::from_secs(600), 3).unwrap();
        for i in 1..=5 {
            assert_eq!(ms.write_record(key, &action(i)).unwrap(), i.min(3));
        }
        let recs: Vec<Record<Action>> = ms.get_latest_records(key, 10).unwrap();
        let data: Vec<Action> = recs.iter().map(|r| r.data.clone()).collect();
        assert_eq!(data, [action(5), action(4), action(3)], "{}", p.label);
        assert!(recs.windows(2).all(|w| w[0].timestamp >= w[1].timestamp));
        let age = std::time::SystemTime::now()
            .duration_since(recs[0].timestamp)
            .unwrap_or_default();
        assert!(
            age < Duration::from_secs(600),
            "{}: timestamp {age:?}",
            p.label
        );
        assert_eq!(ms.get_record_count(key).unwrap(), 3);
        // Namespaces are isolated.
        assert_eq!(other.get_record_count(key).unwrap(), 0);
        assert!(matches!(
            other.write_record(key, &action(9)),
            Err(Error::KeyNotConfigured { .. })
        ));
        // A per-call configuration leaves the stored one in place.
        let n = ms
            .write_record_with_config(key, &action(6), Duration::ZERO, 2)
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(ms.write_record(key, &action(7)).unwrap(), 3);
        // Any serde type; bad arguments are refused before the server.
        let raw: Vec<Record<serde_json::Value>> = ms.get_latest_records(key, 1).unwrap();
        assert_eq!(raw[0].data["user_id"], 7);
        assert!(matches!(
            ms.get_latest_records::<Action>(key, 0),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            ms.create_key(key, Duration::from_secs(1), 0),
            Err(Error::InvalidArgument(_))
        ));
        // The same layout in both modes.
        let mut con = p.client();
        let mut keys: Vec<String> = q(&mut con, &["KEYS", "mstore:*"]);
        keys.sort();
        assert_eq!(
            keys,
            [
                "mstore:{user_actions}:9:myservice:user_actions:cfg",
                "mstore:{user_actions}:9:myservice:user_actions:log"
            ]
        );
        let ttl: i64 = q(&mut con, &["PTTL", &keys[1]]);
        assert!(ttl > 0 && ttl <= 600_000, "{}: {ttl}", p.label);
        // DeleteKey drops the configuration only.
        assert_eq!(ms.delete_key(key).unwrap(), 1);
        assert_eq!(ms.delete_key(key).unwrap(), 0);
        assert!(matches!(
            ms.write_record(key, &action(8)),
            Err(Error::KeyNotConfigured { .. })
        ));
        assert_eq!(ms.get_record_count(key).unwrap(), 3);
        // DeleteRecords removes both and counts the records.
        ms.create_key(key, Duration::from_secs(600), 3).unwrap();
        assert_eq!(ms.delete_records(key).unwrap(), 3);
        assert_eq!(ms.delete_records(key).unwrap(), 0);
        assert_eq!(q::<i64>(&mut con, &["DBSIZE"]), 0);
    }

    #[test]
    fn client_api_native_on_ringkv() {
        for shards in [1, 4] {
            scenario(&Proc::ringkv(shards, &[]), true);
        }
    }

    #[test]
    fn client_api_on_redis() {
        scenario(&Proc::redis(&[]), false);
    }

    #[test]
    fn redis_mode_caches_the_config() {
        let p = Proc::redis(&[]);
        let mut ms = MemoryStore::new(p.client(), "ns").unwrap();
        let mut admin = MemoryStore::new(p.client(), "ns").unwrap();
        ms.create_key("k", Duration::ZERO, 2).unwrap();
        ms.write_record("k", "a").unwrap();
        // Another client drops the configuration: the cached copy is still
        // trusted until its TTL runs out.
        admin.delete_key("k").unwrap();
        assert_eq!(ms.write_record("k", "b").unwrap(), 2);
        ms.set_config_cache_ttl(Duration::ZERO);
        assert!(matches!(
            ms.write_record("k", "c"),
            Err(Error::KeyNotConfigured { .. })
        ));
        // Records written in Redis mode read back natively shaped.
        let recs: Vec<Record<String>> = admin.get_latest_records("k", 5).unwrap();
        let data: Vec<&str> = recs.iter().map(|r| r.data.as_str()).collect();
        assert_eq!(data, ["b", "a"]);
    }

    #[test]
    fn client_api_with_another_codec() {
        for p in [Proc::ringkv(4, &[]), Proc::redis(&[])] {
            let mut ms = MemoryStore::<_, Bincode>::with_codec(p.client(), "ns").unwrap();
            ms.create_key("k", Duration::from_secs(60), 10).unwrap();
            ms.write_record("k", &action(1)).unwrap();
            ms.write_record("k", &action(2)).unwrap();
            let recs: Vec<Record<Action>> = ms.get_latest_records("k", 10).unwrap();
            let data: Vec<Action> = recs.into_iter().map(|r| r.data).collect();
            assert_eq!(data, [action(2), action(1)], "{}", p.label);
            // JSON cannot read what bincode wrote.
            let mut json = MemoryStore::new(p.client(), "ns").unwrap();
            assert!(matches!(
                json.get_latest_records::<Action>("k", 1),
                Err(Error::Codec(_))
            ));
        }
    }
}

/// Writes a configured key and a WRITEWITH key, persists with `persist`,
/// kills the server and restarts it on the same directory: configuration,
/// records (in order, with their timestamps) and TTLs are all back.
fn survives_restart(shards: usize, flags: &[&str], persist: &[&str]) {
    let p = Proc::ringkv(shards, flags);
    let mut con = p.client();
    let () = q(&mut con, &["MSTORE.CREATE", "svc", "user:1", "600000", "3"]);
    for i in 1..=5 {
        let _: i64 = q(
            &mut con,
            &["MSTORE.WRITE", "svc", "user:1", &format!("r{i}")],
        );
    }
    let _: i64 = q(
        &mut con,
        &["MSTORE.WRITEWITH", "svc", "once", "x", "600000", "10"],
    );
    let before: Vec<String> = q(
        &mut con,
        &["MSTORE.LATEST", "svc", "user:1", "10", "WITHTIMESTAMPS"],
    );
    let config: Vec<String> = q(&mut con, &["MSTORE.CONFIG", "svc", "user:1"]);
    if !persist.is_empty() {
        let _: redis::Value = q(&mut con, persist);
    }
    let dir = p.dir.clone();
    drop(con);
    drop(p); // kill -9
    let p = Proc::ringkv_in(&dir, shards, flags);
    let mut con = p.client();
    let after: Vec<String> = q(
        &mut con,
        &["MSTORE.LATEST", "svc", "user:1", "10", "WITHTIMESTAMPS"],
    );
    assert_eq!(after, before);
    assert_eq!(before.len(), 6);
    assert_eq!(
        q::<Vec<String>>(&mut con, &["MSTORE.CONFIG", "svc", "user:1"]),
        config
    );
    assert_eq!(q::<i64>(&mut con, &["MSTORE.COUNT", "svc", "once"]), 1);
    assert_eq!(
        q::<Option<Vec<String>>>(&mut con, &["MSTORE.CONFIG", "svc", "once"]),
        None
    );
    let _: i64 = q(&mut con, &["MSTORE.WRITE", "svc", "user:1", "r6"]);
    assert_eq!(latest(&mut con, "svc", "user:1", 1), ["r6"]);
}

#[test]
fn configuration_and_records_survive_a_restart_through_rdb() {
    for shards in [1, 4] {
        survives_restart(shards, &[], &["SAVE"]);
    }
}

#[test]
fn configuration_and_records_survive_a_restart_through_aof() {
    for shards in [1, 4] {
        survives_restart(
            shards,
            &["--appendonly", "yes", "--appendfsync", "always"],
            &[],
        );
    }
}
