//! The stock Redis tools work against ringkv.
//!
//! redis-cli runs the same invocations against redis-server and ringkv (1 and
//! 4 shards) and must print the same output; `redis-cli --pipe` loads a
//! generated batch; redis-benchmark runs briefly against 4 shards, with and
//! without pipelining, and must finish with no errors and non-zero rates.
//! Every tool run is killed if it outlives its time limit.

mod common;

use common::Proc;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a finished tool printed.
#[derive(Debug, PartialEq)]
struct Run {
    stdout: String,
    stderr: String,
    success: bool,
}

/// Runs `program args`, feeding `stdin`, killing it after `limit`.
fn run_tool(program: &str, args: &[&str], stdin: &[u8], limit: Duration) -> Run {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {program} (apt-get install redis-tools): {e}"));
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{program} {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = feeder.join();
    Run {
        stdout: String::from_utf8_lossy(&out_reader.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned(),
        success: status.success(),
    }
}

fn cli(p: &Proc, args: &[&str], stdin: &[u8]) -> Run {
    let port = p.port.to_string();
    let mut all = vec!["-p", port.as_str()];
    all.extend_from_slice(args);
    run_tool("redis-cli", &all, stdin, Duration::from_secs(30))
}

/// True if ringkv has the command.
fn has(name: &str) -> bool {
    ringkv::commands::lookup(name.as_bytes()).is_some()
}

/// redis-server, ringkv/1 and ringkv/4.
fn servers() -> Vec<Proc> {
    vec![Proc::redis(&[]), Proc::ringkv(1, &[]), Proc::ringkv(4, &[])]
}

#[test]
fn redis_cli_commands() {
    let procs = servers();
    // (arguments, stdin), run in this order on every server.
    let mut steps: Vec<(Vec<&str>, &[u8])> = vec![
        (vec!["flushall"], b""),
        (vec!["set", "a", "b"], b""),
        (vec!["get", "a"], b""),
        (vec!["--no-raw", "get", "a"], b""),
        (vec!["--no-raw", "get", "missing"], b""),
        (vec!["get", "missing"], b""),
        (vec!["--no-raw", "mget", "a", "missing", "a"], b""),
        (vec!["mget", "a", "missing", "a"], b""),
        (vec!["ping"], b""),
        (vec!["--no-raw", "ping"], b""),
        (vec!["echo", "hello world"], b""),
        (vec!["--no-raw", "echo", "quote\"and\\backslash"], b""),
        (vec!["set", "utf8", "héllo ✓"], b""),
        (vec!["--no-raw", "get", "utf8"], b""),
        (vec!["get", "utf8"], b""),
        (vec!["--no-raw", "foo", "bar"], b""),
        (vec!["foo", "bar"], b""),
        (vec!["--no-raw", "get"], b""),
        (vec!["--no-raw", "select", "x"], b""),
        // Database selection on the command line.
        (vec!["-n", "3", "set", "a", "in-db-3"], b""),
        (vec!["-n", "3", "get", "a"], b""),
        (vec!["get", "a"], b""),
        // RESP3.
        (vec!["-3", "--no-raw", "mget", "a", "missing"], b""),
        (vec!["-3", "get", "a"], b""),
        // Last argument from standard input.
        (vec!["-x", "set", "from-stdin"], b"line one\nline two"),
        (vec!["--no-raw", "get", "from-stdin"], b""),
        // Commands read from standard input, one per line (inline syntax).
        (
            vec![],
            b"set in1 v1\nget in1\nset \"in 2\" \"quoted value\"\nget \"in 2\"\nmget in1 \"in 2\" nope\n",
        ),
        (
            vec!["--no-raw"],
            b"get in1\nping\nfoo\necho \"a\\x41b\"\n",
        ),
        // Repeat and multiple databases.
        (vec!["-r", "3", "ping"], b""),
    ];
    if has("incr") {
        steps.push((vec!["--no-raw", "incr", "counter"], b""));
    }
    let mut want: Vec<Run> = Vec::new();
    let mut failures = Vec::new();
    for (pi, p) in procs.iter().enumerate() {
        for (si, (args, stdin)) in steps.iter().enumerate() {
            let got = cli(p, args, stdin);
            if pi == 0 {
                assert!(got.success, "redis-cli {args:?} failed on redis: {got:?}");
                want.push(got);
            } else if got != want[si] {
                failures.push(format!(
                    "[{}] redis-cli {args:?}\n    redis:  {:?}\n    ringkv: {:?}",
                    p.label, want[si], got
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `redis-cli --pipe` sends a generated file of mixed inline and RESP
/// commands and reports every reply.
#[test]
fn redis_cli_pipe_mode() {
    let procs = servers();
    const N: usize = 5000;
    let mut input = Vec::new();
    for i in 0..N {
        if i % 2 == 0 {
            input.extend(format!("SET pipe:{i} value-{i}\r\n").into_bytes());
        } else {
            let k = format!("pipe:{i}");
            let v = format!("value-{i}");
            input.extend(
                format!(
                    "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n",
                    k.len(),
                    v.len()
                )
                .into_bytes(),
            );
        }
    }
    // Replies to errors count as errors.
    input.extend(b"NOSUCHCOMMAND x\r\nGET\r\nMGET pipe:1 pipe:2 pipe:3\r\n");
    let mut want: Option<Run> = None;
    for p in &procs {
        let got = cli(p, &["--pipe"], &input);
        assert!(
            got.stdout
                .contains(&format!("errors: 2, replies: {}", N + 3)),
            "[{}] {got:?}",
            p.label
        );
        // Every key landed, on every shard.
        let check = cli(
            p,
            &["mget", "pipe:0", "pipe:1", "pipe:2500", "pipe:4999"],
            b"",
        );
        assert_eq!(
            check.stdout, "value-0\nvalue-1\nvalue-2500\nvalue-4999\n",
            "[{}]",
            p.label
        );
        match &want {
            None => want = Some(got),
            Some(w) => assert_eq!(&got, w, "[{}] differs from redis", p.label),
        }
    }
}

/// The final `NAME: 12345.67 requests per second, p50=...` lines of a
/// `redis-benchmark -q` run, as (name, rate); progress lines are skipped.
fn bench_rates(stdout: &str) -> Vec<(String, f64)> {
    stdout
        .split(['\r', '\n'])
        .filter_map(|line| {
            let (name, rest) = line.trim().split_once(": ")?;
            let (num, rest) = rest.split_once(' ')?;
            if !rest.starts_with("requests per second") {
                return None;
            }
            Some((name.to_string(), num.parse().ok()?))
        })
        .collect()
}

/// True if ringkv has a config option of this name.
fn has_option(name: &str) -> bool {
    ringkv::config::spec(name).is_some()
}

fn benchmark(p: &Proc, extra: &[&str]) {
    let port = p.port.to_string();
    let mut args = vec![
        "-p",
        &port,
        "-t",
        "set,get,ping",
        "-n",
        "20000",
        "-q",
        "-c",
        "20",
    ];
    args.extend_from_slice(extra);
    let run = run_tool("redis-benchmark", &args, b"", Duration::from_secs(120));
    assert!(run.success, "redis-benchmark {args:?} failed: {run:?}");
    let rates = bench_rates(&run.stdout);
    let names: Vec<&str> = rates.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["PING_INLINE", "PING_MBULK", "SET", "GET"],
        "unexpected output: {run:?}"
    );
    for (name, rps) in &rates {
        assert!(*rps > 0.0, "{name}: zero rate in {run:?}");
    }
    // redis-benchmark asks for CONFIG GET save/appendonly first and warns
    // when either is missing; that is the one message tolerated, and only
    // while ringkv has no persistence options.
    let mut stderr = run.stderr.clone();
    if !has_option("appendonly") {
        stderr = stderr.replace("WARNING: Could not fetch server CONFIG\n", "");
    }
    assert!(stderr.trim().is_empty(), "stderr: {stderr}");
    let lower = run.stdout.to_lowercase();
    assert!(
        !lower.contains("error") && !lower.contains("err "),
        "errors in output: {run:?}"
    );
}

#[test]
fn redis_benchmark_four_shards() {
    let p = Proc::ringkv(4, &[]);
    benchmark(&p, &[]);
    benchmark(&p, &["-P", "16"]);
    // Random keys spread the load over every shard.
    benchmark(&p, &["-P", "16", "-r", "100000"]);
    // The server is still fine.
    let got = cli(&p, &["ping"], b"");
    assert_eq!(got.stdout, "PONG\n");
}
