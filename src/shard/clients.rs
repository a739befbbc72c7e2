//! What a shard knows of its connected clients, for CLIENT LIST, INFO and
//! KILL.

use std::net::SocketAddr;
use std::time::Instant;

/// What a shard knows of a client, for CLIENT LIST / INFO / KILL.
#[derive(Debug)]
pub struct ClientInfo {
    /// CLIENT ID.
    pub id: u64,
    /// Peer address.
    pub addr: SocketAddr,
    /// Local address.
    pub laddr: SocketAddr,
    /// Socket descriptor, for CLIENT KILL (shut down on the owning shard).
    pub fd: i32,
    /// CLIENT SETNAME.
    pub name: String,
    /// CLIENT SETINFO LIB-NAME.
    pub lib_name: String,
    /// CLIENT SETINFO LIB-VER.
    pub lib_ver: String,
    /// Selected database.
    pub db: usize,
    /// Protocol version.
    pub resp: u8,
    /// Connection time.
    pub created: Instant,
    /// Last command time.
    pub last_active: Instant,
    /// Last command's full name.
    pub last_cmd: String,
    /// CLIENT NO-EVICT.
    pub no_evict: bool,
    /// CLIENT NO-TOUCH.
    pub no_touch: bool,
    /// Bytes waiting in the query buffer.
    pub qbuf: usize,
    /// Set by CLIENT KILL; the connection closes.
    pub killed: bool,
    /// Commands queued since MULTI, or -1 outside MULTI.
    pub multi: i64,
    /// The wait of a client blocked in BLPOP & co, for CLIENT UNBLOCK.
    pub blocked: Option<std::sync::Arc<crate::shard::blocking::Waiter>>,
}

impl ClientInfo {
    /// The state of a connection just accepted: db 0, RESP2, no name, no
    /// flags.
    pub fn new(id: u64, addr: SocketAddr, laddr: SocketAddr, fd: i32) -> ClientInfo {
        let now = Instant::now();
        ClientInfo {
            id,
            addr,
            laddr,
            fd,
            name: String::new(),
            lib_name: String::new(),
            lib_ver: String::new(),
            db: 0,
            resp: 2,
            created: now,
            last_active: now,
            last_cmd: String::new(),
            no_evict: false,
            no_touch: false,
            qbuf: 0,
            killed: false,
            multi: -1,
            blocked: None,
        }
    }

    /// One line of CLIENT LIST / CLIENT INFO: Redis 7.0's fields in its
    /// order, then `lib-name` and `lib-ver` as Redis 7.2 appends them.
    pub fn list_line(&self) -> String {
        let now = Instant::now();
        let mut flags = String::new();
        if self.multi >= 0 {
            flags.push('x');
        }
        if self.blocked.is_some() {
            flags.push('b');
        }
        if self.no_evict {
            flags.push('e');
        }
        if self.no_touch {
            flags.push('T');
        }
        if flags.is_empty() {
            flags.push('N');
        }
        format!(
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db={} sub=0 psub=0 ssub=0 multi={} qbuf={} qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            self.fd,
            self.name,
            now.duration_since(self.created).as_secs(),
            now.duration_since(self.last_active).as_secs(),
            flags,
            self.db,
            self.multi,
            self.qbuf,
            if self.last_cmd.is_empty() {
                "NULL"
            } else {
                &self.last_cmd
            },
            self.resp,
            self.lib_name,
            self.lib_ver,
        )
    }
}
