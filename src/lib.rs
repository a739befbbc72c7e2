//! ringkv: a Redis-compatible in-memory data store, thread-per-core and
//! shared-nothing on io_uring.
//!
//! The engine is a library so it can be embedded in-process:
//!
//! ```no_run
//! let mut config = ringkv::config::Config::default();
//! config.set("port", "0", false).unwrap();
//! let server = ringkv::server::Server::start(config).unwrap();
//! println!("listening on {}", server.port());
//! server.shutdown();
//! ```
//!
//! Layout: [`server`] holds the listener, connections and the RESP codec;
//! [`shard`] the per-core data (dict, expiry, locks); [`commands`] one file per
//! command family; [`config`] the option table.

/// The Redis version ringkv answers as (INFO, HELLO, RDB files).
pub const REDIS_VERSION: &str = "7.0.15";

pub mod alloc;
pub mod commands;
pub mod config;
pub mod glob;
#[cfg(feature = "memorystore-client")]
pub mod memorystore;
pub mod parse;
pub mod persistence;
pub mod reply;
pub mod scripting;
pub mod server;
pub mod shard;
pub mod transaction;
pub mod types;
