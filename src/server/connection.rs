//! One client connection: read a batch, dispatch it, write the replies.
//!
//! Each read may hold many pipelined commands. They are dispatched in order:
//! - a keyed command whose keys live on this shard runs at once, inline;
//! - a keyed command for another shard joins that shard's group, and each
//!   group travels as one message per batch (not one per command);
//! - connection and coordinating commands first wait for the groups sent so
//!   far, then run.
//!
//! Replies are kept in the client's order and written with one write.

use super::client::{Client, ClientInfo, ReplyMode};
use super::readiness;
use super::resp::{ParseLimits, Parsed, Reply, RequestParser};
use crate::commands::{self, CallOpts, CommandSpec, Handler, err};
use crate::persistence::aof;
use crate::shard::{Global, Shard, hop, locks, with_shard};
use bytes::{Bytes, BytesMut};
use futures::AsyncWriteExt;
use glommio::net::TcpStream;
use std::borrow::Cow;
use std::cell::RefCell;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Instant;

const READ_CHUNK: usize = 16 * 1024;

/// A keyed command bound for another shard.
struct Remote {
    slot: usize,
    spec: &'static CommandSpec,
    f: commands::KeyedFn,
    args: Vec<Bytes>,
    opts: CallOpts,
}

/// The replies of one batch, in order.
#[derive(Default)]
struct Batch {
    /// Replies (None until a remote group answers). Empty while nothing is
    /// pending, in which case replies are encoded straight away.
    slots: Vec<Option<Reply>>,
    /// Groups of remote commands by destination shard.
    groups: Vec<(usize, Vec<Remote>)>,
}

/// Serves one connection until it closes.
pub async fn serve(stream: TcpStream, global: &'static Global, shard: usize) {
    let fd = stream.as_raw_fd();
    let addr = stream
        .peer_addr()
        .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
    let laddr = stream
        .local_addr()
        .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
    let _ = stream.set_nodelay(true);
    let id = global
        .next_client_id
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let info = Rc::new(RefCell::new(ClientInfo::new(id, addr, laddr, fd)));
    let authenticated = with_shard(|s| {
        s.refresh_config();
        s.stats.total_connections_received += 1;
        s.clients.insert(id, info.clone());
        s.config.requirepass().is_none()
    });
    let mut client = Client::new(global, shard, id, authenticated, info);
    let polled = readiness::register(fd);
    let _ = run(stream, &mut client).await;
    if polled {
        readiness::deregister(fd);
    }
    with_shard(|s| s.clients.remove(&id));
    global
        .connected_clients
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
}

async fn run(mut stream: TcpStream, client: &mut Client) -> std::io::Result<()> {
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut wbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut parser = RequestParser::default();
    let mut more = false;
    loop {
        let n = read_some(&mut stream, &mut chunk, &mut more).await?;
        if n == 0 {
            return Ok(());
        }
        rbuf.extend_from_slice(&chunk[..n]);
        let (limits, qlimit) = with_shard(|s| {
            s.stats.net_input_bytes += n as u64;
            s.refresh_config();
            let limits = ParseLimits {
                max_bulk_len: s.config.proto_max_bulk_len(),
                unauthenticated: !client.authenticated,
            };
            (limits, s.config.query_buffer_limit())
        });
        process(client, &mut parser, &mut rbuf, &mut wbuf, limits).await;
        if std::mem::take(&mut client.wrote) {
            aof::wait_durable(client.global).await;
        }
        if !wbuf.is_empty() {
            with_shard(|s| s.stats.net_output_bytes += wbuf.len() as u64);
            stream.write_all(&wbuf).await?;
            wbuf.clear();
        }
        if client.close_after_reply || client.info.borrow().killed {
            return Ok(());
        }
        if rbuf.len() > qlimit {
            tracing::warn!(
                client = client.id,
                "closing client that reached max query buffer length"
            );
            return Ok(());
        }
        client.info.borrow_mut().qbuf = rbuf.len();
        if rbuf.capacity() > 4 * READ_CHUNK && rbuf.is_empty() {
            rbuf = BytesMut::with_capacity(READ_CHUNK);
        }
    }
}

/// Reads what the socket has.
///
/// While the shard is active, a reader waits on the shard's poller
/// ([`readiness`]), which learns from one `epoll_wait` per round which
/// sockets got data: under load the next request arrives within a few
/// rounds. When the shard goes idle, the poller releases the reader to an
/// io_uring wait (a single `MSG_PEEK` receive, which arms nothing further),
/// where the shard can sleep.
///
/// `more` is true when the last read filled `buf`: data may remain that no
/// new readiness event will announce.
async fn read_some(
    stream: &mut TcpStream,
    buf: &mut [u8],
    more: &mut bool,
) -> std::io::Result<usize> {
    let fd = stream.as_raw_fd();
    let recv = |buf: &mut [u8], more: &mut bool| {
        // SAFETY: `buf` is valid for writes of its length; the fd is open.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n >= 0 {
            readiness::note_activity();
            *more = n as usize == buf.len();
            Ok(Some(n as usize))
        } else {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::WouldBlock {
                Ok(None)
            } else {
                Err(err)
            }
        }
    };
    if (std::mem::take(more) || readiness::take_ready(fd))
        && let Some(n) = recv(buf, more)?
    {
        return Ok(n);
    }
    while readiness::readable(fd).await {
        if let Some(n) = recv(buf, more)? {
            return Ok(n);
        }
    }
    loop {
        let mut probe = [0u8; 1];
        let peek = stream.peek(&mut probe);
        let marked = readiness::marked(fd);
        futures::pin_mut!(peek, marked);
        if let futures::future::Either::Left((r, _)) = futures::future::select(peek, marked).await {
            r?;
        }
        readiness::take_ready(fd);
        if let Some(n) = recv(buf, more)? {
            return Ok(n);
        }
    }
}

/// Parses and runs every complete command in `rbuf`, encoding replies into
/// `wbuf`.
async fn process(
    client: &mut Client,
    parser: &mut RequestParser,
    rbuf: &mut BytesMut,
    wbuf: &mut BytesMut,
    mut limits: ParseLimits,
) {
    let mut batch = Batch::default();
    // One clock read per batch: CLIENT LIST's idle time is in seconds.
    client.info.borrow_mut().last_active = Instant::now();
    loop {
        let args = match parser.parse(rbuf, &limits) {
            Parsed::Command(args) => args,
            Parsed::Empty => continue,
            Parsed::Incomplete => break,
            bad @ (Parsed::Error(_) | Parsed::ErrorExpectedDollar(_)) => {
                let reply = bad.error_reply().expect("a parse error");
                protocol_error(client, &mut batch, wbuf, reply).await;
                return;
            }
        };
        dispatch(client, args, &mut batch, wbuf).await;
        limits.unauthenticated = !client.authenticated;
        if client.close_after_reply {
            rbuf.clear();
            parser.reset();
            break;
        }
    }
    flush(client, &mut batch, wbuf).await;
}

async fn protocol_error(client: &mut Client, batch: &mut Batch, wbuf: &mut BytesMut, reply: Reply) {
    flush(client, batch, wbuf).await;
    // Under CLIENT REPLY OFF Redis does not send the error either.
    client.suppress_reply = client.reply_mode == ReplyMode::Off;
    emit(client, batch, wbuf, reply);
    client.close_after_reply = true;
}

/// Queues or writes one reply, honouring CLIENT REPLY.
fn emit(client: &mut Client, batch: &mut Batch, wbuf: &mut BytesMut, reply: Reply) {
    if reply.is_error() {
        count_error(&reply);
    }
    if client.suppress_reply {
        client.suppress_reply = false;
        return;
    }
    if batch.slots.is_empty() {
        reply.encode(wbuf, client.resp3);
    } else {
        batch.slots.push(Some(reply));
    }
}

fn count_error(reply: &Reply) {
    let Some(text) = reply.error_text() else {
        return;
    };
    let code = text.split(|&c| c == b' ').next().unwrap_or(b"ERR");
    let code = String::from_utf8_lossy(code).into_owned();
    with_shard(|s| {
        s.stats.total_error_replies += 1;
        *s.stats.errors.entry(code).or_default() += 1;
    });
}

/// Decides whether this command's reply is sent (CLIENT REPLY OFF/SKIP).
fn begin_command(client: &mut Client) {
    client.suppress_reply = match client.reply_mode {
        ReplyMode::On => false,
        ReplyMode::Off => true,
        ReplyMode::Skip => {
            client.reply_mode = ReplyMode::On;
            true
        }
    };
}

fn reject(
    client: &mut Client,
    batch: &mut Batch,
    wbuf: &mut BytesMut,
    name: Option<&str>,
    reply: Reply,
) {
    if let Some(name) = name {
        with_shard(|s| {
            s.stats
                .commands
                .entry(name.to_string())
                .or_default()
                .rejected_calls += 1
        });
    }
    emit(client, batch, wbuf, reply);
}

/// `b` as C's `%.*s` prints it: cut at `max` bytes or at a NUL.
fn c_str(b: &[u8], max: usize) -> &[u8] {
    let b = &b[..memchr::memchr(0, b).unwrap_or(b.len())];
    &b[..b.len().min(max)]
}

/// The error for an unknown command, as Redis words it: the name and the
/// first arguments are copied raw, each cut like C's `%.*s` (at the length
/// limit or at a NUL byte).
fn unknown_command(args: &[Bytes]) -> Reply {
    let mut msg = b"ERR unknown command '".to_vec();
    msg.extend_from_slice(c_str(&args[0], 128));
    msg.extend_from_slice(b"', with args beginning with: ");
    let start = msg.len();
    for a in &args[1..] {
        let used = msg.len() - start;
        if used >= 128 {
            break;
        }
        msg.push(b'\'');
        msg.extend_from_slice(c_str(a, 128 - used));
        msg.extend_from_slice(b"' ");
    }
    Reply::ErrorBytes(msg.into())
}

/// A command's full name for statistics: `get`, or `config|get` for a
/// subcommand (allocated only then).
type FullName = Cow<'static, str>;

/// Resolves a command (and subcommand) and checks arity and auth.
fn resolve(
    client: &Client,
    args: &[Bytes],
) -> Result<(&'static CommandSpec, FullName), (Option<String>, Reply)> {
    let Some(spec) = commands::lookup(&args[0]) else {
        return Err((None, unknown_command(args)));
    };
    let (spec, full) = if let Handler::Container(bare) = spec.handler {
        if args.len() < 2 {
            return match bare {
                Some(_) => Ok((spec, Cow::Borrowed(spec.name))),
                None => Err((Some(spec.name.into()), err::arity(spec.name))),
            };
        }
        match commands::lookup_sub(spec, &args[1]) {
            Some(sub) => (sub, Cow::Owned(format!("{}|{}", spec.name, sub.name))),
            None => {
                let mut msg = b"ERR unknown subcommand '".to_vec();
                msg.extend_from_slice(c_str(&args[1], 128));
                msg.extend_from_slice(
                    format!("'. Try {} HELP.", spec.name.to_uppercase()).as_bytes(),
                );
                return Err((Some(spec.name.into()), Reply::ErrorBytes(msg.into())));
            }
        }
    } else {
        (spec, Cow::Borrowed(spec.name))
    };
    if !spec.arity_ok(args.len()) {
        return Err((Some(full.to_string()), err::arity(&full)));
    }
    if !client.authenticated && !spec.has(commands::flags::NO_AUTH) {
        return Err((
            Some(full.into_owned()),
            Reply::StaticError("NOAUTH Authentication required."),
        ));
    }
    // Client 0 is the AOF replay, which is the loading.
    if client.id != 0
        && !spec.has(commands::flags::LOADING)
        && client.global.rdb.loading.load(Ordering::Acquire)
    {
        return Err((
            Some(full.into_owned()),
            Reply::StaticError("LOADING Redis is loading the dataset in memory"),
        ));
    }
    Ok((spec, full))
}

/// Runs a keyed handler on this shard, recording its stats.
pub fn call_keyed(
    shard: &mut Shard,
    spec: &'static CommandSpec,
    opts: CallOpts,
    f: commands::KeyedFn,
    args: &[Bytes],
    full: &str,
) -> Reply {
    let start = Instant::now();
    if shard.evict.maxmemory != 0
        && !crate::shard::evict::perform(shard)
        && spec.has(commands::flags::DENYOOM)
    {
        shard
            .stats
            .commands
            .entry(full.to_string())
            .or_default()
            .rejected_calls += 1;
        return crate::shard::evict::OOM;
    }
    let log = spec.has(commands::flags::WRITE) && shard.global.aof.active.load(Ordering::Relaxed);
    if log {
        aof::clear_override();
    }
    let reply = opts.call(shard, f, args);
    record(shard, full, start, &reply);
    if log && !reply.is_error() {
        let global = shard.global;
        let seq = global.aof.next_seq();
        let idx = spec.key_indices(args);
        let effects = if idx.is_empty() {
            None
        } else {
            aof::keyed_effects(shard, opts.db, spec.name, args, &idx, &reply)
        };
        match effects {
            Some(cmds) => aof::log(global, seq, opts.db, &cmds),
            None => aof::log_args(global, seq, opts.db, args),
        }
    }
    reply
}

fn record(shard: &mut Shard, full: &str, start: Instant, reply: &Reply) {
    shard.stats.total_commands_processed += 1;
    let usec = start.elapsed().as_micros() as u64;
    let stat = match shard.stats.commands.get_mut(full) {
        Some(s) => s,
        None => shard.stats.commands.entry(full.to_string()).or_default(),
    };
    stat.calls += 1;
    stat.usec += usec;
    if reply.is_error() {
        stat.failed_calls += 1;
    }
}

async fn dispatch(client: &mut Client, args: Vec<Bytes>, batch: &mut Batch, wbuf: &mut BytesMut) {
    begin_command(client);
    let (spec, full) = match resolve(client, &args) {
        Ok(v) => v,
        Err((name, reply)) => return reject(client, batch, wbuf, name.as_deref(), reply),
    };
    if spec.flags & commands::flags::WRITE != 0
        && with_shard(|s| crate::persistence::save::writes_refused(client.global, &s.config))
    {
        let reply = Reply::StaticError(crate::persistence::save::MISCONF);
        return reject(client, batch, wbuf, Some(&full), reply);
    }
    {
        let mut info = client.info.borrow_mut();
        if info.last_cmd != full {
            info.last_cmd.clear();
            info.last_cmd.push_str(&full);
        }
    }
    client.wrote |= spec.has(commands::flags::WRITE);
    match spec.handler {
        Handler::Keyed(f) => {
            let idx = spec.key_indices(&args);
            let target = match idx.first() {
                Some(&i) => client.shard_of(&args[i]),
                None => client.shard,
            };
            if idx.iter().any(|&i| client.shard_of(&args[i]) != target) {
                return emit(client, batch, wbuf, err::CROSSSLOT);
            }
            let opts = client.opts();
            if target == client.shard {
                let db = client.db;
                let done = with_shard(|s| {
                    if s.locks.keys_free(db, idx.iter().map(|&i| &args[i][..])) {
                        Some(call_keyed(s, spec, opts, f, &args, &full))
                    } else {
                        None
                    }
                });
                let reply = match done {
                    Some(r) => r,
                    None => {
                        // A transaction holds one of the keys: keep order by
                        // finishing earlier work, then wait for the lock.
                        flush(client, batch, wbuf).await;
                        let keys = idx.iter().map(|&i| args[i].to_vec()).collect();
                        locks::wait_free(db, Some(keys)).await;
                        with_shard(|s| call_keyed(s, spec, opts, f, &args, &full))
                    }
                };
                emit(client, batch, wbuf, reply);
            } else {
                if client.suppress_reply {
                    // The reply would be dropped; still run it, in order.
                    client.suppress_reply = false;
                    let keys = idx.iter().map(|&i| args[i].to_vec()).collect();
                    flush(client, batch, wbuf).await;
                    let _ = client.run_keyed(target, keys, f, args).await;
                    return;
                }
                // From here on, replies queue behind this one.
                let slot = batch.slots.len();
                batch.slots.push(None);
                let item = Remote {
                    slot,
                    spec,
                    f,
                    args,
                    opts,
                };
                match batch.groups.iter_mut().find(|(s, _)| *s == target) {
                    Some((_, v)) => v.push(item),
                    None => batch.groups.push((target, vec![item])),
                }
            }
        }
        Handler::Local(f) | Handler::Container(Some(f)) => {
            flush(client, batch, wbuf).await;
            let start = Instant::now();
            let reply = f(client, &args);
            with_shard(|s| record(s, &full, start, &reply));
            emit(client, batch, wbuf, reply);
        }
        Handler::Async(f) => {
            flush(client, batch, wbuf).await;
            if spec.has(commands::flags::DENYOOM)
                && with_shard(|s| s.evict.maxmemory != 0 && !crate::shard::evict::perform(s))
            {
                return reject(client, batch, wbuf, Some(&full), crate::shard::evict::OOM);
            }
            let start = Instant::now();
            let suppress = std::mem::take(&mut client.suppress_reply);
            let global = client.global;
            let log_args = (spec.has(commands::flags::WRITE)
                && global.aof.active.load(Ordering::Relaxed))
            .then(|| args.clone());
            client.aof_seq.set(None);
            let reply = f(client, args).await;
            if let Some(a) = log_args
                && !reply.is_error()
            {
                let seq = client
                    .aof_seq
                    .take()
                    .unwrap_or_else(|| global.aof.next_seq());
                aof::log(
                    global,
                    seq,
                    client.db,
                    &aof::async_effects(spec.name, &a, &reply),
                );
            }
            client.suppress_reply |= suppress;
            with_shard(|s| record(s, &full, start, &reply));
            emit(client, batch, wbuf, reply);
        }
        Handler::Container(None) => unreachable!("containers resolve to subcommands"),
    }
}

/// Sends the pending remote groups, waits for their replies and encodes every
/// queued reply in order.
async fn flush(client: &mut Client, batch: &mut Batch, wbuf: &mut BytesMut) {
    if batch.slots.is_empty() {
        return;
    }
    let global = client.global;
    let groups = std::mem::take(&mut batch.groups);
    let futs = groups
        .into_iter()
        .map(|(shard, items)| hop::call(global, shard, move |answer| run_group(items, answer)));
    for group in futures::future::join_all(futs).await {
        for (slot, reply) in group {
            if reply.is_error() {
                count_error(&reply);
            }
            batch.slots[slot] = Some(reply);
        }
    }
    for r in batch.slots.drain(..).flatten() {
        r.encode(wbuf, client.resp3);
    }
}

/// Runs a connection's commands for this shard, in order, and answers with
/// their replies. Runs them at once unless a transaction holds one of their
/// keys; then a task waits for the locks.
fn run_group(items: Vec<Remote>, answer: hop::Answer<Vec<(usize, Reply)>>) {
    let free = with_shard(|s| {
        s.locks.is_empty()
            || items.iter().all(|it| {
                let idx = it.spec.key_indices(&it.args);
                s.locks
                    .keys_free(it.opts.db, idx.iter().map(|&i| &it.args[i][..]))
            })
    });
    if free {
        let out = with_shard(|s| {
            items
                .iter()
                .map(|it| {
                    (
                        it.slot,
                        call_keyed(s, it.spec, it.opts, it.f, &it.args, it.spec.name),
                    )
                })
                .collect()
        });
        return answer.send(out);
    }
    glommio::spawn_local(async move {
        let mut out = Vec::with_capacity(items.len());
        for it in items {
            let idx = it.spec.key_indices(&it.args);
            let free = with_shard(|s| {
                s.locks
                    .keys_free(it.opts.db, idx.iter().map(|&i| &it.args[i][..]))
            });
            if !free {
                let keys = idx.iter().map(|&i| it.args[i].to_vec()).collect();
                locks::wait_free(it.opts.db, Some(keys)).await;
            }
            let full = it.spec.name;
            let reply = with_shard(|s| call_keyed(s, it.spec, it.opts, it.f, &it.args, full));
            out.push((it.slot, reply));
        }
        answer.send(out);
    })
    .detach();
}

/// Runs a RESP command stream through an internal client on this shard (AOF
/// replay), discarding the replies. Returns how many replies were errors.
pub async fn run_internal(global: &'static Global, stream: &[u8]) -> u64 {
    let shard = crate::shard::current_shard_id().expect("on a shard");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let info = Rc::new(RefCell::new(ClientInfo::new(0, addr, addr, -1)));
    let mut client = Client::new(global, shard, 0, true, info);
    let mut rbuf = BytesMut::from(stream);
    let mut wbuf = BytesMut::new();
    let mut parser = RequestParser::default();
    let limits = ParseLimits {
        max_bulk_len: i64::MAX,
        unauthenticated: false,
    };
    let before = with_shard(|s| s.stats.total_error_replies);
    process(&mut client, &mut parser, &mut rbuf, &mut wbuf, limits).await;
    with_shard(|s| s.stats.total_error_replies) - before
}
