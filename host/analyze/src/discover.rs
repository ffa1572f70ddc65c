//! Finding runs: the CSV logs named on the command line or under the folders named there,
//! each with the wrk output saved beside it.
//!
//! `just bench` lays a study out as `logs/<run-id>/<upstream>-<policy>/{requests.csv,
//! wrk.txt, console.txt}`; older logs are loose CSV files. A run's wrk output is
//! `<stem>.wrk.txt` beside `<stem>.csv`, or `wrk.txt` when the CSV is alone in its folder.
use std::path::{Path, PathBuf};

use switchyard_input::UsageError;

/// Folders deeper than this under an argument are not searched: a study folder is two
/// levels deep, and a stray `logs/` argument must not crawl a whole disk.
const MAX_DEPTH: usize = 4;

/// A request log to analyze and the wrk output that belongs to it, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub csv: PathBuf,
    pub wrk: Option<PathBuf>,
}

/// Every CSV log under `inputs`, in argument order, each folder's files sorted by path (so
/// the report does not depend on directory order). A missing path or a folder with no CSV
/// is [`UsageError`]; a file named directly is taken whatever its extension.
pub fn find(inputs: &[PathBuf]) -> Result<Vec<Found>, UsageError> {
    let mut csvs = Vec::new();
    for input in inputs {
        let meta = std::fs::metadata(input)
            .map_err(|e| UsageError::new(format!("{}: cannot read: {e}", input.display())))?;
        if meta.is_dir() {
            let before = csvs.len();
            walk(input, 0, &mut csvs)
                .map_err(|e| UsageError::new(format!("{}: cannot list: {e}", input.display())))?;
            if csvs.len() == before {
                return Err(UsageError::new(format!(
                    "{}: no request logs (*.csv) in this folder or its subfolders; pass a run folder such as logs/<run-id> or a CSV file",
                    input.display()
                )));
            }
        } else {
            csvs.push(input.clone());
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    csvs.retain(|p| seen.insert(p.clone()));
    Ok(csvs
        .into_iter()
        .map(|csv| {
            let wrk = wrk_beside(&csv);
            Found { csv, wrk }
        })
        .collect())
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if depth < MAX_DEPTH {
                walk(&path, depth + 1, out)?;
            }
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// The wrk output of the run logged in `csv`, if saved beside it.
fn wrk_beside(csv: &Path) -> Option<PathBuf> {
    let dir = csv
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let stem = csv.file_stem()?.to_string_lossy();
    let named = dir.join(format!("{stem}.wrk.txt"));
    if named.is_file() {
        return Some(named);
    }
    let shared = dir.join("wrk.txt");
    let csvs_here = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "csv"))
        .count();
    (shared.is_file() && csvs_here == 1).then_some(shared)
}
