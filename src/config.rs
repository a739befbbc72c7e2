//! Server configuration: one table of options shared by the command line, the
//! redis.conf-style config file, and CONFIG GET/SET.
//!
//! Every option has a [`OptionSpec`] in [`OPTIONS`]; values are kept in their
//! canonical text form (as CONFIG GET prints them) and parsed by typed getters.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

/// The type and range of an option's value.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// An integer in `[min, max]`, parsed with Redis's strict `string2ll`
    /// rules (no `+`, no spaces, no leading zeros).
    Int { min: i64, max: i64 },
    /// An integer accepted in `[min, max]` and then clamped to
    /// `[lo, hi]`, as Redis does for `hz`.
    ClampedInt {
        min: i64,
        max: i64,
        lo: i64,
        hi: i64,
    },
    /// A byte size (`1gb`, `100mb`, `512`) in `[min, max]`, printed in bytes.
    Memory { min: i64, max: i64 },
    /// Free text.
    Str,
    /// One of a fixed set of words.
    Enum(&'static [&'static str]),
    /// `yes` or `no`.
    Bool,
    /// Save points: pairs of `<seconds> <changes>`, or empty.
    SavePoints,
    /// A directory; stored as an absolute path (relative ones resolve from
    /// the working directory, as Redis's `chdir` does).
    Dir,
    /// A file name without any directory part.
    FileName,
}

/// Options CONFIG SET refuses as Redis does with `enable-protected-configs no`.
pub const PROTECTED: &[&str] = &["dir", "dbfilename"];

/// One configuration option.
#[derive(Debug)]
pub struct OptionSpec {
    /// Name, as in redis.conf.
    pub name: &'static str,
    /// Value type.
    pub kind: Kind,
    /// Default value, canonical.
    pub default: &'static str,
    /// Whether CONFIG SET may change it at run time.
    pub mutable: bool,
    /// One line for `--help`.
    pub help: &'static str,
}

const fn opt(
    name: &'static str,
    kind: Kind,
    default: &'static str,
    mutable: bool,
    help: &'static str,
) -> OptionSpec {
    OptionSpec {
        name,
        kind,
        default,
        mutable,
        help,
    }
}

const INT_MAX: i64 = i32::MAX as i64;
const UINT_MAX: i64 = u32::MAX as i64;
const MB: i64 = 1024 * 1024;

/// Every option ringkv understands, with Redis's names, ranges and defaults.
///
/// Each one is honoured: `port`, `bind`, `shards`, `databases` and `logfile`
/// at startup; `requirepass` and `maxclients` when a connection arrives;
/// `proto-max-bulk-len` and `client-query-buffer-limit` on every read; `hz`
/// by the active-expiry loop; `loglevel` through [`apply_runtime`]; the
/// `*-max-*` encoding thresholds by the collection types when they write;
/// `save`, `dir`, `dbfilename`, `rdbcompression`, `rdbchecksum` and
/// `stop-writes-on-bgsave-error` by [`crate::persistence::save`].
pub static OPTIONS: &[OptionSpec] = &[
    opt(
        "port",
        Kind::Int { min: 0, max: 65535 },
        "6379",
        false,
        "TCP port to listen on (0: any free port).",
    ),
    opt(
        "bind",
        Kind::Str,
        "127.0.0.1",
        false,
        "Address to listen on.",
    ),
    opt(
        "shards",
        Kind::Int { min: 0, max: 1024 },
        "0",
        false,
        "Number of shards, one pinned executor each (0: one per usable core).",
    ),
    opt(
        "databases",
        Kind::Int {
            min: 1,
            max: INT_MAX,
        },
        "16",
        false,
        "Number of databases.",
    ),
    opt(
        "requirepass",
        Kind::Str,
        "",
        true,
        "Require clients to AUTH with this password.",
    ),
    opt(
        "loglevel",
        Kind::Enum(&["debug", "verbose", "notice", "warning"]),
        "notice",
        true,
        "Log level: debug, verbose, notice or warning.",
    ),
    opt(
        "logfile",
        Kind::Str,
        "",
        false,
        "Log to this file instead of standard output.",
    ),
    opt(
        "proto-max-bulk-len",
        Kind::Memory {
            min: MB,
            max: i64::MAX,
        },
        "536870912",
        true,
        "Largest bulk string a client may send (e.g. 512mb).",
    ),
    opt(
        "client-query-buffer-limit",
        Kind::Memory {
            min: MB,
            max: i64::MAX,
        },
        "1073741824",
        true,
        "Largest query buffer of one client (e.g. 1gb).",
    ),
    opt(
        "maxclients",
        Kind::Int {
            min: 1,
            max: UINT_MAX,
        },
        "10000",
        true,
        "Maximum number of connected clients.",
    ),
    opt(
        "hz",
        Kind::ClampedInt {
            min: 0,
            max: INT_MAX,
            lo: 1,
            hi: 500,
        },
        "10",
        true,
        "Background task frequency (active expiry), clamped to 1..500.",
    ),
    opt(
        "hash-max-listpack-entries",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
        "128",
        true,
        "Hashes with more fields use a hash table.",
    ),
    opt(
        "hash-max-listpack-value",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
        "64",
        true,
        "Hashes with a longer field or value use a hash table.",
    ),
    opt(
        "list-max-listpack-size",
        Kind::Int {
            min: i32::MIN as i64,
            max: INT_MAX,
        },
        "-2",
        true,
        "Lists above this size leave the flat encoding (negative: -1..-5 = 4..64 KiB).",
    ),
    opt(
        "set-max-intset-entries",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
        "512",
        true,
        "Integer sets with more members use a hash table.",
    ),
    opt(
        "set-max-listpack-entries",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
        "128",
        true,
        "Non-integer sets with more members use a hash table.",
    ),
    opt(
        "set-max-listpack-value",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
        "64",
        true,
        "Sets with a longer member use a hash table.",
    ),
    opt(
        "rdbcompression",
        Kind::Bool,
        "yes",
        true,
        "Compress strings with LZF in DUMP payloads (and RDB files).",
    ),
    opt(
        "save",
        Kind::SavePoints,
        "3600 1 300 100 60 10000",
        true,
        "Save points: BGSAVE after <seconds> if at least <changes> writes (\"\" disables).",
    ),
    opt("dir", Kind::Dir, "./", false, "Directory of the RDB file."),
    opt(
        "dbfilename",
        Kind::FileName,
        "dump.rdb",
        false,
        "File name of the RDB file, in dir.",
    ),
    opt(
        "rdbchecksum",
        Kind::Bool,
        "yes",
        false,
        "Write a CRC64 trailer in RDB files (no: zero).",
    ),
    opt(
        "appendonly",
        Kind::Bool,
        "no",
        true,
        "Log every write to the append-only file (AOF); at startup the AOF wins over the RDB.",
    ),
    opt(
        "appendfsync",
        Kind::Enum(&["always", "everysec", "no"]),
        "everysec",
        true,
        "When the AOF is synced: before every reply (always), once a second, or never explicitly.",
    ),
    opt(
        "appenddirname",
        Kind::FileName,
        "appendonlydir",
        false,
        "Directory of the AOF files, in dir.",
    ),
    opt(
        "appendfilename",
        Kind::FileName,
        "appendonly.aof",
        false,
        "Base name of the AOF files.",
    ),
    opt(
        "auto-aof-rewrite-percentage",
        Kind::Int {
            min: 0,
            max: INT_MAX,
        },
        "100",
        true,
        "Rewrite the AOF when it grew by this percentage since the last rewrite (0: never).",
    ),
    opt(
        "auto-aof-rewrite-min-size",
        Kind::Memory {
            min: 0,
            max: i64::MAX,
        },
        "67108864",
        true,
        "Smallest AOF size that triggers an automatic rewrite.",
    ),
    opt(
        "aof-load-truncated",
        Kind::Bool,
        "yes",
        true,
        "Load an AOF whose last record is cut off (truncating it) instead of refusing to start.",
    ),
    opt(
        "stop-writes-on-bgsave-error",
        Kind::Bool,
        "yes",
        true,
        "Refuse writes while the last background save failed and save points are set.",
    ),
    opt(
        "hll-sparse-max-bytes",
        Kind::Memory {
            min: 0,
            max: i64::MAX,
        },
        "3000",
        true,
        "Largest sparse HyperLogLog in bytes before it turns dense.",
    ),
    opt(
        "zset-max-listpack-entries",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
        "128",
        true,
        "Sorted sets with more members use the indexed encoding.",
    ),
    opt(
        "zset-max-listpack-value",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
        "64",
        true,
        "Sorted sets with a longer member use the indexed encoding.",
    ),
    opt(
        "maxmemory",
        Kind::Memory {
            min: 0,
            max: i64::MAX,
        },
        "0",
        true,
        "Memory limit for the data (e.g. 100mb; 0: no limit), enforced by maxmemory-policy.",
    ),
    opt(
        "maxmemory-policy",
        Kind::Enum(&[
            "volatile-lru",
            "volatile-lfu",
            "volatile-random",
            "volatile-ttl",
            "allkeys-lru",
            "allkeys-lfu",
            "allkeys-random",
            "noeviction",
            "allkeys-tinylfu",
        ]),
        "noeviction",
        true,
        "What to do at maxmemory: Redis's eight policies, or allkeys-tinylfu (W-TinyLFU admission).",
    ),
    opt(
        "maxmemory-samples",
        Kind::Int {
            min: 1,
            max: INT_MAX,
        },
        "5",
        true,
        "Keys sampled per eviction step.",
    ),
    opt(
        "maxmemory-eviction-tenacity",
        Kind::Int { min: 0, max: 100 },
        "10",
        true,
        "How long one command may spend evicting (0..100; 10 is about 500 us).",
    ),
    opt(
        "lfu-log-factor",
        Kind::Int {
            min: 0,
            max: INT_MAX,
        },
        "10",
        true,
        "LFU counter logarithm factor: higher needs more hits to grow the counter.",
    ),
    opt(
        "busy-reply-threshold",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
        "5000",
        true,
        "Milliseconds a script may run before other clients get -BUSY and SCRIPT KILL may stop it (alias lua-time-limit).",
    ),
    opt(
        "lua-lock-all-shards",
        Kind::Bool,
        "no",
        true,
        "ringkv: scripts lock every shard, so they may touch any key; with no, a script locks the shards of its declared KEYS and may touch only keys on those.",
    ),
    opt(
        "lfu-decay-time",
        Kind::Int {
            min: 0,
            max: INT_MAX,
        },
        "1",
        true,
        "Minutes after which an idle key's LFU counter is decremented (0: never).",
    ),
];

/// Looks an option up by name, case-insensitively.
pub fn spec(name: &str) -> Option<&'static OptionSpec> {
    let name = ALIASES
        .iter()
        .find(|(old, _)| old.eq_ignore_ascii_case(name))
        .map_or(name, |(_, new)| new);
    OPTIONS.iter().find(|o| o.name.eq_ignore_ascii_case(name))
}

/// Old option names Redis 7 still accepts.
const ALIASES: &[(&str, &str)] = &[
    ("hash-max-ziplist-entries", "hash-max-listpack-entries"),
    ("hash-max-ziplist-value", "hash-max-listpack-value"),
    ("list-max-ziplist-size", "list-max-listpack-size"),
    ("zset-max-ziplist-entries", "zset-max-listpack-entries"),
    ("zset-max-ziplist-value", "zset-max-listpack-value"),
    ("lua-time-limit", "busy-reply-threshold"),
];

/// Why a value was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigError {
    /// No such option.
    Unknown(String),
    /// The option cannot change at run time.
    Immutable(&'static str),
    /// The value does not parse or is out of range; the text says why, in
    /// Redis's words.
    BadValue(&'static str, String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Unknown(n) => write!(f, "unknown option '{n}'"),
            ConfigError::Immutable(n) => write!(f, "can't set immutable config '{n}'"),
            ConfigError::BadValue(n, why) => write!(f, "bad value for '{n}': {why}"),
        }
    }
}

/// Parses a Redis memory size as `memtoull` does: digits, then an optional
/// case-insensitive unit (`b`, `k`, `kb`, `m`, `mb`, `g`, `gb`).
pub fn parse_memory(s: &str) -> Option<i64> {
    let lower = s.to_ascii_lowercase();
    let units: [(&str, i64); 7] = [
        ("kb", 1024),
        ("mb", 1024 * 1024),
        ("gb", 1024 * 1024 * 1024),
        ("k", 1000),
        ("m", 1000 * 1000),
        ("g", 1000 * 1000 * 1000),
        ("b", 1),
    ];
    let (num, mul) = units
        .iter()
        .find_map(|&(suffix, mul)| lower.strip_suffix(suffix).map(|n| (n, mul)))
        .unwrap_or((lower.as_str(), 1));
    if num.is_empty() || !num.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    num.parse::<i64>().ok()?.checked_mul(mul)
}

/// Validates `value` for `spec` and returns its canonical form. Error texts
/// are Redis's.
pub fn canonical(spec: &'static OptionSpec, value: &str) -> Result<String, ConfigError> {
    let bad = |why: String| ConfigError::BadValue(spec.name, why);
    let range = |n: i64, min: i64, max: i64| {
        if n < min || n > max {
            Err(bad(format!(
                "argument must be between {min} and {max} inclusive"
            )))
        } else {
            Ok(n)
        }
    };
    let int = |v: &str| {
        crate::parse::parse_i64(v.as_bytes())
            .ok_or_else(|| bad("argument couldn't be parsed into an integer".into()))
    };
    match spec.kind {
        Kind::Int { min, max } => Ok(range(int(value)?, min, max)?.to_string()),
        Kind::ClampedInt { min, max, lo, hi } => {
            Ok(range(int(value)?, min, max)?.clamp(lo, hi).to_string())
        }
        Kind::Memory { min, max } => {
            let n =
                parse_memory(value).ok_or_else(|| bad("argument must be a memory value".into()))?;
            Ok(range(n, min, max)?.to_string())
        }
        Kind::Str => Ok(value.to_string()),
        Kind::SavePoints => {
            let nums: Option<Vec<i64>> = value
                .split_whitespace()
                .map(|w| crate::parse::parse_i64(w.as_bytes()).filter(|n| *n >= 0))
                .collect();
            match nums {
                Some(n) if n.len() % 2 == 0 => {
                    Ok(n.iter().map(i64::to_string).collect::<Vec<_>>().join(" "))
                }
                _ => Err(bad("Invalid save parameters".into())),
            }
        }
        Kind::Dir => {
            let p = std::path::Path::new(value);
            let abs = std::env::current_dir()
                .map(|cwd| cwd.join(p))
                .unwrap_or_else(|_| p.to_path_buf());
            match std::fs::canonicalize(&abs) {
                Ok(c) if c.is_dir() => Ok(c.display().to_string()),
                Ok(_) => Err(bad("Not a directory".into())),
                Err(_) => Err(bad("No such file or directory".into())),
            }
        }
        Kind::FileName => {
            if value.contains('/') {
                Err(bad("dbfilename can't be a path, just a filename".into()))
            } else {
                Ok(value.to_string())
            }
        }
        Kind::Bool => match value.to_ascii_lowercase().as_str() {
            v @ ("yes" | "no") => Ok(v.to_string()),
            _ => Err(bad("argument must be 'yes' or 'no'".to_string())),
        },
        Kind::Enum(words) => {
            let v = value.to_ascii_lowercase();
            if words.contains(&v.as_str()) {
                Ok(v)
            } else {
                Err(bad(format!(
                    "argument(s) must be one of the following: {}",
                    words.join(", ")
                )))
            }
        }
    }
}

type LogHook = Box<dyn Fn(&str) + Send + Sync>;
static LOG_HOOK: OnceLock<LogHook> = OnceLock::new();

/// Installs the function that changes the log level at run time (the binary
/// installs one backed by a `tracing` reload handle). It receives a level
/// name as in [`Config::loglevel`].
pub fn set_loglevel_hook(f: impl Fn(&str) + Send + Sync + 'static) {
    let _ = LOG_HOOK.set(Box::new(f));
}

/// Applies the settings that live outside the shards' cached copies after
/// CONFIG SET changed `changed`: today, the log level.
pub fn apply_runtime(config: &Config, changed: &[&str]) {
    if changed.iter().any(|n| n.eq_ignore_ascii_case("loglevel"))
        && let Some(hook) = LOG_HOOK.get()
    {
        hook(config.loglevel());
    }
}

/// The `tracing` filter directive for a Redis log level name.
pub fn tracing_level(loglevel: &str) -> &'static str {
    match loglevel {
        "debug" => "debug",
        "verbose" => "info",
        "warning" => "warn",
        _ => "info",
    }
}

/// The current configuration.
#[derive(Clone, Debug)]
pub struct Config {
    values: BTreeMap<&'static str, String>,
    /// Absolute path of the config file loaded at startup, if any.
    file: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            values: OPTIONS
                .iter()
                .map(|o| (o.name, o.default.to_string()))
                .collect(),
            file: String::new(),
        }
    }
}

impl Config {
    /// Sets an option from its text form (startup or CONFIG SET).
    pub fn set(&mut self, name: &str, value: &str, at_runtime: bool) -> Result<(), ConfigError> {
        let spec = spec(name).ok_or_else(|| ConfigError::Unknown(name.to_string()))?;
        if at_runtime && !spec.mutable {
            return Err(ConfigError::Immutable(spec.name));
        }
        let v = canonical(spec, value)?;
        self.values.insert(spec.name, v);
        Ok(())
    }

    /// The canonical text value of an option.
    pub fn get(&self, name: &str) -> Option<&str> {
        spec(name)
            .and_then(|s| self.values.get(s.name))
            .map(|s| s.as_str())
    }

    /// All options with their values, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.values.iter().map(|(k, v)| (*k, v.as_str()))
    }

    /// An integer option's value (0 if the name is unknown).
    pub fn int(&self, name: &str) -> i64 {
        self.get(name).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// TCP port.
    pub fn port(&self) -> u16 {
        self.int("port") as u16
    }
    /// Listen address.
    pub fn bind(&self) -> &str {
        self.get("bind").unwrap_or("127.0.0.1")
    }
    /// Requested shard count; 0 means one per usable core.
    pub fn shards(&self) -> usize {
        self.int("shards") as usize
    }
    /// Number of databases.
    pub fn databases(&self) -> usize {
        self.int("databases") as usize
    }
    /// The password, if one is required.
    pub fn requirepass(&self) -> Option<&str> {
        self.get("requirepass").filter(|p| !p.is_empty())
    }
    /// proto-max-bulk-len.
    pub fn proto_max_bulk_len(&self) -> i64 {
        self.int("proto-max-bulk-len")
    }
    /// client-query-buffer-limit.
    pub fn query_buffer_limit(&self) -> usize {
        self.int("client-query-buffer-limit") as usize
    }
    /// maxclients.
    pub fn maxclients(&self) -> usize {
        self.int("maxclients") as usize
    }
    /// Background task frequency.
    pub fn hz(&self) -> u64 {
        self.int("hz") as u64
    }
    /// Log file path; empty for standard output.
    pub fn logfile(&self) -> &str {
        self.get("logfile").unwrap_or("")
    }
    /// Absolute path of the config file, empty when none (INFO's
    /// `config_file`).
    pub fn config_file(&self) -> &str {
        &self.file
    }

    /// Save points as (seconds, changes) pairs; empty when disabled.
    pub fn save_points(&self) -> Vec<(u64, u64)> {
        let n: Vec<u64> = self
            .get("save")
            .unwrap_or("")
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        n.chunks_exact(2).map(|p| (p[0], p[1])).collect()
    }

    /// Path of the RDB file: `dir/dbfilename`, `dir` resolved from the
    /// working directory when still relative.
    pub fn rdb_path(&self) -> std::path::PathBuf {
        let dir = std::path::Path::new(self.get("dir").unwrap_or("./"));
        let dir = std::env::current_dir()
            .map(|c| c.join(dir))
            .unwrap_or_else(|_| dir.to_path_buf());
        dir.join(self.get("dbfilename").unwrap_or("dump.rdb"))
    }

    /// Log level name.
    pub fn loglevel(&self) -> &str {
        self.get("loglevel").unwrap_or("notice")
    }

    /// Applies a redis.conf-style file. Errors name the line.
    pub fn load_file_text(&mut self, path: &str, text: &str) -> Result<(), String> {
        self.file = std::fs::canonicalize(path)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| path.to_string());
        let mut saw_save = false;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fail = |msg: String| {
                format!(
                    "*** FATAL CONFIG FILE ERROR ***\nReading the configuration file {path}, at line {}\n>>> '{line}'\n{msg}",
                    i + 1
                )
            };
            let args = crate::parse::split_args(line.as_bytes())
                .ok_or_else(|| fail("Unbalanced quotes in configuration line".into()))?;
            let args: Vec<String> = args
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let name = args[0].to_ascii_lowercase();
            if name == "include" {
                return Err(fail("'include' is not supported".into()));
            }
            if spec(&name).is_none() {
                return Err(fail(format!(
                    "Bad directive or wrong number of arguments: unknown option '{name}'"
                )));
            }
            if args.len() < 2 {
                return Err(fail("wrong number of arguments".into()));
            }
            let mut value = args[1..].join(" ");
            // Several `save` lines add up, as in redis.conf.
            if name == "save" {
                if saw_save && !value.is_empty() {
                    value = format!("{} {value}", self.get("save").unwrap_or(""));
                }
                saw_save = true;
            }
            self.set(&name, &value, false)
                .map_err(|e| fail(e.to_string()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units_like_redis() {
        assert_eq!(parse_memory("1gb"), Some(1 << 30));
        assert_eq!(parse_memory("1k"), Some(1000));
        assert_eq!(parse_memory("12"), Some(12));
        assert_eq!(parse_memory("x"), None);
        assert_eq!(parse_memory("-1"), None);
        assert_eq!(parse_memory("1MB"), Some(1 << 20));
    }

    #[test]
    fn values_checked_like_redis() {
        let mut c = Config::default();
        for bad in ["+5", " 5", "5.0", "1x", ""] {
            assert!(c.set("hz", bad, true).is_err(), "{bad:?}");
        }
        c.set("hz", "1000", true).unwrap();
        assert_eq!(c.hz(), 500);
        c.set("hz", "0", true).unwrap();
        assert_eq!(c.hz(), 1);
        assert_eq!(
            c.set("maxclients", "0", true),
            Err(ConfigError::BadValue(
                "maxclients",
                "argument must be between 1 and 4294967295 inclusive".into()
            ))
        );
        assert_eq!(
            c.set("databases", "4", true),
            Err(ConfigError::Immutable("databases"))
        );
        c.set("LOGLEVEL", "WARNING", true).unwrap();
        assert_eq!(c.loglevel(), "warning");
    }

    #[test]
    fn file_errors_name_the_line() {
        let mut c = Config::default();
        let err = c
            .load_file_text("r.conf", "port 7000\n\nbogus 1\n")
            .unwrap_err();
        assert!(err.contains("line 3") && err.contains("bogus"), "{err}");
        assert_eq!(c.port(), 7000);
    }
}
