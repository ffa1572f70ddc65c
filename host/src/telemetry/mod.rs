//! Telemetry receives one event per proxied request, off the request path: a channel send
//! is all the proxy pays. A recorder thread writes the CSV log and keeps live aggregates
//! (per-second window and totals) that consoles and dashboards read.
mod csvlog;
mod stats;

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use switchyard_runtime::{Backend, FaultKind};

pub use stats::{
    unix_f64, unix_secs, BackendSecond, LatencyBuckets, Recent, Second, Totals, HISTORY_SECS,
    LATENCY_BUCKETS_NS,
};

/// How a request ended: the runtime's [`Outcome`](switchyard_runtime::Outcome), the same
/// value the policy observes (contract 0.2 observes aborts too).
pub use switchyard_runtime::Outcome;

/// One proxied request.
#[derive(Debug, Clone)]
pub struct RequestEvent {
    pub at: SystemTime,
    pub backend: usize,
    pub latency_ns: u64,
    /// Status sent to the client (502/504 for upstream failures).
    pub status: u16,
    pub outcome: Outcome,
    /// The policy's name, or the host's fallback.
    pub routing_mode: Arc<str>,
    pub fault: Option<FaultKind>,
    pub reused: bool,
    /// Cut at shutdown, after the grace period (logged as outcome `cut`; the policy was
    /// told `aborted`).
    pub cut: bool,
    /// The `x-request-id` the backend was sent (the client's, or the proxy's).
    pub request_id: http::HeaderValue,
}

/// How often the recorder drains the channel.
pub const DRAIN_EVERY: Duration = Duration::from_millis(20);

/// How often rows are written out with [`LogFlush::Second`].
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// When the request log's rows reach the file (`--log-flush`), which is what a crash of the
/// proxy (`kill -9`, a panic elsewhere, OOM) can lose: rows still in the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFlush {
    /// About once a second (the default): a crash loses up to a second of rows, and the
    /// proxy pays one `write` per second.
    Second,
    /// After every batch the recorder drains (every 20 ms while requests come): a crash
    /// loses up to ~20 ms of rows, for one `write` per batch.
    Batch,
    /// As `batch`, then `fdatasync`: rows survive a power cut or a kernel crash as well,
    /// for a disk sync per batch (milliseconds on most disks; off the request path, but
    /// the recorder then drains less often under load).
    Fsync,
}

impl LogFlush {
    pub const ALL: [LogFlush; 3] = [LogFlush::Second, LogFlush::Batch, LogFlush::Fsync];

    pub fn as_str(self) -> &'static str {
        match self {
            LogFlush::Second => "second",
            LogFlush::Batch => "batch",
            LogFlush::Fsync => "fsync",
        }
    }
}

impl std::str::FromStr for LogFlush {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        LogFlush::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| format!("unknown --log-flush `{s}`: use second, batch or fsync"))
    }
}

enum Msg {
    Event(RequestEvent),
    Finish,
}

/// Where the proxy sends events. Cheap to clone.
#[derive(Clone)]
pub struct EventSink(mpsc::Sender<Msg>);

impl EventSink {
    pub fn send(&self, e: RequestEvent) {
        // Fails only after `finish`, when nobody is left to record it.
        let _ = self.0.send(Msg::Event(e));
    }
}

pub struct TelemetryConfig {
    pub csv: Option<PathBuf>,
    /// The backends, indexed like events' `backend`.
    pub backends: Vec<Backend>,
    pub upstream: &'static str,
    /// Print one line per request.
    pub verbose: bool,
    pub flush: LogFlush,
}

pub struct Telemetry {
    tx: mpsc::Sender<Msg>,
    live: Arc<Mutex<stats::Live>>,
    thread: Mutex<Option<JoinHandle<anyhow::Result<()>>>>,
}

impl Telemetry {
    pub fn start(cfg: TelemetryConfig) -> anyhow::Result<Telemetry> {
        let log = match &cfg.csv {
            Some(path) => Some(csvlog::CsvLog::create(path, &cfg.backends, cfg.upstream)?),
            None => None,
        };
        let live = Arc::new(Mutex::new(stats::Live::new(cfg.backends.len())));
        let (tx, rx) = mpsc::channel::<Msg>();
        let recorder = Recorder {
            rx,
            log,
            live: live.clone(),
            ids: cfg.backends.iter().map(|b| b.id.clone()).collect(),
            verbose: cfg.verbose,
            flush: cfg.flush,
        };
        let thread = std::thread::Builder::new()
            .name("telemetry".into())
            .spawn(move || recorder.run())
            .context("cannot start the telemetry thread")?;
        Ok(Telemetry {
            tx,
            live,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn sink(&self) -> EventSink {
        EventSink(self.tx.clone())
    }

    /// Completed seconds after unix second `after`, oldest first (at most ten minutes).
    pub fn seconds_after(&self, after: u64) -> Vec<Second> {
        let mut live = lock(&self.live);
        live.roll(settled_second());
        live.seconds_after(after)
    }

    pub fn totals(&self) -> Totals {
        lock(&self.live).totals()
    }

    /// The latest requests, oldest first.
    pub fn recent(&self) -> Vec<Recent> {
        lock(&self.live).recent()
    }

    /// Records everything sent so far, flushes the log and stops the thread. Later events
    /// are dropped, so call it once no request is in flight.
    pub fn finish(&self) -> anyhow::Result<Totals> {
        let _ = self.tx.send(Msg::Finish);
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            match thread.join() {
                Ok(result) => result.context("writing the request log")?,
                Err(_) => anyhow::bail!("the telemetry thread panicked"),
            }
        }
        Ok(self.totals())
    }
}

// === impl Recorder ===

/// The telemetry thread: drains events into the log and the live aggregates.
struct Recorder {
    rx: mpsc::Receiver<Msg>,
    log: Option<csvlog::CsvLog>,
    live: Arc<Mutex<stats::Live>>,
    ids: Vec<String>,
    verbose: bool,
    flush: LogFlush,
}

impl Recorder {
    fn run(mut self) -> anyhow::Result<()> {
        let mut last_flush = Instant::now();
        loop {
            // Drain, then sleep: the thread is never parked on the channel, so sending an
            // event never has to wake it (a wake-up per request cost the proxy a context
            // switch per request).
            let (wrote, finished) = self.drain()?;
            // Publish the second that just ended even when no traffic came.
            lock(&self.live).roll(settled_second());
            let due = match self.flush {
                LogFlush::Second => last_flush.elapsed() >= FLUSH_EVERY,
                LogFlush::Batch | LogFlush::Fsync => wrote,
            };
            if finished || due {
                if let Some(log) = self.log.as_mut() {
                    match self.flush {
                        LogFlush::Fsync => log.sync()?,
                        LogFlush::Second | LogFlush::Batch => log.flush()?,
                    }
                }
                last_flush = Instant::now();
            }
            if finished {
                return Ok(());
            }
            std::thread::sleep(DRAIN_EVERY);
        }
    }

    /// Records what the channel holds: whether any event came, and whether the proxy is done.
    fn drain(&mut self) -> anyhow::Result<(bool, bool)> {
        let mut wrote = false;
        loop {
            match self.rx.try_recv() {
                Ok(Msg::Event(e)) => {
                    wrote = true;
                    if let Some(log) = self.log.as_mut() {
                        log.write(&e)?;
                    }
                    if self.verbose {
                        crate::out::say!(
                            "{} {} {:.3}ms {} {}",
                            self.ids.get(e.backend).map(String::as_str).unwrap_or("?"),
                            e.status,
                            e.latency_ns as f64 / 1e6,
                            e.routing_mode,
                            e.outcome.as_str()
                        );
                    }
                    lock(&self.live).record(&e);
                }
                Ok(Msg::Finish) | Err(mpsc::TryRecvError::Disconnected) => {
                    return Ok((wrote, true))
                }
                Err(mpsc::TryRecvError::Empty) => return Ok((wrote, false)),
            }
        }
    }
}

/// The current second, as far as closing seconds goes: a second is closed only once events
/// still in the channel (drained every `DRAIN_EVERY`) can no longer belong to it.
fn settled_second() -> u64 {
    unix_secs(SystemTime::now() - DRAIN_EVERY * 5)
}

fn lock(m: &Mutex<stats::Live>) -> std::sync::MutexGuard<'_, stats::Live> {
    // Only the recorder thread writes, and it does not panic while holding the lock.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
