//! The `ringkv` server binary.

use clap::{Arg, ArgAction, Command};
use ringkv::config::{self, Config, OPTIONS};
use ringkv::server::Server;

#[global_allocator]
static ALLOC: ringkv::alloc::CountingAlloc = ringkv::alloc::CountingAlloc;

/// jemalloc reads its options from this symbol at start-up.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8] = ringkv::alloc::MALLOC_CONF;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, reload};

/// The command line: an optional config file in redis.conf syntax, then
/// Redis-style `--<option> <value>` for every option in [`OPTIONS`]
/// (`--port 7000`, `--maxclients 100`, `--proto-max-bulk-len 1mb`...). Flags
/// override the file; an unknown flag is an error that names it.
fn cli() -> Command {
    let mut cmd = Command::new("ringkv")
        .version(env!("CARGO_PKG_VERSION"))
        .about("A Redis-compatible, thread-per-core in-memory data store.")
        .arg(
            Arg::new("config_file")
                .value_name("CONFIG_FILE")
                .help("Config file in redis.conf syntax; flags override it."),
        );
    for o in OPTIONS {
        cmd = cmd.arg(
            Arg::new(o.name)
                .long(o.name)
                .value_name("VALUE")
                .help(o.help)
                .allow_hyphen_values(true)
                .action(ArgAction::Set),
        );
    }
    cmd
}

fn build_config(args: impl IntoIterator<Item = String>) -> Result<Config, String> {
    let m = cli().try_get_matches_from(args).map_err(|e| {
        // --help and --version print and exit successfully.
        if !e.use_stderr() {
            let _ = e.print();
            std::process::exit(0);
        }
        e.to_string()
    })?;
    let mut config = Config::default();
    if let Some(path) = m.get_one::<String>("config_file") {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("Fatal error, can't open config file '{path}': {e}"))?;
        config.load_file_text(path, &text)?;
    }
    for o in OPTIONS {
        if let Some(v) = m.get_one::<String>(o.name) {
            config
                .set(o.name, v, false)
                .map_err(|e| format!("--{}: {e}", o.name))?;
        }
    }
    Ok(config)
}

/// Sets up logging with a reloadable filter, so that CONFIG SET loglevel
/// takes effect at run time. `RUST_LOG`, when set, wins at startup.
fn init_logging(config: &Config) -> Result<(), String> {
    let level = config::tracing_level(config.loglevel());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let (filter, handle) = reload::Layer::new(filter);
    config::set_loglevel_hook(move |name| {
        let _ = handle.reload(EnvFilter::new(config::tracing_level(name)));
    });
    let registry = tracing_subscriber::registry().with(filter);
    if config.logfile().is_empty() {
        registry
            .with(tracing_subscriber::fmt::layer().with_target(false))
            .init();
    } else {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(config.logfile())
            .map_err(|e| format!("Can't open the log file {}: {e}", config.logfile()))?;
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_ansi(false)
                    .with_writer(std::sync::Mutex::new(file)),
            )
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
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("check-rdb") {
        let Some(path) = args.get(2) else {
            eprintln!("Usage: ringkv check-rdb <rdb-file-name>");
            std::process::exit(1);
        };
        let ok = ringkv::persistence::check::check_rdb(path, &mut std::io::stdout());
        std::process::exit(if ok { 0 } else { 1 });
    }
    if args.get(1).map(String::as_str) == Some("check-aof") {
        let fix = args.get(2).map(String::as_str) == Some("--fix");
        let Some(dir) = args.get(if fix { 3 } else { 2 }) else {
            eprintln!("Usage: ringkv check-aof [--fix] <aof-directory>");
            std::process::exit(1);
        };
        let ok = ringkv::persistence::aof::check_aof(
            std::path::Path::new(dir),
            fix,
            &mut std::io::stdout(),
        );
        std::process::exit(if ok { 0 } else { 1 });
    }
    let config = match build_config(args) {
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
    loop {
        let sig = wait_for_signal(&signals);
        let name = if sig == libc::SIGINT {
            "SIGINT"
        } else {
            "SIGTERM"
        };
        tracing::info!("Received {name}, scheduling shutdown...");
        if server.save_on_signal() {
            break;
        }
        tracing::warn!("Error trying to save the DB, can't exit.");
    }
    server.shutdown();
    tracing::info!("ringkv is now ready to exit, bye bye...");
}
