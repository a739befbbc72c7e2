//! Mass-expiry benchmark: 1M keys expiring in the same second, ringkv and
//! redis-server side by side in the same run.
//!
//! For each server: load `MASS_BASE` keys without a TTL (default 100,000)
//! and `MASS_KEYS` keys (default 1,000,000) with `PXAT` deadlines spread over
//! one second that starts `MASS_DELAY_MS` (default 8,000) after the load
//! began; all keys and values are 16 bytes. Nobody touches the volatile keys
//! again. From the end of the load, one connection GETs random keys without a
//! TTL in a closed loop (every round trip is recorded) and another samples
//! RSS, INFO `used_memory` and DBSIZE every 100 ms, until DBSIZE is back to
//! `MASS_BASE` and `used_memory` is back within 10% of the loaded bytes of
//! its baseline, or 60 s after the deadline second.
//!
//! ```sh
//! cargo build --release && cargo bench --bench mass_expiry
//! MASS_KEYS=200000 cargo bench --bench mass_expiry     # shorter run
//! ```
//!
//! Then, in process (no network, no other load's scheduling noise), the same
//! 1M keys go into one `Db` and `Db::active_expire` runs with the server's
//! time slice until they are gone: the report gives how long each run held
//! the shard (wall and thread CPU time), which bounds what a client can wait
//! behind active expiry.
//!
//! ringkv runs with one shard (like redis-server, one core of work). With two
//! or more CPUs the server is pinned to the last CPU of this process's mask and
//! the client threads to the others.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Reads one reply and returns its payload: the line of a simple reply or
/// integer, the body of a bulk string.
fn read_reply(r: &mut BufReader<TcpStream>) -> Vec<u8> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).expect("read reply");
    assert!(line.len() >= 3, "connection closed");
    let body = line[1..line.len() - 2].to_vec();
    match line[0] {
        b'$' => {
            let n: i64 = std::str::from_utf8(&body).unwrap().parse().unwrap();
            if n < 0 {
                return Vec::new();
            }
            let mut buf = vec![0; n as usize + 2];
            r.read_exact(&mut buf).expect("read bulk");
            buf.truncate(n as usize);
            buf
        }
        b'-' => panic!("error reply: {}", String::from_utf8_lossy(&body)),
        _ => body,
    }
}

fn connect_buf(port: u16) -> (TcpStream, BufReader<TcpStream>) {
    let s = connect(port).expect("connect");
    let r = BufReader::with_capacity(1 << 16, s.try_clone().expect("clone socket"));
    (s, r)
}

/// Sets keys `{prefix}%014d` for `range`, pipelined, with `extra` arguments.
fn load(port: u16, prefix: &str, range: std::ops::Range<u64>, extra: impl Fn(u64) -> String) {
    let (mut s, mut r) = connect_buf(port);
    let mut out = Vec::new();
    let mut i = range.start;
    while i < range.end {
        let end = (i + 1000).min(range.end);
        out.clear();
        for k in i..end {
            let ext = extra(k);
            let n = 3 + ext.split_whitespace().count();
            write!(
                out,
                "*{n}\r\n$3\r\nSET\r\n$16\r\n{prefix}{k:014}\r\n$16\r\nval:{k:012}\r\n"
            )
            .unwrap();
            for a in ext.split_whitespace() {
                write!(out, "${}\r\n{a}\r\n", a.len()).unwrap();
            }
        }
        s.write_all(&out).expect("load write");
        for _ in i..end {
            read_reply(&mut r);
        }
        i = end;
    }
}

/// One 100 ms sample: time since the deadline second began, RSS, used_memory,
/// DBSIZE.
struct Point {
    t: f64,
    rss: u64,
    used: u64,
    keys: u64,
}

fn sample(s: &mut TcpStream, r: &mut BufReader<TcpStream>, pid: u32) -> (u64, u64, u64) {
    let mut cmd = Vec::new();
    encode(&mut cmd, &[b"INFO", b"memory"]);
    encode(&mut cmd, &[b"DBSIZE"]);
    s.write_all(&cmd).expect("sample write");
    let info = String::from_utf8(read_reply(r)).unwrap();
    let used = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let keys = String::from_utf8(read_reply(r)).unwrap().parse().unwrap();
    (rss_kb(pid).unwrap_or(0) * 1024, used, keys)
}

fn info_stat(port: u16, name: &str) -> String {
    let (mut s, mut r) = connect_buf(port);
    let mut cmd = Vec::new();
    encode(&mut cmd, &[b"INFO", b"stats"]);
    s.write_all(&cmd).unwrap();
    let info = String::from_utf8(read_reply(&mut r)).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or("-")
        .trim()
        .to_string()
}

/// What one server did.
struct Outcome {
    load_s: f64,
    base: (u64, u64),
    peak: (u64, u64),
    end: (u64, u64),
    keys_gone_s: Option<f64>,
    memory_back_s: Option<f64>,
    gets: usize,
    p99: f64,
    p999: f64,
    max: f64,
    run_max: f64,
    idle_p99: f64,
    idle_max: f64,
    cpu_ms: String,
    cap: String,
}

fn run(kind: &str, base_keys: u64, keys: u64, delay_ms: u64, cpus: &[usize]) -> Outcome {
    let server_cpu = (cpus.len() >= 2).then(|| *cpus.last().unwrap());
    let server = start_server(kind, server_cpu);
    let (port, pid) = (server.port, server.child.id());
    load(port, "b:", 0..base_keys, |_| String::new());
    std::thread::sleep(Duration::from_millis(500));
    let (mut ss, mut sr) = connect_buf(port);
    let (rss0, used0, _) = sample(&mut ss, &mut sr, pid);

    let start = unix_ms();
    let deadline = start + delay_ms;
    let t = Instant::now();
    load(port, "m:", 0..keys, |k| {
        format!("PXAT {}", deadline + k % 1000)
    });
    let load_s = t.elapsed().as_secs_f64();
    let (rss1, used1, n) = sample(&mut ss, &mut sr, pid);
    if unix_ms() >= deadline {
        eprintln!("{kind}: load ran past the deadline; raise MASS_DELAY_MS");
    }
    println!(
        "{kind}: loaded {keys} volatile keys in {load_s:.2} s; DBSIZE {n}, deadline second starts in {} ms",
        deadline.saturating_sub(unix_ms())
    );

    // The GET probe on keys without a TTL, from now until the end.
    let done = Arc::new(AtomicBool::new(false));
    let prober = {
        let done = done.clone();
        std::thread::spawn(move || {
            let (mut s, mut r) = connect_buf(port);
            let mut out = Vec::new();
            let mut samples: Vec<(u64, f64)> = Vec::with_capacity(1 << 20);
            let mut x = 88172645463325252u64;
            while !done.load(Ordering::Relaxed) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let k = x % base_keys.max(1);
                out.clear();
                let key = format!("b:{k:014}");
                encode(&mut out, &[b"GET", key.as_bytes()]);
                let at = unix_ms();
                let t0 = Instant::now();
                s.write_all(&out).expect("probe write");
                let v = read_reply(&mut r);
                samples.push((at, ms(t0.elapsed())));
                assert_eq!(v, format!("val:{k:012}").into_bytes());
            }
            samples
        })
    };

    let target_used = used0 + (used1.saturating_sub(used0)) / 10;
    let mut points = Vec::new();
    let (mut keys_gone, mut mem_back) = (None, None);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let (rss, used, n) = sample(&mut ss, &mut sr, pid);
        let now = unix_ms();
        let t = (now as f64 - deadline as f64) / 1e3;
        points.push(Point {
            t,
            rss,
            used,
            keys: n,
        });
        if now >= deadline {
            if keys_gone.is_none() && n <= base_keys {
                keys_gone = Some(t);
            }
            if mem_back.is_none() && n <= base_keys && used <= target_used {
                mem_back = Some(t);
            }
        }
        if (keys_gone.is_some() && mem_back.is_some() && t > 1.5) || t > 60.0 {
            break;
        }
    }
    done.store(true, Ordering::Relaxed);
    let samples = prober.join().expect("probe failed");
    // GETs from the start of the deadline second until half a second after
    // the last volatile key went (or the end of the run).
    let window_end = deadline + (keys_gone.unwrap_or(60.0) * 1e3) as u64 + 500;
    let mut rtts: Vec<f64> = samples
        .iter()
        .filter(|(at, _)| *at >= deadline && *at <= window_end)
        .map(|s| s.1)
        .collect();
    let run_max = samples.iter().map(|s| s.1).fold(0.0, f64::max);
    // The same probe before the deadline, with nothing expiring: host noise.
    let mut idle: Vec<f64> = samples
        .iter()
        .filter(|(at, _)| *at < deadline)
        .map(|s| s.1)
        .collect();
    idle.sort_by(f64::total_cmp);
    let idle_p99 = idle
        .get((idle.len() * 99 / 100).min(idle.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0);
    let idle_max = idle.last().copied().unwrap_or(0.0);
    rtts.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        let i = ((q * rtts.len() as f64).ceil() as usize).clamp(1, rtts.len().max(1));
        rtts.get(i - 1).copied().unwrap_or(0.0)
    };
    let mut worst: Vec<&(u64, f64)> = samples.iter().collect();
    worst.sort_by(|a, b| b.1.total_cmp(&a.1));
    let w: Vec<String> = worst
        .iter()
        .take(3)
        .map(|(at, l)| {
            format!(
                "{l:.2} ms at {:+.2} s",
                (*at as f64 - deadline as f64) / 1e3
            )
        })
        .collect();
    println!("{kind}: worst GETs: {}", w.join(", "));
    println!("{kind}: t (s from deadline second)  RSS MiB  used_memory MiB  DBSIZE");
    for p in &points {
        println!(
            "  {:>6.1}  {:>8.1}  {:>8.1}  {:>9}",
            p.t,
            p.rss as f64 / 1048576.0,
            p.used as f64 / 1048576.0,
            p.keys
        );
    }
    let last = points.last().expect("no samples");
    Outcome {
        load_s,
        base: (rss0, used0),
        peak: (rss1, used1),
        end: (last.rss, last.used),
        keys_gone_s: keys_gone,
        memory_back_s: mem_back,
        gets: rtts.len(),
        p99: pct(0.99),
        p999: pct(0.999),
        max: rtts.last().copied().unwrap_or(0.0),
        run_max,
        idle_p99,
        idle_max,
        cpu_ms: info_stat(port, "expire_cycle_cpu_milliseconds"),
        cap: info_stat(port, "expired_time_cap_reached_count"),
    }
}

/// CPU time consumed by the calling thread, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Times every run of active expiry over `keys` keys due at once in one
/// `Db`, each run with the server's time slice.
fn in_process(keys: u64) {
    use ringkv::shard::db::Db;
    let slice = ringkv::shard::expiry::period(10) / 10;
    use ringkv::shard::value::Value;
    let mut db = Db::default();
    let now = unix_ms();
    for i in 0..keys {
        let key = format!("m:{i:014}");
        let val = format!("val:{i:012}");
        db.set(
            key.as_bytes(),
            Value::from_bytes(val.as_bytes()),
            now + 1,
            now,
        );
    }
    let (mut runs, mut wall_max, mut cpu_max, mut cpu_total) = (0u64, 0f64, 0u64, 0u64);
    let start = Instant::now();
    while !db.is_empty() {
        let c0 = thread_cpu_ns();
        let t0 = Instant::now();
        db.active_expire(now + 2, t0 + slice);
        wall_max = wall_max.max(ms(t0.elapsed()));
        let c = thread_cpu_ns().saturating_sub(c0);
        cpu_max = cpu_max.max(c);
        cpu_total += c;
        runs += 1;
        assert!(runs < 1_000_000, "active expiry makes no progress");
    }
    println!(
        "in-process: {keys} due keys removed by {runs} runs of Db::active_expire ({:.0} ms CPU in all, {:.0} ns per key); longest run {:.3} ms wall, {:.3} ms thread CPU (slice {:.1} ms); {:.2} s back to back",
        cpu_total as f64 / 1e6,
        cpu_total as f64 / keys.max(1) as f64,
        wall_max,
        cpu_max as f64 / 1e6,
        ms(slice),
        start.elapsed().as_secs_f64()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` only builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let keys = env_u64("MASS_KEYS", 1_000_000);
    let base = env_u64("MASS_BASE", 100_000).max(1);
    let delay = env_u64("MASS_DELAY_MS", 8000);
    let cpus = usable_cpus();
    if cpus.len() >= 2 {
        pin_current(&cpus[..cpus.len() - 1]);
    }
    println!(
        "mass expiry: {keys} keys (16-byte keys and values) due within one second, {base} keys without TTL; CPUs {cpus:?}"
    );
    in_process(keys);
    let r = run("ringkv", base, keys, delay, &cpus);
    let d = run("redis", base, keys, delay, &cpus);
    let mib = |b: u64| format!("{:.1}", b as f64 / 1048576.0);
    let secs = |s: Option<f64>| s.map_or("> 60".to_string(), |s| format!("{s:.1}"));
    let rows: Vec<(&str, String, String)> = vec![
        (
            "load of volatile keys (s)",
            format!("{:.2}", r.load_s),
            format!("{:.2}", d.load_s),
        ),
        ("RSS baseline (MiB)", mib(r.base.0), mib(d.base.0)),
        ("RSS loaded (MiB)", mib(r.peak.0), mib(d.peak.0)),
        ("RSS at end (MiB)", mib(r.end.0), mib(d.end.0)),
        ("used_memory baseline (MiB)", mib(r.base.1), mib(d.base.1)),
        ("used_memory loaded (MiB)", mib(r.peak.1), mib(d.peak.1)),
        ("used_memory at end (MiB)", mib(r.end.1), mib(d.end.1)),
        (
            "DBSIZE back to base after (s)",
            secs(r.keys_gone_s),
            secs(d.keys_gone_s),
        ),
        (
            "used_memory back after (s)",
            secs(r.memory_back_s),
            secs(d.memory_back_s),
        ),
        (
            "GETs in the expiry window",
            r.gets.to_string(),
            d.gets.to_string(),
        ),
        (
            "GET p99 (ms)",
            format!("{:.3}", r.p99),
            format!("{:.3}", d.p99),
        ),
        (
            "GET p99.9 (ms)",
            format!("{:.3}", r.p999),
            format!("{:.3}", d.p999),
        ),
        (
            "GET max (ms)",
            format!("{:.3}", r.max),
            format!("{:.3}", d.max),
        ),
        (
            "GET p99 / max before deadline (ms)",
            format!("{:.2} / {:.1}", r.idle_p99, r.idle_max),
            format!("{:.2} / {:.1}", d.idle_p99, d.idle_max),
        ),
        (
            "GET max, whole run (ms)",
            format!("{:.3}", r.run_max),
            format!("{:.3}", d.run_max),
        ),
        ("expire_cycle_cpu_milliseconds", r.cpu_ms, d.cpu_ms),
        ("expired_time_cap_reached_count", r.cap, d.cap),
    ];
    println!(
        "\n| {:<36} | {:>12} | {:>12} |",
        "", "ringkv", "redis-server"
    );
    println!("|{:-<38}|{:->14}|{:->14}|", "", "", "");
    for (name, a, b) in rows {
        println!("| {name:<36} | {a:>12} | {b:>12} |");
    }
    println!(
        "(times from the start of the deadline second; GET figures over that second until 0.5 s after DBSIZE is back; \"back\" = DBSIZE at base and used_memory within 10% of the loaded bytes of baseline)"
    );
}
