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
