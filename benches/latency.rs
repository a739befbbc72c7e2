//! Freeing-pause benchmark: do DEL/UNLINK of a huge collection, or FLUSHALL
//! ASYNC of a large keyspace, stall the other clients of the shard?
//!
//! Starts `target/release/ringkv --shards 1` (or, with `--redis` or
//! `LAT_SERVER=redis`, `redis-server --save '' --appendonly no`) on a free
//! loopback port. A probe connection sends `GET {b}probe` in a closed loop
//! for the whole run and records every round trip. Meanwhile a second
//! connection, for each collection type in `LAT_TYPES`:
//!
//! 1. builds one huge collection `{b}big` of `LAT_MEMBERS` elements
//!    (default 10,000,000) with pipelined commands of `LAT_BATCH` (1000)
//!    elements each (SADD / HSET / RPUSH / ZADD), then
//! 2. deletes it with `DEL`; builds it again and deletes it with `UNLINK`;
//!    builds it again and drops it with `FLUSHALL ASYNC`.
//!
//! Finally it loads `LAT_FLUSH_KEYS` (default 10,000,000) small string keys
//! and runs `FLUSHALL ASYNC`. For each operation it reports the reply time,
//! the time until `INFO memory` shows `lazyfree_pending_objects:0` (all of
//! it freed), and the probe's latency (p50, p99, p99.9, max) over the
//! samples that overlap the window from sending the command to 100 ms after
//! the memory was freed, plus RSS and `used_memory` before and after. An
//! idle window before the first build gives the noise floor of the machine.
//! Target: no probe round trip over 10 ms during any of these operations.
//!
//! ```sh
//! cargo build --release && cargo bench --bench latency
//! cargo bench --bench latency -- --redis              # the same against redis-server
//! LAT_MEMBERS=1000000 LAT_FLUSH_KEYS=1000000 cargo bench --bench latency   # shorter
//! LAT_TYPES=set,hash,list,zset cargo bench --bench latency                 # every type
//! ```
//!
//! Environment: `LAT_SERVER` (`ringkv`, the default, or `redis`),
//! `LAT_MEMBERS` (elements of the huge collection), `LAT_TYPES` (comma list
//! of `set`, `hash`, `list`, `zset`; default `set`), `LAT_OPS` (comma list
//! of `del`, `unlink`, `flushall` run on each huge collection; default all
//! three), `LAT_FLUSH_KEYS` (keys for the keyspace FLUSHALL ASYNC; 0 skips
//! it), `LAT_BATCH` (elements per command, default 1000), `RINGKV_BIN`
//! (default `target/release/ringkv`), `RINGKV_PORT` (use a server already
//! listening on 127.0.0.1:PORT; it is flushed).
//!
//! When it starts the server itself, the server is pinned to the last CPU of
//! this process's affinity mask and both client connections to the other
//! CPUs, and the server is killed on exit (also if the benchmark dies).

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The probe's target latency.
const TARGET: Duration = Duration::from_millis(10);

/// A RESP2 reply.
#[derive(Debug)]
enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    /// An array or nil array; its elements are read and dropped.
    Array,
}

/// A blocking RESP2 connection with hand-encoded commands.
struct Conn {
    w: TcpStream,
    r: BufReader<TcpStream>,
    line: Vec<u8>,
}

impl Conn {
    fn open(port: u16) -> std::io::Result<Conn> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        // DEL of a huge value may legitimately take seconds.
        s.set_read_timeout(Some(Duration::from_secs(600)))?;
        Ok(Conn {
            r: BufReader::with_capacity(1 << 16, s.try_clone()?),
            w: s,
            line: Vec::new(),
        })
    }

    fn send(&mut self, buf: &[u8]) {
        self.w.write_all(buf).expect("write to server");
    }

    fn read_line(&mut self) -> &[u8] {
        self.line.clear();
        self.r
            .read_until(b'\n', &mut self.line)
            .expect("read from server");
        assert!(
            self.line.ends_with(b"\r\n"),
            "connection closed or bad reply: {:?}",
            String::from_utf8_lossy(&self.line)
        );
        &self.line[..self.line.len() - 2]
    }

    fn read_int(&mut self) -> i64 {
        let l = self.read_line();
        std::str::from_utf8(&l[1..])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad length line {:?}", String::from_utf8_lossy(l)))
    }

    /// Reads one reply.
    fn read(&mut self) -> Reply {
        let first = {
            let b = self.r.fill_buf().expect("read from server");
            assert!(!b.is_empty(), "server closed the connection");
            b[0]
        };
        match first {
            b'+' | b'-' => {
                let l = String::from_utf8_lossy(&self.read_line()[1..]).into_owned();
                if first == b'+' {
                    Reply::Simple(l)
                } else {
                    Reply::Error(l)
                }
            }
            b':' => Reply::Int(self.read_int()),
            b'$' => {
                let n = self.read_int();
                if n < 0 {
                    return Reply::Bulk(None);
                }
                let mut v = vec![0u8; n as usize + 2];
                self.r.read_exact(&mut v).expect("read from server");
                v.truncate(n as usize);
                Reply::Bulk(Some(v))
            }
            b'*' => {
                let n = self.read_int();
                for _ in 0..n.max(0) {
                    self.read();
                }
                Reply::Array
            }
            other => panic!("unexpected reply type byte {other:?}"),
        }
    }

    /// Sends one command and reads its reply.
    fn call(&mut self, args: &[&[u8]]) -> std::io::Result<Reply> {
        let mut buf = Vec::new();
        encode(&mut buf, args);
        self.w.write_all(&buf)?;
        Ok(self.read())
    }

    /// `call` for commands that must succeed.
    fn must(&mut self, args: &[&[u8]]) -> Reply {
        match self.call(args).expect("write to server") {
            Reply::Error(e) => panic!(
                "{} failed: {e}",
                String::from_utf8_lossy(args.first().copied().unwrap_or(b""))
            ),
            r => r,
        }
    }

    /// A numeric field of `INFO memory` (e.g. `used_memory`).
    fn info_memory(&mut self, field: &str) -> Option<u64> {
        let Reply::Bulk(Some(text)) = self.must(&[b"INFO", b"memory"]) else {
            return None;
        };
        String::from_utf8_lossy(&text).lines().find_map(|l| {
            l.strip_prefix(field)
                .and_then(|v| v.strip_prefix(':'))
                .and_then(|v| v.trim().parse().ok())
        })
    }
}

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// One probe round trip: start (since the benchmark's epoch) and duration.
#[derive(Clone, Copy)]
struct Sample {
    start: Duration,
    rtt: Duration,
}

/// GETs the probe key until `done`; returns every sample. The key may be
/// missing after a FLUSHALL, so a nil reply is fine too.
fn probe(port: u16, epoch: Instant, done: &AtomicBool) -> Vec<Sample> {
    let mut c = Conn::open(port).expect("probe connect");
    let mut cmd = Vec::new();
    encode(&mut cmd, &[b"GET", b"{b}probe"]);
    let mut samples = Vec::with_capacity(1 << 22);
    while !done.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        c.send(&cmd);
        match c.read() {
            Reply::Bulk(_) => {}
            r => panic!("probe: unexpected reply {r:?}"),
        }
        samples.push(Sample {
            start: t0 - epoch,
            rtt: t0.elapsed(),
        });
    }
    samples
}

/// Sends `cmds` (already encoded, `count` commands) in pipelined rounds of
/// about `depth` commands and checks every reply with `ok`.
struct Loader<'a> {
    c: &'a mut Conn,
    buf: Vec<u8>,
    queued: usize,
    depth: usize,
}

impl Loader<'_> {
    fn push(&mut self, args: &[&[u8]]) {
        encode(&mut self.buf, args);
        self.queued += 1;
        if self.queued >= self.depth {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.queued == 0 {
            return;
        }
        self.c.send(&self.buf);
        for _ in 0..self.queued {
            match self.c.read() {
                Reply::Error(e) => panic!("load command failed: {e}"),
                Reply::Int(_) | Reply::Simple(_) => {}
                r => panic!("load: unexpected reply {r:?}"),
            }
        }
        self.buf.clear();
        self.queued = 0;
    }
}

/// Builds `{b}big` as a `kind` collection of `members` elements, `batch`
/// elements per command.
fn build(c: &mut Conn, kind: &str, members: u64, batch: u64) {
    let mut l = Loader {
        c,
        buf: Vec::with_capacity(1 << 20),
        queued: 0,
        depth: 8,
    };
    let (cmd, pairs): (&[u8], bool) = match kind {
        "set" => (b"SADD", false),
        "list" => (b"RPUSH", false),
        "hash" => (b"HSET", true),
        "zset" => (b"ZADD", true),
        other => panic!("unknown collection type {other} (set, hash, list, zset)"),
    };
    // With field/value or score/member pairs, `batch` counts arguments.
    let per_cmd = if pairs { (batch / 2).max(1) } else { batch };
    let mut strings: Vec<Vec<u8>> = Vec::with_capacity(2 * per_cmd as usize);
    let mut next = 0u64;
    while next < members {
        let n = per_cmd.min(members - next);
        strings.clear();
        for i in next..next + n {
            let member = format!("m:{i:010}").into_bytes();
            match kind {
                "hash" => {
                    strings.push(member);
                    strings.push(b"v".to_vec());
                }
                "zset" => {
                    strings.push(i.to_string().into_bytes());
                    strings.push(member);
                }
                _ => strings.push(member),
            }
        }
        let mut args: Vec<&[u8]> = Vec::with_capacity(strings.len() + 2);
        args.push(cmd);
        args.push(b"{b}big");
        args.extend(strings.iter().map(|s| s.as_slice()));
        l.push(&args);
        next += n;
    }
    l.flush();
}

/// Loads `keys` string keys `{b}k:%011d` (16 bytes) with 16-byte values.
fn load_keyspace(c: &mut Conn, keys: u64) {
    let mut l = Loader {
        c,
        buf: Vec::with_capacity(1 << 20),
        queued: 0,
        depth: 1000,
    };
    for i in 0..keys {
        let k = format!("{{b}}k:{i:011}");
        let v = format!("val:{i:012}");
        l.push(&[b"SET", k.as_bytes(), v.as_bytes()]);
    }
    l.flush();
}

/// (RSS KiB, used_memory bytes) of the server, where known.
type Mem = (Option<u64>, Option<u64>);

/// A measured window of the run.
struct Window {
    label: String,
    start: Duration,
    end: Duration,
    /// Reply time of the operation, if the window is one.
    reply: Option<Duration>,
    /// Time from sending the operation until nothing was pending in lazyfree.
    freed: Option<Duration>,
    /// Memory before and after the operation.
    mem: Option<(Mem, Mem)>,
}

/// Probe statistics over the samples overlapping `w`: count, p50, p99,
/// p99.9, max, and the start (relative to the window) of the slowest.
fn window_stats(samples: &[Sample], w: &Window) -> Option<(usize, [f64; 4], f64)> {
    let mut rtts: Vec<(Duration, Duration)> = samples
        .iter()
        .filter(|s| s.start < w.end && s.start + s.rtt > w.start)
        .map(|s| (s.rtt, s.start))
        .collect();
    if rtts.is_empty() {
        return None;
    }
    rtts.sort_unstable();
    let pct = |q: f64| {
        let i = ((q * rtts.len() as f64).ceil() as usize).clamp(1, rtts.len());
        ms(rtts[i - 1].0)
    };
    let (max, at) = *rtts.last().unwrap();
    let at = (at.as_secs_f64() - w.start.as_secs_f64()) * 1e3;
    Some((rtts.len(), [pct(0.5), pct(0.99), pct(0.999), ms(max)], at))
}

/// State shared by the phases of a run.
struct Run {
    op: Conn,
    epoch: Instant,
    pid: Option<u32>,
    windows: Vec<Window>,
}

impl Run {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn mem(&mut self) -> Mem {
        (
            self.pid.and_then(rss_kb),
            self.op.info_memory("used_memory"),
        )
    }

    /// Runs `args` (expected reply `expect`) as a measured operation.
    fn operation(&mut self, label: String, args: &[&[u8]], expect: &str) {
        std::thread::sleep(Duration::from_millis(500));
        let before = self.mem();
        let start = self.now();
        let t0 = Instant::now();
        let reply = self.op.must(args);
        let reply_time = t0.elapsed();
        let got = match &reply {
            Reply::Int(n) => n.to_string(),
            Reply::Simple(s) => s.clone(),
            r => format!("{r:?}"),
        };
        assert_eq!(got, expect, "{label}: unexpected reply");
        // Wait until the server reports nothing left to free in the background.
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            match self.op.info_memory("lazyfree_pending_objects") {
                Some(0) | None => break,
                Some(_) => {}
            }
            assert!(
                Instant::now() < deadline,
                "{label}: lazyfree never finished"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let freed = t0.elapsed();
        std::thread::sleep(Duration::from_millis(100));
        let end = self.now();
        // Give the allocator a moment before reading RSS.
        std::thread::sleep(Duration::from_millis(400));
        let after = self.mem();
        println!(
            "  {label}: reply {:.3} ms, freed after {:.3} ms",
            ms(reply_time),
            ms(freed)
        );
        self.windows.push(Window {
            label,
            start,
            end,
            reply: Some(reply_time),
            freed: Some(freed),
            mem: Some((before, after)),
        });
    }

    /// Runs `f` as a measured (non-operation) window.
    fn phase(&mut self, label: String, f: impl FnOnce(&mut Conn)) {
        let start = self.now();
        f(&mut self.op);
        let end = self.now();
        println!("  {label}: {:.2} s", (end - start).as_secs_f64());
        self.windows.push(Window {
            label,
            start,
            end,
            reply: None,
            freed: None,
            mem: None,
        });
    }
}

fn mib(kb: Option<u64>) -> String {
    kb.map_or("-".into(), |k| format!("{:.0}", k as f64 / 1024.0))
}

fn mb(bytes: Option<u64>) -> String {
    bytes.map_or("-".into(), |b| {
        format!("{:.0}", b as f64 / (1024.0 * 1024.0))
    })
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not, and
    // a multi-minute load is no test: then only check that it builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let kind = if args.iter().any(|a| a == "--redis") {
        "redis".to_string()
    } else {
        std::env::var("LAT_SERVER").unwrap_or_else(|_| "ringkv".into())
    };
    let members = env_u64("LAT_MEMBERS", 10_000_000).max(1);
    let flush_keys = env_u64("LAT_FLUSH_KEYS", 10_000_000);
    let batch = env_u64("LAT_BATCH", 1000).max(2);
    let types = env_list("LAT_TYPES", "set");
    let ops = env_list("LAT_OPS", "del,unlink,flushall");
    let cpus = usable_cpus();

    let (server, port, label) = match std::env::var("RINGKV_PORT") {
        Ok(p) => {
            let port: u16 = p.parse().expect("RINGKV_PORT must be a port number");
            (None, port, format!("server on 127.0.0.1:{port}"))
        }
        Err(_) => {
            let server_cpu = (cpus.len() >= 2).then(|| *cpus.last().unwrap());
            if server_cpu.is_some() {
                pin_current(&cpus[..cpus.len() - 1]);
            }
            let s = start_server(&kind, server_cpu);
            let port = s.port;
            let pin = match server_cpu {
                Some(c) => format!(
                    "server pinned to CPU {c}, clients to CPUs {:?}",
                    &cpus[..cpus.len() - 1]
                ),
                None => "unpinned".into(),
            };
            let label = if kind == "redis" {
                format!("redis-server --save '' --appendonly no ({pin})")
            } else {
                format!("ringkv --shards 1 ({pin})")
            };
            (Some(s), port, label)
        }
    };
    println!(
        "latency: {label}; huge {} of {members} elements ({batch} per command), \
         ops {}, keyspace FLUSHALL ASYNC of {flush_keys} keys",
        types.join("/"),
        ops.join("/")
    );

    let mut op = Conn::open(port).expect("connect");
    op.must(&[b"FLUSHALL"]);
    op.must(&[b"SET", b"{b}probe", b"probe-value"]);

    let epoch = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let prober = {
        let done = done.clone();
        std::thread::spawn(move || probe(port, epoch, &done))
    };
    let mut run = Run {
        op,
        epoch,
        pid: server.as_ref().map(|s| s.child.id()),
        windows: Vec::new(),
    };

    run.phase("idle 2 s (noise floor)".into(), |_| {
        std::thread::sleep(Duration::from_secs(2))
    });
    for t in &types {
        for o in &ops {
            run.phase(format!("build {t} of {members}"), |c| {
                build(c, t, members, batch)
            });
            let Reply::Int(len) = run.op.must(&[b"DBSIZE"]) else {
                panic!("DBSIZE")
            };
            assert!(len >= 2, "the huge key is missing");
            match o.as_str() {
                "del" => run.operation(format!("DEL {t}"), &[b"DEL", b"{b}big"], "1"),
                "unlink" => run.operation(format!("UNLINK {t}"), &[b"UNLINK", b"{b}big"], "1"),
                "flushall" => {
                    run.operation(
                        format!("FLUSHALL ASYNC ({t})"),
                        &[b"FLUSHALL", b"ASYNC"],
                        "OK",
                    );
                    run.op.must(&[b"SET", b"{b}probe", b"probe-value"]);
                }
                other => panic!("unknown op {other} (del, unlink, flushall)"),
            }
        }
    }
    if flush_keys > 0 {
        run.phase(format!("load {flush_keys} string keys"), |c| {
            load_keyspace(c, flush_keys)
        });
        run.operation(
            format!("FLUSHALL ASYNC ({flush_keys} keys)"),
            &[b"FLUSHALL", b"ASYNC"],
            "OK",
        );
    }
    done.store(true, Ordering::Relaxed);
    let samples = prober.join().expect("probe thread failed");
    drop(server);

    println!();
    println!("Probe `GET {{b}}probe` round trips overlapping each window (ms); for operations the");
    println!(
        "window runs from sending the command to 100 ms after lazyfree_pending_objects was 0."
    );
    println!("\"slowest at\": start of the slowest probe, ms after the window began.");
    println!();
    println!(
        "| {kind} | reply ms | freed after ms | probe samples | p50 | p99 | p99.9 | max | slowest at | RSS MiB before→after | used_memory MiB before→after |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut worst_op = Duration::ZERO;
    for w in &run.windows {
        let (n, p, at) = match window_stats(&samples, w) {
            Some((n, p, at)) => (
                n.to_string(),
                p.map(|v| format!("{v:.3}")),
                format!("{at:.1}"),
            ),
            None => (
                "0".into(),
                ["-".into(), "-".into(), "-".into(), "-".into()],
                "-".into(),
            ),
        };
        if w.reply.is_some()
            && let Some((_, p, _)) = window_stats(&samples, w)
        {
            worst_op = worst_op.max(Duration::from_secs_f64(p[3] / 1e3));
        }
        let (rss, used) = match w.mem {
            Some(((r0, u0), (r1, u1))) => (
                format!("{}→{}", mib(r0), mib(r1)),
                format!("{}→{}", mb(u0), mb(u1)),
            ),
            None => ("".into(), "".into()),
        };
        println!(
            "| {} | {} | {} | {n} | {} | {} | {} | {} | {at} | {rss} | {used} |",
            w.label,
            w.reply.map_or(String::new(), |d| format!("{:.3}", ms(d))),
            w.freed.map_or(String::new(), |d| format!("{:.3}", ms(d))),
            p[0],
            p[1],
            p[2],
            p[3],
        );
    }
    let verdict = if worst_op < TARGET { "met" } else { "NOT met" };
    println!();
    println!(
        "target: no probe round trip over {} ms during DEL/UNLINK/FLUSHALL ASYNC: {verdict} (worst {:.3} ms)",
        TARGET.as_millis(),
        ms(worst_op)
    );
}
