//! DUMP/RESTORE and RDB files against a real redis-server 7.0: payloads move
//! both ways, byte-identical where Redis's output is deterministic, and the
//! RDB reader/writer interoperate with `SAVE` and startup loading.

mod common;

use common::Proc;
use redis::Connection;
use ringkv::persistence::rdb::{AuxInfo, RdbReader, RdbWriter, WriteOptions};
use ringkv::persistence::{Encoding, RdbValue, Thresholds};
use std::collections::BTreeMap;

fn dump(c: &mut Connection, key: &str) -> Option<Vec<u8>> {
    redis::cmd("DUMP").arg(key).query(c).unwrap()
}

fn restore(c: &mut Connection, key: &str, payload: &[u8]) {
    let r: redis::RedisResult<()> = redis::cmd("RESTORE")
        .arg(key)
        .arg(0)
        .arg(payload)
        .arg("REPLACE")
        .query(c);
    r.unwrap_or_else(|e| panic!("RESTORE {key}: {e}"));
}

fn cmd(c: &mut Connection, args: &[&str]) -> redis::Value {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c).unwrap()
}

/// A type-independent snapshot of a key's contents in redis (sorted where
/// the order is not defined).
fn contents(c: &mut Connection, key: &str) -> (String, Vec<Vec<u8>>) {
    let ty: String = redis::cmd("TYPE").arg(key).query(c).unwrap();
    let mut items: Vec<Vec<u8>> = match ty.as_str() {
        "string" => vec![redis::cmd("GET").arg(key).query(c).unwrap()],
        "list" => redis::cmd("LRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .query(c)
            .unwrap(),
        "set" => redis::cmd("SMEMBERS").arg(key).query(c).unwrap(),
        "zset" => redis::cmd("ZRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query(c)
            .unwrap(),
        "hash" => {
            let m: Vec<Vec<u8>> = redis::cmd("HGETALL").arg(key).query(c).unwrap();
            let mut pairs: Vec<Vec<u8>> = m
                .chunks(2)
                .map(|p| [p[0].clone(), p[1].clone()].concat())
                .collect();
            pairs.sort();
            return (ty, pairs);
        }
        other => panic!("unexpected type {other}"),
    };
    if ty == "set" {
        items.sort();
    }
    (ty, items)
}

#[test]
fn strings_both_ways() {
    let redis = Proc::redis(&[]);
    let ringkv = Proc::ringkv(4, &[]);
    let (mut r, mut k) = (redis.client(), ringkv.client());
    let long_text = "the quick brown fox jumps over the lazy dog ".repeat(40);
    let binary: Vec<u8> = (0..2000u32).map(|i| (i * 7919 % 256) as u8).collect();
    let values: Vec<Vec<u8>> = vec![
        b"short".to_vec(),
        b"".to_vec(),
        b"0".to_vec(),
        b"-1".to_vec(),
        b"127".to_vec(),
        b"-32768".to_vec(),
        b"2147483647".to_vec(),
        b"-2147483649".to_vec(),
        b"9223372036854775807".to_vec(),
        b"007".to_vec(),
        vec![b'a'; 21],
        vec![b'a'; 100_000],
        long_text.into_bytes(),
        binary,
    ];
    for (i, v) in values.iter().enumerate() {
        let key = format!("k{i}");
        let _: () = redis::cmd("SET").arg(&key).arg(v).query(&mut r).unwrap();
        let _: () = redis::cmd("SET").arg(&key).arg(v).query(&mut k).unwrap();
        let from_redis = dump(&mut r, &key).unwrap();
        let from_ringkv = dump(&mut k, &key).unwrap();
        assert_eq!(from_redis, from_ringkv, "DUMP of value #{i} differs");
        // Redis's payload into ringkv and back.
        restore(&mut k, "copy", &from_redis);
        let got: Vec<u8> = redis::cmd("GET").arg("copy").query(&mut k).unwrap();
        assert_eq!(&got, v);
        restore(&mut r, "copy", &dump(&mut k, "copy").unwrap());
        let got: Vec<u8> = redis::cmd("GET").arg("copy").query(&mut r).unwrap();
        assert_eq!(&got, v);
    }
}

/// Fills redis with one key per collection shape.
fn fill_collections(r: &mut Connection) -> Vec<(&'static str, bool)> {
    let mut c = |args: Vec<String>| {
        let mut cmd = redis::cmd(&args[0]);
        for a in &args[1..] {
            cmd.arg(a);
        }
        let _: redis::Value = cmd.query(r).unwrap();
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let with = |head: &[&str], tail: Vec<String>| {
        let mut v = s(head);
        v.extend(tail);
        v
    };
    c(s(&[
        "HSET",
        "hash_small",
        "f1",
        "v1",
        "f2",
        "123",
        "f3",
        "-7",
        "f4",
        "",
    ]));
    c(with(
        &["HSET", "hash_many"],
        (0..200)
            .flat_map(|i| [format!("field{i}"), format!("{i}")])
            .collect(),
    ));
    c(s(&["HSET", "hash_longval", "f", &"x".repeat(100)]));
    c(s(&[
        "RPUSH",
        "list_small",
        "a",
        "b",
        "1",
        "200",
        "-5",
        "70000",
        "hello",
        "",
    ]));
    c(with(
        &["RPUSH", "list_big"],
        (0..3000)
            .map(|i| format!("element-{i}-{}", "p".repeat(i % 40)))
            .collect(),
    ));
    c(with(
        &["RPUSH", "list_ints"],
        (0..1000).map(|i| (i * 37 - 5000).to_string()).collect(),
    ));
    c(s(&[
        "SADD",
        "set_ints",
        "1",
        "2",
        "3",
        "-70000",
        "5000000000",
    ]));
    c(with(
        &["SADD", "set_many_ints"],
        (0..600).map(|i| i.to_string()).collect(),
    ));
    c(s(&[
        "SADD",
        "set_strings",
        "apple",
        "banana",
        "7",
        "cherry",
    ]));
    c(with(
        &["SADD", "set_big"],
        (0..300).map(|i| format!("member{i}")).collect(),
    ));
    c(s(&[
        "ZADD",
        "zset_small",
        "1.5",
        "a",
        "0.1",
        "b",
        "3",
        "c",
        "-2",
        "d",
        "inf",
        "e",
        "-inf",
        "f",
        "1e300",
        "g",
    ]));
    c(with(
        &["ZADD", "zset_big"],
        (0..200)
            .flat_map(|i| [format!("{}", i as f64 / 3.0), format!("m{i}")])
            .collect(),
    ));
    c(s(&[
        "ZADD",
        "zset_longmember",
        "1",
        &"y".repeat(100),
        "2",
        "short",
    ]));
    // (key, whether ringkv's DUMP should equal redis's byte for byte)
    vec![
        ("hash_small", true),
        ("hash_many", false), // hash-table iteration order
        ("hash_longval", false),
        ("list_small", true),
        ("list_big", true),
        ("list_ints", true),
        ("set_ints", true),
        ("set_many_ints", false),
        ("set_strings", false),
        ("set_big", false),
        ("zset_small", true),
        ("zset_big", true),
        ("zset_longmember", false),
    ]
}

#[test]
fn collections_both_ways() {
    let redis = Proc::redis(&[]);
    let ringkv = Proc::ringkv(4, &[]);
    let (mut r, mut k) = (redis.client(), ringkv.client());
    for (key, identical) in fill_collections(&mut r) {
        let original = contents(&mut r, key);
        let from_redis = dump(&mut r, key).unwrap();
        restore(&mut k, key, &from_redis);
        let ty: String = redis::cmd("TYPE").arg(key).query(&mut k).unwrap();
        assert_eq!(ty, original.0, "{key}: TYPE in ringkv");
        let from_ringkv = dump(&mut k, key).unwrap();
        if identical {
            assert_eq!(from_ringkv, from_redis, "{key}: DUMP payloads differ");
        }
        let back = format!("back_{key}");
        restore(&mut r, &back, &from_ringkv);
        assert_eq!(
            contents(&mut r, &back),
            original,
            "{key}: contents after the round trip"
        );
        // Redis re-encodes the value the same way from either payload.
        let enc = |c: &mut Connection, k: &str| cmd(c, &["OBJECT", "ENCODING", k]);
        assert_eq!(
            enc(&mut r, &back),
            enc(&mut r, key),
            "{key}: encoding in redis"
        );
    }
    // Encodings in ringkv follow the loaded data.
    let enc = |c: &mut Connection, key: &str| -> String {
        redis::cmd("OBJECT")
            .arg("ENCODING")
            .arg(key)
            .query(c)
            .unwrap()
    };
    assert_eq!(enc(&mut k, "hash_small"), "listpack");
    assert_eq!(enc(&mut k, "hash_many"), "hashtable");
    assert_eq!(enc(&mut k, "hash_longval"), "hashtable");
    assert_eq!(enc(&mut k, "set_ints"), "intset");
    assert_eq!(enc(&mut k, "set_many_ints"), "hashtable");
    assert_eq!(enc(&mut k, "set_strings"), "listpack");
    assert_eq!(enc(&mut k, "set_big"), "hashtable");
    assert_eq!(enc(&mut k, "list_small"), "listpack");
    assert_eq!(enc(&mut k, "list_big"), "quicklist");
}

#[test]
fn restore_idletime() {
    let redis = Proc::redis(&[]);
    let ringkv = Proc::ringkv(1, &[]);
    for p in [&redis, &ringkv] {
        let mut c = p.client();
        let _: () = redis::cmd("SET").arg("src").arg("v").query(&mut c).unwrap();
        let payload = dump(&mut c, "src").unwrap();
        let _: () = redis::cmd("RESTORE")
            .arg("k")
            .arg(0)
            .arg(&payload)
            .arg("IDLETIME")
            .arg(1000)
            .query(&mut c)
            .unwrap();
        let idle: i64 = redis::cmd("OBJECT")
            .arg("IDLETIME")
            .arg("k")
            .query(&mut c)
            .unwrap();
        assert!((1000..=1001).contains(&idle), "{}: idle {idle}", p.label);
    }
}

/// A normalized view of an RDB value for comparisons.
fn normalized(v: &RdbValue) -> (String, Vec<Vec<u8>>) {
    let mut items: Vec<Vec<u8>> = match v {
        RdbValue::String(s) => vec![s.clone()],
        RdbValue::List(l) => return ("list".into(), l.clone()),
        RdbValue::Set(m) => m.clone(),
        RdbValue::ZSet(m) => m
            .iter()
            .map(|(x, s)| [x.clone(), s.to_bits().to_le_bytes().to_vec()].concat())
            .collect(),
        RdbValue::Hash(p) => p
            .iter()
            .map(|(f, x)| [f.clone(), b"=".to_vec(), x.clone()].concat())
            .collect(),
    };
    items.sort();
    (v.type_name().into(), items)
}

type Expected = BTreeMap<(u64, Vec<u8>), (RdbValue, Option<i64>)>;

/// Data written to redis for the file tests, per database.
fn sample_data() -> Expected {
    let mut m = Expected::new();
    let v = |s: &str| s.as_bytes().to_vec();
    let exp = Some(4_102_444_800_000); // 2100-01-01
    let mut put = |db: u64, key: &str, value: RdbValue, e: Option<i64>| {
        m.insert((db, v(key)), (value, e));
    };
    put(0, "str", RdbValue::String(v("hello")), None);
    put(0, "int", RdbValue::String(v("12345")), exp);
    put(0, "long", RdbValue::String(v(&"z".repeat(500))), None);
    put(
        0,
        "list",
        RdbValue::List((0..500).map(|i| format!("item{i}").into_bytes()).collect()),
        exp,
    );
    put(
        2,
        "hash",
        RdbValue::Hash(vec![(v("a"), v("1")), (v("b"), v("two"))]),
        None,
    );
    put(
        2,
        "bighash",
        RdbValue::Hash(
            (0..300)
                .map(|i| (format!("f{i}").into_bytes(), format!("{i}").into_bytes()))
                .collect(),
        ),
        exp,
    );
    put(
        2,
        "intset",
        RdbValue::Set(["1", "2", "99"].map(v).to_vec()),
        None,
    );
    put(
        5,
        "set",
        RdbValue::Set(["x", "y", "z"].map(v).to_vec()),
        Some(4_102_444_800_123),
    );
    put(
        5,
        "zset",
        RdbValue::ZSet(vec![(v("a"), 1.5), (v("b"), -3.0)]),
        None,
    );
    put(
        5,
        "bigzset",
        RdbValue::ZSet(
            (0..200)
                .map(|i| (format!("m{i}").into_bytes(), i as f64 * 0.5))
                .collect(),
        ),
        None,
    );
    m
}

fn write_to_redis(c: &mut Connection, data: &Expected) {
    for ((db, key), (value, exp)) in data {
        let _: () = redis::cmd("SELECT").arg(*db).query(c).unwrap();
        let cmd = match value {
            RdbValue::String(s) => {
                let mut x = redis::cmd("SET");
                x.arg(key).arg(s);
                x
            }
            RdbValue::List(l) => {
                let mut x = redis::cmd("RPUSH");
                x.arg(key).arg(l);
                x
            }
            RdbValue::Set(m) => {
                let mut x = redis::cmd("SADD");
                x.arg(key).arg(m);
                x
            }
            RdbValue::ZSet(m) => {
                let mut x = redis::cmd("ZADD");
                x.arg(key);
                for (mem, s) in m {
                    x.arg(*s).arg(mem);
                }
                x
            }
            RdbValue::Hash(p) => {
                let mut x = redis::cmd("HSET");
                x.arg(key);
                for (f, v) in p {
                    x.arg(f).arg(v);
                }
                x
            }
        };
        let _: redis::Value = cmd.query(c).unwrap();
        if let Some(ms) = exp {
            let _: () = redis::cmd("PEXPIREAT").arg(key).arg(*ms).query(c).unwrap();
        }
    }
    let _: () = redis::cmd("SELECT").arg(0).query(c).unwrap();
}

#[test]
fn reads_rdb_file_saved_by_redis() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Proc::redis(&[
        "--dir",
        dir.path().to_str().unwrap(),
        "--dbfilename",
        "dump.rdb",
    ]);
    let mut c = redis.client();
    let data = sample_data();
    write_to_redis(&mut c, &data);
    let _: () = redis::cmd("SAVE").query(&mut c).unwrap();
    let file = std::fs::File::open(dir.path().join("dump.rdb")).unwrap();
    let mut reader = RdbReader::new(file, Thresholds::default()).unwrap();
    assert_eq!(reader.version(), 10);
    let mut got = Expected::new();
    while let Some(rec) = reader.next_key().unwrap() {
        got.insert((rec.db, rec.key), (rec.value.value, rec.expire_ms));
    }
    assert!(
        reader
            .aux
            .iter()
            .any(|(k, v)| k == b"redis-ver" && v == b"7.0.15")
    );
    assert_eq!(got.len(), data.len());
    for (k, (value, exp)) in &data {
        let (gv, ge) = got.get(k).unwrap_or_else(|| panic!("missing {k:?}"));
        assert_eq!(normalized(gv), normalized(value), "{k:?}");
        assert_eq!(ge, exp, "{k:?} expiry");
    }
}

#[test]
fn redis_loads_rdb_file_we_write() {
    let dir = tempfile::tempdir().unwrap();
    let data = sample_data();
    let t = Thresholds::default();
    let file = std::fs::File::create(dir.path().join("dump.rdb")).unwrap();
    let mut w = RdbWriter::new(file, WriteOptions::default()).unwrap();
    w.info_aux(&AuxInfo {
        redis_ver: "7.0.15".into(),
        ctime: 1_700_000_000,
        used_mem: 1_000_000,
        aof_base: false,
        functions: vec![],
    })
    .unwrap();
    let mut current = None;
    for ((db, key), (value, exp)) in &data {
        if current != Some(*db) {
            let keys = data.keys().filter(|(d, _)| d == db).count() as u64;
            let expires = data
                .iter()
                .filter(|((d, _), (_, e))| d == db && e.is_some())
                .count() as u64;
            w.select_db(*db).unwrap();
            w.resize_db(keys, expires).unwrap();
            current = Some(*db);
        }
        w.key_value(key, value, Encoding::choose(value, &t), *exp)
            .unwrap();
    }
    w.finish().unwrap();
    let redis = Proc::redis(&[
        "--dir",
        dir.path().to_str().unwrap(),
        "--dbfilename",
        "dump.rdb",
    ]);
    let mut c = redis.client();
    for ((db, key), (value, exp)) in &data {
        let _: () = redis::cmd("SELECT").arg(*db).query(&mut c).unwrap();
        let key = String::from_utf8(key.clone()).unwrap();
        let (ty, items) = contents(&mut c, &key);
        assert_eq!(ty, value.type_name(), "{key}");
        let want = normalized(value).1;
        let got = match value {
            // Compare zsets via the neutral form: redis replies member, score.
            RdbValue::ZSet(_) => {
                let m: Vec<(Vec<u8>, f64)> = items
                    .chunks(2)
                    .map(|p| {
                        (
                            p[0].clone(),
                            String::from_utf8_lossy(&p[1]).parse().unwrap(),
                        )
                    })
                    .collect();
                normalized(&RdbValue::ZSet(m)).1
            }
            RdbValue::Hash(_) => {
                let p: Vec<(Vec<u8>, Vec<u8>)> = {
                    let all: Vec<Vec<u8>> = redis::cmd("HGETALL").arg(&key).query(&mut c).unwrap();
                    all.chunks(2)
                        .map(|p| (p[0].clone(), p[1].clone()))
                        .collect()
                };
                normalized(&RdbValue::Hash(p)).1
            }
            _ => {
                let mut i = items;
                if matches!(value, RdbValue::Set(_)) {
                    i.sort();
                }
                i
            }
        };
        assert_eq!(got, want, "{key}");
        let pexp: i64 = redis::cmd("PEXPIRETIME").arg(&key).query(&mut c).unwrap();
        assert_eq!(pexp, exp.unwrap_or(-1), "{key} expiry");
    }
}
