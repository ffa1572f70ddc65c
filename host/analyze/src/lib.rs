//! `switchyard analyze`: the study's analysis of its wrk runs, as one command.
//!
//! The study ran wrk against each configuration (upstream mode x policy) and used pandas
//! on the request logs for Tables 1-3 and bar charts (Figures 7-10). This reads the same
//! logs (ours or the study's five-column ones), computes the same figures with the shared
//! [`switchyard_report`] arithmetic (plus p50/p99, max and error rate), cross-checks them
//! against wrk's client-side summary, and writes the charts and a `REPORT.md` that places
//! our numbers beside the study's published ones.
//!
//! - [`discover`]: which CSV logs (and wrk outputs) the arguments name.
//! - [`load`] and [`timestamp`]: reading a log; bad input is reported as `FILE:LINE`.
//! - [`wrk`]: parsing wrk's summary.
//! - [`config`]: which configuration a log belongs to, and the study's order.
//! - [`markdown`]: the tables (stdout) and REPORT.md; [`study`]: the published numbers.
//! - [`chart`] and [`figures`]: the SVG/PNG bar charts.
pub mod chart;
pub mod config;
pub mod discover;
pub mod figures;
pub mod load;
pub mod markdown;
pub mod study;
pub mod timestamp;
pub mod wrk;

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use config::Config;
use load::LogFormat;
use switchyard_input::UsageError;
use switchyard_report::{natural_cmp, RunStats};
use wrk::WrkSummary;

/// `switchyard analyze`: tables on stdout; charts and REPORT.md in the output folder.
#[derive(Debug, Clone, clap::Args)]
pub struct AnalyzeArgs {
    /// Request logs (CSV, the proxy's or the study's format), or folders to search for
    /// them, e.g. logs/<run-id> as written by `just bench`.
    #[arg(required = true, value_name = "CSV_OR_FOLDER")]
    pub inputs: Vec<PathBuf>,
    /// Folder for the charts and REPORT.md. Default: the one folder given, or the folder
    /// of the one CSV given; required with several inputs.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the tables only: write no charts and no REPORT.md.
    #[arg(long)]
    pub no_write: bool,
}

/// One analyzed run.
#[derive(Debug, Clone)]
pub struct Run {
    pub csv: PathBuf,
    pub format: LogFormat,
    pub config: Config,
    /// The policy as tables and charts show it: `config.policy`, plus where the run came
    /// from when two runs of one configuration are compared.
    pub policy: String,
    /// Labelled `<mode> <policy>`.
    pub stats: RunStats,
    pub wrk_path: Option<PathBuf>,
    pub wrk: Option<WrkSummary>,
    /// Why a wrk output beside the log could not be used.
    pub wrk_problem: Option<String>,
    /// Requests whose client hung up, left out of the statistics (see [`load::Log::aborted`]).
    pub aborted: u64,
    pub first_timestamp: String,
}

/// Runs `switchyard analyze`.
pub fn run(args: &AnalyzeArgs) -> anyhow::Result<()> {
    let out = if args.no_write {
        None
    } else {
        Some(out_dir(args)?)
    };
    let runs = load_runs(&args.inputs)?;
    for r in &runs {
        if let Some(problem) = &r.wrk_problem {
            eprintln!("warning: {problem}; no client-side cross-check for this run");
        }
    }
    print!("{}", markdown::tables(&runs));
    let Some(out) = out else { return Ok(()) };
    std::fs::create_dir_all(&out)
        .with_context(|| format!("cannot create the output folder {}", out.display()))?;
    let charts = figures::write_all(&runs, &out)?;
    let report = out.join("REPORT.md");
    std::fs::write(&report, markdown::report(&runs, &out, &charts))
        .with_context(|| format!("cannot write {}", report.display()))?;
    eprintln!(
        "wrote {} charts (SVG and PNG) and {}",
        charts.len(),
        report.display()
    );
    Ok(())
}

/// Reads every log the inputs name, in study order (see [`config::study_order`]).
pub fn load_runs(inputs: &[PathBuf]) -> Result<Vec<Run>, UsageError> {
    let found = discover::find(inputs)?;
    let mut logs = Vec::new();
    for f in found {
        let log = load::read(&f.csv)?;
        logs.push((f, log));
    }
    // Every run gets every backend seen anywhere, so starved backends show as 0 % and the
    // shares table has the same columns in the same (natural) order for every run.
    let mut backends: Vec<String> = Vec::new();
    for (_, log) in &logs {
        for r in &log.records {
            if !backends.contains(&r.backend) {
                backends.push(r.backend.clone());
            }
        }
    }
    backends.sort_by(|a, b| natural_cmp(a, b));

    let mut runs: Vec<Run> = logs
        .into_iter()
        .map(|(f, log)| {
            let config = config::identify(&f.csv, &log);
            let (wrk, wrk_problem) = match f.wrk.as_deref().map(wrk::read) {
                Some(Ok(w)) => (Some(w), None),
                Some(Err(e)) => (None, Some(e)),
                None => (None, None),
            };
            // wrk timed the load; the log's span (first start to last finish) is the fallback.
            let duration = wrk.as_ref().and_then(|w| w.duration_s);
            let stats = RunStats::compute_with(
                &config.label(),
                &log.records,
                &backends,
                duration,
                |i, _| log.failed.get(i).copied().unwrap_or(false),
            );
            Run {
                policy: config.policy.clone(),
                csv: f.csv,
                format: log.format,
                config,
                stats,
                wrk_path: f.wrk,
                wrk,
                wrk_problem,
                aborted: log.aborted,
                first_timestamp: log.first_timestamp,
            }
        })
        .collect();
    runs.sort_by(|a, b| config::study_order(&a.config, &b.config).then_with(|| a.csv.cmp(&b.csv)));
    disambiguate(&mut runs);
    Ok(runs)
}

/// Two runs of one configuration (an old log beside a new one) get their origin added to
/// the policy name, so no table row or chart bar hides another.
fn disambiguate(runs: &mut [Run]) {
    let labels: Vec<String> = runs.iter().map(|r| r.config.label()).collect();
    for (i, r) in runs.iter_mut().enumerate() {
        if labels.iter().filter(|l| **l == labels[i]).count() > 1 {
            r.policy = format!("{} ({})", r.config.policy, origin(&r.csv));
            r.stats.label = format!("{} {}", r.config.mode, r.policy);
        }
    }
}

/// What tells a run apart from another of the same configuration: the run id of a bench
/// folder (`logs/<run-id>/<mode>-<policy>/requests.csv`), else the file's path.
fn origin(csv: &Path) -> String {
    let parent = csv.parent();
    let bench = parent
        .and_then(Path::file_name)
        .is_some_and(|n| n.to_string_lossy().contains("persistent-"));
    match parent.and_then(Path::parent).and_then(Path::file_name) {
        Some(run_id) if bench => run_id.to_string_lossy().into_owned(),
        _ => csv.display().to_string(),
    }
}

fn out_dir(args: &AnalyzeArgs) -> Result<PathBuf, UsageError> {
    if let Some(out) = &args.out {
        return Ok(out.clone());
    }
    match args.inputs.as_slice() {
        [one] if one.is_dir() => Ok(one.clone()),
        [one] => Ok(one
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)),
        _ => Err(UsageError::new(
            "several inputs: pass --out DIR to say where the charts and REPORT.md go (or --no-write)",
        )),
    }
}
