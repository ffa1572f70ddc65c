//! Hot reload: watches the policy file and swaps in each new version while traffic flows.
//!
//! The parent folder is watched, not the file, so that every way of replacing a file is
//! seen: in-place writes (`cp`, cargo), renames (`mv`, editors' atomic saves), deletion and
//! re-creation. Events for the policy file are debounced (events for other files in the
//! folder are ignored, however many); a file that fails to load in a way a half-written
//! file would (empty, truncated) is retried a few times before the failure is final. Any
//! failure leaves the running policy in place, says why in one log line, and is counted.
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};

use switchyard_runtime::{PolicyRuntime, Router, SwapReport};

/// Quiet time after the last file event before loading.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// Retries, and the pause between them, for errors a half-written file causes.
const PARTIAL_RETRIES: u32 = 5;
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// The monotonic clock policies see (the proxy's `now_ns`).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

enum Trigger {
    FileEvent(Vec<PathBuf>),
    /// SIGHUP: reload the current file.
    Reload,
    /// The admin API's policy selector: load another file, and watch it from then on.
    SwitchTo(PathBuf, mpsc::Sender<Result<SwapReport, String>>),
}

/// Handle to the reload thread; dropping every handle stops it.
#[derive(Clone)]
pub struct Reloader {
    tx: mpsc::Sender<Trigger>,
}

impl Reloader {
    /// Starts watching `path` and swapping each new version into `router`.
    pub fn start(
        runtime: Arc<PolicyRuntime>,
        router: Router,
        path: PathBuf,
        clock: Clock,
        watch: bool,
    ) -> anyhow::Result<Reloader> {
        let (tx, rx) = mpsc::channel();
        let events = tx.clone();
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if let Ok(event) = res {
                    if !event.kind.is_access() {
                        let _ = events.send(Trigger::FileEvent(event.paths));
                    }
                }
            })?;
        if watch {
            watcher.watch(&parent(&path), RecursiveMode::NonRecursive)?;
        }
        let mut state = ReloadLoop {
            runtime,
            router,
            clock,
            path,
            watcher,
            watch,
        };
        std::thread::Builder::new()
            .name("policy-reload".into())
            .spawn(move || state.run(rx))?;
        Ok(Reloader { tx })
    }

    /// Reloads the current file now.
    pub fn trigger(&self) {
        let _ = self.tx.send(Trigger::Reload);
    }

    /// Loads `path`, swaps it in and watches it from then on; waits for the outcome.
    pub fn switch_to(&self, path: PathBuf) -> Result<SwapReport, String> {
        let (tx, rx) = mpsc::channel();
        let stopped = || "the policy reload thread has stopped".to_string();
        self.tx
            .send(Trigger::SwitchTo(path, tx))
            .map_err(|_| stopped())?;
        rx.recv().map_err(|_| stopped())?
    }
}

struct ReloadLoop {
    runtime: Arc<PolicyRuntime>,
    router: Router,
    clock: Clock,
    path: PathBuf,
    watcher: RecommendedWatcher,
    watch: bool,
}

impl ReloadLoop {
    fn run(&mut self, rx: mpsc::Receiver<Trigger>) {
        while let Ok(msg) = rx.recv() {
            match msg {
                Trigger::FileEvent(paths) if self.concerns(&paths) => {
                    // Let a burst of writes settle (cargo and cp write in several steps).
                    // Only events for the policy file restart the quiet time: a busy file
                    // beside it (the CSV log) must not hold the swap back.
                    let mut quiet_from = Instant::now();
                    loop {
                        let wait = DEBOUNCE.saturating_sub(quiet_from.elapsed());
                        match rx.recv_timeout(wait) {
                            Ok(Trigger::FileEvent(paths)) => {
                                if self.concerns(&paths) {
                                    quiet_from = Instant::now();
                                }
                            }
                            Ok(other) => {
                                self.reload();
                                self.handle(other);
                                break;
                            }
                            Err(RecvTimeoutError::Timeout) => {
                                self.reload();
                                break;
                            }
                            Err(RecvTimeoutError::Disconnected) => return,
                        }
                    }
                }
                other => self.handle(other),
            }
        }
    }

    fn handle(&mut self, msg: Trigger) {
        match msg {
            Trigger::FileEvent(_) => {}
            Trigger::Reload => {
                self.reload();
            }
            Trigger::SwitchTo(path, reply) => {
                let result = self.swap(&path, 0);
                if result.is_ok() && path != self.path && self.watch {
                    let _ = self.watcher.unwatch(&parent(&self.path));
                    if let Err(e) = self
                        .watcher
                        .watch(&parent(&path), RecursiveMode::NonRecursive)
                    {
                        tracing::warn!(
                            "cannot watch {}: {e}; reload it with SIGHUP",
                            path.display()
                        );
                    }
                }
                if result.is_ok() {
                    self.path = path;
                }
                let _ = reply.send(result);
            }
        }
    }

    fn concerns(&self, paths: &[PathBuf]) -> bool {
        let name = self.path.file_name();
        paths.iter().any(|p| p.file_name() == name)
    }

    fn reload(&mut self) {
        let path = self.path.clone();
        let _ = self.swap(&path, PARTIAL_RETRIES);
    }

    /// Loads `path` and swaps it in, logging the outcome either way.
    fn swap(&self, path: &Path, retries: u32) -> Result<SwapReport, String> {
        let started = Instant::now();
        let mut attempt = 0;
        let component = loop {
            let before = stamp(path);
            match self.runtime.load(path) {
                Ok(c) => break c,
                // Still being written: it may fail to parse in many ways, not only as
                // "truncated", so any failure on a file that changed meanwhile is retried.
                Err(e) if (e.may_be_partial() || stamp(path) != before) && attempt < retries => {
                    attempt += 1;
                    std::thread::sleep(RETRY_PAUSE);
                }
                Err(e) => {
                    self.router.record_failed_swap();
                    tracing::error!(
                        "policy reload failed, keeping {}: {e}",
                        self.router.status().name
                    );
                    return Err(e.to_string());
                }
            }
        };
        let loaded = started.elapsed();
        match self.router.swap(component, (self.clock)()) {
            Ok(report) => {
                tracing::info!(
                    "policy swap: {} -> {} in {:.1} ms (load {:.1} ms, warm-started with {} observations)",
                    report.from,
                    report.to,
                    started.elapsed().as_secs_f64() * 1e3,
                    loaded.as_secs_f64() * 1e3,
                    report.replayed
                );
                Ok(report)
            }
            Err(e) => {
                tracing::error!(
                    "policy reload failed, keeping {}: {e}",
                    self.router.status().name
                );
                Err(e.to_string())
            }
        }
    }
}

/// Size and modification time, to tell whether a file changed while it was being loaded.
fn stamp(path: &Path) -> Option<(u64, std::time::SystemTime)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?))
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
