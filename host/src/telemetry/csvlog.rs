//! The request log: the study's five columns first, in its order, so its analysis scripts
//! read our logs; then what the study could not record.
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use switchyard_runtime::Backend;

use super::RequestEvent;

pub(super) const HEADER: [&str; 10] = [
    "timestamp",
    "backend_url",
    "latency_ms",
    "status_code",
    "routing_mode",
    "backend_id",
    "outcome",
    "upstream",
    "conn_reused",
    "fault",
];

pub(super) struct CsvLog {
    out: csv::Writer<BufWriter<File>>,
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
        let mut out = csv::Writer::from_writer(BufWriter::with_capacity(1 << 16, file));
        out.write_record(HEADER)?;
        Ok(CsvLog {
            out,
            backends: backends.to_vec(),
            upstream,
        })
    }

    pub(super) fn write(&mut self, e: &RequestEvent) -> anyhow::Result<()> {
        let ts = DateTime::<Utc>::from(e.at).format("%Y-%m-%dT%H:%M:%S%.3fZ");
        let (id, url) = self
            .backends
            .get(e.backend)
            .map(|b| (b.id.as_str(), b.url.as_str()))
            .unwrap_or(("?", "?"));
        self.out.write_record([
            ts.to_string().as_str(),
            url,
            format!("{:.3}", e.latency_ns as f64 / 1e6).as_str(),
            itoa(e.status).as_str(),
            &e.routed_by,
            id,
            e.outcome.as_str(),
            self.upstream,
            if e.reused { "true" } else { "false" },
            e.fault.map(|f| f.as_str()).unwrap_or(""),
        ])?;
        Ok(())
    }

    pub(super) fn flush(&mut self) -> anyhow::Result<()> {
        self.out.flush()?;
        Ok(())
    }
}

fn itoa(n: u16) -> String {
    n.to_string()
}
