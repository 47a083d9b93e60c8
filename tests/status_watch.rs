//! `bagpipe status --watch` against a host running a pipeline that keeps flowing: frames come
//! one after another (stdout a pipe), with the blocks' rows and rates, the done count rising;
//! when the host goes away a frame says so and the watch goes on; Ctrl-C ends it with success.
//! On a terminal (a pseudo-terminal here) each frame clears the screen first.

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::Stdio;

use bagpipe_test_support::{Bagpipe, BlockDir, within};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

const BIN: &str = env!("CARGO_BIN_EXE_bagpipe");

/// A source sending two bags every 5 ms, through `transform`, to a sink: for as long as the test.
const PIPELINE: &str = "[[block]]\nname = \"bench_sink\"\nresponsibility = \"sink\"\nafter = []\n\n\
     [[block]]\nname = \"transform\"\nafter = [\"sink\"]\n[block.config]\nop = \"stamp\"\nto = \"sink\"\n\n\
     [[block]]\nname = \"bench_source\"\nresponsibility = \"source\"\nafter = [\"transform\"]\n\
     [block.config]\nto = \"transform\"\ncount = 100000000\nbatch = 2\ninterval_ms = 5\n";

/// `bagpipe status --watch` of `addr`, every 200 ms, writing to `stdout`.
fn watcher(addr: &str, stdout: Stdio) -> Child {
    tokio::process::Command::new(BIN)
        .args(["status", "--watch", "--interval-ms", "200", "--admin", addr])
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start the watcher")
}

/// One frame: its header line and the lines after it.
struct Frame {
    header: String,
    lines: Vec<String>,
}

impl Frame {
    /// The cell under `column` in the row of `block`, by where the column starts in the table's
    /// header; `None` without a table or a row.
    fn cell(&self, block: &str, column: &str) -> Option<String> {
        let header = self.lines.first()?;
        let starts: Vec<usize> = header
            .char_indices()
            .filter(|&(i, c)| c != ' ' && (i == 0 || header[..i].ends_with(' ')))
            .map(|(i, _)| i)
            .collect();
        let col = header.split_whitespace().position(|h| h == column)?;
        let row = self.lines.iter().find(|l| l.split_whitespace().next() == Some(block))?;
        let end = starts.get(col + 1).copied().unwrap_or(row.len()).min(row.len());
        Some(row.get(starts[col]..end)?.trim().to_owned())
    }

    fn text(&self) -> String {
        format!("{}\n{}", self.header, self.lines.join("\n"))
    }
}

/// The next frame: lines up to a blank one.
async fn next_frame(lines: &mut Lines<BufReader<ChildStdout>>) -> Frame {
    let mut all = Vec::new();
    loop {
        let line = lines.next_line().await.expect("reading the watcher").expect("the watcher ended");
        if line.is_empty() {
            break;
        }
        all.push(line);
    }
    let header = all.first().cloned().unwrap_or_default();
    Frame { header, lines: all.into_iter().skip(1).collect() }
}

fn interrupt(child: &Child) {
    let pid = child.id().expect("the watcher runs") as i32;
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
}

#[tokio::test]
async fn the_watch_redraws_rows_with_rising_counts_and_rates_and_ends_at_ctrl_c() {
    let dir = BlockDir::from_manifest(PIPELINE);
    let mut host = Bagpipe::run_with(BIN, &dir, &["--admin", "127.0.0.1:0"]);
    let addr = host.admin_addr().await;
    host.log_event("running").await;

    let mut watch = watcher(&addr, Stdio::piped());
    let mut lines = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    // Frames until three or more were read, the sink's done count rose between two of them and
    // a rate was above zero.
    let mut frames: Vec<Frame> = Vec::new();
    let (mut rose, mut flowing) = (false, false);
    while frames.len() < 3 || !rose || !flowing {
        let frame = within(next_frame(&mut lines)).await;
        let text = frame.text();
        assert!(frame.header.starts_with(&format!("bagpipe {addr}")), "{text}");
        assert!(frame.header.contains("3 blocks"), "{text}");
        for block in ["source", "transform", "sink"] {
            assert!(frame.cell(block, "STATE").is_some(), "a row for {block}:\n{text}");
        }
        let done = |f: &Frame| f.cell("sink", "DONE").and_then(|d| d.parse::<u64>().ok());
        let now = done(&frame).unwrap_or_else(|| panic!("sink's DONE:\n{text}"));
        if let Some(before) = frames.last().and_then(done) {
            rose |= now > before;
        }
        let rate = |block: &str, col: &str| frame.cell(block, col).and_then(|r| r.parse::<f64>().ok());
        flowing |= rate("sink", "IN/s").is_some_and(|r| r > 0.0) && rate("source", "OUT/s").is_some_and(|r| r > 0.0);
        assert!(frames.len() < 100, "no flow seen in 100 frames; the last:\n{text}");
        frames.push(frame);
    }
    assert_eq!(frames[0].cell("sink", "IN/s").as_deref(), Some("-"), "the first frame has no rates yet");

    // On a terminal: the screen cleared before each frame.
    let (master, slave) = pty();
    let mut on_tty = watcher(&addr, Stdio::from(slave));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut master = std::fs::File::from(master);
        let mut buf = [0u8; 4096];
        // Until the watcher has ended (then the pty reads EIO) or the test stopped listening.
        while let Ok(n @ 1..) = master.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    while count(&seen, b"\x1b[H\x1b[2J") < 2 || !String::from_utf8_lossy(&seen).contains("sink") {
        seen.extend(within(rx.recv()).await.expect("the watcher's terminal closed"));
    }
    interrupt(&on_tty);
    let status = within(on_tty.wait()).await.expect("wait");
    assert!(status.success(), "on a terminal, Ctrl-C ends the watch with success: {status}");
    drop(rx);
    let _ = reader.join();

    // The host goes away: the watch says so and goes on.
    host.signal(libc::SIGTERM);
    host.finish().await.assert_success();
    loop {
        let frame = within(next_frame(&mut lines)).await;
        if frame.lines.iter().any(|l| l.starts_with("host not answering: ")) {
            break;
        }
    }
    within(next_frame(&mut lines)).await;
    interrupt(&watch);
    let status = within(watch.wait()).await.expect("wait");
    assert!(status.success(), "Ctrl-C ends the watch with success: {status}");
}

/// How often `needle` occurs in `hay`.
fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// A pseudo-terminal: its master and slave ends.
fn pty() -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors through valid pointers; name, termios and size may
    // be null.
    let rc =
        unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both were just opened and are owned by nothing else.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}
