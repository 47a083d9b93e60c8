//! A guest's output streams (stdout, stderr) as WASI sees them: [`Output`] wraps anything that
//! takes bytes at once ([`Put`]), so that a guest's write never waits on the host's own output.
//! A paced stream ([`Output::paced`]) is not ready while the block is past its output budget
//! ([`OutputPace`]): the guest then waits on the call's clock, as on a full pipe.

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::defaults::STDERR_WRITE_BYTES;
use crate::runtime::clock::CallClock;
use crate::runtime::output_pace::OutputPace;

/// Takes a guest's bytes at once, never waiting.
pub trait Put: Clone + Send + Sync + 'static {
    /// Takes `bytes` (keeps, forwards or drops them with a count).
    fn put(&self, bytes: &[u8]);
}

/// A guest output stream backed by a [`Put`].
#[derive(Clone)]
pub struct Output<P> {
    put: P,
    /// The block's output budget and the clock its waits are taken on.
    pace: Option<(Arc<OutputPace>, Arc<CallClock>)>,
}

impl<P: Put> Output<P> {
    /// A stream into `put`, within the block's output budget `pace`, waiting on `clock`.
    pub fn paced(put: P, pace: Arc<OutputPace>, clock: Arc<CallClock>) -> Self {
        Self { put, pace: Some((pace, clock)) }
    }

    /// Bytes the guest may write now: 0 while it is past its budget (and may still wait).
    fn room(&self) -> usize {
        match &self.pace {
            Some((pace, clock)) if !clock.waited_in_vain() => pace.available(STDERR_WRITE_BYTES),
            _ => STDERR_WRITE_BYTES,
        }
    }

    fn take(&self, bytes: &[u8]) {
        if let Some((pace, _)) = &self.pace {
            pace.spend(bytes.len());
        }
        self.put.put(bytes);
    }
}

impl<P: Put> IsTerminal for Output<P> {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl<P: Put> StdoutStream for Output<P> {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl<P: Put> OutputStream for Output<P> {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.take(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(self.room())
    }
}

#[wasmtime_wasi::async_trait]
impl<P: Put> Pollable for Output<P> {
    async fn ready(&mut self) {
        if let Some((pace, clock)) = &self.pace {
            pace.ready(clock).await;
        }
    }
}

impl<P: Put> AsyncWrite for Output<P> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        // Not a WASI 0.2 stream: taken at once, counted against the budget.
        self.take(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
