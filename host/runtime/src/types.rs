//! The runtime's vocabulary, free of wasmtime and HTTP types so that the proxy, the
//! simulator and the benchmarks can all speak it.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// An upstream as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Its short name (e.g. "A"), shown in logs and reports.
    pub id: String,
    /// Its base URL.
    pub url: String,
    /// Its weight, if the operator gave one (policies decide what it means).
    pub weight: Option<u32>,
}

/// Read access to the request being routed; only the parts a policy asks for are read.
pub trait RequestView {
    /// The method, e.g. "GET".
    fn method(&self) -> &str;
    /// The path with its query, e.g. "/a?b=c".
    fn path_and_query(&self) -> &str;
    /// The authority (Host), e.g. "example.com:8080"; empty if the request has none.
    fn authority(&self) -> &str;
    /// The client's address, if known.
    fn client(&self) -> Option<SocketAddr>;
    /// The value of header `name` (asked for in lower case), if present and readable as text.
    fn header(&self, name: &str) -> Option<&str>;
    /// Backends this client request was already sent to, oldest first (its attempt
    /// number is one more than their count).
    fn tried(&self) -> &[usize] {
        &[]
    }
    /// Calls `f` with each header (lower-case name, value readable as text); the router
    /// keeps a sample of recent requests to rehearse new policies on. None by default.
    fn for_each_header(&self, f: &mut dyn FnMut(&str, &str)) {
        let _ = f;
    }
}

/// A request with nothing to read, for callers that route without one (benchmarks).
pub struct NoRequest;

impl RequestView for NoRequest {
    fn method(&self) -> &str {
        "GET"
    }
    fn path_and_query(&self) -> &str {
        "/"
    }
    fn authority(&self) -> &str {
        ""
    }
    fn client(&self) -> Option<SocketAddr> {
        None
    }
    fn header(&self, _name: &str) -> Option<&str> {
        None
    }
}

/// How an exchange with a backend ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP response arrived in full; see `status` (5xx counts as a failure).
    Response,
    /// No connection could be made.
    ConnectError,
    /// No response within the host's timeout.
    Timeout,
    /// The connection broke mid-exchange.
    Broken,
    /// The client hung up before the response was complete (contract 0.2; a 0.1 policy
    /// is not told).
    Aborted,
}

impl Outcome {
    /// The name used in logs, CSV and JSON, e.g. "connect_error".
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Response => "response",
            Outcome::ConnectError => "connect_error",
            Outcome::Timeout => "timeout",
            Outcome::Broken => "broken",
            Outcome::Aborted => "aborted",
        }
    }
}

/// How one exchange ended, handed to [`Router::observe`](crate::Router::observe) with the
/// request's [`Ticket`].
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// When the exchange ended, on the clock of the `now_ns` passed to the router.
    pub now_ns: u64,
    /// From sending the request to having the whole response (or to the failure, or to the
    /// client hanging up).
    pub latency_ns: u64,
    /// HTTP status, 0 when there was no response.
    pub status: u16,
    /// How it ended.
    pub outcome: Outcome,
    /// The response headers the policy asked for ([`Choice::response_headers`](crate::Choice)),
    /// as (lower-case name, value); empty when it asked for none.
    pub headers: Vec<(String, String)>,
}

impl Observation {
    /// An observation without headers.
    pub fn new(now_ns: u64, latency_ns: u64, status: u16, outcome: Outcome) -> Self {
        Observation {
            now_ns,
            latency_ns,
            status,
            outcome,
            headers: Vec::new(),
        }
    }
}

/// Who chose the backend of an observed request, as the policy is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The instance being told.
    Chosen,
    /// An earlier instance (before a swap or a rebuild).
    OtherInstance,
    /// The host's own round-robin.
    Host,
    /// A replayed observation warming a new instance.
    Replay,
}

/// Proof that a request was routed, to hand back to [`Router::observe`](crate::Router::observe)
/// exactly once: the router counts the backend's request in flight from `choose` until then.
/// Not `Clone`, so a request cannot be observed twice.
#[derive(Debug)]
#[must_use = "hand the ticket back to Router::observe, or the backend's in-flight count leaks"]
pub struct Ticket {
    pub(crate) backend: usize,
    /// The instance that chose (its id), or [`Ticket::HOST`].
    pub(crate) chooser: u64,
    pub(crate) attempt: u32,
}

impl Ticket {
    /// The chooser of requests the host routed itself.
    pub(crate) const HOST: u64 = 0;

    /// The backend the request went to.
    pub fn backend(&self) -> usize {
        self.backend
    }
}

/// A probe the policy asked for, for a [`Prober`] to send: a GET on `path` to `backend`.
/// Answer it with [`Probe::answer`]; dropping it unanswered frees the backend for the next
/// probe without telling the policy anything.
pub struct Probe {
    /// The backend to probe.
    pub backend: usize,
    /// The path the policy named in `policy-info.probe-path`, e.g. "/probe".
    pub path: Arc<str>,
    /// Response headers to copy into the result; `None`: none.
    pub headers: Option<Arc<[String]>>,
    /// When the policy asked, on the router's clock.
    pub asked_ns: u64,
    pub(crate) reply: crate::router::ProbeReply,
}

impl Probe {
    /// Delivers the probe's result to the policy (`probed`).
    pub fn answer(self, result: ProbeResult) {
        self.reply.deliver(self.backend, result);
    }
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe")
            .field("backend", &self.backend)
            .field("path", &self.path)
            .field("asked_ns", &self.asked_ns)
            .finish_non_exhaustive()
    }
}

/// The answer to a [`Probe`].
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    /// When the answer (or the failure) arrived.
    pub now_ns: u64,
    /// From sending the probe to its whole response, or to the failure.
    pub latency_ns: u64,
    /// HTTP status, 0 when there was no response.
    pub status: u16,
    /// `Response`, `ConnectError`, `Timeout` or `Broken`.
    pub outcome: Outcome,
    /// The requested response headers that were present.
    pub headers: Vec<(String, String)>,
}

/// Sends the probes policies ask for, off the request path: the proxy over its upstream
/// connections, the simulator as virtual-time events. The runtime knows no HTTP; this is
/// its only way out to a backend.
pub trait Prober: Send + Sync {
    /// Sends `probe` and answers it later. Called right after a policy call, without the
    /// routing lock held; must not block.
    fn send(&self, probe: Probe);
}

/// Why a policy call did not produce a usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// The call trapped (panic, unreachable, bad memory access, unknown import, ...).
    Trap,
    /// The call ran past its CPU deadline.
    Deadline,
    /// The policy tried to grow its memory past the cap.
    Memory,
    /// `choose` answered an index that is not a backend.
    BadIndex,
    /// The policy used more CPU time per second than its budget (calls and the host work
    /// they cause, summed over one-second windows).
    Budget,
    /// The policy asked the host for more than a sandbox bound allows in one call (random
    /// bytes, a write larger than the stream permits) or returned more than the contract
    /// allows (scores); the detail names the bound.
    Limit,
}

impl FaultKind {
    /// Every kind, in `index()` order: arrays of per-kind values are sized by
    /// `FaultKind::ALL.len()` and indexed by `index()`.
    pub const ALL: [FaultKind; 6] = [
        FaultKind::Trap,
        FaultKind::Deadline,
        FaultKind::Memory,
        FaultKind::BadIndex,
        FaultKind::Budget,
        FaultKind::Limit,
    ];

    /// The name used in logs and metrics labels, e.g. "bad_index".
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Trap => "trap",
            FaultKind::Deadline => "deadline",
            FaultKind::Memory => "memory",
            FaultKind::BadIndex => "bad_index",
            FaultKind::Budget => "cpu_budget",
            FaultKind::Limit => "limit",
        }
    }

    /// This kind's position in [`FaultKind::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::FaultKind;

    #[test]
    fn all_lists_every_kind_at_its_index() {
        for (i, kind) in FaultKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i, "{kind:?}");
        }
        // A new kind fails to compile here: add it to `ALL` too.
        let listed = |k: FaultKind| match k {
            FaultKind::Trap
            | FaultKind::Deadline
            | FaultKind::Memory
            | FaultKind::BadIndex
            | FaultKind::Budget
            | FaultKind::Limit => FaultKind::ALL.contains(&k),
        };
        assert!(FaultKind::ALL.iter().all(|&k| listed(k)));
    }
}

/// The sandbox's limits for one policy instance: what one call, and one second of calls,
/// may make the host spend. The README's "Sandbox" section lists them with their flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// CPU time a single call may take, host work on its behalf included, before it is
    /// interrupted (checked every millisecond; see `sandbox::deadline`).
    pub deadline: Duration,
    /// Linear memory cap.
    pub memory_bytes: usize,
    /// CPU time the live instance's calls may take within one second of wall time, host
    /// work included; `None`: unbounded (the simulator, whose time is virtual). A per-call
    /// deadline alone cannot bound this: 4 ms a call at 250 calls a second is a whole core.
    pub cpu_budget: Option<Duration>,
    /// Bytes of stdout + stderr one call may write; the rest of the call's output is
    /// dropped (and the drop logged).
    pub log_bytes_per_call: usize,
    /// Bytes of stdout + stderr an instance may write per second; likewise.
    pub log_bytes_per_sec: usize,
    /// Bytes one `wasi:random` call may ask for; more is a [`FaultKind::Limit`] fault.
    pub random_bytes_per_call: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_millis(5),
            memory_bytes: 32 << 20,
            cpu_budget: Some(Duration::from_millis(100)),
            log_bytes_per_call: 4096,
            log_bytes_per_sec: 64 << 10,
            random_bytes_per_call: 4096,
        }
    }
}

/// A policy's per-backend scores at one moment, e.g. EWMA latencies in ms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scores {
    /// e.g. "ewma"; empty when the policy keeps no scores.
    pub label: String,
    /// (backend index, value).
    pub values: Vec<(usize, f64)>,
}
