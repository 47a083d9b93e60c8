//! Subcommands of the `bagpipe` binary.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bagpipe::ComponentCache;
use bagpipe::StatsSnapshot;
use bagpipe::{Host, HostConfig, Manifest, RunReport};
use clap::{Parser, Subcommand};

mod new;
mod scenarios;
mod table;
mod watch;
use tracing_subscriber::EnvFilter;

/// The admin address `bagpipe status` asks when none is given.
const DEFAULT_ADMIN: &str = "127.0.0.1:9330";

/// bagpipe: a WebAssembly-sandboxed adapter host.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Cli {
    /// Log filter (tracing `EnvFilter` syntax, e.g. `info` or `bagpipe=debug`); `BAGPIPE_LOG`
    /// overrides it.
    #[arg(long, global = true, default_value = "info,async_nats=warn")]
    pub log: String,

    /// How log lines look: `text` for people, `json` for one JSON object per line (with the
    /// block's span and an `event` field on the lines tools wait for); `BAGPIPE_LOG_FORMAT`
    /// overrides it.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the blocks of a component directory until SIGINT/SIGTERM or a block shuts the host
    /// down.
    Run {
        /// The component directory (holding `bagpipe.toml`), or a manifest file.
        dir: PathBuf,
        /// Compile every component afresh instead of using the on-disk compile cache.
        #[arg(long)]
        no_cache: bool,
        /// First build this cargo workspace of blocks for wasm32-wasip2 and copy the components
        /// the manifest names into DIR.
        #[arg(long, value_name = "GUESTS")]
        build: Option<PathBuf>,
        /// Serve stats on this address: /blocks (JSON), /metrics (Prometheus), /dead-letters.
        /// Port 0 picks a free port (the log says which).
        #[arg(long, value_name = "ADDR")]
        admin: Option<SocketAddr>,
        /// At exit, write the final stats, failures and dead letters to this file as JSON.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// Do not watch DIR: no hot swap of changed components or manifest entries.
        #[arg(long)]
        no_watch: bool,
        /// The message server (`nats://HOST:PORT`), instead of the manifest's `[host] server`.
        #[arg(long, value_name = "URL")]
        server: Option<String>,
    },
    /// Develop blocks: build the guest workspace GUESTS into DIR, run DIR, and on every change
    /// to the blocks' sources rebuild them; the running host swaps in what changed.
    Dev {
        /// The cargo workspace of the blocks.
        guests: PathBuf,
        /// The component directory (holding `bagpipe.toml`).
        dir: PathBuf,
        /// Serve stats on this address (see `run --admin`).
        #[arg(long, value_name = "ADDR")]
        admin: Option<SocketAddr>,
    },
    /// Check the manifest and every component against the block world, running nothing.
    Check {
        /// The component directory (holding `bagpipe.toml`), or a manifest file.
        dir: PathBuf,
    },
    /// Print the stats of a running host (started with `--admin`) as a table.
    Status {
        /// The running host's admin address.
        #[arg(long, value_name = "ADDR", default_value = DEFAULT_ADMIN)]
        admin: String,
        /// List the dead letters instead.
        #[arg(long)]
        dead_letters: bool,
        /// Under each block served by several workers, a line per worker.
        #[arg(long)]
        workers: bool,
        /// Redraw the table every interval, like `top`, with bags a second in, out and done;
        /// until Ctrl-C.
        #[arg(long, conflicts_with = "dead_letters")]
        watch: bool,
        /// With `--watch`: milliseconds between two frames.
        #[arg(long, value_name = "N", default_value_t = 1000, requires = "watch",
              value_parser = clap::value_parser!(u64).range(10..))]
        interval_ms: u64,
    },
    /// Run the scenario files next to a manifest (DIR/tests/*.toml), each on a fresh instance of
    /// its block with the other blocks as stand-ins; print a diff for each failure and fail.
    Test {
        /// The component directory (holding `bagpipe.toml`), or a manifest file.
        dir: PathBuf,
        /// First build this cargo workspace of blocks for wasm32-wasip2 and copy the components
        /// the manifest names into DIR.
        #[arg(long, value_name = "GUESTS")]
        build: Option<PathBuf>,
    },
    /// Create a block crate in DIR/NAME: the block, its tests (through the real host), a manifest
    /// that runs it and a test scenario, depending on the guest and test SDKs of a bagpipe
    /// repository.
    New {
        /// The block's name, which names its crate, component and responsibility: lowercase
        /// letters, digits, `-` and `_`, starting with a letter.
        name: String,
        /// What the block starts as.
        #[arg(long, value_enum, default_value_t = new::Kind::Transform)]
        kind: new::Kind,
        /// The directory to create the crate in.
        #[arg(long, value_name = "PATH", default_value = ".")]
        dir: PathBuf,
        /// The bagpipe repository whose `guest-sdk/` and `test-sdk/` the crate depends on (by
        /// absolute path); by default the one this binary was built from.
        #[arg(long, value_name = "REPO")]
        sdk: Option<PathBuf>,
    },
}

/// How log lines look.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// For people.
    Text,
    /// One JSON object per line.
    Json,
}

/// Log lines the host holds while stderr is slow; past them lines are dropped and counted.
const LOG_LINES_BUFFERED: usize = 64 * 1024;

/// The host's log writer: lines go to stderr from a thread of their own, so logging never blocks
/// a runtime thread (or a guest call that logs); when stderr is not keeping up, lines are dropped
/// and counted. Dropping it writes out what is queued, then says how many lines were dropped.
pub struct LogWriter {
    guard: Option<tracing_appender::non_blocking::WorkerGuard>,
    dropped: tracing_appender::non_blocking::ErrorCounter,
    /// What the log's records feed: the admin endpoint's events, the log published to the server.
    pub feed: bagpipe::Feed,
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        drop(self.guard.take());
        let dropped = self.dropped.dropped_lines();
        if dropped > 0 {
            eprintln!("warning: {dropped} log lines were dropped: stderr was not keeping up");
        }
    }
}

/// Logs go to stderr (through a [`LogWriter`]); stdout belongs to the blocks.
pub fn init_logging(default: &str, format: LogFormat) -> LogWriter {
    use std::io::IsTerminal as _;
    use tracing_subscriber::prelude::*;
    let filter = EnvFilter::try_from_env("BAGPIPE_LOG")
        .or_else(|_| EnvFilter::try_new(default))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let format = match std::env::var("BAGPIPE_LOG_FORMAT").as_deref() {
        Ok("json") => LogFormat::Json,
        Ok("text") => LogFormat::Text,
        _ => format,
    };
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_LINES_BUFFERED)
        .thread_name("bagpipe-log")
        .finish(std::io::stderr());
    let dropped = writer.error_counter();
    let lines = tracing_subscriber::fmt::layer().with_writer(writer).with_target(false);
    let lines = match format {
        LogFormat::Text => lines.with_ansi(std::io::stderr().is_terminal()).boxed(),
        LogFormat::Json => lines.event_format(bagpipe::JsonLines).boxed(),
    };
    // The feed sees every record at its own level, whatever the filter lets through to stderr.
    let feed = bagpipe::Feed::new();
    // The blocks' spans pass whatever the filter, so that every line knows its block.
    let spans = tracing_subscriber::filter::filter_fn(|m| m.is_span() && matches!(m.name(), "block" | "worker"))
        .with_max_level_hint(tracing::level_filters::LevelFilter::INFO);
    let filter = tracing_subscriber::filter::FilterExt::or(filter, spans);
    tracing_subscriber::registry().with(lines.with_filter(filter)).with(feed.layer()).init();
    LogWriter { guard: Some(guard), dropped, feed }
}

/// Runs the chosen subcommand.
pub async fn dispatch(cli: Cli, feed: bagpipe::Feed) -> ExitCode {
    let result = match cli.command {
        Command::Run { dir, no_cache, build, admin, report, no_watch, server } => {
            let options = RunOptions { no_cache, build, admin, report, watch: !no_watch, dev: false, server, feed };
            run(&dir, options).await
        }
        Command::Dev { guests, dir, admin } => {
            let options = RunOptions {
                no_cache: false,
                build: Some(guests),
                admin,
                report: None,
                watch: true,
                dev: true,
                server: None,
                feed,
            };
            run(&dir, options).await
        }
        Command::Check { dir } => check(&dir).await,
        Command::Status { admin, dead_letters, workers, watch, interval_ms } => {
            status(&admin, dead_letters, workers, watch.then_some(interval_ms)).await
        }
        Command::Test { dir, build } => scenarios::test(&dir, build.as_deref()).await,
        Command::New { name, kind, dir, sdk } => new::new_block(&name, kind, &dir, sdk.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct RunOptions {
    no_cache: bool,
    build: Option<PathBuf>,
    admin: Option<SocketAddr>,
    report: Option<PathBuf>,
    watch: bool,
    /// Rebuild `build` on every change to its sources while running.
    dev: bool,
    server: Option<String>,
    feed: bagpipe::Feed,
}

async fn run(dir: &Path, options: RunOptions) -> anyhow::Result<ExitCode> {
    let into = if dir.is_dir() { dir } else { dir.parent().unwrap_or(Path::new(".")) };
    if let Some(guests) = &options.build {
        let names = Manifest::component_names(dir)?;
        bagpipe::build_into(guests, into, &names).await?;
    }
    let manifest = Manifest::load(dir)?;
    let cache_dir = if options.no_cache { None } else { ComponentCache::default_dir() };
    let host = Host::new(HostConfig {
        cache_dir,
        admin: options.admin,
        watch: options.watch,
        server: options.server,
        feed: Some(options.feed),
    })?;
    let mut signals = Signals::new()?;
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
    let run = host.run(&manifest, async move {
        let _ = first_rx.await;
    });
    tokio::pin!(run);
    // The first signal starts the graceful shutdown; a second one stops at once.
    let forced = async {
        let name = signals.next().await;
        tracing::info!(
            event = "shutdown",
            signal = name,
            "{name} received: finishing every block (a second signal stops at once)"
        );
        let _ = first_tx.send(());
        signals.next().await
    };
    let graceful = async {
        match (&options.build, options.dev) {
            (Some(guests), true) => tokio::select! {
                r = &mut run => r,
                () = bagpipe::rebuild_on_change(guests, into) => run.await,
            },
            _ => run.await,
        }
    };
    let result = tokio::select! {
        r = graceful => r,
        name = forced => {
            eprintln!("error: a second {name} during shutdown: stopping now, without finishing the blocks still running");
            return Ok(ExitCode::FAILURE);
        }
    };
    let report_file = options.report;
    let code = match &result {
        Ok(report) => {
            log_report(report);
            match &report.escalated {
                Some((block, e)) => {
                    eprintln!("error: block `{block}` faulted and escalated: {e}");
                    ExitCode::FAILURE
                }
                None => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    };
    if let Some(file) = report_file {
        let json = report_json(&result);
        std::fs::write(&file, serde_json::to_vec_pretty(&json)?)
            .map_err(|e| anyhow::anyhow!("writing the report `{}`: {e}", file.display()))?;
    }
    Ok(code)
}

fn log_report(report: &RunReport) {
    for (block, e) in &report.failed {
        tracing::warn!("block `{block}` failed: {e}");
    }
    for (block, e) in &report.finish_errors {
        tracing::warn!("block `{block}`: finish: {e}");
    }
    for s in &report.stats {
        tracing::info!(
            block = %s.responsibility,
            state = %s.state,
            received = s.received,
            processed = s.processed,
            failed = s.failed,
            lost = s.lost,
            refused_full = s.refused_full,
            faults = s.faults,
            restarts = s.restarts,
            dead_letters = s.dead_letters,
            swaps = s.swaps,
            swaps_failed = s.swaps_failed,
            event = "final_stats",
            "final stats"
        );
    }
    tracing::info!("shut down");
}

fn report_json(result: &Result<RunReport, bagpipe::RunError>) -> serde_json::Value {
    let pairs = |v: &[(String, bagpipe::CallError)]| {
        v.iter().map(|(b, e)| serde_json::json!({"block": b, "error": e.to_string()})).collect::<Vec<_>>()
    };
    match result {
        Ok(r) => serde_json::json!({
            "error": r.escalated.as_ref().map(|(b, e)| format!("block `{b}` faulted and escalated: {e}")),
            "escalated": r.escalated.as_ref().map(|(b, _)| b),
            "blocks": r.stats,
            "failed": pairs(&r.failed),
            "finish_errors": pairs(&r.finish_errors),
            "dead_letters": r.dead_letters,
            "server": r.server,
        }),
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    }
}

async fn check(dir: &Path) -> anyhow::Result<ExitCode> {
    let manifest = Manifest::load(dir)?;
    let host = Host::new(HostConfig { cache_dir: ComponentCache::default_dir(), ..HostConfig::default() })?;
    let mut failed = 0;
    for (spec, result) in host.check(&manifest).await {
        match result {
            Ok(c) => {
                let hooks = c.hooks.names();
                let hooks = if hooks.is_empty() { "none".to_owned() } else { hooks.join(", ") };
                println!("ok    {} ({}.wasm, version {}, hooks: {hooks})", spec.responsibility, spec.name, c.hash);
                let listen: Vec<String> =
                    spec.listen.iter().map(|l| bagpipe::manifest::Listen::url(l.protocol, l.addr)).collect();
                let grants = match (listen.is_empty(), spec.connect.is_empty()) {
                    (true, true) => "none".to_owned(),
                    _ => format!("listen [{}], connect [{}]", listen.join(", "), spec.connect.join(", ")),
                };
                println!("      grants: {grants}");
            }
            Err(e) => {
                failed += 1;
                println!("error {}: {e}", spec.responsibility);
                eprintln!("error: {}:{}: block `{}`: {e}", manifest.path.display(), spec.line, spec.responsibility);
            }
        }
    }
    if failed > 0 {
        return Ok(ExitCode::FAILURE);
    }
    println!("{}: {} blocks, all valid", manifest.path.display(), manifest.blocks.len());
    Ok(ExitCode::SUCCESS)
}

/// The stats once, or with `watch` (the interval in milliseconds) redrawn until Ctrl-C.
async fn status(admin: &str, dead_letters: bool, workers: bool, watch: Option<u64>) -> anyhow::Result<ExitCode> {
    if let Some(ms) = watch {
        return watch::watch(admin, std::time::Duration::from_millis(ms), workers).await;
    }
    if dead_letters {
        println!("{}", bagpipe::admin_get(admin, "/dead-letters").await?);
        return Ok(ExitCode::SUCCESS);
    }
    let body = bagpipe::admin_get(admin, "/blocks").await?;
    let blocks: Vec<StatsSnapshot> = serde_json::from_str(&body)?;
    print!("{}", table::table(&blocks, workers));
    Ok(ExitCode::SUCCESS)
}

/// SIGINT and SIGTERM, as they arrive.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals { int: signal(SignalKind::interrupt())?, term: signal(SignalKind::terminate())? })
    }

    /// Waits for the next SIGINT or SIGTERM and says which it was.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}
