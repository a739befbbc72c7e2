//! Answering a shard's other connections while a script runs on it, as
//! Redis's `processEventsWhileBlocked` does.
//!
//! A script runs synchronously on its shard's thread, so that shard's
//! connection tasks are suspended until it ends. Past
//! `busy-reply-threshold`, the script's periodic hook calls [`serve`]: it
//! reads what the idle connections of this shard sent (those waiting for a
//! new command, with nothing half-parsed), answers SCRIPT KILL and FUNCTION
//! KILL, stops the server on SHUTDOWN NOSAVE, and answers -BUSY to the rest.
//! Bytes of a command that has not fully arrived are kept and handed back
//! to the connection when it reads again ([`take_pushback`]).

use super::resp::{ParseLimits, Parsed, RequestParser};
use crate::commands::{is, scripting};
use crate::reply::Reply;
use crate::shard::Global;
use bytes::BytesMut;
use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;

thread_local! {
    /// Per descriptor: its connection waits for a new command. Indexed, not
    /// hashed: every read of every connection updates it.
    static IDLE: RefCell<Vec<bool>> = const { RefCell::new(Vec::new()) };
    /// Bytes read while busy that their connection must parse first.
    static PUSHBACK: RefCell<HashMap<RawFd, Vec<u8>>> = RefCell::new(HashMap::new());
}

/// Marks a connection as waiting for a new command (or not).
pub fn set_idle(fd: RawFd, idle: bool) {
    let Ok(i) = usize::try_from(fd) else {
        return;
    };
    IDLE.with(|s| {
        let mut s = s.borrow_mut();
        if i >= s.len() {
            if !idle {
                return;
            }
            s.resize(i + 1, false);
        }
        s[i] = idle;
    });
}

/// Forgets a closing connection.
pub fn forget(fd: RawFd) {
    set_idle(fd, false);
    PUSHBACK.with(|p| p.borrow_mut().remove(&fd));
}

/// Up to `buf.len()` bytes read for `fd` while the shard was busy.
pub fn take_pushback(fd: RawFd, buf: &mut [u8]) -> Option<usize> {
    PUSHBACK.with(|p| {
        let mut p = p.borrow_mut();
        if p.is_empty() {
            return None;
        }
        let data = p.get_mut(&fd)?;
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        data.drain(..n);
        if data.is_empty() {
            p.remove(&fd);
        }
        Some(n)
    })
}

/// Serves this shard's idle connections once; see the module doc.
pub fn serve(global: &'static Global) {
    let fds: Vec<RawFd> = IDLE.with(|s| {
        let s = s.borrow();
        (0..s.len()).filter(|&i| s[i]).map(|i| i as RawFd).collect()
    });
    for fd in fds {
        let mut data = PUSHBACK
            .with(|p| p.borrow_mut().remove(&fd))
            .unwrap_or_default();
        let mut chunk = [0u8; 16 * 1024];
        // SAFETY: reading into a local buffer from an open socket.
        let n = unsafe {
            libc::recv(
                fd,
                chunk.as_mut_ptr().cast(),
                chunk.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n > 0 {
            data.extend_from_slice(&chunk[..n as usize]);
        }
        if data.is_empty() {
            continue;
        }
        let mut buf = BytesMut::from(&data[..]);
        let mut parser = RequestParser::default();
        let limits = ParseLimits {
            max_bulk_len: 512 << 20,
            unauthenticated: false,
        };
        let mut out = BytesMut::new();
        loop {
            match parser.parse(&mut buf, &limits) {
                Parsed::Command(args) => {
                    let reply = if args.len() == 2
                        && (is(&args[0], "script") || is(&args[0], "function"))
                        && is(&args[1], "kill")
                    {
                        scripting::kill_running(global, is(&args[0], "function"))
                    } else if args.len() == 2 && is(&args[0], "shutdown") && is(&args[1], "nosave")
                    {
                        global.shutting_down.store(true, Ordering::SeqCst);
                        // SAFETY: sends a signal to this very process.
                        unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
                        continue;
                    } else {
                        scripting::busy_error(global, 0).unwrap_or(Reply::StaticError(
                            "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
                        ))
                    };
                    reply.encode(&mut out, false);
                }
                Parsed::Empty => continue,
                Parsed::Incomplete => break,
                // Left for the connection, which answers and closes.
                Parsed::Error(_) | Parsed::ErrorExpectedDollar(_) => break,
            }
        }
        if !out.is_empty() {
            // SAFETY: writing a local buffer to an open socket; a short or
            // failed write only loses replies to a client that stopped reading.
            unsafe {
                libc::send(
                    fd,
                    out.as_ptr().cast(),
                    out.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
        }
        if !buf.is_empty() {
            PUSHBACK.with(|p| p.borrow_mut().insert(fd, buf.to_vec()));
        }
    }
}
