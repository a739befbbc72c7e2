//! Connection commands: PING, ECHO, QUIT, SELECT, HELLO, AUTH, CLIENT.

use super::{CommandSpec, Handler, NO_KEYS, err, flags::*};
use crate::server::client::Client;
use crate::server::resp::{OK, Reply};
use bytes::Bytes;

/// The connection family's commands.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec::new(
        "ping",
        -1,
        FAST,
        NO_KEYS,
        "connection",
        "1.0.0",
        "Returns the server's liveliness response.",
        Handler::Local(ping),
    ),
    CommandSpec::new(
        "echo",
        2,
        FAST,
        NO_KEYS,
        "connection",
        "1.0.0",
        "Returns the given string.",
        Handler::Local(echo),
    ),
    CommandSpec::new(
        "quit",
        -1,
        ALLOW_BUSY | NO_AUTH | NOSCRIPT | LOADING | STALE | FAST,
        NO_KEYS,
        "connection",
        "1.0.0",
        "Closes the connection.",
        Handler::Local(quit),
    ),
    CommandSpec::new(
        "select",
        2,
        LOADING | STALE | FAST,
        NO_KEYS,
        "connection",
        "1.0.0",
        "Changes the selected database.",
        Handler::Local(select),
    ),
    CommandSpec::new(
        "hello",
        -1,
        NOSCRIPT | LOADING | STALE | FAST | NO_AUTH | ALLOW_BUSY,
        NO_KEYS,
        "connection",
        "6.0.0",
        "Handshakes with the Redis server.",
        Handler::Local(hello),
    ),
];

/// The Redis version ringkv is compatible with, reported by HELLO and INFO.
pub const REDIS_VERSION: &str = "7.0.15";

fn hello(c: &mut Client, args: &[Bytes]) -> Reply {
    if args.len() >= 2 {
        match super::arg_i64(&args[1]) {
            Ok(2) => c.resp3 = false,
            Ok(3) => c.resp3 = true,
            Ok(_) => return Reply::StaticError("NOPROTO unsupported protocol version"),
            Err(_) => {
                return Reply::StaticError(
                    "ERR Protocol version is not an integer or out of range",
                );
            }
        }
    }
    c.info.borrow_mut().resp = if c.resp3 { 3 } else { 2 };
    let s = |v: &str| Reply::bulk(v.as_bytes());
    Reply::Map(vec![
        (s("server"), s("redis")),
        (s("version"), s(REDIS_VERSION)),
        (s("proto"), Reply::Int(if c.resp3 { 3 } else { 2 })),
        (s("id"), Reply::Int(c.id as i64)),
        (s("mode"), s("standalone")),
        (s("role"), s("master")),
        (s("modules"), Reply::Array(vec![])),
    ])
}

fn ping(_c: &mut Client, args: &[Bytes]) -> Reply {
    match args.len() {
        1 => Reply::Simple("PONG"),
        2 => Reply::Bulk(args[1].clone()),
        _ => err::arity("ping"),
    }
}

fn echo(_c: &mut Client, args: &[Bytes]) -> Reply {
    Reply::Bulk(args[1].clone())
}

fn quit(c: &mut Client, _args: &[Bytes]) -> Reply {
    c.close_after_reply = true;
    OK
}

fn select(c: &mut Client, args: &[Bytes]) -> Reply {
    let Ok(n) = super::arg_i64(&args[1]) else {
        return err::NOT_INT;
    };
    let dbs = crate::shard::with_shard(|s| s.dbs.len());
    if n < 0 || n as usize >= dbs {
        return err::DB_RANGE;
    }
    c.db = n as usize;
    c.info.borrow_mut().db = c.db;
    OK
}
