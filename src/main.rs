//! The `ringkv` server binary.

use clap::Parser;
use ringkv::config::Config;
use ringkv::server::Server;

/// A Redis-compatible, thread-per-core in-memory data store.
#[derive(Parser, Debug)]
#[command(name = "ringkv", version, about)]
struct Cli {
    /// Optional config file in redis.conf syntax; flags override it.
    config_file: Option<String>,
    /// TCP port.
    #[arg(long)]
    port: Option<u16>,
    /// Address to listen on.
    #[arg(long)]
    bind: Option<String>,
    /// Number of shards (one pinned executor each); default: one per usable core.
    #[arg(long)]
    shards: Option<usize>,
    /// Number of databases.
    #[arg(long)]
    databases: Option<usize>,
    /// Require clients to AUTH with this password.
    #[arg(long)]
    requirepass: Option<String>,
    /// debug, verbose, notice or warning.
    #[arg(long)]
    loglevel: Option<String>,
    /// Log to this file instead of standard output.
    #[arg(long)]
    logfile: Option<String>,
}

fn build_config(cli: &Cli) -> Result<Config, String> {
    let mut config = Config::default();
    if let Some(path) = &cli.config_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("Fatal error, can't open config file '{path}': {e}"))?;
        config.load_file_text(path, &text)?;
    }
    let flags: [(&str, Option<String>); 7] = [
        ("port", cli.port.map(|v| v.to_string())),
        ("bind", cli.bind.clone()),
        ("shards", cli.shards.map(|v| v.to_string())),
        ("databases", cli.databases.map(|v| v.to_string())),
        ("requirepass", cli.requirepass.clone()),
        ("loglevel", cli.loglevel.clone()),
        ("logfile", cli.logfile.clone()),
    ];
    for (name, value) in flags {
        if let Some(v) = value {
            config
                .set(name, &v, false)
                .map_err(|e| format!("--{name}: {e}"))?;
        }
    }
    Ok(config)
}

fn init_logging(config: &Config) -> Result<(), String> {
    let level = match config.loglevel() {
        "debug" => "debug",
        "verbose" => "info",
        "warning" => "warn",
        _ => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    if config.logfile().is_empty() {
        builder.init();
    } else {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(config.logfile())
            .map_err(|e| format!("Can't open the log file {}: {e}", config.logfile()))?;
        builder
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .init();
    }
    Ok(())
}

/// Blocks SIGTERM and SIGINT in every thread (threads inherit the mask) so
/// that only `wait_for_signal` receives them.
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc signal-mask calls on a local sigset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_for_signal(set: &libc::sigset_t) -> i32 {
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` holds blocked signals; sigwait stores the one received.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}

fn main() {
    let cli = Cli::parse();
    let config = match build_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = init_logging(&config) {
        eprintln!("{e}");
        std::process::exit(1);
    }
    let signals = block_signals();
    let server = match Server::start(config) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let sig = wait_for_signal(&signals);
    let name = if sig == libc::SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    };
    tracing::info!("Received {name}, scheduling shutdown...");
    server.shutdown();
    tracing::info!("ringkv is now ready to exit, bye bye...");
}
