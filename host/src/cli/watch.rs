//! `bagpipe status --watch`: the stats table redrawn every interval, like `top`, with rates
//! (bags a second in, out and done) from the difference to the previous sample.
//!
//! [`frame`] renders one sample against the one before it and does nothing else, so what a frame
//! shows is tested directly; [`watch`] takes the samples from the admin endpoint, prints the
//! frames (redrawn in place on a terminal, one after another otherwise) and ends, with success, at
//! SIGINT or SIGTERM.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bagpipe::PoolSnapshot;
use serde::Deserialize;
use tokio::io::AsyncWriteExt as _;

/// Moves the cursor home and clears the screen: each frame on a terminal replaces the last.
pub const CLEAR: &str = "\x1b[H\x1b[2J";

/// What `/blocks` says of one block, as far as the watch shows it. What a host may not say (an
/// older one) is optional or zero.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Block {
    /// The instance's responsibility: what a row is known by from one sample to the next.
    pub responsibility: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub received: u64,
    #[serde(default)]
    pub processed: u64,
    #[serde(default)]
    pub failed: u64,
    /// Bags it enqueued to other blocks.
    #[serde(default)]
    pub sent: u64,
    /// Messages it published to the server.
    #[serde(default)]
    pub published: u64,
    #[serde(default)]
    pub faults: u64,
    #[serde(default)]
    pub restarts: u64,
    #[serde(default)]
    pub dead_letters: u64,
    #[serde(default)]
    pub queue_depth: u64,
    /// How many bags its queue holds at most, when the host says.
    #[serde(default)]
    pub queue_capacity: Option<u64>,
    #[serde(default)]
    pub swaps: u64,
    /// When its last swap happened (Unix milliseconds), when the host says.
    #[serde(default)]
    pub last_swap_at_ms: Option<u64>,
    /// When its last fault happened (Unix milliseconds), when the host says.
    #[serde(default)]
    pub last_fault_at_ms: Option<u64>,
    /// Its pool, when several workers serve it.
    #[serde(default)]
    pub workers: Option<PoolSnapshot>,
}

/// What `/host` says, when the host serves it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HostInfo {
    #[serde(default)]
    pub version: Option<String>,
    /// When the host started (Unix milliseconds): a change means it restarted, and its counters
    /// started again from zero.
    #[serde(default)]
    pub started_at_ms: Option<u64>,
    #[serde(default)]
    pub uptime_ms: Option<u64>,
    /// The message server; `None` when the host has none.
    #[serde(default)]
    pub server: Option<ServerInfo>,
}

/// The host's message server, as `/host` describes it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServerInfo {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub reconnects: Option<u64>,
}

/// One look at the host.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When it was taken: rates are over the time between two samples.
    pub taken: Instant,
    /// The wall clock then (Unix milliseconds), for how long ago a block last swapped or faulted.
    pub wall_ms: u64,
    /// The local time of day then, for the header.
    pub clock: String,
    /// The blocks, or why the host did not answer.
    pub blocks: Result<Vec<Block>, String>,
    /// What `/host` answered; `None` when it did not (an older host, or none).
    pub host: Option<HostInfo>,
}

/// How frames look.
#[derive(Debug, Clone)]
pub struct View<'a> {
    /// The admin address watched, for the header.
    pub admin: &'a str,
    /// A row per worker under each block served by several.
    pub workers: bool,
    /// Cut every line to this many characters (the terminal's width).
    pub width: Option<usize>,
}

const HEADER: [&str; 16] = [
    "BLOCK", "STATE", "VERSION", "IN/s", "OUT/s", "DONE/s", "DONE", "FAILED", "QUEUE", "FAULTS", "RESTARTS", "DEAD",
    "SWAPS", "SWAPPED", "FAULTED", "WORKERS",
];

/// The frame for `now`: a header line, then a row per block with its rates since `prev` (or `-`
/// where there is nothing to compare with), or why the host did not answer. Ends with a newline.
pub fn frame(prev: Option<&Sample>, now: &Sample, view: &View) -> String {
    let mut out = header(now, view);
    let blocks = match &now.blocks {
        Ok(blocks) => blocks,
        Err(e) => {
            out += &format!("host not answering: {e}; trying again\n");
            return cut(out, view.width);
        }
    };
    // Rates only against a sample of the same host run: a restarted host counts from zero.
    let prev = prev.filter(|p| same_run(p, now));
    let secs = prev.map(|p| now.taken.saturating_duration_since(p.taken).as_secs_f64()).filter(|s| *s > 0.0);
    let before: HashMap<&str, &Block> = prev
        .and_then(|p| p.blocks.as_ref().ok())
        .map(|bs| bs.iter().map(|b| (b.responsibility.as_str(), b)).collect())
        .unwrap_or_default();
    let ago =
        |at: Option<u64>| at.map_or("-".to_owned(), |at| format!("{} ago", duration(now.wall_ms.saturating_sub(at))));

    let mut rows: Vec<Vec<String>> = Vec::new();
    for b in blocks {
        let was = before.get(b.responsibility.as_str()).copied();
        let r = |f: fn(&Block) -> u64| rate(f(b), was.map(f), secs);
        rows.push(vec![
            b.responsibility.clone(),
            b.state.clone(),
            b.version.clone(),
            r(|b| b.received),
            r(|b| b.sent + b.published),
            r(|b| b.processed),
            b.processed.to_string(),
            b.failed.to_string(),
            b.queue_capacity
                .filter(|&cap| cap > 0)
                .map_or(b.queue_depth.to_string(), |cap| format!("{}/{cap}", b.queue_depth)),
            b.faults.to_string(),
            b.restarts.to_string(),
            b.dead_letters.to_string(),
            b.swaps.to_string(),
            ago(b.last_swap_at_ms),
            ago(b.last_fault_at_ms),
            b.workers.as_ref().map_or("1".to_owned(), |p| format!("{}/{}", p.now, p.max)),
        ]);
        let Some(pool) = b.workers.as_ref().filter(|_| view.workers) else { continue };
        let handed_before: HashMap<u32, u64> = was
            .and_then(|w| w.workers.as_ref())
            .map(|p| p.workers.iter().map(|w| (w.id, w.handed)).collect())
            .unwrap_or_default();
        for w in &pool.workers {
            let mut row = vec![String::new(); HEADER.len()];
            row[0] = format!("  #{}", w.id);
            row[1] = w.state.clone();
            row[2] = w.version.clone();
            row[3] = rate(w.handed, handed_before.get(&w.id).copied(), secs);
            row[8] = w.in_flight.to_string();
            row[9] = w.faults.to_string();
            row[10] = w.restarts.to_string();
            rows.push(row);
        }
    }
    out += &align(&HEADER, &rows);
    cut(out, view.width)
}

/// `bagpipe  ADMIN  TIME  version V  up U  server ...  N blocks`: what is known of the host.
fn header(now: &Sample, view: &View) -> String {
    let mut parts = vec![format!("bagpipe {}", view.admin), now.clock.clone()];
    if let Some(host) = &now.host {
        if let Some(v) = &host.version {
            parts.push(format!("version {v}"));
        }
        if let Some(up) = host.uptime_ms {
            parts.push(format!("up {}", duration(up)));
        }
        parts.push(match &host.server {
            None => "no server".to_owned(),
            Some(s) => {
                let mut text = format!("server {}", s.state.as_deref().unwrap_or("?"));
                if let Some(url) = &s.url {
                    text += &format!(" {url}");
                }
                if let Some(n) = s.reconnects {
                    text += &format!(" ({n} reconnects)");
                }
                text
            }
        });
    }
    if let Ok(blocks) = &now.blocks {
        parts.push(format!("{} blocks", blocks.len()));
    }
    parts.join("  ") + "\n"
}

/// Whether two samples are of the same run of the host: not when its start time changed.
fn same_run(a: &Sample, b: &Sample) -> bool {
    let started = |s: &Sample| s.host.as_ref().and_then(|h| h.started_at_ms);
    match (started(a), started(b)) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    }
}

/// The rate of a counter now at `now` and `before` it `secs` seconds ago; `-` when there is no
/// earlier value, or the counter went down (counted again from zero: no rate to tell).
fn rate(now: u64, before: Option<u64>, secs: Option<f64>) -> String {
    match (before, secs) {
        (Some(before), Some(secs)) if now >= before => per_sec((now - before) as f64 / secs),
        _ => "-".to_owned(),
    }
}

/// A rate, short: `0`, `2.5`, `830`, `12.4k`.
fn per_sec(r: f64) -> String {
    if r == 0.0 {
        "0".to_owned()
    } else if r < 9.95 {
        format!("{r:.1}")
    } else if r < 9999.5 {
        format!("{r:.0}")
    } else {
        format!("{:.1}k", r / 1000.0)
    }
}

/// A duration in milliseconds, short: `42s`, `3m05s`, `2h07m`, `3d04h`.
fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// The header and rows in columns two spaces apart, each line without trailing spaces.
fn align(header: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).chain([header[c].chars().count()]).max().unwrap_or(0))
        .collect();
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let l: String = cells.zip(&widths).map(|(c, w)| format!("{c:<w$}", w = *w)).collect::<Vec<_>>().join("  ");
        l.trim_end().to_owned() + "\n"
    };
    let mut out = line(&mut header.iter().copied());
    for r in rows {
        out += &line(&mut r.iter().map(String::as_str));
    }
    out
}

/// Every line of `text` cut to `width` characters.
fn cut(text: String, width: Option<usize>) -> String {
    let Some(width) = width else { return text };
    text.lines().map(|l| l.chars().take(width).collect::<String>() + "\n").collect()
}

/// Redraws the stats of the host at `admin` every `interval` until SIGINT or SIGTERM (then exits
/// with success). A host that does not answer is said so in the frame, and asked again.
pub async fn watch(admin: &str, interval: Duration, workers: bool) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let terminal = std::io::stdout().is_terminal();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut prev: Option<Sample> = None;
    loop {
        // Both the wait and the sampling end at a signal: nothing runs on after this returns.
        let now = tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            now = async {
                ticks.tick().await;
                sample(admin).await
            } => now,
        };
        let width = if terminal { terminal_width() } else { None };
        let text = frame(prev.as_ref(), &now, &View { admin, workers, width });
        let text = if terminal { format!("{CLEAR}{text}") } else { format!("{text}\n") };
        // A reader of the pipe that pauses does not hold up Ctrl-C.
        let written = tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            written = async {
                let mut stdout = tokio::io::stdout();
                stdout.write_all(text.as_bytes()).await?;
                stdout.flush().await
            } => written,
        };
        match written {
            Ok(()) => {}
            // Whoever read the frames (`| head`) has stopped.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(e) => return Err(e).context("writing to stdout"),
        }
        prev = Some(now);
    }
    Ok(ExitCode::SUCCESS)
}

/// `/blocks` and, when it answers, `/host`.
async fn sample(admin: &str) -> Sample {
    let blocks = async {
        let body = bagpipe::admin_get(admin, "/blocks").await?;
        serde_json::from_str::<Vec<Block>>(&body).context("reading /blocks")
    }
    .await
    .map_err(|e| format!("{e:#}"));
    let taken = Instant::now();
    let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    // A host without `/host` answers 404: then the header says less.
    let host = match &blocks {
        Ok(_) => match bagpipe::admin_get(admin, "/host").await {
            Ok(body) => serde_json::from_str::<HostInfo>(&body).ok(),
            Err(_) => None,
        },
        Err(_) => None,
    };
    Sample { taken, wall_ms: wall.as_millis() as u64, clock: local_clock(wall.as_secs()), blocks, host }
}

/// The local time of day `HH:MM:SS` at Unix time `secs`.
fn local_clock(secs: u64) -> String {
    let t = secs as libc::time_t;
    // SAFETY: `tm` is plain data; all-zero is a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: localtime_r with valid pointers to locals.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return format!("{:02}:{:02}:{:02} UTC", secs / 3600 % 24, secs / 60 % 60, secs % 60);
    }
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}

/// The terminal's width in columns, when stdout is one that says.
fn terminal_width() -> Option<usize> {
    let mut size = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes a `winsize` through a valid pointer to a local.
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    (rc == 0 && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

#[cfg(test)]
#[path = "watch_tests.rs"]
mod tests;
