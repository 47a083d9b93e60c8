//! A guest's output streams (stdout, stderr) as WASI sees them: [`Output`] wraps anything that
//! takes bytes at once ([`Put`]), so that a guest's write never waits on the host.

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::defaults::STDERR_WRITE_BYTES;

/// Takes a guest's bytes at once, never waiting.
pub trait Put: Clone + Send + Sync + 'static {
    /// Takes `bytes` (keeps, forwards or drops them with a count).
    fn put(&self, bytes: &[u8]);
}

/// A guest output stream backed by a [`Put`].
#[derive(Clone)]
pub struct Output<P>(pub P);

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
        self.0.put(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(STDERR_WRITE_BYTES)
    }
}

#[wasmtime_wasi::async_trait]
impl<P: Put> Pollable for Output<P> {
    async fn ready(&mut self) {}
}

impl<P: Put> AsyncWrite for Output<P> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.put(buf);
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
