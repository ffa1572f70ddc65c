//! `switchyard analyze` on real files in a temp folder: exact statistics from small logs in
//! both formats, wrk's summary, bad input (exit code 2, file and line named), and the
//! charts and REPORT.md of a study folder laid out as `just bench` writes it.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use switchyard_analyze::load::LogFormat;
use switchyard_analyze::{load_runs, wrk};
use switchyard_report::log::HEADER as PROXY_HEADER;

/// A fresh, empty folder for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("switchyard-analyze-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

fn analyze(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("analyze")
        .args(args)
        .output()
        .expect("run switchyard")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn proxy_log_statistics_are_exact() {
    let dir = temp_dir("exact");
    let csv = write(
        &dir.join("rr_persistent.csv"),
        &format!(
            "{PROXY_HEADER}\n\
             2026-11-26T18:00:00.100Z,http://127.0.0.1:8081,100.000,200,round-robin,A,response,persistent,true,,r1\n\
             2026-11-26T18:00:00.300Z,http://127.0.0.1:8082,200.000,200,round-robin,B,response,persistent,true,,r1\n\
             2026-11-26T18:00:00.500Z,http://127.0.0.1:8082,50.000,0,round-robin,B,aborted,persistent,true,,r1\n\
             2026-11-26T18:00:00.600Z,http://127.0.0.1:8083,400.000,502,round-robin,C,connect_error,persistent,false,,r1\n\
             2026-11-26T18:00:01.000Z,http://127.0.0.1:8081,300.000,200,round-robin,A,broken,persistent,true,,r1\n"
        ),
    );
    let runs = load_runs(std::slice::from_ref(&csv)).unwrap();
    assert_eq!(runs.len(), 1);
    let r = &runs[0];
    assert_eq!(r.format, LogFormat::Proxy);
    assert_eq!(
        (r.config.mode.as_str(), r.config.policy.as_str()),
        ("persistent", "rr")
    );
    let s = &r.stats;
    assert_eq!(s.label, "persistent rr");
    // The client's hang-up is counted apart, not as a request or an error.
    assert_eq!((s.requests, r.aborted), (4, 1));
    // First start: 18:00:00.100 - 100 ms; last finish 18:00:01.000.
    assert_eq!(s.duration_s, 1.0);
    assert_eq!(s.req_per_s, 4.0);
    assert_eq!(s.mean_ms, 250.0);
    assert_eq!(
        (s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms),
        (200.0, 400.0, 400.0, 400.0)
    );
    // connect_error (a 502) and broken (after a 200) are errors.
    assert_eq!((s.errors, s.error_rate), (2, 0.5));
    assert_eq!(
        (s.share("A"), s.share("B"), s.share("C")),
        (0.5, 0.25, 0.25)
    );
    assert!(r.wrk.is_none());

    let out = analyze(&[&csv]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .contains("| rr | 4 | 4.0 | 250.00 | 200.00 | 400.00 | 400.00 | 400.00 | 2 (50.00%) |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| persistent rr | 50.00% | 25.00% | 25.00% |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| persistent rr | 4 / n/a | 4.0 / n/a |"),
        "{stdout}"
    );
}

#[test]
fn study_five_column_logs_are_read() {
    let dir = temp_dir("study");
    let csv = write(
        &dir.join("sma_non-persistent.csv"),
        "timestamp,backend_url,latency_ms,status_code,routing_mode\n\
         2024-05-01 12:00:00.000000,http://localhost:8081,10.5,200,sma\n\
         2024-05-01 12:00:00.500000,http://localhost:8082,20.5,200,sma\n\
         2024-05-01T12:00:01,http://localhost:8082,30.0,500,sma\n\
         2024-05-01 12:00:01.989500,http://localhost:8083/,40,,sma\n",
    );
    let runs = load_runs(&[csv]).unwrap();
    let r = &runs[0];
    assert_eq!(r.format, LogFormat::Study);
    assert_eq!(r.stats.label, "non-persistent sma");
    assert_eq!(r.stats.requests, 4);
    assert_eq!(r.stats.duration_s, 2.0);
    assert_eq!(r.stats.req_per_s, 2.0);
    assert_eq!(r.stats.mean_ms, 25.25);
    // A 500 and a row with no status: without an outcome column both are errors.
    assert_eq!(r.stats.errors, 2);
    let names: Vec<&str> = r
        .stats
        .backends
        .iter()
        .map(|b| b.backend.as_str())
        .collect();
    assert_eq!(names, ["A", "B", "C"]);
    assert_eq!(r.stats.share("B"), 0.5);
}

const WRK: &str = "Running 10s test @ http://127.0.0.1:9090/
  4 threads and 100 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   198.43ms   46.42ms   1.20s    86.51%
    Req/Sec   125.32     32.61   393.00     71.42%
  Latency Distribution
     50%  201.45ms
     75%  201.97ms
     90%  251.34ms
     99%  401.71ms
  4993 requests in 10.01s, 940.12KB read
  Socket errors: connect 0, read 3, write 1, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:    499.32
Transfer/sec:     94.02KB
";

#[test]
fn wrk_output_is_parsed() {
    let w = wrk::parse(WRK).unwrap();
    assert_eq!((w.threads, w.connections), (Some(4), Some(100)));
    assert_eq!((w.requests, w.duration_s), (Some(4993), Some(10.01)));
    assert_eq!(w.req_per_s, 499.32);
    assert_eq!(
        (w.mean_ms, w.stdev_ms, w.max_ms),
        (Some(198.43), Some(46.42), Some(1200.0))
    );
    assert_eq!(
        (w.p50_ms, w.p75_ms, w.p90_ms, w.p99_ms),
        (Some(201.45), Some(201.97), Some(251.34), Some(401.71))
    );
    assert_eq!((w.non_2xx, w.socket_errors, w.errors()), (7, 6, 13));
    let err = wrk::parse("unable to connect to 127.0.0.1:9090 Connection refused\n").unwrap_err();
    assert!(err.contains("Requests/sec"), "{err}");
}

#[test]
fn bad_input_names_file_and_line_and_exits_2() {
    let dir = temp_dir("bad");
    let study = "timestamp,backend_url,latency_ms,status_code,routing_mode\n";
    let row = "2024-05-01 12:00:00.000,http://localhost:8081,10,200,rr\n";
    let cases: Vec<(PathBuf, String)> = vec![
        (dir.join("missing.csv"), "missing.csv: cannot read".into()),
        (
            write(&dir.join("wrong.csv"), "when,where,how\n1,2,3\n"),
            "wrong.csv:1: not a request log: missing column(s) timestamp, backend_url, latency_ms, status_code".into(),
        ),
        (write(&dir.join("empty.csv"), ""), "empty.csv:1: empty file".into()),
        (write(&dir.join("header-only.csv"), study), "header-only.csv:2: no requests".into()),
        (
            write(&dir.join("latency.csv"), &format!("{study}{row}{}", row.replace(",10,", ",ten,"))),
            "latency.csv:3: latency_ms `ten` is not a number".into(),
        ),
        (
            write(&dir.join("fields.csv"), &format!("{study}{row}{row}2024-05-01 12:00:01,http://localhost:8081,10\n")),
            "fields.csv:4: 3 fields where the header has 5".into(),
        ),
        (
            write(&dir.join("time.csv"), &format!("{study}{}", row.replace("2024-05-01 12:00:00.000", "noon"))),
            "time.csv:2: timestamp `noon` is not a date and time".into(),
        ),
        (
            write(&dir.join("status.csv"), &format!("{study}{}", row.replace(",200,", ",OK,"))),
            "status.csv:2: status_code `OK`".into(),
        ),
        (
            write(
                &dir.join("aborted.csv"),
                &format!("{PROXY_HEADER}\n2026-11-26T18:00:00.500Z,http://127.0.0.1:8082,50.000,0,rr,B,aborted,persistent,true,,r1\n"),
            ),
            "aborted.csv: no completed requests".into(),
        ),
    ];
    for (path, expected) in cases {
        let out = analyze(&[&path]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{}: {err}", path.display());
        assert!(
            err.contains(&expected),
            "{}: expected `{expected}` in: {err}",
            path.display()
        );
        assert!(err.contains(&dir.display().to_string()), "{err}");
    }
    let empty_dir = temp_dir("bad-empty-dir");
    let out = analyze(&[&empty_dir]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no request logs (*.csv)"),
        "{}",
        stderr(&out)
    );
}

/// A `just bench` run folder: `<mode>-<policy>/{requests.csv,wrk.txt}`.
fn fake_run(
    dir: &Path,
    name: &str,
    upstream: &str,
    mode: &str,
    counts: [usize; 3],
    latency: [f64; 3],
) {
    let mut csv = format!("{PROXY_HEADER}\n");
    let mut t = 0u64;
    for (b, (&n, &lat)) in counts.iter().zip(&latency).enumerate() {
        for _ in 0..n {
            t += 25;
            let _ = writeln!(
                csv,
                "2026-11-26T18:00:{:02}.{:03}Z,http://127.0.0.1:{},{lat:.3},200,{mode},{},response,{upstream},true,,r1",
                10 + t / 1000,
                t % 1000,
                8081 + b,
                ["A", "B", "C"][b],
            );
        }
    }
    let total: usize = counts.iter().sum();
    write(&dir.join(name).join("requests.csv"), &csv);
    write(
        &dir.join(name).join("wrk.txt"),
        &WRK.replace(
            "4993 requests in 10.01s",
            &format!("{} requests in 10.00s", total - 2),
        )
        .replace("499.32", &format!("{:.2}", (total - 2) as f64 / 10.0)),
    );
}

#[test]
fn a_study_folder_gets_tables_charts_and_report() {
    let dir = temp_dir("folder");
    fake_run(
        &dir,
        "persistent-rr",
        "persistent",
        "round-robin",
        [100, 100, 100],
        [400.0, 200.0, 250.0],
    );
    fake_run(
        &dir,
        "non-persistent-ewma",
        "non-persistent",
        "adaptive_ewma",
        [46, 152, 2],
        [400.0, 200.0, 250.0],
    );
    let out = analyze(&[&dir]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // req/s from wrk's 10.00 s; the cross-check shows wrk's own figures beside ours.
    assert!(
        stdout.contains("## Table 1: persistent upstream connections"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| rr | 300 | 30.0 | 283.33 | 250.00 | 400.00 |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("## Table 2: non-persistent upstream connections"),
        "{stdout}"
    );
    assert!(stdout.contains("| ewma | 200 | 20.0 |"), "{stdout}");
    assert!(
        stdout.contains("| non-persistent ewma | 23.00% | 76.00% | 1.00% |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| persistent rr | 300 / 298 | 30.0 / 29.8 | 283.33 / 198.43 |"),
        "{stdout}"
    );

    for stem in ["fig7-req-per-s", "fig8-mean", "fig9-p95", "fig10-shares"] {
        let png = std::fs::read(dir.join(format!("{stem}.png"))).unwrap();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5_000,
            "{stem}.png"
        );
        let svg = std::fs::read_to_string(dir.join(format!("{stem}.svg"))).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("<text"),
            "{stem}.svg"
        );
    }
    let svg = std::fs::read_to_string(dir.join("fig7-req-per-s.svg")).unwrap();
    assert!(
        svg.contains("494.9"),
        "the study's published rr req/s is drawn beside ours"
    );

    let report = std::fs::read_to_string(dir.join("REPORT.md")).unwrap();
    assert!(
        report.contains("| rr | 30.0 | 494.9 | -93.9% | 283.3 | 201.6 | 400 | 416 |"),
        "{report}"
    );
    // The study's sma was not run here; its persistent and non-persistent rows still show.
    assert!(report.contains("| sma | not run | 467.1 |"), "{report}");
    assert!(report.contains("| sma | not run | 437.3 |"), "{report}");
    // Table 2 and the non-persistent shares of Table 3, beside ours.
    assert!(
        report.contains("| ewma | 20.0 | 442.5 | -95.5% | "),
        "{report}"
    );
    assert!(report.contains("| 34.32 / 63.92 / 1.76 % |"), "{report}");
    assert!(report.contains("| 22.60 / 76.06 / 1.34 % |"), "{report}");
    assert!(report.contains("![Figure 10: share of requests per backend](fig10-shares.svg)"));
    assert!(
        report.contains("`persistent-rr/requests.csv` (proxy log)"),
        "{report}"
    );
}

#[test]
fn two_logs_of_one_configuration_stay_apart() {
    let dir = temp_dir("two");
    fake_run(
        &dir.join("bench-old"),
        "persistent-rr",
        "persistent",
        "round-robin",
        [10, 10, 10],
        [1.0, 2.0, 3.0],
    );
    fake_run(
        &dir.join("bench-new"),
        "persistent-rr",
        "persistent",
        "round-robin",
        [5, 5, 5],
        [1.0, 2.0, 3.0],
    );
    let out = analyze(&[&dir.join("bench-old"), &dir.join("bench-new")]);
    assert_eq!(out.status.code(), Some(2), "several inputs need --out");
    assert!(stderr(&out).contains("--out"), "{}", stderr(&out));
    let runs = load_runs(&[dir.join("bench-old"), dir.join("bench-new")]).unwrap();
    let labels: Vec<&str> = runs.iter().map(|r| r.stats.label.as_str()).collect();
    assert_eq!(
        labels,
        ["persistent rr (bench-new)", "persistent rr (bench-old)"]
    );
}
