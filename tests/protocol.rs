//! Bad and unusual input, checked against a real redis-server.
//!
//! Every case sends the same raw bytes to redis-server and to ringkv (1 and 4
//! shards) and requires the same outcome: the same reply bytes, and the
//! connection left open, closed, or waiting for more input exactly as Redis
//! leaves it. Around every case a second ("bystander") connection must keep
//! working, and a fresh connection must still be accepted afterwards.
//!
//! Both servers run with `proto-max-bulk-len 1mb` (Redis's minimum) so the
//! bulk limit can be tested cheaply.

mod common;

use common::{Proc, encode_cmd, frame_len};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// How long a connection must stay silent to count as "no reply".
const IDLE: Duration = Duration::from_millis(300);
/// Upper bound for any single expected reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BULK: usize = 1024 * 1024;

/// What a connection did after a case's input.
#[derive(Clone, Copy, Debug, PartialEq)]
enum End {
    /// It answered a follow-up command: the connection is usable.
    Open,
    /// The server closed it.
    Closed,
    /// Silent and open, even after a follow-up command: the server is still
    /// waiting for the rest of an earlier request.
    Pending,
}

/// Everything observable about one case on one server.
#[derive(Debug, PartialEq)]
struct Outcome {
    replies: Vec<u8>,
    end: End,
}

/// A command whose reply marks the end of a case's replies.
#[derive(Clone, Copy)]
struct Sentinel {
    request: &'static [u8],
    reply: &'static [u8],
}

/// `ECHO sentinel`, for servers without a password.
const ECHO_SENTINEL: Sentinel = Sentinel {
    request: b"*2\r\n$4\r\nECHO\r\n$8\r\nsentinel\r\n",
    reply: b"$8\r\nsentinel\r\n",
};

/// An unknown command: its error is the same before and after AUTH.
const UNKNOWN_SENTINEL: Sentinel = Sentinel {
    request: b"*1\r\n$8\r\nsentinel\r\n",
    reply: b"-ERR unknown command 'sentinel', with args beginning with: \r\n",
};

/// How a case is sent.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Send {
    /// Input and sentinel in one write; for small inputs that end on a
    /// request boundary (or close the connection).
    Fast,
    /// Input alone, then wait until the server is quiet, then the sentinel;
    /// for big inputs and inputs that leave a request unfinished.
    Quiet,
    /// Input alone; a connection that stays quiet and open is Pending. For
    /// requests that would swallow any follow-up as their own arguments.
    Hold,
}

struct Case {
    name: String,
    input: Vec<u8>,
    send: Send,
    /// What Redis is expected to do, as documentation and as a check that
    /// the case tests what it says.
    redis_end: End,
}

fn case(name: &str, input: impl AsRef<[u8]>, redis_end: End) -> Case {
    Case {
        name: name.to_string(),
        input: input.as_ref().to_vec(),
        send: Send::Fast,
        redis_end,
    }
}

fn quiet(name: &str, input: impl AsRef<[u8]>, redis_end: End) -> Case {
    Case {
        send: Send::Quiet,
        ..case(name, input, redis_end)
    }
}

fn hold(name: &str, input: impl AsRef<[u8]>) -> Case {
    Case {
        send: Send::Hold,
        ..case(name, input, End::Pending)
    }
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

enum ReadEvent {
    Data,
    Eof,
    Timeout,
}

fn read_some(s: &mut TcpStream, buf: &mut Vec<u8>, timeout: Duration) -> ReadEvent {
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut chunk = [0u8; 65536];
    match s.read(&mut chunk) {
        Ok(0) => ReadEvent::Eof,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            ReadEvent::Data
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            ReadEvent::Timeout
        }
        // A reset after the server closed with our bytes still unread.
        Err(_) => ReadEvent::Eof,
    }
}

/// Writes, ignoring failures: the server may already have closed.
fn send_all(s: &mut TcpStream, bytes: &[u8]) {
    let _ = s.write_all(bytes);
}

/// Reads until the buffer ends with `sentinel.reply` (Open), EOF (Closed), or
/// `idle` without data (Pending).
fn read_to_sentinel(
    s: &mut TcpStream,
    out: &mut Vec<u8>,
    sentinel: Sentinel,
    idle: Duration,
) -> End {
    loop {
        if out.ends_with(sentinel.reply) {
            out.truncate(out.len() - sentinel.reply.len());
            return End::Open;
        }
        match read_some(s, out, idle) {
            ReadEvent::Data => {}
            ReadEvent::Eof => return End::Closed,
            ReadEvent::Timeout => return End::Pending,
        }
    }
}

/// Sends a case's input on a new connection and records what happens.
fn exchange(port: u16, c: &Case, sentinel: Sentinel) -> Outcome {
    let mut s = connect(port);
    let mut replies = Vec::new();
    let end = match c.send {
        Send::Fast => {
            let mut input = c.input.clone();
            input.extend_from_slice(sentinel.request);
            send_all(&mut s, &input);
            read_to_sentinel(&mut s, &mut replies, sentinel, REPLY_TIMEOUT)
        }
        Send::Quiet | Send::Hold => {
            send_all(&mut s, &c.input);
            let mut closed = false;
            loop {
                match read_some(&mut s, &mut replies, IDLE) {
                    ReadEvent::Data => {}
                    ReadEvent::Eof => {
                        closed = true;
                        break;
                    }
                    ReadEvent::Timeout => break,
                }
            }
            if closed {
                End::Closed
            } else if c.send == Send::Hold {
                End::Pending
            } else {
                send_all(&mut s, sentinel.request);
                read_to_sentinel(&mut s, &mut replies, sentinel, IDLE)
            }
        }
    };
    Outcome { replies, end }
}

/// Sends one command and reads exactly one reply.
fn roundtrip(s: &mut TcpStream, request: &[u8]) -> Option<Vec<u8>> {
    send_all(s, request);
    let mut buf = Vec::new();
    let deadline = Instant::now() + REPLY_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(n) = frame_len(&buf) {
            return Some(buf[..n].to_vec());
        }
        match read_some(s, &mut buf, REPLY_TIMEOUT) {
            ReadEvent::Data => {}
            _ => return None,
        }
    }
    None
}

fn cmd(args: &[&str]) -> Vec<u8> {
    let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
    encode_cmd(&a)
}

fn show(b: &[u8]) -> String {
    if b.len() > 300 {
        let s = String::from_utf8_lossy(&b[..300]);
        format!("{s:?}... ({} bytes)", b.len())
    } else {
        format!("{:?}", String::from_utf8_lossy(b))
    }
}

/// redis-server plus ringkv with 1 and 4 shards, configured alike.
struct Servers {
    /// redis first.
    procs: Vec<Proc>,
    sentinel: Sentinel,
}

impl Servers {
    fn start(password: Option<&str>) -> Servers {
        let dir = tempfile::tempdir().unwrap().keep();
        let conf = dir.join("ringkv.conf");
        let mut text = format!("proto-max-bulk-len {MAX_BULK}\n");
        if let Some(pw) = password {
            text.push_str(&format!("requirepass {pw}\n"));
        }
        std::fs::write(&conf, text).unwrap();
        let conf = conf.to_str().unwrap().to_string();
        let max = MAX_BULK.to_string();
        let mut redis_flags = vec!["--proto-max-bulk-len", &max];
        if let Some(pw) = password {
            redis_flags.extend(["--requirepass", pw]);
        }
        let procs = vec![
            Proc::redis(&redis_flags),
            Proc::ringkv(1, &[&conf]),
            Proc::ringkv(4, &[&conf]),
        ];
        let sentinel = if password.is_some() {
            UNKNOWN_SENTINEL
        } else {
            ECHO_SENTINEL
        };
        Servers { procs, sentinel }
    }

    fn redis(&self) -> &Proc {
        &self.procs[0]
    }

    /// Runs every case on every server; returns the mismatches.
    fn check(&mut self, cases: &[Case]) -> Vec<String> {
        let mut failures = Vec::new();
        let probe = b"*2\r\n$4\r\nECHO\r\n$5\r\nalive\r\n";
        for c in cases {
            let mut want: Option<(Outcome, Vec<u8>)> = None;
            for p in &mut self.procs {
                // A bystander connected before the case, checked after it.
                let mut bystander = connect(p.port);
                let before = roundtrip(&mut bystander, probe);
                let got = exchange(p.port, c, self.sentinel);
                let after = roundtrip(&mut bystander, probe);
                let fresh = roundtrip(&mut connect(p.port), probe);
                if !p.alive() {
                    failures.push(format!("{} [{}]: server died", c.name, p.label));
                    continue;
                }
                if before.is_none() || before != after || after != fresh {
                    failures.push(format!(
                        "{} [{}]: other clients affected: before {:?}, after {:?}, fresh {:?}",
                        c.name, p.label, before, after, fresh
                    ));
                }
                let probe_reply = after.unwrap_or_default();
                match &want {
                    None => {
                        if got.end != c.redis_end {
                            failures.push(format!(
                                "{}: redis ended {:?}, the case expects {:?} (replies {})",
                                c.name,
                                got.end,
                                c.redis_end,
                                show(&got.replies)
                            ));
                        }
                        want = Some((got, probe_reply));
                    }
                    Some((w, wprobe)) => {
                        if got != *w || probe_reply != *wprobe {
                            failures.push(format!(
                                "{} [{}]\n    input:  {}\n    redis:  {:?} {}\n    ringkv: {:?} {}",
                                c.name,
                                p.label,
                                show(&c.input),
                                w.end,
                                show(&w.replies),
                                got.end,
                                show(&got.replies)
                            ));
                        }
                    }
                }
            }
        }
        failures
    }
}

fn assert_clean(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} mismatch(es):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// True if ringkv has the command (some cases need commands other families
/// add).
fn has(name: &str) -> bool {
    ringkv::commands::lookup(name.as_bytes()).is_some()
}

#[test]
fn malformed_multibulk() {
    use End::*;
    let mut s = Servers::start(None);
    let max_body = vec![b'x'; MAX_BULK];
    let mut at_max = format!("*2\r\n$4\r\nECHO\r\n${MAX_BULK}\r\n").into_bytes();
    at_max.extend_from_slice(&max_body);
    at_max.extend_from_slice(b"\r\n");
    let cases = vec![
        case("expected $, got +", "*1\r\n+x\r\n", Closed),
        case("expected $, got :", "*2\r\n$4\r\nECHO\r\n:5\r\n", Closed),
        case("expected $, got CR", "*1\r\n\r\n", Closed),
        case("multibulk length not a number", "*abc\r\n", Closed),
        case("multibulk length empty", "*\r\n", Closed),
        case(
            "multibulk length leading zero",
            "*01\r\n$4\r\nPING\r\n",
            Closed,
        ),
        case(
            "multibulk length plus sign",
            "*+1\r\n$4\r\nPING\r\n",
            Closed,
        ),
        case("multibulk length over INT_MAX", "*2147483648\r\n", Closed),
        case(
            "multibulk length trailing space",
            "*1 \r\n$4\r\nPING\r\n",
            Closed,
        ),
        case("bulk length garbage", "*1\r\n$abc\r\nPING\r\n", Closed),
        case("bulk length empty", "*1\r\n$\r\n", Closed),
        case("bulk length -1", "*1\r\n$-1\r\n", Closed),
        case("bulk length negative", "*1\r\n$-5\r\nPING\r\n", Closed),
        case("bulk length plus sign", "*1\r\n$+4\r\nPING\r\n", Closed),
        case("bulk length leading zero", "*1\r\n$04\r\nPING\r\n", Closed),
        case(
            "bulk length beyond i64",
            "*1\r\n$99999999999999999999999\r\n",
            Closed,
        ),
        case(
            "bulk length over proto-max-bulk-len",
            format!("*2\r\n$4\r\nECHO\r\n${}\r\n", MAX_BULK + 1),
            Closed,
        ),
        case("bulk at exactly proto-max-bulk-len", at_max, Open),
        case("*0 is ignored", "*0\r\n", Open),
        case("*-1 is ignored", "*-1\r\n", Open),
        case(
            "negative count then a command",
            "*-10\r\n*1\r\n$4\r\nPING\r\n",
            Open,
        ),
        case("bulk CRLF is not checked", "*1\r\n$4\r\nPINGxx", Open),
        case("header LF is not checked", "*1\rX$4\r\nPING\r\n", Open),
        case("empty bulk as command name", "*1\r\n$0\r\n\r\n", Open),
        case(
            "commands before the error still run",
            "*1\r\n$4\r\nPING\r\nSET before-error 1\r\n*1\r\n+x\r\nSET after-error 1\r\n",
            Closed,
        ),
        case(
            "state after an error",
            "*2\r\n$3\r\nGET\r\n$12\r\nbefore-error\r\n*2\r\n$3\r\nGET\r\n$11\r\nafter-error\r\n",
            Open,
        ),
        case(
            "error after a bad bulk in a pipeline",
            "PING\r\n*2\r\n$4\r\nECHO\r\n$x\r\nhi\r\nPING\r\n",
            Closed,
        ),
        quiet(
            "too big multibulk count line",
            format!("*{}", "1".repeat(70_000)),
            Closed,
        ),
        quiet(
            "too big bulk count line",
            format!("*1\r\n${}", "1".repeat(70_000)),
            Closed,
        ),
        // Redis finds line ends with strchr, which stops at a NUL byte: a
        // header with a NUL never completes.
        quiet(
            "NUL in a multibulk count line",
            "*1\0\r\n$4\r\nPING\r\n",
            Pending,
        ),
        quiet(
            "NUL in a bulk count line",
            "*1\r\n$4\0\r\nPING\r\n",
            Pending,
        ),
        hold(
            "a huge count waits for its arguments",
            "*1000000\r\n$4\r\nECHO\r\n",
        ),
        hold(
            "a declared bulk waits for its body",
            "*2\r\n$4\r\nECHO\r\n$1000000\r\nabc",
        ),
        case(
            "NUL in a bulk body is data",
            "*2\r\n$4\r\nECHO\r\n$3\r\na\0b\r\n",
            Open,
        ),
    ];
    assert_clean(s.check(&cases));
}

#[test]
fn arity_and_arguments() {
    use End::*;
    let mut s = Servers::start(None);
    let long = "y".repeat(200);
    let mut cases = vec![
        case("GET without key", cmd(&["GET"]), Open),
        case("GET with two keys", cmd(&["GET", "a", "b"]), Open),
        case("SET without value", cmd(&["SET", "a"]), Open),
        case("ECHO without argument", cmd(&["ECHO"]), Open),
        case("MGET without key", cmd(&["MGET"]), Open),
        case("SELECT without index", cmd(&["SELECT"]), Open),
        case("SELECT not an integer", cmd(&["SELECT", "x"]), Open),
        case("SELECT trailing junk", cmd(&["SELECT", "1x"]), Open),
        case("SELECT out of range", cmd(&["SELECT", "100"]), Open),
        case("SELECT negative", cmd(&["SELECT", "-1"]), Open),
        case(
            "SELECT beyond i64",
            cmd(&["SELECT", "99999999999999999999"]),
            Open,
        ),
        case("SELECT with a space", cmd(&["SELECT", " 1"]), Open),
        case("unknown command", cmd(&["FOO", "a", "b"]), Open),
        case(
            "unknown command, long args",
            cmd(&["FOO", &long, &long]),
            Open,
        ),
        case(
            "unknown command, long name",
            cmd(&["F".repeat(200).as_str()]),
            Open,
        ),
        case(
            "unknown command, CRLF in args",
            cmd(&["FOO", "a\r\nb"]),
            Open,
        ),
        case("wrong arity inline", "GET\r\nSET a\r\n", Open),
    ];
    // Commands that other families add; checked once they exist.
    let optional: &[(&str, &[&str])] = &[
        ("getrange", &["GETRANGE", "k", "a", "b"]),
        ("incrby", &["INCRBY", "k", "x"]),
        ("expire", &["EXPIRE", "k", "x"]),
        ("setex", &["SETEX", "k", "x", "v"]),
        ("setrange", &["SETRANGE", "k", "-1", "v"]),
        ("getrange", &["GETRANGE", "k", "0"]),
    ];
    for (name, args) in optional {
        if has(name) {
            cases.push(case(&args.join(" "), cmd(args), Open));
        }
    }
    assert_clean(s.check(&cases));
}

#[test]
fn inline_commands() {
    use End::*;
    let mut s = Servers::start(None);
    let big_inline = format!("ECHO {}\r\n", "a".repeat(60_000));
    let cases = vec![
        case("PING CRLF", "PING\r\n", Open),
        case("PING LF", "PING\n", Open),
        case("lower case", "ping\r\n", Open),
        case("surrounding blanks", "  \t PING \t  \r\n", Open),
        case(
            "form feed and vertical tab are blanks",
            "\x0c\x0bPING\r\n",
            Open,
        ),
        case("vertical tab inside a word", "ECHO a\x0bb\r\n", Open),
        case("double quotes", "ECHO \"a b\"\r\n", Open),
        case("single quotes", "ECHO 'a b'\r\n", Open),
        case("hex escapes", "ECHO \"\\x41\\x42\\x7a\"\r\n", Open),
        case("bad hex escape", "ECHO \"\\xZZ\"\r\n", Open),
        case(
            "C escapes",
            "ECHO \"a\\nb\\tc\\rd\\be\\af\\\\g\\\"h\"\r\n",
            Open,
        ),
        case("escaped single quote", "ECHO 'it\\'s'\r\n", Open),
        case("backslash in single quotes", "ECHO 'a\\nb'\r\n", Open),
        case("empty quoted argument", "ECHO \"\"\r\n", Open),
        case("quoted empty command", "\"\"\r\n", Open),
        case("unbalanced double quote", "ECHO \"abc\r\n", Closed),
        case("unbalanced single quote", "ECHO 'abc\r\n", Closed),
        case("text after closing quote", "ECHO \"a\"b\r\n", Closed),
        case("text after closing single quote", "ECHO 'a'b\r\n", Closed),
        case(
            "closing quote then vertical tab",
            "ECHO \"a\"\x0bb\r\n",
            Open,
        ),
        case("CR inside the line", "PI\rNG\r\n", Open),
        case(
            "SET and GET inline",
            "SET inline-k \"v 1\"\r\nGET inline-k\r\n",
            Open,
        ),
        case("empty line", "\r\n", Open),
        case("bare LF", "\n", Open),
        case("blank lines", "\r\n\n  \r\n\t\n", Open),
        case(
            "blank lines between commands",
            "PING\r\n\r\n\nPING\r\n",
            Open,
        ),
        case("long inline request", big_inline, Open),
        case("non-UTF-8 argument", b"ECHO \xff\xfe\r\n".as_slice(), Open),
        quiet("too big inline request", "a".repeat(70_000), Closed),
        quiet(
            "too big inline request after a command",
            format!("PING\r\n{}", "a".repeat(70_000)),
            Closed,
        ),
        // strchr stops at the NUL: the line never ends.
        quiet("NUL in an inline line", "PING\0\r\n", Pending),
    ];
    assert_clean(s.check(&cases));
}

#[test]
fn pipelines() {
    use End::*;
    let mut s = Servers::start(None);
    let mixed = concat!(
        "PING\r\n",
        "*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n",
        "ECHO yo\r\n",
        "\r\n",
        "*0\r\n",
        "*1\r\n$4\r\nPING\r\n",
        "SET pa 1\r\n",
        "*3\r\n$3\r\nSET\r\n$2\r\npb\r\n$1\r\n2\r\n",
        "*2\r\n$3\r\nGET\r\n$2\r\npa\r\n",
        "GET pb\r\n",
        "MGET pa pb pc\r\n",
        "*-1\r\n",
        "ECHO \"last one\"\r\n",
    );
    // Keys spread over shards, with SELECT switching databases mid-batch.
    let mut dbs = String::new();
    for k in ["a", "b", "c", "d", "e", "f", "g", "h"] {
        dbs.push_str(&format!(
            "SET db-{k} zero\r\nSELECT 1\r\nSET db-{k} one\r\n"
        ));
        dbs.push_str(&format!("GET db-{k}\r\nSELECT 0\r\nGET db-{k}\r\n"));
    }
    dbs.push_str("MGET db-a db-b db-c db-d db-e db-f db-g db-h\r\n");
    let cases = vec![
        case("mixed inline and multibulk", mixed, Open),
        case("SELECT inside a cross-shard pipeline", dbs, Open),
        case(
            "error mid-pipeline keeps the earlier replies",
            "SET pe 1\r\nGET pe\r\nMGET pa pe\r\n*1\r\n$x\r\nGET pe\r\n",
            Closed,
        ),
        case(
            "QUIT mid-pipeline",
            "SET pq 1\r\nQUIT\r\nSET pq 2\r\n",
            Closed,
        ),
        case("after QUIT", "GET pq\r\n", Open),
    ];
    assert_clean(s.check(&cases));
}

/// With `requirepass`, Redis caps multibulk counts at 10 and bulk lengths
/// at 16 KiB until the client authenticates.
#[test]
fn unauthenticated_limits() {
    use End::*;
    let mut s = Servers::start(Some("pw"));
    let ten: Vec<&str> = std::iter::repeat_n("ECHO", 10).collect();
    let mut bulk_16k = b"*2\r\n$4\r\nECHO\r\n$16384\r\n".to_vec();
    bulk_16k.extend(std::iter::repeat_n(b'z', 16384));
    bulk_16k.extend_from_slice(b"\r\n");
    let cases = vec![
        case("PING needs AUTH", "PING\r\n", Open),
        case("GET needs AUTH", cmd(&["GET", "a"]), Open),
        case("wrong arity before AUTH", cmd(&["GET"]), Open),
        case("unknown command before AUTH", cmd(&["FOO", "x"]), Open),
        case("multibulk of 10", cmd(&ten), Open),
        case("multibulk of 11", "*11\r\n", Closed),
        case(
            "multibulk of 11 with arguments",
            cmd(&[ten.as_slice(), &["x"]].concat()),
            Closed,
        ),
        case("bulk of 16384", bulk_16k, Open),
        case("bulk of 16385", "*2\r\n$4\r\nECHO\r\n$16385\r\n", Closed),
        case(
            "inline requests are not capped",
            format!("ECHO {}\r\n", "a ".repeat(20)),
            Open,
        ),
        case(
            "long inline request",
            format!("ECHO {}\r\n", "a".repeat(20_000)),
            Open,
        ),
        case("QUIT works before AUTH", "QUIT\r\n", Closed),
    ];
    assert_clean(s.check(&cases));

    // After AUTH the limits are gone (once ringkv has AUTH).
    if has("auth") {
        let mut big = b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n".to_vec();
        big.extend(cmd(&[ten.as_slice(), &["x", "y"]].concat()));
        big.extend(b"*2\r\n$4\r\nECHO\r\n$20000\r\n");
        big.extend(std::iter::repeat_n(b'z', 20000));
        big.extend_from_slice(b"\r\n");
        assert_clean(s.check(&[case("no limits after AUTH", big, Open)]));
    } else {
        eprintln!("ringkv has no AUTH yet: skipping the authenticated half");
    }
    let _ = s.redis();
}

/// A request that arrives in pieces gets no reply until it is complete, and
/// then exactly its reply.
#[test]
fn unterminated_requests() {
    let s = Servers::start(None);
    let set = cmd(&["SET", "split", "hello"]);
    let get = cmd(&["GET", "split"]);
    let inline = b"ECHO \"in line\"\r\n".to_vec();
    let mut failures = Vec::new();
    let mut expected: Vec<Vec<u8>> = Vec::new();
    for (pi, p) in s.procs.iter().enumerate() {
        let mut bystander = connect(p.port);
        let mut log = Vec::new();
        for req in [&set, &get, &inline] {
            for split in 1..req.len() {
                let mut c = connect(p.port);
                send_all(&mut c, &req[..split]);
                let mut early = Vec::new();
                // A long wait at one split point, a short one at the others.
                let wait = if split == req.len() / 2 {
                    IDLE
                } else {
                    Duration::from_millis(30)
                };
                if !matches!(read_some(&mut c, &mut early, wait), ReadEvent::Timeout) {
                    failures.push(format!(
                        "[{}] {} split at {split}: answered early: {}",
                        p.label,
                        show(req),
                        show(&early)
                    ));
                }
                // Others are served while this request is half-sent.
                let b = roundtrip(&mut bystander, &get);
                send_all(&mut c, &req[split..]);
                let r = roundtrip(&mut c, &cmd(&["ECHO", "next"]));
                log.push((b, early, r));
            }
        }
        // Per split: the bystander's reply, early bytes (none), the reply.
        let flat: Vec<u8> = log
            .iter()
            .flat_map(|(b, e, r)| {
                let mut v = b.clone().unwrap_or_default();
                v.extend(e);
                v.extend(r.clone().unwrap_or_default());
                v
            })
            .collect();
        if pi == 0 {
            expected.push(flat);
        } else if flat != expected[0] {
            failures.push(format!(
                "[{}] differs from redis:\n    redis:  {}\n    ringkv: {}",
                p.label,
                show(&expected[0]),
                show(&flat)
            ));
        }
    }
    assert_clean(failures);
}

/// Reads replies from `s` until `n` complete replies arrived.
fn read_replies(s: &mut TcpStream, n: usize) -> Vec<Vec<u8>> {
    let mut buf = Vec::new();
    let mut out = Vec::with_capacity(n);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pos = 0;
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "timed out after {} replies",
            out.len()
        );
        while out.len() < n {
            match frame_len(&buf[pos..]) {
                Some(len) => {
                    out.push(buf[pos..pos + len].to_vec());
                    pos += len;
                }
                None => break,
            }
        }
        if out.len() < n {
            match read_some(s, &mut buf, REPLY_TIMEOUT) {
                ReadEvent::Data => {}
                _ => panic!("connection ended after {} of {n} replies", out.len()),
            }
        }
    }
    out
}

/// 10k SETs (and GETs and MGETs) in one write, over every shard: all replies
/// come back, in order, identical to Redis's.
#[test]
fn large_pipelined_batch() {
    let s = Servers::start(None);
    const N: usize = 10_000;
    let mut input = Vec::new();
    let mut count = 0;
    for i in 0..N {
        input.extend(cmd(&["SET", &format!("key:{i}"), &format!("value-{i}")]));
        count += 1;
        if i % 7 == 0 {
            input.extend(cmd(&["GET", &format!("key:{}", i / 2)]));
            count += 1;
        }
        if i % 1000 == 999 {
            let keys: Vec<String> = (i - 20..=i).map(|k| format!("key:{k}")).collect();
            let mut a = vec!["MGET"];
            a.extend(keys.iter().map(|k| k.as_str()));
            input.extend(cmd(&a));
            count += 1;
            input.extend(b"PING\r\n");
            count += 1;
        }
    }
    let mut expected: Option<Vec<Vec<u8>>> = None;
    for p in &s.procs {
        let mut c = connect(p.port);
        let mut writer = c.try_clone().unwrap();
        let data = input.clone();
        // Write from another thread: the replies must be read meanwhile.
        let w = std::thread::spawn(move || writer.write_all(&data).unwrap());
        let replies = read_replies(&mut c, count);
        w.join().unwrap();
        assert_eq!(replies.len(), count);
        let mut bystander = connect(p.port);
        assert_eq!(
            roundtrip(&mut bystander, &cmd(&["GET", "key:9999"])).unwrap(),
            b"$10\r\nvalue-9999\r\n"
        );
        match &expected {
            None => expected = Some(replies),
            Some(want) => {
                let first_diff = want.iter().zip(&replies).position(|(a, b)| a != b);
                assert!(
                    first_diff.is_none(),
                    "[{}] reply {} differs: redis {} ringkv {}",
                    p.label,
                    first_diff.unwrap(),
                    show(&want[first_diff.unwrap()]),
                    show(&replies[first_diff.unwrap()])
                );
            }
        }
    }
}

/// Clients that vanish mid-request change nothing and disturb nobody.
#[test]
fn client_disconnects_midway() {
    let s = Servers::start(None);
    let get = |s: &mut TcpStream, k: &str| roundtrip(s, &cmd(&["GET", k])).unwrap();
    for p in &s.procs {
        let mut bystander = connect(p.port);
        assert_eq!(get(&mut bystander, "gone"), b"$-1\r\n");

        // Half a SET, then gone.
        let mut a = connect(p.port);
        let set = cmd(&["SET", "gone", "value"]);
        send_all(&mut a, &set[..set.len() - 4]);
        drop(a);

        // A complete SET followed by half a SET, then gone without reading.
        let mut b = connect(p.port);
        let mut input = cmd(&["SET", "done", "yes"]);
        let half = cmd(&["SET", "gone2", "value"]);
        input.extend_from_slice(&half[..half.len() - 3]);
        send_all(&mut b, &input);
        let _ = b.shutdown(Shutdown::Both);
        drop(b);

        // A promised huge request, then gone.
        let mut c = connect(p.port);
        send_all(&mut c, b"*3000\r\n$3\r\nSET\r\n");
        drop(c);

        // A big cross-shard pipeline whose replies nobody reads.
        let mut d = connect(p.port);
        let mut batch = Vec::new();
        for i in 0..2000 {
            batch.extend(cmd(&["SET", &format!("bulk:{i}"), "v"]));
            batch.extend(cmd(&["MGET", "bulk:1", "bulk:2", "bulk:3"]));
        }
        let _ = d.set_write_timeout(Some(Duration::from_secs(5)));
        send_all(&mut d, &batch);
        drop(d);

        // The complete SET lands; the halves never do.
        let deadline = Instant::now() + Duration::from_secs(5);
        while get(&mut bystander, "done") != b"$3\r\nyes\r\n" {
            assert!(
                Instant::now() < deadline,
                "[{}] SET done never ran",
                p.label
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(get(&mut bystander, "gone"), b"$-1\r\n", "[{}]", p.label);
        assert_eq!(get(&mut bystander, "gone2"), b"$-1\r\n", "[{}]", p.label);
        let mut fresh = connect(p.port);
        assert_eq!(roundtrip(&mut fresh, b"PING\r\n").unwrap(), b"+PONG\r\n");
    }
    for mut p in s.procs {
        assert!(p.alive(), "{} died", p.label);
    }
}

/// Error texts that quote raw client bytes: Redis copies the bytes as they
/// are, and so must ringkv.
#[test]
fn non_utf8_bytes_in_errors() {
    use End::*;
    let mut s = Servers::start(None);
    let cases = vec![
        case("expected $, got 0xff", b"*1\r\n\xff\r\n".as_slice(), Closed),
        case(
            "unknown non-UTF-8 command",
            b"\xff\xfe a\r\n".as_slice(),
            Open,
        ),
        case(
            "unknown command, non-UTF-8 argument",
            b"FOO \xff\r\n".as_slice(),
            Open,
        ),
        case(
            "unknown command, NUL in name and argument",
            b"*3\r\n$3\r\nF\0O\r\n$3\r\na\0b\r\n$1\r\nc\r\n".as_slice(),
            Open,
        ),
        case(
            "unknown command, non-UTF-8 long arguments",
            [
                b"FOO ".as_slice(),
                &[0xe9; 100],
                b" ",
                &[0xe9; 100],
                b"\r\n",
            ]
            .concat(),
            Open,
        ),
    ];
    assert_clean(s.check(&cases));
}

/// A request with 100k arguments, written in small pieces so the server sees
/// it over many reads, gets the same reply as from Redis, in bounded time.
/// (A parser that rescans the request on every read is quadratic here.)
#[test]
fn huge_request_in_many_reads() {
    let s = Servers::start(None);
    const KEYS: usize = 100_000;
    let keys: Vec<String> = (0..KEYS).map(|i| format!("many:{i}")).collect();
    let mut args = vec!["MGET"];
    args.extend(keys.iter().map(|k| k.as_str()));
    let request = cmd(&args);
    let mut want: Option<Vec<u8>> = None;
    for p in &s.procs {
        let mut c = connect(p.port);
        for k in ["many:0", "many:500", "many:99999"] {
            assert_eq!(roundtrip(&mut c, &cmd(&["SET", k, k])).unwrap(), b"+OK\r\n");
        }
        let start = Instant::now();
        let mut writer = c.try_clone().unwrap();
        let data = request.clone();
        let w = std::thread::spawn(move || {
            for piece in data.chunks(4096) {
                writer.write_all(piece).unwrap();
            }
        });
        let reply = read_replies(&mut c, 1).pop().unwrap();
        w.join().unwrap();
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(30),
            "[{}] took {took:?}",
            p.label
        );
        match &want {
            None => want = Some(reply),
            Some(w) => assert!(reply == *w, "[{}] reply differs from redis", p.label),
        }
    }
}
