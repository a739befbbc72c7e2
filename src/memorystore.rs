//! MemoryStore client: capped, newest-first record logs per key, the Rust
//! counterpart of the Go `MemoryStore` (feature `memorystore-client`).
//!
//! The same API works against two kinds of server, chosen at
//! [`MemoryStore::new`] by `COMMAND INFO MSTORE.WRITE`:
//! - **native** (ringkv): each call is one MSTORE.* command, one round trip;
//!   the server reads the stored configuration itself, so nothing is cached;
//! - **Redis/Valkey**: MULTI/EXEC transactions over the same key layout
//!   (see [`crate::commands::mstore`]), with the configuration cached locally
//!   for [`DEFAULT_CONFIG_CACHE_TTL`] (settable), as the Go original does.
//!
//! Record data is any serde type, encoded as JSON by default ([`Json`]); a
//! store built with [`MemoryStore::with_codec`] uses another [`Codec`].
//!
//! ```no_run
//! use ringkv::memorystore::MemoryStore;
//! use std::time::Duration;
//! let client = redis::Client::open("redis://127.0.0.1:6379/").unwrap();
//! let mut ms = MemoryStore::new(client.get_connection().unwrap(), "myservice").unwrap();
//! ms.create_key("user_actions", Duration::from_secs(600), 100).unwrap();
//! ms.write_record("user_actions", &serde_json::json!({"user_id": 12345, "action": "login"}))
//!     .unwrap();
//! let latest = ms.get_latest_records::<serde_json::Value>("user_actions", 10).unwrap();
//! ```

use crate::commands::mstore::{CFG, F_EXPIRE, F_MAX, LOG, split_record, storage_prefix};
use redis::{ConnectionLike, RedisError, Value, cmd, pipe};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the Redis mode trusts a cached configuration by default.
pub const DEFAULT_CONFIG_CACHE_TTL: Duration = Duration::from_secs(300);

/// One record: the data and the time it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Record<T> {
    /// The stored data.
    pub data: T,
    /// When it was written (millisecond precision).
    pub timestamp: SystemTime,
}

/// MemoryStore errors.
#[derive(Debug)]
pub enum Error {
    /// The key has no configuration (create it with
    /// [`MemoryStore::create_key`] or write with
    /// [`MemoryStore::write_record_with_config`]).
    KeyNotConfigured {
        /// The key that was written.
        key: String,
    },
    /// A bad argument: zero `max_records` or `count`, or an expiry too
    /// large for milliseconds in an `i64`.
    InvalidArgument(&'static str),
    /// The server answered with an error or the connection failed.
    Redis(RedisError),
    /// The codec could not encode or decode the data.
    Codec(BoxError),
    /// A stored element is not a `<timestamp-ms>:<data>` record.
    InvalidRecord,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::KeyNotConfigured { key } => write!(f, "key not configured: {key}"),
            Error::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            Error::Redis(e) => write!(f, "redis: {e}"),
            Error::Codec(e) => write!(f, "codec: {e}"),
            Error::InvalidRecord => write!(f, "stored element is not a MemoryStore record"),
        }
    }
}

impl std::error::Error for Error {}

impl From<RedisError> for Error {
    fn from(e: RedisError) -> Error {
        Error::Redis(e)
    }
}

/// Result of MemoryStore calls.
pub type Result<T> = std::result::Result<T, Error>;

/// A codec's error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How record data is turned into bytes and back.
pub trait Codec {
    /// Encodes `data`.
    fn encode<T: Serialize + ?Sized>(data: &T) -> std::result::Result<Vec<u8>, BoxError>;
    /// Decodes bytes written by [`Codec::encode`].
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> std::result::Result<T, BoxError>;
}

/// The default codec: JSON through `serde_json`.
pub struct Json;

impl Codec for Json {
    fn encode<T: Serialize + ?Sized>(data: &T) -> std::result::Result<Vec<u8>, BoxError> {
        Ok(serde_json::to_vec(data)?)
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> std::result::Result<T, BoxError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// Records as compact binary `bincode` (standard configuration): smaller
/// and faster than JSON, readable only by clients that use this codec.
pub struct Bincode;

impl Codec for Bincode {
    fn encode<T: Serialize + ?Sized>(data: &T) -> std::result::Result<Vec<u8>, BoxError> {
        Ok(bincode::serde::encode_to_vec(
            data,
            bincode::config::standard(),
        )?)
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> std::result::Result<T, BoxError> {
        Ok(bincode::serde::decode_from_slice(bytes, bincode::config::standard())?.0)
    }
}

/// A key's configuration, in the units the commands take.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Config {
    expire_ms: i64,
    max: i64,
}

impl Config {
    fn new(expire: Duration, max_records: u64) -> Result<Config> {
        let expire_ms = i64::try_from(expire.as_millis())
            .map_err(|_| Error::InvalidArgument("expire does not fit in i64 milliseconds"))?;
        let max = i64::try_from(max_records)
            .ok()
            .filter(|&m| m >= 1)
            .ok_or(Error::InvalidArgument("max_records must be at least 1"))?;
        Ok(Config { expire_ms, max })
    }
}

/// Records per namespace and key over a Redis connection, with data encoded
/// by `K`; see the module docs for the two modes.
pub struct MemoryStore<C, K = Json> {
    conn: C,
    namespace: String,
    native: bool,
    cache_ttl: Duration,
    cache: HashMap<String, (Config, Instant)>,
    /// When expired cache entries were last dropped.
    swept: Instant,
    codec: PhantomData<K>,
}

impl<C: ConnectionLike> MemoryStore<C> {
    /// A store for `namespace` over `conn`, with JSON data; asks the server
    /// whether it has the MSTORE commands.
    pub fn new(conn: C, namespace: impl Into<String>) -> Result<MemoryStore<C>> {
        MemoryStore::with_codec(conn, namespace)
    }
}

impl<C: ConnectionLike, K: Codec> MemoryStore<C, K> {
    /// Like [`MemoryStore::new`], with data encoded by `K`.
    pub fn with_codec(mut conn: C, namespace: impl Into<String>) -> Result<MemoryStore<C, K>> {
        let info: Vec<Value> = cmd("COMMAND")
            .arg("INFO")
            .arg("MSTORE.WRITE")
            .query(&mut conn)?;
        let native = info.first().is_some_and(|v| !matches!(v, Value::Nil));
        Ok(MemoryStore {
            conn,
            namespace: namespace.into(),
            native,
            cache_ttl: DEFAULT_CONFIG_CACHE_TTL,
            cache: HashMap::new(),
            swept: Instant::now(),
            codec: PhantomData,
        })
    }

    /// True when the server runs the MSTORE commands itself.
    pub fn is_native(&self) -> bool {
        self.native
    }

    /// Sets how long the Redis mode trusts a cached configuration (default
    /// five minutes); the native mode has no cache.
    pub fn set_config_cache_ttl(&mut self, ttl: Duration) {
        self.cache_ttl = ttl;
        self.cache.clear();
    }

    /// The storage key of `key` with `suffix` (`log` or `cfg`).
    fn storage_key(&self, key: &str, suffix: &[u8]) -> Vec<u8> {
        let mut k = Vec::new();
        storage_prefix(self.namespace.as_bytes(), key.as_bytes(), &mut k);
        k.extend_from_slice(suffix);
        k
    }

    /// A native command `MSTORE.<name> ns key ...`.
    fn native_cmd(&self, name: &str, key: &str) -> redis::Cmd {
        let mut c = cmd(name);
        c.arg(&self.namespace).arg(key);
        c
    }

    /// Creates or replaces the configuration of `key`: records expire
    /// `expire` after the last write (never when zero), and only the newest
    /// `max_records` are kept. The configuration itself does not expire.
    pub fn create_key(&mut self, key: &str, expire: Duration, max_records: u64) -> Result<()> {
        let c = Config::new(expire, max_records)?;
        if self.native {
            let mut q = self.native_cmd("MSTORE.CREATE", key);
            q.arg(c.expire_ms).arg(c.max);
            let () = q.query(&mut self.conn)?;
        } else {
            let cfg = self.storage_key(key, CFG);
            let () = pipe()
                .atomic()
                .del(&cfg)
                .ignore()
                .hset_multiple(&cfg, &[(F_EXPIRE, c.expire_ms), (F_MAX, c.max)])
                .ignore()
                .query(&mut self.conn)?;
            self.cache.insert(key.to_string(), (c, Instant::now()));
        }
        Ok(())
    }

    /// Removes the configuration of `key` (its records stay until they
    /// expire); returns 1 if there was one, else 0.
    pub fn delete_key(&mut self, key: &str) -> Result<i64> {
        self.cache.remove(key);
        if self.native {
            return Ok(self.native_cmd("MSTORE.DROP", key).query(&mut self.conn)?);
        }
        let cfg = self.storage_key(key, CFG);
        Ok(cmd("DEL").arg(&cfg).query(&mut self.conn)?)
    }

    /// Prepends a record to a configured key, trims it to its cap and renews
    /// its expiry; returns the number of records. Fails with
    /// [`Error::KeyNotConfigured`] when `key` has no configuration.
    pub fn write_record<T: Serialize + ?Sized>(&mut self, key: &str, data: &T) -> Result<u64> {
        let bytes = K::encode(data).map_err(Error::Codec)?;
        if self.native {
            let mut q = self.native_cmd("MSTORE.WRITE", key);
            q.arg(&bytes);
            return match q.query(&mut self.conn) {
                Err(e) if e.code() == Some("NOTCONFIGURED") => Err(Error::KeyNotConfigured {
                    key: key.to_string(),
                }),
                r => Ok(r?),
            };
        }
        let c = self.cached_config(key)?;
        self.append(key, &bytes, c)
    }

    /// Like [`MemoryStore::write_record`], with a configuration for this
    /// call only: the stored configuration is neither needed nor changed.
    pub fn write_record_with_config<T: Serialize + ?Sized>(
        &mut self,
        key: &str,
        data: &T,
        expire: Duration,
        max_records: u64,
    ) -> Result<u64> {
        let c = Config::new(expire, max_records)?;
        let bytes = K::encode(data).map_err(Error::Codec)?;
        if self.native {
            let mut q = self.native_cmd("MSTORE.WRITEWITH", key);
            q.arg(&bytes).arg(c.expire_ms).arg(c.max);
            return Ok(q.query(&mut self.conn)?);
        }
        self.append(key, &bytes, c)
    }

    /// The configuration of `key` from the cache, or from the server (then
    /// cached).
    fn cached_config(&mut self, key: &str) -> Result<Config> {
        if let Some((c, at)) = self.cache.get(key)
            && at.elapsed() < self.cache_ttl
        {
            return Ok(*c);
        }
        // Drop expired entries at most once per TTL.
        let ttl = self.cache_ttl;
        if self.swept.elapsed() >= ttl {
            self.cache.retain(|_, (_, at)| at.elapsed() < ttl);
            self.swept = Instant::now();
        }
        let cfg = self.storage_key(key, CFG);
        let (expire, max): (Option<i64>, Option<i64>) = cmd("HMGET")
            .arg(&cfg)
            .arg(F_EXPIRE)
            .arg(F_MAX)
            .query(&mut self.conn)?;
        let (Some(expire_ms), Some(max)) = (expire, max) else {
            return Err(Error::KeyNotConfigured {
                key: key.to_string(),
            });
        };
        let c = Config { expire_ms, max };
        self.cache.insert(key.to_string(), (c, Instant::now()));
        Ok(c)
    }

    /// The Redis mode's write: LPUSH, LTRIM and PEXPIRE (PERSIST without
    /// expiry) in one MULTI/EXEC.
    fn append(&mut self, key: &str, data: &[u8], c: Config) -> Result<u64> {
        let log = self.storage_key(key, LOG);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let mut rec = itoa::Buffer::new().format(now).as_bytes().to_vec();
        rec.push(b':');
        rec.extend_from_slice(data);
        let mut p = pipe();
        p.atomic()
            .lpush(&log, rec)
            .ltrim(&log, 0, (c.max - 1) as isize)
            .ignore();
        if c.expire_ms > 0 {
            p.pexpire(&log, c.expire_ms).ignore();
        } else {
            p.persist(&log).ignore();
        }
        let (pushed,): (u64,) = p.query(&mut self.conn)?;
        Ok(pushed.min(c.max as u64))
    }

    /// The newest `count` records of `key`, newest first.
    pub fn get_latest_records<T: DeserializeOwned>(
        &mut self,
        key: &str,
        count: u64,
    ) -> Result<Vec<Record<T>>> {
        if count == 0 {
            return Err(Error::InvalidArgument("count must be at least 1"));
        }
        if self.native {
            let mut q = self.native_cmd("MSTORE.LATEST", key);
            q.arg(count).arg("WITHTIMESTAMPS");
            let flat: Vec<Value> = q.query(&mut self.conn)?;
            return flat
                .chunks_exact(2)
                .map(|p| match p {
                    [Value::BulkString(data), Value::Int(ts)] => record::<K, T>(*ts, data),
                    _ => Err(Error::InvalidRecord),
                })
                .collect();
        }
        let log = self.storage_key(key, LOG);
        let stop = isize::try_from(count - 1).unwrap_or(isize::MAX);
        let raw: Vec<Vec<u8>> = cmd("LRANGE")
            .arg(&log)
            .arg(0)
            .arg(stop)
            .query(&mut self.conn)?;
        raw.iter()
            .map(|r| {
                let (ts, data) = split_record(r).ok_or(Error::InvalidRecord)?;
                record::<K, T>(ts, data)
            })
            .collect()
    }

    /// The number of records of `key`.
    pub fn get_record_count(&mut self, key: &str) -> Result<u64> {
        if self.native {
            return Ok(self.native_cmd("MSTORE.COUNT", key).query(&mut self.conn)?);
        }
        let log = self.storage_key(key, LOG);
        Ok(cmd("LLEN").arg(&log).query(&mut self.conn)?)
    }

    /// Deletes the records and the configuration of `key`; returns how many
    /// records were removed.
    pub fn delete_records(&mut self, key: &str) -> Result<u64> {
        self.cache.remove(key);
        if self.native {
            return Ok(self.native_cmd("MSTORE.DEL", key).query(&mut self.conn)?);
        }
        let (log, cfg) = (self.storage_key(key, LOG), self.storage_key(key, CFG));
        let (n,): (u64,) = pipe()
            .atomic()
            .llen(&log)
            .del(&[&log, &cfg])
            .ignore()
            .query(&mut self.conn)?;
        Ok(n)
    }
}

/// A decoded record.
fn record<K: Codec, T: DeserializeOwned>(ts: i64, data: &[u8]) -> Result<Record<T>> {
    Ok(Record {
        data: K::decode(data).map_err(Error::Codec)?,
        timestamp: UNIX_EPOCH + Duration::from_millis(ts.max(0) as u64),
    })
}
