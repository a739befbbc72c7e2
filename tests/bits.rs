//! Bitmap and HyperLogLog behaviour a hand-written script cannot show well:
//! generated differential scripts (sparse→dense promotion with thousands of
//! elements, registers above the sparse limit, unions over many keys on four
//! shards, a lowered proto-max-bulk-len), a property test of random bit
//! commands against redis-server, and atomicity of cross-shard BITOP and
//! PFMERGE under concurrent writers.

mod common;

use common::{Proc, diff_script};
use proptest::prelude::*;
use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Runs a generated script against redis-server and ringkv (1 and 4 shards)
/// and fails with every mismatch.
fn assert_same(name: &str, text: &str, ringkv_flags: &[&str], redis_flags: &[&str]) {
    let failures = diff_script(name, text, ringkv_flags, redis_flags);
    assert!(
        failures.is_empty(),
        "{} mismatches against redis-server:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A script argument holding arbitrary bytes (`"\xHH..."`).
fn escaped(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 4 + 2);
    s.push('"');
    for b in bytes {
        write!(s, "\\x{b:02x}").unwrap();
    }
    s.push('"');
    s
}

/// A dense HyperLogLog with the given (register, value) pairs set, built by
/// hand in Redis's layout; the cached cardinality is marked stale.
fn dense_hll(regs: &[(usize, u8)]) -> Vec<u8> {
    let mut s = b"HYLL\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80".to_vec();
    s.resize(16 + 12288, 0);
    for &(i, v) in regs {
        let (byte, fb) = (16 + i * 6 / 8, (i * 6) & 7);
        let v = v as u16;
        s[byte] &= !(63u16 << fb) as u8;
        s[byte] |= (v << fb) as u8;
        if byte + 1 < s.len() {
            s[byte + 1] &= !(63u16 >> (8 - fb)) as u8;
            s[byte + 1] |= (v >> (8 - fb)) as u8;
        }
    }
    s
}

#[test]
fn hll_sparse_to_dense_promotion() {
    let mut t = String::new();
    // Grow one HLL in batches across the default 3000-byte sparse limit,
    // checking the raw bytes and the estimate after every batch.
    for batch in 0..14 {
        t.push_str("PFADD big");
        for i in 0..250 {
            write!(t, " el:{batch}:{i}").unwrap();
        }
        t.push_str("\nSTRLEN big\nGET big\nPFCOUNT big\nGET big\n");
    }
    // Adding elements one by one near the limit exercises each split case.
    for i in 0..400 {
        writeln!(t, "PFADD one item-{i}").unwrap();
        if i % 40 == 0 {
            t.push_str("GET one\nPFCOUNT one\n");
        }
    }
    t.push_str("GET one\n");
    // Dense and sparse inputs together.
    t.push_str("PFADD small x y z\nPFMERGE mixed small big\nGET mixed\nPFCOUNT mixed\n");
    t.push_str("PFMERGE small2 small\nGET small2\nPFMERGE big small\nGET big\n");
    t.push_str("PFCOUNT big small one\nPFCOUNT one\nPFADD big el:0:0 fresh-one\nGET big\n");
    t.push_str("PFMERGE one big\nGET one\nPFCOUNT one\n");
    assert_same("hll-promotion", &t, &[], &[]);
}

#[test]
fn hll_registers_above_sparse_limit() {
    // Registers above 32 only exist in the dense form: merging one into a
    // sparse HLL promotes it, at the first and last register too.
    let dense = dense_hll(&[(0, 33), (1, 7), (5000, 51), (9000, 40), (16383, 45)]);
    let edges = dense_hll(&[(16383, 63), (0, 63)]);
    let mut t = String::new();
    writeln!(t, "SET dense {}", escaped(&dense)).unwrap();
    writeln!(t, "SET edges {}", escaped(&edges)).unwrap();
    t.push_str("PFCOUNT dense\nGET dense\nPFCOUNT edges\nPFCOUNT dense edges\n");
    t.push_str("PFADD sp a b c\nPFMERGE sp dense\nSTRLEN sp\nGET sp\nPFCOUNT sp\n");
    t.push_str("PFMERGE sp2 edges\nGET sp2\nPFCOUNT sp2\n");
    t.push_str("PFADD dense a b c d e f\nGET dense\nPFCOUNT dense\n");
    t.push_str("PFMERGE dense dense\nGET dense\n");
    // A register of exactly 32 stays sparse.
    let at32 = dense_hll(&[(100, 32), (101, 32), (102, 31)]);
    writeln!(t, "SET at32 {}", escaped(&at32)).unwrap();
    t.push_str("PFADD s32 q\nPFMERGE s32 at32\nGET s32\nPFCOUNT s32\n");
    // A hand-made sparse value with a VAL of 32 gets a larger one.
    let mut sparse = b"HYLL\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80".to_vec();
    sparse.extend_from_slice(&[0xfc, 0x7f, 0xfe]); // VAL 32 x1, XZERO 16383
    writeln!(t, "SET sv {}", escaped(&sparse)).unwrap();
    t.push_str("PFCOUNT sv\nPFMERGE sv dense\nGET sv\n");
    assert_same("hll-dense-registers", &t, &[], &[]);
}

#[test]
fn pfcount_and_pfmerge_over_many_keys() {
    let mut t = String::new();
    let n = 40;
    for k in 0..n {
        write!(t, "PFADD multi{k}").unwrap();
        for i in 0..(20 + k * 7) {
            write!(t, " m{}", (k * 13 + i * 3) % 600).unwrap();
        }
        t.push('\n');
    }
    let all: Vec<String> = (0..n).map(|k| format!("multi{k}")).collect();
    writeln!(t, "PFCOUNT {}", all.join(" ")).unwrap();
    writeln!(t, "PFCOUNT {} missing1 missing2", all[..25].join(" ")).unwrap();
    writeln!(t, "PFMERGE union {}", all.join(" ")).unwrap();
    t.push_str("GET union\nPFCOUNT union\nGET union\n");
    writeln!(t, "PFMERGE multi7 {}", all[20..].join(" ")).unwrap();
    t.push_str("GET multi7\n");
    // The first bad key in argument order decides the error.
    t.push_str("SET plain hello\n");
    t.push_str(
        "SET bad \"HYLL\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x80\\x7f\\xfe\"\n",
    );
    writeln!(t, "PFCOUNT {} plain bad", all.join(" ")).unwrap();
    writeln!(t, "PFCOUNT {} bad plain", all.join(" ")).unwrap();
    writeln!(t, "PFMERGE union2 {} bad plain", all[..10].join(" ")).unwrap();
    t.push_str("EXISTS union2\n");
    // Bitmaps over the same spread of keys.
    for k in 0..n {
        writeln!(t, "SETBIT bits{k} {} 1", k * 37 % 500).unwrap();
    }
    let bits: Vec<String> = (0..n).map(|k| format!("bits{k}")).collect();
    for op in ["AND", "OR", "XOR"] {
        writeln!(t, "BITOP {op} bitdest {}", bits.join(" ")).unwrap();
        t.push_str("GET bitdest\nBITCOUNT bitdest\n");
    }
    writeln!(t, "BITOP OR bitdest {} plain", bits.join(" ")).unwrap();
    t.push_str("GET bitdest\n");
    assert_same("multi-key", &t, &[], &[]);
}

#[test]
fn offsets_limited_by_proto_max_bulk_len() {
    // 1mb is the smallest limit Redis accepts: offsets up to 8388607 bits.
    let t = "\
SETBIT k 8388607 1
STRLEN k
SETBIT k 8388608 1
GETBIT k 8388608
GETBIT k 8388607
BITCOUNT k
BITPOS k 1
BITPOS k 1 -1
BITPOS k 0 -1
BITPOS k 1 -8 -1 BIT
BITFIELD k GET u8 #1048575 GET i64 8388600 GET u8 8388608
BITFIELD k SET u8 8388607 255
STRLEN k
BITFIELD k SET u8 8388608 1
BITFIELD k SET u8 #1048575 1
BITFIELD k SET i64 #131071 -1
STRLEN k
BITOP NOT k2 k
BITCOUNT k2
BITPOS k2 1
BITPOS k2 0
";
    let flags = ["--proto-max-bulk-len", "1mb"];
    assert_same("bulk-limit", t, &flags, &flags);
}

#[test]
fn wrongtype_on_collections() {
    // Needs a collection type; skipped until the list family is present.
    let ringkv = Proc::ringkv(1, &[]);
    let probe = ringkv.raw().cmd_str(&["LPUSH", "probe", "x"]);
    if probe.starts_with(b"-ERR unknown command") {
        eprintln!("LPUSH not available yet: WRONGTYPE cases skipped");
        return;
    }
    let t = "\
LPUSH alist x
SETBIT alist 0 1
GETBIT alist 0
SETBIT alist x 1
SETBIT alist 0 5
BITCOUNT alist
BITCOUNT alist 0 1
BITCOUNT alist x y
BITPOS alist 0
BITPOS alist 3
SET b x
BITOP OR x6 b alist
BITOP OR x6 alist nosuch
BITFIELD alist GET u8 0
BITFIELD alist SET u8 0 1
BITFIELD alist FOO
BITFIELD_RO alist GET u8 0
BITFIELD_RO alist SET u8 0 1
PFADD alist a
PFCOUNT alist
PFCOUNT alist b
PFCOUNT b alist
PFMERGE alist b
PFMERGE b alist
PFMERGE nosuch alist
BITOP OR alist b
TYPE alist
GET alist
";
    assert_same("wrongtype", t, &[], &[]);
}

#[test]
fn hll_sparse_max_bytes_option() {
    // Skipped until config.rs knows the option (CONFIG GET lists nothing).
    let probe = Proc::ringkv(1, &[]);
    let got = probe
        .raw()
        .cmd_str(&["CONFIG", "GET", "hll-sparse-max-bytes"]);
    if got.starts_with(b"*0") || got.starts_with(b"%0") {
        eprintln!("hll-sparse-max-bytes not configurable yet: skipped");
        return;
    }
    drop(probe);
    // One redis-server serves every pass: reset the option first.
    let mut t =
        String::from("CONFIG SET hll-sparse-max-bytes 300\nCONFIG GET hll-sparse-max-bytes\n");
    for batch in 0..6 {
        t.push_str("PFADD low");
        for i in 0..25 {
            write!(t, " v{batch}.{i}").unwrap();
        }
        t.push_str("\nSTRLEN low\nGET low\n");
    }
    t.push_str("CONFIG SET hll-sparse-max-bytes 5000\nPFADD high");
    for i in 0..1200 {
        write!(t, " w{i}").unwrap();
    }
    t.push_str("\nSTRLEN high\nGET high\nCONFIG SET hll-sparse-max-bytes 0\nPFADD high extra\nSTRLEN high\n");
    t.push_str("CONFIG SET hll-sparse-max-bytes 3kb\nCONFIG GET hll-sparse-max-bytes\n");
    let flags = ["--hll-sparse-max-bytes", "300"];
    assert_same("hll-sparse-max-bytes", &t, &flags, &flags);
}

/// One random bit command, as script arguments.
fn bit_command() -> impl Strategy<Value = Vec<String>> {
    let key = prop::sample::select(vec!["k0", "k1", "k2"]);
    let unit = prop::sample::select(vec!["", "BYTE", "BIT"]);
    let idx = -30i64..60;
    let ftype = (any::<bool>(), 1u32..=64).prop_map(|(s, b)| {
        if s || b == 64 {
            format!("i{b}")
        } else {
            format!("u{b}")
        }
    });
    let field_op = (
        0u8..4,
        ftype,
        0u64..300,
        any::<i64>(),
        -300i64..300,
        prop::sample::select(vec!["WRAP", "SAT", "FAIL"]),
    )
        .prop_map(|(kind, t, off, big, small, ow)| match kind {
            0 => vec!["GET".into(), t, off.to_string()],
            1 => vec!["SET".into(), t, off.to_string(), big.to_string()],
            2 => vec!["INCRBY".into(), t, off.to_string(), small.to_string()],
            _ => vec!["OVERFLOW".into(), ow.into()],
        });
    prop_oneof![
        (key.clone(), 0u64..400, 0u8..2).prop_map(|(k, o, v)| vec![
            "SETBIT".into(),
            k.into(),
            o.to_string(),
            v.to_string()
        ]),
        (key.clone(), 0u64..420).prop_map(|(k, o)| vec!["GETBIT".into(), k.into(), o.to_string()]),
        (key.clone(), idx.clone(), idx.clone(), unit.clone()).prop_map(|(k, s, e, u)| {
            let mut v = vec!["BITCOUNT".into(), k.into(), s.to_string(), e.to_string()];
            if !u.is_empty() {
                v.push(u.into());
            }
            v
        }),
        (key.clone(), 0u8..2, 0usize..4, idx.clone(), idx, unit).prop_map(|(k, b, n, s, e, u)| {
            let mut v = vec!["BITPOS".into(), k.into(), b.to_string()];
            if n >= 1 {
                v.push(s.to_string());
            }
            if n >= 2 {
                v.push(e.to_string());
            }
            if n >= 3 && !u.is_empty() {
                v.push(u.into());
            }
            v
        }),
        (key.clone(), prop::collection::vec(field_op, 1..5)).prop_map(|(k, ops)| {
            let mut v = vec!["BITFIELD".into(), k.into()];
            v.extend(ops.into_iter().flatten());
            v
        }),
        (
            prop::sample::select(vec!["AND", "OR", "XOR"]),
            key.clone(),
            key.clone(),
            key.clone()
        )
            .prop_map(|(op, d, a, b)| vec![
                "BITOP".into(),
                op.into(),
                d.into(),
                a.into(),
                b.into()
            ]),
        key.clone()
            .prop_map(|k| vec!["BITOP".into(), "NOT".into(), k.into(), k.into()]),
        key.prop_map(|k| vec!["GET".into(), k.into()]),
    ]
}

#[test]
fn random_bit_commands_match_redis() {
    let redis = Proc::redis(&[]);
    let ours = Proc::ringkv(4, &[]);
    // proptest's closure is `Fn`: the connections sit in a RefCell.
    let conns = RefCell::new((redis.raw(), ours.raw()));
    let config = ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(cmds in prop::collection::vec(bit_command(), 1..25))| {
        let (a, b) = &mut *conns.borrow_mut();
        a.cmd_str(&["FLUSHALL"]);
        b.cmd_str(&["FLUSHALL"]);
        for cmd in &cmds {
            let args: Vec<&str> = cmd.iter().map(|s| s.as_str()).collect();
            let want = a.cmd_str(&args);
            let got = b.cmd_str(&args);
            prop_assert_eq!(
                String::from_utf8_lossy(&want),
                String::from_utf8_lossy(&got),
                "command {:?}",
                cmd
            );
        }
    });
}

#[test]
fn random_hll_adds_match_redis_bytes() {
    let redis = Proc::redis(&[]);
    let ours = Proc::ringkv(4, &[]);
    // proptest's closure is `Fn`: the connections sit in a RefCell.
    let conns = RefCell::new((redis.raw(), ours.raw()));
    let config = ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let batch = prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12), 0..60);
    proptest!(config, |(batches in prop::collection::vec(batch, 1..8))| {
        let (a, b) = &mut *conns.borrow_mut();
        a.cmd_str(&["FLUSHALL"]);
        b.cmd_str(&["FLUSHALL"]);
        for (i, elems) in batches.iter().enumerate() {
            let key = format!("h{}", i % 3);
            let mut args: Vec<&[u8]> = vec![b"PFADD", key.as_bytes()];
            args.extend(elems.iter().map(|e| e.as_slice()));
            prop_assert_eq!(a.cmd(&args), b.cmd(&args));
            for c in [&["GET", &key][..], &["PFCOUNT", &key], &["GET", &key]] {
                prop_assert_eq!(a.cmd_str(c), b.cmd_str(c), "{:?}", c);
            }
        }
        let all = ["PFCOUNT", "h0", "h1", "h2"];
        prop_assert_eq!(a.cmd_str(&all), b.cmd_str(&all));
        let merge = ["PFMERGE", "h0", "h1", "h2"];
        prop_assert_eq!(a.cmd_str(&merge), b.cmd_str(&merge));
        prop_assert_eq!(a.cmd_str(&["GET", "h0"]), b.cmd_str(&["GET", "h0"]));
    });
}

/// Keys `{prefix}{i}` on four distinct shards of a 4-shard server.
fn keys_on_distinct_shards(prefix: &str) -> Vec<String> {
    let table = ringkv::shard::routing::SlotTable::contiguous(4);
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for i in 0.. {
        let k = format!("{prefix}{i}");
        let s = table.shard_of(k.as_bytes());
        if !seen.contains(&s) {
            seen.push(s);
            out.push(k);
            if out.len() == 4 {
                return out;
            }
        }
    }
    unreachable!()
}

#[test]
fn cross_shard_bitop_pfcount_pfmerge_are_atomic() {
    // A writer flips two keys on different shards between HLL values A and
    // B with MSET (atomic). Whole snapshots give BITOP XOR == all zeros and
    // a union count of count(A) or count(B); a torn read would show set bits
    // or the larger count of A and B together.
    let server = Proc::ringkv(4, &[]);
    let ks = keys_on_distinct_shards("atom");
    let (x, y, dest, merged) = (&ks[0], &ks[1], &ks[2], &ks[3]);
    let mut c = server.raw();
    let mut hll = |key: &str, prefix: &str| {
        let mut args = vec!["PFADD".to_string(), key.to_string()];
        args.extend((0..200).map(|i| format!("{prefix}{i}")));
        let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        c.cmd_str(&a);
        let count = c.cmd_str(&["PFCOUNT", key]);
        let raw = c.cmd_str(&["GET", key]);
        // Strip the bulk header and trailing CRLF.
        let start = raw.iter().position(|&b| b == b'\n').unwrap() + 1;
        (raw[start..raw.len() - 2].to_vec(), count)
    };
    let (va, ca) = hll("scratch-a", "a");
    let (vb, cb) = hll("scratch-b", "b");
    let both = c.cmd_str(&["PFCOUNT", "scratch-a", "scratch-b"]);
    assert_ne!(both, ca);
    assert_ne!(both, cb);
    // Both keys exist before the reader starts.
    c.cmd(&[b"MSET", x.as_bytes(), &va, y.as_bytes(), &va]);
    let stop = AtomicBool::new(false);
    let checks = AtomicU64::new(0);
    let deadline = Instant::now() + Duration::from_secs(2);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut w = server.raw();
            let mut flip = false;
            // Also bounded in time, so a failed reader cannot leave it running.
            while !stop.load(Ordering::Relaxed)
                && Instant::now() < deadline + Duration::from_secs(30)
            {
                let v: &[u8] = if flip { &va } else { &vb };
                w.cmd(&[b"MSET", x.as_bytes(), v, y.as_bytes(), v]);
                flip = !flip;
            }
        });
        s.spawn(|| {
            let mut r = server.raw();
            while Instant::now() < deadline {
                r.cmd_str(&["BITOP", "XOR", dest, x, y]);
                assert_eq!(r.cmd_str(&["BITCOUNT", dest]), b":0\r\n", "torn BITOP");
                let n = r.cmd_str(&["PFCOUNT", x, y]);
                assert!(n == ca || n == cb, "torn PFCOUNT: {n:?}");
                // PFMERGE also reads its destination: start from nothing.
                r.cmd_str(&["DEL", merged]);
                assert_eq!(r.cmd_str(&["PFMERGE", merged, x, y]), b"+OK\r\n");
                let n = r.cmd_str(&["PFCOUNT", merged]);
                assert!(n == ca || n == cb, "torn PFMERGE: {n:?}");
                checks.fetch_add(1, Ordering::Relaxed);
            }
            stop.store(true, Ordering::Relaxed);
        });
    });
    assert!(checks.load(Ordering::Relaxed) > 10);
}
