//! The `switchyard` binary: parses the command line, runs the proxy or a subcommand, and
//! maps errors to exit codes (2: the operator's input, 1: anything else).
use std::process::ExitCode;

use clap::Parser;
use switchyard::app::{self, Console};
#[cfg(any(feature = "sim", feature = "analyze"))]
use switchyard::cli::Command;
use switchyard::cli::{Cli, ServeArgs};
use switchyard::reload::Reloader;
use switchyard_input::UsageError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if cli.command.is_none() && cli.serve.verbose {
        "debug"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(format!(
                    "{default_level},wasmtime=warn,cranelift=warn"
                ))
            }),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file or a pipe gets plain text (and a
        // policy's escape sequences, escaped, are then the only backslashes in it).
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let result = match cli.command {
        #[cfg(feature = "sim")]
        Some(Command::Simulate(args)) => switchyard_sim::run(&args),
        #[cfg(feature = "sim")]
        Some(Command::Matrix(args)) => switchyard::matrix::run(&args),
        #[cfg(feature = "analyze")]
        Some(Command::Analyze(args)) => switchyard_analyze::run(&args),
        None => serve(&cli.serve),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", message(&e));
            if e.chain().any(|c| c.is::<UsageError>()) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The error's chain on one line, each cause once: a usage error often carries as its source
/// the error its message already quotes, which would only repeat it.
fn message(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let mut builder = if args.threads == Some(1) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    if let Some(n) = args.threads.filter(|&n| n > 1) {
        builder.worker_threads(n as usize);
    }
    let rt = builder.enable_all().build()?;
    rt.block_on(async {
        // Registered before start-up so that an early SIGHUP reloads rather than kills.
        #[cfg(unix)]
        let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let running = app::start_with_args(args, Console::On).await?;
        #[cfg(unix)]
        spawn_sighup_reload(hup, running.reloader.clone());
        wait_for_signal().await;
        eprintln!("stopping: letting requests in flight finish, flushing the log");
        let shared = running.shared.clone();
        let log = running.log.clone();
        let (totals, cut) = running.stop().await?;
        switchyard::console::print_totals(&shared, &totals, log.as_deref());
        if cut > 0 {
            // Not a usage error: exit 1, and say what it means for the log.
            anyhow::bail!(
                "{cut} connections still had requests in flight after the grace period and were cut; their requests are in the log with outcome `cut` (raise --grace to let them finish)"
            );
        }
        Ok(())
    })
}

/// SIGHUP reloads the policy file, as with most daemons.
#[cfg(unix)]
fn spawn_sighup_reload(hup: Option<tokio::signal::unix::Signal>, reloader: Reloader) {
    let Some(mut hup) = hup else {
        tracing::warn!("cannot listen for SIGHUP; the policy still reloads when its file changes");
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the policy");
            reloader.trigger();
        }
    });
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_is_printed_once() {
        let io = std::io::Error::other("permission denied");
        let quoted =
            UsageError::with_source(format!("cannot read x: {io}; pass another --log"), io);
        let e = anyhow::Error::new(quoted);
        assert_eq!(
            message(&e),
            "cannot read x: permission denied; pass another --log"
        );
        let io = std::io::Error::other("permission denied");
        let context = anyhow::Error::new(UsageError::with_source("--policy", io));
        assert_eq!(message(&context), "--policy: permission denied");
    }
}
