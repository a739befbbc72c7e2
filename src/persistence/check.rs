//! `ringkv check-rdb FILE`: validates an RDB file as redis-check-rdb does
//! (header, every record, the CRC64 trailer) and prints a summary.

use super::Thresholds;
use super::rdb::RdbReader;
use std::collections::BTreeMap;
use std::io::Write;

/// Checks the file at `path`, writing a report to `out`. Returns false when
/// the file is damaged.
pub fn check_rdb(path: &str, out: &mut impl Write) -> bool {
    let _ = writeln!(out, "[offset 0] Checking RDB file {path}");
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            let _ = writeln!(out, "Cannot open file {path}: {e}");
            return false;
        }
    };
    let mut reader = match RdbReader::new(file, Thresholds::default()) {
        Ok(r) => r,
        Err(e) => return report_error(out, 0, &e.to_string()),
    };
    let _ = writeln!(out, "[offset 9] RDB version {}", reader.version());
    let now = crate::shard::unix_ms() as i64;
    let (mut keys, mut expires, mut expired) = (0u64, 0u64, 0u64);
    let mut per_db: BTreeMap<u64, u64> = BTreeMap::new();
    let mut aux_shown = 0;
    loop {
        match reader.next_key() {
            Ok(Some(rec)) => {
                keys += 1;
                *per_db.entry(rec.db).or_default() += 1;
                if let Some(ms) = rec.expire_ms {
                    expires += 1;
                    if ms <= now {
                        expired += 1;
                    }
                }
            }
            Ok(None) => break,
            Err(e) => {
                return report_error(out, reader.offset(), &e.to_string());
            }
        }
        aux_shown = show_aux(out, &reader, aux_shown);
    }
    show_aux(out, &reader, aux_shown);
    let end = reader.position();
    let _ = writeln!(out, "[offset {end}] Checksum OK");
    let _ = writeln!(out, "[offset {end}] \\o/ RDB looks OK! \\o/");
    for (db, n) in &per_db {
        let _ = writeln!(out, "[info] db {db}: {n} keys");
    }
    let _ = writeln!(out, "[info] {keys} keys read");
    let _ = writeln!(out, "[info] {expires} expires");
    let _ = writeln!(out, "[info] {expired} already expired");
    true
}

fn show_aux<R: std::io::Read>(out: &mut impl Write, r: &RdbReader<R>, from: usize) -> usize {
    for (k, v) in &r.aux[from..] {
        let _ = writeln!(
            out,
            "[offset {}] AUX FIELD {} = '{}'",
            r.offset(),
            String::from_utf8_lossy(k),
            String::from_utf8_lossy(v)
        );
    }
    r.aux.len()
}

fn report_error(out: &mut impl Write, offset: u64, msg: &str) -> bool {
    let _ = writeln!(out, "--- RDB ERROR DETECTED ---");
    let _ = writeln!(out, "[offset {offset}] {msg}");
    let _ = writeln!(
        out,
        "[additional info] the record starting at offset {offset} is damaged"
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persistence::rdb::{types, write_len, write_string};
    use crate::persistence::{RdbValue, crc64, ziplist::tests::build};

    /// A Redis 6-style (RDB 9) file with ziplist-encoded hash, zset and list.
    fn v9_file() -> Vec<u8> {
        let mut f = b"REDIS0009".to_vec();
        f.push(0xfe); // SELECTDB 0
        write_len(&mut f, 0);
        f.push(types::HASH_ZIPLIST);
        write_string(&mut f, b"h", false);
        write_string(&mut f, &build(&[b"f1", b"v1", b"n", b"300"]), false);
        f.push(types::ZSET_ZIPLIST);
        write_string(&mut f, b"z", false);
        write_string(&mut f, &build(&[b"a", b"1.5", b"b", b"7"]), false);
        f.push(0xfc); // EXPIRETIME_MS
        f.extend_from_slice(&4_102_444_800_000i64.to_le_bytes());
        f.push(types::LIST_QUICKLIST);
        write_string(&mut f, b"l", false);
        write_len(&mut f, 2);
        write_string(&mut f, &build(&[b"x", b"-2"]), false);
        write_string(&mut f, &build(&[b"70000", b"y"]), false);
        f.push(0xff);
        let crc = crc64::crc64(0, &f);
        f.extend_from_slice(&crc.to_le_bytes());
        f
    }

    #[test]
    fn rdb9_ziplists_load_and_check() {
        let file = v9_file();
        let mut r = RdbReader::new(&file[..], Thresholds::default()).unwrap();
        let v = |s: &str| s.as_bytes().to_vec();
        let mut got = Vec::new();
        while let Some(rec) = r.next_key().unwrap() {
            got.push((rec.key, rec.value.value, rec.expire_ms));
        }
        assert_eq!(
            got,
            vec![
                (
                    v("h"),
                    RdbValue::Hash(vec![(v("f1"), v("v1")), (v("n"), v("300"))]),
                    None
                ),
                (
                    v("z"),
                    RdbValue::ZSet(vec![(v("a"), 1.5), (v("b"), 7.0)]),
                    None
                ),
                (
                    v("l"),
                    RdbValue::List(vec![v("x"), v("-2"), v("70000"), v("y")]),
                    Some(4_102_444_800_000)
                ),
            ]
        );
        let path = std::env::temp_dir().join(format!("ringkv-v9-{}.rdb", std::process::id()));
        std::fs::write(&path, &file).unwrap();
        let mut out = Vec::new();
        assert!(check_rdb(path.to_str().unwrap(), &mut out));
        let mut bad = file.clone();
        bad.truncate(file.len() - 12);
        std::fs::write(&path, &bad).unwrap();
        let mut out = Vec::new();
        assert!(!check_rdb(path.to_str().unwrap(), &mut out));
        let _ = std::fs::remove_file(&path);
        assert!(String::from_utf8_lossy(&out).contains("[offset "));
    }
}
