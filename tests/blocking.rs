//! Blocking commands between clients: each scenario runs on redis-server and
//! on a 4-shard ringkv, and where the outcome is deterministic the replies
//! must match byte for byte. Keys a b c d live on shards 3 0 1 2, so waits
//! and wakeups cross shards; `{t}` keys share one shard. Every wait is
//! bounded (read timeouts) and each test stops only its own servers.

mod common;

use common::{Proc, encode_cmd, frame_len};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A raw RESP connection with reads bounded by a timeout.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn new(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_nodelay(true).unwrap();
        Conn { s, buf: Vec::new() }
    }

    fn send(&mut self, args: &[&str]) {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        self.s.write_all(&encode_cmd(&a)).unwrap();
    }

    /// One reply, or None if none arrives within `wait`.
    fn read(&mut self, wait: Duration) -> Option<Vec<u8>> {
        let end = Instant::now() + wait;
        loop {
            if let Some(n) = frame_len(&self.buf) {
                return Some(self.buf.drain(..n).collect());
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.s.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 65536];
            match self.s.read(&mut chunk) {
                Ok(0) => panic!("server closed the connection"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// The reply, which must come within 15 s (generous: the suite runs many
    /// servers at once on small CI machines).
    fn reply(&mut self) -> Vec<u8> {
        let port = self.s.peer_addr().map(|a| a.port()).unwrap_or(0);
        self.read(Duration::from_secs(15))
            .unwrap_or_else(|| panic!("no reply within 15 s from port {port}"))
    }

    fn cmd(&mut self, args: &[&str]) -> Vec<u8> {
        self.send(args);
        self.reply()
    }

    /// True if no reply arrives for a while (the client is still blocked).
    fn quiet(&mut self) -> bool {
        self.read(Duration::from_millis(150)).is_none()
    }
}

/// Waits until `n` clients are blocked (CLIENT LIST flags=b).
fn wait_blocked(admin: &mut Conn, n: usize) {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let list = admin.cmd(&["CLIENT", "LIST"]);
        let blocked = String::from_utf8_lossy(&list).matches("flags=b").count();
        if blocked >= n {
            return;
        }
        assert!(Instant::now() < end, "{n} clients never blocked");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends a blocking command and waits until the server has it blocked.
fn block(c: &mut Conn, admin: &mut Conn, blocked_before: usize, args: &[&str]) {
    c.send(args);
    wait_blocked(admin, blocked_before + 1);
}

/// `[key, value]` as RESP2.
fn kv(k: &str, v: &str) -> Vec<u8> {
    format!("*2\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n", k.len(), v.len()).into_bytes()
}

/// Runs `scenario` on redis-server and on ringkv (4 shards); the transcripts
/// must be equal.
fn same_on_both(scenario: impl Fn(u16) -> Vec<Vec<u8>>) {
    let redis = Proc::redis(&[]);
    let ours = Proc::ringkv(4, &[]);
    let want = scenario(redis.port);
    let got = scenario(ours.port);
    let show = |t: &[Vec<u8>]| {
        t.iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(show(&got), show(&want), "ringkv differs from redis");
}

#[test]
fn timeouts_and_waiting_forever() {
    same_on_both(|port| {
        let mut out = Vec::new();
        let mut c = Conn::new(port);
        let mut p = Conn::new(port);
        let mut admin = Conn::new(port);
        // A fractional timeout passes with a nil array.
        let t = Instant::now();
        out.push(c.cmd(&["BLPOP", "nokey", "0.2"]));
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(150), "{waited:?}");
        assert!(waited < Duration::from_secs(3), "{waited:?}");
        out.push(c.cmd(&["BLMOVE", "nokey", "b", "LEFT", "RIGHT", "0.05"]));
        out.push(c.cmd(&["BZMPOP", "0.05", "2", "a", "b", "MIN"]));
        // 0, and timeouts that round to 0 (-0.0009, -1e-400), wait until a
        // push, however long.
        for timeout in ["0", "-0.0009", "-1e-400"] {
            block(&mut c, &mut admin, 0, &["BRPOP", "a", timeout]);
            std::thread::sleep(Duration::from_millis(300));
            assert!(c.quiet());
            out.push(p.cmd(&["RPUSH", "a", "v1", "v2"]));
            out.push(c.reply());
            out.push(p.cmd(&["LRANGE", "a", "0", "-1"]));
            out.push(p.cmd(&["DEL", "a"]));
        }
        // RESP3: nil is `_`, scores are doubles.
        c.cmd(&["HELLO", "3"]);
        out.push(c.cmd(&["BZPOPMIN", "nokey", "0.01"]));
        block(&mut c, &mut admin, 0, &["BZPOPMAX", "z", "0"]);
        out.push(p.cmd(&["ZADD", "z", "1.5", "m", "2.5", "n"]));
        out.push(c.reply());
        out
    });
}

#[test]
fn one_element_per_push_across_shards() {
    same_on_both(|port| {
        let mut out = Vec::new();
        let mut c = Conn::new(port);
        let mut p = Conn::new(port);
        let mut admin = Conn::new(port);
        // Each push serves the waiter once; the rest stays in the list.
        for key in ["c", "a", "b"] {
            block(&mut c, &mut admin, 0, &["BLPOP", "a", "b", "c", "0"]);
            out.push(p.cmd(&["RPUSH", key, "x1", "x2"]));
            out.push(c.reply());
            out.push(p.cmd(&["LRANGE", key, "0", "-1"]));
            out.push(p.cmd(&["DEL", key]));
        }
        // BLMPOP takes COUNT from the one key that was fed.
        block(
            &mut c,
            &mut admin,
            0,
            &["BLMPOP", "0", "3", "a", "b", "c", "RIGHT", "COUNT", "2"],
        );
        out.push(p.cmd(&["LPUSH", "b", "1", "2", "3"]));
        out.push(c.reply());
        out.push(p.cmd(&["LRANGE", "b", "0", "-1"]));
        // BZPOPMIN / BZMPOP over sorted sets on several shards.
        block(&mut c, &mut admin, 0, &["BZPOPMIN", "a", "d", "0"]);
        out.push(p.cmd(&["ZADD", "d", "3", "x", "1", "y"]));
        out.push(c.reply());
        out.push(p.cmd(&["ZRANGE", "d", "0", "-1", "WITHSCORES"]));
        out.push(p.cmd(&["DEL", "d"]));
        block(
            &mut c,
            &mut admin,
            0,
            &["BZMPOP", "0", "2", "a", "c", "MAX", "COUNT", "2"],
        );
        out.push(p.cmd(&["ZADD", "c", "1", "x", "2", "y", "3", "z"]));
        out.push(c.reply());
        out.push(p.cmd(&["ZRANGE", "c", "0", "-1", "WITHSCORES"]));
        out
    });
}

#[test]
fn waiters_served_in_blocking_order() {
    same_on_both(|port| {
        let mut out = Vec::new();
        let mut cs: Vec<Conn> = (0..3).map(|_| Conn::new(port)).collect();
        let mut p = Conn::new(port);
        let mut admin = Conn::new(port);
        // Single pushes serve the clients in the order they blocked.
        for (i, c) in cs.iter_mut().enumerate() {
            block(c, &mut admin, i, &["BRPOP", "k", "0"]);
        }
        for v in ["1", "2", "3"] {
            out.push(p.cmd(&["LPUSH", "k", v]));
        }
        for c in cs.iter_mut() {
            out.push(c.reply());
        }
        // One push of three elements serves all three, in order.
        for (i, c) in cs.iter_mut().enumerate() {
            block(c, &mut admin, i, &["BLPOP", "k", "0"]);
        }
        out.push(p.cmd(&["RPUSH", "k", "a", "b", "c", "d"]));
        for c in cs.iter_mut() {
            out.push(c.reply());
        }
        out.push(p.cmd(&["LRANGE", "k", "0", "-1"]));
        out.push(p.cmd(&["DEL", "k"]));
        // Sorted sets: one ZADD of two members serves two of three.
        for (i, c) in cs.iter_mut().enumerate() {
            block(c, &mut admin, i, &["BZPOPMIN", "z", "0"]);
        }
        out.push(p.cmd(&["ZADD", "z", "2", "b", "1", "a"]));
        out.push(cs[0].reply());
        out.push(cs[1].reply());
        assert!(cs[2].quiet());
        out.push(p.cmd(&["ZADD", "z", "5", "e"]));
        out.push(cs[2].reply());
        out
    });
}

#[test]
fn blocked_client_keeps_waiting_when_key_changes_type() {
    same_on_both(|port| {
        let mut out = Vec::new();
        let mut l = Conn::new(port);
        let mut z = Conn::new(port);
        let mut p = Conn::new(port);
        let mut admin = Conn::new(port);
        block(&mut l, &mut admin, 0, &["BLPOP", "k", "0"]);
        out.push(p.cmd(&["SET", "k", "str"]));
        assert!(l.quiet());
        out.push(p.cmd(&["DEL", "k"]));
        // A sorted-set waiter behind the list waiter is served by a sorted
        // set; the list waiter keeps its place.
        block(&mut z, &mut admin, 1, &["BZPOPMIN", "k", "0"]);
        out.push(p.cmd(&["ZADD", "k", "1", "m"]));
        out.push(z.reply());
        assert!(l.quiet());
        out.push(p.cmd(&["RPUSH", "k", "v"]));
        out.push(l.reply());
        out.push(p.cmd(&["EXISTS", "k"]));
        out
    });
}

#[test]
fn blmove_while_blocked() {
    same_on_both(|port| {
        let mut out = Vec::new();
        let mut c = Conn::new(port);
        let mut p = Conn::new(port);
        let mut admin = Conn::new(port);
        // Across shards (a -> b) and within one ({t}s -> {t}d).
        for (src, dst) in [("a", "b"), ("{t}s", "{t}d")] {
            block(
                &mut c,
                &mut admin,
                0,
                &["BLMOVE", src, dst, "RIGHT", "LEFT", "0"],
            );
            out.push(p.cmd(&["RPUSH", src, "x", "y"]));
            out.push(c.reply());
            out.push(p.cmd(&["LRANGE", src, "0", "-1"]));
            out.push(p.cmd(&["LRANGE", dst, "0", "-1"]));
            block(&mut c, &mut admin, 0, &["BRPOPLPUSH", "nokey", dst, "0"]);
            out.push(p.cmd(&["LPUSH", "nokey", "z"]));
            out.push(c.reply());
            out.push(p.cmd(&["LRANGE", dst, "0", "-1"]));
            // A destination of another type: WRONGTYPE once the source is
            // fed, and the element stays in the source.
            out.push(p.cmd(&["DEL", src, dst]));
            out.push(p.cmd(&["SET", dst, "str"]));
            block(
                &mut c,
                &mut admin,
                0,
                &["BLMOVE", src, dst, "LEFT", "LEFT", "0"],
            );
            out.push(p.cmd(&["RPUSH", src, "v"]));
            out.push(c.reply());
            out.push(p.cmd(&["LRANGE", src, "0", "-1"]));
            out.push(p.cmd(&["DEL", src, dst]));
        }
        // The moved element wakes a client waiting on the destination.
        let mut w = Conn::new(port);
        block(&mut w, &mut admin, 0, &["BLPOP", "b", "0"]);
        block(
            &mut c,
            &mut admin,
            1,
            &["BLMOVE", "a", "b", "LEFT", "LEFT", "0"],
        );
        out.push(p.cmd(&["RPUSH", "a", "m"]));
        out.push(c.reply());
        out.push(w.reply());
        out.push(p.cmd(&["EXISTS", "a", "b"]));
        out
    });
}

#[test]
fn cross_shard_lmove_wakes_destination_waiter() {
    same_on_both(|port| {
        let mut out = Vec::new();
        let mut c = Conn::new(port);
        let mut p = Conn::new(port);
        let mut admin = Conn::new(port);
        out.push(p.cmd(&["RPUSH", "a", "1", "2"]));
        block(&mut c, &mut admin, 0, &["BLPOP", "b", "0"]);
        out.push(p.cmd(&["LMOVE", "a", "b", "LEFT", "RIGHT"]));
        out.push(c.reply());
        block(&mut c, &mut admin, 0, &["BZPOPMIN", "d", "0"]);
        out.push(p.cmd(&["ZADD", "c", "7", "m"]));
        out.push(p.cmd(&["ZUNIONSTORE", "d", "1", "c"]));
        out.push(c.reply());
        out.push(p.cmd(&["RENAME", "a", "b"]));
        block(&mut c, &mut admin, 0, &["BLPOP", "d", "0"]);
        out.push(p.cmd(&["RENAME", "b", "d"]));
        out.push(c.reply());
        out
    });
}

/// A same-shard LMOVE creating the destination wakes its waiter at once.
#[test]
fn same_shard_lmove_wakes_destination_waiter() {
    let ours = Proc::ringkv(4, &[]);
    let mut c = Conn::new(ours.port);
    let mut p = Conn::new(ours.port);
    let mut admin = Conn::new(ours.port);
    p.cmd(&["RPUSH", "{t}a", "1"]);
    block(&mut c, &mut admin, 0, &["BLPOP", "{t}b", "0"]);
    p.cmd(&["LMOVE", "{t}a", "{t}b", "LEFT", "RIGHT"]);
    assert_eq!(c.read(Duration::from_secs(1)), Some(kv("{t}b", "1")));
}

#[test]
fn client_unblock() {
    same_on_both(|port| {
        let mut out = Vec::new();
        let mut c = Conn::new(port);
        let mut admin = Conn::new(port);
        let id = String::from_utf8(c.cmd(&["CLIENT", "ID"])).unwrap();
        let id = id.trim_start_matches(':').trim_end().to_string();
        out.push(admin.cmd(&["CLIENT", "UNBLOCK", &id]));
        let waits: [&[&str]; 4] = [
            &["BLPOP", "a", "b", "0"],
            &["BLMOVE", "a", "b", "LEFT", "RIGHT", "0"],
            &["BZPOPMAX", "z", "0"],
            &["BLMPOP", "0", "1", "a", "LEFT"],
        ];
        for how in ["TIMEOUT", "ERROR"] {
            for w in waits {
                block(&mut c, &mut admin, 0, w);
                out.push(admin.cmd(&["CLIENT", "UNBLOCK", &id, how]));
                out.push(c.reply());
                out.push(admin.cmd(&["CLIENT", "UNBLOCK", &id, how]));
            }
        }
        block(&mut c, &mut admin, 0, &["BZMPOP", "0", "1", "z", "MIN"]);
        out.push(admin.cmd(&["CLIENT", "UNBLOCK", &id]));
        out.push(c.reply());
        c.cmd(&["HELLO", "3"]);
        block(&mut c, &mut admin, 0, &["BRPOPLPUSH", "a", "b", "0"]);
        out.push(admin.cmd(&["CLIENT", "UNBLOCK", &id, "TIMEOUT"]));
        out.push(c.reply());
        // The unblocked client is usable and its keys untouched.
        out.push(c.cmd(&["EXISTS", "a", "b", "z"]));
        out
    });
}

#[test]
fn disconnected_waiter_loses_nothing() {
    same_on_both(|port| {
        let mut out = Vec::new();
        let mut p = Conn::new(port);
        let mut admin = Conn::new(port);
        // Alone: the element stays in the list.
        let mut gone = Conn::new(port);
        block(&mut gone, &mut admin, 0, &["BLPOP", "a", "0"]);
        drop(gone);
        std::thread::sleep(Duration::from_millis(50));
        out.push(p.cmd(&["RPUSH", "a", "kept"]));
        out.push(p.cmd(&["LRANGE", "a", "0", "-1"]));
        out.push(p.cmd(&["DEL", "a"]));
        // Ahead of another waiter: the next one gets it.
        let mut gone = Conn::new(port);
        let mut next = Conn::new(port);
        block(&mut gone, &mut admin, 0, &["BLPOP", "a", "b", "0"]);
        block(&mut next, &mut admin, 1, &["BLPOP", "a", "0"]);
        drop(gone);
        std::thread::sleep(Duration::from_millis(50));
        out.push(p.cmd(&["RPUSH", "a", "v"]));
        out.push(next.reply());
        out.push(p.cmd(&["EXISTS", "a"]));
        out
    });
}

/// N clients wait on keys spread over the shards while M pushers push K
/// elements: every element is received exactly once or is still in a list.
#[test]
fn every_element_delivered_exactly_once() {
    const KEYS: [&str; 8] = ["k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8"];
    const WAITERS: usize = 8;
    const PUSHERS: usize = 4;
    const PER_PUSHER: usize = 150;
    let ours = Proc::ringkv(4, &[]);
    let port = ours.port;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let waiters: Vec<_> = (0..WAITERS)
        .map(|w| {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut c = Conn::new(port);
                let mut got = Vec::new();
                // Each waits on a rotation of the keys, ending the loop with
                // a timeout once the pushers are done.
                let mut args = vec!["BLPOP"];
                args.extend(KEYS.iter().cycle().skip(w).take(KEYS.len()));
                args.push("0.2");
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    assert!(Instant::now() < deadline, "waiter stuck");
                    let r = c.cmd(&args);
                    if r == b"*-1\r\n" {
                        if done.load(std::sync::atomic::Ordering::SeqCst) {
                            return got;
                        }
                        continue;
                    }
                    let node = common::parse_node(&r).unwrap().0;
                    let v = &node.children[1].head;
                    // "$len\r\nvalue\r\n": keep the value.
                    let s = String::from_utf8_lossy(v);
                    got.push(s.split("\r\n").nth(1).unwrap().to_string());
                }
            })
        })
        .collect();
    let pushers: Vec<_> = (0..PUSHERS)
        .map(|p| {
            std::thread::spawn(move || {
                let mut c = Conn::new(port);
                for i in 0..PER_PUSHER {
                    let key = KEYS[(i * 7 + p) % KEYS.len()];
                    let v = format!("p{p}-{i}");
                    if i % 5 == 0 {
                        // Some multi-element pushes too.
                        let v2 = format!("p{p}-{i}b");
                        c.cmd(&["RPUSH", key, &v, &v2]);
                    } else {
                        c.cmd(&["LPUSH", key, &v]);
                    }
                }
            })
        })
        .collect();
    for p in pushers {
        p.join().unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for w in waiters {
        for v in w.join().unwrap() {
            *seen.entry(v).or_default() += 1;
        }
    }
    let mut c = Conn::new(port);
    for k in KEYS {
        let r = c.cmd(&["LRANGE", k, "0", "-1"]);
        let node = common::parse_node(&r).unwrap().0;
        for e in node.children {
            let s = String::from_utf8_lossy(&e.head).into_owned();
            *seen
                .entry(s.split("\r\n").nth(1).unwrap().to_string())
                .or_default() += 1;
        }
    }
    let total = PUSHERS * (PER_PUSHER + PER_PUSHER / 5);
    assert_eq!(seen.len(), total, "elements lost");
    let dup: Vec<_> = seen.iter().filter(|(_, n)| **n != 1).collect();
    assert!(dup.is_empty(), "delivered more than once: {dup:?}");
}

/// SWAPDB serves a client blocked on a key that the swapped-in database
/// holds, as Redis does; same transcript on both servers.
#[test]
fn swapdb_serves_blocked_clients() {
    let redis = Proc::redis(&[]);
    let ours = Proc::ringkv(4, &[]);
    let mut transcripts = Vec::new();
    for (label, port) in [("redis", redis.port), ("ringkv", ours.port)] {
        let mut waiter = Conn::new(port);
        let mut other = Conn::new(port);
        waiter.send(&["SELECT", "1"]);
        let mut out = vec![waiter.reply()];
        waiter.send(&["BLPOP", "q", "0"]);
        std::thread::sleep(Duration::from_millis(200));
        other.send(&["RPUSH", "q", "hello"]);
        out.push(other.reply());
        other.send(&["SWAPDB", "0", "1"]);
        out.push(other.reply());
        out.push(
            waiter
                .read(Duration::from_secs(15))
                .unwrap_or_else(|| panic!("{label}: blocked client not served")),
        );
        other.send(&["LLEN", "q"]);
        out.push(other.reply());
        transcripts.push(out);
    }
    assert_eq!(transcripts[0], transcripts[1]);
}
