//! The admin endpoint (`bagpipe run --admin ADDR`): per-block stats as JSON (`/blocks`), as
//! Prometheus text (`/metrics`), the dead letters (`/dead-letters`), and `/health`. Read-only.
//!
//! Invariants: the server reads shared atomics and never waits on a block; every connection is a
//! task owned by the server, and the server is owned by [`Admin`], which stops it (and joins every
//! task) when dropped or shut down.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::defaults::{ACCEPT_BACKOFF, ADMIN_MAX_CONNECTIONS, ADMIN_MAX_REQUEST, ADMIN_READ_TIMEOUT};
use crate::routing::deadletter::DeadLetters;
use crate::routing::router::Router;
use crate::stats::{PoolSnapshot, StatsSnapshot};

/// What the admin endpoint shows.
#[derive(Clone)]
pub struct AdminView {
    /// Every block's status.
    pub router: Arc<Router>,
    /// The dead letters.
    pub dead_letters: Arc<DeadLetters>,
    /// The message server connection, if any.
    pub server: Option<Arc<crate::io::server::ServerLink>>,
}

impl AdminView {
    /// Every block's stats, built-in blocks left out, in start order.
    pub fn blocks(&self) -> Vec<StatsSnapshot> {
        self.router.routes().iter().filter(|r| !r.status.builtin).map(|r| r.status.snapshot(r.queue_depth())).collect()
    }
}

/// A running admin server.
pub struct Admin {
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The admin address, bound (before anything else starts, so that a busy address stops start-up
/// with nothing to undo) and not served yet.
pub struct AdminListener {
    listener: TcpListener,
    addr: SocketAddr,
}

impl AdminListener {
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr).await.with_context(|| format!("binding the admin address {addr}"))?;
        let addr = listener.local_addr().with_context(|| format!("the admin address {addr}"))?;
        Ok(Self { listener, addr })
    }

    /// Serves `view` until shut down.
    pub fn serve(self, view: AdminView) -> Admin {
        let addr = self.addr;
        let cancel = CancellationToken::new();
        let task = tokio::spawn(serve(self.listener, view, cancel.clone()));
        tracing::info!(event = "admin", addr = %addr, "admin endpoint on http://{addr} (/blocks, /metrics, /dead-letters, /server)");
        Admin { cancel, task: Some(task) }
    }
}

impl Admin {
    /// Stops serving and waits for every connection task to end.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn serve(listener: TcpListener, view: AdminView, cancel: CancellationToken) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept(), if connections.len() < ADMIN_MAX_CONNECTIONS => match accepted {
                Ok((stream, _)) => {
                    let view = view.clone();
                    connections.spawn(async move {
                        match tokio::time::timeout(ADMIN_READ_TIMEOUT, handle(stream, &view)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => tracing::debug!("admin connection: {e:#}"),
                            Err(_) => tracing::debug!("admin connection too slow, dropped"),
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    tracing::warn!("admin accept failed: {e}");
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
            },
        }
    }
    connections.shutdown().await;
}

/// A page the admin endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// `/blocks`: every block's stats, as JSON.
    Blocks,
    /// `/dead-letters`: the dead letters kept, as JSON.
    DeadLetters,
    /// `/metrics`: the stats in Prometheus' text format.
    Metrics,
    /// `/server`: the message server connection, as JSON.
    Server,
    /// `/health`: `ok`.
    Health,
}

/// The pages, by path.
const PAGES: [(&str, Page); 5] = [
    ("/blocks", Page::Blocks),
    ("/dead-letters", Page::DeadLetters),
    ("/metrics", Page::Metrics),
    ("/server", Page::Server),
    ("/health", Page::Health),
];

/// What the bytes of a request read so far ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Not a whole request head yet: read on.
    Partial,
    /// `GET` of a page.
    Get(Page),
    /// Refused with this status line; `why` (the body) says what is wrong.
    Refused {
        /// The status line's code and reason, a 4xx.
        status: &'static str,
        /// What is wrong, one line.
        why: String,
    },
}

/// Reads the bytes of a request read so far. Pure, so that any bytes can be tried on it (the
/// property tests, `fuzz/`). Only the first `ADMIN_MAX_REQUEST` bytes are read: a longer head
/// is refused, whatever follows and however it arrived.
pub fn read_request(buf: &[u8]) -> Request {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    let refused = |status, why: String| Request::Refused { status, why: why + "\n" };
    match request.parse(&buf[..buf.len().min(ADMIN_MAX_REQUEST)]) {
        Ok(httparse::Status::Complete(_)) => {
            let method = request.method.unwrap_or_default();
            if method != "GET" {
                return refused("405 Method Not Allowed", format!("`{method}` is not allowed here: only GET"));
            }
            let path = request.path.unwrap_or("/");
            let path = path.split('?').next().unwrap_or(path);
            match PAGES.iter().find(|(p, _)| *p == path) {
                Some((_, page)) => Request::Get(*page),
                None => refused(
                    "404 Not Found",
                    format!("no page `{path}`: try /blocks, /metrics, /dead-letters, /server or /health"),
                ),
            }
        }
        Ok(httparse::Status::Partial) if buf.len() < ADMIN_MAX_REQUEST => Request::Partial,
        Ok(httparse::Status::Partial) => refused(
            "431 Request Header Fields Too Large",
            format!("request head larger than {ADMIN_MAX_REQUEST} bytes"),
        ),
        Err(e) => refused("400 Bad Request", format!("malformed request: {e}")),
    }
}

/// Serves one connection: reads one request and answers it.
pub(crate) async fn handle<S>(mut stream: S, view: &AdminView) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::with_capacity(1024);
    let page = loop {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        match read_request(&buf) {
            Request::Partial => continue,
            Request::Get(page) => break page,
            Request::Refused { status, why } => return respond(&mut stream, status, "text/plain", &why).await,
        }
    };
    match page {
        Page::Blocks => {
            let body = serde_json::to_string_pretty(&view.blocks())?;
            respond(&mut stream, "200 OK", "application/json", &body).await
        }
        Page::DeadLetters => {
            let body = serde_json::to_string_pretty(&serde_json::json!({
                "total": view.dead_letters.total(),
                "kept": view.dead_letters.list(),
            }))?;
            respond(&mut stream, "200 OK", "application/json", &body).await
        }
        Page::Metrics => {
            let mut text = prometheus(&view.blocks(), &view.dead_letters);
            if let Some(server) = &view.server {
                text.push_str(&server_metrics(&server.snapshot()));
            }
            respond(&mut stream, "200 OK", "text/plain; version=0.0.4", &text).await
        }
        Page::Server => {
            let body = serde_json::to_string_pretty(&view.server.as_ref().map(|s| s.snapshot()))?;
            respond(&mut stream, "200 OK", "application/json", &body).await
        }
        Page::Health => respond(&mut stream, "200 OK", "text/plain", "ok\n").await,
    }
}

async fn respond<S>(stream: &mut S, status: &str, content_type: &str, body: &str) -> anyhow::Result<()>
where
    S: AsyncWrite + Unpin,
{
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await?;
    Ok(())
}

/// A metric: its name, its help text, and how to read it from a block's stats.
type Metric = (&'static str, &'static str, fn(&StatsSnapshot) -> u64);

/// A pool's metric: name, Prometheus type, help, value.
type PoolMetric = (&'static str, &'static str, &'static str, fn(&PoolSnapshot) -> u64);

/// The stats in Prometheus' text format.
pub fn prometheus(blocks: &[StatsSnapshot], dead_letters: &DeadLetters) -> String {
    let mut out = String::new();
    let counters: &[Metric] = &[
        ("received", "Bags put into the block's queue.", |s| s.received),
        ("processed", "Bags on-enqueue accepted.", |s| s.processed),
        ("failed", "Bags on-enqueue returned an error for.", |s| s.failed),
        ("refused_full", "Senders told queue-full by this block's queue.", |s| s.refused_full),
        ("refused_too_large", "Bags refused for being larger than the block accepts.", |s| s.refused_too_large),
        ("refused_invalid", "Bags refused for not being bags the block accepts.", |s| s.refused_invalid),
        ("budget_refusals", "Calls refused because the block had spent a budget.", |s| s.budget_refusals),
        ("logs_dropped", "Log lines past the block's rate, not written.", |s| s.logs_dropped),
        ("stdout_dropped", "Writes to stdout dropped: the host's stdout was not keeping up.", |s| s.stdout_dropped),
        ("batches", "Calls that delivered queued bags and socket events several at a time.", |s| s.batches),
        ("calls", "Calls to other blocks this block made.", |s| s.calls),
        ("calls_failed", "Calls of this block that ended without an answer.", |s| s.calls_failed),
        ("emitted", "Bags this block emitted on topics.", |s| s.emitted),
        (
            "topic_dropped",
            "Copies of topics' bags a lossy subscription of this block missed (its queue was full).",
            |s| s.topic_dropped,
        ),
        ("output_paced", "Times the block's output made it wait: it printed past its rate.", |s| s.output_paced),
        ("lost", "Bags still queued when the block ended.", |s| s.lost),
        ("sent", "Bags the block sent.", |s| s.sent),
        ("timers_fired", "Timers that fired.", |s| s.timers_fired),
        ("faults", "Traps, deadlines and limit breaches.", |s| s.faults),
        ("restarts", "Fresh instances started after a fault.", |s| s.restarts),
        ("dead_letters", "Bags given up on after faulting.", |s| s.dead_letters),
        ("returned", "Durable bags still queued at the end, left to their stream.", |s| s.returned),
        ("redelivered", "Durable bags their stream delivered again.", |s| s.redelivered),
        ("dead_letters_cut", "Durable dead letters cut to fit the server's max_payload.", |s| s.dead_letters_cut),
        ("publish_busy", "Publishes refused because the outbox was full.", |s| s.publish_busy),
        ("publish_retries", "Published messages sent again, unconfirmed by the server.", |s| s.publish_retries),
        ("publish_dropped", "Published messages never confirmed, left when the block ended.", |s| s.publish_dropped),
        ("outbox_recovered", "Unconfirmed messages an earlier run spilled, sent at start.", |s| s.outbox_recovered),
    ];
    for (name, help, get) in counters {
        let _ = writeln!(out, "# HELP bagpipe_block_{name}_total {help}\n# TYPE bagpipe_block_{name}_total counter");
        for s in blocks {
            let _ = writeln!(out, "bagpipe_block_{name}_total{} {}", labels(s), get(s));
        }
    }
    let gauges: [Metric; 4] = [
        ("queue_depth", "Bags in the queue now.", |s| s.queue_depth),
        ("queue_high_water", "Most bags the queue has held.", |s| s.queue_high_water),
        ("outbox_messages", "Published messages waiting for the server now.", |s| s.outbox_messages),
        ("outbox_bytes", "Bytes of published messages waiting for the server now.", |s| s.outbox_bytes),
    ];
    for (name, help, get) in gauges {
        let _ = writeln!(out, "# HELP bagpipe_block_{name} {help}\n# TYPE bagpipe_block_{name} gauge");
        for s in blocks {
            let _ = writeln!(out, "bagpipe_block_{name}{} {}", labels(s), get(s));
        }
    }
    // Blocks served by several workers: their pools.
    let pools: [PoolMetric; 4] = [
        ("workers", "gauge", "Workers serving the block now.", |p| p.now),
        ("workers_high_water", "gauge", "Most workers that served the block at once.", |p| p.high_water),
        ("worker_scale_ups_total", "counter", "Workers added because bags waited.", |p| p.scale_ups),
        ("worker_retirements_total", "counter", "Idle workers retired.", |p| p.retirements),
    ];
    for (name, kind, help, get) in pools {
        let _ = writeln!(out, "# HELP bagpipe_block_{name} {help}\n# TYPE bagpipe_block_{name} {kind}");
        for s in blocks {
            if let Some(pool) = &s.workers {
                let _ = writeln!(out, "bagpipe_block_{name}{} {}", labels(s), get(pool));
            }
        }
    }
    let _ = writeln!(out, "# HELP bagpipe_block_up 1 when the block is running.\n# TYPE bagpipe_block_up gauge");
    for s in blocks {
        let _ = writeln!(out, "bagpipe_block_up{} {}", labels(s), u8::from(s.state == "running"));
    }
    let _ = writeln!(
        out,
        "# HELP bagpipe_block_processing_seconds on-enqueue time.\n# TYPE bagpipe_block_processing_seconds summary"
    );
    for s in blocks {
        for (q, v) in [("0.5", s.processing_p50_us), ("0.99", s.processing_p99_us)] {
            if let Some(us) = v {
                let l = labels(s);
                let l = format!("{},quantile=\"{q}\"}}", &l[..l.len() - 1]);
                let _ = writeln!(out, "bagpipe_block_processing_seconds{l} {}", us / 1e6);
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP bagpipe_dead_letters_total Dead letters of this run.\n# TYPE bagpipe_dead_letters_total counter\nbagpipe_dead_letters_total {}",
        dead_letters.total()
    );
    out
}

fn server_metrics(s: &crate::io::server::ServerSnapshot) -> String {
    format!(
        "# HELP bagpipe_server_up 1 when connected to the message server.\n# TYPE bagpipe_server_up gauge\n\
         bagpipe_server_up{{url=\"{url}\"}} {up}\n\
         # HELP bagpipe_server_reconnects_total Connections made after the first.\n# TYPE bagpipe_server_reconnects_total counter\n\
         bagpipe_server_reconnects_total {}\n\
         # HELP bagpipe_server_published_total Messages published by blocks.\n# TYPE bagpipe_server_published_total counter\n\
         bagpipe_server_published_total {}\n\
         # HELP bagpipe_server_received_total Messages received for blocks.\n# TYPE bagpipe_server_received_total counter\n\
         bagpipe_server_received_total {}\n",
        s.reconnects,
        s.published,
        s.received,
        url = s.url.replace('"', "\\\""),
        up = u8::from(s.state == "connected"),
    )
}

fn labels(s: &StatsSnapshot) -> String {
    let esc = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        "{{block=\"{}\",component=\"{}\",state=\"{}\",version=\"{}\"}}",
        esc(&s.responsibility),
        esc(&s.name),
        s.state,
        s.version
    )
}

/// `GET path` from an admin endpoint at `addr`; the response body.
pub async fn get(addr: &str, path: &str) -> anyhow::Result<String> {
    let mut stream = tokio::time::timeout(ADMIN_READ_TIMEOUT, TcpStream::connect(addr))
        .await
        .context("connecting timed out")?
        .with_context(|| {
            format!("connecting to the admin endpoint at {addr}; is `bagpipe run --admin {addr}` running?")
        })?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").as_bytes()).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(ADMIN_READ_TIMEOUT, stream.read_to_end(&mut buf)).await.context("reading timed out")??;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(at) = response.parse(&buf)? else {
        anyhow::bail!("incomplete response from {addr}");
    };
    if response.code != Some(200) {
        anyhow::bail!("{addr}{path} answered {:?} {:?}", response.code, response.reason);
    }
    Ok(String::from_utf8_lossy(&buf[at..]).into_owned())
}
