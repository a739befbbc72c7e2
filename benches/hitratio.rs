//! Hit ratio of a Zipf-distributed read-through cache under maxmemory.
//!
//! Workload (issue 4): `KEYS` distinct keys (1M) with 256-byte values,
//! requested with a Zipf(`ZIPF_S` = 0.99) popularity; on a GET miss the
//! client SETs the key. maxmemory holds about `CACHE_PCT` (10%) of the keys:
//! each server's bytes per cached key are measured first (10k keys), then
//! maxmemory = idle used_memory + capacity × bytes per key, so every server
//! and policy gets the same key capacity and the hit ratio compares the
//! policies. After `WARM` requests (2M), the next `OPS` (3M) are counted.
//! Requests go 256 per pipeline on one connection; servers are pinned to CPU
//! 1, the client to CPU 0.
//!
//! Runs ringkv and redis-server under allkeys-lru and allkeys-lfu, and
//! ringkv under allkeys-tinylfu, and prints a Markdown table.
//!
//! ```sh
//! cargo build --release && cargo bench --bench hitratio
//! KEYS=200000 WARM=400000 OPS=600000 cargo bench --bench hitratio   # quick
//! ONLY=ringkv:allkeys-lru,redis:allkeys-lru cargo bench --bench hitratio
//! ```

mod common;
use common::*;
use rand::{Rng, SeedableRng};
use std::time::Instant;

const BATCH: usize = 256;

fn info_u64(c: &mut redis::Connection, field: &str) -> u64 {
    let info: String = redis::cmd("INFO").query(c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Cumulative Zipf distribution over ranks 1..=n.
fn zipf_cdf(n: usize, s: f64) -> Vec<f64> {
    let mut cdf = Vec::with_capacity(n);
    let mut sum = 0.0;
    for k in 1..=n {
        sum += 1.0 / (k as f64).powf(s);
        cdf.push(sum);
    }
    for v in &mut cdf {
        *v /= sum;
    }
    cdf
}

struct Outcome {
    hit_ratio: f64,
    maxmemory: u64,
    keys_held: u64,
    evicted: u64,
    secs: f64,
}

fn run(kind: &str, policy: &str, cdf: &[f64], value: &[u8]) -> Outcome {
    let server = start_server(kind, Some(1));
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{}/", server.port))
        .unwrap()
        .get_connection()
        .unwrap();
    let keys = cdf.len() as u64;
    let cache_pct = env_u64("CACHE_PCT", 10);
    // Bytes per cached key on this server.
    let idle = info_u64(&mut c, "used_memory");
    let probe = 10_000;
    for start in (0..probe).step_by(BATCH) {
        let mut p = redis::pipe();
        for i in start..(start + BATCH).min(probe) {
            p.cmd("SET")
                .arg(format!("probe:{i:010}"))
                .arg(value)
                .ignore();
        }
        p.query::<()>(&mut c).unwrap();
    }
    let per_key = (info_u64(&mut c, "used_memory").saturating_sub(idle)) / probe as u64;
    let _: () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
    let idle = info_u64(&mut c, "used_memory");
    let maxmemory = idle + keys * cache_pct / 100 * per_key;
    for (k, v) in [
        ("maxmemory-policy", policy.to_string()),
        ("maxmemory", maxmemory.to_string()),
    ] {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(k)
            .arg(v)
            .query(&mut c)
            .unwrap();
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let (warm, ops) = (env_u64("WARM", 2_000_000), env_u64("OPS", 3_000_000));
    let (mut hits, mut misses) = (0u64, 0u64);
    let started = Instant::now();
    let mut done = 0;
    while done < warm + ops {
        let batch: Vec<String> = (0..BATCH)
            .map(|_| {
                let u: f64 = rng.r#gen();
                format!("key:{:010}", cdf.partition_point(|&p| p < u))
            })
            .collect();
        let mut p = redis::pipe();
        for k in &batch {
            p.cmd("GET").arg(k);
        }
        let got: Vec<Option<Vec<u8>>> = p.query(&mut c).unwrap();
        let mut sets = redis::pipe();
        let mut missed = 0;
        for (k, v) in batch.iter().zip(&got) {
            if v.is_none() {
                sets.cmd("SET").arg(k).arg(value).ignore();
                missed += 1;
            }
        }
        if missed > 0 {
            // Under memory pressure a SET may be refused; the key stays a miss.
            let _ = sets.query::<()>(&mut c);
        }
        if done >= warm {
            misses += missed;
            hits += BATCH as u64 - missed;
        }
        done += BATCH as u64;
    }
    Outcome {
        hit_ratio: hits as f64 / (hits + misses) as f64,
        maxmemory,
        keys_held: redis::cmd("DBSIZE").query(&mut c).unwrap(),
        evicted: info_u64(&mut c, "evicted_keys"),
        secs: started.elapsed().as_secs_f64(),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` only builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    pin_current(&[0]);
    let keys = env_u64("KEYS", 1_000_000) as usize;
    let s = std::env::var("ZIPF_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.99);
    let cdf = zipf_cdf(keys, s);
    let value = vec![b'x'; 256];
    println!(
        "Zipf({s}) read-through cache: {keys} keys of 256 bytes, capacity {}% of the keys\n",
        env_u64("CACHE_PCT", 10)
    );
    println!("| server | policy | hit ratio | maxmemory | keys held | evicted | seconds |");
    println!("|---|---|---|---|---|---|---|");
    for (kind, policy) in [
        ("ringkv", "allkeys-lru"),
        ("redis", "allkeys-lru"),
        ("ringkv", "allkeys-lfu"),
        ("redis", "allkeys-lfu"),
        ("ringkv", "allkeys-tinylfu"),
    ] {
        // ONLY=ringkv:allkeys-lru,redis:allkeys-lru runs a subset.
        if let Ok(only) = std::env::var("ONLY")
            && !only.split(',').any(|o| o == format!("{kind}:{policy}"))
        {
            continue;
        }
        let o = run(kind, policy, &cdf, &value);
        println!(
            "| {kind} | {policy} | {:.4} | {} | {} | {} | {:.1} |",
            o.hit_ratio, o.maxmemory, o.keys_held, o.evicted, o.secs
        );
    }
}
