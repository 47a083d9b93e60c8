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
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

/// Paths of the guest components, built by this crate's build script.
pub mod artifacts {
    include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
}

/// The longest any single wait may take before the test fails.
pub const SAFETY: Duration = Duration::from_secs(60);

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
    stderr: tokio::sync::mpsc::UnboundedReceiver<String>,
    stderr_task: tokio::task::JoinHandle<()>,
    stderr_seen: Vec<String>,
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
        Self::start_env(bin, args, &[])
    }

    /// [`Bagpipe::start`] with more environment variables.
    pub fn start_env<I, S>(bin: &str, args: I, envs: &[(&str, &OsStr)]) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut child = tokio::process::Command::new(bin)
            .args(args)
            .envs(envs.iter().map(|(k, v)| (*k, *v)))
            .env("BAGPIPE_CACHE_DIR", workspace_root().join("target").join("bagpipe-test-cache"))
            .env("BAGPIPE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start bagpipe");
        let stdout_task = forward_lines(BufReader::new(child.stdout.take().expect("stdout")).lines());
        let (stdout_task, stdout) = stdout_task;
        let mut stderr_lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let (tx, stderr) = tokio::sync::mpsc::unbounded_channel();
        // Owned by the returned value and awaited in `finish`.
        let stderr_task = tokio::spawn(async move {
            while let Ok(Some(line)) = stderr_lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, stdout, stdout_task, stderr, stderr_task, stderr_seen: Vec::new(), lines: Vec::new() }
    }

    /// `bagpipe run DIR` with more arguments after it.
    pub fn run_with(bin: &str, dir: &BlockDir, extra: &[&str]) -> Self {
        let mut args = vec![OsStr::new("run"), dir.path().as_os_str()];
        args.extend(extra.iter().map(OsStr::new));
        Self::start(bin, args)
    }

    /// Waits for a log line containing `needle` and returns it.
    pub async fn log_line(&mut self, needle: &str) -> String {
        loop {
            let line = match tokio::time::timeout(SAFETY, self.stderr.recv()).await {
                Ok(line) => line,
                Err(_) => panic!("bagpipe did not log {needle:?} in time; its log ends:\n{}", self.log_tail()),
            }
            .unwrap_or_else(|| panic!("bagpipe ended without logging {needle:?}:\n{}", self.stderr_seen.join("\n")));
            self.stderr_seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Waits until a log line containing each of `needles` has come, in any order.
    pub async fn log_lines(&mut self, needles: &[&str]) {
        let mut missing: Vec<&str> = needles.to_vec();
        while !missing.is_empty() {
            let line = self.log_line("").await;
            missing.retain(|n| !line.contains(n));
        }
    }

    /// The last lines the host logged so far.
    fn log_tail(&mut self) -> String {
        while let Ok(line) = self.stderr.try_recv() {
            self.stderr_seen.push(line);
        }
        let from = self.stderr_seen.len().saturating_sub(40);
        self.stderr_seen[from..].join("\n")
    }

    /// The admin address the host logged (it must run with `--admin`).
    pub async fn admin_addr(&mut self) -> String {
        let line = self.log_line("admin endpoint on http://").await;
        let rest = line.split("http://").nth(1).expect("address");
        rest.split_whitespace().next().expect("address").to_owned()
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
                Err(_) => panic!("bagpipe printed nothing for too long; its log ends:\n{}", self.log_tail()),
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

    /// Waits for the process to exit; returns everything it printed (events already read by
    /// [`Bagpipe::next_event`] included).
    pub async fn finish(mut self) -> Finished {
        // Stdout first: the process ends when it is done writing.
        while self.next_event().await.is_some() {}
        let _ = (&mut self.stdout_task).await;
        let status = tokio::time::timeout(SAFETY, self.child.wait())
            .await
            .expect("bagpipe did not exit")
            .expect("waiting for bagpipe");
        let _ = self.stderr_task.await;
        while let Some(line) = self.stderr.recv().await {
            self.stderr_seen.push(line);
        }
        let stderr = self.stderr_seen.join("\n");
        let events = self.lines.iter().filter_map(|l| serde_json::from_str(l).ok()).collect();
        Finished { status, events, stdout: self.lines, stderr }
    }
}

/// Reads `lines` into a channel on a task of its own (owned by the caller through the handle).
fn forward_lines(
    mut lines: Lines<BufReader<ChildStdout>>,
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

/// A NATS server of a test's own (`nats-server` from the machine), on a port it picks, that the
/// test can stop and start again on the same port.
pub struct Nats {
    child: Option<tokio::process::Child>,
    /// The port it listens on.
    pub port: u16,
    store: tempfile::TempDir,
    jetstream: bool,
}

impl Nats {
    /// Starts a server on a free port, with JetStream when `jetstream`.
    pub async fn start(jetstream: bool) -> Self {
        let store = tempfile::tempdir().expect("store dir");
        let mut nats = Self { child: None, port: 0, store, jetstream };
        nats.spawn("-1").await;
        nats
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL: a crash, not a goodbye).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts it again on the same port.
    pub async fn restart(&mut self) {
        let port = self.port.to_string();
        self.spawn(&port).await;
    }

    async fn spawn(&mut self, port: &str) {
        let mut cmd = tokio::process::Command::new("nats-server");
        cmd.args(["-a", "127.0.0.1", "-p", port]);
        if self.jetstream {
            cmd.arg("-js").arg("-sd").arg(self.store.path());
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("nats-server must be installed (Debian package nats-server)");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let ready = async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = line.split("Listening for client connections on ").nth(1) {
                    self.port = addr.trim().rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
                }
                if line.contains("Server is ready") {
                    return true;
                }
            }
            false
        };
        assert!(tokio::time::timeout(SAFETY, ready).await.unwrap_or(false), "nats-server did not start");
        // Keep reading its log so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
    }
}
