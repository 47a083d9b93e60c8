//! A message server in the test's own process: enough of the NATS text protocol (`INFO`,
//! `CONNECT`, `PING`/`PONG`, `SUB`, `UNSUB`, `PUB`, `HPUB`, `MSG`, `HMSG`, no-responders) for
//! `async-nats`, and so the host's server connector, to run against it on a machine without
//! `nats-server`. A test sees what clients published ([`Broker::published`]), delivers messages
//! to subscribers ([`Broker::publish`]) and makes the server go away ([`Broker::disconnect`],
//! [`Broker::resume`]).
//!
//! Not supported: TLS, authentication, JetStream, clusters, `verbose` beyond `+OK`, `pedantic`.
//! Every input is bounded (a control line by [`MAX_LINE`], a payload by [`MAX_PAYLOAD`], what
//! waits to be written to one client by [`MAX_PENDING`]); no input can panic it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod protocol;
use protocol::{Fatal, Op, UNKNOWN, header_pairs, is_inbox, matches, parse, valid};

/// The largest payload (headers included) a client may publish; announced in `INFO`.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// The longest control line (`PUB ...`, `CONNECT {...}`) a client may send.
pub const MAX_LINE: usize = 64 << 10;
/// The most bytes waiting to be written to one client; past it the client is a slow consumer
/// and is disconnected (as `nats-server` does).
pub const MAX_PENDING: usize = 64 << 20;

/// One message a client published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Where it was published.
    pub subject: String,
    /// Its reply subject, if any.
    pub reply: Option<String>,
    /// Its headers, in order (empty for a `PUB`).
    pub headers: Vec<(String, String)>,
    /// Its payload, headers left out.
    pub payload: Vec<u8>,
}

/// An in-process NATS-protocol server on `127.0.0.1`, serving until [`Broker::shutdown`] (or
/// until dropped, which ends its tasks without waiting for them).
pub struct Broker {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tasks: TaskTracker,
    cancel: CancellationToken,
}

struct Shared {
    state: Mutex<State>,
    /// Bumped on every change of connections or subscriptions.
    changes: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    clients: HashMap<u64, Client>,
    next_id: u64,
    published: Vec<Published>,
    refusing: bool,
    /// Picks the member of a queue group that gets the next message.
    round: usize,
}

struct Client {
    connected: bool,
    headers: bool,
    no_responders: bool,
    verbose: bool,
    echo: bool,
    /// By sid.
    subs: BTreeMap<String, Sub>,
    outlet: Outlet,
}

/// What a connection's writer sends; `None`: close the connection, once what came before is written.
type Frames = mpsc::UnboundedReceiver<Option<Vec<u8>>>;

/// Where a connection's writer takes what to send; counts the bytes waiting.
#[derive(Clone)]
struct Outlet {
    tx: mpsc::UnboundedSender<Option<Vec<u8>>>,
    pending: Arc<AtomicUsize>,
    /// Ends the connection.
    kill: CancellationToken,
}

impl Outlet {
    /// Queues `data`; a client with more than [`MAX_PENDING`] bytes waiting is disconnected.
    fn send(&self, data: Vec<u8>) -> bool {
        if self.pending.fetch_add(data.len(), Ordering::Relaxed).saturating_add(data.len()) > MAX_PENDING {
            self.kill.cancel();
            return false;
        }
        self.tx.send(Some(data)).is_ok()
    }
}

struct Sub {
    subject: String,
    queue: Option<String>,
    max: Option<u64>,
    delivered: u64,
}

/// A message on its way to subscribers.
struct Msg<'a> {
    subject: &'a str,
    reply: Option<&'a str>,
    /// The raw header block (`NATS/1.0\r\n...\r\n\r\n`), empty when none.
    headers: &'a [u8],
    payload: &'a [u8],
}

impl State {
    fn subs(&self) -> impl Iterator<Item = &Sub> {
        self.clients.values().flat_map(|c| c.subs.values())
    }

    fn connected(&self) -> usize {
        self.clients.values().filter(|c| c.connected).count()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl Broker {
    /// Binds `127.0.0.1` on a free port and serves in the background.
    pub async fn start() -> std::io::Result<Broker> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), changes: watch::channel(0).0 });
        let (tasks, cancel) = (TaskTracker::new(), CancellationToken::new());
        tasks.spawn(accept(listener, shared.clone(), tasks.clone(), cancel.clone()));
        Ok(Broker { shared, addr, tasks, cancel })
    }

    /// The address to connect to: `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Every message clients published, in arrival order, except those to `_INBOX.` subjects
    /// (answers to requests and the clients' own round trips).
    pub fn published(&self) -> Vec<Published> {
        self.shared.lock().published.iter().filter(|p| !is_inbox(&p.subject)).cloned().collect()
    }

    /// Every message clients published, in arrival order, `_INBOX.` subjects included.
    pub fn published_all(&self) -> Vec<Published> {
        self.shared.lock().published.clone()
    }

    /// What [`Broker::published`] returns, taken out of the record (messages to `_INBOX.`
    /// subjects stay in it, for [`Broker::published_all`]).
    pub fn take_published(&self) -> Vec<Published> {
        let mut state = self.shared.lock();
        let (taken, kept) = std::mem::take(&mut state.published).into_iter().partition(|p| !is_inbox(&p.subject));
        state.published = kept;
        taken
    }

    /// The messages `wanted` picks (in arrival order), taken out of the record; the other
    /// messages to `_INBOX.` subjects (clients' own round trips) are dropped with them, the rest
    /// stay.
    pub fn take_published_where(&self, wanted: impl Fn(&Published) -> bool) -> Vec<Published> {
        let mut state = self.shared.lock();
        let (taken, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut state.published).into_iter().partition(|p| wanted(p));
        state.published = kept.into_iter().filter(|p| !is_inbox(&p.subject)).collect();
        taken
    }

    /// Delivers a message to the matching subscriptions as if a client had published it (it is
    /// not recorded in [`Broker::published`]); says how many subscriptions got it (none when
    /// a subject is not valid). Line breaks in header names and values are replaced by spaces.
    pub async fn publish(
        &self,
        subject: &str,
        reply: Option<&str>,
        headers: &[(String, String)],
        payload: &[u8],
    ) -> usize {
        let mut block = Vec::new();
        if !headers.is_empty() {
            block.extend_from_slice(b"NATS/1.0\r\n");
            let clean = |s: &str| s.replace(['\r', '\n'], " ");
            for (name, value) in headers {
                block.extend_from_slice(format!("{}: {}\r\n", clean(name), clean(value)).as_bytes());
            }
            block.extend_from_slice(b"\r\n");
        }
        if !valid(subject, false) || reply.is_some_and(|r| !valid(r, false)) {
            return 0;
        }
        route(&mut self.shared.lock(), None, &Msg { subject, reply, headers: &block, payload })
    }

    /// The subscriptions of every client now, each as its subject (`"subject queue"` for a
    /// queue group's), sorted.
    pub fn subscriptions(&self) -> Vec<String> {
        let state = self.shared.lock();
        let named = |s: &Sub| s.queue.as_ref().map_or_else(|| s.subject.clone(), |q| format!("{} {q}", s.subject));
        let mut all: Vec<String> = state.subs().map(named).collect();
        all.sort();
        all
    }

    /// Waits up to `timeout` until some client has a subscription that matches `subject` (or is
    /// written exactly as `subject`, wildcards and all); says whether one does.
    pub async fn subscribed(&self, subject: &str, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.subs().any(|s| s.subject == subject || matches(&s.subject, subject))).await
    }

    /// Closes every client connection now, and closes each new one as soon as it is accepted
    /// until [`Broker::resume`]; returns once every connection is gone.
    pub async fn disconnect(&self) {
        {
            let mut state = self.shared.lock();
            state.refusing = true;
            state.clients.values().for_each(|c| c.outlet.kill.cancel());
        }
        self.wait_until(Duration::MAX, |s| s.clients.is_empty()).await;
    }

    /// Accepts connections again after [`Broker::disconnect`].
    pub fn resume(&self) {
        self.shared.lock().refusing = false;
    }

    /// How many clients are connected now (their `CONNECT` received).
    pub fn connections(&self) -> usize {
        self.shared.lock().connected()
    }

    /// Waits up to `timeout` until at least `n` clients are connected; says whether they are.
    pub async fn connected(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.connected() >= n).await
    }

    /// Stops accepting, closes every connection and waits for every task of the broker.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    async fn wait_until(&self, timeout: Duration, done: impl Fn(&State) -> bool) -> bool {
        let mut changes = self.shared.changes.subscribe();
        let wait = async {
            loop {
                changes.borrow_and_update();
                if done(&self.shared.lock()) {
                    return true;
                }
                if changes.changed().await.is_err() {
                    return done(&self.shared.lock());
                }
            }
        };
        // (A deadline past the timer's range, as `Duration::MAX`, means no timeout.)
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The accept loop: each connection gets its `INFO` and a task (a refused one is closed).
async fn accept(listener: TcpListener, shared: Arc<Shared>, tasks: TaskTracker, cancel: CancellationToken) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    loop {
        let stream = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    tokio::task::yield_now().await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (tx, rx) = mpsc::unbounded_channel();
        let outlet = Outlet { tx, pending: Arc::new(AtomicUsize::new(0)), kill: cancel.child_token() };
        let id = {
            let mut state = shared.lock();
            if state.refusing {
                continue;
            }
            state.next_id += 1;
            let id = state.next_id;
            let info = serde_json::json!({
                "server_id": "BAGPIPE_TEST_BROKER", "server_name": "bagpipe-test-broker", "version": "2.10.0",
                "proto": 1, "go": "none", "host": "127.0.0.1", "port": port, "headers": true,
                "max_payload": MAX_PAYLOAD, "client_id": id, "jetstream": false,
            });
            outlet.send(format!("INFO {info}\r\n").into_bytes());
            let client = Client {
                connected: false,
                headers: false,
                no_responders: false,
                verbose: false,
                echo: true,
                subs: BTreeMap::new(),
                outlet: outlet.clone(),
            };
            state.clients.insert(id, client);
            id
        };
        tasks.spawn(serve(shared.clone(), id, stream, outlet, rx));
    }
}

/// One connection: reads and handles operations, writes what is sent to the client; ends when
/// either side is done or the connection is killed, and forgets the client.
async fn serve(shared: Arc<Shared>, id: u64, stream: TcpStream, outlet: Outlet, rx: Frames) {
    let (read, write) = stream.into_split();
    let reading = async {
        if let Err(Some(fatal)) = read_ops(&shared, id, read, &outlet).await {
            outlet.send(format!("-ERR '{}'\r\n", fatal).into_bytes());
        }
        let _ = outlet.tx.send(None);
        // The writer ends the connection once it wrote what came before.
        std::future::pending::<()>().await;
    };
    tokio::select! {
        () = outlet.kill.cancelled() => {}
        () = reading => {}
        () = write_out(write, rx, &outlet.pending) => {}
    }
    if shared.lock().clients.remove(&id).is_some() {
        shared.changed();
    }
}

/// Writes what is sent to the client, until `None` or a failure.
async fn write_out(write: OwnedWriteHalf, mut rx: Frames, pending: &AtomicUsize) {
    let mut write = tokio::io::BufWriter::new(write);
    while let Some(out) = rx.recv().await {
        let Some(data) = out else {
            let _ = write.flush().await;
            let _ = write.get_mut().shutdown().await;
            return;
        };
        if write.write_all(&data).await.is_err() {
            return;
        }
        pending.fetch_sub(data.len(), Ordering::Relaxed);
        if rx.is_empty() && write.flush().await.is_err() {
            return;
        }
    }
}

/// Reads and handles operations until the end of the input (`Ok`), a failure to read
/// (`Err(None)`) or a protocol violation, which closes the connection.
async fn read_ops(shared: &Shared, id: u64, mut read: OwnedReadHalf, outlet: &Outlet) -> Result<(), Option<Fatal>> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = read.read(&mut chunk).await.map_err(|_| None)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        while let Some((op, used)) = parse(&buf[at..])? {
            handle(shared, id, op, outlet)?;
            at += used;
        }
        buf.drain(..at);
    }
}

/// Handles one operation of client `id`.
fn handle(shared: &Shared, id: u64, op: Op<'_>, outlet: &Outlet) -> Result<(), Fatal> {
    let mut state = shared.lock();
    let state = &mut *state;
    let Some(client) = state.clients.get_mut(&id) else { return Ok(()) };
    match op {
        Op::Ping => {
            outlet.send(b"PONG\r\n".to_vec());
            return Ok(());
        }
        Op::Pong => return Ok(()),
        Op::Pub { subject, reply, headers, payload } => {
            if !valid(subject, false) || reply.is_some_and(|r| !valid(r, false)) {
                outlet.send(b"-ERR 'Invalid Publish Subject'\r\n".to_vec());
                return Ok(());
            }
            if client.verbose {
                outlet.send(b"+OK\r\n".to_vec());
            }
            let (owned, pairs) = (subject.to_owned(), header_pairs(headers));
            state.published.push(Published {
                subject: owned,
                reply: reply.map(Into::into),
                headers: pairs,
                payload: payload.into(),
            });
            route(state, Some(id), &Msg { subject, reply, headers, payload });
            return Ok(());
        }
        Op::Connect(json) => {
            let Ok(serde_json::Value::Object(options)) = serde_json::from_str(json) else { return Err(UNKNOWN) };
            let flag =
                |key: &str, default: bool| options.get(key).and_then(serde_json::Value::as_bool).unwrap_or(default);
            (client.verbose, client.headers) = (flag("verbose", false), flag("headers", false));
            (client.no_responders, client.echo) = (flag("no_responders", false), flag("echo", true));
            client.connected = true;
        }
        Op::Sub { subject, queue, sid } => {
            if !valid(subject, true) || queue.is_some_and(|q| !valid(q, false)) {
                outlet.send(b"-ERR 'Invalid Subject'\r\n".to_vec());
                return Ok(());
            }
            let sub = Sub { subject: subject.to_owned(), queue: queue.map(str::to_owned), max: None, delivered: 0 };
            client.subs.insert(sid.to_owned(), sub);
        }
        Op::Unsub { sid, max } => match (client.subs.get_mut(sid), max) {
            (Some(sub), Some(max)) if sub.delivered < max => sub.max = Some(max),
            _ => drop(client.subs.remove(sid)),
        },
    }
    if client.verbose {
        outlet.send(b"+OK\r\n".to_vec());
    }
    shared.changed();
    Ok(())
}

/// Delivers `msg` from client `from` (`None`: the test) to every matching subscription but
/// one member of each queue group; says to how many. A request nobody got is answered with
/// no responders, when its client asked for that.
fn route(state: &mut State, from: Option<u64>, msg: &Msg<'_>) -> usize {
    let mut chosen: Vec<(u64, String)> = Vec::new();
    let mut groups: BTreeMap<&str, Vec<(u64, String)>> = BTreeMap::new();
    for (id, client) in &state.clients {
        if from == Some(*id) && !client.echo {
            continue;
        }
        for (sid, sub) in client.subs.iter().filter(|(_, sub)| matches(&sub.subject, msg.subject)) {
            match &sub.queue {
                Some(queue) => groups.entry(queue).or_default().push((*id, sid.clone())),
                None => chosen.push((*id, sid.clone())),
            }
        }
    }
    state.round = state.round.wrapping_add(1);
    for members in groups.values_mut() {
        members.sort();
        chosen.push(members[state.round % members.len()].clone());
    }
    let mut delivered = 0;
    for (id, sid) in chosen {
        if let Some(client) = state.clients.get_mut(&id)
            && deliver(client, &sid, msg)
        {
            delivered += 1;
        }
    }
    if delivered == 0
        && let (Some(reply), Some(from)) = (msg.reply, from)
        && let Some(client) = state.clients.get_mut(&from)
        && client.headers
        && client.no_responders
        && let Some(sid) = client.subs.iter().find(|(_, sub)| matches(&sub.subject, reply)).map(|(sid, _)| sid.clone())
    {
        let status = Msg { subject: reply, reply: None, headers: b"NATS/1.0 503\r\n\r\n", payload: b"" };
        deliver(client, &sid, &status);
    }
    delivered
}

/// Sends `msg` to `client`'s subscription `sid` (ended once it reached its maximum); headers
/// are left out for a client that did not ask for them.
fn deliver(client: &mut Client, sid: &str, msg: &Msg<'_>) -> bool {
    let Some(sub) = client.subs.get_mut(sid) else { return false };
    sub.delivered += 1;
    if sub.max.is_some_and(|max| sub.delivered >= max) {
        client.subs.remove(sid);
    }
    let reply = msg.reply.map(|r| format!(" {r}")).unwrap_or_default();
    let (subject, payload) = (msg.subject, msg.payload.len());
    let mut frame = if client.headers && !msg.headers.is_empty() {
        let headers = msg.headers.len();
        let mut frame = format!("HMSG {subject} {sid}{reply} {headers} {}\r\n", headers + payload).into_bytes();
        frame.extend_from_slice(msg.headers);
        frame
    } else {
        format!("MSG {subject} {sid}{reply} {payload}\r\n").into_bytes()
    };
    frame.extend_from_slice(msg.payload);
    frame.extend_from_slice(b"\r\n");
    client.outlet.send(frame)
}

#[cfg(test)]
mod tests;
