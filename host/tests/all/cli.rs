//! Bad input at start-up: one line naming the thing and the fix, exit code 2, no panic.
use crate::common;

use std::process::Command;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .output()
        .expect("run switchyard");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), stderr)
}

fn assert_bad_input(args: &[&str], mentions: &[&str]) {
    let (code, stderr) = run(args);
    assert_eq!(code, 2, "{args:?} -> {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    for m in mentions {
        assert!(errors[0].contains(m), "`{m}` missing from: {}", errors[0]);
    }
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    let dir = std::env::temp_dir().join(format!("switchyard-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.wasm");
    std::fs::write(&junk, b"definitely not wasm").unwrap();
    let junk = junk.display().to_string();
    let other = common::policy("fixtures/wasm/other-world.wasm");
    let rr = common::policy("rr.wasm");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();

    assert_bad_input(
        &["--no-log", "--policy", "no/such/policy.wasm"],
        &["no/such/policy.wasm", "just build-policies"],
    );
    assert_bad_input(
        &["--no-log", "--policy", &junk],
        &["junk.wasm", "not WebAssembly"],
    );
    assert_bad_input(
        &["--no-log", "--policy", &other],
        &["other-world.wasm", "switchyard:policy"],
    );
    assert_bad_input(
        &["--no-log", "--policy", &rr, "--backend", "localhost:8081"],
        &["localhost:8081", "http://"],
    );
    assert_bad_input(
        &[
            "--no-log",
            "--policy",
            &rr,
            "--upstream-protocol",
            "h2c",
            "--upstream",
            "non-persistent",
        ],
        &["h2c", "--upstream persistent"],
    );
    assert_bad_input(
        &["--no-log", "--policy", &rr, "--listen", &busy_addr],
        &[&busy_addr, "in use"],
    );
    assert_bad_input(
        &["--no-log", "--policy", &rr, "--policy-arg", "alpha"],
        &["alpha", "KEY=VALUE"],
    );
    let ewma = common::policy("ewma.wasm");
    assert_bad_input(
        &["--no-log", "--policy", &ewma, "--policy-arg", "alpha=3"],
        &["alpha=3"],
    );
}

#[test]
fn durations_and_environment_follow_the_same_rules() {
    let rr = common::policy("rr.wasm");
    // One duration grammar for every flag: a unit is required.
    assert_bad_input(
        &["--no-log", "--policy", &rr, "--timeout", "10"],
        &["--timeout", "10s"],
    );
    // $SWITCHYARD_ADMIN_TOKEN is read by the flag's parser, with the flag's rules.
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["--no-log", "--policy", &rr, "--admin", "127.0.0.1:0"])
        .env("SWITCHYARD_ADMIN_TOKEN", " ")
        .output()
        .expect("run switchyard");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("SWITCHYARD_ADMIN_TOKEN") && stderr.contains("non-empty"),
        "{stderr}"
    );
}
