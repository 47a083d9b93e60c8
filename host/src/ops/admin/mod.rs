//! The admin endpoint (`bagpipe run --admin ADDR`), served with hyper: the live page (`/`), a
//! block's stats as JSON (`/blocks`) and Prometheus text (`/metrics`), the host (`/host`), the
//! events as server-sent events (`/events`), the dead letters (`/dead-letters`), the server
//! connection (`/server`) and `/health`. Read-only: only `GET`, and only the address given.
//!
//! Invariants: the server reads shared atomics and never waits on a block; every connection is a
//! task owned by the server, and the server is owned by [`Admin`], which stops it (and joins every
//! task) when dropped or shut down; an `/events` stream ends when the server stops; a connection
//! that is not an `/events` stream lasts at most `ADMIN_READ_TIMEOUT`; at most
//! `ADMIN_MAX_CONNECTIONS` connections, of which `ADMIN_MAX_EVENT_STREAMS` streams, are served
//! at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use anyhow::Context as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::defaults::{
    ACCEPT_BACKOFF, ADMIN_EVENTS_KEEP_ALIVE, ADMIN_EVENTS_STALLED, ADMIN_MAX_CONNECTIONS, ADMIN_MAX_REQUEST,
    ADMIN_READ_TIMEOUT,
};
use crate::ops::feed::{Feed, LogSink};
use crate::routing::deadletter::DeadLetters;
use crate::routing::router::Router;
use crate::stats::StatsSnapshot;

mod events;
#[cfg(test)]
mod limits_tests;
mod metrics;
#[cfg(test)]
mod props;
mod route;

pub use route::{Page, Refused, route};

/// What the admin endpoint shows.
#[derive(Clone)]
pub struct AdminView {
    /// Every block's status.
    pub router: Arc<Router>,
    /// The dead letters.
    pub dead_letters: Arc<DeadLetters>,
    /// The message server connection, if any.
    pub server: Option<Arc<crate::io::server::ServerLink>>,
    /// The host's feed: its events and start time.
    pub feed: Feed,
    /// Where the host publishes its log lines, and how it is doing, when it does.
    pub logs: Option<(String, Arc<LogSink>)>,
    /// `/events` streams open now.
    streams: Arc<AtomicUsize>,
}

impl AdminView {
    /// A view of these parts.
    pub fn new(
        router: Arc<Router>,
        dead_letters: Arc<DeadLetters>,
        server: Option<Arc<crate::io::server::ServerLink>>,
        feed: Feed,
    ) -> Self {
        Self { router, dead_letters, server, feed, logs: None, streams: Arc::new(AtomicUsize::new(0)) }
    }

    /// This view, also showing the log publisher's subject and counts.
    pub fn with_logs(mut self, logs: Option<(String, Arc<LogSink>)>) -> Self {
        self.logs = logs;
        self
    }

    /// Every block's stats, built-in blocks left out, in start order.
    pub fn blocks(&self) -> Vec<StatsSnapshot> {
        self.router.routes().iter().filter(|r| !r.status.builtin).map(|r| r.snapshot()).collect()
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
        tracing::info!(
            event = "admin",
            addr = %addr,
            "admin endpoint on http://{addr} (the live page at /; /blocks, /metrics, /events, /host, /dead-letters, /server)"
        );
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
                    connections.spawn(serve_connection(stream, view.clone(), cancel.clone()));
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

// hyper refuses a smaller read buffer.
const _: () = assert!(ADMIN_MAX_REQUEST >= 8192);

/// Whether a connection became an `/events` stream, and when the stream was last asked for more.
pub(crate) struct Streaming {
    on: AtomicBool,
    since: tokio::time::Instant,
    /// Milliseconds after `since`.
    asked_ms: AtomicU64,
}

impl Streaming {
    fn new() -> Self {
        Self { on: AtomicBool::new(false), since: tokio::time::Instant::now(), asked_ms: AtomicU64::new(0) }
    }

    /// The connection is a stream now.
    pub(crate) fn start(&self) {
        self.asked();
        self.on.store(true, Ordering::Relaxed);
    }

    /// The stream was asked for its next bytes: its reader is reading.
    pub(crate) fn asked(&self) {
        self.asked_ms.store(self.since.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// How long since the stream was last asked for more.
    fn idle(&self) -> std::time::Duration {
        let asked = std::time::Duration::from_millis(self.asked_ms.load(Ordering::Relaxed));
        self.since.elapsed().saturating_sub(asked)
    }
}

/// Serves one connection (one request: no keep-alive) until it is answered, it has taken
/// `ADMIN_READ_TIMEOUT` (unless it became an `/events` stream, which lasts while its reader
/// reads), or the server stops.
pub(crate) async fn serve_connection<S>(stream: S, view: AdminView, cancel: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let streaming = Arc::new(Streaming::new());
    let service = {
        let (streaming, cancel) = (streaming.clone(), cancel.clone());
        hyper::service::service_fn(move |request| {
            let answer = route::answer(&view, &request, &cancel, &streaming);
            std::future::ready(Ok::<_, std::convert::Infallible>(answer))
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(ADMIN_READ_TIMEOUT)
        .max_buf_size(ADMIN_MAX_REQUEST)
        // A client that stops sending once its request is out still gets the whole answer.
        .half_close(true)
        .keep_alive(false);
    let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    // A connection that is not a stream has its time; a stream lasts while its reader reads.
    let deadline = async {
        tokio::time::sleep(ADMIN_READ_TIMEOUT).await;
        while streaming.on.load(Ordering::Relaxed) {
            if streaming.idle() > ADMIN_EVENTS_STALLED {
                return;
            }
            tokio::time::sleep(ADMIN_EVENTS_KEEP_ALIVE).await;
        }
    };
    tokio::select! {
        result = connection => {
            if let Err(e) = result {
                tracing::debug!("admin connection: {e}");
            }
        }
        () = deadline => tracing::debug!("admin connection too slow, or an /events reader not reading: dropped"),
        () = cancel.cancelled() => {}
    }
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
