//! A policy's stdout/stderr: complete lines go to the host's log, prefixed with the policy.
//!
//! Bounded so that a chatty or hostile policy cannot flood the log, grow host memory or
//! make the host spend its time copying:
//! - a single `write` may carry at most `WRITE_MAX` bytes, the 4096 that `wasi:io`'s
//!   `check-write` permits (and `blocking-write-and-flush` documents); a larger one is a
//!   [`FaultKind::Limit`](crate::FaultKind) fault, not a copy;
//! - one call may write `per_call` bytes and an instance `per_sec` bytes a second (the
//!   `Limits`); what is over is dropped, and the drop is logged once per second;
//! - lines are cut at `MAX_LINE` bytes and at most `LINES_PER_SEC` lines a second are kept;
//! - control characters (a newline inside a line cannot happen, but CR, ESC and the like
//!   can) are escaped, so a policy cannot forge log lines or drive the terminal.
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

const MAX_LINE: usize = 512;
const LINES_PER_SEC: u32 = 50;
/// The most one `write` may carry: what `check-write` permits.
pub(crate) const WRITE_MAX: usize = 4096;

#[derive(Clone)]
pub(crate) struct LogStream(Arc<Shared>);

struct Shared {
    /// Bytes written by the call in progress (reset when a call starts).
    call_bytes: AtomicUsize,
    /// Set when a write broke the `WRITE_MAX` rule, for the fault's kind.
    violated: AtomicBool,
    per_call: usize,
    per_sec: usize,
    lines: Mutex<Lines>,
}

struct Lines {
    label: String,
    partial: Vec<u8>,
    window_start: Instant,
    in_window: u32,
    suppressed: u64,
    /// Bytes accepted in this second's window.
    window_bytes: usize,
    /// Bytes dropped in this window: over the per-call cap, and over the per-second cap.
    dropped_call: u64,
    dropped_sec: u64,
}

impl LogStream {
    /// The output of the policy labelled `label`, at most `per_call` bytes a call and
    /// `per_sec` bytes a second.
    pub(crate) fn new(label: &str, per_call: usize, per_sec: usize) -> Self {
        LogStream(Arc::new(Shared {
            call_bytes: AtomicUsize::new(0),
            violated: AtomicBool::new(false),
            per_call,
            per_sec,
            lines: Mutex::new(Lines {
                label: label.to_string(),
                partial: Vec::new(),
                window_start: Instant::now(),
                in_window: 0,
                suppressed: 0,
                window_bytes: 0,
                dropped_call: 0,
                dropped_sec: 0,
            }),
        }))
    }

    /// A call starts: its per-call allowance is whole again (one relaxed store).
    pub(crate) fn start_call(&self) {
        self.0.call_bytes.store(0, Ordering::Relaxed);
    }

    /// Whether a write broke the `WRITE_MAX` rule since the last call of this.
    pub(crate) fn take_violation(&self) -> bool {
        self.0.violated.swap(false, Ordering::Relaxed)
    }

    fn write_checked(&self, bytes: &[u8]) -> Result<(), StreamError> {
        if bytes.len() > WRITE_MAX {
            self.0.violated.store(true, Ordering::Relaxed);
            return Err(StreamError::Trap(wasmtime::format_err!(
                "the policy wrote {} bytes to stdout/stderr in one write; check-write permits at most {WRITE_MAX}",
                bytes.len()
            )));
        }
        self.push(bytes);
        Ok(())
    }

    fn push(&self, bytes: &[u8]) {
        let s = &*self.0;
        let before = s.call_bytes.fetch_add(bytes.len(), Ordering::Relaxed);
        let call_room = s.per_call.saturating_sub(before);
        // A poisoned lock only means an earlier log write panicked; the buffer is still usable.
        let mut lines = s.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.roll_window(s);
        let sec_room = s.per_sec.saturating_sub(lines.window_bytes);
        let take = bytes.len().min(call_room).min(sec_room);
        if take < bytes.len() {
            let over = (bytes.len() - take) as u64;
            if call_room < sec_room {
                lines.dropped_call += over;
            } else {
                lines.dropped_sec += over;
            }
        }
        lines.window_bytes += take;
        for line in bytes[..take].split_inclusive(|&b| b == b'\n') {
            let (text, ends) = match line.split_last() {
                Some((b'\n', text)) => (text, true),
                _ => (line, false),
            };
            let room = MAX_LINE.saturating_sub(lines.partial.len());
            lines
                .partial
                .extend_from_slice(&text[..text.len().min(room)]);
            if ends {
                lines.emit();
            }
        }
    }
}

impl Lines {
    /// Starts a new one-second window if this one is over, reporting what was dropped.
    fn roll_window(&mut self, s: &Shared) {
        let now = Instant::now();
        if now.duration_since(self.window_start).as_secs() < 1 {
            return;
        }
        if self.suppressed > 0 {
            tracing::warn!(target: "policy", "[{}] {} log lines suppressed (at most {LINES_PER_SEC} a second)", self.label, self.suppressed);
        }
        if self.dropped_call > 0 {
            tracing::warn!(target: "policy", "[{}] {} bytes of output dropped: over {} bytes in one call (--policy-log-bytes-per-call)", self.label, self.dropped_call, s.per_call);
        }
        if self.dropped_sec > 0 {
            tracing::warn!(target: "policy", "[{}] {} bytes of output dropped: over {} bytes a second (--policy-log-bytes-per-sec)", self.label, self.dropped_sec, s.per_sec);
        }
        self.window_start = now;
        self.in_window = 0;
        self.suppressed = 0;
        self.window_bytes = 0;
        self.dropped_call = 0;
        self.dropped_sec = 0;
    }

    fn emit(&mut self) {
        if self.in_window < LINES_PER_SEC {
            self.in_window += 1;
            let text = String::from_utf8_lossy(&self.partial);
            let line = escape(text.trim_end());
            tracing::warn!(target: "policy", "[{}] {}", self.label, line);
        } else {
            self.suppressed += 1;
        }
        self.partial.clear();
    }
}

/// `text` with every control character but tab escaped (`\u{1b}`), so that what a
/// policy prints cannot move the cursor, clear the screen or start a new log line.
pub(crate) fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() && c != '\t' {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
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
        self.write_checked(&bytes)
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(WRITE_MAX)
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
        let n = buf.len().min(WRITE_MAX);
        self.push(&buf[..n]);
        Poll::Ready(Ok(n))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_but_text_is_kept() {
        assert_eq!(escape("plain text\twith tab"), "plain text\twith tab");
        assert_eq!(escape("a\rb\u{1b}[2Jc"), "a\\u{d}b\\u{1b}[2Jc");
        assert_eq!(escape("é ü ∑"), "é ü ∑");
    }

    #[test]
    fn a_write_over_check_writes_permit_is_refused_not_copied() {
        let log = LogStream::new("t", 1 << 20, 1 << 20);
        assert!(log.write_checked(&[b'x'; WRITE_MAX]).is_ok());
        assert!(!log.take_violation());
        assert!(matches!(
            log.write_checked(&[b'x'; WRITE_MAX + 1]),
            Err(StreamError::Trap(_))
        ));
        assert!(log.take_violation());
    }

    #[test]
    fn output_over_the_per_call_and_per_second_caps_is_dropped_and_counted() {
        let log = LogStream::new("t", 100, 250);
        log.start_call();
        log.push(&[b'x'; 60]);
        log.push(&[b'x'; 60]);
        {
            let lines = log.0.lines.lock().unwrap();
            assert_eq!((lines.window_bytes, lines.dropped_call), (100, 20));
        }
        log.start_call();
        log.push(&[b'x'; 100]);
        log.start_call();
        log.push(&[b'x'; 100]);
        let lines = log.0.lines.lock().unwrap();
        assert_eq!((lines.window_bytes, lines.dropped_sec), (250, 50));
    }
}
