//! The network server: shard executors, listeners and connections.
//!
//! [`Server::start`] creates one glommio executor per shard, each pinned to a
//! core of the process's CPU affinity mask. Every shard binds the same port
//! with `SO_REUSEPORT` and accepts its own connections, so the kernel spreads
//! clients over shards and a connection lives on the shard that accepted it.

pub mod busy;
pub mod connection;
pub mod readiness;
pub mod resp;

use crate::config::Config;
use crate::shard::{self, Global, Shard};
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::sync::atomic::Ordering;

/// glommio's registered I/O buffer pool per shard: its minimum.
const IO_MEMORY: usize = 64 << 10;

/// Why the server could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// The CPUs this process may run on (its affinity mask), ascending.
pub fn usable_cpus() -> Vec<usize> {
    let mut cpus: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    cpus.sort_unstable();
    if cpus.is_empty() {
        cpus.push(0);
    }
    cpus
}

/// The shard count when none is configured: one per CPU, except on machines
/// of one or two CPUs, which get one shard. There the kernel's loopback and
/// network processing and the clients need a CPU of their own: on two CPUs
/// shared with a load generator, two shards reached 0.7x of redis-server's
/// requests per second at `-P 1`, where one shard on the second CPU matches
/// it (BENCHMARKS.md, "Default shard count").
pub fn default_shards(cpus: usize) -> usize {
    if cpus <= 2 { 1 } else { cpus }
}

/// A running server.
pub struct Server {
    global: &'static Global,
    handles: Vec<glommio::ExecutorJoinHandle<()>>,
}

fn listen_socket(addr: SocketAddr, reuse_port: bool) -> std::io::Result<Socket> {
    let sk = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sk.set_reuse_address(true)?;
    if reuse_port {
        sk.set_reuse_port(true)?;
    }
    sk.bind(&addr.into())?;
    Ok(sk)
}

/// How long startup waits for a port that is still held.
///
/// A process killed with SIGKILL keeps its listening sockets for a few
/// milliseconds after it is gone (its io_uring is torn down asynchronously),
/// so a restart right after `kill -9` would otherwise fail with "Address
/// already in use".
const BIND_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// Binds a probe socket without `SO_REUSEPORT`, retrying "Address already in
/// use" for up to [`BIND_RETRY`].
fn probe_bind(addr: SocketAddr) -> std::io::Result<Socket> {
    let start = std::time::Instant::now();
    let mut logged = false;
    loop {
        match listen_socket(addr, false) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && start.elapsed() < BIND_RETRY => {
                if !logged {
                    tracing::warn!(
                        %addr,
                        "address in use, retrying for up to {}s (a previous server may still be exiting)",
                        BIND_RETRY.as_secs()
                    );
                    logged = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => return r,
        }
    }
}

/// Finds the address to listen on and checks that the port is free: a probe
/// bind without `SO_REUSEPORT` fails if anyone (even another ringkv) listens.
fn resolve_listen_addr(config: &Config) -> Result<SocketAddr, StartError> {
    let bind = config
        .bind()
        .split_whitespace()
        .next()
        .unwrap_or("127.0.0.1")
        .to_string();
    let mut addr = (bind.as_str(), config.port())
        .to_socket_addrs()
        .map_err(|e| StartError(format!("Invalid bind address '{bind}': {e}")))?
        .next()
        .ok_or_else(|| StartError(format!("Invalid bind address '{bind}'")))?;
    let probe = probe_bind(addr).map_err(|e| {
        StartError(format!(
            "Could not create server TCP listening socket {bind}:{}: {e}",
            config.port()
        ))
    })?;
    if addr.port() == 0 {
        let local = probe.local_addr().map_err(|e| StartError(e.to_string()))?;
        addr.set_port(local.as_socket().map(|a| a.port()).unwrap_or(0));
    }
    Ok(addr)
}

impl Server {
    /// Starts the shards and their listeners; returns once every shard is
    /// accepting connections.
    pub fn start(mut config: Config) -> Result<Server, StartError> {
        let dir = config.get("dir").unwrap_or("./").to_string();
        config.set("dir", &dir, false).map_err(|_| {
            StartError(format!("Can't chdir to '{dir}': No such file or directory"))
        })?;
        let cpus = usable_cpus();
        let nshards = if config.shards() == 0 {
            default_shards(cpus.len())
        } else {
            config.shards()
        };
        // Fewer shards than CPUs take the last ones: the first CPU is where
        // interrupts and clients usually land.
        let first = cpus.len().saturating_sub(nshards);
        let addr = resolve_listen_addr(&config)?;
        let (global, mailboxes) = Global::new(config, nshards);
        let global: &'static Global = Box::leak(Box::new(global));
        let _ = global.scripts.while_busy.set(busy::serve);
        global.port.store(addr.port() as usize, Ordering::Relaxed);

        // Clients may connect while the data loads; they get -LOADING.
        global.rdb.loading.store(true, Ordering::Release);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let mut handles = Vec::with_capacity(nshards);
        for (id, rx) in mailboxes.into_iter().enumerate() {
            let cpu = cpus[(first + id) % cpus.len()];
            let ready = ready_tx.clone();
            let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
                .name(&format!("shard-{id}"))
                // The pool is for DMA file I/O, which ringkv does not use
                // (AOF goes through buffered files): glommio's 10 MiB
                // default would be 10 MiB of used_memory per shard.
                .io_memory(IO_MEMORY)
                .spawn(move || async move {
                    Shard::install(id, global);
                    let listener = match listen_socket(addr, true).and_then(|s| {
                        s.listen(511)?;
                        Ok(s)
                    }) {
                        // SAFETY: the descriptor is a listening TCP socket we own.
                        Ok(s) => unsafe { TcpListener::from_raw_fd(s.into_raw_fd()) },
                        Err(e) => {
                            let _ = ready
                                .send(Err(format!("shard {id}: could not listen on {addr}: {e}")));
                            return;
                        }
                    };
                    let mut tasks = vec![
                        glommio::spawn_local(accept_loop(listener, global, id)).detach(),
                        glommio::spawn_local(readiness::poller_loop()).detach(),
                        glommio::spawn_local(shard::expiry::active_expire_loop()).detach(),
                        glommio::spawn_local(crate::persistence::aof::writer_loop(global, id))
                            .detach(),
                        glommio::spawn_local(shard::evict::eviction_loop()).detach(),
                    ];
                    if id == 0 {
                        tasks.push(
                            glommio::spawn_local(crate::persistence::save::cron(global)).detach(),
                        );
                    }
                    let _ = ready.send(Ok(()));
                    shard::serve_mailbox(rx).await;
                    // The shard's own loops must not run once it is gone.
                    for t in &tasks {
                        t.cancel();
                    }
                    Shard::uninstall();
                })
                .map_err(|e| StartError(io_uring_hint(&e.to_string())))?;
            handles.push(handle);
        }
        drop(ready_tx);
        for _ in 0..nshards {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(StartError(e)),
                Err(_) => return Err(StartError("a shard failed to start".into())),
            }
        }
        let server = Server { global, handles };
        // On a thread that ends afterwards, so that what it allocated for
        // the shards stays counted in used_memory (see `crate::alloc`).
        let loaded = std::thread::scope(|t| {
            t.spawn(|| crate::persistence::load::load_at_startup(global, &connection::REPLAYER))
                .join()
                .unwrap_or_else(|_| Err("the loader thread panicked".into()))
        });
        if let Err(e) = loaded {
            server.shutdown();
            return Err(StartError(e));
        }
        tracing::info!(shards = nshards, %addr, "ringkv ready to accept connections");
        Ok(server)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.global.port.load(Ordering::Relaxed) as u16
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.global.nshards
    }

    /// Shared server state.
    pub fn global(&self) -> &'static Global {
        self.global
    }

    /// On a signal: saves the RDB file when save points are set, as Redis
    /// does, unless SHUTDOWN already handled saving. Returns false if the
    /// save failed.
    pub fn save_on_signal(&self) -> bool {
        let g = self.global;
        if g.shutting_down.load(Ordering::SeqCst) || g.config().save_points().is_empty() {
            return true;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        g.post(
            0,
            Box::new(move || {
                glommio::spawn_local(async move {
                    let _ = tx.send(crate::persistence::save::save_for_shutdown(g).await);
                })
                .detach();
            }),
        );
        match rx.recv() {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::warn!("Error trying to save the DB: {e}");
                false
            }
            Err(_) => false,
        }
    }

    /// Stops every shard and waits for their threads.
    pub fn shutdown(self) {
        self.global.shutting_down.store(true, Ordering::SeqCst);
        for s in 0..self.global.nshards {
            self.global.post(s, shard::stop_task());
        }
        for h in self.handles {
            let _ = h.join();
        }
    }
}

/// Turns an executor creation failure into an actionable message.
fn io_uring_hint(err: &str) -> String {
    format!(
        "could not create an io_uring executor ({err}). ringkv needs io_uring (Linux 5.8+, not disabled by \
         kernel.io_uring_disabled or a seccomp profile) and enough locked memory: raise the memlock limit \
         (ulimit -l unlimited, or LimitMEMLOCK=infinity in systemd). See deploy/HOST-TUNING.md."
    )
}

async fn accept_loop(listener: TcpListener, global: &'static Global, shard: usize) {
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(shard, "accept failed: {e}");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let maxclients = shard::with_shard(|s| s.config.maxclients());
        let n = global.connected_clients.fetch_add(1, Ordering::Relaxed) + 1;
        if n > maxclients {
            global.connected_clients.fetch_sub(1, Ordering::Relaxed);
            shard::with_shard(|s| s.stats.rejected_connections += 1);
            glommio::spawn_local(async move {
                use futures::AsyncWriteExt;
                let mut stream = stream;
                let _ = stream
                    .write_all(b"-ERR max number of clients reached\r\n")
                    .await;
            })
            .detach();
            continue;
        }
        glommio::spawn_local(connection::serve(stream, global, shard)).detach();
    }
}
