//! `bagpipe status --watch`: the stats table redrawn every interval, like `top`, with rates
//! (bags a second in, out and done) from the difference to the previous sample.
//!
//! [`frame`] renders one sample against the one before it and does nothing else, so what a frame
//! shows is tested directly; [`watch`] takes the samples from the admin endpoint, prints the
//! frames (redrawn in place on a terminal, one after another otherwise) and ends, with success, at
//! SIGINT or SIGTERM.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bagpipe::PoolSnapshot;
use serde::Deserialize;

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
            b.queue_capacity.map_or(b.queue_depth.to_string(), |cap| format!("{}/{cap}", b.queue_depth)),
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
        let mut stdout = std::io::stdout().lock();
        match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
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
mod tests {
    use bagpipe::WorkerSnapshot;

    use super::*;

    fn block(name: &str, received: u64, sent: u64, processed: u64) -> Block {
        Block {
            responsibility: name.to_owned(),
            state: "running".to_owned(),
            version: "3125dead1085".to_owned(),
            received,
            sent,
            processed,
            ..Block::default()
        }
    }

    fn sample(t0: Instant, after_ms: u64, blocks: Vec<Block>) -> Sample {
        Sample {
            taken: t0 + Duration::from_millis(after_ms),
            wall_ms: 1_700_000_000_000 + after_ms,
            clock: "12:00:00".to_owned(),
            blocks: Ok(blocks),
            host: None,
        }
    }

    const VIEW: View<'static> = View { admin: "127.0.0.1:9330", workers: false, width: None };

    /// The cell under `column` in the row whose first word is `row`.
    fn cell(frame: &str, row: &str, column: &str) -> String {
        let mut lines = frame.lines().skip(1);
        let header = lines.next().expect("table header");
        // Where each column starts: where a word of the header starts.
        let starts: Vec<usize> = header
            .char_indices()
            .filter(|&(i, c)| c != ' ' && (i == 0 || header[..i].ends_with(' ')))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(starts.len(), HEADER.len(), "{header}");
        let col = HEADER.iter().position(|h| *h == column).expect("a column");
        let line =
            lines.find(|l| l.split_whitespace().next() == Some(row)).unwrap_or_else(|| panic!("{row} in\n{frame}"));
        let end = starts.get(col + 1).copied().unwrap_or(line.len()).min(line.len());
        line.get(starts[col]..end).unwrap_or("").trim().to_owned()
    }

    #[test]
    fn rates_are_the_counters_differences_over_the_time_between_samples() {
        let t0 = Instant::now();
        let mut published = block("relay", 100, 40, 90);
        published.published = 60;
        let a = sample(t0, 0, vec![block("source", 0, 1000, 0), published.clone()]);
        let mut later = published;
        later.received += 50;
        later.sent += 20;
        later.published += 30;
        later.processed += 26;
        let b = sample(t0, 2000, vec![block("source", 0, 1400, 0), later]);
        let text = frame(Some(&a), &b, &VIEW);
        assert_eq!(cell(&text, "source", "OUT/s"), "200", "{text}");
        assert_eq!(cell(&text, "source", "IN/s"), "0", "{text}");
        assert_eq!(cell(&text, "relay", "IN/s"), "25", "{text}");
        assert_eq!(cell(&text, "relay", "OUT/s"), "25", "sent and published: {text}");
        assert_eq!(cell(&text, "relay", "DONE/s"), "13", "{text}");
        assert_eq!(cell(&text, "relay", "DONE"), "116", "{text}");
        // The first frame has nothing to compare with.
        let first = frame(None, &a, &VIEW);
        assert_eq!(cell(&first, "relay", "IN/s"), "-", "{first}");
    }

    #[test]
    fn a_counter_that_went_down_gives_no_rate_rather_than_an_underflow() {
        let t0 = Instant::now();
        let a = sample(t0, 0, vec![block("sink", 500, 0, 500)]);
        let b = sample(t0, 1000, vec![block("sink", 3, 0, 2)]);
        let text = frame(Some(&a), &b, &VIEW);
        assert_eq!(cell(&text, "sink", "IN/s"), "-", "{text}");
        assert_eq!(cell(&text, "sink", "DONE/s"), "-", "{text}");
        assert_eq!(cell(&text, "sink", "DONE"), "2", "{text}");
    }

    #[test]
    fn a_restarted_host_gives_no_rates_even_when_its_counters_caught_up() {
        let t0 = Instant::now();
        let mut a = sample(t0, 0, vec![block("sink", 5, 0, 5)]);
        a.host = Some(HostInfo { started_at_ms: Some(1), ..HostInfo::default() });
        let mut b = sample(t0, 1000, vec![block("sink", 50, 0, 50)]);
        b.host = Some(HostInfo { started_at_ms: Some(2), ..HostInfo::default() });
        assert_eq!(cell(&frame(Some(&a), &b, &VIEW), "sink", "IN/s"), "-");
        b.host = Some(HostInfo { started_at_ms: Some(1), ..HostInfo::default() });
        assert_eq!(cell(&frame(Some(&a), &b, &VIEW), "sink", "IN/s"), "45");
    }

    #[test]
    fn blocks_that_come_and_go_between_samples() {
        let t0 = Instant::now();
        let a = sample(t0, 0, vec![block("old", 10, 0, 10), block("kept", 10, 0, 10)]);
        let b = sample(t0, 500, vec![block("kept", 20, 0, 20), block("new", 7, 0, 7)]);
        let text = frame(Some(&a), &b, &VIEW);
        assert!(!text.lines().any(|l| l.starts_with("old")), "{text}");
        assert_eq!(cell(&text, "kept", "IN/s"), "20", "{text}");
        assert_eq!(cell(&text, "new", "IN/s"), "-", "{text}");
        assert_eq!(cell(&text, "new", "DONE"), "7", "{text}");
        assert!(text.lines().next().is_some_and(|h| h.contains("2 blocks")), "{text}");
    }

    #[test]
    fn columns_line_up_and_lines_end_without_spaces() {
        let t0 = Instant::now();
        let mut long = block("a-rather-long-responsibility", 123_456, 0, 123_456);
        long.queue_depth = 17;
        long.queue_capacity = Some(1024);
        long.last_fault_at_ms = Some(1_700_000_000_000 - 65_000);
        let a = sample(t0, 0, vec![block("x", 0, 0, 0), long.clone()]);
        long.received += 30_000;
        let b = sample(t0, 1000, vec![block("x", 0, 0, 0), long]);
        let text = frame(Some(&a), &b, &VIEW);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        for l in &lines {
            assert_eq!(l.trim_end(), *l, "no trailing spaces: {l:?}");
        }
        // Each column starts at the same place in the header and every row.
        let header = lines[1];
        for name in ["STATE", "IN/s", "QUEUE", "FAULTED", "WORKERS"] {
            let at = header.find(name).expect("column");
            for row in &lines[2..] {
                assert_eq!(row.chars().nth(at - 1), Some(' '), "{name} in\n{text}");
                assert_ne!(row.chars().nth(at), Some(' '), "{name} in\n{text}");
            }
        }
        assert_eq!(cell(&text, "a-rather-long-responsibility", "QUEUE"), "17/1024", "{text}");
        assert_eq!(cell(&text, "a-rather-long-responsibility", "IN/s"), "30.0k", "{text}");
        assert_eq!(cell(&text, "a-rather-long-responsibility", "FAULTED"), "1m06s ago", "{text}");
        assert_eq!(cell(&text, "x", "QUEUE"), "0", "no capacity said: the depth alone\n{text}");
        assert_eq!(cell(&text, "x", "SWAPPED"), "-", "{text}");
        // A narrow terminal cuts the lines.
        let narrow = frame(Some(&a), &b, &View { width: Some(20), ..VIEW });
        assert!(narrow.lines().all(|l| l.chars().count() <= 20), "{narrow}");
        assert_eq!(narrow.lines().count(), 4, "{narrow}");
    }

    #[test]
    fn a_pools_workers_have_rows_of_their_own_with_what_each_was_handed_a_second() {
        let t0 = Instant::now();
        let worker = |id, handed, in_flight| WorkerSnapshot {
            id,
            state: "running".to_owned(),
            version: "v1".to_owned(),
            handed,
            in_flight,
            faults: 0,
            restarts: 0,
        };
        let pool = |workers: Vec<WorkerSnapshot>| PoolSnapshot {
            now: workers.len() as u64,
            min: 1,
            max: 3,
            high_water: 3,
            scale_ups: 2,
            retirements: 0,
            workers,
        };
        let mut a = block("pool", 10, 0, 10);
        a.workers = Some(pool(vec![worker(0, 6, 1), worker(1, 4, 0)]));
        let mut b = block("pool", 40, 0, 38);
        b.workers = Some(pool(vec![worker(0, 26, 2), worker(1, 4, 0), worker(2, 10, 1)]));
        let (a, b) = (sample(t0, 0, vec![a]), sample(t0, 1000, vec![b]));
        let view = View { workers: true, ..VIEW };
        let text = frame(Some(&a), &b, &view);
        assert_eq!(cell(&text, "pool", "WORKERS"), "3/3", "{text}");
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("  #")).collect();
        assert_eq!(rows.len(), 3, "{text}");
        let line = |id: &str| {
            let l = rows.iter().find(|l| l.starts_with(&format!("  #{id} "))).expect("worker row");
            l.split_whitespace().collect::<Vec<_>>()
        };
        // Number, state, version, IN/s, then QUEUE (in flight), faults, restarts.
        assert_eq!(line("0"), ["#0", "running", "v1", "20", "2", "0", "0"], "{text}");
        assert_eq!(line("1"), ["#1", "running", "v1", "0", "0", "0", "0"], "{text}");
        assert_eq!(line("2"), ["#2", "running", "v1", "-", "1", "0", "0"], "a new worker: {text}");
        // Without `--workers`, the block's row only.
        assert!(!frame(Some(&a), &b, &VIEW).contains("  #"));
    }

    #[test]
    fn the_header_says_what_the_host_says_and_a_silent_host_is_said_so() {
        let t0 = Instant::now();
        let mut s = sample(t0, 0, vec![block("a", 0, 0, 0)]);
        let plain = frame(None, &s, &VIEW);
        assert_eq!(plain.lines().next(), Some("bagpipe 127.0.0.1:9330  12:00:00  1 blocks"), "{plain}");
        s.host = Some(HostInfo {
            version: Some("0.4.0".to_owned()),
            started_at_ms: Some(1),
            uptime_ms: Some(3_723_000),
            server: Some(ServerInfo {
                url: Some("nats://127.0.0.1:4222".to_owned()),
                state: Some("connected".to_owned()),
                reconnects: Some(2),
            }),
        });
        let header = frame(None, &s, &VIEW).lines().next().map(str::to_owned);
        assert_eq!(
            header.as_deref(),
            Some(
                "bagpipe 127.0.0.1:9330  12:00:00  version 0.4.0  up 1h02m  \
                 server connected nats://127.0.0.1:4222 (2 reconnects)  1 blocks"
            )
        );
        s.host = Some(HostInfo { server: None, ..HostInfo::default() });
        assert!(frame(None, &s, &VIEW).lines().next().is_some_and(|h| h.contains("no server")));

        let gone = Sample { blocks: Err("connection refused".to_owned()), host: None, ..s.clone() };
        let text = frame(Some(&s), &gone, &VIEW);
        assert_eq!(text.lines().nth(1), Some("host not answering: connection refused; trying again"), "{text}");
        // And when it is back, the rows again, with no rate against the sample before it left.
        let back = sample(t0, 2000, vec![block("a", 9, 0, 9)]);
        assert_eq!(cell(&frame(Some(&gone), &back, &VIEW), "a", "IN/s"), "-");
    }

    #[test]
    fn blocks_json_of_an_older_host_without_the_newer_fields_reads() {
        let body = r#"[{"name":"sink","responsibility":"sink","state":"running","version":"abc","received":3,
            "processed":3,"failed":0,"sent":0,"published":0,"faults":0,"restarts":0,"dead_letters":0,
            "queue_depth":1,"swaps":0,"extra":true}]"#;
        let blocks: Vec<Block> = serde_json::from_str(body).expect("reads");
        assert_eq!((blocks[0].queue_capacity, blocks[0].last_swap_at_ms), (None, None));
        let newer = r#"[{"responsibility":"s","queue_capacity":64,"last_swap_at_ms":5,"last_fault_at_ms":null}]"#;
        let blocks: Vec<Block> = serde_json::from_str(newer).expect("reads");
        assert_eq!((blocks[0].queue_capacity, blocks[0].last_swap_at_ms), (Some(64), Some(5)));
        let host: HostInfo =
            serde_json::from_str(r#"{"version":"1","started_at_ms":1,"uptime_ms":2,"server":null,"logs":null}"#)
                .expect("reads");
        assert!(host.server.is_none());
    }

    #[test]
    fn rates_and_durations_read_short() {
        assert_eq!(
            [per_sec(0.0), per_sec(0.3), per_sec(9.96), per_sec(830.4), per_sec(12_400.0)],
            ["0", "0.3", "10", "830", "12.4k"]
        );
        assert_eq!(
            [duration(42_000), duration(185_000), duration(7_620_000), duration(273_600_000)],
            ["42s", "3m05s", "2h07m", "3d04h"]
        );
    }
}
