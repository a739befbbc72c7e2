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

use super::resp::{ParseLimits, Parsed, RequestParser};
use super::{busy, readiness};
use crate::commands::call::{
    call_keyed, count_error, count_rejected, out_of_memory, record, resolve,
};
use crate::commands::{self, CallOpts, CommandSpec, Handler, err};
use crate::persistence::aof;
use crate::reply::Reply;
use crate::shard::clients::ClientInfo;
use crate::shard::{Global, hop, locks, with_shard};
use crate::transaction::{Client, ReplyMode};
use bytes::{Bytes, BytesMut};
use futures::AsyncWriteExt;
use glommio::net::TcpStream;
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
    busy::forget(fd);
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
        let n = read_some(&mut stream, &mut chunk, &mut more, rbuf.is_empty()).await?;
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
///
/// `idle` is true when no command is half-read: a script running on this
/// shard may then answer the connection meanwhile ([`busy`]).
async fn read_some(
    stream: &mut TcpStream,
    buf: &mut [u8],
    more: &mut bool,
    idle: bool,
) -> std::io::Result<usize> {
    let fd = stream.as_raw_fd();
    if let Some(n) = busy::take_pushback(fd, buf) {
        return Ok(n);
    }
    let n = wait_and_read(stream, buf, more, idle).await;
    busy::set_idle(fd, false);
    n
}

async fn wait_and_read(
    stream: &mut TcpStream,
    buf: &mut [u8],
    more: &mut bool,
    idle: bool,
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
    busy::set_idle(fd, idle);
    while readiness::readable(fd).await {
        if let Some(n) = busy::take_pushback(fd, buf) {
            return Ok(n);
        }
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
        if let Some(n) = busy::take_pushback(fd, buf) {
            return Ok(n);
        }
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

/// True for the commands that run at once inside MULTI instead of queuing.
fn controls_multi(spec: &CommandSpec) -> bool {
    matches!(
        spec.name,
        "exec" | "discard" | "multi" | "watch" | "quit" | "reset"
    )
}

/// Refuses a command; inside MULTI, this also dooms the transaction (EXEC
/// answers EXECABORT), or ends it when the refused command is EXEC.
fn reject(
    client: &mut Client,
    batch: &mut Batch,
    wbuf: &mut BytesMut,
    name: Option<&str>,
    mut reply: Reply,
) {
    if let Some(multi) = client.multi.as_mut() {
        multi.aborted = true;
        if name == Some("exec") {
            client.multi = None;
            client.info.borrow_mut().multi = -1;
            client.watching = Default::default();
            let text = reply.error_text().unwrap_or_default();
            let mut msg = b"EXECABORT Transaction discarded because of: ".to_vec();
            msg.extend_from_slice(text.strip_prefix(b"-").unwrap_or(text));
            reply = Reply::ErrorBytes(msg.into());
        }
    }
    if let Some(name) = name {
        count_rejected(name);
    }
    emit(client, batch, wbuf, reply);
}

async fn dispatch(client: &mut Client, args: Vec<Bytes>, batch: &mut Batch, wbuf: &mut BytesMut) {
    begin_command(client);
    let (spec, full) = match resolve(client, &args) {
        Ok(v) => v,
        Err((name, reply)) => return reject(client, batch, wbuf, name.as_deref(), reply),
    };
    if !spec.has(commands::flags::ALLOW_BUSY)
        && client.global.scripts.running.load(Ordering::Relaxed) != 0
        && let Some(reply) = commands::scripting::busy_error(
            client.global,
            with_shard(|s| s.config.int("busy-reply-threshold")),
        )
    {
        return reject(client, batch, wbuf, Some(&full), reply);
    }
    let queuing = client.multi.is_some() && !controls_multi(spec);
    if queuing && spec.has(commands::flags::NO_MULTI) {
        let reply = Reply::StaticError("ERR Command not allowed inside a transaction");
        return reject(client, batch, wbuf, Some(&full), reply);
    }
    // EXEC is checked as the commands it will run.
    let flags = match (&client.multi, spec.name) {
        (Some(m), "exec") => spec.flags | m.flags,
        _ => spec.flags,
    };
    if flags & commands::flags::WRITE != 0
        && with_shard(|s| crate::persistence::save::writes_refused(client.global, &s.config))
    {
        let reply = Reply::StaticError(crate::persistence::save::MISCONF);
        return reject(client, batch, wbuf, Some(&full), reply);
    }
    if (queuing || spec.name == "exec") && flags & commands::flags::DENYOOM != 0 && out_of_memory()
    {
        return reject(client, batch, wbuf, Some(&full), crate::shard::evict::OOM);
    }
    if queuing {
        let multi = client.multi.as_mut().expect("queuing");
        multi.flags |= spec.flags;
        multi.queue.push(args);
        client.info.borrow_mut().multi = multi.queue.len() as i64;
        return emit(client, batch, wbuf, Reply::Simple("QUEUED"));
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
                    if s.locks
                        .keys_free(opts.tx, db, idx.iter().map(|&i| &args[i][..]))
                    {
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
                        locks::wait_free(opts.tx, db, Some(keys)).await;
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
            if spec.has(commands::flags::DENYOOM) && out_of_memory() {
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
                    .keys_free(it.opts.tx, it.opts.db, idx.iter().map(|&i| &it.args[i][..]))
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
                    .keys_free(it.opts.tx, it.opts.db, idx.iter().map(|&i| &it.args[i][..]))
            });
            if !free {
                let keys = idx.iter().map(|&i| it.args[i].to_vec()).collect();
                locks::wait_free(it.opts.tx, it.opts.db, Some(keys)).await;
            }
            let full = it.spec.name;
            let reply = with_shard(|s| call_keyed(s, it.spec, it.opts, it.f, &it.args, full));
            out.push((it.slot, reply));
        }
        answer.send(out);
    })
    .detach();
}

/// How AOF replay runs its commands: through this dispatcher.
pub static REPLAYER: aof::Replayer = aof::Replayer {
    run: |global, stream| Box::pin(run_internal(global, stream)),
    key_indices: |args| {
        let mut spec = commands::lookup(&args[0])?;
        if !spec.subcommands.is_empty() {
            spec = commands::lookup_sub(spec, args.get(1)?)?;
        }
        Some(spec.key_indices(args))
    },
};

/// Runs a RESP command stream through an internal client on this shard (AOF
/// replay), discarding the replies. Returns how many replies were errors.
async fn run_internal(global: &'static Global, stream: Vec<u8>) -> u64 {
    let shard = crate::shard::current_shard_id().expect("on a shard");
    let mut client = Client::internal(global, shard);
    let mut rbuf = BytesMut::from(&stream[..]);
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
