//! The built `switchyard` binary as a child process, for tests that need what only a
//! real process has: its stderr log, signals, its exit status.
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;

/// A running `switchyard` with its banner read and its stderr lines forwarded.
pub(crate) struct Binary {
    pub(crate) child: Child,
    /// The first stdout line ("switchyard ... listening on http://ADDR").
    pub(crate) banner: String,
    /// stderr, line by line.
    pub(crate) lines: Receiver<String>,
}

impl Binary {
    /// Starts the binary on a free port, without admin, log or file watching, plus
    /// `args`; returns once it has printed its banner.
    pub(crate) fn start(args: &[&str]) -> Binary {
        let mut all = vec!["--no-log"];
        all.extend_from_slice(args);
        Binary::start_logging(&all)
    }

    /// [`Binary::start`] without `--no-log`: `args` say where the log goes.
    pub(crate) fn start_logging(args: &[&str]) -> Binary {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["--listen", "127.0.0.1:0", "--no-admin", "--no-watch"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut banner = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut banner)
            .unwrap();
        assert!(banner.contains("listening on"), "{banner}");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Binary {
            child,
            banner,
            lines,
        }
    }

    /// The proxy's address, from the banner.
    pub(crate) fn addr(&self) -> std::net::SocketAddr {
        self.banner
            .split_whitespace()
            .find_map(|w| w.trim_start_matches("http://").parse().ok())
            .unwrap_or_else(|| panic!("no address in {:?}", self.banner))
    }
}
