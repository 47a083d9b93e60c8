//! What the integration tests share: the built guest components ([`artifacts`]), component
//! directories in temporary folders ([`BlockDir`]), and the `bagpipe` binary run as a child
//! process ([`Bagpipe`]) whose stdout lines are the JSON events blocks print and whose stderr is
//! the host's log, one JSON record a line (`BAGPIPE_LOG_FORMAT=json`), and a headless Chromium
//! for the page the admin endpoint serves ([`browser::Browser`]).
//!
//! No sleeps: tests wait for events the blocks print and for the `event` the host gives the log
//! records worth waiting for ([`Bagpipe::log_event`]), never for the wording of a log line. Every
//! wait has a generous safety limit ([`SAFETY`]) so that a hung host fails the test instead of
//! hanging the suite.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::Child;

pub mod browser;
mod log;
mod nats;
pub mod polyglot;
mod wat;

use log::parse_record;
pub use log::{Want, block_of, render};
pub use nats::Nats;
pub use wat::wat_block;

/// Paths of the guest components, built by this crate's build script.
pub mod artifacts {
    include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
}

/// The longest any single wait may take before the test fails: a hang detector, not a timing
/// check. Compiling a Python or JavaScript component took 25 to 30 s of it on a loaded 2-core
/// machine, and a test may compile two.
pub const SAFETY: Duration = Duration::from_secs(120);

/// `f`'s outcome; fails the test when it takes longer than [`SAFETY`].
pub async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(SAFETY, f).await.expect("no answer in time")
}

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

    /// A directory with `manifest` as its `bagpipe.toml` and, for every `name` its `[[block]]`
    /// tables give, the built component of that name ([`artifacts::path`]) as `name.wasm`.
    ///
    /// Panics when a block names a component that was not built: a test that needs a file of
    /// its own (or none) lists the components with [`BlockDir::new`].
    pub fn from_manifest(manifest: &str) -> Self {
        let table: toml::Table = manifest.parse().unwrap_or_else(|e| panic!("the test's manifest is not TOML: {e}"));
        let mut names: Vec<&str> = table
            .get("block")
            .and_then(toml::Value::as_array)
            .map(|blocks| blocks.iter().filter_map(|b| b.get("name")?.as_str()).collect())
            .unwrap_or_default();
        names.sort_unstable();
        names.dedup();
        let components: Vec<(&str, &str)> = names
            .into_iter()
            .map(|name| {
                let artifact = artifacts::path(name)
                    .unwrap_or_else(|| panic!("no component `{name}` was built; list the files with BlockDir::new"));
                (name, artifact)
            })
            .collect();
        Self::new(manifest, &components)
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
    /// Stdout lines, read continuously so a block printing never blocks on a full pipe.
    stdout: tokio::sync::mpsc::UnboundedReceiver<String>,
    stdout_task: tokio::task::JoinHandle<()>,
    /// Stderr lines, read continuously for the same reason.
    stderr: tokio::sync::mpsc::UnboundedReceiver<String>,
    stderr_task: tokio::task::JoinHandle<()>,
    /// The log records read so far.
    log: Vec<Value>,
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
    /// Every stderr line (the host's log), in order: a JSON record, or a string for a line that
    /// was not JSON (what the host prints without its logger, such as its last error).
    pub log: Vec<Value>,
    /// The log rendered for people, one [`render`]ed record a line: for failure messages, and
    /// for the words that come from a guest or are the point of a test.
    pub stderr: String,
}

impl Bagpipe {
    /// Starts `bin` (the `bagpipe` binary) with `args`, logging JSON records at `info`. The
    /// compile cache is the workspace's `target/bagpipe-test-cache`, shared by every test.
    pub fn start<I, S>(bin: &str, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Self::start_env(bin, args, &[])
    }

    /// [`Bagpipe::start`] with more environment variables (`BAGPIPE_CACHE_DIR` among them
    /// replaces the shared cache).
    pub fn start_env<I, S>(bin: &str, args: I, envs: &[(&str, &OsStr)]) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = tokio::process::Command::new(bin);
        command.env("BAGPIPE_CACHE_DIR", workspace_root().join("target").join("bagpipe-test-cache"));
        let mut child = command
            .args(args)
            .envs(envs.iter().map(|(k, v)| (*k, *v)))
            .env("BAGPIPE_LOG", "info")
            .env("BAGPIPE_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start bagpipe");
        let (stdout_task, stdout) = forward_lines(BufReader::new(child.stdout.take().expect("stdout")).lines());
        let (stderr_task, stderr) = forward_lines(BufReader::new(child.stderr.take().expect("stderr")).lines());
        Self { child, stdout, stdout_task, stderr, stderr_task, log: Vec::new(), lines: Vec::new() }
    }

    /// `bagpipe run DIR` with more arguments after it.
    pub fn run_with(bin: &str, dir: &BlockDir, extra: &[&str]) -> Self {
        let mut args = vec![OsStr::new("run"), dir.path().as_os_str()];
        args.extend(extra.iter().map(OsStr::new));
        Self::start(bin, args)
    }

    /// Waits for a log record with `"event": name` and returns it.
    pub async fn log_event(&mut self, name: &str) -> Value {
        self.log_record(Want::event(name)).await
    }

    /// Waits for a log record matching `want` and returns it.
    pub async fn log_record(&mut self, want: Want) -> Value {
        self.log_records(std::slice::from_ref(&want)).await.remove(0)
    }

    /// Waits for a log record with `"event": name` for which `pred` holds, and returns it.
    pub async fn log_event_where(&mut self, name: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + SAFETY;
        let waiting_for = format!("event={name} (with a condition)");
        loop {
            let record = self.next_record(deadline, &waiting_for).await;
            if record["event"] == name && pred(&record) {
                return record;
            }
        }
    }

    /// Waits until a log record matching each of `wanted` has come, in any order; returns them
    /// in the order of `wanted`. A record matches the first of `wanted` it fits that has none.
    pub async fn log_records(&mut self, wanted: &[Want]) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + SAFETY;
        let mut found: Vec<Option<Value>> = vec![None; wanted.len()];
        while found.iter().any(Option::is_none) {
            let missing: Vec<String> =
                wanted.iter().zip(&found).filter(|(_, f)| f.is_none()).map(|(w, _)| w.to_string()).collect();
            let record = self.next_record(deadline, &missing.join(", ")).await;
            if let Some(slot) = wanted.iter().zip(found.iter_mut()).find_map(|(w, f)| {
                let fits = f.is_none() && w.matches(&record);
                fits.then_some(f)
            }) {
                *slot = Some(record);
            }
        }
        found.into_iter().flatten().collect()
    }

    /// The admin endpoint's `ip:port`, from the host's `admin` record (it must run with
    /// `--admin`).
    pub async fn admin_addr(&mut self) -> String {
        let record = self.log_event("admin").await;
        record["addr"].as_str().unwrap_or_else(|| panic!("no address in {record}")).to_owned()
    }

    /// The next log record, kept for [`Finished::log`]; fails the test when `deadline` passes or
    /// the log ends first.
    async fn next_record(&mut self, deadline: tokio::time::Instant, waiting_for: &str) -> Value {
        let line = match tokio::time::timeout_at(deadline, self.stderr.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => panic!("bagpipe ended without logging {waiting_for}; its log:\n{}", self.rendered_log(0)),
            Err(_) => panic!("bagpipe did not log {waiting_for} in time; its log ends:\n{}", self.log_tail()),
        };
        let record = parse_record(line);
        self.log.push(record.clone());
        record
    }

    /// The last records the host logged so far, rendered.
    fn log_tail(&mut self) -> String {
        while let Ok(line) = self.stderr.try_recv() {
            self.log.push(parse_record(line));
        }
        self.rendered_log(self.log.len().saturating_sub(40))
    }

    /// The records read so far from index `from` on, rendered.
    fn rendered_log(&self, from: usize) -> String {
        self.log[from..].iter().map(render).collect::<Vec<_>>().join("\n")
    }

    /// `bagpipe run DIR`.
    pub fn run(bin: &str, dir: &BlockDir) -> Self {
        Self::start(bin, [OsStr::new("run"), dir.path().as_os_str()])
    }

    /// The next JSON event on stdout; `None` when stdout closed.
    pub async fn next_event(&mut self) -> Option<Value> {
        loop {
            let line = match tokio::time::timeout(SAFETY, self.stdout.recv()).await {
                Ok(line) => line?,
                Err(_) => {
                    let printed = self.lines.len().saturating_sub(4);
                    panic!(
                        "bagpipe printed nothing for too long; its last lines on stdout:\n{}\nits log ends:\n{}",
                        self.lines[printed..].join("\n"),
                        self.log_tail()
                    )
                }
            };
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

    /// Waits for the process to exit; returns everything it printed (events and log records
    /// already read by the waits included).
    pub async fn finish(mut self) -> Finished {
        // Stdout first: the process ends when it is done writing.
        while self.next_event().await.is_some() {}
        let _ = (&mut self.stdout_task).await;
        let status = tokio::time::timeout(SAFETY, self.child.wait())
            .await
            .expect("bagpipe did not exit")
            .expect("waiting for bagpipe");
        let _ = (&mut self.stderr_task).await;
        while let Some(line) = self.stderr.recv().await {
            self.log.push(parse_record(line));
        }
        let stderr = self.rendered_log(0);
        let events = self.lines.iter().filter_map(|l| serde_json::from_str(l).ok()).collect();
        Finished { status, events, stdout: self.lines, log: self.log, stderr }
    }
}

/// Reads `lines` into a channel on a task of its own (owned by the caller through the handle).
fn forward_lines<R: tokio::io::AsyncBufRead + Unpin + Send + 'static>(
    mut lines: Lines<R>,
) -> (tokio::task::JoinHandle<()>, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (task, rx)
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
    /// The events with `"event": kind` blocks printed on stdout, in order.
    pub fn events(&self, kind: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["event"] == kind).collect()
    }

    /// The host's log records with `"event": name`, in order.
    pub fn log_events(&self, name: &str) -> Vec<&Value> {
        self.log.iter().filter(|r| r["event"] == name).collect()
    }

    /// The `final_stats` record of block `responsibility`; panics with the log when there is none.
    pub fn final_stats(&self, responsibility: &str) -> &Value {
        self.log
            .iter()
            .find(|r| r["event"] == "final_stats" && r["block"] == responsibility)
            .unwrap_or_else(|| panic!("no final stats for `{responsibility}` in the log:\n{}", self.stderr))
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

impl BlockDir {
    /// Where tests ask `bagpipe run --report` to write.
    pub fn report_path(&self) -> PathBuf {
        self.path().join("report.json")
    }

    /// The report `bagpipe run --report <report_path>` wrote.
    pub fn report(&self) -> Report {
        let bytes = std::fs::read(self.report_path()).expect("bagpipe wrote no report");
        Report(serde_json::from_slice(&bytes).expect("report is JSON"))
    }
}

/// The JSON report of a run.
#[derive(Debug)]
pub struct Report(pub Value);

impl Report {
    /// The final stats of block `responsibility`.
    pub fn block(&self, responsibility: &str) -> &Value {
        self.0["blocks"]
            .as_array()
            .and_then(|bs| bs.iter().find(|b| b["responsibility"] == responsibility))
            .unwrap_or_else(|| panic!("no stats for `{responsibility}` in {:#}", self.0))
    }

    /// A counter of block `responsibility`.
    pub fn count(&self, responsibility: &str, counter: &str) -> u64 {
        self.block(responsibility)[counter].as_u64().unwrap_or_else(|| panic!("no counter {counter}"))
    }

    /// The dead letters.
    pub fn dead_letters(&self) -> Vec<&Value> {
        self.0["dead_letters"].as_array().map(|a| a.iter().collect()).unwrap_or_default()
    }

    /// The blocks that failed for good, with their errors.
    pub fn failed(&self) -> Vec<(String, String)> {
        self.0["failed"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|f| {
                        (f["block"].as_str().unwrap_or("").to_owned(), f["error"].as_str().unwrap_or("").to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The component `artifact` with a custom section naming `tag` appended: the same block, a
/// different file (and so a different version) for the host.
pub fn variant(artifact: &str, tag: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut bytes = std::fs::read(artifact).expect("component");
    let name = b"bagpipe-test-variant";
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name);
    body.extend_from_slice(tag.as_bytes());
    bytes.push(0);
    leb(body.len(), &mut bytes);
    bytes.extend_from_slice(&body);
    bytes
}

/// The version the host shows for a component: the first 12 hex digits of its SHA-256.
pub fn version_of(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// The ways a new version can land in a component directory.
#[derive(Debug, Clone, Copy)]
pub enum Write {
    /// Truncate and write in place, as `cp` does.
    Copy,
    /// Write a temporary file beside it, then rename it over: atomic.
    Rename,
    /// Write in place in eight chunks with pauses between them, as a slow copy over the network
    /// would.
    Chunked,
}

impl BlockDir {
    /// Puts `bytes` at `file` the way `how` says.
    pub fn write_as(&self, file: &str, bytes: &[u8], how: Write) {
        use std::io::Write as _;
        let path = self.path().join(file);
        match how {
            Write::Copy => std::fs::write(&path, bytes).expect("write"),
            Write::Rename => {
                let tmp = self.path().join(format!(".{file}.tmp"));
                std::fs::write(&tmp, bytes).expect("write temporary");
                std::fs::rename(&tmp, &path).expect("rename");
            }
            Write::Chunked => {
                let mut f = std::fs::File::create(&path).expect("create");
                for chunk in bytes.chunks(bytes.len().div_ceil(8)) {
                    f.write_all(chunk).expect("write chunk");
                    f.flush().expect("flush");
                    // A slow writer, not synchronisation: the host must wait for the whole file.
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
}
