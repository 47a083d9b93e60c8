//! What the integration tests share: the built guest components ([`artifacts`]), component
//! directories in temporary folders ([`BlockDir`]), and the `bagpipe` binary run as a child
//! process whose stdout lines are JSON events ([`Bagpipe`]).
//!
//! No sleeps: tests wait for events the blocks print. Every wait has a generous safety limit
//! ([`SAFETY`]) so that a hung host fails the test instead of hanging the suite.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

/// Paths of the guest components, built by this crate's build script.
pub mod artifacts {
    include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
}

/// The longest any single wait may take before the test fails.
pub const SAFETY: Duration = Duration::from_secs(120);

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A component directory in a temporary folder.
pub struct BlockDir {
    dir: tempfile::TempDir,
}

impl BlockDir {
    /// A directory with `manifest` as its `bagpipe.toml` and each `(name, artifact)` copied to
    /// `name.wasm`.
    pub fn new(manifest: &str, components: &[(&str, &str)]) -> Self {
        let dir = tempfile::Builder::new().prefix("bagpipe-test").tempdir().expect("temp dir");
        std::fs::write(dir.path().join("bagpipe.toml"), manifest).expect("write manifest");
        let this = Self { dir };
        for (name, artifact) in components {
            this.copy(name, artifact);
        }
        this
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Copies the component `artifact` to `name.wasm`.
    pub fn copy(&self, name: &str, artifact: &str) {
        std::fs::copy(artifact, self.path().join(format!("{name}.wasm"))).expect("copy component");
    }

    /// Writes `bytes` to `file` in the directory.
    pub fn write(&self, file: &str, bytes: &[u8]) {
        std::fs::write(self.path().join(file), bytes).expect("write file");
    }
}

/// A `bagpipe` child process.
pub struct Bagpipe {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: tokio::task::JoinHandle<String>,
    lines: Vec<String>,
}

/// How a `bagpipe` process ended.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// Every stdout line that was JSON, in order.
    pub events: Vec<Value>,
    /// Every stdout line.
    pub stdout: Vec<String>,
    /// All of stderr (the host's log).
    pub stderr: String,
}

impl Bagpipe {
    /// Starts `bin` (the `bagpipe` binary) with `args`. The compile cache is the workspace's
    /// `target/bagpipe-test-cache`, shared by every test.
    pub fn start<I, S>(bin: &str, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut child = tokio::process::Command::new(bin)
            .args(args)
            .env("BAGPIPE_CACHE_DIR", workspace_root().join("target").join("bagpipe-test-cache"))
            .env("BAGPIPE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start bagpipe");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut stderr = child.stderr.take().expect("stderr");
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        });
        Self { child, stdout, stderr, lines: Vec::new() }
    }

    /// `bagpipe run DIR`.
    pub fn run(bin: &str, dir: &BlockDir) -> Self {
        Self::start(bin, [OsStr::new("run"), dir.path().as_os_str()])
    }

    /// The next JSON event on stdout; `None` when stdout closed.
    pub async fn next_event(&mut self) -> Option<Value> {
        loop {
            let line = tokio::time::timeout(SAFETY, self.stdout.next_line())
                .await
                .expect("bagpipe printed nothing for too long")
                .expect("reading bagpipe's stdout")?;
            self.lines.push(line.clone());
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                return Some(v);
            }
        }
    }

    /// Reads events until `n` of them match `pred`; returns every event read.
    pub async fn wait_for(&mut self, n: usize, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        let mut matched = 0;
        while matched < n {
            let event = self.next_event().await.expect("bagpipe ended before the awaited events");
            if pred(&event) {
                matched += 1;
            }
            seen.push(event);
        }
        seen
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the process.
    pub fn signal(&self, signal: i32) {
        let pid = self.child.id().expect("bagpipe is running") as i32;
        // SAFETY: kill(2) on a pid we spawned and have not reaped.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for the process to exit; returns everything it printed (events already read by
    /// [`Bagpipe::next_event`] included).
    pub async fn finish(mut self) -> Finished {
        while self.next_event().await.is_some() {}
        let status = tokio::time::timeout(SAFETY, self.child.wait())
            .await
            .expect("bagpipe did not exit")
            .expect("waiting for bagpipe");
        let stderr = self.stderr.await.unwrap_or_default();
        let events = self.lines.iter().filter_map(|l| serde_json::from_str(l).ok()).collect();
        Finished { status, events, stdout: self.lines, stderr }
    }
}

/// Runs `bin` with `args` to the end.
pub async fn run_to_end<I, S>(bin: &str, args: I) -> Finished
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Bagpipe::start(bin, args).finish().await
}

impl Finished {
    /// The events with `"event": kind`, in order.
    pub fn events(&self, kind: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["event"] == kind).collect()
    }

    /// `(event, block)` for every event, in order: the lifecycle as it happened.
    pub fn trace(&self) -> Vec<(String, String)> {
        self.events
            .iter()
            .map(|e| (e["event"].as_str().unwrap_or("").to_owned(), e["block"].as_str().unwrap_or("").to_owned()))
            .collect()
    }

    /// The bags received by `block`, in order.
    pub fn bags_of(&self, block: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["event"] == "bag" && e["block"] == block).map(|e| &e["bag"]).collect()
    }

    /// Panics with the whole output unless the process exited 0.
    pub fn assert_success(&self) {
        assert!(
            self.status.success(),
            "bagpipe failed ({}):\n{}\n{}",
            self.status,
            self.stdout.join("\n"),
            self.stderr
        );
    }
}
