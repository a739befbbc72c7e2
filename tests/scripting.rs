//! Scripts and functions over TCP, beyond the differential script
//! (tests/scripts/scripting.txt): atomicity under contention on 4 shards,
//! the server-wide script cache, undeclared keys, the time limit (-BUSY,
//! SCRIPT KILL, UNKILLABLE, SHUTDOWN NOSAVE), bad scripts, scripts inside
//! EXEC, the AOF and RDB, and redis-rs's and redis-py's script helpers.

mod common;

use common::Proc;
use std::time::{Duration, Instant};

const INCR_SCRIPT: &str = "local v = tonumber(redis.call('GET', KEYS[1]) or '0'); redis.call('SET', KEYS[1], v + 1); return v + 1";

#[test]
fn scripts_on_the_same_keys_from_many_clients_are_atomic() {
    let p = Proc::ringkv(4, &[]);
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(INCR_SCRIPT)
        .query(&mut p.client())
        .unwrap();
    // Moves between two keys on (most likely) different shards.
    let transfer = redis::Script::new(
        "local a = tonumber(redis.call('GET', KEYS[1])); local b = tonumber(redis.call('GET', KEYS[2])); \
         redis.call('SET', KEYS[1], a - 1); redis.call('SET', KEYS[2], b + 1); return a + b",
    );
    let mut c = p.client();
    let _: () = redis::cmd("MSET")
        .arg(&["x", "500", "y", "500"])
        .query(&mut c)
        .unwrap();
    std::thread::scope(|s| {
        for _ in 0..6 {
            let (p, sha, transfer) = (&p, &sha, &transfer);
            s.spawn(move || {
                let mut c = p.client();
                for _ in 0..150 {
                    let _: i64 = redis::cmd("EVALSHA")
                        .arg(sha)
                        .arg(1)
                        .arg("counter")
                        .query(&mut c)
                        .unwrap();
                    let sum: i64 = transfer.key("x").key("y").invoke(&mut c).unwrap();
                    assert_eq!(sum, 1000);
                    let (x, y): (i64, i64) =
                        redis::cmd("MGET").arg(&["x", "y"]).query(&mut c).unwrap();
                    assert_eq!(x + y, 1000);
                }
            });
        }
    });
    let n: i64 = redis::cmd("GET").arg("counter").query(&mut c).unwrap();
    assert_eq!(n, 900);
}

#[test]
fn the_script_cache_is_server_wide() {
    let p = Proc::ringkv(4, &[]);
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg("return KEYS[1]")
        .query(&mut p.client())
        .unwrap();
    // Fresh connections land on every shard; each runs the script by SHA.
    for i in 0..16 {
        let key = format!("k{i}");
        let got: String = redis::cmd("EVALSHA")
            .arg(&sha)
            .arg(1)
            .arg(&key)
            .query(&mut p.client())
            .unwrap();
        assert_eq!(got, key);
    }
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query(&mut p.client())
        .unwrap();
    let err = redis::cmd("EVALSHA")
        .arg(&sha)
        .arg(0)
        .query::<String>(&mut p.client())
        .unwrap_err();
    assert_eq!(err.code(), Some("NOSCRIPT"));
}

#[test]
fn undeclared_keys_on_other_shards_fail_unless_every_shard_is_locked() {
    let p = Proc::ringkv(4, &[]);
    let mut c = p.client();
    let script = "for i = 1, 32 do redis.call('SET', 'u' .. i, i) end return 1";
    let err = redis::cmd("EVAL")
        .arg(script)
        .arg(0)
        .query::<i64>(&mut c)
        .unwrap_err();
    assert!(
        err.to_string().contains("on a shard it did not lock"),
        "{err}"
    );
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "lua-lock-all-shards", "yes"])
        .query(&mut c)
        .unwrap();
    let ok: i64 = redis::cmd("EVAL").arg(script).arg(0).query(&mut c).unwrap();
    assert_eq!(ok, 1);
    let n: usize = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert!(n >= 32);
    // Keyless commands need every shard too.
    let keys: Vec<String> = redis::cmd("EVAL")
        .arg("return redis.call('KEYS', 'u1*')")
        .arg(0)
        .query(&mut c)
        .unwrap();
    assert_eq!(keys.len(), 11, "u1 and u10..u19");
}

/// Connections until one answers PING with -BUSY. A connection the kernel
/// hands to the script's own shard is not accepted until the script ends,
/// so its PING times out and the next one is tried; with 4 shards one of 64
/// surely lands elsewhere.
fn busy_connection(p: &Proc) -> common::Raw {
    for _ in 0..64 {
        let mut r = p.raw();
        r.set_timeout(Duration::from_millis(300));
        match r.try_cmd(&[b"PING"]) {
            Some(reply) if reply.starts_with(b"-BUSY") => {
                r.set_timeout(Duration::from_secs(20));
                return r;
            }
            _ => continue,
        }
    }
    panic!("no connection got -BUSY");
}

#[test]
fn busy_scripts_get_busy_replies_script_kill_and_unkillable() {
    let p = Proc::ringkv(4, &["--busy-reply-threshold", "100"]);
    let mut runner = p.raw();
    runner.send_cmd(&[b"EVAL", b"while true do end", b"1", b"spin"]);
    std::thread::sleep(Duration::from_millis(200));
    let mut other = busy_connection(&p);
    assert_eq!(
        other.cmd(&[b"GET", b"x"]),
        b"-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n"
    );
    assert_eq!(other.cmd(&[b"FUNCTION", b"KILL"])[..8], b"-NOTBUSY"[..]);
    assert_eq!(other.cmd(&[b"SCRIPT", b"KILL"]), b"+OK\r\n");
    let reply = runner.read_reply().expect("the killed script answers");
    assert!(
        reply.starts_with(b"-ERR Script killed by user with SCRIPT KILL"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert_eq!(other.cmd(&[b"SCRIPT", b"KILL"])[..8], b"-NOTBUSY"[..]);
    assert_eq!(other.cmd(&[b"PING"]), b"+PONG\r\n");
    // A script that wrote cannot be killed; SHUTDOWN NOSAVE stops it all.
    runner.send_cmd(&[
        b"EVAL",
        b"redis.call('SET', KEYS[1], 1) while true do end",
        b"1",
        b"spin",
    ]);
    std::thread::sleep(Duration::from_millis(200));
    let mut other = busy_connection(&p);
    assert_eq!(other.cmd(&[b"SCRIPT", b"KILL"])[..12], b"-UNKILLABLE "[..]);
    other.send_cmd(&[b"SHUTDOWN", b"NOSAVE"]);
    let mut p = p;
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.alive() {
        assert!(
            Instant::now() < deadline,
            "SHUTDOWN NOSAVE did not stop the server"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bad_scripts_fail_and_the_server_stays_well() {
    let p = Proc::ringkv(4, &[]);
    let mut c = p.client();
    for (script, want) in [
        ("return (", "Error compiling script"),
        (
            "local function f(n) return f(n + 1) + 1 end return f(1)",
            "stack overflow",
        ),
        (
            "local t = {} setmetatable(t, {__index = function(t, k) return t[k] end}) return t.x",
            "stack overflow",
        ),
        ("return string.rep('x', -1)", ""),
    ] {
        match redis::cmd("EVAL")
            .arg(script)
            .arg(0)
            .query::<redis::Value>(&mut c)
        {
            Ok(v) => assert!(want.is_empty(), "{script}: {v:?}"),
            Err(e) => assert!(e.to_string().contains(want), "{script}: {e}"),
        }
    }
    let pong: String = redis::cmd("PING").query(&mut p.client()).unwrap();
    assert_eq!(pong, "PONG");
}

#[test]
fn scripts_run_inside_exec_atomically() {
    let p = Proc::ringkv(4, &[]);
    let mut c = p.client();
    let (a, b, n): (i64, i64, i64) = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("e1")
        .arg(1)
        .ignore()
        .cmd("EVAL")
        .arg(INCR_SCRIPT)
        .arg(1)
        .arg("e1")
        .cmd("EVAL")
        .arg("return redis.call('INCRBY', KEYS[1], 10)")
        .arg(1)
        .arg("e2")
        .cmd("DBSIZE")
        .query(&mut c)
        .unwrap();
    assert_eq!((a, b, n), (2, 10, 2));
}

#[test]
fn script_effects_and_functions_survive_a_restart() {
    let flags = ["--appendonly", "yes", "--appendfsync", "always"];
    let mut p = Proc::ringkv(4, &flags);
    let mut c = p.client();
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("#!lua name=lib\nredis.register_function('bump', function(keys) return redis.call('INCR', keys[1]) end)")
        .query(&mut c)
        .unwrap();
    for i in 0..20 {
        let _: i64 = redis::cmd("FCALL")
            .arg("bump")
            .arg(1)
            .arg(format!("f{}", i % 4))
            .query(&mut c)
            .unwrap();
        // math.random is not replayed: its effect (the value) is.
        let _: i64 = redis::cmd("EVAL")
            .arg("local v = math.random(1000000) redis.call('SET', KEYS[1], v) return v")
            .arg(1)
            .arg(format!("r{i}"))
            .query(&mut c)
            .unwrap();
    }
    let before: Vec<Option<String>> = redis::cmd("MGET")
        .arg((0..20).map(|i| format!("r{i}")).collect::<Vec<_>>())
        .query(&mut c)
        .unwrap();
    p.kill9();
    let dir = p.dir.clone();
    drop(p);
    let p = Proc::ringkv_in(&dir, 4, &flags);
    let mut c = p.client();
    let after: Vec<Option<String>> = redis::cmd("MGET")
        .arg((0..20).map(|i| format!("r{i}")).collect::<Vec<_>>())
        .query(&mut c)
        .unwrap();
    assert_eq!(before, after);
    let f: Vec<i64> = redis::cmd("MGET")
        .arg(&["f0", "f1", "f2", "f3"])
        .query(&mut c)
        .unwrap();
    assert_eq!(f, vec![5, 5, 5, 5]);
    let n: i64 = redis::cmd("FCALL")
        .arg("bump")
        .arg(1)
        .arg("f0")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 6, "the library is back");
    // Through an RDB file too (functions are its FUNCTION2 records).
    let _: () = redis::cmd("SAVE").query(&mut c).unwrap();
    drop(c);
    drop(p);
    let p = Proc::ringkv_in(&dir, 4, &[]);
    let n: i64 = redis::cmd("FCALL")
        .arg("bump")
        .arg(1)
        .arg("f0")
        .query(&mut p.client())
        .unwrap();
    assert_eq!(n, 7);
}

#[test]
fn redis_server_loads_our_functions_from_rdb() {
    let p = Proc::ringkv(2, &[]);
    let mut c = p.client();
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("#!lua name=shared\nredis.register_function('hello', function() return 'hi' end)")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SAVE").query(&mut c).unwrap();
    let dir = p.dir.clone();
    drop(c);
    drop(p);
    let r = Proc::redis(&["--dir", dir.to_str().unwrap(), "--dbfilename", "dump.rdb"]);
    let got: String = redis::cmd("FCALL")
        .arg("hello")
        .arg(0)
        .query(&mut r.client())
        .unwrap();
    assert_eq!(got, "hi");
}

#[test]
fn redis_rs_script_helper_loads_on_noscript() {
    let p = Proc::ringkv(4, &[]);
    let mut c = p.client();
    let script = redis::Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    let a: i64 = script.key("rs").arg(3).invoke(&mut c).unwrap();
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut c).unwrap();
    let b: i64 = script.key("rs").arg(4).invoke(&mut c).unwrap();
    assert_eq!((a, b), (3, 7));
}

#[test]
fn redis_py_lock_and_register_script_work_unchanged() {
    let p = Proc::ringkv(4, &[]);
    common::redis_py(p.port, &["scripts"]);
}

#[test]
fn a_busy_script_on_the_only_shard_still_answers_busy_and_script_kill() {
    let p = Proc::ringkv(1, &["--busy-reply-threshold", "100"]);
    // Connections made while the shard is busy wait until it is free, so
    // these exist before.
    let (mut runner, mut other, mut killer) = (p.raw(), p.raw(), p.raw());
    for c in [&mut runner, &mut other, &mut killer] {
        assert_eq!(c.cmd(&[b"PING"]), b"+PONG\r\n");
    }
    runner.send_cmd(&[b"EVAL", b"while true do end", b"0"]);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        other.cmd(&[b"SET", b"x", b"1"]),
        b"-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n"
    );
    // A command split over two writes is kept whole for its connection.
    other.send(b"*2\r\n$4\r\nECHO\r\n");
    std::thread::sleep(Duration::from_millis(50));
    other.send(b"$2\r\nhi\r\n");
    assert_eq!(other.read_reply().unwrap()[..5], b"-BUSY"[..]);
    assert_eq!(killer.cmd(&[b"SCRIPT", b"KILL"]), b"+OK\r\n");
    let reply = runner.read_reply().expect("the killed script answers");
    assert!(reply.starts_with(b"-ERR Script killed by user with SCRIPT KILL"));
    assert_eq!(other.cmd(&[b"ECHO", b"after"]), b"$5\r\nafter\r\n");
    assert_eq!(runner.cmd(&[b"PING"]), b"+PONG\r\n");
}

#[test]
fn we_load_functions_from_a_redis_server_rdb_file() {
    let r = Proc::redis(&[]);
    let mut c = r.client();
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("#!lua name=fromredis\nredis.register_function('twice', function(keys, args) return args[1] * 2 end)")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SAVE").query(&mut c).unwrap();
    let dir = r.dir.clone();
    drop(c);
    drop(r);
    let p = Proc::ringkv_in(&dir, 2, &[]);
    let got: i64 = redis::cmd("FCALL")
        .arg("twice")
        .arg(0)
        .arg(21)
        .query(&mut p.client())
        .unwrap();
    assert_eq!(got, 42);
}

#[test]
fn function_stats_shows_a_busy_function_and_function_kill_stops_it() {
    let p = Proc::ringkv(4, &["--busy-reply-threshold", "100"]);
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("#!lua name=spinlib\nredis.register_function{function_name='spin', callback=function() while true do end end, flags={'no-writes'}}")
        .query(&mut p.client())
        .unwrap();
    let mut runner = p.raw();
    runner.send_cmd(&[b"FCALL", b"spin", b"0"]);
    std::thread::sleep(Duration::from_millis(200));
    let mut other = busy_connection(&p);
    let stats = String::from_utf8_lossy(&other.cmd(&[b"FUNCTION", b"STATS"])).into_owned();
    assert!(
        stats.contains("$4\r\nname\r\n$4\r\nspin\r\n$7\r\ncommand\r\n*3\r\n$5\r\nFCALL\r\n"),
        "{stats}"
    );
    assert_eq!(other.cmd(&[b"SCRIPT", b"KILL"])[..8], b"-NOTBUSY"[..]);
    assert_eq!(other.cmd(&[b"FUNCTION", b"KILL"]), b"+OK\r\n");
    let reply = runner.read_reply().expect("the killed function answers");
    assert!(
        reply.starts_with(b"-ERR Script killed"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
}
