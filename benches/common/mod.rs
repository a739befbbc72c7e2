//! Helpers shared by the growth and latency benches: start a server on a
//! free port, pin threads, encode RESP, read /proc.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use ringkv::server::usable_cpus;

/// Restricts the calling thread (pid 0) to `cpus`.
pub fn pin_current(cpus: &[usize]) {
    // SAFETY: builds a cpu_set_t and applies it to the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// A server started by the benchmark; killed and reaped on drop.
pub struct Server {
    pub child: Child,
    pub port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// Starts ringkv (1 shard) or redis-server on a free port, pinned to
/// `server_cpu` if given, and waits until it answers PING.
pub fn start_server(kind: &str, server_cpu: Option<usize>) -> Server {
    let port = free_port();
    let mut cmd = match kind {
        "redis" => {
            let mut c = Command::new("redis-server");
            c.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"]);
            c
        }
        _ => {
            let bin = std::env::var("RINGKV_BIN").unwrap_or_else(|_| {
                format!("{}/target/release/ringkv", env!("CARGO_MANIFEST_DIR"))
            });
            let mut c = Command::new(&bin);
            c.args(["--shards", "1", "--port", &port.to_string()])
                .args(["--loglevel", "warning", "--save", ""]);
            c
        }
    };
    cmd.stdout(Stdio::null()).stderr(Stdio::inherit());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Die with the benchmark even if it is killed without cleanup.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if let Some(cpu) = server_cpu {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
            }
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap_or_else(|e| {
        panic!("cannot start {kind} ({e}); for ringkv run `cargo build --release` first")
    });
    let mut server = Server { child, port };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("{kind} exited during startup: {status}");
        }
        if let Ok(mut c) = connect(port)
            && c.write_all(b"*1\r\n$4\r\nPING\r\n").is_ok()
        {
            let mut buf = [0u8; 7];
            if c.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n" {
                return server;
            }
        }
        assert!(Instant::now() < deadline, "{kind} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Appends one RESP command to `out`.
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn connect(port: u16) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    Ok(s)
}
