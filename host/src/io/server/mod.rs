//! The server connector: the host's connection to its message server (NATS), which drives the
//! blocks' `on-server-connect`/`on-server-disconnect`, carries their publish/subscribe/request
//! calls, and joins hosts of one cluster.
//!
//! [`ServerLink`] is the host's one connection: it connects in the background with retries and
//! backoff, and publishes every transition on a watch channel ([`ServerState`], with a generation
//! count so that no transition is ever missed, even when two come at once). Each block that may
//! use the server gets a [`BlockServer`] (its grants and its subscriptions), which lives as long
//! as the block, not an instance.
//!
//! What a block publishes goes through its [`outbox`]: held (bounded in bytes, in memory or
//! spilled to disk) until the server confirmed it, sent again after an outage, in order.
//! `subscribe` and `request` fail with `not-connected` while the host is disconnected (a
//! subscription is kept and resumes on reconnection).
//!
//! Invariants: no broker wait runs without a timeout; every task (subscription readers, the
//! outbox's flusher, cluster servers, durable consumers) is tracked and joined on shutdown.

mod bridge;
mod calls;
pub mod cluster;
pub mod outbox;
mod subscribing;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bindings::ServerInfo;
use crate::defaults::{
    BARRIER_WAIT, INITIAL_WAIT, MAX_REQUEST_TIMEOUT, RECONNECT_BACKOFF, REPLY_SUBJECTS, SERVER_CALL_TIMEOUT,
    SERVER_CLOSE_FLUSH, SUBSCRIPTION_BUFFER,
};
use crate::manifest::subject;
use crate::routing::queue::{BlockQueue, Envelope};
use crate::stats::{BlockStatus, Counters};
pub use calls::ServerCtx;
use outbox::Outbox;

/// Where the host is with its server.
#[derive(Debug, Clone, Default)]
pub struct ServerState {
    /// Connected now.
    pub connected: bool,
    /// How many times it has connected so far: a block told of connection `n` that sees `n + 2`
    /// missed a disconnection and a connection, and hears both.
    pub generation: u64,
    /// The server it is connected to (the last one, when disconnected).
    pub info: Option<ServerInfo>,
}

/// The host-wide counters of the server connection.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections made after the first.
    pub reconnects: AtomicU64,
    /// Messages published by blocks.
    pub published: AtomicU64,
    /// Messages received for blocks (subscriptions, the cluster, durable streams).
    pub received: AtomicU64,
}

/// The server stats at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ServerSnapshot {
    /// The server's address.
    pub url: String,
    /// `connected` or `disconnected`.
    pub state: String,
    /// See [`ServerStats::reconnects`].
    pub reconnects: u64,
    /// See [`ServerStats::published`].
    pub published: u64,
    /// See [`ServerStats::received`].
    pub received: u64,
    /// The cluster this host is in, if any.
    pub cluster: Option<String>,
}

/// The host's connection to its message server.
pub struct ServerLink {
    /// The server's address.
    pub url: String,
    /// The cluster this host shares blocks with, if any.
    pub cluster: Option<String>,
    /// How long the server waits for a durable bag's acknowledgement before delivering it again.
    pub durable_ack_wait: Duration,
    /// How long closing may wait for the server (the host's `drain_timeout`, at most
    /// [`SERVER_CLOSE_FLUSH`]).
    close_wait: Duration,
    client: async_nats::Client,
    state: watch::Receiver<ServerState>,
    /// Host-wide counters.
    pub stats: Arc<ServerStats>,
    /// What is known of each durable responsibility's stream (asking costs a round trip).
    durable_streams: Mutex<HashMap<String, cluster::durable::Known>>,
    /// The watcher of connection events.
    tasks: TaskTracker,
    cancel: CancellationToken,
}

impl ServerLink {
    /// Returns once the server has handled everything this host sent before (a message to an
    /// inbox of the host's own has come back), or after [`BARRIER_WAIT`]; says which.
    pub async fn barrier(&self) -> bool {
        use futures_util::StreamExt as _;
        if !self.connected() {
            // The client subscribes again when it reconnects: nothing to wait for now.
            return false;
        }
        let inbox = self.client.new_inbox();
        let Ok(mut echo) = bounded(self.client.subscribe(inbox.clone())).await else { return false };
        if bounded(self.client.publish(inbox, bytes::Bytes::new())).await.is_err() {
            return false;
        }
        matches!(tokio::time::timeout(BARRIER_WAIT, echo.next()).await, Ok(Some(_)))
    }

    /// Returns once the server has processed everything this host published before, or says why
    /// not: a request to a subject nobody listens on, which the server answers (no responders)
    /// only after what came before it on the connection. (The client's own `flush` only writes
    /// to the socket.) Bounded by [`SERVER_CALL_TIMEOUT`].
    pub async fn confirm(&self) -> Result<(), String> {
        let nobody = self.client.new_inbox();
        match tokio::time::timeout(SERVER_CALL_TIMEOUT, self.client.request(nobody, bytes::Bytes::new())).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the server did not confirm in time".to_owned()),
        }
    }

    /// Starts connecting to `url` in the background, and waits up to [`INITIAL_WAIT`] for the
    /// first connection, so that blocks usually start connected; the host runs on without the
    /// server (and keeps trying) when it is away.
    pub async fn connect(url: &str, settings: &crate::defaults::Settings) -> anyhow::Result<Arc<Self>> {
        let (tx, state) = watch::channel(ServerState::default());
        let tx = Arc::new(tx);
        let stats = Arc::new(ServerStats::default());
        let (events_tx, mut events) = mpsc::unbounded_channel::<async_nats::Event>();
        let options = async_nats::ConnectOptions::new()
            .name("bagpipe")
            .retry_on_initial_connect()
            .max_reconnects(None)
            // What a subscription buffers while its block is slow (past it the server reports a
            // slow consumer): bounded, unlike the client's default of 65,536 messages.
            .subscription_capacity(SUBSCRIPTION_BUFFER)
            .request_timeout(Some(MAX_REQUEST_TIMEOUT))
            .reconnect_delay_callback(reconnect_delay)
            .event_callback(move |event| {
                let events_tx = events_tx.clone();
                async move {
                    let _ = events_tx.send(event);
                }
            });
        let client = options.connect(url).await.map_err(|e| anyhow::anyhow!("connecting to {url}: {e}"))?;
        let link = Arc::new(ServerLink {
            url: url.to_owned(),
            cluster: settings.cluster.clone(),
            durable_ack_wait: settings.durable_ack_wait,
            close_wait: settings.drain_timeout.min(SERVER_CLOSE_FLUSH),
            client: client.clone(),
            state,
            stats: stats.clone(),
            durable_streams: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
        });
        // The watcher of connection events, owned by the link and ended by `close`.
        let url = url.to_owned();
        let streams = settings.streams.clone();
        let cancel = link.cancel.clone();
        link.tasks.spawn(async move {
            loop {
                let event = tokio::select! {
                    () = cancel.cancelled() => break,
                    event = events.recv() => match event {
                        Some(event) => event,
                        None => break,
                    },
                };
                match event {
                    async_nats::Event::Connected => {
                        let info = client.server_info();
                        tx.send_modify(|s| {
                            if s.generation > 0 {
                                stats.reconnects.fetch_add(1, Ordering::Relaxed);
                            }
                            s.connected = true;
                            s.generation += 1;
                            s.info = Some(ServerInfo { url: url.clone(), server_id: info.server_id.clone() });
                        });
                        tracing::info!(event = "server_connected", url = %url, "connected to the server {url} ({})", info.server_id);
                        for stream in &streams {
                            ensure_stream(&client, stream).await;
                        }
                    }
                    async_nats::Event::Disconnected => {
                        tx.send_modify(|s| s.connected = false);
                        tracing::warn!(event = "server_disconnected", url = %url, "disconnected from the server {url}; reconnecting");
                    }
                    other => tracing::debug!("server: {other}"),
                }
            }
        });
        let mut state = link.state();
        let connected = tokio::time::timeout(INITIAL_WAIT, state.wait_for(|s| s.connected)).await;
        if !matches!(connected, Ok(Ok(_))) {
            tracing::warn!("not connected to the server {} yet; starting without it, and trying on", link.url);
        }
        Ok(link)
    }

    /// The connection state, to watch.
    pub fn state(&self) -> watch::Receiver<ServerState> {
        self.state.clone()
    }

    /// Whether the host is connected now.
    pub fn connected(&self) -> bool {
        self.state.borrow().connected
    }

    /// The stats now.
    pub fn snapshot(&self) -> ServerSnapshot {
        ServerSnapshot {
            url: self.url.clone(),
            state: if self.connected() { "connected" } else { "disconnected" }.to_owned(),
            reconnects: self.stats.reconnects.load(Ordering::Relaxed),
            published: self.stats.published.load(Ordering::Relaxed),
            received: self.stats.received.load(Ordering::Relaxed),
            cluster: self.cluster.clone(),
        }
    }

    /// The client, for the cluster and durable code.
    pub(crate) fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Flushes what was published, closes the connection and ends the link's task; waits for
    /// the server at most the drain timeout (a paused server must not hold the host's exit).
    pub async fn close(&self) {
        let goodbye = async {
            let _ = self.client.flush().await;
            let _ = self.client.drain().await;
        };
        if tokio::time::timeout(self.close_wait, goodbye).await.is_err() {
            tracing::warn!("the server did not answer while closing the connection");
        }
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Makes sure a `[[stream]]` of the manifest exists (an existing one is left as it is).
async fn ensure_stream(client: &async_nats::Client, spec: &crate::defaults::StreamSpec) {
    let js = async_nats::jetstream::new(client.clone());
    let config = async_nats::jetstream::stream::Config {
        name: spec.name.clone(),
        subjects: spec.subjects.clone(),
        ..Default::default()
    };
    match bounded(js.get_or_create_stream(config)).await {
        Ok(_) => tracing::info!(event = "stream_ready", stream = %spec.name, "stream `{}` is there", spec.name),
        Err(e) => {
            tracing::warn!(event = "stream_failed", stream = %spec.name, "cannot make sure stream `{}` exists: {e}", spec.name);
        }
    }
}

/// One call to the server, bounded by [`SERVER_CALL_TIMEOUT`]: no broker call the host makes
/// waits forever (a paused server keeps its sockets open and answers nothing).
pub(crate) async fn bounded<T, E: std::fmt::Display>(
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(SERVER_CALL_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("the server did not answer within {SERVER_CALL_TIMEOUT:?}")),
    }
}

/// Between reconnection attempts: [`RECONNECT_BACKOFF`] (50 ms, doubling to 1 s).
fn reconnect_delay(attempts: usize) -> Duration {
    RECONNECT_BACKOFF.delay(attempts.saturating_add(2).min(64) as u32, 1.0)
}

/// What one block may do with the server, and its subscriptions. Lives as long as the block.
pub struct BlockServer {
    link: Arc<ServerLink>,
    /// The `publish` and `subscribe` grants; a manifest edit may change them.
    grants: Mutex<(Vec<String>, Vec<String>)>,
    /// Reply subjects of bags the block received: the only `_INBOX.` subjects it may publish to.
    replies: Mutex<std::collections::VecDeque<String>>,
    subscriptions: Mutex<HashMap<String, CancellationToken>>,
    /// Most subscriptions the block may hold at once (each has a task and a buffer).
    max_subscriptions: usize,
    /// The block's queue (which knows what bags it accepts); `None` when it takes no bags.
    queue: Option<BlockQueue>,
    status: Arc<BlockStatus>,
    tasks: TaskTracker,
    cancel: CancellationToken,
    /// What the block published, until the server confirmed it.
    outbox: Arc<Outbox>,
    /// The outbox's flusher.
    flushing: TaskTracker,
    /// Tells the flusher the block is ending: send what is left, then stop.
    flush_rest: CancellationToken,
    /// Tells the flusher to stop now (what is left is counted as dropped).
    flush_give_up: CancellationToken,
    /// What its subscriptions did with the messages so far, when someone watches (the test
    /// kit): `None` costs nothing.
    delivered: Option<watch::Sender<Delivered>>,
}

/// What a block's subscriptions did with the messages they got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Queued for the block.
    pub queued: u64,
    /// Refused by the block's queue (too large, too deep, not a bag).
    pub refused: u64,
}

/// What a block's server side is made of, from its manifest entry.
pub struct BlockServerSpec {
    /// Its `publish` grants.
    pub publish: Vec<String>,
    /// Its `subscribe` grants.
    pub subscribe: Vec<String>,
    /// Most subscriptions it may hold at once.
    pub max_subscriptions: usize,
    /// Bytes its outbox holds.
    pub outbox_bytes: usize,
    /// Which publishes go through JetStream, each done when the stream acknowledged it.
    pub publish_to_stream: crate::manifest::ToStream,
    /// The block's outbox when it spills to disk ([`Outbox::for_block`]); `None`: a new one in
    /// memory.
    pub spilled: Option<Arc<Outbox>>,
    /// Whether to count what its subscriptions deliver ([`BlockServer::delivered`]).
    pub watched: bool,
}

impl BlockServerSpec {
    /// The server side the manifest entry `spec` describes, with `spilled` as its outbox.
    pub fn of(spec: &crate::manifest::BlockSpec, spilled: Option<Arc<Outbox>>) -> Self {
        Self {
            publish: spec.publish.clone(),
            subscribe: spec.subscribe.clone(),
            max_subscriptions: spec.limits.max_subscriptions,
            outbox_bytes: spec.limits.outbox_bytes,
            publish_to_stream: spec.publish_to_stream.clone(),
            spilled,
            watched: false,
        }
    }
}

impl BlockServer {
    /// The server side of a block: its grants, where its subscriptions deliver, and its outbox
    /// (whose flusher starts now, and for a spilled outbox its syncer).
    pub fn new(
        link: Arc<ServerLink>,
        spec: BlockServerSpec,
        queue: Option<BlockQueue>,
        status: Arc<BlockStatus>,
    ) -> Arc<Self> {
        let nuid = link.client().new_inbox();
        let nuid = nuid.rsplit('.').next().unwrap_or_default();
        let outbox = match spec.spilled {
            Some(outbox) => outbox,
            None => Outbox::new(spec.outbox_bytes, spec.publish_to_stream, status.clone(), nuid),
        };
        let server = Arc::new(Self {
            link: link.clone(),
            grants: Mutex::new((spec.publish, spec.subscribe)),
            replies: Mutex::new(std::collections::VecDeque::new()),
            subscriptions: Mutex::new(HashMap::new()),
            max_subscriptions: spec.max_subscriptions,
            queue,
            status,
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
            outbox: outbox.clone(),
            flushing: TaskTracker::new(),
            flush_rest: CancellationToken::new(),
            flush_give_up: CancellationToken::new(),
            delivered: spec.watched.then(|| watch::Sender::new(Delivered::default())),
        });
        if outbox.spills() {
            server.flushing.spawn(outbox::syncer(outbox.clone()));
        }
        server.flushing.spawn(outbox::flusher(outbox, link, server.flush_rest.clone(), server.flush_give_up.clone()));
        server
    }

    /// The block's outbox.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// What its subscriptions did with their messages so far, to wait on; `None` unless
    /// watched.
    pub fn delivered(&self) -> Option<watch::Receiver<Delivered>> {
        self.delivered.as_ref().map(watch::Sender::subscribe)
    }

    /// The host's link.
    pub fn link(&self) -> &Arc<ServerLink> {
        &self.link
    }

    /// Ends every subscription and waits for their tasks; gives the outbox up to `drain` to send
    /// what is left while the server is connected (what is still left is counted as dropped).
    pub async fn shutdown(&self, drain: Duration) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.flush_rest.cancel();
        self.flushing.close();
        let drain = if self.link.connected() { drain } else { Duration::ZERO };
        if tokio::time::timeout(drain, self.flushing.wait()).await.is_err() {
            self.flush_give_up.cancel();
            self.flushing.wait().await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.subscriptions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn grants(&self) -> std::sync::MutexGuard<'_, (Vec<String>, Vec<String>)> {
        self.grants.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `publish` and `subscribe` the grants in force. Subscriptions they no longer cover
    /// go on until [`BlockServer::end_ungranted`] (so a block refusing a change keeps them).
    pub fn grant(&self, publish: &[String], subscribe: &[String]) {
        *self.grants() = (publish.to_vec(), subscribe.to_vec());
    }

    /// Ends the subscriptions the grants in force do not cover.
    pub fn end_ungranted(&self) {
        let mut subscriptions = self.lock();
        let grants = self.grants();
        subscriptions.retain(|subject, cancel| {
            let kept = grants.1.iter().any(|g| subject::covers(g, subject));
            if !kept {
                cancel.cancel();
                tracing::info!(event = "unsubscribed", block = %self.status.responsibility, subject = %subject, "no longer granted: unsubscribed from `{subject}`");
            }
            kept
        });
    }

    fn may_publish(&self, subject: &str) -> bool {
        self.grants().0.iter().any(|g| subject::covers(g, subject)) || self.take_reply(subject)
    }

    /// Remembers that the block received a bag asking for a reply on `subject`.
    fn note_reply(&self, subject: &str) {
        let mut replies = self.replies.lock().unwrap_or_else(|p| p.into_inner());
        if replies.len() == REPLY_SUBJECTS {
            replies.pop_front();
        }
        replies.push_back(subject.to_owned());
    }

    /// Whether `subject` is a reply the block owes (each may be answered once).
    fn take_reply(&self, subject: &str) -> bool {
        let mut replies = self.replies.lock().unwrap_or_else(|p| p.into_inner());
        match replies.iter().position(|r| r == subject) {
            Some(i) => {
                replies.remove(i);
                true
            }
            None => false,
        }
    }

    fn may_subscribe(&self, subject: &str) -> bool {
        self.grants().1.iter().any(|g| subject::covers(g, subject))
    }

    /// Starts delivering `subject`'s messages into the block's queue (once per subject); says
    /// whether the subscription is new.
    async fn subscribe_to(self: &Arc<Self>, subject: &str) -> Result<bool, String> {
        let Some(queue) = self.queue.clone() else {
            return Err("the block does not export enqueue-hook, so messages could never reach it".to_owned());
        };
        {
            let subscriptions = self.lock();
            if subscriptions.contains_key(subject) {
                return Ok(false);
            }
            self.within_budget(subscriptions.len())?;
        }
        let subscriber = bounded(self.link.client.subscribe(subject.to_owned())).await?;
        let cancel = self.cancel.child_token();
        {
            let mut subscriptions = self.lock();
            // The grant may have been taken away while subscribing (same lock order as `end_ungranted`).
            if !self.may_subscribe(subject) {
                return Err(format!("subscribing to `{subject}` is no longer granted to this block"));
            }
            self.within_budget(subscriptions.len())?;
            subscriptions.insert(subject.to_owned(), cancel.clone());
        }
        let me = self.clone();
        self.tasks.spawn(async move { me.deliver(subscriber, queue, cancel).await });
        Ok(true)
    }

    /// Refuses (and counts) one more subscription past `max_subscriptions`.
    fn within_budget(&self, held: usize) -> Result<(), String> {
        if held < self.max_subscriptions {
            return Ok(());
        }
        Counters::bump(&self.status.counters.budget_refusals);
        Err(format!("too many subscriptions: the block holds {held}, its limit (max_subscriptions)"))
    }

    fn unsubscribe_from(&self, subject: &str) -> bool {
        match self.lock().remove(subject) {
            Some(cancel) => {
                cancel.cancel();
                true
            }
            None => false,
        }
    }

    async fn deliver(
        self: Arc<Self>,
        mut subscriber: async_nats::Subscriber,
        queue: BlockQueue,
        cancel: CancellationToken,
    ) {
        use futures_util::StreamExt as _;
        let mut seq = 0u64;
        loop {
            let message = tokio::select! {
                () = cancel.cancelled() => break,
                m = subscriber.next() => match m {
                    Some(m) => m,
                    None => break,
                },
            };
            seq += 1;
            let bag = message_bag(&message.payload, message.subject.as_str(), message.reply.as_deref(), seq);
            if let Err(e) = queue.check(&bag) {
                tracing::warn!(block = %self.status.responsibility, "refused a message from `{}`: {e}", message.subject);
                if let Some(delivered) = &self.delivered {
                    delivered.send_modify(|d| d.refused += 1);
                }
                continue;
            }
            // Only an inbox may be answered without a grant (one answer each, by this block).
            if let Some(reply) = message.reply.as_deref().filter(|r| subject::is_inbox(r)) {
                self.note_reply(reply);
            }
            Counters::bump(&self.status.counters.from_server);
            self.link.stats.received.fetch_add(1, Ordering::Relaxed);
            // Waits while the block's queue is full: the subscription's own buffer takes up the
            // slack, and the server reports a slow consumer past that.
            let sent = tokio::select! {
                () = cancel.cancelled() => break,
                sent = queue.push(Envelope::Bag(bag)) => sent,
            };
            if sent.is_err() {
                break;
            }
            if let Some(delivered) = &self.delivered {
                delivered.send_modify(|d| d.queued += 1);
            }
        }
        let _ = bounded(subscriber.unsubscribe()).await;
    }
}

/// A message from the server as a bag: its JSON object payload (or `{"raw": text}` when it is
/// not one), with the host's keys: `__from` ("server"), `__seq` (per subscription),
/// `__subject`, and `__reply` when there is one. Host keys in the payload are dropped.
pub fn message_bag(payload: &[u8], subject: &str, reply: Option<&str>, seq: u64) -> String {
    let mut map = match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => {
            let mut map = serde_json::Map::new();
            map.insert("raw".into(), String::from_utf8_lossy(payload).into_owned().into());
            map
        }
    };
    map.retain(|k, _| !k.starts_with(crate::routing::bag::HOST_KEY_PREFIX));
    map.insert("__from".into(), "server".into());
    map.insert("__seq".into(), seq.into());
    map.insert("__subject".into(), subject.into());
    if let Some(reply) = reply {
        map.insert("__reply".into(), reply.into());
    }
    serde_json::Value::Object(map).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_become_bags_with_the_host_keys() {
        let bag: serde_json::Value =
            serde_json::from_str(&message_bag(br#"{"a":1,"__from":"forged"}"#, "cmd.x", Some("_INBOX.1"), 3)).unwrap();
        assert_eq!(
            bag,
            serde_json::json!({"a": 1, "__from": "server", "__seq": 3, "__subject": "cmd.x", "__reply": "_INBOX.1"})
        );
        let raw: serde_json::Value = serde_json::from_str(&message_bag(b"plain text", "t", None, 1)).unwrap();
        assert_eq!(raw["raw"], "plain text");
        assert!(raw.get("__reply").is_none());
    }

    #[test]
    fn reconnect_delays_grow_to_a_second() {
        let delays: Vec<u64> = (0..8).map(|n| reconnect_delay(n).as_millis() as u64).collect();
        assert_eq!(delays, [50, 100, 200, 400, 800, 1000, 1000, 1000]);
    }
}
