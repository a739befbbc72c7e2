//! Server commands end to end: COMMAND metadata, INFO, CONFIG at run time,
//! SWAPDB atomicity, FLUSHALL ASYNC, SHUTDOWN and startup configuration.

mod common;

use common::{Proc, Raw, free_port};
use redis::Value;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::VerbatimString { text, .. } => text.clone(),
        other => panic!("not a string: {other:?}"),
    }
}

fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        other => panic!("not an aggregate: {other:?}"),
    }
}

/// Map entries, from a RESP3 map or a RESP2 flat array.
fn pairs(v: &Value) -> Vec<(String, Value)> {
    match v {
        Value::Map(m) => m.iter().map(|(k, v)| (text(k), v.clone())).collect(),
        Value::Array(a) => a.chunks(2).map(|c| (text(&c[0]), c[1].clone())).collect(),
        other => panic!("not a map: {other:?}"),
    }
}

fn get<'a>(m: &'a [(String, Value)], k: &str) -> &'a Value {
    &m.iter()
        .find(|(n, _)| n == k)
        .unwrap_or_else(|| panic!("no field {k}"))
        .1
}

fn info(con: &mut redis::Connection, section: &str) -> String {
    redis::cmd("INFO").arg(section).query(con).unwrap()
}

/// The value of `field` in an INFO text.
fn field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.to_string())
}

fn strs(v: &Value) -> Vec<String> {
    items(v).iter().map(text).collect()
}

/// Checks one COMMAND INFO entry's layout and returns it.
fn check_entry(e: &Value, name: &str, arity: i64) -> Vec<Value> {
    let e = items(e).to_vec();
    assert_eq!(e.len(), 10, "{name}: {e:?}");
    assert_eq!(text(&e[0]), name);
    assert_eq!(e[1], Value::Int(arity), "{name} arity");
    let acl = strs(&e[6]);
    assert!(acl.iter().all(|c| c.starts_with('@')), "{acl:?}");
    items(&e[7]);
    items(&e[8]);
    items(&e[9]);
    e
}

#[test]
fn command_info_and_docs_describe_the_table() {
    let srv = Proc::ringkv(2, &[]);
    let mut con = srv.client();

    let v: Value = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("get")
        .arg("set")
        .arg("config|get")
        .arg("nosuch")
        .query(&mut con)
        .unwrap();
    let list = items(&v);
    assert_eq!(list.len(), 4);
    let g = check_entry(&list[0], "get", 2);
    assert_eq!(strs(&g[2]), ["readonly", "fast"]);
    assert_eq!(&g[3..6], &[Value::Int(1), Value::Int(1), Value::Int(1)]);
    assert_eq!(strs(&g[6]), ["@read", "@string", "@fast"]);
    let spec = pairs(&items(&g[8])[0]);
    assert_eq!(strs(get(&spec, "flags")), ["RO", "access"]);
    let begin = pairs(get(&spec, "begin_search"));
    assert_eq!(text(get(&begin, "type")), "index");
    assert_eq!(get(&pairs(get(&begin, "spec")), "index"), &Value::Int(1));
    let s = check_entry(&list[1], "set", -3);
    assert!(strs(&s[2]).contains(&"write".to_string()));
    assert!(strs(&s[6]).contains(&"@write".to_string()));
    let cg = check_entry(&list[2], "config|get", -3);
    assert_eq!(strs(&cg[6]), ["@admin", "@slow", "@dangerous"]);
    assert_eq!(list[3], Value::Nil);

    // A container lists its subcommands as full entries.
    let v: Value = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("config")
        .query(&mut con)
        .unwrap();
    let cfg = check_entry(&items(&v)[0], "config", -2);
    let subs: Vec<String> = items(&cfg[9]).iter().map(|e| text(&items(e)[0])).collect();
    assert!(subs.contains(&"config|set".to_string()), "{subs:?}");

    // client|kill, when the CLIENT family is in the table.
    let v: Value = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("client|kill")
        .query(&mut con)
        .unwrap();
    if items(&v)[0] != Value::Nil {
        let k = check_entry(&items(&v)[0], "client|kill", -3);
        assert!(strs(&k[6]).contains(&"@admin".to_string()));
    }

    // COMMAND DOCS: a map of name → summary, since, group (+ subcommands).
    let v: Value = redis::cmd("COMMAND")
        .arg("DOCS")
        .arg("get")
        .arg("config")
        .arg("nosuch")
        .query(&mut con)
        .unwrap();
    let docs = pairs(&v);
    assert_eq!(docs.len(), 2);
    let get_doc = pairs(get(&docs, "get"));
    assert_eq!(text(get(&get_doc, "group")), "string");
    assert_eq!(text(get(&get_doc, "since")), "1.0.0");
    assert!(!text(get(&get_doc, "summary")).is_empty());
    let cfg_doc = pairs(get(&docs, "config"));
    let sub_docs = pairs(get(&cfg_doc, "subcommands"));
    assert!(sub_docs.iter().any(|(n, _)| n == "config|get"));

    // COMMAND, COMMAND COUNT and COMMAND LIST agree.
    let all: Value = redis::cmd("COMMAND").query(&mut con).unwrap();
    let count: i64 = redis::cmd("COMMAND").arg("COUNT").query(&mut con).unwrap();
    assert_eq!(items(&all).len() as i64, count);
    let names: Vec<String> = redis::cmd("COMMAND").arg("LIST").query(&mut con).unwrap();
    assert!(names.len() as i64 > count);
    assert!(names.contains(&"config|get".to_string()));
    let fast: Vec<String> = redis::cmd("COMMAND")
        .arg("LIST")
        .arg("FILTERBY")
        .arg("ACLCAT")
        .arg("FAST")
        .query(&mut con)
        .unwrap();
    assert!(fast.contains(&"get".to_string()) && !fast.contains(&"flushall".to_string()));
    let keys: Vec<String> = redis::cmd("COMMAND")
        .arg("GETKEYS")
        .arg("MGET")
        .arg("a")
        .arg("b")
        .query(&mut con)
        .unwrap();
    assert_eq!(keys, ["a", "b"]);
}

/// INFO memory reports jemalloc's own totals as Redis does, and MEMORY
/// MALLOC-STATS prints jemalloc's report (its text is the allocator's, so
/// it is checked here rather than against redis-server).
#[test]
fn info_memory_reports_the_allocator() {
    let srv = Proc::ringkv(2, &[]);
    let mut con = srv.client();
    let value = vec![b'x'; 1000];
    for i in 0..5000 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(&value)
            .query(&mut con)
            .unwrap();
    }
    let mem = info(&mut con, "memory");
    let num = |name: &str| -> u64 {
        field(&mem, name)
            .unwrap_or_else(|| panic!("no {name} in INFO memory"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(
        field(&mem, "mem_allocator").unwrap().trim(),
        "jemalloc-5.3.0"
    );
    let used = num("used_memory");
    let (allocated, active, resident) = (
        num("allocator_allocated"),
        num("allocator_active"),
        num("allocator_resident"),
    );
    assert!(used > 5_000_000, "used_memory {used}");
    assert!(
        allocated >= used * 9 / 10,
        "allocated {allocated}, used {used}"
    );
    assert!(active >= allocated && resident >= active, "{mem}");
    for name in ["allocator_frag_ratio", "allocator_rss_ratio"] {
        let r: f64 = field(&mem, name).unwrap().trim().parse().unwrap();
        assert!(r >= 1.0, "{name} {r}");
    }
    let stats: String = redis::cmd("MEMORY")
        .arg("MALLOC-STATS")
        .query(&mut con)
        .unwrap();
    assert!(stats.contains("jemalloc statistics"), "{stats}");
    let _: () = redis::cmd("MEMORY").arg("PURGE").query(&mut con).unwrap();
}

#[test]
fn info_reports_live_counters() {
    let srv = Proc::ringkv(4, &[]);
    let mut con = srv.client();
    let _c2 = srv.client();
    let _c3 = srv.client();
    // Connections from the harness's readiness probe close asynchronously.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = field(&info(&mut con, "clients"), "connected_clients");
        if n.as_deref() == Some("3") {
            break;
        }
        assert!(Instant::now() < deadline, "connected_clients: {n:?}");
        std::thread::sleep(Duration::from_millis(20));
    }

    let before: u64 = field(&info(&mut con, "memory"), "used_memory")
        .unwrap()
        .parse()
        .unwrap();
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        pipe.cmd("SET")
            .arg(format!("key:{i}"))
            .arg("x".repeat(100))
            .ignore();
    }
    pipe.query::<()>(&mut con).unwrap();
    let _: Option<String> = redis::cmd("GET").arg("missing").query(&mut con).unwrap();
    // Connection setup may itself have drawn errors (CLIENT SETINFO), so
    // count from here.
    let errors = |con: &mut redis::Connection| -> u64 {
        field(&info(con, "errorstats"), "errorstat_ERR")
            .and_then(|v| v.strip_prefix("count=")?.parse().ok())
            .unwrap_or(0)
    };
    let errors_before = errors(&mut con);
    let _: redis::RedisResult<Value> = redis::cmd("SET").arg("a").query(&mut con);
    assert_eq!(errors(&mut con), errors_before + 1);

    let all = info(&mut con, "everything");
    for section in [
        "# Server",
        "# Clients",
        "# Memory",
        "# Stats",
        "# Commandstats",
        "# Errorstats",
        "# Keyspace",
    ] {
        assert!(all.contains(section), "{section} missing");
    }
    assert_eq!(field(&all, "redis_version").unwrap(), "7.0.15");
    assert_eq!(field(&all, "db0").unwrap(), "keys=1000,expires=0,avg_ttl=0");
    assert!(
        field(&all, "cmdstat_set")
            .unwrap()
            .starts_with("calls=1000,"),
        "{all}"
    );
    assert!(
        field(&all, "cmdstat_set")
            .unwrap()
            .ends_with("rejected_calls=1,failed_calls=0")
    );
    assert_eq!(field(&all, "keyspace_misses").unwrap(), "1");
    let used: u64 = field(&all, "used_memory").unwrap().parse().unwrap();
    assert!(
        used >= before + 1000 * 100,
        "used_memory {before} -> {used}"
    );
    let rss: u64 = field(&all, "used_memory_rss").unwrap().parse().unwrap();
    assert!(rss > 0);

    // Default sections leave out commandstats; unknown sections are empty.
    let default = info(&mut con, "default");
    assert!(default.contains("# Keyspace") && !default.contains("# Commandstats"));
    assert_eq!(info(&mut con, "nosuchsection"), "");
    let two: String = redis::cmd("INFO")
        .arg("server")
        .arg("keyspace")
        .query(&mut con)
        .unwrap();
    assert!(two.starts_with("# Server\r\n") && two.contains("\r\n\r\n# Keyspace\r\n"));

    // CONFIG RESETSTAT clears the counters.
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut con)
        .unwrap();
    let stats = info(&mut con, "commandstats");
    assert!(field(&stats, "cmdstat_set").is_none(), "{stats}");

    // RESP3: a verbatim string.
    let mut raw = srv.raw();
    raw.cmd_str(&["HELLO", "3"]);
    let reply = raw.cmd_str(&["INFO", "server"]);
    assert!(
        reply.starts_with(b"="),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
    assert!(reply.windows(13).any(|w| w == b"txt:# Server\r"));
}

#[test]
fn config_set_takes_effect() {
    let srv = Proc::ringkv(4, &[]);
    let mut con = srv.client();

    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("hz")
        .arg("50")
        .query(&mut con)
        .unwrap();
    assert_eq!(field(&info(&mut con, "server"), "hz").unwrap(), "50");

    // maxclients: this connection plus one more; the third is refused.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxclients")
        .arg("2")
        .query(&mut con)
        .unwrap();
    let mut second = srv.raw();
    assert_eq!(second.cmd_str(&["PING"]), b"+PONG\r\n");
    let mut third = Raw::connect(srv.port);
    assert_eq!(
        third.read_reply().unwrap(),
        b"-ERR max number of clients reached\r\n"
    );
    drop(second);
    drop(third);
    assert_eq!(
        field(&info(&mut con, "stats"), "rejected_connections").unwrap(),
        "1"
    );
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxclients")
        .arg("100")
        .query(&mut con)
        .unwrap();

    // requirepass: new connections, on any shard, must authenticate; this
    // one stays authenticated.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("s3cret")
        .query(&mut con)
        .unwrap();
    for _ in 0..8 {
        let mut r = srv.raw();
        assert_eq!(
            r.cmd_str(&["GET", "x"]),
            b"-NOAUTH Authentication required.\r\n"
        );
    }
    let v: Option<String> = redis::cmd("GET").arg("x").query(&mut con).unwrap();
    assert_eq!(v, None);

    // A failed multi-set changes nothing.
    let r: redis::RedisResult<()> = redis::cmd("CONFIG")
        .arg("SET")
        .arg("hz")
        .arg("20")
        .arg("maxclients")
        .arg("0")
        .query(&mut con);
    assert!(r.is_err());
    assert_eq!(field(&info(&mut con, "server"), "hz").unwrap(), "50");
}

#[test]
fn swapdb_is_atomic_across_shards() {
    let srv = Proc::ringkv(4, &[]);
    let mut con = srv.client();
    const A: usize = 64;
    let akeys: Vec<String> = (0..A).map(|i| format!("a:{i}")).collect();
    let mut pipe = redis::pipe();
    for k in &akeys {
        pipe.cmd("SET").arg(k).arg("1").ignore();
    }
    pipe.query::<()>(&mut con).unwrap();

    const SWAPS: usize = 40;
    const WRITES: usize = 300;
    let port = srv.port;
    let connect = move |db: i64| {
        let c = redis::Client::open(format!("redis://127.0.0.1:{port}/{db}")).unwrap();
        c.get_connection_with_timeout(Duration::from_secs(5))
            .unwrap()
    };
    std::thread::scope(|s| {
        let swapper = s.spawn(move || {
            let mut c = connect(0);
            for _ in 0..SWAPS {
                let _: () = redis::cmd("SWAPDB").arg(0).arg(1).query(&mut c).unwrap();
            }
        });
        for db in [0, 1] {
            s.spawn(move || {
                let mut c = connect(db);
                for i in 0..WRITES {
                    let _: () = redis::cmd("SET")
                        .arg(format!("w{db}:{i}"))
                        .arg(i)
                        .query(&mut c)
                        .unwrap();
                }
            });
        }
        // Readers: the a:* keys span every shard, so a half-done swap would
        // show some but not all of them, or a size that is neither.
        let akeys = &akeys;
        s.spawn(move || {
            let mut c = connect(0);
            while !swapper.is_finished() {
                let vals: Vec<Option<String>> =
                    redis::cmd("MGET").arg(akeys).query(&mut c).unwrap();
                let present = vals.iter().filter(|v| v.is_some()).count();
                assert!(present == 0 || present == A, "saw {present} of {A}");
            }
        });
    });
    let mut total = 0;
    for db in [0, 1] {
        let _: () = redis::cmd("SELECT").arg(db).query(&mut con).unwrap();
        total += redis::cmd("DBSIZE").query::<usize>(&mut con).unwrap();
    }
    assert_eq!(total, A + 2 * WRITES);
    // An even number of swaps leaves a:* in db 0.
    let _: () = redis::cmd("SELECT").arg(0).query(&mut con).unwrap();
    let v: Option<String> = redis::cmd("GET").arg("a:0").query(&mut con).unwrap();
    assert_eq!(v.as_deref(), Some("1"));
}

#[test]
fn flushall_async_frees_200k_keys() {
    let srv = Proc::ringkv(4, &[]);
    let mut con = srv.client();
    const N: usize = 200_000;
    for chunk in (0..N).collect::<Vec<_>>().chunks(20_000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("SET").arg(format!("key:{i}")).arg(i).ignore();
        }
        pipe.query::<()>(&mut con).unwrap();
    }
    assert_eq!(redis::cmd("DBSIZE").query::<usize>(&mut con).unwrap(), N);
    let _: () = redis::cmd("FLUSHALL").arg("ASYNC").query(&mut con).unwrap();
    assert_eq!(redis::cmd("DBSIZE").query::<usize>(&mut con).unwrap(), 0);
    let v: Option<String> = redis::cmd("GET").arg("key:7").query(&mut con).unwrap();
    assert_eq!(v, None);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mem = info(&mut con, "memory");
        let pending = field(&mem, "lazyfree_pending_objects").unwrap();
        let freed: usize = field(&mem, "lazyfreed_objects").unwrap().parse().unwrap();
        if pending == "0" && freed == N {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pending {pending}, freed {freed}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A ringkv process started by a test, killed on drop unless it exited.
struct Own(Child);

impl Drop for Own {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> Own {
    Own(Command::new(env!("CARGO_BIN_EXE_ringkv"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap())
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !common::answers_ping(port, "PING\r\n") {
        assert!(Instant::now() < deadline, "no server on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_exit(p: &mut Own) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = p.0.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < deadline, "process did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn shutdown_exits_cleanly_and_loglevel_changes_at_run_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("ringkv.log");
    let port = free_port();
    let ps = port.to_string();
    let mut p = spawn(&[
        "--port",
        &ps,
        "--shards",
        "2",
        "--loglevel",
        "warning",
        "--logfile",
        log.to_str().unwrap(),
    ]);
    wait_port(port);
    let mut raw = Raw::connect(port);
    assert_eq!(
        raw.cmd_str(&["SHUTDOWN", "ABORT"]),
        b"-ERR No shutdown in progress.\r\n"
    );
    // At "warning", the notice-level shutdown lines would not be logged.
    assert_eq!(
        raw.cmd_str(&["CONFIG", "SET", "loglevel", "notice"]),
        b"+OK\r\n"
    );
    raw.send_cmd(&[b"SHUTDOWN", b"NOSAVE"]);
    assert_eq!(raw.read_reply(), None, "SHUTDOWN must not reply");
    let status = wait_exit(&mut p);
    assert!(status.success(), "{status:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("User requested shutdown"), "{text}");
    assert!(text.contains("scheduling shutdown"), "{text}");
}

#[test]
fn config_file_errors_name_the_directive_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ringkv.conf");
    std::fs::write(&cfg, "# comment\nport 7000\nbogus-directive 1\n").unwrap();
    let mut p = spawn(&[cfg.to_str().unwrap()]);
    let status = wait_exit(&mut p);
    assert!(!status.success());
    let mut err = String::new();
    p.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(
        err.contains("line 3") && err.contains("bogus-directive"),
        "{err}"
    );

    // Unknown flags are refused by name too.
    let mut p = spawn(&["--no-such-flag", "1"]);
    assert!(!wait_exit(&mut p).success());
    let mut err = String::new();
    p.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(err.contains("--no-such-flag"), "{err}");
}

#[test]
fn flags_override_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ringkv.conf");
    let file_port = free_port();
    std::fs::write(
        &cfg,
        format!("port {file_port}\nmaxclients 123\nhz 42\nproto-max-bulk-len 2mb\n"),
    )
    .unwrap();
    let port = free_port();
    let ps = port.to_string();
    let _p = spawn(&[
        cfg.to_str().unwrap(),
        "--port",
        &ps,
        "--shards",
        "1",
        "--maxclients",
        "77",
    ]);
    wait_port(port);
    let c = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let mut con = c
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap();
    let get = |con: &mut redis::Connection, name: &str| -> String {
        let v: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg(name)
            .query(con)
            .unwrap();
        v[1].clone()
    };
    assert_eq!(get(&mut con, "maxclients"), "77");
    assert_eq!(get(&mut con, "hz"), "42");
    assert_eq!(get(&mut con, "proto-max-bulk-len"), "2097152");
    assert_eq!(get(&mut con, "port"), ps);
    let server = info(&mut con, "server");
    assert_eq!(
        field(&server, "config_file").unwrap(),
        std::fs::canonicalize(&cfg).unwrap().display().to_string()
    );
}

/// A server killed with SIGKILL and started again at once on the same port
/// comes up every time: startup waits out the dead process's sockets.
#[test]
fn restart_right_after_kill9_binds_the_same_port() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Proc::ringkv_in(dir.path(), 4, &["--save", ""]);
    let port = p.port;
    for round in 0..5 {
        // Open connections make the dead process's sockets linger longer.
        let mut con = p.client();
        let _: () = redis::cmd("SET")
            .arg("k")
            .arg(round)
            .query(&mut con)
            .unwrap();
        p.kill9();
        p = Proc::ringkv_on(dir.path(), port, 4, &["--save", ""]);
        let mut con = p.client();
        let pong: String = redis::cmd("PING").query(&mut con).unwrap();
        assert_eq!(pong, "PONG", "round {round}");
    }
}
