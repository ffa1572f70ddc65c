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
}

/// How often the recorder drains the channel.
const DRAIN_EVERY: Duration = Duration::from_millis(20);

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
}

pub struct Telemetry {
    tx: mpsc::Sender<Msg>,
    live: Arc<Mutex<stats::Live>>,
    thread: Mutex<Option<JoinHandle<anyhow::Result<()>>>>,
}

impl Telemetry {
    pub fn start(cfg: TelemetryConfig) -> anyhow::Result<Telemetry> {
        let mut log = match &cfg.csv {
            Some(path) => Some(csvlog::CsvLog::create(path, &cfg.backends, cfg.upstream)?),
            None => None,
        };
        let live = Arc::new(Mutex::new(stats::Live::new(cfg.backends.len())));
        let (tx, rx) = mpsc::channel::<Msg>();
        let shared = live.clone();
        let ids: Vec<String> = cfg.backends.iter().map(|b| b.id.clone()).collect();
        let verbose = cfg.verbose;
        let thread = std::thread::Builder::new()
            .name("telemetry".into())
            .spawn(move || -> anyhow::Result<()> {
                let mut last_flush = Instant::now();
                loop {
                    // Drain, then sleep: the thread is never parked on the channel, so
                    // sending an event never has to wake it (a wake-up per request cost
                    // the proxy a context switch per request).
                    let mut finished = false;
                    loop {
                        match rx.try_recv() {
                            Ok(Msg::Event(e)) => {
                                if let Some(log) = log.as_mut() {
                                    log.write(&e)?;
                                }
                                if verbose {
                                    crate::out::say!(
                                        "{} {} {:.3}ms {} {}",
                                        ids.get(e.backend).map(String::as_str).unwrap_or("?"),
                                        e.status,
                                        e.latency_ns as f64 / 1e6,
                                        e.routing_mode,
                                        e.outcome.as_str()
                                    );
                                }
                                lock(&shared).record(&e);
                            }
                            Ok(Msg::Finish) | Err(mpsc::TryRecvError::Disconnected) => {
                                finished = true;
                                break;
                            }
                            Err(mpsc::TryRecvError::Empty) => break,
                        }
                    }
                    // Publish the second that just ended even when no traffic came.
                    lock(&shared).roll(settled_second());
                    if finished || last_flush.elapsed() >= Duration::from_secs(1) {
                        if let Some(log) = log.as_mut() {
                            log.flush()?;
                        }
                        last_flush = Instant::now();
                    }
                    if finished {
                        return Ok(());
                    }
                    std::thread::sleep(DRAIN_EVERY);
                }
            })
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

/// The current second, as far as closing seconds goes: a second is closed only once events
/// still in the channel (drained every `DRAIN_EVERY`) can no longer belong to it.
fn settled_second() -> u64 {
    unix_secs(SystemTime::now() - DRAIN_EVERY * 5)
}

fn lock(m: &Mutex<stats::Live>) -> std::sync::MutexGuard<'_, stats::Live> {
    // Only the recorder thread writes, and it does not panic while holding the lock.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
