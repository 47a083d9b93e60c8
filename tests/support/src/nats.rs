//! A NATS server of a test's own.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::SAFETY;

/// A NATS server of a test's own (`nats-server` from the machine), on a port it picks, that the
/// test can stop and start again on the same port.
pub struct Nats {
    child: Option<tokio::process::Child>,
    /// The port it listens on.
    pub port: u16,
    store: tempfile::TempDir,
    jetstream: bool,
    /// A configuration file, if the test gave one.
    config: Option<std::path::PathBuf>,
}

impl Nats {
    /// Starts a server on a free port, with JetStream when `jetstream`.
    pub async fn start(jetstream: bool) -> Self {
        Self::start_configured(jetstream, None).await
    }

    /// Starts a server as [`Nats::start`] does, with `config` as its configuration file (for
    /// settings no option sets, such as `max_payload: 4096`).
    pub async fn start_with_config(jetstream: bool, config: &str) -> Self {
        Self::start_configured(jetstream, Some(config)).await
    }

    async fn start_configured(jetstream: bool, config: Option<&str>) -> Self {
        let store = tempfile::tempdir().expect("store dir");
        let config = config.map(|text| {
            let path = store.path().join("nats.conf");
            std::fs::write(&path, text).expect("writing the server's configuration");
            path
        });
        let mut nats = Self { child: None, port: 0, store, jetstream, config };
        nats.spawn("-1").await;
        nats
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The payloads the JetStream stream `name` holds now, in order (read back over a fresh
    /// connection).
    pub async fn stored(&self, name: &str) -> Vec<Vec<u8>> {
        let client = async_nats::connect(self.url()).await.expect("connect again");
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream(name).await.expect("the stream");
        let last = stream.info().await.expect("info").state.last_sequence;
        let mut payloads = Vec::new();
        for seq in 1..=last {
            if let Ok(message) = stream.get_raw_message(seq).await {
                payloads.push(message.payload.to_vec());
            }
        }
        payloads
    }

    /// Stops the server (SIGKILL: a crash, not a goodbye).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Pauses the server (SIGSTOP): its sockets stay open and nothing answers. Returns once the
    /// kernel reports it stopped (a many-threaded process stops a moment after the signal).
    pub async fn pause(&self) {
        self.signal(libc::SIGSTOP, 'T').await;
    }

    /// Lets a paused server go on (SIGCONT), once it runs again.
    pub async fn resume(&self) {
        self.signal(libc::SIGCONT, 'S').await;
    }

    async fn signal(&self, signal: i32, until: char) {
        let Some(pid) = self.child.as_ref().and_then(tokio::process::Child::id) else { return };
        // SAFETY: a signal to the server process this struct started and still owns.
        unsafe { libc::kill(pid as i32, signal) };
        let state = || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The state follows the command name, which is in parentheses.
            stat.rsplit(')').next().and_then(|rest| rest.trim_start().chars().next())
        };
        let reached = async {
            while state().is_some_and(|s| if until == 'T' { s != 'T' } else { s == 'T' }) {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        };
        assert!(tokio::time::timeout(SAFETY, reached).await.is_ok(), "nats-server did not take signal {signal}");
    }

    /// Starts it again on the same port.
    pub async fn restart(&mut self) {
        let port = self.port.to_string();
        self.spawn(&port).await;
    }

    async fn spawn(&mut self, port: &str) {
        let mut cmd = tokio::process::Command::new("nats-server");
        if let Some(config) = &self.config {
            // Before the options, which win over the file.
            cmd.arg("-c").arg(config);
        }
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
