//! Connection commands: PING, ECHO, QUIT, SELECT, HELLO, AUTH, RESET and the
//! CLIENT container (ID, SETNAME, GETNAME, LIST, INFO, KILL, SETINFO, REPLY,
//! NO-EVICT, NO-TOUCH, HELP).
//!
//! Semantics and error texts follow Redis 7.0. CLIENT SETINFO, CLIENT
//! NO-TOUCH and the MAXAGE filter of CLIENT KILL come from later Redis
//! versions (7.2 / 7.4) and follow those.
//!
//! CLIENT LIST and CLIENT KILL see every client: each shard keeps a registry
//! of the connections it accepted, and these commands visit every shard.

use super::{CommandSpec, Handler, NO_KEYS, err, flags::*, is};
use crate::reply::{OK, Reply};
use crate::shard::clients::ClientInfo;
use crate::shard::{run_on_all, with_shard};
use crate::transaction::{Client, ReplyMode};
use bytes::Bytes;
use futures::future::LocalBoxFuture;
use std::time::Instant;

const CONN: &[&str] = &["connection"];

/// The connection family's commands.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec::new(
        "ping",
        -1,
        FAST,
        NO_KEYS,
        "connection",
        "1.0.0",
        "Ping the server",
        Handler::Local(ping),
    )
    .acl(CONN),
    CommandSpec::new(
        "echo",
        2,
        LOADING | STALE | FAST,
        NO_KEYS,
        "connection",
        "1.0.0",
        "Echo the given string",
        Handler::Local(echo),
    )
    .acl(CONN),
    CommandSpec::new(
        "quit",
        -1,
        ALLOW_BUSY | NO_AUTH | NOSCRIPT | LOADING | STALE | FAST,
        NO_KEYS,
        "connection",
        "1.0.0",
        "Close the connection",
        Handler::Local(quit),
    )
    .acl(CONN),
    CommandSpec::new(
        "select",
        2,
        LOADING | STALE | FAST,
        NO_KEYS,
        "connection",
        "1.0.0",
        "Change the selected database for the current connection",
        Handler::Local(select),
    )
    .acl(CONN),
    CommandSpec::new(
        "hello",
        -1,
        NOSCRIPT | LOADING | STALE | FAST | NO_AUTH | ALLOW_BUSY,
        NO_KEYS,
        "connection",
        "6.0.0",
        "Handshake with Redis",
        Handler::Local(hello),
    )
    .acl(CONN),
    CommandSpec::new(
        "auth",
        -2,
        NOSCRIPT | LOADING | STALE | FAST | NO_AUTH | ALLOW_BUSY,
        NO_KEYS,
        "connection",
        "1.0.0",
        "Authenticate to the server",
        Handler::Local(auth),
    )
    .acl(CONN),
    CommandSpec::new(
        "reset",
        1,
        NOSCRIPT | LOADING | STALE | FAST | NO_AUTH | ALLOW_BUSY,
        NO_KEYS,
        "connection",
        "6.2.0",
        "Reset the connection",
        Handler::Local(reset),
    )
    .acl(CONN),
    CommandSpec::new(
        "client",
        -2,
        0,
        NO_KEYS,
        "connection",
        "2.4.0",
        "A container for client connection commands",
        Handler::Container(None),
    )
    .subs(CLIENT_SUBCOMMANDS),
];

/// CLIENT's subcommands, with Redis's arity and flags.
static CLIENT_SUBCOMMANDS: &[CommandSpec] = &[
    CommandSpec::new(
        "id",
        2,
        NOSCRIPT | LOADING | STALE,
        NO_KEYS,
        "connection",
        "5.0.0",
        "Returns the client ID for the current connection",
        Handler::Local(client_id),
    )
    .acl(CONN),
    CommandSpec::new(
        "setname",
        3,
        NOSCRIPT | LOADING | STALE,
        NO_KEYS,
        "connection",
        "2.6.9",
        "Set the current connection name",
        Handler::Local(client_setname),
    )
    .acl(CONN),
    CommandSpec::new(
        "getname",
        2,
        NOSCRIPT | LOADING | STALE,
        NO_KEYS,
        "connection",
        "2.6.9",
        "Get the current connection name",
        Handler::Local(client_getname),
    )
    .acl(CONN),
    CommandSpec::new(
        "list",
        -2,
        ADMIN | NOSCRIPT | LOADING | STALE,
        NO_KEYS,
        "connection",
        "2.4.0",
        "Get the list of client connections",
        Handler::Async(client_list),
    )
    .acl(CONN),
    CommandSpec::new(
        "info",
        2,
        NOSCRIPT | LOADING | STALE,
        NO_KEYS,
        "connection",
        "6.2.0",
        "Returns information about the current client connection.",
        Handler::Local(client_info),
    )
    .acl(CONN),
    CommandSpec::new(
        "kill",
        -3,
        ADMIN | NOSCRIPT | LOADING | STALE,
        NO_KEYS,
        "connection",
        "2.4.0",
        "Kill the connection of a client",
        Handler::Async(client_kill),
    )
    .acl(CONN),
    CommandSpec::new(
        "setinfo",
        4,
        NOSCRIPT | LOADING | STALE,
        NO_KEYS,
        "connection",
        "7.2.0",
        "Set client or connection specific info",
        Handler::Local(client_setinfo),
    )
    .acl(CONN),
    CommandSpec::new(
        "reply",
        3,
        NOSCRIPT | LOADING | STALE,
        NO_KEYS,
        "connection",
        "3.2.0",
        "Instruct the server whether to reply to commands",
        Handler::Local(client_reply),
    )
    .acl(CONN),
    CommandSpec::new(
        "no-evict",
        3,
        ADMIN | NOSCRIPT | LOADING | STALE,
        NO_KEYS,
        "connection",
        "7.0.0",
        "Set client eviction mode for the current connection",
        Handler::Local(client_no_evict),
    )
    .acl(CONN),
    CommandSpec::new(
        "unblock",
        -3,
        ADMIN | NOSCRIPT | LOADING | STALE,
        NO_KEYS,
        "connection",
        "5.0.0",
        "Unblocks a client blocked by a blocking command from a different connection.",
        Handler::Async(client_unblock),
    )
    .acl(CONN),
    CommandSpec::new(
        "no-touch",
        3,
        NOSCRIPT | LOADING | STALE,
        NO_KEYS,
        "connection",
        "7.2.0",
        "Controls whether commands sent by the client will alter the LRU/LFU of the keys they access.",
        Handler::Local(client_no_touch),
    )
    .acl(CONN),
    CommandSpec::new(
        "help",
        2,
        LOADING | STALE,
        NO_KEYS,
        "connection",
        "5.0.0",
        "Show helpful text about the different subcommands",
        Handler::Local(client_help),
    )
    .acl(CONN),
];

const WRONGPASS: Reply =
    Reply::StaticError("WRONGPASS invalid username-password pair or user is disabled.");
const NO_SUCH_CLIENT: Reply = Reply::StaticError("ERR No such client");
const BAD_NAME: Reply =
    Reply::StaticError("ERR Client names cannot contain spaces, newlines or special characters.");

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
    let n = match super::arg_i64(&args[1]) {
        Ok(n) => n,
        Err(e) => return e,
    };
    // Redis reads the index as a C int.
    if n < i32::MIN as i64 || n > i32::MAX as i64 {
        return Reply::StaticError(
            "ERR value is out of range, value must between -2147483648 and 2147483647",
        );
    }
    let dbs = with_shard(|s| s.dbs.len());
    if n < 0 || n as usize >= dbs {
        return err::DB_RANGE;
    }
    c.db = n as usize;
    c.info.borrow_mut().db = c.db;
    OK
}

/// Compares without an early exit, so timing does not leak the password.
fn secure_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks a username/password pair. The only user is `default`; without a
/// configured password it takes any password (Redis's `nopass`).
fn credentials_ok(user: &[u8], pass: &[u8]) -> bool {
    if user != b"default" {
        return false;
    }
    with_shard(|s| match s.config.requirepass() {
        None => true,
        Some(p) => secure_eq(p.as_bytes(), pass),
    })
}

/// True when new connections start authenticated (no password set).
fn default_authenticated() -> bool {
    with_shard(|s| s.config.requirepass().is_none())
}

fn auth(c: &mut Client, args: &[Bytes]) -> Reply {
    if args.len() > 3 {
        return err::SYNTAX;
    }
    let (user, pass): (&[u8], &[u8]) = if args.len() == 2 {
        if default_authenticated() {
            return Reply::StaticError(
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            );
        }
        (b"default", &args[1])
    } else {
        (&args[1], &args[2])
    };
    // A failed attempt keeps whatever state the connection had.
    if credentials_ok(user, pass) {
        c.authenticated = true;
        OK
    } else {
        WRONGPASS
    }
}

fn hello(c: &mut Client, args: &[Bytes]) -> Reply {
    let mut ver = 0;
    if args.len() >= 2 {
        match super::arg_i64(&args[1]) {
            Ok(v @ 2..=3) => ver = v,
            Ok(_) => return Reply::StaticError("NOPROTO unsupported protocol version"),
            Err(_) => {
                return Reply::StaticError(
                    "ERR Protocol version is not an integer or out of range",
                );
            }
        }
    }
    let mut creds = None;
    let mut name = None;
    let mut j = 2;
    while j < args.len() {
        let more = args.len() - 1 - j;
        if is(&args[j], "auth") && more >= 2 {
            creds = Some((&args[j + 1], &args[j + 2]));
            j += 3;
        } else if is(&args[j], "setname") && more >= 1 {
            name = Some(&args[j + 1]);
            j += 2;
        } else {
            return Reply::Error(format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(&args[j])
            ));
        }
    }
    if let Some((user, pass)) = creds {
        if !credentials_ok(user, pass) {
            return WRONGPASS;
        }
        c.authenticated = true;
    }
    if !c.authenticated {
        return Reply::StaticError(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        );
    }
    if let Some(name) = name
        && let Err(e) = set_name(c, name)
    {
        return e;
    }
    if ver != 0 {
        c.resp3 = ver == 3;
        c.info.borrow_mut().resp = ver as u8;
    }
    let s = |v: &str| Reply::bulk(v.as_bytes());
    Reply::Map(vec![
        (s("server"), s("redis")),
        (s("version"), s(crate::REDIS_VERSION)),
        (s("proto"), Reply::Int(if c.resp3 { 3 } else { 2 })),
        (s("id"), Reply::Int(c.id as i64)),
        (s("mode"), s("standalone")),
        (s("role"), s("master")),
        (s("modules"), Reply::Array(vec![])),
    ])
}

/// RESET: back to the state of a new connection. As in Redis 7.0 the
/// NO-EVICT flag survives; NO-TOUCH is cleared as Redis 7.2 does.
fn reset(c: &mut Client, _args: &[Bytes]) -> Reply {
    c.multi = None;
    c.watching = Default::default();
    c.info.borrow_mut().multi = -1;
    c.db = 0;
    c.resp3 = false;
    c.authenticated = default_authenticated();
    // REPLY OFF is lifted before the reply is added, so RESET answers; a
    // pending SKIP still swallows it.
    if c.reply_mode == ReplyMode::Off {
        c.suppress_reply = false;
    }
    c.reply_mode = ReplyMode::On;
    let mut info = c.info.borrow_mut();
    info.db = 0;
    info.resp = 2;
    info.name.clear();
    info.no_touch = false;
    Reply::Simple("RESET")
}

/// True if every byte is printable ASCII other than space, as Redis requires
/// of client names and library attributes.
fn valid_attr(v: &[u8]) -> bool {
    v.iter().all(|&b| (b'!'..=b'~').contains(&b))
}

/// CLIENT SETNAME / HELLO SETNAME: an empty name removes the name.
fn set_name(c: &mut Client, name: &[u8]) -> Result<(), Reply> {
    if !valid_attr(name) {
        return Err(BAD_NAME);
    }
    let mut info = c.info.borrow_mut();
    info.name.clear();
    // Valid names are ASCII.
    info.name
        .push_str(std::str::from_utf8(name).unwrap_or_default());
    Ok(())
}

fn client_id(c: &mut Client, _args: &[Bytes]) -> Reply {
    Reply::Int(c.id as i64)
}

fn client_setname(c: &mut Client, args: &[Bytes]) -> Reply {
    match set_name(c, &args[2]) {
        Ok(()) => OK,
        Err(e) => e,
    }
}

fn client_getname(c: &mut Client, _args: &[Bytes]) -> Reply {
    let info = c.info.borrow();
    if info.name.is_empty() {
        Reply::Nil
    } else {
        Reply::bulk(info.name.as_bytes())
    }
}

fn client_info(c: &mut Client, _args: &[Bytes]) -> Reply {
    let mut line = c.info.borrow().list_line();
    line.push('\n');
    Reply::Verbatim(line)
}

fn client_setinfo(c: &mut Client, args: &[Bytes]) -> Reply {
    let attr = &args[2];
    let lib_name = if is(attr, "lib-name") {
        true
    } else if is(attr, "lib-ver") {
        false
    } else {
        return Reply::Error(format!(
            "ERR Unrecognized option '{}'",
            String::from_utf8_lossy(attr)
        ));
    };
    if !valid_attr(&args[3]) {
        return Reply::Error(format!(
            "ERR {} cannot contain spaces, newlines or special characters.",
            String::from_utf8_lossy(attr)
        ));
    }
    let value = std::str::from_utf8(&args[3]).unwrap_or_default();
    let mut info = c.info.borrow_mut();
    let dest = if lib_name {
        &mut info.lib_name
    } else {
        &mut info.lib_ver
    };
    dest.clear();
    dest.push_str(value);
    OK
}

/// CLIENT REPLY. OFF and SKIP send no reply of their own; the dispatcher
/// drops the returned value because `suppress_reply` is set.
fn client_reply(c: &mut Client, args: &[Bytes]) -> Reply {
    let mode = &args[2];
    if is(mode, "on") {
        // Also answers when this very command was being skipped or muted.
        c.reply_mode = ReplyMode::On;
        c.suppress_reply = false;
        OK
    } else if is(mode, "off") {
        c.reply_mode = ReplyMode::Off;
        c.suppress_reply = true;
        OK
    } else if is(mode, "skip") {
        if c.reply_mode != ReplyMode::Off {
            c.reply_mode = ReplyMode::Skip;
        }
        c.suppress_reply = true;
        OK
    } else {
        err::SYNTAX
    }
}

/// Parses `ON` / `OFF`.
fn on_off(arg: &[u8]) -> Option<bool> {
    if is(arg, "on") {
        Some(true)
    } else if is(arg, "off") {
        Some(false)
    } else {
        None
    }
}

fn client_no_evict(c: &mut Client, args: &[Bytes]) -> Reply {
    match on_off(&args[2]) {
        Some(v) => {
            c.info.borrow_mut().no_evict = v;
            OK
        }
        None => err::SYNTAX,
    }
}

/// CLIENT UNBLOCK id [TIMEOUT|ERROR]: ends another client's blocking wait.
fn client_unblock(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let Ok(id) = super::arg_i64(&args[2]) else {
            return err::NOT_INT;
        };
        let with_error = match args.get(3) {
            None => false,
            Some(a) if super::is(a, "timeout") => false,
            Some(a) if super::is(a, "error") => true,
            Some(_) => {
                return Reply::StaticError("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR");
            }
        };
        let done = crate::shard::run_on_all(c.global, move |s| {
            s.clients
                .get(&(id as u64))
                .and_then(|info| info.borrow().blocked.clone())
                .is_some_and(|w| crate::shard::blocking::unblock(&w, with_error))
        })
        .await;
        Reply::Int(done.into_iter().any(|d| d) as i64)
    })
}

fn client_no_touch(c: &mut Client, args: &[Bytes]) -> Reply {
    match on_off(&args[2]) {
        Some(v) => {
            c.info.borrow_mut().no_touch = v;
            OK
        }
        None => err::SYNTAX,
    }
}

/// CLIENT HELP, worded as Redis 7.0 words it.
const CLIENT_HELP: &[&str] = &[
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CACHING (YES|NO)",
    "    Enable/disable tracking of the keys for next command in OPTIN/OPTOUT modes.",
    "GETREDIR",
    "    Return the client ID we are redirecting to when tracking is enabled.",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are:",
    "    * ADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made from the specified address",
    "    * LADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made to specified local address",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Kill connections by type.",
    "    * USER <username>",
    "      Kill connections authenticated by <username>.",
    "    * SKIPME (YES|NO)",
    "      Skip killing current connection (default: yes).",
    "LIST [options ...]",
    "    Return information about client connections. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Return clients of specified type.",
    "UNPAUSE",
    "    Stop the current client pause, resuming traffic.",
    "PAUSE <timeout> [WRITE|ALL]",
    "    Suspend all, or just write, clients for <timeout> milliseconds.",
    "REPLY (ON|OFF|SKIP)",
    "    Control the replies sent to the current connection.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "UNBLOCK <clientid> [TIMEOUT|ERROR]",
    "    Unblock the specified blocked client.",
    "TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> [...]]",
    "         [OPTIN] [OPTOUT] [NOLOOP]",
    "    Control server assisted client side caching.",
    "TRACKINGINFO",
    "    Report tracking status for the current connection.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction.",
    "HELP",
    "    Prints this help.",
];

fn client_help(_c: &mut Client, _args: &[Bytes]) -> Reply {
    Reply::Array(CLIENT_HELP.iter().map(|l| Reply::Simple(l)).collect())
}

/// The client types of CLIENT LIST TYPE / CLIENT KILL TYPE.
#[derive(Clone, Copy, PartialEq, Debug)]
enum ClientType {
    Normal,
    Replica,
    Pubsub,
    Master,
}

impl ClientType {
    fn parse(name: &[u8]) -> Result<ClientType, Reply> {
        if is(name, "normal") {
            Ok(ClientType::Normal)
        } else if is(name, "slave") || is(name, "replica") {
            Ok(ClientType::Replica)
        } else if is(name, "pubsub") {
            Ok(ClientType::Pubsub)
        } else if is(name, "master") {
            Ok(ClientType::Master)
        } else {
            Err(Reply::Error(format!(
                "ERR Unknown client type '{}'",
                String::from_utf8_lossy(name)
            )))
        }
    }

    /// A client's type. ringkv has no replication links, and a connection in
    /// subscriber mode is not registered as such here, so every client is a
    /// normal one.
    fn of(_info: &ClientInfo) -> ClientType {
        ClientType::Normal
    }
}

/// Which clients CLIENT LIST shows.
#[derive(Clone)]
enum ListFilter {
    All,
    Type(ClientType),
    Ids(Vec<u64>),
}

fn client_list(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let filter = if args.len() == 4 && is(&args[2], "type") {
            match ClientType::parse(&args[3]) {
                Ok(t) => ListFilter::Type(t),
                Err(e) => return e,
            }
        } else if args.len() > 3 && is(&args[2], "id") {
            let mut ids = Vec::with_capacity(args.len() - 3);
            for a in &args[3..] {
                match crate::parse::parse_i64(a) {
                    Some(id) => ids.push(id as u64),
                    None => return Reply::StaticError("ERR Invalid client ID"),
                }
            }
            ListFilter::Ids(ids)
        } else if args.len() != 2 {
            return err::SYNTAX;
        } else {
            ListFilter::All
        };
        let f = filter.clone();
        let mut lines: Vec<(u64, String)> = run_on_all(c.global, move |s| {
            s.clients
                .values()
                .filter_map(|ci| {
                    let ci = ci.borrow();
                    let keep = !ci.killed
                        && match &f {
                            ListFilter::All => true,
                            ListFilter::Type(t) => ClientType::of(&ci) == *t,
                            ListFilter::Ids(ids) => ids.contains(&ci.id),
                        };
                    keep.then(|| (ci.id, ci.list_line()))
                })
                .collect::<Vec<_>>()
        })
        .await
        .into_iter()
        .flatten()
        .collect();
        lines.sort_unstable_by_key(|(id, _)| *id);
        let mut out = String::new();
        let mut push = |line: &str| {
            out.push_str(line);
            out.push('\n');
        };
        match filter {
            // In the order asked for, repeats included.
            ListFilter::Ids(ids) => {
                for id in ids {
                    if let Ok(i) = lines.binary_search_by_key(&id, |(id, _)| *id) {
                        push(&lines[i].1);
                    }
                }
            }
            _ => lines.iter().for_each(|(_, l)| push(l)),
        }
        Reply::Verbatim(out)
    })
}

/// The filters of CLIENT KILL.
#[derive(Clone, Default)]
struct KillFilter {
    addr: Option<String>,
    laddr: Option<String>,
    id: Option<u64>,
    kind: Option<ClientType>,
    max_age: Option<i64>,
    skip: Option<u64>,
}

impl KillFilter {
    fn matches(&self, ci: &ClientInfo, now: Instant) -> bool {
        if self
            .addr
            .as_ref()
            .is_some_and(|a| *a != ci.addr.to_string())
        {
            return false;
        }
        if self
            .laddr
            .as_ref()
            .is_some_and(|a| *a != ci.laddr.to_string())
        {
            return false;
        }
        if self.id.is_some_and(|id| id != ci.id) {
            return false;
        }
        if self.kind.is_some_and(|t| t != ClientType::of(ci)) {
            return false;
        }
        if self
            .max_age
            .is_some_and(|m| (now.duration_since(ci.created).as_secs() as i64) <= m)
        {
            return false;
        }
        self.skip != Some(ci.id)
    }
}

/// Parses the filter form of CLIENT KILL (`args.len() > 3`).
fn parse_kill_filter(me: u64, args: &[Bytes]) -> Result<KillFilter, Reply> {
    let mut f = KillFilter {
        skip: Some(me),
        ..KillFilter::default()
    };
    let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    let mut i = 2;
    while i < args.len() {
        let (opt, more) = (&args[i], args.len() > i + 1);
        if !more {
            return Err(err::SYNTAX);
        }
        let val = &args[i + 1];
        if is(opt, "id") {
            match crate::parse::parse_i64(val) {
                Some(id) if id >= 1 => f.id = Some(id as u64),
                _ => return Err(Reply::StaticError("ERR client-id should be greater than 0")),
            }
        } else if is(opt, "type") {
            f.kind = Some(ClientType::parse(val)?);
        } else if is(opt, "addr") {
            f.addr = Some(text(val));
        } else if is(opt, "laddr") {
            f.laddr = Some(text(val));
        } else if is(opt, "user") {
            // `default` is the only user, and every client is logged in as it.
            if &val[..] != b"default" {
                return Err(Reply::Error(format!("ERR No such user '{}'", text(val))));
            }
        } else if is(opt, "skipme") {
            if is(val, "yes") {
                f.skip = Some(me);
            } else if is(val, "no") {
                f.skip = None;
            } else {
                return Err(err::SYNTAX);
            }
        } else if is(opt, "maxage") {
            match crate::parse::parse_i64(val) {
                Some(m) => f.max_age = Some(m),
                None => {
                    return Err(Reply::StaticError(
                        "ERR maxage is not an integer or out of range",
                    ));
                }
            }
        } else {
            return Err(err::SYNTAX);
        }
        i += 2;
    }
    Ok(f)
}

fn client_kill(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let old_form = args.len() == 3;
        let filter = if old_form {
            // CLIENT KILL addr:port, which may kill the caller too.
            KillFilter {
                addr: Some(String::from_utf8_lossy(&args[2]).into_owned()),
                ..KillFilter::default()
            }
        } else {
            match parse_kill_filter(c.id, &args) {
                Ok(f) => f,
                Err(e) => return e,
            }
        };
        let me = c.id;
        let results = run_on_all(c.global, move |s| {
            let now = Instant::now();
            let (mut killed, mut self_killed) = (0i64, false);
            for ci in s.clients.values() {
                let mut ci = ci.borrow_mut();
                if ci.killed || !filter.matches(&ci, now) {
                    continue;
                }
                killed += 1;
                if ci.id == me {
                    // The caller closes once its reply is written.
                    self_killed = true;
                    continue;
                }
                ci.killed = true;
                // Wakes the connection's pending read with EOF, ending its
                // loop; the socket closes when the connection drops it.
                // SAFETY: the fd stays open while its client is registered.
                unsafe {
                    libc::shutdown(ci.fd, libc::SHUT_RDWR);
                }
            }
            (killed, self_killed)
        })
        .await;
        let killed: i64 = results.iter().map(|r| r.0).sum();
        if results.iter().any(|r| r.1) {
            c.close_after_reply = true;
        }
        if !old_form {
            Reply::Int(killed)
        } else if killed == 0 {
            NO_SUCH_CLIENT
        } else {
            OK
        }
    })
}
