//! Neighbours of hostile blocks: the 3-hop pipeline's rate beside a block that keeps trying to
//! make the host hold more than its budgets (the holes of the hostile-guests work), as a ratio
//! to the pipeline alone in the same run. Goal: every ratio >= 0.9.
//!
//! Each hostile block repeats its attempt every 20 ms for as long as the pipeline runs, so what
//! is measured is the cost of the host refusing, counting and summarising it, not of a block
//! burning CPU on purpose (the crash-loop rows cover a block that restarts without pause).

use bagpipe::Host;

use crate::{paired, run_blocks};

/// One hole: what the table calls it, and the hostile block's config.
struct Attempt {
    name: &'static str,
    config: &'static str,
    /// Its stdout goes to /dev/null while it runs (the table is on stdout).
    floods_stdout: bool,
}

const ATTEMPTS: &[Attempt] = &[
    Attempt {
        name: "1,000 log lines per 20 ms (rate 200/s)",
        config: "try = \"log_flood\"\ncount = 1000\n",
        floods_stdout: false,
    },
    Attempt {
        name: "1,000 stderr lines per 20 ms (rate 200/s)",
        config: "try = \"stderr_flood\"\ncount = 1000\n",
        floods_stdout: false,
    },
    Attempt {
        name: "1,000 stdout lines per 20 ms",
        config: "try = \"stdout_flood\"\ncount = 1000\n",
        floods_stdout: true,
    },
    Attempt {
        name: "2,000 timers with 1 KiB tags per 20 ms",
        config: "try = \"timer_tags\"\ncount = 2000\nbytes = 1024\n",
        floods_stdout: false,
    },
];

/// One row of the table: the pipeline's rate beside the hostile block, the ratio to alone,
/// and what the host refused or dropped from it in the last run.
pub struct Row {
    name: &'static str,
    rate: f64,
    ratio: f64,
    refused: u64,
}

/// Measures every attempt against the 3-hop pipeline `pipeline` (a manifest).
pub async fn neighbours(host: &Host, pipeline: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    for attempt in ATTEMPTS {
        let hostile = format!(
            "[[block]]\nname = \"hostile\"\nafter = []\n[block.config]\nquiet = true\nagain_ms = 20\n{}\n",
            attempt.config
        );
        let beside = format!("{hostile}{pipeline}");
        let _quiet = attempt.floods_stdout.then(StdoutToNull::new).flatten();
        let (_, rate, ratio) = paired(
            || async { run_blocks(host, pipeline.to_owned()).await.0 },
            || async { run_blocks(host, beside.clone()).await.0 },
        )
        .await;
        let (_, report) = run_blocks(host, beside.clone()).await;
        let refused = report
            .stats
            .iter()
            .find(|s| s.responsibility == "hostile")
            .map_or(0, |s| s.budget_refusals + s.logs_dropped + s.stdout_dropped + s.output_paced);
        rows.push(Row { name: attempt.name, rate, ratio, refused });
    }
    rows
}

/// Prints the table.
pub fn print(rows: &[Row]) {
    println!("| beside a hostile block (3 hops)                   | bags/s     | ratio | refused/dropped/paced |");
    println!("|---------------------------------------------------|-----------:|------:|----------------------:|");
    for row in rows {
        println!("| {:<49} | {:>10.0} | {:>5.2} | {:>21} |", row.name, row.rate, row.ratio, row.refused);
    }
    println!("(ratio: to the same 3 hops alone, median of paired runs; goal >= 0.9)");
}

/// Points the process's stdout at /dev/null until dropped.
pub(crate) struct StdoutToNull {
    saved: i32,
}

impl StdoutToNull {
    pub(crate) fn new() -> Option<Self> {
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        let null = std::fs::OpenOptions::new().write(true).open("/dev/null").ok()?;
        // SAFETY: dup/dup2 on valid descriptors; the saved one is restored and closed on drop.
        unsafe {
            let saved = libc::dup(1);
            if saved < 0 {
                return None;
            }
            libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 1);
            Some(Self { saved })
        }
    }
}

impl Drop for StdoutToNull {
    fn drop(&mut self) {
        // SAFETY: `saved` is the descriptor `new` duplicated.
        unsafe {
            libc::dup2(self.saved, 1);
            libc::close(self.saved);
        }
    }
}
