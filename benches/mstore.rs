//! MemoryStore write benchmark (issue 6): ringkv's native `MSTORE.WRITE`
//! against the seed's approach on redis-server, `MULTI`, `LPUSH`, `LTRIM`,
//! `PEXPIRE`, `EXEC` (what the client API's Redis mode sends), in the same
//! run.
//!
//! For each server (ringkv `--shards 1`, then redis-server, both pinned to
//! `MS_SERVER_CPU`, the benchmark's threads to `MS_CLIENT_CPU`):
//! 1. configures `MS_KEYS` keys `key:%012d` of namespace `ns` (expire
//!    600000 ms, max-records 100) in the shared layout;
//! 2. runs `MS_N` writes of 64-byte data to random keys from `MS_CLIENTS`
//!    connections, `MS_P` writes pipelined per round trip, and reports
//!    writes/s and the p50/p99 of the round trips (as redis-benchmark
//!    reports latency with `-P`), and the writes per second of server CPU
//!    time (utime + stime from /proc), which a loaded machine disturbs less;
//! 3. fills every key to 100 records (ringkv: `MSTORE.WRITE`; redis: one
//!    `LPUSH` of 100 records + `PEXPIRE` per key, the same list) and reports
//!    RSS and `used_memory` growth per record over the empty server.
//!
//! ```sh
//! cargo build --release && cargo bench --bench mstore
//! MS_N=200000 MS_KEYS=10000 cargo bench --bench mstore   # quick
//! ```

mod common;
use common::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const DATA: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const MAX: usize = 100;
const EXPIRE_MS: &[u8] = b"600000";

fn key(i: u64) -> Vec<u8> {
    format!("key:{i:012}").into_bytes()
}

/// The storage key of `key` in namespace `ns`, as `storage_prefix` builds
/// it for a key without braces.
fn storage(key: &[u8], suffix: &str) -> Vec<u8> {
    let k = String::from_utf8_lossy(key);
    format!("mstore:{{{k}}}:2:ns:{k}:{suffix}").into_bytes()
}

/// Reads `n` complete top-level replies, panicking on an error reply.
fn read_replies(s: &mut std::net::TcpStream, buf: &mut Vec<u8>, mut n: usize) {
    let mut pos = 0;
    while n > 0 {
        match skip(&buf[pos..]) {
            Some(len) => {
                assert!(
                    buf[pos] != b'-',
                    "{}",
                    String::from_utf8_lossy(&buf[pos..pos + len])
                );
                pos += len;
                n -= 1;
            }
            None => {
                buf.drain(..pos);
                pos = 0;
                let mut chunk = [0u8; 65536];
                let r = s.read(&mut chunk).expect("read");
                assert!(r > 0, "server closed the connection");
                buf.extend_from_slice(&chunk[..r]);
            }
        }
    }
    buf.drain(..pos);
}

/// The length of the first complete RESP2 reply in `b`.
fn skip(b: &[u8]) -> Option<usize> {
    let eol = b.windows(2).position(|w| w == b"\r\n")?;
    let line = &b[1..eol];
    let after = eol + 2;
    match *b.first()? {
        b'$' => {
            let len: i64 = std::str::from_utf8(line).ok()?.parse().ok()?;
            if len < 0 {
                return Some(after);
            }
            let end = after + len as usize + 2;
            (b.len() >= end).then_some(end)
        }
        b'*' => {
            let n: i64 = std::str::from_utf8(line).ok()?.parse().ok()?;
            let mut pos = after;
            for _ in 0..n.max(0) {
                pos += skip(&b[pos..])?;
            }
            Some(pos)
        }
        _ => Some(after),
    }
}

fn info_used_memory(port: u16) -> u64 {
    let mut s = connect(port).unwrap();
    let mut out = Vec::new();
    encode(&mut out, &[b"INFO", b"memory"]);
    s.write_all(&out).unwrap();
    let mut raw = Vec::new();
    while skip(&raw).is_none() {
        let mut chunk = [0u8; 65536];
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "server closed the connection");
        raw.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&raw)
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Sends `cmds` (each `per` replies) in batches of 1000 commands.
fn load(port: u16, cmds: impl Iterator<Item = Vec<u8>>, per: usize) {
    let mut s = connect(port).unwrap();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut pending = 0;
    for c in cmds {
        out.extend_from_slice(&c);
        pending += per;
        if pending >= 1000 {
            s.write_all(&out).unwrap();
            out.clear();
            read_replies(&mut s, &mut buf, pending);
            pending = 0;
        }
    }
    s.write_all(&out).unwrap();
    read_replies(&mut s, &mut buf, pending);
}

/// One write, as `native` ringkv or as the Redis transaction; returns the
/// number of replies it produces.
fn write_op(out: &mut Vec<u8>, native: bool, k: &[u8], now_ms: u128) -> usize {
    if native {
        encode(out, &[b"MSTORE.WRITE", b"ns", k, DATA]);
        return 1;
    }
    let log = storage(k, "log");
    let mut rec = now_ms.to_string().into_bytes();
    rec.push(b':');
    rec.extend_from_slice(DATA);
    encode(out, &[b"MULTI"]);
    encode(out, &[b"LPUSH", &log, &rec]);
    encode(out, &[b"LTRIM", &log, b"0", b"99"]);
    encode(out, &[b"PEXPIRE", &log, EXPIRE_MS]);
    encode(out, &[b"EXEC"]);
    5
}

/// CPU time (user + system, all threads) the process `pid` has used.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the line.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Duration::from_secs_f64(f.iter().sum::<u64>() as f64 / tck)
}

struct Run {
    writes_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn run(port: u16, native: bool, n: u64, clients: u64, pipeline: u64, keys: u64) -> Run {
    let per_client = n / clients;
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            std::thread::spawn(move || {
                let mut s = connect(port).unwrap();
                let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (c + 1).wrapping_mul(0x1234_5678_9abc);
                let mut lat = Vec::with_capacity((per_client / pipeline + 1) as usize);
                let (mut out, mut buf) = (Vec::new(), Vec::new());
                let mut done = 0;
                while done < per_client {
                    out.clear();
                    let batch = pipeline.min(per_client - done);
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_millis();
                    let mut replies = 0;
                    for _ in 0..batch {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        replies += write_op(&mut out, native, &key(rng % keys), now);
                    }
                    let t = Instant::now();
                    s.write_all(&out).unwrap();
                    read_replies(&mut s, &mut buf, replies);
                    lat.push(t.elapsed());
                    done += batch;
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let elapsed = start.elapsed();
    lat.sort();
    let pct = |p: f64| ms(lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)]);
    Run {
        writes_per_s: (per_client * clients) as f64 / elapsed.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not, and
    // a multi-minute load is no test: then only check that it builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n = env_u64("MS_N", 1_000_000);
    let keys = env_u64("MS_KEYS", 100_000);
    let clients = env_u64("MS_CLIENTS", 50);
    let pipeline = env_u64("MS_P", 16);
    let server_cpu = env_u64("MS_SERVER_CPU", 1) as usize;
    let client_cpu = env_u64("MS_CLIENT_CPU", 0) as usize;
    pin_current(&[client_cpu]);
    println!(
        "MemoryStore writes: {n} writes of {} bytes to {keys} keys (max-records {MAX}), {clients} connections, pipeline {pipeline}",
        DATA.len()
    );
    println!(
        "| server | approach | writes/s | writes per server CPU-s | p50 ms | p99 ms | RSS B/record | used_memory B/record |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for kind in ["ringkv", "redis"] {
        let native = kind == "ringkv";
        let server = start_server(kind, Some(server_cpu));
        let port = server.port;
        let (rss0, used0) = (rss_kb(server.child.id()).unwrap(), info_used_memory(port));
        // Configure every key (the Redis approach stores the same hash; its
        // writes use the client-side cached copy).
        load(
            port,
            (0..keys).map(|i| {
                let mut out = Vec::new();
                let k = key(i);
                if native {
                    encode(&mut out, &[b"MSTORE.CREATE", b"ns", &k, EXPIRE_MS, b"100"]);
                } else {
                    let cfg = storage(&k, "cfg");
                    encode(
                        &mut out,
                        &[
                            b"HSET",
                            &cfg,
                            b"expire-ms",
                            EXPIRE_MS,
                            b"max-records",
                            b"100",
                        ],
                    );
                }
                out
            }),
            1,
        );
        let cpu0 = cpu_time(server.child.id());
        let r = run(port, native, n, clients, pipeline, keys);
        let cpu = cpu_time(server.child.id()).saturating_sub(cpu0);
        let per_cpu_s = (n / clients * clients) as f64 / cpu.as_secs_f64().max(1e-3);
        // Fill every key to exactly MAX records.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let mut rec = now.to_string().into_bytes();
        rec.push(b':');
        rec.extend_from_slice(DATA);
        if native {
            load(
                port,
                (0..keys * MAX as u64).map(|i| {
                    let mut out = Vec::new();
                    write_op(&mut out, true, &key(i % keys), now);
                    out
                }),
                1,
            );
        } else {
            load(
                port,
                (0..keys).map(|i| {
                    let log = storage(&key(i), "log");
                    let mut args: Vec<&[u8]> = vec![b"LPUSH", &log];
                    args.extend(std::iter::repeat_n(&rec[..], MAX));
                    let mut out = Vec::new();
                    encode(&mut out, &args);
                    encode(&mut out, &[b"LTRIM", &log, b"0", b"99"]);
                    encode(&mut out, &[b"PEXPIRE", &log, EXPIRE_MS]);
                    out
                }),
                3,
            );
        }
        let (rss1, used1) = (rss_kb(server.child.id()).unwrap(), info_used_memory(port));
        let records = (keys * MAX as u64) as f64;
        println!(
            "| {kind} | {} | {:.0} | {:.0} | {:.3} | {:.3} | {:.1} | {:.1} |",
            if native {
                "MSTORE.WRITE"
            } else {
                "MULTI+LPUSH+LTRIM+PEXPIRE+EXEC"
            },
            r.writes_per_s,
            per_cpu_s,
            r.p50_ms,
            r.p99_ms,
            (rss1.saturating_sub(rss0) * 1024) as f64 / records,
            used1.saturating_sub(used0) as f64 / records,
        );
    }
}
