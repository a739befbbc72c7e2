//! Differential tests: each script in tests/scripts runs against a real
//! redis-server and against ringkv with 1 and 4 shards, over RESP2 and RESP3,
//! and every reply must be identical (see tests/common for the script syntax).
//! To add cases, add lines to a script, or a script and a test below.

mod common;

#[test]
fn connection() {
    common::check_script_file("connection.txt");
}

#[test]
fn string() {
    common::check_script_file("string.txt");
}
