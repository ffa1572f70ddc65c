//! The request log (`--log FILE`): one line per proxied request, in the format
//! `switchyard_report::log` defines for the proxy, the simulator and `analyze` alike (the
//! study's five columns first, so its analysis scripts read our logs).
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use switchyard_report::log::{LogWriter, Row};
use switchyard_runtime::Backend;

use super::RequestEvent;

pub(super) struct CsvLog {
    out: LogWriter<BufWriter<File>>,
    backends: Vec<Backend>,
    upstream: &'static str,
}

impl CsvLog {
    pub(super) fn create(
        path: &Path,
        backends: &[Backend],
        upstream: &'static str,
    ) -> anyhow::Result<CsvLog> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the log folder {}", dir.display()))?;
        }
        let file = File::create(path).with_context(|| {
            format!(
                "cannot create the request log {}: pass another --log FILE or --no-log",
                path.display()
            )
        })?;
        let out = LogWriter::new(BufWriter::with_capacity(1 << 16, file))?;
        Ok(CsvLog {
            out,
            backends: backends.to_vec(),
            upstream,
        })
    }

    pub(super) fn write(&mut self, e: &RequestEvent) -> anyhow::Result<()> {
        let (id, url) = self
            .backends
            .get(e.backend)
            .map(|b| (b.id.as_str(), b.url.as_str()))
            .unwrap_or(("?", "?"));
        self.out.write(&Row {
            timestamp: DateTime::<Utc>::from(e.at),
            backend_url: url,
            latency_ms: e.latency_ns as f64 / 1e6,
            status_code: e.status,
            routing_mode: &e.routing_mode,
            backend_id: id,
            outcome: if e.cut { "cut" } else { e.outcome.as_str() },
            upstream: self.upstream,
            conn_reused: e.reused,
            fault: e.fault.map(|f| f.as_str()),
            // Ids are visible ASCII: the client's are checked, ours are hex.
            request_id: e.request_id.to_str().unwrap_or(""),
        })?;
        Ok(())
    }

    pub(super) fn flush(&mut self) -> anyhow::Result<()> {
        self.out.flush()?;
        Ok(())
    }

    /// Flushes, then asks the kernel to put the rows on disk (`fdatasync`): they survive
    /// a power cut or a kernel crash too, not just the proxy's.
    pub(super) fn sync(&mut self) -> anyhow::Result<()> {
        self.out.flush()?;
        self.out.get_ref().get_ref().sync_data()?;
        Ok(())
    }
}
