//! The plan: what share of requests each backend should get so that the mean latency is
//! as low as it can be while the fraction of requests over the target stays within the
//! budget.
//!
//! With backend `i`'s mean `m_i` and fraction over target `o_i`, the shares `x_i` solve
//!
//! ```text
//! minimise  sum x_i m_i   subject to   sum x_i o_i <= budget,   sum x_i = 1,   x_i >= 0
//! ```
//!
//! a linear programme with two constraints, so an optimum mixes at most two backends:
//! two neighbouring vertices of the lower convex hull of the points `(o_i, m_i)`. Solving
//! it is a sort and a hull walk, O(n log n), not a general LP solver.
//!
//! Backends whose points are nearly equal (within `tie` of the chosen vertex) share that
//! vertex's mass, as a group: without this, a fleet of identical backends would all be
//! planned onto whichever one sorted first. Within a group `choose` takes the less busy of
//! two members, so their queues stay even and so do their numbers.

/// One measured backend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub backend: usize,
    /// Fraction of its requests over the target, 0..=1.
    pub over: f64,
    /// Mean latency (any unit).
    pub mean: f64,
}

/// A plan: shares per backend index (summing to 1), and the groups of near-equal
/// backends that share one vertex's mass (only groups of two or more).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub shares: Vec<f64>,
    pub groups: Vec<Vec<usize>>,
}

/// The plan for `points` under `budget`. Backends not in `points` get 0. An empty
/// `points` gives an empty plan. When no mix meets the budget, the plan minimises the
/// fraction over target instead (then the mean).
pub fn solve(points: &[Point], budget: f64, tie: f64, n: usize) -> Plan {
    let plan = solve_with(points, budget, tie, n);
    // Sharing a vertex with near-equal neighbours can break the budget the mix was solved
    // for (a neighbour a little more over than the vertex); then the plan without ties.
    let strict = || solve_with(points, budget, 0.0, n);
    if tie > 0.0 && tail(&plan, points) > budget + 1e-9 {
        let s = strict();
        if tail(&s, points) <= budget + 1e-9 {
            return s;
        }
    }
    plan
}

/// The fraction of requests over target that `plan` expects.
fn tail(plan: &Plan, points: &[Point]) -> f64 {
    points
        .iter()
        .map(|p| plan.shares.get(p.backend).copied().unwrap_or(0.0) * p.over)
        .sum()
}

fn solve_with(points: &[Point], budget: f64, tie: f64, n: usize) -> Plan {
    let mut plan = Plan {
        shares: vec![0.0; n],
        groups: Vec::new(),
    };
    let hull = lower_hull(points);
    let Some(&first) = hull.first() else {
        return plan;
    };
    // Past the lowest mean the hull only gets worse on both counts.
    let best = hull
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.mean.total_cmp(&b.1.mean))
        .map_or(0, |(i, _)| i);
    let vertices: Vec<(Point, f64)> = if hull[best].over <= budget {
        vec![(hull[best], 1.0)]
    } else if first.over > budget {
        vec![(first, 1.0)]
    } else {
        // A hull segment [p, q] with p.over <= budget < q.over, 0 <= i < best.
        let i = (0..best).rfind(|&i| hull[i].over <= budget).unwrap_or(0);
        let (p, q) = (hull[i], hull[i + 1]);
        let xq = ((budget - p.over) / (q.over - p.over)).clamp(0.0, 1.0);
        vec![(p, 1.0 - xq), (q, xq)]
    };
    for (v, mass) in vertices {
        spread(&mut plan, points, v, mass, tie);
    }
    plan
}

/// Gives `mass` evenly to every backend whose point is within `tie` of `v` (relative on
/// the mean, absolute on the fraction over target), `v`'s own backend included.
fn spread(plan: &mut Plan, points: &[Point], v: Point, mass: f64, tie: f64) {
    let near =
        |p: &Point| (p.over - v.over).abs() <= tie && (p.mean - v.mean).abs() <= tie * v.mean.abs();
    let members: Vec<usize> = points
        .iter()
        .filter(|p| near(p) && p.backend < plan.shares.len())
        .map(|p| p.backend)
        .collect();
    for &b in &members {
        plan.shares[b] += mass / members.len() as f64;
    }
    if members.len() > 1 {
        plan.groups.push(members);
    }
}

/// The lower convex hull of the points, by increasing `over` (Andrew's monotone chain).
/// Of points with the same `over` only the lowest mean can be on it.
fn lower_hull(points: &[Point]) -> Vec<Point> {
    let mut sorted: Vec<Point> = points
        .iter()
        .copied()
        .filter(|p| p.over.is_finite() && p.mean.is_finite())
        .collect();
    sorted.sort_by(|a, b| a.over.total_cmp(&b.over).then(a.mean.total_cmp(&b.mean)));
    sorted.dedup_by(|later, kept| later.over == kept.over);
    let mut hull: Vec<Point> = Vec::with_capacity(sorted.len());
    for p in sorted {
        while let [.., a, b] = hull[..] {
            // Drop b when it lies on or above the segment a -> p.
            let cross =
                (b.over - a.over) * (p.mean - a.mean) - (b.mean - a.mean) * (p.over - a.over);
            if cross <= 0.0 {
                hull.pop();
            } else {
                break;
            }
        }
        hull.push(p);
    }
    hull
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(backend: usize, over: f64, mean: f64) -> Point {
        Point {
            backend,
            over,
            mean,
        }
    }

    /// The study: A (a third of its requests take 400 ms, mean 143.3), B (200, never
    /// over), C (250, always over). The 5 % budget allows A 15 %, the rest to B.
    #[test]
    fn the_study_mixes_a_and_b_up_to_the_budget_and_never_c() {
        let pts = [
            pt(0, 1.0 / 3.0, 143.3),
            pt(1, 0.0, 200.0),
            pt(2, 1.0, 250.0),
        ];
        let s = solve(&pts, 0.05, 0.0, 3).shares;
        assert!((s[0] - 0.15).abs() < 1e-9, "{s:?}");
        assert!((s[1] - 0.85).abs() < 1e-9, "{s:?}");
        assert_eq!(s[2], 0.0);
        let tail: f64 = pts.iter().map(|p| s[p.backend] * p.over).sum();
        assert!((tail - 0.05).abs() < 1e-9);
    }

    #[test]
    fn a_loose_budget_takes_the_fastest_alone() {
        let pts = [pt(0, 1.0 / 3.0, 143.3), pt(1, 0.0, 200.0)];
        assert_eq!(solve(&pts, 0.5, 0.0, 2).shares, vec![1.0, 0.0]);
    }

    #[test]
    fn an_impossible_budget_minimises_the_tail() {
        let pts = [pt(0, 0.5, 10.0), pt(1, 0.2, 300.0), pt(2, 0.2, 100.0)];
        assert_eq!(solve(&pts, 0.01, 0.0, 3).shares, vec![0.0, 0.0, 1.0]);
    }

    #[test]
    fn points_above_the_hull_get_nothing() {
        // D is dominated by a mix of A and B: it lies above the segment between them.
        let pts = [pt(0, 0.0, 200.0), pt(1, 0.2, 100.0), pt(2, 0.1, 190.0)];
        let s = solve(&pts, 0.1, 0.0, 3).shares;
        assert_eq!(s[2], 0.0, "{s:?}");
        assert!(
            (s[0] - 0.5).abs() < 1e-9 && (s[1] - 0.5).abs() < 1e-9,
            "{s:?}"
        );
    }

    /// D is 4.5 % over, within 5 % of B, but sharing B's mass with it would break the
    /// 4.25 % budget the mix with A was solved for: the plan drops the tie.
    #[test]
    fn a_neighbour_over_the_budget_does_not_share_a_vertex() {
        let pts = [
            pt(0, 1.0 / 3.0, 143.3),
            pt(1, 0.0, 200.0),
            pt(2, 0.045, 201.0),
        ];
        let s = solve(&pts, 0.0425, 0.05, 3).shares;
        let tail: f64 = pts.iter().map(|p| s[p.backend] * p.over).sum();
        assert!(tail <= 0.0425 + 1e-9, "{s:?}: tail {tail}");
    }

    #[test]
    fn identical_backends_share_their_vertex() {
        let pts: Vec<Point> = (0..10)
            .map(|i| pt(i, 0.0, 20.0 + i as f64 * 0.01))
            .collect();
        let plan = solve(&pts, 0.05, 0.05, 10);
        assert!(
            plan.shares.iter().all(|&x| (x - 0.1).abs() < 1e-9),
            "{plan:?}"
        );
        assert_eq!(plan.groups, vec![(0..10).collect::<Vec<_>>()]);
        let alone = solve(&pts, 0.05, 0.0, 10);
        assert_eq!((alone.shares[0], alone.groups.len()), (1.0, 0));
    }

    #[test]
    fn nothing_measured_plans_nothing_and_bad_numbers_are_ignored() {
        assert_eq!(solve(&[], 0.05, 0.0, 2).shares, vec![0.0, 0.0]);
        let pts = [pt(0, f64::NAN, 1.0), pt(1, 0.0, 5.0)];
        assert_eq!(solve(&pts, 0.05, 0.0, 2).shares, vec![0.0, 1.0]);
    }
}
