//! A policy's stdout/stderr: complete lines go to the host's log, prefixed with the policy.
//!
//! Bounded so that a chatty or hostile policy cannot flood the log or grow host memory:
//! lines are cut at `MAX_LINE` bytes and at most `LINES_PER_SEC` lines a second are kept.
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

const MAX_LINE: usize = 512;
const LINES_PER_SEC: u32 = 50;

#[derive(Clone)]
pub(crate) struct LogStream(Arc<Mutex<Lines>>);

struct Lines {
    label: String,
    partial: Vec<u8>,
    window_start: Instant,
    in_window: u32,
    suppressed: u64,
}

impl LogStream {
    pub(crate) fn new(label: &str) -> Self {
        LogStream(Arc::new(Mutex::new(Lines {
            label: label.to_string(),
            partial: Vec::new(),
            window_start: Instant::now(),
            in_window: 0,
            suppressed: 0,
        })))
    }

    fn push(&self, bytes: &[u8]) {
        // A poisoned lock only means an earlier log write panicked; the buffer is still usable.
        let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for &b in bytes {
            if b == b'\n' {
                lines.emit();
            } else if lines.partial.len() < MAX_LINE {
                lines.partial.push(b);
            }
        }
    }
}

impl Lines {
    fn emit(&mut self) {
        let now = Instant::now();
        if now.duration_since(self.window_start).as_secs() >= 1 {
            if self.suppressed > 0 {
                tracing::warn!(target: "policy", "[{}] {} log lines suppressed", self.label, self.suppressed);
            }
            self.window_start = now;
            self.in_window = 0;
            self.suppressed = 0;
        }
        if self.in_window < LINES_PER_SEC {
            self.in_window += 1;
            let line = String::from_utf8_lossy(&self.partial);
            tracing::warn!(target: "policy", "[{}] {}", self.label, line.trim_end());
        } else {
            self.suppressed += 1;
        }
        self.partial.clear();
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            self.emit();
        }
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for LogStream {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
