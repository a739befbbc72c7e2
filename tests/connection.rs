//! Connection commands that a line-per-reply differential script cannot
//! cover: authentication with a password, CLIENT LIST / KILL across shards,
//! CLIENT REPLY OFF/SKIP (replies that never come), QUIT and self-kill
//! closing the connection. Compared byte for byte with redis-server where the
//! replies are deterministic.

mod common;

use common::{Proc, Raw, encode_cmd};
use std::time::Duration;

/// Encodes a sequence of commands, each given as one space-separated line.
fn pipeline(lines: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        let args: Vec<&[u8]> = l.split(' ').map(|a| a.as_bytes()).collect();
        out.extend(encode_cmd(&args));
    }
    out
}

/// Reads replies until the server closes the connection.
fn read_to_eof(c: &mut Raw) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(r) = c.read_reply() {
        out.extend(r);
    }
    out
}

/// Sends commands one by one and returns each reply.
fn run(c: &mut Raw, lines: &[&str]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            let args: Vec<&str> = l.split(' ').collect();
            String::from_utf8_lossy(&c.cmd_str(&args)).into_owned()
        })
        .collect()
}

/// The value of `field=` in a CLIENT LIST / INFO line.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.trim_end()
        .split(' ')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
}

/// The text of a bulk (RESP2) CLIENT LIST / INFO reply.
fn bulk_text(reply: &[u8]) -> String {
    let s = String::from_utf8_lossy(reply).into_owned();
    assert!(s.starts_with('$'), "not a bulk reply: {s:?}");
    let body = s.split_once("\r\n").unwrap().1;
    body.strip_suffix("\r\n").unwrap().to_string()
}

fn client_id(c: &mut Raw) -> u64 {
    let r = String::from_utf8(c.cmd_str(&["CLIENT", "ID"])).unwrap();
    r.trim_start_matches(':').trim_end().parse().unwrap()
}

#[test]
fn auth_with_requirepass_matches_redis() {
    let redis = Proc::redis(&["--requirepass", "secret"]);
    let ours = Proc::ringkv(4, &["--requirepass", "secret"]);
    let script = [
        "PING",
        "GET k",
        "CLIENT ID",
        "HELLO",
        "HELLO 3",
        "HELLO 3 SETNAME x",
        "HELLO 3 AUTH default wrong",
        "AUTH",
        "AUTH wrong",
        "AUTH default wrong",
        "AUTH bob secret",
        "AUTH Default secret",
        "AUTH a b c",
        "PING",
        "AUTH secret",
        "PING",
        "AUTH wrong",
        "PING",
        "SET k v",
        "GET k",
        "RESET",
        "PING",
        "GET k",
        "AUTH default secret",
        "GET k",
        "QUIT",
    ];
    let want = run(&mut redis.raw(), &script);
    let got = run(&mut ours.raw(), &script);
    for ((line, w), g) in script.iter().zip(&want).zip(&got) {
        assert_eq!(w, g, "{line}");
    }
    assert!(got[0].starts_with("-NOAUTH"));

    // HELLO 3 AUTH authenticates and switches protocol in one step.
    let mut c = ours.raw();
    let r = String::from_utf8(c.cmd_str(&["HELLO", "3", "AUTH", "default", "secret"])).unwrap();
    assert!(r.starts_with("%7\r\n"), "{r:?}");
    assert!(r.contains("$5\r\nproto\r\n:3\r\n"), "{r:?}");
    assert_eq!(c.cmd_str(&["GET", "k"]), b"$1\r\nv\r\n");
    assert_eq!(c.cmd_str(&["GET", "nokey"]), b"_\r\n");
    // A failed HELLO AUTH leaves the protocol alone.
    let mut c = ours.raw();
    assert_eq!(
        c.cmd_str(&["HELLO", "3", "AUTH", "default", "nope"]),
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    let r =
        String::from_utf8(c.cmd_str(&["HELLO", "2", "AUTH", "default", "secret", "SETNAME", "n"]))
            .unwrap();
    assert!(r.starts_with("*14\r\n"), "{r:?}");
    assert!(r.contains("$5\r\nproto\r\n:2\r\n"), "{r:?}");
    assert_eq!(c.cmd_str(&["CLIENT", "GETNAME"]), b"$1\r\nn\r\n");

    // A client library authenticating through its URL.
    let client = redis::Client::open(format!("redis://:secret@127.0.0.1:{}/", ours.port)).unwrap();
    let mut conn = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap();
    let v: String = redis::cmd("GET").arg("k").query(&mut conn).unwrap();
    assert_eq!(v, "v");
    let bad = redis::Client::open(format!("redis://:nope@127.0.0.1:{}/", ours.port)).unwrap();
    assert!(
        bad.get_connection_with_timeout(Duration::from_secs(5))
            .is_err()
    );
}

#[test]
fn client_list_sees_every_shard() {
    let ours = Proc::ringkv(4, &[]);
    // Eight connections: the kernel spreads them over the four shards.
    let mut conns: Vec<Raw> = (0..8).map(|_| ours.raw()).collect();
    let mut ids = Vec::new();
    for (i, c) in conns.iter_mut().enumerate() {
        assert_eq!(
            c.cmd_str(&["CLIENT", "SETNAME", &format!("c{i}")]),
            b"+OK\r\n"
        );
        ids.push(client_id(c));
    }
    let list = bulk_text(&conns[0].cmd_str(&["CLIENT", "LIST"]));
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 8, "{list}");
    for (i, id) in ids.iter().enumerate() {
        let line = lines
            .iter()
            .find(|l| field(l, "id") == id.to_string())
            .unwrap_or_else(|| panic!("client {id} missing from {list}"));
        assert_eq!(field(line, "name"), format!("c{i}"));
        assert_eq!(
            field(line, "cmd"),
            if i == 0 { "client|list" } else { "client|id" }
        );
        assert_eq!(field(line, "laddr"), format!("127.0.0.1:{}", ours.port));
    }
    // Sorted by id, as Redis lists clients in connection order.
    let listed: Vec<u64> = lines
        .iter()
        .map(|l| field(l, "id").parse().unwrap())
        .collect();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted);

    // LIST ID keeps the order asked for, repeats included, and skips unknown ids.
    let (a, b) = (ids[5].to_string(), ids[2].to_string());
    let list = bulk_text(&conns[1].cmd_str(&["CLIENT", "LIST", "ID", &a, "99999", &b, &a]));
    let got: Vec<&str> = list.lines().map(|l| field(l, "id")).collect();
    assert_eq!(got, [a.as_str(), b.as_str(), a.as_str()]);
    let list = bulk_text(&conns[1].cmd_str(&["CLIENT", "LIST", "TYPE", "normal"]));
    assert_eq!(list.lines().count(), 8);

    // CLIENT INFO reflects the connection's own state.
    let c = &mut conns[3];
    for cmd in [
        &["SELECT", "5"][..],
        &["CLIENT", "NO-EVICT", "on"],
        &["CLIENT", "NO-TOUCH", "on"],
        &["CLIENT", "SETINFO", "LIB-NAME", "redis-rs"],
        &["CLIENT", "SETINFO", "lib-ver", "0.27.0"],
    ] {
        assert_eq!(c.cmd_str(cmd), b"+OK\r\n", "{cmd:?}");
    }
    let info = bulk_text(&c.cmd_str(&["CLIENT", "INFO"]));
    assert_eq!(field(&info, "id"), ids[3].to_string());
    assert_eq!(field(&info, "name"), "c3");
    assert_eq!(field(&info, "db"), "5");
    assert_eq!(field(&info, "flags"), "eT");
    assert_eq!(field(&info, "cmd"), "client|info");
    assert_eq!(field(&info, "lib-name"), "redis-rs");
    assert_eq!(field(&info, "lib-ver"), "0.27.0");
    assert_eq!(field(&info, "resp"), "2");
    c.cmd_str(&["HELLO", "3"]);
    let info = String::from_utf8(c.cmd_str(&["CLIENT", "INFO"])).unwrap();
    assert!(
        info.starts_with('='),
        "RESP3 verbatim string expected: {info:?}"
    );
    assert_eq!(field(&info, "resp"), "3");
    assert_eq!(
        c.cmd_str(&["CLIENT", "SETINFO", "lib-ver", "1 2"]),
        b"-ERR lib-ver cannot contain spaces, newlines or special characters.\r\n"
    );
    assert_eq!(
        c.cmd_str(&["CLIENT", "SETINFO", "foo", "x"]),
        b"-ERR Unrecognized option 'foo'\r\n"
    );
    assert_eq!(
        c.cmd_str(&["CLIENT", "NO-TOUCH", "x"]),
        b"-ERR syntax error\r\n"
    );
    // RESET: back to db 0, RESP2, no name, no NO-TOUCH; NO-EVICT stays (7.0).
    assert_eq!(c.cmd_str(&["RESET"]), b"+RESET\r\n");
    let info = bulk_text(&c.cmd_str(&["CLIENT", "INFO"]));
    assert_eq!(field(&info, "name"), "");
    assert_eq!(field(&info, "db"), "0");
    assert_eq!(field(&info, "flags"), "e");
    assert_eq!(field(&info, "resp"), "2");

    // Closed connections leave the list.
    drop(conns.split_off(4));
    std::thread::sleep(Duration::from_millis(200));
    let list = bulk_text(&conns[0].cmd_str(&["CLIENT", "LIST"]));
    assert_eq!(list.lines().count(), 4, "{list}");

    // Through a client library, too.
    let mut r = ours.client();
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut r).unwrap();
    assert_eq!(list.lines().count(), 5);
}

#[test]
fn client_kill_reaches_other_shards() {
    let ours = Proc::ringkv(4, &[]);
    let mut killer = ours.raw();
    let mut victims: Vec<(u64, Raw)> = (0..6)
        .map(|_| {
            let mut c = ours.raw();
            (client_id(&mut c), c)
        })
        .collect();
    // By id, new form: the count of killed clients.
    for (id, c) in victims.drain(..3) {
        let mut c = c;
        assert_eq!(
            killer.cmd_str(&["CLIENT", "KILL", "ID", &id.to_string()]),
            b":1\r\n"
        );
        assert!(c.closed(), "client {id} still open");
        assert_eq!(
            killer.cmd_str(&["CLIENT", "KILL", "ID", &id.to_string()]),
            b":0\r\n"
        );
    }
    // By address, old form: +OK, or an error when nobody matches.
    let (id, mut c) = victims.remove(0);
    let info = bulk_text(&c.cmd_str(&["CLIENT", "INFO"]));
    let addr = field(&info, "addr").to_string();
    assert_eq!(killer.cmd_str(&["CLIENT", "KILL", &addr]), b"+OK\r\n");
    assert!(c.closed(), "client {id} still open");
    assert_eq!(
        killer.cmd_str(&["CLIENT", "KILL", &addr]),
        b"-ERR No such client\r\n"
    );
    // By type: everyone but the caller.
    let laddr = format!("127.0.0.1:{}", ours.port);
    assert_eq!(
        killer.cmd_str(&["CLIENT", "KILL", "LADDR", &laddr, "TYPE", "normal"]),
        b":2\r\n"
    );
    for (id, mut c) in victims.drain(..) {
        assert!(c.closed(), "client {id} still open");
    }
    assert_eq!(killer.cmd_str(&["PING"]), b"+PONG\r\n");
    let list = bulk_text(&killer.cmd_str(&["CLIENT", "LIST"]));
    assert_eq!(list.lines().count(), 1, "{list}");
    // MAXAGE: only clients older than the limit.
    let mut young = ours.raw();
    assert_eq!(
        killer.cmd_str(&["CLIENT", "KILL", "MAXAGE", "100"]),
        b":0\r\n"
    );
    assert_eq!(young.cmd_str(&["PING"]), b"+PONG\r\n");
}

#[test]
fn client_kill_self_matches_redis() {
    let redis = Proc::redis(&[]);
    let ours = Proc::ringkv(4, &[]);
    for p in [&redis, &ours] {
        // SKIPME no: the reply, then the connection closes; later pipelined
        // commands are not run.
        let mut c = p.raw();
        let id = client_id(&mut c).to_string();
        c.send(&pipeline(&[
            &format!("CLIENT KILL ID {id} SKIPME no"),
            "PING",
        ]));
        assert_eq!(read_to_eof(&mut c), b":1\r\n", "{}", p.label);
        // SKIPME yes (the default) spares the caller.
        let mut c = p.raw();
        let id = client_id(&mut c).to_string();
        assert_eq!(c.cmd_str(&["CLIENT", "KILL", "ID", &id]), b":0\r\n");
        // The old form may kill the caller.
        let info = bulk_text(&c.cmd_str(&["CLIENT", "INFO"]));
        c.send(&pipeline(&[
            &format!("CLIENT KILL {}", field(&info, "addr")),
            "PING",
        ]));
        assert_eq!(read_to_eof(&mut c), b"+OK\r\n", "{}", p.label);
    }
}

/// CLIENT REPLY sequences, including keyed commands that run on other shards
/// while replies are off; ends with QUIT so that the stream ends.
const REPLY_SCRIPT: &[&str] = &[
    "CLIENT REPLY OFF",
    "PING",
    "SET a 1",
    "SET b 2",
    "GET a",
    "RESET",
    "PING",
    "CLIENT REPLY SKIP",
    "RESET",
    "GET b",
    "CLIENT REPLY SKIP",
    "CLIENT REPLY ON",
    "PING a",
    "CLIENT REPLY OFF",
    "CLIENT REPLY SKIP",
    "PING b",
    "GET c",
    "CLIENT REPLY ON",
    "PING c",
    "CLIENT REPLY SKIP",
    "SET c 3",
    "GET c",
    "CLIENT REPLY SKIP",
    "CLIENT REPLY SKIP",
    "PING d",
    "PING e",
    "CLIENT REPLY SKIP",
    "CLIENT REPLY OFF",
    "PING f",
    "CLIENT REPLY ON",
    "CLIENT REPLY SKIP",
    "NOSUCHCOMMAND",
    "CLIENT REPLY SKIP",
    "CLIENT REPLY foo",
    "CLIENT REPLY SKIP",
    "GET",
    "PING g",
    "CLIENT REPLY OFF",
    "PING h",
    "CLIENT REPLY ON",
    "QUIT",
];

#[test]
fn client_reply_matches_redis() {
    let redis = Proc::redis(&[]);
    let ours = Proc::ringkv(4, &[]);
    let mut outputs = Vec::new();
    for p in [&redis, &ours] {
        // Pipelined in one write.
        let mut c = p.raw();
        c.cmd_str(&["FLUSHALL"]);
        c.send(&pipeline(REPLY_SCRIPT));
        let piped = read_to_eof(&mut c);
        // One command per write.
        let mut c = p.raw();
        c.cmd_str(&["FLUSHALL"]);
        for line in REPLY_SCRIPT {
            c.send(&pipeline(&[line]));
            std::thread::sleep(Duration::from_millis(3));
        }
        let single = read_to_eof(&mut c);
        outputs.push((piped, single));
    }
    let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert_eq!(show(&outputs[0].0), show(&outputs[1].0), "pipelined");
    assert_eq!(show(&outputs[0].1), show(&outputs[1].1), "one per write");
    assert_eq!(
        show(&outputs[1].0),
        "+RESET\r\n+PONG\r\n$1\r\n2\r\n+OK\r\n$1\r\na\r\n+OK\r\n$1\r\nc\r\n$1\r\n3\r\n\
         $1\r\ne\r\n+OK\r\n$1\r\ng\r\n+OK\r\n+OK\r\n"
    );
    // QUIT with replies off closes silently. (Redis 7.0 only closes once some
    // other reply is pending, and otherwise leaves the connection open.)
    let mut c = ours.raw();
    c.send(&pipeline(&["CLIENT REPLY OFF", "QUIT"]));
    assert_eq!(read_to_eof(&mut c), b"");
}

#[test]
fn quit_closes_after_ok() {
    let redis = Proc::redis(&[]);
    let ours = Proc::ringkv(4, &[]);
    for p in [&redis, &ours] {
        let mut c = p.raw();
        assert_eq!(c.cmd_str(&["QUIT"]), b"+OK\r\n", "{}", p.label);
        assert!(c.closed(), "{}", p.label);
        // Commands pipelined after QUIT are not run; QUIT takes any arguments.
        let mut c = p.raw();
        c.send(&pipeline(&["PING", "QUIT now", "SET after 1"]));
        assert_eq!(read_to_eof(&mut c), b"+PONG\r\n+OK\r\n", "{}", p.label);
        let mut c = p.raw();
        assert_eq!(c.cmd_str(&["GET", "after"]), b"$-1\r\n", "{}", p.label);
    }
}
