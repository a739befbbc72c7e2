//! Test harness: start ringkv and redis-server on free loopback ports, talk
//! to them with the `redis` crate or raw RESP, and run differential scripts.
//!
//! Every server a test starts is killed when its handle drops, so a test only
//! ever stops its own processes.
#![allow(dead_code)]

pub mod data;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server process owned by the test.
pub struct Proc {
    /// Port on 127.0.0.1.
    pub port: u16,
    child: Child,
    /// Label for messages ("ringkv/4", "redis").
    pub label: String,
    /// Working directory (ringkv) or `--dir` (redis): where `dump.rdb` goes.
    pub dir: std::path::PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The file in a server's directory that receives its log.
const LOG: &str = "server.log";

/// Waits until the server answers PING; on failure the panic shows the end
/// of its log (`log`, where its stderr goes).
fn wait_ready(port: u16, child: &mut Child, label: &str, log: &std::path::Path, extra: &[&str]) {
    let tail = || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    };
    // Under requirepass, NOAUTH comes before LOADING (as in Redis), so the
    // probe authenticates first.
    let probe = match password(extra) {
        Some(pw) => format!("AUTH {pw}\r\nPING\r\n"),
        None => "PING\r\n".to_string(),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{label} exited during startup: {status}\n{}", tail());
        }
        if answers_ping(port, &probe) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{label} did not start on port {port}\n{}", tail());
}

/// Whether the server on `port` answers `probe` (lines ending in a PING)
/// with +PONG last, rather than -LOADING or nothing.
pub fn answers_ping(port: u16, probe: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(probe.as_bytes()).is_err() {
        return false;
    }
    // Every reply to the probe is one line.
    let lines = probe.matches("\r\n").count();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 128];
    while buf.iter().filter(|&&b| b == b'\n').count() < lines {
        match s.read(&mut chunk) {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return false,
        }
    }
    buf.ends_with(b"+PONG\r\n")
}

/// The `requirepass` among a server's flags, or in the config file they name.
fn password(extra: &[&str]) -> Option<String> {
    if let Some(i) = extra.iter().position(|a| *a == "--requirepass") {
        return extra.get(i + 1).map(|s| s.to_string());
    }
    let conf = extra.iter().find(|a| a.ends_with(".conf"))?;
    let text = std::fs::read_to_string(conf).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("requirepass "))
        .map(|pw| pw.trim().to_string())
}

impl Proc {
    /// Starts ringkv with `shards` shards and extra flags, in a fresh
    /// working directory (where it saves `dump.rdb` by default).
    pub fn ringkv(shards: usize, extra: &[&str]) -> Proc {
        let dir = tempfile::tempdir().unwrap().keep();
        Proc::ringkv_in(&dir, shards, extra)
    }

    /// Starts ringkv in working directory `dir` (to restart on its files).
    pub fn ringkv_in(dir: &std::path::Path, shards: usize, extra: &[&str]) -> Proc {
        let mut p = Proc::spawn_ringkv(dir, shards, extra);
        wait_ready(p.port, &mut p.child, &p.label, &dir.join(LOG), extra);
        p
    }

    /// Starts ringkv in `dir` on `port` (to restart on the same port).
    pub fn ringkv_on(dir: &std::path::Path, port: u16, shards: usize, extra: &[&str]) -> Proc {
        let mut p = Proc::spawn_ringkv_on(dir, port, shards, extra);
        wait_ready(p.port, &mut p.child, &p.label, &dir.join(LOG), extra);
        p
    }

    /// Starts ringkv in `dir` without waiting for it to answer PING.
    pub fn spawn_ringkv(dir: &std::path::Path, shards: usize, extra: &[&str]) -> Proc {
        Proc::spawn_ringkv_on(dir, free_port(), shards, extra)
    }

    /// Starts ringkv in `dir` on `port` without waiting for it.
    pub fn spawn_ringkv_on(
        dir: &std::path::Path,
        port: u16,
        shards: usize,
        extra: &[&str],
    ) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringkv"));
        cmd.current_dir(dir);
        cmd.args([
            "--port",
            &port.to_string(),
            "--shards",
            &shards.to_string(),
            "--loglevel",
            "warning",
        ]);
        cmd.args(extra);
        let log = std::fs::File::create(dir.join(LOG)).expect("create the server log");
        cmd.stdout(log.try_clone().expect("clone the log"))
            .stderr(log);
        let child = cmd.spawn().expect("start ringkv");
        let label = format!("ringkv/{shards}");
        Proc {
            port,
            child,
            label,
            dir: dir.to_path_buf(),
        }
    }

    /// Starts a real redis-server with persistence off.
    pub fn redis(extra: &[&str]) -> Proc {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap().keep();
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--bind",
            "127.0.0.1",
        ]);
        cmd.args(["--dir", dir.to_str().unwrap()]);
        cmd.args(extra);
        let log = std::fs::File::create(dir.join(LOG)).expect("create the server log");
        cmd.stdout(log).stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .expect("start redis-server (apt-get install redis-server)");
        wait_ready(port, &mut child, "redis", &dir.join(LOG), extra);
        Proc {
            port,
            child,
            label: "redis".into(),
            dir,
        }
    }

    /// A `redis` crate connection.
    pub fn client(&self) -> redis::Connection {
        let c = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port)).unwrap();
        c.get_connection_with_timeout(Duration::from_secs(5))
            .unwrap()
    }

    /// A raw RESP connection.
    pub fn raw(&self) -> Raw {
        Raw::connect(self.port)
    }

    /// Sends SIGKILL.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// A raw RESP connection that returns replies as bytes.
pub struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// Connects to 127.0.0.1:`port`.
    pub fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    /// Changes how long a read may wait (20 s by default).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
    }

    /// Writes raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends a command as a RESP array of bulk strings.
    pub fn send_cmd(&mut self, args: &[&[u8]]) {
        self.send(&encode_cmd(args));
    }

    /// Sends a command and reads its reply.
    pub fn cmd(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.send_cmd(args);
        self.read_reply()
            .expect("connection closed before the reply")
    }

    /// Sends a command and reads its reply; None on timeout or close.
    pub fn try_cmd(&mut self, args: &[&[u8]]) -> Option<Vec<u8>> {
        self.send_cmd(args);
        loop {
            if let Some(n) = frame_len(&self.buf) {
                let out = self.buf[..n].to_vec();
                self.buf.drain(..n);
                return Some(out);
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Sends a command given as strings.
    pub fn cmd_str(&mut self, args: &[&str]) -> Vec<u8> {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        self.cmd(&a)
    }

    /// Reads one full reply; None if the server closed the connection.
    pub fn read_reply(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(n) = frame_len(&self.buf) {
                let out = self.buf[..n].to_vec();
                self.buf.drain(..n);
                return Some(out);
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// True if the server closed the connection (read returns EOF).
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0) | Err(_))
    }
}

/// Encodes a command as a RESP array.
pub fn encode_cmd(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// One parsed reply: its header line (and body for blobs) plus children.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Node {
    /// Header bytes, including the blob body for bulk-like types.
    pub head: Vec<u8>,
    /// Elements of aggregates (for maps: key, value, key, value...).
    pub children: Vec<Node>,
}

impl Node {
    /// Serializes back to RESP.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = self.head.clone();
        for c in &self.children {
            out.extend(c.bytes());
        }
        out
    }

    /// Sorts elements (map entries as pairs) recursively at the top level.
    pub fn sorted(mut self) -> Node {
        let t = self.head.first().copied();
        if matches!(t, Some(b'%') | Some(b'|')) {
            let mut pairs: Vec<(Node, Node)> = self
                .children
                .chunks(2)
                .map(|c| (c[0].clone(), c[1].clone()))
                .collect();
            pairs.sort();
            self.children = pairs.into_iter().flat_map(|(a, b)| [a, b]).collect();
        } else {
            self.children.sort();
        }
        self
    }
}

fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    buf[from..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| from + i)
}

/// Parses one reply from `buf`.
pub fn parse_node(buf: &[u8]) -> Option<(Node, usize)> {
    if buf.is_empty() {
        return None;
    }
    let le = line_end(buf, 0)?;
    let line = &buf[1..le];
    let mut pos = le + 2;
    match buf[0] {
        b'$' | b'=' | b'!' => {
            let n: i64 = std::str::from_utf8(line).ok()?.parse().ok()?;
            if n < 0 {
                return Some((
                    Node {
                        head: buf[..pos].to_vec(),
                        children: vec![],
                    },
                    pos,
                ));
            }
            let end = pos + n as usize + 2;
            if buf.len() < end {
                return None;
            }
            Some((
                Node {
                    head: buf[..end].to_vec(),
                    children: vec![],
                },
                end,
            ))
        }
        b'*' | b'%' | b'~' | b'>' | b'|' => {
            let n: i64 = std::str::from_utf8(line).ok()?.parse().ok()?;
            let count = if n < 0 {
                0
            } else if matches!(buf[0], b'%' | b'|') {
                2 * n
            } else {
                n
            };
            let head = buf[..pos].to_vec();
            let mut children = Vec::new();
            for _ in 0..count {
                let (c, used) = parse_node(&buf[pos..])?;
                pos += used;
                children.push(c);
            }
            Some((Node { head, children }, pos))
        }
        _ => Some((
            Node {
                head: buf[..pos].to_vec(),
                children: vec![],
            },
            pos,
        )),
    }
}

/// Length of the first complete reply in `buf`.
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    parse_node(buf).map(|(_, n)| n)
}

/// How a script line's replies are compared.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Byte for byte.
    Exact,
    /// Aggregates compared as multisets (SMEMBERS, KEYS...).
    Sorted,
    /// Only the reply type (first byte) must match.
    Type,
    /// Run on both, compare nothing.
    Any,
}

/// A parsed differential script line.
pub struct Step {
    /// Line number in the file.
    pub line: usize,
    /// Comparison mode.
    pub mode: Mode,
    /// Command arguments.
    pub args: Vec<Vec<u8>>,
    /// Sleep before the command, in ms (`!sleep N`).
    pub sleep_ms: u64,
}

/// Parses a script: one command per line in redis-cli syntax (double quotes
/// and `\xHH` escapes work). `#` starts a comment line. A line may start with
/// `!sorted`, `!type` or `!any` to relax the comparison, or be `!sleep MS`.
pub fn parse_script(text: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut sleep_ms = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (mode, rest) = if let Some(r) = line.strip_prefix("!sorted ") {
            (Mode::Sorted, r)
        } else if let Some(r) = line.strip_prefix("!type ") {
            (Mode::Type, r)
        } else if let Some(r) = line.strip_prefix("!any ") {
            (Mode::Any, r)
        } else if let Some(r) = line.strip_prefix("!sleep ") {
            sleep_ms += r.trim().parse::<u64>().expect("!sleep takes milliseconds");
            continue;
        } else {
            (Mode::Exact, line)
        };
        let args = ringkv::parse::split_args(rest.as_bytes())
            .unwrap_or_else(|| panic!("line {}: unbalanced quotes", i + 1));
        steps.push(Step {
            line: i + 1,
            mode,
            args: args.into_iter().map(|b| b.to_vec()).collect(),
            sleep_ms,
        });
        sleep_ms = 0;
    }
    steps
}

/// Compares two replies under `mode`.
pub fn same(mode: Mode, a: &[u8], b: &[u8]) -> bool {
    match mode {
        Mode::Exact => a == b,
        Mode::Any => true,
        Mode::Type => a.first() == b.first(),
        Mode::Sorted => match (parse_node(a), parse_node(b)) {
            (Some((x, _)), Some((y, _))) => x.sorted() == y.sorted(),
            _ => a == b,
        },
    }
}

/// Runs a script against ringkv (1 and 4 shards) and redis-server, over RESP2
/// and RESP3, and returns every mismatch as a readable line.
pub fn diff_script(
    name: &str,
    text: &str,
    ringkv_flags: &[&str],
    redis_flags: &[&str],
) -> Vec<String> {
    let steps = parse_script(text);
    let redis = Proc::redis(redis_flags);
    let ours = [Proc::ringkv(1, ringkv_flags), Proc::ringkv(4, ringkv_flags)];
    let mut failures = Vec::new();
    for proto in [2, 3] {
        for rk in &ours {
            let mut a = redis.raw();
            let mut b = rk.raw();
            for c in [&mut a, &mut b] {
                c.cmd_str(&["FLUSHALL"]);
                if proto == 3 {
                    c.cmd_str(&["HELLO", "3"]);
                }
            }
            for step in &steps {
                if step.sleep_ms > 0 {
                    std::thread::sleep(Duration::from_millis(step.sleep_ms));
                }
                let args: Vec<&[u8]> = step.args.iter().map(|a| a.as_slice()).collect();
                let want = a.cmd(&args);
                let Some(got) = b.try_cmd(&args) else {
                    panic!(
                        "{name}:{} [{} RESP{proto}] no reply within the deadline to {}",
                        step.line,
                        rk.label,
                        String::from_utf8_lossy(&step.args.join(&b' '))
                    );
                };
                if !same(step.mode, &want, &got) {
                    failures.push(format!(
                        "{name}:{} [{} RESP{proto}] {}\n    redis:  {:?}\n    ringkv: {:?}",
                        step.line,
                        rk.label,
                        String::from_utf8_lossy(&step.args.join(&b' ')),
                        String::from_utf8_lossy(&want),
                        String::from_utf8_lossy(&got),
                    ));
                }
            }
        }
    }
    failures
}

/// Runs tests/clients/redis_py.py against `port` with the given parts, using
/// the redis-py that tests/run.sh installs in target/clients-venv.
pub fn redis_py(port: u16, parts: &[&str]) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("target/clients-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run tests/run.sh, which installs redis-py",
        python.display()
    );
    let out = Command::new(python)
        .arg(root.join("tests/clients/redis_py.py"))
        .arg(port.to_string())
        .args(parts)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "redis-py {parts:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
