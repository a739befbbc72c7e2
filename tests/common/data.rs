//! Persistence helpers shared by the RDB, AOF and MemoryStore tests: a
//! dataset of every type, a key-by-key view of a server, and running the
//! binary to completion.

use super::Proc;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The databases [`populate`] writes.
pub const DBS: [u32; 3] = [0, 1, 5];

/// Every key of databases `dbs`: (db, key) → (type, value, PEXPIRETIME).
pub type Keyspace = BTreeMap<(u32, Vec<u8>), (String, Vec<Vec<u8>>, i64)>;

/// Writes every type in small and big encodings, with TTLs, in several
/// databases.
pub fn populate(c: &mut redis::Connection) {
    let mut p = redis::pipe();
    p.cmd("SELECT").arg(0).ignore();
    p.cmd("SET").arg("s:int").arg("12345").ignore();
    p.cmd("SET").arg("s:neg").arg("-7").ignore();
    p.cmd("SET").arg("s:short").arg("hello").ignore();
    p.cmd("SET").arg("s:long").arg("a".repeat(1000)).ignore();
    let noise: Vec<u8> = (0..300u32).map(|i| (i * 131 % 251) as u8).collect();
    p.cmd("SET").arg("s:bin").arg(noise).ignore();
    p.cmd("SET").arg("s:big").arg("xyz".repeat(7000)).ignore();
    p.cmd("SET").arg("s:empty").arg("").ignore();
    p.cmd("RPUSH")
        .arg("l:small")
        .arg(&["a", "b", "1", "2", "-3"])
        .ignore();
    let items: Vec<String> = (0..2000).map(|i| format!("item-{i}")).collect();
    p.cmd("RPUSH").arg("l:big").arg(&items).ignore();
    p.cmd("RPUSH")
        .arg("l:huge")
        .arg("q".repeat(10_000))
        .arg("x")
        .ignore();
    p.cmd("HSET")
        .arg("h:small")
        .arg(&["f1", "v1", "f2", "22"])
        .ignore();
    for i in 0..300 {
        p.cmd("HSET")
            .arg("h:big")
            .arg(format!("field{i}"))
            .arg(i)
            .ignore();
    }
    p.cmd("HSET")
        .arg("h:longval")
        .arg("f")
        .arg("v".repeat(100))
        .ignore();
    let ints: Vec<i64> = (1..=100).collect();
    p.cmd("SADD").arg("set:ints").arg(&ints).ignore();
    let many: Vec<i64> = (0..600).map(|i| i * 1000 - 7).collect();
    p.cmd("SADD").arg("set:bigints").arg(&many).ignore();
    p.cmd("SADD").arg("set:str").arg(&["a", "b", "c"]).ignore();
    let strs: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
    p.cmd("SADD").arg("set:bigstr").arg(&strs).ignore();
    p.cmd("ZADD")
        .arg("z:small")
        .arg(&["1", "a", "2.5", "b", "-3", "c"])
        .ignore();
    for i in 0..200 {
        p.cmd("ZADD")
            .arg("z:big")
            .arg(i as f64 / 3.0)
            .arg(format!("mem{i}"))
            .ignore();
    }
    p.cmd("ZADD")
        .arg("z:inf")
        .arg(&["-inf", "lo", "+inf", "hi"])
        .ignore();
    p.cmd("SET")
        .arg("ttl:s")
        .arg("v")
        .arg("PX")
        .arg(100_000_000)
        .ignore();
    p.cmd("RPUSH").arg("ttl:l").arg("x").ignore();
    p.cmd("PEXPIREAT")
        .arg("ttl:l")
        .arg(4_102_444_800_123i64)
        .ignore();
    p.cmd("HSET").arg("ttl:h").arg(&["a", "b"]).ignore();
    p.cmd("EXPIRE").arg("ttl:h").arg(50_000).ignore();
    p.cmd("SELECT").arg(1).ignore();
    p.cmd("SET").arg("one").arg("1").ignore();
    p.cmd("RPUSH")
        .arg("s:short")
        .arg("db1 has its own")
        .ignore();
    p.cmd("SELECT").arg(5).ignore();
    p.cmd("SET")
        .arg("five")
        .arg("5")
        .arg("EX")
        .arg(999_999)
        .ignore();
    p.cmd("SADD").arg("fiveset").arg(&["x", "y"]).ignore();
    p.cmd("SELECT").arg(0).ignore();
    p.query::<()>(c).unwrap();
}

pub fn keyspace(server: &Proc) -> Keyspace {
    let mut c = server.client();
    let mut out = Keyspace::new();
    for db in DBS {
        redis::cmd("SELECT").arg(db).query::<()>(&mut c).unwrap();
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
        for k in keys {
            let ty: String = redis::cmd("TYPE").arg(&k).query(&mut c).unwrap();
            let q = |cmd: &mut redis::Cmd, c: &mut redis::Connection| -> Vec<Vec<u8>> {
                cmd.query(c).unwrap()
            };
            let mut v: Vec<Vec<u8>> = match ty.as_str() {
                "string" => vec![redis::cmd("GET").arg(&k).query(&mut c).unwrap()],
                "list" => q(redis::cmd("LRANGE").arg(&k).arg(0).arg(-1), &mut c),
                "hash" => q(redis::cmd("HGETALL").arg(&k), &mut c),
                "set" => q(redis::cmd("SMEMBERS").arg(&k), &mut c),
                "zset" => q(
                    redis::cmd("ZRANGE")
                        .arg(&k)
                        .arg(0)
                        .arg(-1)
                        .arg("WITHSCORES"),
                    &mut c,
                ),
                other => panic!("{}: unexpected type {other}", server.label),
            };
            match ty.as_str() {
                "set" => v.sort(),
                "hash" => {
                    let mut pairs: Vec<Vec<u8>> = v.chunks(2).map(|p| p.concat()).collect();
                    pairs.sort();
                    v = pairs;
                }
                _ => {}
            }
            let exp: i64 = redis::cmd("PEXPIRETIME").arg(&k).query(&mut c).unwrap();
            out.insert((db, k), (ty, v, exp));
        }
    }
    out
}

/// Runs the ringkv binary to completion (bounded), returning (success, output).
pub fn run_ringkv(args: &[&str], cwd: &Path) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringkv"))
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ringkv {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}
