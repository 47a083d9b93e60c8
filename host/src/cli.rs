//! Subcommands of the `bagpipe` binary.

use std::path::PathBuf;
use std::process::ExitCode;

use bagpipe::cache::ComponentCache;
use bagpipe::{Host, HostConfig, Manifest};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// bagpipe: a WebAssembly-sandboxed adapter host.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Cli {
    /// Log filter (tracing `EnvFilter` syntax, e.g. `info` or `bagpipe=debug`); `BAGPIPE_LOG`
    /// overrides it.
    #[arg(long, global = true, default_value = "info")]
    pub log: String,

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
    },
    /// Check the manifest and every component against the block world, running nothing.
    Check {
        /// The component directory (holding `bagpipe.toml`), or a manifest file.
        dir: PathBuf,
    },
}

/// Logs go to stderr; stdout belongs to the blocks.
pub fn init_logging(default: &str) {
    let filter = EnvFilter::try_from_env("BAGPIPE_LOG")
        .or_else(|_| EnvFilter::try_new(default))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

/// Runs the chosen subcommand.
pub async fn dispatch(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run { dir, no_cache, build } => {
            if let Some(guests) = build
                && let Err(e) = build_components(&guests, &dir).await
            {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
            run(dir, no_cache).await
        }
        Command::Check { dir } => check(dir).await,
    }
}

async fn build_components(guests: &std::path::Path, dir: &std::path::Path) -> anyhow::Result<()> {
    let names = Manifest::component_names(dir)?;
    let dir = if dir.is_dir() { dir } else { dir.parent().unwrap_or(std::path::Path::new(".")) };
    bagpipe::guest_build::build_into(guests, dir, &names).await
}

fn host(no_cache: bool) -> Result<Host, ExitCode> {
    let cache_dir = if no_cache { None } else { ComponentCache::default_dir() };
    Host::new(HostConfig { cache_dir }).map_err(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}

async fn run(dir: PathBuf, no_cache: bool) -> ExitCode {
    let manifest = match Manifest::load(&dir) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let host = match host(no_cache) {
        Ok(h) => h,
        Err(code) => return code,
    };
    let shutdown = match shutdown_signal() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot listen for signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    match host.run(&manifest, shutdown).await {
        Ok(report) => {
            for (block, e) in &report.failed {
                tracing::warn!("block `{block}` failed while running: {e}");
            }
            for (block, e) in &report.finish_errors {
                tracing::warn!("block `{block}`: finish: {e}");
            }
            for s in &report.stats {
                tracing::info!(
                    block = %s.responsibility,
                    state = s.state,
                    received = s.received,
                    processed = s.processed,
                    failed = s.failed,
                    lost = s.lost,
                    refused_full = s.refused_full,
                    faults = s.faults,
                    "final stats"
                );
            }
            tracing::info!("shut down");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn check(dir: PathBuf) -> ExitCode {
    let manifest = match Manifest::load(&dir) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let host = match host(false) {
        Ok(h) => h,
        Err(code) => return code,
    };
    let mut failed = 0;
    for (spec, result) in host.check(&manifest).await {
        match result {
            Ok(c) => {
                let hooks = c.hooks.names();
                let hooks = if hooks.is_empty() { "none".to_owned() } else { hooks.join(", ") };
                println!("ok    {} ({}.wasm, version {}, hooks: {hooks})", spec.responsibility, spec.name, c.hash);
            }
            Err(e) => {
                failed += 1;
                println!("error {}: {e}", spec.responsibility);
                eprintln!("error: {}:{}: block `{}`: {e}", manifest.path.display(), spec.line, spec.responsibility);
            }
        }
    }
    if failed == 0 {
        println!("{}: {} blocks, all valid", manifest.path.display(), manifest.blocks.len());
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Resolves on the first SIGINT or SIGTERM.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
    })
}
