//! Markdown tables in the study's layout. Fixed decimals everywhere, so the same numbers
//! always print the same bytes, and tables from different tools can be diffed.
use std::fmt::Write;

use super::RunStats;

/// One row per run: configuration, requests, req/s, mean, p50, p95, p99, max, errors.
pub fn render_summary(runs: &[RunStats]) -> String {
    let mut out = String::from(
        "| configuration | requests | req/s | mean ms | p50 ms | p95 ms | p99 ms | max ms | errors |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in runs {
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} ({:.2}%) |",
            escape_cell(&r.label),
            r.requests,
            r.req_per_s,
            r.mean_ms,
            r.p50_ms,
            r.p95_ms,
            r.p99_ms,
            r.max_ms,
            r.errors,
            r.error_rate * 100.0,
        );
    }
    out
}

/// One row per run, one column per backend (every backend of every run, in first-seen
/// order), values in percent of that run's requests.
pub fn render_shares(runs: &[RunStats]) -> String {
    let mut columns: Vec<&str> = Vec::new();
    for b in runs.iter().flat_map(|r| &r.backends) {
        if !columns.contains(&b.backend.as_str()) {
            columns.push(&b.backend);
        }
    }
    let mut out = String::from("| configuration |");
    for c in &columns {
        let _ = write!(out, " {} |", escape_cell(c));
    }
    out.push_str("\n|---|");
    for _ in &columns {
        out.push_str("---:|");
    }
    out.push('\n');
    for r in runs {
        let _ = write!(out, "| {} |", escape_cell(&r.label));
        for c in &columns {
            let _ = write!(out, " {:.2}% |", r.share(c) * 100.0);
        }
        out.push('\n');
    }
    out
}

/// One row per backend of a single run: where the requests went and how each backend did.
pub fn render_backends(run: &RunStats) -> String {
    let mut out = String::from(
        "| backend | requests | share | mean ms | p95 ms | errors |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    for b in &run.backends {
        let _ = writeln!(
            out,
            "| {} | {} | {:.2}% | {:.2} | {:.2} | {} |",
            escape_cell(&b.backend),
            b.requests,
            b.share * 100.0,
            b.mean_ms,
            b.p95_ms,
            b.errors,
        );
    }
    out
}

/// Text for a markdown table cell. A label can come from a file name or a log; a `|` in it
/// would split the cell.
pub fn escape_cell(text: &str) -> String {
    text.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Record;

    fn run(label: &str, backends: &[(&str, usize)]) -> RunStats {
        let mut records = Vec::new();
        for (b, n) in backends {
            for i in 0..*n {
                records.push(Record {
                    t_ms: 1000.0 * (i + 1) as f64,
                    backend: b.to_string(),
                    latency_ms: 10.0 * (i + 1) as f64,
                    status: 200,
                    routing_mode: label.into(),
                });
            }
        }
        RunStats::compute(label, &records, &[], Some(10.0))
    }

    #[test]
    fn tables_have_fixed_layout() {
        let a = run("round-robin", &[("A", 1), ("B", 1)]);
        let b = run("ewma|x", &[("B", 3), ("C", 1)]);
        assert_eq!(
            render_summary(std::slice::from_ref(&a)),
            "| configuration | requests | req/s | mean ms | p50 ms | p95 ms | p99 ms | max ms | errors |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|\n\
             | round-robin | 2 | 0.2 | 10.00 | 10.00 | 10.00 | 10.00 | 10.00 | 0 (0.00%) |\n"
        );
        assert_eq!(
            render_shares(&[a.clone(), b]),
            "| configuration | A | B | C |\n|---|---:|---:|---:|\n\
             | round-robin | 50.00% | 50.00% | 0.00% |\n\
             | ewma\\|x | 0.00% | 75.00% | 25.00% |\n"
        );
        assert!(render_backends(&a).contains("| A | 1 | 50.00% | 10.00 | 10.00 | 0 |\n"));
    }
}
