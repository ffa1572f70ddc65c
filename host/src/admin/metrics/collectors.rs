//! One `Collector` per source, each reading counters that already exist when a scrape
//! encodes it: the telemetry thread's totals, the upstreams' `ConnStats`, the router's
//! `Counters` and status. Nothing is recorded twice, and the request path does no metrics
//! work of its own.
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;
use switchyard_runtime::FaultKind;

use crate::admin::state::ConnState;
use crate::proxy::ProxyState;
use crate::telemetry::{LatencyBuckets, Telemetry};

/// A counter without labels.
fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let c = ConstCounter::new(value);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

/// A counter with one sample per `(label value, count)`.
fn counter_by<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (&'a str, u64)>,
) -> fmt::Result {
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (v, n) in values {
        ConstCounter::new(n).encode(family.encode_family(&[(label, v)])?)?;
    }
    Ok(())
}

/// Per-bucket counts (the encoder accumulates them) from the telemetry's cumulative ones.
fn per_bucket(latency: &LatencyBuckets) -> Vec<(f64, u64)> {
    let mut below = 0;
    latency
        .cumulative()
        .into_iter()
        .map(|(upper, total)| {
            let n = total.saturating_sub(below);
            below = total;
            (upper, n)
        })
        .collect()
}

/// Requests, errors and latency histograms by backend, from the telemetry's totals: the
/// same events the CSV log writes, so the two agree.
pub(super) struct TelemetryCollector {
    pub(super) shared: Arc<ProxyState>,
    pub(super) telemetry: Arc<Telemetry>,
}

impl Collector for TelemetryCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let totals = self.telemetry.totals();
        let ids = self.shared.backend_ids();
        counter_by(
            &mut enc,
            "requests",
            "Proxied requests, by backend (one CSV log row each).",
            "backend",
            ids.iter().copied().zip(totals.per_backend.iter().copied()),
        )?;
        counter_by(
            &mut enc,
            "request_errors",
            "Requests that failed (5xx, connect error, timeout or broken response), by backend; \
             a client hanging up is not counted.",
            "backend",
            ids.iter()
                .copied()
                .zip(totals.per_backend_errors.iter().copied()),
        )?;
        let mut family = enc.encode_descriptor(
            "request_duration_seconds",
            "Time from sending the request upstream to relaying the whole response, by backend.",
            None,
            MetricType::Histogram,
        )?;
        for (id, latency) in ids.iter().zip(&totals.per_backend_latency) {
            family
                .encode_family(&[("backend", *id)])?
                .encode_histogram::<NoLabelSet>(
                    latency.sum_ns as f64 / 1e9,
                    latency.count(),
                    &per_bucket(latency),
                    None,
                )?;
        }
        Ok(())
    }
}

/// Connections opened, reused and failed by backend, from the upstreams' own counters.
pub(super) struct UpstreamCollector {
    pub(super) shared: Arc<ProxyState>,
}

impl Collector for UpstreamCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let ids = self.shared.backend_ids();
        let conns: Vec<ConnState> = (0..ids.len())
            .map(|i| {
                self.shared
                    .upstreams
                    .get(i)
                    .map(|u| ConnState::from(&u.stats))
                    .unwrap_or_default()
            })
            .collect();
        let by_backend = |pick: fn(&ConnState) -> u64| {
            ids.iter()
                .copied()
                .zip(conns.iter().map(pick))
                .collect::<Vec<_>>()
        };
        for (name, help, pick) in [
            (
                "upstream_connections_opened",
                "TCP connections opened to the backend.",
                (|c| c.opened) as fn(&ConnState) -> u64,
            ),
            (
                "upstream_connections_reused",
                "Requests sent on an already open (pooled) connection.",
                |c| c.reused,
            ),
            (
                "upstream_connect_failures",
                "Connection attempts to the backend that failed.",
                |c| c.failed_connects,
            ),
        ] {
            counter_by(&mut enc, name, help, "backend", by_backend(pick))?;
        }
        Ok(())
    }
}

/// Policy calls, faults, swaps and the loaded policy, from the router's counters and
/// status.
pub(super) struct RouterCollector {
    pub(super) shared: Arc<ProxyState>,
}

impl Collector for RouterCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let c = self.shared.router.counters();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter_by(
            &mut enc,
            "policy_calls",
            "Calls into the policy on the request path, by function.",
            "call",
            [
                ("choose", load(&c.choose_calls)),
                ("observe", load(&c.observe_calls)),
            ],
        )?;
        // A histogram with only the +Inf bucket: the sum and count a summary without
        // quantiles would carry (prometheus-client has no summary type).
        enc.encode_descriptor(
            "policy_call_duration_seconds",
            "Time spent in policy choose and observe calls (one call in 16 is timed).",
            None,
            MetricType::Histogram,
        )?
        .encode_histogram::<NoLabelSet>(
            load(&c.call_ns) as f64 / 1e9,
            load(&c.timed_calls),
            &[],
            None,
        )?;
        counter_by(
            &mut enc,
            "policy_faults",
            "Policy calls that faulted (the host routed those requests round-robin), by kind.",
            "kind",
            FaultKind::ALL.map(|k| (k.as_str(), c.fault_count(k))),
        )?;
        for (name, help, value) in [
            (
                "policy_fallback_routed",
                "Requests the host routed itself (policy faulted, rebuilding or disabled).",
                &c.fallback_routed,
            ),
            (
                "policy_swaps",
                "Policies swapped in (file change, SIGHUP or the admin API).",
                &c.swaps,
            ),
            (
                "policy_failed_swaps",
                "Policy reloads refused; the running policy stayed.",
                &c.failed_swaps,
            ),
            (
                "policy_rebuilds",
                "Faulted policy instances replaced by a fresh one.",
                &c.rebuilds,
            ),
            (
                "policy_breaker_trips",
                "Times the policy was disabled for faulting too often.",
                &c.breaker_trips,
            ),
            (
                "policy_display_faults",
                "Faults of the display twin behind scores (routing is not affected).",
                &c.display_faults,
            ),
            (
                "policy_replays_cut",
                "Warm starts whose replay stopped at the replay or display budget.",
                &c.replays_cut,
            ),
            (
                "policy_probes_sent",
                "Probes a policy asked for (host.probe) that the proxy sent.",
                &c.probes_sent,
            ),
            (
                "policy_probes_answered",
                "Probe results delivered back to the policy (timeouts included).",
                &c.probes_answered,
            ),
        ] {
            counter(&mut enc, name, help, load(value))?;
        }
        self.encode_in_flight(&mut enc)?;
        self.encode_status(enc)
    }
}

impl RouterCollector {
    /// Requests routed to each backend and not finished yet: the count policies read
    /// through `host.in-flight`.
    fn encode_in_flight(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let router = &self.shared.router;
        let mut family = enc.encode_descriptor(
            "backend_in_flight",
            "Requests routed to the backend and not yet finished (what host.in-flight reads).",
            None,
            MetricType::Gauge,
        )?;
        for (i, b) in router.backends().iter().enumerate() {
            let n = i64::from(router.in_flight(i));
            family
                .encode_family(&[("backend", b.id.as_str())])?
                .encode_gauge(&n)?;
        }
        Ok(())
    }

    /// The loaded policy: an info metric, its generation and whether it is disabled.
    fn encode_status(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let status = self.shared.router.status();
        let file = status.file.display().to_string();
        enc.encode_descriptor(
            "policy",
            "The loaded policy: its name (the CSV routing_mode) and file; always 1.",
            None,
            MetricType::Info,
        )?
        .encode_info(&[("name", &*status.name), ("file", &file)])?;
        enc.encode_descriptor(
            "policy_generation",
            "Generation of the loaded policy (1 at start, +1 per swap).",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&status.generation)?;
        enc.encode_descriptor(
            "policy_disabled",
            "1 while the circuit breaker has the policy disabled.",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&u64::from(status.disabled))
    }
}

/// The client side: requests refused before routing and the connection cap.
pub(super) struct EdgeCollector {
    pub(super) shared: Arc<ProxyState>,
}

impl Collector for EdgeCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        counter_by(
            &mut enc,
            "refused",
            "Requests answered by the proxy itself before routing (400 for Host errors, 501 for \
             CONNECT), by reason; they reach no policy and no backend.",
            "reason",
            self.shared
                .refusals
                .snapshot()
                .into_iter()
                .map(|(r, n)| (r.as_str(), n)),
        )?;
        let conns = &self.shared.connections;
        enc.encode_descriptor(
            "client_connections",
            "Client connections open now.",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&(conns.open() as u64))?;
        counter(
            &mut enc,
            "client_connection_cap_reached",
            "Times the listener stopped accepting because --max-connections were open.",
            conns.at_cap(),
        )
    }
}

// The collectors hold the proxy's state, which has no `Debug`; `Collector` asks for one.
macro_rules! opaque_debug {
    ($($t:ty),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($t)).finish_non_exhaustive()
            }
        }
    )*};
}
opaque_debug!(
    TelemetryCollector,
    UpstreamCollector,
    RouterCollector,
    EdgeCollector
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::metrics::encode;
    use prometheus_client::encoding::{prometheus_text, text};
    use prometheus_client::registry::Registry;

    #[derive(Debug)]
    struct Fixed;

    impl Collector for Fixed {
        fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
            counter_by(&mut enc, "x", "Help.", "file", [("a\"b\\c\nd", 3)])?;
            counter(&mut enc, "y", "Help.", 0)?;
            enc.encode_descriptor("z_seconds", "Help.", None, MetricType::Histogram)?
                .encode_histogram::<NoLabelSet>(0.25, 2, &[(0.1, 1), (f64::INFINITY, 1)], None)
        }
    }

    #[test]
    fn values_and_labels_are_escaped_in_both_formats() {
        let mut registry = Registry::with_prefix("s");
        registry.register_collector(Box::new(Fixed));
        let prometheus = encode(&registry, prometheus_text::encode).unwrap();
        let openmetrics = encode(&registry, text::encode).unwrap();
        let samples = "s_x_total{file=\"a\\\"b\\\\c\\nd\"} 3\n";
        assert_eq!(
            prometheus,
            format!(
                "# HELP s_x_total Help.\n# TYPE s_x_total counter\n{samples}\
                 # HELP s_y_total Help.\n# TYPE s_y_total counter\ns_y_total 0\n\
                 # HELP s_z_seconds Help.\n# TYPE s_z_seconds histogram\n\
                 s_z_seconds_bucket{{le=\"0.1\"}} 1\ns_z_seconds_bucket{{le=\"+Inf\"}} 2\n\
                 s_z_seconds_sum 0.25\ns_z_seconds_count 2\n"
            )
        );
        // OpenMetrics names a counter family without `_total` and ends with `# EOF`.
        assert!(
            openmetrics.starts_with(&format!("# HELP s_x Help.\n# TYPE s_x counter\n{samples}"))
        );
        assert!(openmetrics.contains("s_z_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(openmetrics.ends_with("# EOF\n"));
    }
}
