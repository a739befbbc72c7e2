//! The INFO `persistence` section, with Redis 7.0's fields. Fork-related
//! fields are reported as Redis reports them without a child (copy-on-write
//! happens inside the process here, per entry).

use crate::shard::{Global, unix_ms};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

/// Appends the `# Persistence` section. `dirty` is the databases' write
/// count summed over shards ([`crate::shard::db::Db::dirty`]).
pub fn write_section(out: &mut String, g: &'static Global, dirty: u64) {
    let st = &g.rdb;
    out.push_str("# Persistence\r\n");
    let mut field = |k: &str, v: &dyn std::fmt::Display| {
        let _ = write!(out, "{k}:{v}\r\n");
    };
    let in_progress = st.bgsave_in_progress.load(Ordering::Acquire);
    let current = if in_progress {
        (unix_ms().saturating_sub(st.save_started_ms.load(Ordering::Relaxed)) / 1000) as i64
    } else {
        -1
    };
    let ok = |b: bool| if b { "ok" } else { "err" };
    let loading = st.loading.load(Ordering::Acquire);
    field("loading", &(loading as u8));
    field("async_loading", &0);
    if loading {
        // Redis's progress fields, shown only while loading.
        let start = st.loading_start.load(Ordering::Relaxed);
        let total = st.loading_total_bytes.load(Ordering::Relaxed);
        let done = st.loading_loaded_bytes.load(Ordering::Relaxed).min(total);
        let elapsed = (unix_ms() / 1000).saturating_sub(start);
        let perc = if total == 0 {
            0.0
        } else {
            done as f64 * 100.0 / total as f64
        };
        let eta = ((total - done) * elapsed).checked_div(done).unwrap_or(1);
        field("loading_start_time", &start);
        field("loading_total_bytes", &total);
        field("loading_loaded_bytes", &done);
        field("loading_loaded_perc", &format!("{perc:.2}"));
        field("loading_eta_seconds", &eta);
    }
    field("current_cow_peak", &0);
    field("current_cow_size", &0);
    field("current_cow_size_age", &0);
    field("current_fork_perc", &"0.00");
    field("current_save_keys_processed", &0);
    field("current_save_keys_total", &0);
    field(
        "rdb_changes_since_last_save",
        &dirty.saturating_sub(st.dirty_saved.load(Ordering::Relaxed)),
    );
    field("rdb_bgsave_in_progress", &(in_progress as u8));
    field("rdb_last_save_time", &g.lastsave.load(Ordering::Relaxed));
    field(
        "rdb_last_bgsave_status",
        &ok(st.last_bgsave_ok.load(Ordering::Relaxed)),
    );
    field(
        "rdb_last_bgsave_time_sec",
        &st.last_bgsave_secs.load(Ordering::Relaxed),
    );
    field("rdb_current_bgsave_time_sec", &current);
    field("rdb_saves", &st.saves.load(Ordering::Relaxed));
    field("rdb_last_cow_size", &0);
    field(
        "rdb_last_load_keys_expired",
        &st.load_expired.load(Ordering::Relaxed),
    );
    field(
        "rdb_last_load_keys_loaded",
        &st.load_keys.load(Ordering::Relaxed),
    );
    let aof = &g.aof;
    let on = aof.active.load(Ordering::Relaxed);
    field("aof_enabled", &(on as u8));
    field(
        "aof_rewrite_in_progress",
        &(aof.rewrite_in_progress.load(Ordering::Relaxed) as u8),
    );
    field("aof_rewrite_scheduled", &0);
    field(
        "aof_last_rewrite_time_sec",
        &aof.last_rewrite_secs.load(Ordering::Relaxed),
    );
    field("aof_current_rewrite_time_sec", &-1);
    field(
        "aof_last_bgrewrite_status",
        &ok(!aof.last_rewrite_failed.load(Ordering::Relaxed)),
    );
    field("aof_rewrites", &aof.rewrites.load(Ordering::Relaxed));
    field("aof_rewrites_consecutive_failures", &0);
    field(
        "aof_last_write_status",
        &ok(!aof.write_failed.load(Ordering::Relaxed)),
    );
    field("aof_last_cow_size", &0);
    if on {
        field(
            "aof_current_size",
            &aof.current_size.load(Ordering::Relaxed),
        );
        field("aof_base_size", &aof.base_size.load(Ordering::Relaxed));
        field("aof_pending_rewrite", &0);
        field("aof_buffer_length", &0);
        field("aof_pending_bio_fsync", &0);
        field("aof_delayed_fsync", &0);
    }
    field("module_fork_in_progress", &0);
    field("module_fork_last_cow_size", &0);
}
