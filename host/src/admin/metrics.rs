//! `/metrics` in the Prometheus text exposition format (version 0.0.4), written by hand:
//! a dozen families do not need a client library. Everything comes from counters that
//! already exist (telemetry totals, upstream `ConnStats`, router `Counters`), read at
//! scrape time.
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use http::StatusCode;
use switchyard_runtime::FaultKind;

use super::body::AdminBody;
use super::Ctx;

pub(super) fn response(ctx: &Ctx) -> http::Response<AdminBody> {
    super::respond(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        render(ctx).into(),
    )
}

/// One metric family: HELP and TYPE lines, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<f64>) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        self.out.push(' ');
        push_value(self.out, value.into());
        self.out.push('\n');
        self
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn push_value(out: &mut String, v: f64) {
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.is_nan() {
        out.push_str("NaN");
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

fn le(upper: f64) -> String {
    if upper.is_infinite() {
        "+Inf".into()
    } else {
        format!("{upper}")
    }
}

pub(super) fn render(ctx: &Ctx) -> String {
    let shared = &ctx.app.shared;
    let totals = ctx.app.telemetry.totals();
    let ids = shared.backend_ids();
    let mut out = String::with_capacity(8192);

    let name = "switchyard_requests_total";
    let mut f = Family::new(
        &mut out,
        name,
        "counter",
        "Proxied requests, by backend (one CSV log row each).",
    );
    for (id, &n) in ids.iter().zip(&totals.per_backend) {
        f.sample(name, &[("backend", id)], n as f64);
    }

    let name = "switchyard_request_errors_total";
    let mut f = Family::new(
        &mut out,
        name,
        "counter",
        "Requests that failed (5xx, connect error, timeout, broken or aborted), by backend.",
    );
    for (id, &n) in ids.iter().zip(&totals.per_backend_errors) {
        f.sample(name, &[("backend", id)], n as f64);
    }

    let name = "switchyard_request_duration_seconds";
    let mut f = Family::new(
        &mut out,
        name,
        "histogram",
        "Time from sending the request upstream to relaying the whole response, by backend.",
    );
    for (id, buckets) in ids.iter().zip(&totals.per_backend_latency) {
        for (upper, count) in buckets.cumulative() {
            let le = le(upper);
            f.sample(
                "switchyard_request_duration_seconds_bucket",
                &[("backend", id), ("le", &le)],
                count as f64,
            );
        }
        f.sample(
            "switchyard_request_duration_seconds_sum",
            &[("backend", id)],
            buckets.sum_ns as f64 / 1e9,
        );
        f.sample(
            "switchyard_request_duration_seconds_count",
            &[("backend", id)],
            buckets.count() as f64,
        );
    }

    let conn = |out: &mut String, name: &str, help: &str, get: &dyn Fn(usize) -> u64| {
        let mut f = Family::new(out, name, "counter", help);
        for (i, id) in ids.iter().enumerate() {
            f.sample(name, &[("backend", id)], get(i) as f64);
        }
    };
    let stat =
        |i: usize, pick: fn(&switchyard_upstream::ConnStats) -> &std::sync::atomic::AtomicU64| {
            shared
                .upstreams
                .get(i)
                .map_or(0, |u| pick(&u.stats).load(Ordering::Relaxed))
        };
    conn(
        &mut out,
        "switchyard_upstream_connections_opened_total",
        "TCP connections opened to the backend.",
        &|i| stat(i, |s| &s.opened),
    );
    conn(
        &mut out,
        "switchyard_upstream_connections_reused_total",
        "Requests sent on an already open (pooled) connection.",
        &|i| stat(i, |s| &s.reused),
    );
    conn(
        &mut out,
        "switchyard_upstream_connect_failures_total",
        "Connection attempts to the backend that failed.",
        &|i| stat(i, |s| &s.failed_connects),
    );

    let c = shared.router.counters();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    let name = "switchyard_policy_calls_total";
    Family::new(
        &mut out,
        name,
        "counter",
        "Calls into the policy on the request path, by function.",
    )
    .sample(name, &[("call", "choose")], load(&c.choose_calls))
    .sample(name, &[("call", "observe")], load(&c.observe_calls));

    let name = "switchyard_policy_call_duration_seconds";
    Family::new(
        &mut out,
        name,
        "summary",
        "Time spent in policy choose and observe calls (one call in 16 is timed).",
    )
    .sample(
        "switchyard_policy_call_duration_seconds_sum",
        &[],
        load(&c.call_ns) / 1e9,
    )
    .sample(
        "switchyard_policy_call_duration_seconds_count",
        &[],
        load(&c.timed_calls),
    );

    let name = "switchyard_policy_faults_total";
    let mut f = Family::new(
        &mut out,
        name,
        "counter",
        "Policy calls that faulted (the host routed those requests round-robin), by kind.",
    );
    for kind in FaultKind::ALL {
        f.sample(name, &[("kind", kind.as_str())], c.fault_count(kind) as f64);
    }

    for (name, help, value) in [
        (
            "switchyard_policy_fallback_routed_total",
            "Requests the host routed itself (policy faulted, rebuilding or disabled).",
            &c.fallback_routed,
        ),
        (
            "switchyard_policy_swaps_total",
            "Policies swapped in (file change, SIGHUP or the admin API).",
            &c.swaps,
        ),
        (
            "switchyard_policy_failed_swaps_total",
            "Policy reloads refused; the running policy stayed.",
            &c.failed_swaps,
        ),
        (
            "switchyard_policy_rebuilds_total",
            "Faulted policy instances replaced by a fresh one.",
            &c.rebuilds,
        ),
        (
            "switchyard_policy_breaker_trips_total",
            "Times the policy was disabled for faulting too often.",
            &c.breaker_trips,
        ),
    ] {
        Family::new(&mut out, name, "counter", help).sample(name, &[], load(value));
    }

    let status = shared.router.status();
    let file = status.file.display().to_string();
    let name = "switchyard_policy_info";
    Family::new(
        &mut out,
        name,
        "gauge",
        "The loaded policy: its name (the CSV routing_mode) and file; always 1.",
    )
    .sample(name, &[("name", &status.name), ("file", &file)], 1.0);
    let name = "switchyard_policy_generation";
    Family::new(
        &mut out,
        name,
        "gauge",
        "Generation of the loaded policy (1 at start, +1 per swap).",
    )
    .sample(name, &[], status.generation as f64);
    let name = "switchyard_policy_disabled";
    Family::new(
        &mut out,
        name,
        "gauge",
        "1 while the circuit breaker has the policy disabled.",
    )
    .sample(name, &[], if status.disabled { 1.0 } else { 0.0 });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_labels_are_escaped() {
        let mut out = String::new();
        Family::new(&mut out, "x_total", "counter", "help")
            .sample("x_total", &[("file", "a\"b\\c\nd")], 3.0)
            .sample("x_total", &[], 0.25)
            .sample("x_total", &[], f64::INFINITY);
        assert_eq!(
            out,
            "# HELP x_total help\n# TYPE x_total counter\n\
             x_total{file=\"a\\\"b\\\\c\\nd\"} 3\nx_total 0.25\nx_total +Inf\n"
        );
    }
}
