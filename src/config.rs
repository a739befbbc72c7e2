//! Server configuration: one table of options shared by the command line, the
//! redis.conf-style config file, and CONFIG GET/SET.
//!
//! Every option has a [`OptionSpec`] in [`OPTIONS`]; values are kept in their
//! canonical text form (as CONFIG GET prints them) and parsed by typed getters.

use std::collections::BTreeMap;
use std::fmt;

/// The type and range of an option's value.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// An integer in `[min, max]`.
    Int { min: i64, max: i64 },
    /// A byte size (`1gb`, `100mb`, `512`), printed in bytes.
    Memory,
    /// `yes` or `no`.
    Bool,
    /// Free text.
    Str,
    /// One of a fixed set of words.
    Enum(&'static [&'static str]),
}

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
}

const fn opt(name: &'static str, kind: Kind, default: &'static str, mutable: bool) -> OptionSpec {
    OptionSpec {
        name,
        kind,
        default,
        mutable,
    }
}

const INT_MAX: i64 = i32::MAX as i64;

/// Every option ringkv understands.
pub static OPTIONS: &[OptionSpec] = &[
    opt("port", Kind::Int { min: 0, max: 65535 }, "6379", false),
    opt("bind", Kind::Str, "127.0.0.1", false),
    opt("shards", Kind::Int { min: 0, max: 1024 }, "0", false),
    opt(
        "databases",
        Kind::Int {
            min: 1,
            max: INT_MAX,
        },
        "16",
        false,
    ),
    opt("requirepass", Kind::Str, "", true),
    opt(
        "loglevel",
        Kind::Enum(&["debug", "verbose", "notice", "warning"]),
        "notice",
        true,
    ),
    opt("logfile", Kind::Str, "", false),
    opt("proto-max-bulk-len", Kind::Memory, "536870912", true),
    opt(
        "client-query-buffer-limit",
        Kind::Memory,
        "1073741824",
        true,
    ),
    opt(
        "maxclients",
        Kind::Int {
            min: 1,
            max: INT_MAX,
        },
        "10000",
        true,
    ),
    opt(
        "tcp-keepalive",
        Kind::Int {
            min: 0,
            max: INT_MAX,
        },
        "300",
        true,
    ),
    opt("hz", Kind::Int { min: 1, max: 500 }, "10", true),
];

/// Looks an option up by name, case-insensitively.
pub fn spec(name: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|o| o.name.eq_ignore_ascii_case(name))
}

/// Why a value was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigError {
    /// No such option.
    Unknown(String),
    /// The option cannot change at run time.
    Immutable(&'static str),
    /// The value does not parse or is out of range; the text says why.
    BadValue(&'static str, String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Unknown(n) => write!(f, "unknown option '{n}'"),
            ConfigError::Immutable(n) => write!(f, "option '{n}' can't be changed at run time"),
            ConfigError::BadValue(n, why) => write!(f, "bad value for '{n}': {why}"),
        }
    }
}

/// Parses a Redis memory size: `1gb`, `10mb`, `5k`, `1024`.
pub fn parse_memory(s: &str) -> Option<i64> {
    let lower = s.to_ascii_lowercase();
    let units: [(&str, i64); 8] = [
        ("kb", 1024),
        ("mb", 1024 * 1024),
        ("gb", 1024 * 1024 * 1024),
        ("k", 1000),
        ("m", 1000 * 1000),
        ("g", 1000 * 1000 * 1000),
        ("b", 1),
        ("", 1),
    ];
    for (suffix, mul) in units {
        if let Some(num) = lower.strip_suffix(suffix) {
            if num.is_empty() || !num.bytes().all(|c| c.is_ascii_digit() || c == b'-') {
                continue;
            }
            return num.parse::<i64>().ok()?.checked_mul(mul);
        }
    }
    None
}

/// Validates `value` for `spec` and returns its canonical form.
pub fn canonical(spec: &'static OptionSpec, value: &str) -> Result<String, ConfigError> {
    let bad = |why: &str| ConfigError::BadValue(spec.name, why.to_string());
    match spec.kind {
        Kind::Int { min, max } => {
            let n: i64 = value
                .parse()
                .map_err(|_| bad("argument couldn't be parsed into an integer"))?;
            if n < min || n > max {
                return Err(bad(&format!(
                    "argument must be between {min} and {max} inclusive"
                )));
            }
            Ok(n.to_string())
        }
        Kind::Memory => {
            let n = parse_memory(value).ok_or_else(|| bad("argument must be a memory value"))?;
            if n < 0 {
                return Err(bad("argument must be a memory value"));
            }
            Ok(n.to_string())
        }
        Kind::Bool => match value.to_ascii_lowercase().as_str() {
            "yes" => Ok("yes".into()),
            "no" => Ok("no".into()),
            _ => Err(bad("argument must be 'yes' or 'no'")),
        },
        Kind::Str => Ok(value.to_string()),
        Kind::Enum(words) => {
            let v = value.to_ascii_lowercase();
            if words.contains(&v.as_str()) {
                Ok(v)
            } else {
                Err(bad(&format!(
                    "argument(s) must be one of the following: {}",
                    words.join(", ")
                )))
            }
        }
    }
}

/// The current configuration.
#[derive(Clone, Debug)]
pub struct Config {
    values: BTreeMap<&'static str, String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            values: OPTIONS
                .iter()
                .map(|o| (o.name, o.default.to_string()))
                .collect(),
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

    fn int(&self, name: &str) -> i64 {
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
    /// TCP keepalive interval in seconds (0 = off).
    pub fn tcp_keepalive(&self) -> u64 {
        self.int("tcp-keepalive") as u64
    }
    /// Background task frequency.
    pub fn hz(&self) -> u64 {
        self.int("hz") as u64
    }
    /// Log file path; empty for standard output.
    pub fn logfile(&self) -> &str {
        self.get("logfile").unwrap_or("")
    }
    /// Log level name.
    pub fn loglevel(&self) -> &str {
        self.get("loglevel").unwrap_or("notice")
    }

    /// Applies a redis.conf-style file. Errors name the line.
    pub fn load_file_text(&mut self, path: &str, text: &str) -> Result<(), String> {
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
            let args = crate::server::resp::split_args(line.as_bytes())
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
            self.set(&name, &args[1..].join(" "), false)
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
