//! Differential tests: every script in tests/scripts runs against a real
//! redis-server and against ringkv with 1 and 4 shards, over RESP2 and RESP3,
//! and every reply must be identical. See `parse_script` in tests/common for
//! the syntax; to add cases, add lines to a script or a new `.txt` file.
//! `RINGKV_SCRIPT=name` runs only the scripts whose file name contains `name`.

mod common;

#[test]
fn scripts_match_redis() {
    let dir = &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts");
    let filter = std::env::var("RINGKV_SCRIPT").unwrap_or_default();
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".txt") && n.contains(&filter))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no scripts in {}", dir.display());
    // Two scripts at a time: each starts three servers.
    let failures: Vec<String> = files
        .chunks(2)
        .flat_map(|pair| {
            std::thread::scope(|s| {
                let handles: Vec<_> = pair
                    .iter()
                    .map(|f| {
                        s.spawn(move || {
                            let text = std::fs::read_to_string(dir.join(f)).unwrap();
                            common::diff_script(f, &text, &[], &[])
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} mismatches against redis-server:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
