//! The runtime's vocabulary, free of wasmtime and HTTP types so that the proxy, the
//! simulator and the benchmarks can all speak it.
use std::net::SocketAddr;
use std::time::Duration;

/// An upstream as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub id: String,
    pub url: String,
    pub weight: Option<u32>,
}

/// Read access to the request being routed; only the parts a policy asks for are read.
pub trait RequestView {
    fn method(&self) -> &str;
    fn path_and_query(&self) -> &str;
    fn authority(&self) -> &str;
    fn client(&self) -> Option<SocketAddr>;
    fn header(&self, name: &str) -> Option<&str>;
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
    Response,
    ConnectError,
    Timeout,
    Broken,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Response => "response",
            Outcome::ConnectError => "connect_error",
            Outcome::Timeout => "timeout",
            Outcome::Broken => "broken",
        }
    }
}

/// One finished exchange, reported to the policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    pub backend: usize,
    pub now_ns: u64,
    pub latency_ns: u64,
    pub status: u16,
    pub outcome: Outcome,
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
}

impl FaultKind {
    pub const ALL: [FaultKind; 4] = [
        FaultKind::Trap,
        FaultKind::Deadline,
        FaultKind::Memory,
        FaultKind::BadIndex,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Trap => "trap",
            FaultKind::Deadline => "deadline",
            FaultKind::Memory => "memory",
            FaultKind::BadIndex => "bad_index",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// The sandbox's limits for one policy instance.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// CPU time a single call may take before it is interrupted.
    pub deadline: Duration,
    /// Linear memory cap.
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_millis(5),
            memory_bytes: 32 << 20,
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
