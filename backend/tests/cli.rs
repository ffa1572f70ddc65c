//! Runs the built `backend` binary: startup line, env vars, clean SIGTERM
//! exit, and one-line errors with exit code 2 for bad input.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};

fn backend() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_backend"));
    cmd.env_remove("SERVER_ID").env_remove("PORT");
    cmd
}

fn run(args: &[&str]) -> Output {
    backend().args(args).output().unwrap()
}

/// Asserts the documented failure shape: exit 2, one `error:` line, no panic.
fn assert_bad_input(args: &[&str], mentions: &str) {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    assert!(
        stderr.contains(mentions),
        "{args:?} should mention {mentions:?}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_input_exits_with_code_2_and_one_line() {
    assert_bad_input(&["--id", "D"], "--latencies");
    assert_bad_input(&["--latencies", "10,abc"], "\"abc\"");
    assert_bad_input(&["--latencies", "-5"], "--latencies");
    assert_bad_input(&["--error-rate", "1.5"], "0..1");
    assert_bad_input(&["--error-rate", "-0.1"], "0..1");
    assert_bad_input(&["--capacity", "0"], "--capacity");
    assert_bad_input(&["--threads", "0"], "--threads");
    assert_bad_input(&["--all", "--base-port", "65535"], "--base-port");
}

#[test]
fn port_in_use_is_reported() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    assert_bad_input(&["--id", "A", "--port", &port], "in use");
}

#[test]
fn bad_env_port_is_reported() {
    let out = backend().env("PORT", "eighty").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PORT"));
}

#[test]
fn flag_syntax_errors_use_clap_exit_code_2() {
    assert_eq!(run(&["--port", "abc"]).status.code(), Some(2));
    assert_eq!(run(&["--all", "--id", "A"]).status.code(), Some(2));
    assert_eq!(run(&["--bogus"]).status.code(), Some(2));
}

/// Starts the binary and returns it with its startup lines.
fn start(cmd: &mut Command, lines: usize) -> (Child, Vec<String>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut seen = Vec::new();
    for _ in 0..lines {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        seen.push(line.trim_end().to_string());
    }
    (child, seen)
}

fn addr_of(line: &str) -> String {
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap();
    url.trim_start_matches("http://").to_string()
}

fn get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    stream.read_to_string(&mut resp).unwrap();
    resp
}

fn terminate(mut child: Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "SIGTERM should exit cleanly, got {exit}");
}

#[test]
fn serves_a_custom_cycle_and_stops_on_sigterm() {
    let (child, lines) = start(
        backend().args([
            "--id",
            "Zed",
            "--latencies",
            "0,0.5",
            "--port",
            "0",
            "--threads",
            "1",
        ]),
        1,
    );
    assert!(
        lines[0].starts_with("backend Zed listening on http://127.0.0.1:"),
        "{}",
        lines[0]
    );
    assert!(lines[0].ends_with("(cycle: 0,0.5 ms)"), "{}", lines[0]);
    let addr = addr_of(&lines[0]);
    let first = get(&addr, "/");
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(first.contains("x-backend-id: Zed"), "{first}");
    assert!(first.ends_with("Hello from Zed - simulated 0ms"), "{first}");
    assert!(get(&addr, "/").ends_with("Hello from Zed - simulated 0.5ms"));
    terminate(child);
}

#[test]
fn study_env_vars_select_id_and_port() {
    let (child, lines) = start(backend().env("SERVER_ID", "B").env("PORT", "0"), 1);
    assert!(
        lines[0].starts_with("backend B listening on"),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("(cycle: 200,200,200,"), "{}", lines[0]);
    terminate(child);
}

#[test]
fn all_serves_the_three_study_backends() {
    let (child, lines) = start(backend().args(["--all", "--base-port", "0"]), 3);
    for (line, id) in lines.iter().zip(["A", "B", "C"]) {
        assert!(
            line.starts_with(&format!("backend {id} listening")),
            "{line}"
        );
        assert!(get(&addr_of(line), "/health").ends_with("ok"));
    }
    terminate(child);
}

#[test]
fn report_load_adds_the_load_headers() {
    let (child, lines) = start(
        backend().args([
            "--latencies",
            "0",
            "--capacity",
            "2",
            "--report-load",
            "--port",
            "0",
        ]),
        1,
    );
    assert!(
        lines[0].ends_with("(cycle: 0 ms, capacity 2, load reports)"),
        "{}",
        lines[0]
    );
    let resp = get(&addr_of(&lines[0]), "/");
    assert!(
        resp.contains(
            "endpoint-load-metrics: TEXT application_utilization:0.000,rps_fractional:1.000,named_metrics.rif:0\r\n"
        ),
        "{resp}"
    );
    assert!(resp.contains("x-prequal-rif: 0\r\n"), "{resp}");
    assert!(resp.contains("x-prequal-latency-us: "), "{resp}");
    terminate(child);
}
