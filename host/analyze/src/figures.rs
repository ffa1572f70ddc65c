//! The study's Figures 7-10 from our runs: req/s, mean and p95 latency by configuration
//! (policies along the x axis, one bar per upstream mode, and the study's published
//! figures as grey bars beside ours), and the share of requests per backend
//! (one panel per upstream mode); and [`write_grouped`], plain grouped bars for others
//! (the simulator's policy matrix).
use std::path::{Path, PathBuf};

use plotters::style::RGBColor;

use super::chart::{self, Figure, Panel, Series};
use super::{study, Run};

/// A written figure: file stem, what it shows, and its files.
#[derive(Debug, Clone)]
pub struct Written {
    pub stem: &'static str,
    pub title: String,
    pub files: Vec<PathBuf>,
}

const MODE_COLORS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];
/// The study's own bars: greys, darker for the second mode.
const STUDY_COLORS: [RGBColor; 2] = [RGBColor(150, 150, 150), RGBColor(90, 90, 90)];
const BACKEND_COLORS: [RGBColor; 8] = [
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Writes `fig7-req-per-s`, `fig8-mean`, `fig9-p95` and `fig10-shares` (SVG and PNG) into
/// `out`. `runs` must be in study order (as [`super::load_runs`] returns them).
pub fn write_all(runs: &[Run], out: &Path) -> anyhow::Result<Vec<Written>> {
    type Metric = (
        &'static str,
        &'static str,
        &'static str,
        usize,
        fn(&Run) -> f64,
        fn(&study::Published) -> f64,
    );
    let metrics: [Metric; 3] = [
        (
            "fig7-req-per-s",
            "Figure 7: throughput by configuration",
            "requests per second",
            1,
            |r| r.stats.req_per_s,
            |p| p.req_per_s,
        ),
        (
            "fig8-mean",
            "Figure 8: mean latency by configuration",
            "mean latency (ms)",
            1,
            |r| r.stats.mean_ms,
            |p| p.mean_ms,
        ),
        (
            "fig9-p95",
            "Figure 9: p95 latency by configuration",
            "p95 latency (ms)",
            0,
            |r| r.stats.p95_ms,
            |p| p.p95_ms,
        ),
    ];
    let mut written = Vec::new();
    for (stem, title, y_desc, decimals, ours, theirs) in metrics {
        let panel = by_configuration(runs, title, y_desc, decimals, ours, theirs);
        let figure = Figure {
            panels: vec![panel],
            width: 1000,
            panel_height: 560,
        };
        let files = chart::write(&figure, &out.join(stem))?;
        written.push(Written {
            stem,
            title: title.to_string(),
            files,
        });
    }
    let title = "Figure 10: share of requests per backend";
    let figure = Figure {
        panels: shares(runs, title),
        width: 1000,
        panel_height: 420,
    };
    let files = chart::write(&figure, &out.join("fig10-shares"))?;
    written.push(Written {
        stem: "fig10-shares",
        title: title.to_string(),
        files,
    });
    Ok(written)
}

/// Distinct values in first-seen order (runs come in study order, so these do too).
fn distinct<'a>(values: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        if !out.iter().any(|o| o == v) {
            out.push(v.to_string());
        }
    }
    out
}

fn by_configuration(
    runs: &[Run],
    title: &str,
    y_desc: &str,
    decimals: usize,
    ours: fn(&Run) -> f64,
    theirs: fn(&study::Published) -> f64,
) -> Panel {
    let policies = distinct(runs.iter().map(|r| r.policy.as_str()));
    let modes = distinct(runs.iter().map(|r| r.config.mode.as_str()));
    let mut series: Vec<Series> = modes
        .iter()
        .enumerate()
        .map(|(k, mode)| Series {
            name: format!("{mode} (ours)"),
            color: MODE_COLORS[k % MODE_COLORS.len()],
            values: policies
                .iter()
                .map(|p| {
                    runs.iter()
                        .find(|r| &r.config.mode == mode && &r.policy == p)
                        .map(ours)
                })
                .collect(),
        })
        .collect();
    // The study's bars, for the modes we ran that it ran too.
    for (k, mode) in modes.iter().enumerate() {
        let published: Vec<Option<f64>> = policies
            .iter()
            .map(|p| {
                runs.iter()
                    .find(|r| &r.policy == p)
                    .and_then(|r| study::published(mode, &r.config.policy))
                    .map(theirs)
            })
            .collect();
        if published.iter().any(Option::is_some) {
            series.push(Series {
                name: format!("{mode} (study, published)"),
                color: STUDY_COLORS[k % STUDY_COLORS.len()],
                values: published,
            });
        }
    }
    Panel {
        title: title.to_string(),
        y_desc: y_desc.to_string(),
        groups: policies,
        series,
        decimals,
        unit: "",
        y_cap: None,
    }
}

fn shares(runs: &[Run], title: &str) -> Vec<Panel> {
    let modes = distinct(runs.iter().map(|r| r.config.mode.as_str()));
    let backends = distinct(
        runs.iter()
            .flat_map(|r| r.stats.backends.iter().map(|b| b.backend.as_str())),
    );
    modes
        .iter()
        .map(|mode| {
            let these: Vec<&Run> = runs.iter().filter(|r| &r.config.mode == mode).collect();
            Panel {
                title: format!("{title}: {mode}"),
                y_desc: "share of requests".into(),
                groups: these.iter().map(|r| r.policy.clone()).collect(),
                series: backends
                    .iter()
                    .enumerate()
                    .map(|(k, b)| Series {
                        name: b.clone(),
                        color: BACKEND_COLORS[k % BACKEND_COLORS.len()],
                        values: these
                            .iter()
                            .map(|r| Some(r.stats.share(b) * 100.0))
                            .collect(),
                    })
                    .collect(),
                decimals: 1,
                unit: "%",
                y_cap: Some(100.0),
            }
        })
        .collect()
}

/// Twelve distinguishable colours (matplotlib's tab10, then two darker ones).
const TAB12: [RGBColor; 12] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(0, 0, 128),
    RGBColor(128, 0, 0),
];

/// One panel of [`write_grouped`]: values per series (e.g. a policy) and group (e.g. a
/// scenario), without the plotting types, so callers need not depend on plotters.
#[derive(Debug, Clone)]
pub struct GroupedPanel {
    pub title: String,
    pub y_desc: String,
    pub groups: Vec<String>,
    /// (series name, one value per group).
    pub series: Vec<(String, Vec<Option<f64>>)>,
    pub decimals: usize,
}

/// Grouped bar charts, one panel each, stacked, as `stem.svg` and `stem.png` (the
/// simulator's policy matrix uses it).
pub fn write_grouped(panels: &[GroupedPanel], stem: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let figure = Figure {
        panels: panels
            .iter()
            .map(|p| Panel {
                title: p.title.clone(),
                y_desc: p.y_desc.clone(),
                groups: p.groups.clone(),
                series: (p.series.iter().enumerate())
                    .map(|(k, (name, values))| Series {
                        name: name.clone(),
                        color: TAB12[k % TAB12.len()],
                        values: values.clone(),
                    })
                    .collect(),
                decimals: p.decimals,
                unit: "",
                y_cap: None,
            })
            .collect(),
        width: 1400,
        panel_height: 520,
    };
    chart::write(&figure, stem)
}
