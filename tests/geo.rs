//! Geo commands against redis-server: generated scripts with a few hundred
//! random points (clusters, exact duplicates, points near the poles and the
//! antimeridian) and many random searches, compared reply for reply over
//! RESP2 and RESP3 on 1 and 4 shards; and the atomicity of cross-shard
//! GEOSEARCHSTORE.

mod common;

use std::fmt::Write;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `[lo, hi]`.
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (self.next() >> 11) as f64 / (1u64 << 53) as f64 * (hi - lo)
    }

    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.below(v.len() as u64) as usize]
    }
}

const CLUSTERS: &[(f64, f64)] = &[
    (13.36, 38.11),
    (-74.0, 40.7),
    (179.5, -18.0),
    (-179.5, 10.0),
    (0.0, 0.0),
    (20.0, 80.0),
    (-60.0, -84.0),
];

fn lonlat(rng: &mut Rng) -> (f64, f64) {
    if rng.below(3) == 0 {
        (rng.range(-180.0, 180.0), rng.range(-85.05, 85.05))
    } else {
        let (x, y) = CLUSTERS[rng.below(CLUSTERS.len() as u64) as usize];
        let spread = [0.01, 0.5, 5.0][rng.below(3) as usize];
        (
            (x + rng.range(-spread, spread)).clamp(-180.0, 180.0),
            (y + rng.range(-spread, spread)).clamp(-85.05, 85.05),
        )
    }
}

/// Search options other than the shape: order, COUNT [ANY], WITH*.
fn options(rng: &mut Rng, with_coord: bool, store: bool) -> String {
    let mut o = String::new();
    match rng.below(3) {
        0 => o.push_str(" ASC"),
        1 => o.push_str(" DESC"),
        _ => {}
    }
    if rng.below(2) == 0 {
        let _ = write!(o, " COUNT {}", 1 + rng.below(25));
        if rng.below(3) == 0 {
            o.push_str(" ANY");
        }
    }
    if !store {
        if rng.below(2) == 0 {
            o.push_str(" WITHDIST");
        }
        if rng.below(3) == 0 {
            o.push_str(" WITHHASH");
        }
        if with_coord {
            o.push_str(" WITHCOORD");
        }
    }
    o
}

fn radius(rng: &mut Rng) -> String {
    let unit = rng.pick(&["m", "km", "mi", "ft", "KM"]);
    let meters = 10f64.powf(rng.range(0.0, 7.3));
    let per = match unit {
        "m" => 1.0,
        "mi" => 1609.34,
        "ft" => 0.3048,
        _ => 1000.0,
    };
    format!("{:.3} {unit}", meters / per)
}

/// One random search line on `key` (members are `p0..p<n>`).
fn search(rng: &mut Rng, key: &str, n: usize, with_coord: bool) -> String {
    let (x, y) = lonlat(rng);
    let member = format!("p{}", rng.below(n as u64));
    let store = rng.below(5) == 0;
    let opts = options(rng, with_coord, store);
    let dst = format!("k{}", 1 + rng.below(8));
    let from = if rng.below(2) == 0 {
        format!("FROMLONLAT {x:.6} {y:.6}")
    } else {
        format!("FROMMEMBER {member}")
    };
    let by = if rng.below(2) == 0 {
        format!("BYRADIUS {}", radius(rng))
    } else {
        let r = radius(rng);
        let (v, unit) = r.split_once(' ').unwrap();
        let w: f64 = v.parse().unwrap();
        format!("BYBOX {w:.3} {:.3} {unit}", w * rng.range(0.2, 3.0))
    };
    match (rng.below(4), store) {
        (0, false) => format!("GEORADIUS {key} {x:.6} {y:.6} {}{opts}", radius(rng)),
        (1, false) => format!("GEORADIUSBYMEMBER_RO {key} {member} {}{opts}", radius(rng)),
        (0, true) => {
            let kw = rng.pick(&["STORE", "STOREDIST"]);
            format!(
                "GEORADIUS {key} {x:.6} {y:.6} {}{opts} {kw} {dst}\nZRANGE {dst} 0 -1 WITHSCORES",
                radius(rng)
            )
        }
        (_, true) => {
            let sd = if rng.below(2) == 0 { " STOREDIST" } else { "" };
            format!(
                "GEOSEARCHSTORE {dst} {key} {from} {by}{opts}{sd}\nZRANGE {dst} 0 -1 WITHSCORES"
            )
        }
        _ => format!("GEOSEARCH {key} {from} {by}{opts}"),
    }
}

/// A script: a big (skiplist) and a small (listpack) geo set, random
/// positions and distances, then many random searches.
fn script(seed: u64, big: usize, searches: usize) -> String {
    let mut rng = Rng(seed);
    let mut s = String::new();
    for (key, n) in [("big", big), ("small", 60)] {
        let mut pts = Vec::new();
        for i in 0..n {
            // Some exact duplicates of earlier points, for distance ties.
            let p = if i > 0 && rng.below(10) == 0 {
                pts[rng.below(pts.len() as u64) as usize]
            } else {
                lonlat(&mut rng)
            };
            pts.push(p);
        }
        for chunk in pts.chunks(50).enumerate() {
            let (c, chunk) = chunk;
            let mut line = format!("GEOADD {key}");
            for (j, (x, y)) in chunk.iter().enumerate() {
                let _ = write!(line, " {x:.6} {y:.6} p{}", c * 50 + j);
            }
            let _ = writeln!(s, "{line}");
        }
        let _ = writeln!(s, "ZCARD {key}\nOBJECT ENCODING {key}");
        for _ in 0..20 {
            let (a, b) = (rng.below(n as u64), rng.below(n as u64));
            let unit = rng.pick(&["", " m", " km", " mi", " ft"]);
            let _ = writeln!(s, "GEODIST {key} p{a} p{b}{unit}");
        }
        let mut line = format!("GEOHASH {key}");
        for i in 0..20 {
            let _ = write!(line, " p{}", i * n / 20);
        }
        let _ = writeln!(s, "{line}");
    }
    for _ in 0..searches {
        let (key, n) = if rng.below(3) == 0 {
            ("small", 60)
        } else {
            ("big", big)
        };
        let _ = writeln!(s, "{}", search(&mut rng, key, n, false));
    }
    let mut line = "GEOPOS big".to_string();
    for i in 0..big {
        let _ = write!(line, " p{i}");
    }
    let _ = writeln!(s, "{line}");
    for _ in 0..searches / 4 {
        let _ = writeln!(s, "{}", search(&mut rng, "big", big, true));
    }
    s
}

fn check(name: &str, text: &str) {
    let failures = common::diff_script(name, text, &[], &[]);
    assert!(
        failures.is_empty(),
        "{} mismatches against redis-server:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn random_points_and_searches_match_redis() {
    check("geo-random-1", &script(0x9e37_79b9_7f4a_7c15, 300, 250));
}

#[test]
fn dense_points_and_searches_match_redis() {
    check("geo-random-2", &script(0xdead_beef_1234_5678, 400, 200));
}

/// GEOSEARCHSTORE from a source on one shard to a destination on another
/// runs atomically: concurrent readers of the destination see either the
/// old or the complete new result, never a partial one.
#[test]
fn cross_shard_store_is_atomic() {
    let rk = common::Proc::ringkv(4, &[]);
    let mut w = rk.client();
    // `a` and `b` live on different shards of a 4-shard ringkv.
    let mut args: Vec<String> = vec!["GEOADD".into(), "a".into()];
    for i in 0..200 {
        args.push(format!("{:.6}", 13.0 + (i % 20) as f64 * 0.01));
        args.push(format!("{:.6}", 38.0 + (i / 20) as f64 * 0.01));
        args.push(format!("m{i}"));
    }
    let mut cmd = redis::cmd(&args[0]);
    for a in &args[1..] {
        cmd.arg(a);
    }
    let _: i64 = cmd.query(&mut w).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let mut r = rk.client();
        std::thread::spawn(move || {
            let mut seen = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let n: i64 = redis::cmd("ZCARD").arg("b").query(&mut r).unwrap();
                assert!(n == 0 || n == 200 || n == 5, "partial store seen: {n}");
                seen += 1;
            }
            seen
        })
    };
    for i in 0..200 {
        let count = if i % 2 == 0 { 200 } else { 5 };
        let n: i64 = redis::cmd("GEOSEARCHSTORE")
            .arg("b")
            .arg("a")
            .arg("FROMLONLAT")
            .arg(13.1)
            .arg(38.1)
            .arg("BYRADIUS")
            .arg(100)
            .arg("km")
            .arg("COUNT")
            .arg(count)
            .query(&mut w)
            .unwrap();
        assert_eq!(n, count);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
}

/// RESP3 coordinates: Redis sends `,<%.17Lf digits without trailing
/// zeros>`. Needs a `Reply` variant for a double with preformatted digits
/// (requested from the lead), so it is ignored until then.
#[test]
fn resp3_coordinates() {
    check(
        "geo-resp3",
        "GEOADD g 13.361389 38.115556 Palermo 15.087269 37.502669 Catania 0 0 z\n\
         !any HELLO 3\n\
         GEOPOS g Palermo Catania z nope\n\
         GEOSEARCH g FROMLONLAT 15 37 BYRADIUS 200 km WITHCOORD WITHDIST WITHHASH\n",
    );
}
