//! A load generator for transactions, which redis-benchmark cannot send:
//! each request is `MULTI`, `SET a v`, `SET b v`, `EXEC`, written at once,
//! and the four replies are read before the next request.
//!
//! Usage: `cargo bench --bench tx_load -- -p PORT [-c CLIENTS] [-n REQUESTS]
//! [--keys same|cross]`. `same` uses two keys with one hash tag (one shard);
//! `cross` uses two keys that ringkv places on different shards when it has
//! two. Prints redis-benchmark's summary lines, so benches/ab.sh can read it.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    // `cargo test --all-targets` runs this without arguments: then there is
    // no server to load, only the build to check.
    let Some(port) = arg("-p").and_then(|p| p.parse::<u16>().ok()) else {
        eprintln!("usage: tx_load -p PORT [-c CLIENTS] [-n REQUESTS] [--keys same|cross]");
        return;
    };
    let clients: usize = arg("-c").and_then(|p| p.parse().ok()).unwrap_or(50);
    let requests: usize = arg("-n").and_then(|p| p.parse().ok()).unwrap_or(100_000);
    // "a" and "b" hash to slots 15495 and 3300: shards 1 and 0 of two.
    let (k1, k2) = match arg("--keys").as_deref() {
        Some("cross") => ("a", "b"),
        _ => ("{t}a", "{t}b"),
    };
    let request = format!(
        "*1\r\n$5\r\nMULTI\r\n*3\r\n$3\r\nSET\r\n${}\r\n{k1}\r\n$1\r\nv\r\n*3\r\n$3\r\nSET\r\n${}\r\n{k2}\r\n$1\r\nv\r\n*1\r\n$4\r\nEXEC\r\n",
        k1.len(),
        k2.len()
    );
    let per_client = requests / clients;
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let request = request.clone();
            std::thread::spawn(move || {
                let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                stream.set_nodelay(true).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let mut w = stream.try_clone().unwrap();
                let mut r = BufReader::new(stream);
                let mut line = String::new();
                let mut lat = Vec::with_capacity(per_client);
                for _ in 0..per_client {
                    let t = Instant::now();
                    w.write_all(request.as_bytes()).unwrap();
                    // +OK, +QUEUED, +QUEUED, *2, +OK, +OK
                    for _ in 0..6 {
                        line.clear();
                        r.read_line(&mut line).unwrap();
                        assert!(!line.starts_with('-'), "error reply: {line}");
                    }
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    let ms = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
    let avg = lat.iter().map(|d| d.as_secs_f64()).sum::<f64>() / lat.len() as f64 * 1e3;
    println!(
        "  throughput summary: {:.2} requests per second",
        lat.len() as f64 / secs
    );
    println!("  latency summary (msec):");
    println!("          avg       min       p50       p95       p99       max");
    println!(
        "      {avg:.3}     {:.3}     {:.3}     {:.3}     {:.3}     {:.3}",
        ms(0.0),
        ms(0.5),
        ms(0.95),
        ms(0.99),
        ms(1.0)
    );
}
