//! The TLS flags, both sides (`--tls-cert`, `--tls-key`, `--tls-handshake-timeout`,
//! `--backend-ca`), and their checks: flattened into [`crate::cli::ServeArgs`], turned
//! into configuration by [`crate::config`]. Kept in a file of their own so that the TLS
//! rules sit together. Every failure names the flag and the fix.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use switchyard_input::{duration, UsageError};
use switchyard_upstream::{client_config, BackendTls, Protocol, Roots};

use crate::cli::BackendArg;
use crate::proxy::tls::{CertPair, ListenerTls};

/// TLS flags.
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// Serve TLS with this PEM certificate chain (leaf first); repeat with one --tls-key
    /// each, in the same order, for several certificates chosen by SNI from their SAN
    /// names. The first is the default when SNI matches none. Files are reloaded when they
    /// change (new handshakes only; open connections keep theirs).
    #[arg(long = "tls-cert", value_name = "FILE")]
    pub tls_cert: Vec<PathBuf>,

    /// The PEM private key of the --tls-cert at the same position.
    #[arg(long = "tls-key", value_name = "FILE")]
    pub tls_key: Vec<PathBuf>,

    /// From accepting a TLS connection to the end of its handshake; a client that takes
    /// longer (or sends nothing) is disconnected.
    #[arg(long, default_value = "10s", value_parser = duration::parse, value_name = "DURATION")]
    pub tls_handshake_timeout: Duration,

    /// Verify https:// backends against the CA certificates in this PEM file instead of
    /// the system's roots.
    #[arg(long, value_name = "FILE")]
    pub backend_ca: Option<PathBuf>,
}

/// The listener's TLS, when `--tls-cert` is given: pairs checked for count, not loaded
/// (the files are read at start-up, `proxy::tls`).
pub fn listener(args: &TlsArgs) -> Result<Option<ListenerTls>, UsageError> {
    let (certs, keys) = (args.tls_cert.len(), args.tls_key.len());
    if certs != keys {
        return Err(UsageError::new(format!(
            "--tls-cert is given {certs} time(s) and --tls-key {keys}: give each --tls-cert FILE its --tls-key FILE, in the same order"
        )));
    }
    if certs == 0 {
        return Ok(None);
    }
    if args.tls_handshake_timeout.is_zero() {
        return Err(UsageError::new(
            "--tls-handshake-timeout 0s would close every connection before its handshake: use e.g. 10s",
        ));
    }
    let pairs = args
        .tls_cert
        .iter()
        .zip(&args.tls_key)
        .map(|(cert, key)| CertPair {
            cert: cert.clone(),
            key: key.clone(),
        })
        .collect();
    Ok(Some(ListenerTls {
        pairs,
        handshake_timeout: args.tls_handshake_timeout,
    }))
}

/// Builds each https backend's TLS: one client setting shared by all, from `--backend-ca`
/// or the system's roots. Indexed like `backends`; `None` for http ones.
pub fn backends(
    args: &TlsArgs,
    backends: &[BackendArg],
    protocol: Protocol,
) -> Result<Vec<Option<BackendTls>>, UsageError> {
    let https = |b: &BackendArg| b.url.starts_with("https://");
    if !backends.iter().any(https) {
        return Ok(vec![None; backends.len()]);
    }
    if protocol == Protocol::H2c {
        return Err(UsageError::new(
            "--upstream-protocol h2c is HTTP/2 in clear text and cannot reach https:// backends: use --upstream-protocol http1 (HTTP/1.1 over TLS) or http:// backends",
        ));
    }
    let roots = match &args.backend_ca {
        Some(path) => Roots::File(path),
        None => Roots::System,
    };
    let config = client_config(roots).map_err(|e| match &args.backend_ca {
        Some(_) => UsageError::new(format!(
            "--backend-ca: {e}; give a PEM file of CA certificates"
        )),
        None => UsageError::new(format!(
            "https backends: {e}; give the backends' CA with --backend-ca FILE"
        )),
    })?;
    backends
        .iter()
        .map(|b| {
            if !https(b) {
                return Ok(None);
            }
            let host = b
                .authority
                .parse::<http::uri::Authority>()
                .map(|a| a.host().to_string())
                .unwrap_or_default();
            BackendTls::new(Arc::clone(&config), &host)
                .map(Some)
                .map_err(|e| UsageError::new(format!("--backend {}: {e}", b.url)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;

    fn tls(argv: &[&str]) -> Result<Option<ListenerTls>, UsageError> {
        let cli = Cli::try_parse_from([&["switchyard"], argv].concat()).expect("parses");
        listener(&cli.serve.tls)
    }

    #[test]
    fn pairs_go_in_order_and_must_match_in_number() {
        assert_eq!(tls(&[]).unwrap(), None);
        let t = tls(&[
            "--tls-cert",
            "a.pem",
            "--tls-key",
            "a.key",
            "--tls-cert",
            "b.pem",
            "--tls-key",
            "b.key",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(t.pairs[1].cert, PathBuf::from("b.pem"));
        assert_eq!(t.pairs[1].key, PathBuf::from("b.key"));
        assert_eq!(t.handshake_timeout, Duration::from_secs(10));
        let err = tls(&["--tls-cert", "a.pem"]).unwrap_err().to_string();
        assert!(err.contains("--tls-key"), "{err}");
        let err = tls(&[
            "--tls-cert",
            "a",
            "--tls-key",
            "b",
            "--tls-handshake-timeout",
            "0s",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("--tls-handshake-timeout"), "{err}");
    }
}
