//! Growth-pause benchmark: GET latency on one shard while its dict grows.
//!
//! One connection loads `GROWTH_KEYS` distinct keys (default 10,000,000) with
//! pipelined SETs (16-byte keys `{g}k:%011d`, 16-byte values); all keys carry
//! the hash tag `{g}`, so they land in a single shard whatever the shard
//! count. A second connection meanwhile GETs one existing key of that shard
//! in a closed loop and records every round-trip time. The report gives the GET latency percentiles and maximum (target: max
//! under 10 ms while the dict grows), the worst samples with the number of keys
//! loaded at that moment (to line pauses up with table growth), the load rate
//! and the server's RSS growth per key.
//!
//! ```sh
//! cargo build --release && cargo bench --bench growth
//! GROWTH_KEYS=1000000 cargo bench --bench growth        # shorter run
//! GROWTH_SERVER=redis cargo bench --bench growth        # same load on redis-server
//! RINGKV_PORT=6379 cargo bench --bench growth           # use a running server
//! ```
//!
//! Environment: `GROWTH_KEYS` (keys to load), `GROWTH_PIPELINE` (SETs per
//! batch, default 1000), `GROWTH_SERVER` (`ringkv`, the default, or `redis`),
//! `RINGKV_BIN` (default `target/release/ringkv`), `RINGKV_PORT` (connect to a
//! server already listening on 127.0.0.1:PORT instead of starting one),
//! `GROWTH_INPROCESS` (default 1: afterwards, also time every `Db::set` of the
//! same keys in this process, which isolates the table's own growth cost from
//! network and scheduling noise; 0 skips it).
//!
//! When it starts the server itself, the server is pinned to the last CPU of
//! this process's affinity mask and the two client threads to the other CPUs
//! (with three or more CPUs, the GET probe gets one to itself), and the server
//! is killed on exit.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Reads exactly `expected.len()` bytes and checks they equal `expected`.
fn expect_reply(s: &mut TcpStream, buf: &mut Vec<u8>, expected: &[u8]) {
    buf.resize(expected.len(), 0);
    s.read_exact(buf).expect("reading reply");
    if buf.as_slice() != expected {
        let at = buf
            .iter()
            .zip(expected)
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        let end = (at + 80).min(buf.len());
        panic!(
            "unexpected reply at byte {at}: {:?}",
            String::from_utf8_lossy(&buf[at..end])
        );
    }
}

/// Loads `keys` keys in pipelined batches; publishes progress in `loaded`.
fn load(port: u16, keys: u64, pipeline: u64, loaded: &AtomicU64) {
    let mut s = connect(port).expect("loader connect");
    let mut out = Vec::with_capacity(pipeline as usize * 64);
    let mut buf = Vec::new();
    let ok: Vec<u8> = b"+OK\r\n".repeat(pipeline as usize);
    let mut next = 0u64;
    while next < keys {
        let batch = pipeline.min(keys - next);
        out.clear();
        for i in next..next + batch {
            // 16-byte key "{g}k:%011d", 16-byte value "val:%012d".
            write!(
                out,
                "*3\r\n$3\r\nSET\r\n$16\r\n{{g}}k:{i:011}\r\n$16\r\nval:{i:012}\r\n"
            )
            .expect("encoding into a Vec");
        }
        s.write_all(&out).expect("loader write");
        expect_reply(&mut s, &mut buf, &ok[..5 * batch as usize]);
        next += batch;
        loaded.store(next, Ordering::Relaxed);
    }
}

/// One GET sample: when it started (since the load began), its round-trip
/// time, and how many keys were loaded when it started.
struct Sample {
    at: Duration,
    rtt: Duration,
    loaded: u64,
}

/// GETs the probe key until `done`; returns every sample.
fn probe(port: u16, start: Instant, done: &AtomicBool, loaded: &AtomicU64) -> Vec<Sample> {
    let mut s = connect(port).expect("probe connect");
    let mut cmd = Vec::new();
    encode(&mut cmd, &[b"GET", b"{g}probe"]);
    let expected = b"$11\r\nprobe-value\r\n";
    let mut buf = Vec::new();
    let mut samples = Vec::with_capacity(1 << 20);
    while !done.load(Ordering::Relaxed) {
        let n = loaded.load(Ordering::Relaxed);
        let t0 = Instant::now();
        s.write_all(&cmd).expect("probe write");
        expect_reply(&mut s, &mut buf, expected);
        samples.push(Sample {
            at: t0 - start,
            rtt: t0.elapsed(),
            loaded: n,
        });
    }
    samples
}

/// CPU time consumed by the calling thread, in nanoseconds. Unlike wall
/// time it does not grow while the thread waits for a CPU, so on a busy host
/// it separates the table's own work (page faults included) from preemption.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Distribution of per-SET costs in nanoseconds, for one line of the report.
fn describe(label: &str, keys: u64, mut nanos: Vec<u32>) {
    let mut tenths = [0u32; 10];
    for (i, &n) in nanos.iter().enumerate() {
        let t = (i as u64 * 10 / keys.max(1)).min(9) as usize;
        tenths[t] = tenths[t].max(n);
    }
    let mut worst: Vec<(u32, usize)> = nanos.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    worst.sort_unstable_by_key(|w| std::cmp::Reverse(w.0));
    nanos.sort_unstable();
    let pct = |q: f64| {
        let i = ((q * nanos.len() as f64).ceil() as usize).clamp(1, nanos.len());
        nanos[i - 1] as f64 / 1e3
    };
    println!(
        "  {label}: p50 {:.2} us, p99.9 {:.2} us, max {:.1} us",
        pct(0.5),
        pct(0.999),
        *nanos.last().unwrap_or(&0) as f64 / 1e3
    );
    let w: Vec<String> = worst
        .iter()
        .take(5)
        .map(|(n, i)| format!("{:.1} us at key {i}", *n as f64 / 1e3))
        .collect();
    println!("    slowest: {}", w.join(", "));
    let t: Vec<String> = tenths
        .iter()
        .map(|n| format!("{:.1}", *n as f64 / 1e3))
        .collect();
    println!("    max us per tenth of the load: {}", t.join(" "));
}

/// The same growth in process, without network or a server loop: times
/// every `Db::set` of `keys` keys into one `Db`, in wall time and in thread
/// CPU time.
fn in_process(keys: u64) {
    use ringkv::shard::db::Db;
    use ringkv::shard::value::Value;
    let mut db = Db::default();
    let mut wall: Vec<u32> = Vec::with_capacity(keys as usize);
    let mut cpu: Vec<u32> = Vec::with_capacity(keys as usize);
    let mut key = Vec::with_capacity(16);
    let mut val = Vec::with_capacity(16);
    let start = Instant::now();
    for i in 0..keys {
        key.clear();
        val.clear();
        write!(key, "{{g}}k:{i:011}").expect("encoding into a Vec");
        write!(val, "val:{i:012}").expect("encoding into a Vec");
        let c0 = thread_cpu_ns();
        let t0 = Instant::now();
        db.set(&key, Value::from_bytes(&val), 0, 0);
        let t = t0.elapsed().as_nanos();
        let c = thread_cpu_ns().saturating_sub(c0);
        wall.push(t.min(u32::MAX as u128) as u32);
        cpu.push(c.min(u32::MAX as u64) as u32);
    }
    let total = start.elapsed();
    assert_eq!(db.len() as u64, keys);
    println!(
        "in-process: {keys} Db::set calls in {:.2} s (with timing overhead)",
        total.as_secs_f64()
    );
    describe("thread CPU time per SET", keys, cpu);
    describe("wall time per SET", keys, wall);
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not, and
    // a multi-minute load is no test: then only check that it builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let keys = env_u64("GROWTH_KEYS", 10_000_000);
    let pipeline = env_u64("GROWTH_PIPELINE", 1000).max(1);
    let kind = std::env::var("GROWTH_SERVER").unwrap_or_else(|_| "ringkv".into());
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
                Some(c) if cpus.len() >= 3 => format!(
                    "server pinned to CPU {c}, GET probe to CPU {}, loader to CPUs {:?}",
                    cpus[cpus.len() - 2],
                    &cpus[..cpus.len() - 2]
                ),
                Some(c) => format!(
                    "server pinned to CPU {c}, clients to CPUs {:?}",
                    &cpus[..cpus.len() - 1]
                ),
                None => "unpinned".into(),
            };
            let label = if kind == "redis" {
                format!("redis-server ({pin})")
            } else {
                format!("ringkv --shards 1 ({pin})")
            };
            (Some(s), port, label)
        }
    };

    let mut c = connect(port).expect("connect");
    let mut buf = Vec::new();
    let mut cmd = Vec::new();
    encode(&mut cmd, &[b"FLUSHALL"]);
    encode(&mut cmd, &[b"SET", b"{g}probe", b"probe-value"]);
    c.write_all(&cmd).expect("setup write");
    expect_reply(&mut c, &mut buf, b"+OK\r\n+OK\r\n");
    drop(c);

    let pid = server.as_ref().map(|s| s.child.id());
    let rss_before = pid.and_then(rss_kb);
    println!(
        "growth: {label}; loading {keys} keys (16-byte keys and values), {pipeline} SETs per pipeline"
    );

    let loaded = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    // With 3+ CPUs and a server we started, the probe gets a CPU of its own
    // (the one before the server's) so the loader cannot delay it.
    let probe_cpu = (server.is_some() && cpus.len() >= 3).then(|| cpus[cpus.len() - 2]);
    let prober = {
        let (loaded, done) = (loaded.clone(), done.clone());
        std::thread::spawn(move || {
            if let Some(c) = probe_cpu {
                pin_current(&[c]);
            }
            probe(port, start, &done, &loaded)
        })
    };
    let loader = {
        let loaded = loaded.clone();
        let loader_cpus: Vec<usize> = match probe_cpu {
            Some(_) => cpus[..cpus.len() - 2].to_vec(),
            None => Vec::new(),
        };
        std::thread::spawn(move || {
            if !loader_cpus.is_empty() {
                pin_current(&loader_cpus);
            }
            load(port, keys, pipeline, &loaded)
        })
    };
    let load_result = loader.join();
    let load_time = start.elapsed();
    done.store(true, Ordering::Relaxed);
    let samples = prober.join().expect("probe thread failed");
    if load_result.is_err() {
        eprintln!("loader failed");
        std::process::exit(1);
    }
    std::thread::sleep(Duration::from_millis(200));
    let rss_after = pid.and_then(rss_kb);

    println!(
        "load: {keys} keys in {:.2} s ({:.0} SET/s)",
        load_time.as_secs_f64(),
        keys as f64 / load_time.as_secs_f64()
    );
    let mut rtts: Vec<Duration> = samples.iter().map(|s| s.rtt).collect();
    rtts.sort_unstable();
    let pct = |q: f64| {
        let i = ((q * rtts.len() as f64).ceil() as usize).clamp(1, rtts.len());
        ms(rtts[i - 1])
    };
    if rtts.is_empty() {
        println!("GET during growth: no samples");
        std::process::exit(1);
    }
    let max = *rtts.last().unwrap();
    println!(
        "GET during growth: {} samples, p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms",
        rtts.len(),
        pct(0.5),
        pct(0.99),
        pct(0.999),
        ms(max)
    );
    let mut worst: Vec<&Sample> = samples.iter().collect();
    worst.sort_unstable_by_key(|s| std::cmp::Reverse(s.rtt));
    println!("worst GETs (start time, keys loaded at start, latency):");
    for s in worst.iter().take(5) {
        println!(
            "  at {:>8.3} s  {:>10} keys  {:.3} ms",
            s.at.as_secs_f64(),
            s.loaded,
            ms(s.rtt)
        );
    }
    // The slowest GET in each tenth of the load: a pause that the dict causes
    // shows up at the same key counts run after run; scheduling noise does not.
    let mut tenths = [Duration::ZERO; 10];
    for s in &samples {
        let i = ((s.loaded * 10) / keys.max(1)).min(9) as usize;
        tenths[i] = tenths[i].max(s.rtt);
    }
    let tenths: Vec<String> = tenths.iter().map(|d| format!("{:.1}", ms(*d))).collect();
    println!("max GET ms per tenth of the load: {}", tenths.join(" "));
    if let (Some(b), Some(a)) = (rss_before, rss_after) {
        println!(
            "RSS: {:.1} MiB -> {:.1} MiB, {:.1} bytes/key",
            b as f64 / 1024.0,
            a as f64 / 1024.0,
            (a.saturating_sub(b) * 1024) as f64 / keys as f64
        );
    }
    let verdict = if max < Duration::from_millis(10) {
        "met"
    } else {
        "NOT met"
    };
    println!("target max GET latency < 10 ms during growth: {verdict}");
    drop(server);
    if env_u64("GROWTH_INPROCESS", 1) == 1 {
        in_process(keys);
    }
}
