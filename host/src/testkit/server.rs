//! The block's message server in a test: a [`Broker`] in the test's process, reached through the
//! host's real server link and the block's real server side (grants, subscriptions, outbox and
//! its flusher). The test reads what the block published once the server confirmed it, sends
//! messages to its subscriptions, and takes the server away and back.

use std::sync::Arc;

use super::broker::{Broker, Published};
use super::{Bench, TestError};
use crate::defaults::{Settings, TEST_WAIT};
use crate::io::server::{BlockServer, BlockServerSpec, Delivered, ServerLink};
use crate::manifest::BlockSpec;
use crate::routing::queue::BlockQueue;
use crate::stats::BlockStatus;

/// The server of one bench.
pub(super) struct Server {
    broker: Broker,
    /// The reply subjects of the test's messages: what the block publishes there is its answer.
    replies: Vec<String>,
    link: Arc<ServerLink>,
    /// The block's side of it.
    pub(super) block: Arc<BlockServer>,
}

impl Server {
    /// A broker, the host's link to it, and the server side of the block `spec`.
    pub(super) async fn start(
        spec: &BlockSpec,
        queue: Option<BlockQueue>,
        status: &Arc<BlockStatus>,
        settings: &Settings,
    ) -> Result<Self, TestError> {
        let broker = Broker::start().await?;
        let link = ServerLink::connect(&broker.url(), settings).await.map_err(TestError::Setup)?;
        if !link.connected() {
            link.close().await;
            broker.shutdown().await;
            return Err(TestError::Setup(anyhow::anyhow!("the host did not connect to the test's server")));
        }
        let block = BlockServer::new(
            link.clone(),
            BlockServerSpec { watched: true, ..BlockServerSpec::of(spec, None) },
            queue,
            status.clone(),
        );
        Ok(Self { broker, link, block, replies: Vec::new() })
    }

    /// Waits until the server confirmed everything the block published, while it is
    /// connected (until `deadline`).
    pub(super) async fn flushed(&self, deadline: std::time::Instant) -> Result<(), TestError> {
        if !self.link.connected() {
            return Ok(());
        }
        let deadline = tokio::time::Instant::from_std(deadline);
        match tokio::time::timeout_at(deadline, self.block.outbox().emptied()).await {
            Ok(()) => Ok(()),
            Err(_) => Err(TestError::Timeout("the server to confirm what the block published".to_owned())),
        }
    }

    /// What the block published so far, taken.
    pub(super) fn take_published(&mut self) -> Vec<Published> {
        let replies = &self.replies;
        self.broker.take_published_where(|p| !p.subject.starts_with("_INBOX.") || replies.contains(&p.subject))
    }

    /// Closes the host's link and the broker.
    pub(super) async fn close(self) {
        self.block.shutdown(std::time::Duration::ZERO).await;
        self.link.close().await;
        self.broker.shutdown().await;
    }

    async fn wait_connected(&self, connected: bool) -> Result<(), TestError> {
        let mut state = self.link.state();
        match tokio::time::timeout(TEST_WAIT, state.wait_for(|s| s.connected == connected)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(TestError::Timeout(format!("the server to {}", if connected { "come back" } else { "go away" }))),
        }
    }
}

fn no_server() -> TestError {
    TestError::Misuse("the bench has no server (set it up with one)".to_owned())
}

impl Bench {
    fn server(&self) -> Result<&Server, TestError> {
        self.server.as_ref().ok_or_else(no_server)
    }

    /// Takes what the block published since the last call (confirmed by the server, in order;
    /// its answers to the test's messages included, not the host's own round trips). Payloads
    /// are what the block published: a bag carries its host keys (`__from`, `__seq`).
    pub fn published(&mut self) -> Result<Vec<Published>, TestError> {
        let server = self.server.as_mut().ok_or_else(no_server)?;
        Ok(server.take_published())
    }

    /// The subjects subscribed on the server now (the block's subscriptions).
    pub fn subscriptions(&self) -> Result<Vec<String>, TestError> {
        Ok(self.server()?.broker.subscriptions())
    }

    /// Publishes `payload` on `subject` (with `reply` as its reply subject), waits until the
    /// block's subscription queued it, and settles. Fails when no subscription takes it.
    pub async fn message(&mut self, subject: &str, payload: &[u8], reply: Option<&str>) -> Result<(), TestError> {
        let server = self.server.as_mut().ok_or_else(no_server)?;
        if let Some(reply) = reply {
            server.replies.push(reply.to_owned());
        }
        let mut delivered =
            server.block.delivered().ok_or_else(|| TestError::Misuse("deliveries are not watched".into()))?;
        let before = *delivered.borrow_and_update();
        let reached = server.broker.publish(subject, reply, &[], payload).await as u64;
        if reached == 0 {
            return Err(TestError::Misuse(format!("nothing is subscribed to `{subject}`")));
        }
        // Each subscription it reached queues it or refuses it.
        let handled = |d: &Delivered| d.queued + d.refused >= before.queued + before.refused + reached;
        match tokio::time::timeout(TEST_WAIT, delivered.wait_for(handled)).await {
            Ok(Ok(_)) => {}
            _ => return Err(TestError::Timeout(format!("the message on `{subject}` to reach the block"))),
        }
        let refused = delivered.borrow().refused > before.refused;
        self.settle().await?;
        if refused {
            return Err(TestError::Refused(format!("the block's queue refused the message on `{subject}`")));
        }
        Ok(())
    }

    /// Takes the server away (every connection closed, none taken) and settles: the block hears
    /// `on-server-disconnect`.
    pub async fn server_disconnect(&mut self) -> Result<(), TestError> {
        let server = self.server()?;
        server.broker.disconnect().await;
        server.wait_connected(false).await?;
        self.settle().await
    }

    /// Brings the server back, waits until the host reconnected, and settles: the block hears
    /// `on-server-connect`.
    pub async fn server_reconnect(&mut self) -> Result<(), TestError> {
        let server = self.server()?;
        server.broker.resume();
        server.wait_connected(true).await?;
        self.settle().await
    }
}
