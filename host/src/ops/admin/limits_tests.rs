//! The admin endpoint's limits in time and places, on paused time: a connection that is not a
//! stream lasts `ADMIN_READ_TIMEOUT`, a stream whose reader reads lasts, one whose reader stopped
//! is closed, and past `ADMIN_MAX_EVENT_STREAMS` streams the next is refused with 503.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{AdminView, serve_connection};
use crate::defaults::{ADMIN_EVENTS_KEEP_ALIVE, ADMIN_EVENTS_STALLED, ADMIN_MAX_EVENT_STREAMS, ADMIN_READ_TIMEOUT};
use crate::ops::feed::Feed;
use crate::routing::deadletter::DeadLetters;
use crate::routing::router::Router;

fn view() -> AdminView {
    AdminView::new(Arc::new(Router::new()), Arc::new(DeadLetters::new(None)), None, Feed::new())
}

/// A client that sent `GET path` over a pipe of `buffer` bytes, and the connection serving it.
async fn connect(
    view: &AdminView,
    path: &str,
    buffer: usize,
    cancel: &CancellationToken,
) -> (DuplexStream, JoinHandle<()>) {
    let (mut client, server) = tokio::io::duplex(buffer);
    let task = tokio::spawn(serve_connection(server, view.clone(), cancel.clone()));
    client.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes()).await.expect("send");
    (client, task)
}

/// Reads until the end of the answer's head; returns the head.
async fn head(client: &mut DuplexStream) -> String {
    let mut bytes = Vec::new();
    while !bytes.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        if client.read(&mut byte).await.expect("read") == 0 {
            break;
        }
        bytes.push(byte[0]);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test(start_paused = true)]
async fn a_page_nobody_reads_is_dropped_at_the_read_timeout() {
    let cancel = CancellationToken::new();
    // The live page does not fit in 1 KiB: its writing waits for a reader that never comes.
    let (_client, mut task) = connect(&view(), "/", 1024, &cancel).await;
    let second = Duration::from_secs(1);
    assert!(tokio::time::timeout(ADMIN_READ_TIMEOUT - second, &mut task).await.is_err(), "not before its time");
    tokio::time::timeout(2 * second, task).await.expect("dropped at the read timeout").expect("no panic");
}

#[tokio::test(start_paused = true)]
async fn a_stream_whose_reader_reads_outlasts_the_read_timeout_and_ends_with_the_server() {
    let cancel = CancellationToken::new();
    let (mut client, mut task) = connect(&view(), "/events", 64 * 1024, &cancel).await;
    assert!(head(&mut client).await.starts_with("HTTP/1.1 200"));
    let reader = tokio::spawn(async move {
        let mut kept = 0;
        let mut buf = [0u8; 256];
        while let Ok(n) = client.read(&mut buf).await {
            if n == 0 {
                break;
            }
            kept += n;
        }
        kept
    });
    assert!(tokio::time::timeout(3 * ADMIN_EVENTS_STALLED, &mut task).await.is_err(), "the stream is still open");
    cancel.cancel();
    tokio::time::timeout(ADMIN_READ_TIMEOUT, task).await.expect("it ends with the server").expect("no panic");
    let read = reader.await.expect("reader");
    // `retry`, then a keep-alive every few seconds.
    assert!(read > 14 * 3, "keep-alives came while idle: {read} bytes");
}

#[tokio::test(start_paused = true)]
async fn a_stream_whose_reader_stopped_is_closed() {
    let (view, cancel) = (view(), CancellationToken::new());
    // More than the pipe and hyper's own buffer hold, kept for a new reader, which never reads.
    for i in 0..100 {
        let text = format!("event {i} {}", "x".repeat(10_000));
        view.feed.push("tick".into(), None, &tracing::Level::INFO, text, serde_json::Map::new());
    }
    let (_client, task) = connect(&view, "/events", 1024, &cancel).await;
    let bound = ADMIN_READ_TIMEOUT + ADMIN_EVENTS_STALLED + 2 * ADMIN_EVENTS_KEEP_ALIVE;
    tokio::time::timeout(bound, task).await.expect("the stalled stream was closed").expect("no panic");
}

#[tokio::test(start_paused = true)]
async fn past_the_most_streams_the_next_is_refused_with_503() {
    let (view, cancel) = (view(), CancellationToken::new());
    let mut open = Vec::new();
    for _ in 0..ADMIN_MAX_EVENT_STREAMS {
        let (mut client, task) = connect(&view, "/events", 64 * 1024, &cancel).await;
        assert!(head(&mut client).await.starts_with("HTTP/1.1 200"));
        open.push((client, task));
    }
    let (mut client, _task) = connect(&view, "/events", 64 * 1024, &cancel).await;
    assert!(head(&mut client).await.starts_with("HTTP/1.1 503"), "one stream too many");
    // A closed stream frees its place.
    let (closing, task) = open.pop().expect("a stream");
    drop(closing);
    cancel.cancel();
    task.await.expect("no panic");
    for (_, task) in open {
        task.await.expect("no panic");
    }
}
