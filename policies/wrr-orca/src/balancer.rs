//! The whole policy without the WIT glue: per-backend weights, the scheduler rebuilt at
//! most once per update period, and the sequence counter both the scheduler and the
//! round-robin fallback walk.

use common::orca::LoadReport;

use crate::stride::StaticStride;
use crate::weights::{self, EndpointWeight, Settings};

#[derive(Debug, Clone, Default)]
pub struct Balancer {
    settings: Settings,
    /// Backend ids, to carry weights over a reconfiguration.
    ids: Vec<String>,
    endpoints: Vec<EndpointWeight>,
    /// `None`: fewer than two usable weights, so plain round-robin.
    scheduler: Option<StaticStride>,
    /// Shared by the scheduler and the fallback, so switching between them neither
    /// restarts the rotation nor favours backend 0. Starts at a seeded offset, as gRPC
    /// starts it at a random one, so that many proxies do not move in lockstep.
    sequence: u32,
    /// When the scheduler was last rebuilt; `None`: rebuild at the next pick.
    built_ns: Option<u64>,
    /// The latest time any call brought, for `scores` (which gets no time of its own).
    now_ns: u64,
}

impl Balancer {
    pub fn new(settings: Settings, ids: Vec<String>, seed: u64) -> Balancer {
        Balancer {
            settings,
            endpoints: vec![EndpointWeight::default(); ids.len()],
            ids,
            // Any 32 bits of the seed will do: it only picks where the rotation starts.
            sequence: (seed ^ (seed >> 32)) as u32,
            ..Balancer::default()
        }
    }

    /// New settings or a new backend list: backends keep their weights (and blackout) by
    /// id, new ones start unreported; the scheduler is rebuilt at the next pick.
    pub fn reconfigure(&mut self, settings: Settings, ids: Vec<String>, now_ns: u64) {
        self.endpoints = ids
            .iter()
            .map(|id| {
                self.ids
                    .iter()
                    .position(|old| old == id)
                    .and_then(|i| self.endpoints.get(i).copied())
                    .unwrap_or_default()
            })
            .collect();
        self.ids = ids;
        self.settings = settings;
        self.scheduler = None;
        self.built_ns = None;
        self.seen(now_ns);
    }

    /// A load report from `backend`, received at `now_ns`.
    pub fn report(&mut self, backend: usize, report: &LoadReport, now_ns: u64) {
        self.seen(now_ns);
        if let Some(e) = self.endpoints.get_mut(backend) {
            e.report(report, now_ns, &self.settings);
        }
    }

    /// The backend for the next request. 0 when there are none (the host never asks then).
    pub fn pick(&mut self, now_ns: u64) -> usize {
        self.seen(now_ns);
        let n = self.endpoints.len();
        if n == 0 {
            return 0;
        }
        // abs_diff: a clock that went backwards (a new host instance) also rebuilds.
        if self
            .built_ns
            .is_none_or(|t| now_ns.abs_diff(t) >= self.settings.update_ns)
        {
            self.scheduler = weights::effective(&self.endpoints, now_ns, &self.settings)
                .and_then(|w| StaticStride::new(&w));
            self.built_ns = Some(now_ns);
        }
        match &self.scheduler {
            Some(s) if s.len() == n => s.pick(&mut self.sequence),
            _ => {
                let i = self.sequence as usize % n;
                self.sequence = self.sequence.wrapping_add(1);
                i
            }
        }
    }

    /// Each backend's weight as the scheduler would use it now (the mean for those
    /// without one), or its own usable weight (0 if none) while round-robin is in force.
    pub fn weights(&self) -> Vec<f64> {
        let (now, s) = (self.now_ns, &self.settings);
        weights::effective(&self.endpoints, now, s).unwrap_or_else(|| {
            self.endpoints
                .iter()
                .map(|e| e.usable(now, s).unwrap_or(0.0))
                .collect()
        })
    }

    fn seen(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("B{i}")).collect()
    }

    fn load(qps: f64, utilization: f64) -> LoadReport {
        LoadReport {
            rps_fractional: Some(qps),
            application_utilization: Some(utilization),
            ..LoadReport::default()
        }
    }

    /// Picks one request every `step_ns` over [from, to), every backend reporting
    /// `reports[i]` after each pick; returns the picks per backend.
    fn drive(
        b: &mut Balancer,
        reports: &[LoadReport],
        from_ns: u64,
        to_ns: u64,
        step_ns: u64,
    ) -> Vec<usize> {
        let mut counts = vec![0; reports.len()];
        let mut t = from_ns;
        while t < to_ns {
            if let Some(c) = counts.get_mut(b.pick(t)) {
                *c += 1;
            }
            for (i, r) in reports.iter().enumerate() {
                b.report(i, r, t);
            }
            t += step_ns;
        }
        counts
    }

    fn share(counts: &[usize], i: usize) -> f64 {
        counts[i] as f64 / counts.iter().sum::<usize>() as f64
    }

    #[test]
    fn round_robin_until_the_blackout_ends_then_weighted() {
        let mut b = Balancer::new(Settings::default(), ids(2), 1);
        // Backend 1 reports a third of backend 0's utilisation: three times its weight.
        let reports = [load(100.0, 0.9), load(100.0, 0.3)];
        let before = drive(&mut b, &reports, 0, 10 * S, MS);
        assert_eq!(before, [5000, 5000], "blackout: plain round-robin");
        let after = drive(&mut b, &reports, 11 * S, 21 * S, MS);
        assert!((share(&after, 1) - 0.75).abs() < 0.01, "{after:?}");
        assert_eq!(b.weights().len(), 2);
        assert!((b.weights()[1] / b.weights()[0] - 3.0).abs() < 1e-9);
    }

    #[test]
    fn a_new_backend_is_not_weighted_before_its_blackout() {
        let mut b = Balancer::new(Settings::default(), ids(2), 1);
        let two = [load(100.0, 0.5), load(100.0, 0.5)];
        drive(&mut b, &two, 0, 20 * S, 10 * MS);
        // Backend 2 joins at 20 s reporting ten times the weight of the others.
        b.reconfigure(Settings::default(), ids(3), 20 * S);
        let three = [load(100.0, 0.5), load(100.0, 0.5), load(100.0, 0.05)];
        let blackout = drive(&mut b, &three, 20 * S, 30 * S - 1, MS);
        assert!(
            (share(&blackout, 2) - 1.0 / 3.0).abs() < 0.01,
            "{blackout:?}"
        );
        let weighted = drive(&mut b, &three, 31 * S, 40 * S, MS);
        assert!(share(&weighted, 2) > 0.8, "{weighted:?}");
    }

    #[test]
    fn reports_stop_and_the_weights_expire_to_round_robin() {
        let s = Settings {
            blackout_ns: 0,
            expiration_ns: 5 * S,
            ..Settings::default()
        };
        let mut b = Balancer::new(s, ids(2), 1);
        let reports = [load(100.0, 0.8), load(100.0, 0.2)];
        let weighted = drive(&mut b, &reports, 0, 10 * S, MS);
        assert!(share(&weighted, 1) > 0.75, "{weighted:?}");
        // No more reports after 10 s: still weighted at 14 s, round-robin from 15 s.
        let mut late = [0; 2];
        for t in (14 * S..15 * S - MS).step_by(MS as usize) {
            late[b.pick(t)] += 1;
        }
        assert!(share(&late, 1) > 0.75, "{late:?}");
        late = [0; 2];
        for t in (16 * S..20 * S).step_by(MS as usize) {
            late[b.pick(t)] += 1;
        }
        assert_eq!(late, [2000, 2000], "expired");
        assert_eq!(b.weights(), [0.0, 0.0]);
    }

    #[test]
    fn the_scheduler_is_rebuilt_only_once_per_update_period() {
        let s = Settings {
            blackout_ns: 0,
            update_ns: 2 * S,
            ..Settings::default()
        };
        let mut b = Balancer::new(s, ids(2), 1);
        b.pick(0); // Built with no weights: round-robin until 2 s.
        b.report(0, &load(100.0, 0.9), 0);
        b.report(1, &load(100.0, 0.1), 0);
        let mut counts = [0; 2];
        for t in (0..2 * S - MS).step_by(MS as usize) {
            counts[b.pick(t)] += 1;
        }
        assert_eq!(counts, [1000, 999]);
        counts = [0; 2];
        for t in (2 * S..3 * S).step_by(MS as usize) {
            counts[b.pick(t)] += 1;
        }
        assert!(share(&counts, 1) > 0.85, "{counts:?}");
    }

    #[test]
    fn reconfiguring_keeps_weights_by_id_and_odd_input_is_harmless() {
        let s = Settings {
            blackout_ns: 0,
            ..Settings::default()
        };
        let mut b = Balancer::new(s, ids(3), 7);
        for i in 0..3 {
            b.report(i, &load(100.0, 0.1 * (i + 1) as f64), 0);
        }
        b.report(99, &load(1.0, 1.0), 0); // out of range: ignored
        let before = b.weights();
        let reordered: Vec<String> = ["B2", "X", "B0"].map(String::from).to_vec();
        b.reconfigure(s, reordered, S);
        let after = b.weights();
        assert_eq!(after[0], before[2]);
        assert_eq!(after[2], before[0]);
        assert_eq!(after[1], (before[0] + before[2]) / 2.0, "new: the mean");
        for t in 0..1000 {
            assert!(b.pick(t * MS) < 3);
        }
        b.reconfigure(s, Vec::new(), 2 * S);
        assert_eq!(b.pick(2 * S), 0);
        assert!(b.weights().is_empty());
    }
}
