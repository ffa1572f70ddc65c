//! A58's per-backend weight bookkeeping: which reported weight may be used at a moment.
//!
//! gRPC C-core (`weighted_round_robin.cc`, `EndpointWeight`) keeps, per endpoint, the
//! newest non-zero weight, when it arrived (`last_update`) and since when reports have
//! been arriving without a gap (`non_empty_since`). At a given `now` the weight is unusable
//! (0 in gRPC) when it is older than the expiration period, or when reports have not yet
//! been arriving for the blackout period: a backend that just started, or came back, is
//! briefly busy with little load and would report a flattering weight.
//!
//! One difference from gRPC: gRPC restarts the blackout when a *read* finds the weight
//! expired (every update period), we restart it when a *report* arrives after the expiry.
//! The two agree except for a report landing in the ≤ 1 s between expiry and gRPC's next
//! read, which gRPC would then let through without a blackout.

use common::orca::{self, LoadReport};

const MS: u64 = 1_000_000;

/// The policy's settings, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// A weight is ignored until reports have arrived for this long (A58: 10 s).
    pub blackout_ns: u64,
    /// A weight this old is ignored, and the next report starts a new blackout (3 min).
    pub expiration_ns: u64,
    /// Weights are read and the scheduler rebuilt at most this often (1 s).
    pub update_ns: u64,
    /// A58's `error_utilization_penalty` (1.0).
    pub error_penalty: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            blackout_ns: 10_000 * MS,
            expiration_ns: 180_000 * MS,
            update_ns: 1_000 * MS,
            error_penalty: orca::DEFAULT_ERROR_UTILIZATION_PENALTY,
        }
    }
}

/// The `--policy-arg` names this policy accepts.
pub const KEYS: [&str; 4] = ["blackout-ms", "expiration-ms", "update-ms", "error-penalty"];

impl Settings {
    /// Reads `--policy-arg` pairs; every error names the key, the value and the range.
    ///
    /// gRPC raises an update period below 100 ms to 100 ms; here it is refused instead, so
    /// the operator sees the setting that is in force.
    pub fn from_config(config: &[(String, String)]) -> Result<Settings, String> {
        common::reject_unknown(config, &KEYS)?;
        let d = Settings::default();
        let ms = |key: &str, default_ns: u64, range: std::ops::RangeInclusive<usize>| {
            let default_ms = usize::try_from(default_ns / MS).unwrap_or(usize::MAX);
            common::config_usize(config, key, default_ms, range).map(|v| v as u64 * MS)
        };
        Ok(Settings {
            blackout_ns: ms("blackout-ms", d.blackout_ns, 0..=3_600_000)?,
            expiration_ns: ms("expiration-ms", d.expiration_ns, 1..=86_400_000)?,
            update_ns: ms("update-ms", d.update_ns, 100..=3_600_000)?,
            error_penalty: common::config_f64(
                config,
                "error-penalty",
                d.error_penalty,
                0.0..=100.0,
            )?,
        })
    }
}

/// One backend's newest usable report.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EndpointWeight {
    /// A58's weight from the newest report that gave one.
    weight: f64,
    last_update_ns: u64,
    /// `None` before the first report, so the first one starts the blackout.
    non_empty_since_ns: Option<u64>,
}

impl EndpointWeight {
    /// Takes one report received at `now_ns`. A report without a weight (no qps or no
    /// utilisation) changes nothing, as in A58: it neither refreshes nor resets the weight.
    pub fn report(&mut self, report: &LoadReport, now_ns: u64, s: &Settings) {
        if let Some(w) = orca::weight(report, s.error_penalty) {
            self.update(w, now_ns, s);
        }
    }

    /// Stores a weight (finite and positive) received at `now_ns`.
    pub fn update(&mut self, weight: f64, now_ns: u64, s: &Settings) {
        if !(weight.is_finite() && weight > 0.0) {
            return;
        }
        let gap = now_ns.saturating_sub(self.last_update_ns);
        match self.non_empty_since_ns {
            Some(_) if gap < s.expiration_ns => {
                // Observations may arrive slightly out of order: never move time back.
                self.last_update_ns = self.last_update_ns.max(now_ns);
            }
            _ => {
                self.non_empty_since_ns = Some(now_ns);
                self.last_update_ns = now_ns;
            }
        }
        self.weight = weight;
    }

    /// The weight the scheduler may use at `now_ns`, or `None` while blacked out, expired
    /// or never reported.
    pub fn usable(&self, now_ns: u64, s: &Settings) -> Option<f64> {
        let since = self.non_empty_since_ns?;
        if now_ns.saturating_sub(self.last_update_ns) >= s.expiration_ns {
            return None;
        }
        if now_ns.saturating_sub(since) < s.blackout_ns {
            return None;
        }
        Some(self.weight)
    }
}

/// The weights a scheduler is built from at `now_ns`: each backend's usable weight, and the
/// mean of the usable ones for the others (A58: a backend without load information is
/// picked as an average one). `None` with fewer than two usable weights: not enough to
/// weigh backends against each other, so the caller round-robins.
pub fn effective(endpoints: &[EndpointWeight], now_ns: u64, s: &Settings) -> Option<Vec<f64>> {
    let usable: Vec<Option<f64>> = endpoints.iter().map(|e| e.usable(now_ns, s)).collect();
    let known: Vec<f64> = usable.iter().flatten().copied().collect();
    if known.len() < 2 {
        return None;
    }
    let mean = known.iter().sum::<f64>() / known.len() as f64;
    Some(usable.iter().map(|w| w.unwrap_or(mean)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn cfg(p: &[(&str, &str)]) -> Vec<(String, String)> {
        common::pairs(p)
    }

    fn report(qps: f64, utilization: f64, eps: f64) -> LoadReport {
        LoadReport {
            rps_fractional: Some(qps),
            application_utilization: Some(utilization),
            eps: Some(eps),
            ..LoadReport::default()
        }
    }

    #[test]
    fn settings_default_to_a58_and_validate() {
        let s = Settings::from_config(&[]).unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.blackout_ns, 10 * S);
        assert_eq!(s.expiration_ns, 180 * S);
        assert_eq!(s.update_ns, S);
        assert_eq!(s.error_penalty, 1.0);
        let s = Settings::from_config(&cfg(&[
            ("blackout-ms", "0"),
            ("expiration-ms", "5000"),
            ("update-ms", "250"),
            ("error-penalty", "2.5"),
        ]))
        .unwrap();
        assert_eq!(
            (s.blackout_ns, s.expiration_ns, s.update_ns, s.error_penalty),
            (0, 5 * S, S / 4, 2.5)
        );
        for (k, v) in [
            ("update-ms", "50"),
            ("blackout-ms", "-1"),
            ("blackout-ms", "1.5"),
            ("expiration-ms", "0"),
            ("error-penalty", "-1"),
            ("error-penalty", "NaN"),
        ] {
            let e = Settings::from_config(&cfg(&[(k, v)])).unwrap_err();
            assert!(e.contains(&format!("{k}={v} is invalid")), "{e}");
        }
        let e = Settings::from_config(&cfg(&[("blackout", "1")])).unwrap_err();
        assert!(e.contains("blackout-ms, expiration-ms"), "{e}");
    }

    #[test]
    fn weight_is_a58s_formula_of_the_newest_report() {
        let s = Settings {
            error_penalty: 2.0,
            ..Settings::default()
        };
        let mut e = EndpointWeight::default();
        // 100 qps, utilisation 0.5, 10 eps, penalty 2: 100 / (0.5 + 10/100 · 2).
        e.report(&report(100.0, 0.5, 10.0), 0, &s);
        let w = e.usable(10 * S, &s).unwrap();
        assert!((w - 100.0 / 0.7).abs() < 1e-9, "{w}");
        // The newest report wins; one without a weight changes nothing.
        e.report(&report(300.0, 0.5, 0.0), 11 * S, &s);
        e.report(&report(0.0, 0.5, 0.0), 12 * S, &s);
        e.report(&LoadReport::default(), 12 * S, &s);
        assert_eq!(e.usable(12 * S, &s), Some(600.0));
    }

    #[test]
    fn a_weight_is_ignored_until_the_blackout_has_elapsed() {
        let s = Settings::default();
        let mut e = EndpointWeight::default();
        assert_eq!(e.usable(0, &s), None, "never reported");
        for t in 0..=10 {
            e.update(50.0, 5 * S + t * S, &s);
        }
        assert_eq!(e.usable(15 * S - 1, &s), None, "9.999… s of reports");
        assert_eq!(e.usable(15 * S, &s), Some(50.0), "10 s of reports");
        let open = Settings {
            blackout_ns: 0,
            ..s
        };
        let mut e = EndpointWeight::default();
        e.update(50.0, 7 * S, &open);
        assert_eq!(e.usable(7 * S, &open), Some(50.0), "no blackout");
    }

    #[test]
    fn a_weight_expires_and_the_next_report_starts_a_new_blackout() {
        let s = Settings::default();
        let mut e = EndpointWeight::default();
        e.update(50.0, 0, &s);
        e.update(60.0, 20 * S, &s);
        assert_eq!(e.usable(20 * S + 180 * S - 1, &s), Some(60.0));
        assert_eq!(e.usable(200 * S, &s), None, "3 min after the last report");
        e.update(70.0, 300 * S, &s);
        assert_eq!(e.usable(305 * S, &s), None, "blacked out again");
        assert_eq!(e.usable(310 * S, &s), Some(70.0));
        // Reports that keep coming never expire, and an out-of-order one does not age it.
        e.update(80.0, 400 * S, &s);
        e.update(80.0, 399 * S, &s);
        assert_eq!(e.usable(579 * S, &s), Some(80.0));
    }

    #[test]
    fn unusable_backends_get_the_mean_and_one_weight_is_not_enough() {
        let s = Settings {
            blackout_ns: 0,
            ..Settings::default()
        };
        let mut e = vec![EndpointWeight::default(); 3];
        assert_eq!(effective(&e, 0, &s), None);
        e[0].update(100.0, 0, &s);
        assert_eq!(effective(&e, 0, &s), None, "one usable weight");
        e[2].update(300.0, 0, &s);
        assert_eq!(effective(&e, 0, &s), Some(vec![100.0, 200.0, 300.0]));
    }

    #[test]
    fn weights_follow_reported_utilisation() {
        let s = Settings {
            blackout_ns: 0,
            ..Settings::default()
        };
        let (mut a, mut b) = (EndpointWeight::default(), EndpointWeight::default());
        a.report(&report(400.0, 0.4, 0.0), 0, &s);
        b.report(&report(400.0, 0.8, 0.0), 0, &s);
        let (wa, wb) = (a.usable(0, &s).unwrap(), b.usable(0, &s).unwrap());
        assert!((wa / wb - 2.0).abs() < 1e-9, "{wa} {wb}");
        // Without application_utilization, cpu_utilization is used.
        let cpu = LoadReport {
            rps_fractional: Some(400.0),
            cpu_utilization: Some(0.8),
            ..LoadReport::default()
        };
        let mut c = EndpointWeight::default();
        c.report(&cpu, 0, &s);
        assert_eq!(c.usable(0, &s), Some(wb));
    }
}
