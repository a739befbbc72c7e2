//! Micro-benchmarks of ringkv's hot paths, each next to a reference:
//!
//! - `parse`: request parsing, ringkv's hand-written `parse_request` against
//!   `redis-protocol`'s `resp2::decode::decode_bytes_mut` on the same bytes;
//! - `encode`: `Reply::encode` against `redis-protocol`'s `extend_encode`;
//! - `dict`: `shard::dict::Dict` insert and get of 16-byte keys at 1M
//!   entries, against a plain `hashbrown::HashMap` with the same hasher;
//! - `routing`: `key_slot` and `SlotTable::shard_of`.
//!
//! Run with `cargo bench --bench hot_paths`; the whole run is kept to a few
//! minutes by short warm-up and measurement times.

use bytes::{Bytes, BytesMut};
use criterion::{
    BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput, black_box, criterion_group,
    criterion_main,
};
use redis_protocol::resp2::{decode::decode_bytes_mut, encode::extend_encode, types::BytesFrame};
use ringkv::reply::Reply;
use ringkv::server::resp::{ParseLimits, Parsed, parse_request};
use ringkv::shard::db::Db;
use ringkv::shard::dict::Dict;
use ringkv::shard::routing::{SlotTable, key_slot};
use ringkv::shard::value::{Entry, SmallBytes, Value};
use std::time::Duration;

fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The three request streams: one SET, 16 pipelined GET/SET, a 1 KiB SET.
fn parse_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let single = resp(&[b"SET", b"key:000000000001", b"value"]);
    let mut pipeline = Vec::new();
    for i in 0..16 {
        let key = format!("key:{i:012}");
        if i % 2 == 0 {
            pipeline.extend(resp(&[b"SET", key.as_bytes(), b"some-value-123"]));
        } else {
            pipeline.extend(resp(&[b"GET", key.as_bytes()]));
        }
    }
    let big = resp(&[b"SET", b"key:000000000001", &[b'v'; 1024]]);
    vec![("set", single), ("pipeline16", pipeline), ("set_1k", big)]
}

/// Parses every request in `buf` with ringkv's parser; returns the number of
/// arguments seen.
fn ringkv_parse_all(mut buf: BytesMut, limits: &ParseLimits) -> usize {
    let mut n = 0;
    loop {
        match parse_request(&mut buf, limits) {
            Parsed::Command(args) => n += black_box(args).len(),
            Parsed::Incomplete => return n,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The same with redis-protocol's zero-copy decoder.
fn redis_protocol_parse_all(mut buf: BytesMut) -> usize {
    let mut n = 0;
    while let Some((frame, _, _)) = decode_bytes_mut(&mut buf).unwrap() {
        match black_box(frame) {
            BytesFrame::Array(args) => n += args.len(),
            other => panic!("unexpected {other:?}"),
        }
    }
    n
}

fn bench_parse(c: &mut Criterion) {
    let limits = ParseLimits {
        max_bulk_len: 512 * 1024 * 1024,
        unauthenticated: false,
    };
    let mut g = c.benchmark_group("parse");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    for (name, input) in parse_inputs() {
        // Both parsers find the same arguments.
        assert_eq!(
            ringkv_parse_all(BytesMut::from(&input[..]), &limits),
            redis_protocol_parse_all(BytesMut::from(&input[..]))
        );
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_with_input(BenchmarkId::new("ringkv", name), &input, |b, input| {
            b.iter_batched(
                || BytesMut::from(&input[..]),
                |buf| ringkv_parse_all(buf, &limits),
                BatchSize::SmallInput,
            )
        });
        g.bench_with_input(
            BenchmarkId::new("redis-protocol", name),
            &input,
            |b, input| {
                b.iter_batched(
                    || BytesMut::from(&input[..]),
                    redis_protocol_parse_all,
                    BatchSize::SmallInput,
                )
            },
        );
    }
    g.finish();
}

fn bench_encode(c: &mut Criterion) {
    let value = Bytes::from(vec![b'x'; 64]);
    let items: Vec<Bytes> = (0..10)
        .map(|i| Bytes::from(format!("element-{i:08}")))
        .collect();
    let cases: Vec<(&str, Reply, BytesFrame)> = vec![
        (
            "bulk64",
            Reply::Bulk(value.clone()),
            BytesFrame::BulkString(value.clone()),
        ),
        (
            "integer",
            Reply::Int(1_234_567_890),
            BytesFrame::Integer(1_234_567_890),
        ),
        (
            "array10",
            Reply::Array(items.iter().cloned().map(Reply::Bulk).collect()),
            BytesFrame::Array(items.iter().cloned().map(BytesFrame::BulkString).collect()),
        ),
    ];
    let mut g = c.benchmark_group("encode");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    for (name, reply, frame) in &cases {
        // Both encoders produce the same bytes.
        let mut a = BytesMut::new();
        reply.encode(&mut a, false);
        let mut b = BytesMut::new();
        extend_encode(&mut b, frame, false).unwrap();
        assert_eq!(a, b, "{name}");

        let mut out = BytesMut::with_capacity(4096);
        g.bench_function(BenchmarkId::new("ringkv", name), |bn| {
            bn.iter(|| {
                out.clear();
                black_box(reply).encode(&mut out, false);
                black_box(out.len())
            })
        });
        g.bench_function(BenchmarkId::new("redis-protocol", name), |bn| {
            bn.iter(|| {
                out.clear();
                extend_encode(&mut out, black_box(frame), false).unwrap();
                black_box(out.len())
            })
        });
    }
    g.finish();
}

const DICT_KEYS: usize = 1_000_000;
/// Lookups per measured iteration of the get benchmarks.
const LOOKUPS: usize = 1000;

/// `n` distinct 16-byte keys.
fn keys16(n: usize, prefix: &str) -> Vec<[u8; 16]> {
    (0..n)
        .map(|i| {
            let s = format!("{prefix}{i:0w$}", w = 16 - prefix.len());
            s.as_bytes().try_into().unwrap()
        })
        .collect()
}

/// An entry to copy: `Entry`'s bookkeeping fields are private to the crate,
/// so one is made through a `Db` and then given each key.
fn template_entry() -> Entry {
    let mut db = Db::default();
    db.set(b"template", Value::Int(1), 0, 0);
    db.remove(b"template").unwrap()
}

fn entry_for(template: &Entry, key: &[u8]) -> Entry {
    let mut e = template.clone();
    e.key = SmallBytes::new(key);
    e
}

type Reference = hashbrown::HashMap<[u8; 16], Value, ahash::RandomState>;

/// Lookup order: a scramble of all key indices.
fn scrambled(n: usize) -> Vec<usize> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        })
        .collect()
}

fn bench_dict(c: &mut Criterion) {
    let keys = keys16(DICT_KEYS, "key:");
    let missing = keys16(LOOKUPS, "nokey:");
    let template = template_entry();
    let order = scrambled(DICT_KEYS);

    let mut g = c.benchmark_group("dict");
    g.sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5))
        .sample_size(10);
    g.throughput(Throughput::Elements(DICT_KEYS as u64));
    g.bench_function("ringkv_dict/insert_1M", |b| {
        b.iter_with_large_drop(|| {
            let mut d = Dict::new();
            for k in &keys {
                d.insert(entry_for(&template, k));
            }
            d
        })
    });
    g.bench_function("hashbrown/insert_1M", |b| {
        b.iter_with_large_drop(|| {
            let mut m = Reference::default();
            for k in &keys {
                m.insert(*k, Value::Int(1));
            }
            m
        })
    });
    g.finish();

    let mut dict = Dict::new();
    let mut map = Reference::default();
    for k in &keys {
        dict.insert(entry_for(&template, k));
        map.insert(*k, Value::Int(1));
    }
    assert_eq!(dict.len(), DICT_KEYS);

    let mut g = c.benchmark_group("dict_get_at_1M");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .throughput(Throughput::Elements(LOOKUPS as u64));
    let mut pos = 0;
    g.bench_function("ringkv_dict/hit", |b| {
        b.iter(|| {
            let mut found = 0;
            for _ in 0..LOOKUPS {
                pos = (pos + 1) % DICT_KEYS;
                found += dict.get(&keys[order[pos]]).is_some() as usize;
            }
            assert_eq!(found, LOOKUPS);
        })
    });
    g.bench_function("hashbrown/hit", |b| {
        b.iter(|| {
            let mut found = 0;
            for _ in 0..LOOKUPS {
                pos = (pos + 1) % DICT_KEYS;
                found += map.get(&keys[order[pos]]).is_some() as usize;
            }
            assert_eq!(found, LOOKUPS);
        })
    });
    // Misses repeat the same 1000 absent keys, so they stay cache-warm.
    g.bench_function("ringkv_dict/miss", |b| {
        b.iter(|| {
            let found = missing
                .iter()
                .filter(|k| dict.get(&k[..]).is_some())
                .count();
            assert_eq!(found, 0);
        })
    });
    g.bench_function("hashbrown/miss", |b| {
        b.iter(|| {
            let found = missing.iter().filter(|k| map.get(*k).is_some()).count();
            assert_eq!(found, 0);
        })
    });
    g.finish();
}

fn bench_routing(c: &mut Criterion) {
    let keys = keys16(LOOKUPS, "user:");
    let tagged: Vec<Vec<u8>> = (0..LOOKUPS)
        .map(|i| format!("{{user:{i}}}:profile").into_bytes())
        .collect();
    let table = SlotTable::contiguous(4);
    let mut g = c.benchmark_group("routing");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .throughput(Throughput::Elements(LOOKUPS as u64));
    g.bench_function("key_slot/16B", |b| {
        b.iter(|| {
            keys.iter()
                .map(|k| key_slot(black_box(k)) as usize)
                .sum::<usize>()
        })
    });
    g.bench_function("key_slot/hash_tag", |b| {
        b.iter(|| {
            tagged
                .iter()
                .map(|k| key_slot(black_box(k)) as usize)
                .sum::<usize>()
        })
    });
    g.bench_function("shard_of/4_shards", |b| {
        b.iter(|| {
            keys.iter()
                .map(|k| table.shard_of(black_box(k)))
                .sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_parse,
    bench_encode,
    bench_dict,
    bench_routing
);
criterion_main!(benches);
