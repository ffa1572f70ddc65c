//! Load accounting for profile requests, and the headers that report it.
//!
//! A backend tracks its profile requests whether or not it reports them (a few
//! relaxed atomics per request), because `GET /probe` always answers with the
//! load; `--report-load` only decides whether profile responses carry it too.
//!
//! Every report is one snapshot of the backend *as a request arriving at that
//! instant would find it*. A probe is never counted, so its snapshot is simply
//! the current state. A profile response is snapshotted just after its request
//! finishes: the request no longer counts as in flight or in service, and it
//! does count as one completion (in `rps_fractional` and the latency median).
//! A piggybacked report therefore equals what a probe sent right after the
//! response would have seen, and the two sources can be mixed freely.
//!
//! Headers (see [`Snapshot::write_headers`]):
//!
//! - `endpoint-load-metrics: TEXT application_utilization:U,rps_fractional:R,named_metrics.rif:N`,
//!   ORCA's native-HTTP text form as Envoy parses it. U (3 decimals) is requests
//!   in service (holding a capacity permit) divided by `--capacity`, omitted when
//!   capacity is unlimited; R (3 decimals) is completions in the last second,
//!   see [`RollingCount`]; N is requests in flight (received, not yet answered:
//!   queued plus in service).
//! - `x-prequal-rif: N`, the same N, and `x-prequal-latency-us`, the median
//!   receipt-to-response time of the last [`LATENCY_SAMPLES`] completed profile
//!   requests (0 before the first), the open-source Prequal convention.
//!
//! Failed (simulated 500) requests are completions like any other; requests
//! whose client went away before the answer leave the in-flight count but are
//! not completions. Fields are read one by one, not as one atomic snapshot, so
//! under heavy concurrency they may disagree by a request or two.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyper::header::{HeaderName, HeaderValue};
use hyper::HeaderMap;

/// Completed requests whose latencies make up the reported median.
pub(crate) const LATENCY_SAMPLES: usize = 16;

/// ORCA's per-request load report header (native HTTP encoding).
const ORCA_HEADER: HeaderName = HeaderName::from_static("endpoint-load-metrics");
const RIF_HEADER: HeaderName = HeaderName::from_static("x-prequal-rif");
const LATENCY_HEADER: HeaderName = HeaderName::from_static("x-prequal-latency-us");

/// The load of one backend, shared by all its connections.
///
/// Counters are `Relaxed`: each is independent, and the ordering a client can
/// observe (its response, then its next request) already passes through the
/// socket and tokio's own synchronisation.
pub(crate) struct Load {
    capacity: Option<usize>,
    /// Profile requests received and not yet answered (queued + in service).
    in_flight: AtomicU32,
    /// Profile requests past the capacity gate and not yet answered.
    in_service: AtomicU32,
    completions: RollingCount,
    latencies: RecentLatencies,
}

/// What one report says; see the module docs for the meaning of each field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Snapshot {
    pub(crate) rif: u32,
    /// `None` when capacity is unlimited, so there is no denominator.
    pub(crate) utilization: Option<f64>,
    pub(crate) rps: f64,
    pub(crate) latency_us: u64,
}

/// One profile request's place in the counters. Dropping it (also when the
/// client disconnects and hyper drops the request future) takes the request
/// out of them, so a vanished client never leaves the load inflated.
pub(crate) struct Ticket<'a> {
    load: &'a Load,
    received: Instant,
    serving: bool,
}

// === impl Load ===

impl Load {
    pub(crate) fn new(capacity: Option<usize>) -> Self {
        Self {
            capacity,
            in_flight: AtomicU32::new(0),
            in_service: AtomicU32::new(0),
            completions: RollingCount::new(),
            latencies: RecentLatencies::new(),
        }
    }

    /// Counts a profile request as in flight from its receipt on.
    pub(crate) fn arrive(&self) -> Ticket<'_> {
        // Wraps only past 4 billion concurrent requests, which cannot happen.
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Ticket {
            load: self,
            received: Instant::now(),
            serving: false,
        }
    }

    /// The load as a request arriving now would find it.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let utilization = self.capacity.map(|cap| {
            // `in_service <= capacity`: only permit holders are counted, and
            // they leave the count before releasing the permit.
            f64::from(self.in_service.load(Ordering::Relaxed)) / cap as f64
        });
        Snapshot {
            rif: self.in_flight.load(Ordering::Relaxed),
            utilization,
            rps: self.completions.rate(),
            latency_us: self.latencies.median(),
        }
    }
}

// === impl Ticket ===

impl Ticket<'_> {
    /// Marks the request as in service: it holds a capacity permit (or there
    /// is no limit) and its simulated work begins.
    pub(crate) fn start_service(&mut self) {
        if !self.serving {
            self.serving = true;
            self.load.in_service.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records the request as completed and returns the load it leaves
    /// behind: itself no longer in flight, but counted as a completion.
    pub(crate) fn finish(self) -> Snapshot {
        let load = self.load;
        load.latencies.record(self.received.elapsed());
        load.completions.record();
        drop(self);
        load.snapshot()
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        // Each decrement pairs with this ticket's own increment, so neither
        // counter can underflow. In service leaves first, so a reader never
        // sees more requests in service than in flight because of us.
        if self.serving {
            self.load.in_service.fetch_sub(1, Ordering::Relaxed);
        }
        self.load.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

// === impl Snapshot ===

impl Snapshot {
    /// The ORCA TEXT value: `TEXT application_utilization:0.500,rps_fractional:12.000,named_metrics.rif:3`.
    pub(crate) fn orca_text(&self) -> String {
        let mut text = String::from("TEXT ");
        if let Some(u) = self.utilization {
            text += &format!("application_utilization:{u:.3},");
        }
        text + &format!(
            "rps_fractional:{:.3},named_metrics.rif:{}",
            self.rps, self.rif
        )
    }

    pub(crate) fn write_headers(&self, headers: &mut HeaderMap) {
        // Digits, letters, `.`, `:`, `,`, `_` and a space are always valid in
        // a header value; skipping rather than panicking keeps that an
        // assumption that can only cost a header, never a response.
        if let Ok(orca) = HeaderValue::try_from(self.orca_text()) {
            headers.insert(ORCA_HEADER, orca);
        }
        headers.insert(RIF_HEADER, HeaderValue::from(self.rif));
        headers.insert(LATENCY_HEADER, HeaderValue::from(self.latency_us));
    }
}

/// Width of one [`RollingCount`] bucket.
const BUCKET: Duration = Duration::from_millis(100);
/// Ten buckets make the one-second window, plus the one sliding out of it.
const BUCKETS: usize = 11;
const COUNT_BITS: u32 = 24;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// Events in the last second, lock-free.
///
/// Time is cut into 100 ms buckets; each slot of a ring of 11 packs a bucket
/// number (high 40 bits, enough for millennia) and its count (low 24 bits,
/// saturating at 16.7 million per 100 ms) into one `AtomicU64`, so recording
/// is one compare-and-swap and a slot is reset by the first event of the
/// bucket that reuses it, with no timer. The rate is the current partial
/// bucket plus the nine before it, plus the bucket sliding out weighted by how
/// much of it still lies inside the window: the sliding-window estimate rate
/// limiters use, exact when events are spread evenly within a bucket.
pub(crate) struct RollingCount {
    start: Instant,
    slots: [AtomicU64; BUCKETS],
}

// === impl RollingCount ===

impl RollingCount {
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    pub(crate) fn record(&self) {
        let (bucket, _) = self.now();
        self.record_at(bucket);
    }

    pub(crate) fn rate(&self) -> f64 {
        let (bucket, into) = self.now();
        self.rate_at(bucket, into)
    }

    /// The current bucket number and how far into it we are (0..1).
    fn now(&self) -> (u64, f64) {
        let nanos = self.start.elapsed().as_nanos();
        let width = BUCKET.as_nanos();
        let bucket = u64::try_from(nanos / width).unwrap_or(u64::MAX >> COUNT_BITS);
        (bucket, (nanos % width) as f64 / width as f64)
    }

    fn slot(&self, bucket: u64) -> &AtomicU64 {
        &self.slots[(bucket % BUCKETS as u64) as usize]
    }

    fn record_at(&self, bucket: u64) {
        let slot = self.slot(bucket);
        let mut seen = slot.load(Ordering::Relaxed);
        loop {
            let next = match seen >> COUNT_BITS {
                b if b == bucket => seen + u64::from(seen & COUNT_MASK < COUNT_MASK),
                // A newer bucket already owns the slot: this event is older
                // than the window, so it no longer counts.
                b if b > bucket => return,
                _ => (bucket << COUNT_BITS) | 1,
            };
            match slot.compare_exchange_weak(seen, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => seen = actual,
            }
        }
    }

    fn rate_at(&self, bucket: u64, into: f64) -> f64 {
        let count_of = |age: u64| -> f64 {
            let Some(b) = bucket.checked_sub(age) else {
                return 0.0;
            };
            let packed = self.slot(b).load(Ordering::Relaxed);
            if packed >> COUNT_BITS == b {
                (packed & COUNT_MASK) as f64
            } else {
                0.0
            }
        };
        let oldest = BUCKETS as u64 - 1;
        let full: f64 = (0..oldest).map(count_of).sum();
        full + count_of(oldest) * (1.0 - into)
    }
}

/// The latencies of the last [`LATENCY_SAMPLES`] completions, lock-free: a
/// ring of atomics written round-robin. Unwritten slots hold `EMPTY` and are
/// skipped, so the median before the ring fills uses only real samples.
pub(crate) struct RecentLatencies {
    next: AtomicU64,
    slots: [AtomicU64; LATENCY_SAMPLES],
}

const EMPTY: u64 = u64::MAX;

// === impl RecentLatencies ===

impl RecentLatencies {
    pub(crate) fn new() -> Self {
        Self {
            next: AtomicU64::new(0),
            slots: std::array::from_fn(|_| AtomicU64::new(EMPTY)),
        }
    }

    pub(crate) fn record(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(EMPTY - 1);
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.slots[(i % LATENCY_SAMPLES as u64) as usize]
            .store(us.min(EMPTY - 1), Ordering::Relaxed);
    }

    /// Median in microseconds (the mean of the two middle samples for an
    /// even count); 0 before any sample. Sorting 16 numbers on a stack array
    /// costs well under a microsecond, so it is done per report.
    pub(crate) fn median(&self) -> u64 {
        let mut samples = [0u64; LATENCY_SAMPLES];
        let mut n = 0;
        for slot in &self.slots {
            let us = slot.load(Ordering::Relaxed);
            if us != EMPTY {
                samples[n] = us;
                n += 1;
            }
        }
        let samples = &mut samples[..n];
        samples.sort_unstable();
        match n {
            0 => 0,
            _ if n % 2 == 1 => samples[n / 2],
            _ => {
                let (low, high) = (samples[n / 2 - 1], samples[n / 2]);
                low + (high - low) / 2
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolling_count_covers_one_second_and_slides() {
        let c = RollingCount::new();
        for _ in 0..3 {
            c.record_at(5);
        }
        c.record_at(14);
        assert_eq!(c.rate_at(14, 0.0), 4.0);
        // Bucket 5 is the one sliding out at bucket 15: half of it remains.
        assert_eq!(c.rate_at(15, 0.5), 1.0 + 1.5);
        assert_eq!(c.rate_at(16, 0.0), 1.0);
        assert_eq!(c.rate_at(30, 0.0), 0.0);
        // Bucket 16 reuses bucket 5's slot and resets it.
        c.record_at(16);
        assert_eq!(c.rate_at(16, 0.0), 2.0);
        // An event for a bucket older than the slot's owner is dropped.
        c.record_at(5);
        assert_eq!(c.rate_at(16, 0.0), 2.0);
    }

    #[test]
    fn median_of_recent_latencies() {
        let l = RecentLatencies::new();
        assert_eq!(l.median(), 0);
        l.record(Duration::from_micros(30));
        assert_eq!(l.median(), 30);
        l.record(Duration::from_micros(10));
        assert_eq!(l.median(), 20);
        l.record(Duration::from_micros(1_000_000));
        assert_eq!(l.median(), 30);
        // Older samples fall out once LATENCY_SAMPLES newer ones arrive.
        for _ in 0..LATENCY_SAMPLES {
            l.record(Duration::from_micros(7));
        }
        assert_eq!(l.median(), 7);
    }

    #[test]
    fn tickets_leave_the_counts_when_dropped_or_finished() {
        let load = Load::new(Some(2));
        let mut a = load.arrive();
        let b = load.arrive();
        a.start_service();
        let s = load.snapshot();
        assert_eq!((s.rif, s.utilization), (2, Some(0.5)));
        drop(b); // a client that went away: no completion
        let left = a.finish();
        assert_eq!((left.rif, left.utilization), (0, Some(0.0)));
        assert_eq!(left.rps, 1.0);
        assert_eq!(
            left.orca_text(),
            "TEXT application_utilization:0.000,rps_fractional:1.000,named_metrics.rif:0"
        );
        let unlimited = Load::new(None).snapshot();
        assert_eq!(
            unlimited.orca_text(),
            "TEXT rps_fractional:0.000,named_metrics.rif:0"
        );
    }
}
