//! `/metrics` through prometheus-client: a [`collectors`] `Collector` per source, encoded
//! at scrape time, in the format the scraper asks for. Prometheus asks for OpenMetrics
//! text (`Accept: application/openmetrics-text`) and gets it; a client that does not
//! (curl, older scrapers) gets the Prometheus text format 0.0.4, as client_golang's
//! `expfmt.Negotiate` does. The samples are the same in both; the formats differ in the
//! counter TYPE names (`_total` or not) and OpenMetrics' closing `# EOF`.
mod collectors;

use http::header::{self, HeaderMap};
use http::StatusCode;
use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::registry::Registry;

use super::body::AdminBody;
use super::{AdminContext, Ctx};
use collectors::{EdgeCollector, RouterCollector, TelemetryCollector, UpstreamCollector};

/// Every family is named `switchyard_*`.
const PREFIX: &str = "switchyard";

/// The OpenMetrics text content type (prometheus-client names only the 0.0.4 one).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The registry `/metrics` encodes: the collectors, in exposition order.
pub(super) fn registry(app: &AdminContext) -> Registry {
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register_collector(Box::new(TelemetryCollector {
        shared: app.shared.clone(),
        telemetry: app.telemetry.clone(),
    }));
    registry.register_collector(Box::new(UpstreamCollector {
        shared: app.shared.clone(),
    }));
    registry.register_collector(Box::new(RouterCollector {
        shared: app.shared.clone(),
    }));
    registry.register_collector(Box::new(EdgeCollector {
        shared: app.shared.clone(),
    }));
    registry
}

pub(super) fn response(ctx: &Ctx, headers: &HeaderMap) -> http::Response<AdminBody> {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(prefers_openmetrics);
    let (content_type, body) = if openmetrics {
        (OPENMETRICS, encode(&ctx.metrics, text::encode))
    } else {
        let body = encode(&ctx.metrics, prometheus_text::encode);
        (prometheus_text::CONTENT_TYPE, body)
    };
    match body {
        Ok(body) => super::with_headers(
            super::respond(StatusCode::OK, content_type, body.into()),
            // The body depends on Accept.
            &[(header::VARY, "accept")],
        ),
        Err(std::fmt::Error) => super::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics\n",
        ),
    }
}

type Encoder = fn(&mut String, &Registry) -> std::fmt::Result;

fn encode(registry: &Registry, with: Encoder) -> Result<String, std::fmt::Error> {
    let mut out = String::with_capacity(8192);
    with(&mut out, registry)?;
    Ok(out)
}

/// Whether an `Accept` value ranks OpenMetrics text above anything else it lists (a
/// missing `q` is 1; ties go to the first listed).
fn prefers_openmetrics(accept: &str) -> bool {
    let mut best: Option<(f32, bool)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        let q = parts
            .find_map(|p| p.strip_prefix("q="))
            .and_then(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        if q > 0.0 && best.is_none_or(|(top, _)| q > top) {
            best = Some((
                q,
                media.eq_ignore_ascii_case("application/openmetrics-text"),
            ));
        }
    }
    best.is_some_and(|(_, openmetrics)| openmetrics)
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_gets_openmetrics_and_other_clients_the_text_format() {
        // Prometheus 2's and 3's default Accept.
        assert!(prefers_openmetrics(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
             version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ));
        assert!(prefers_openmetrics(
            "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,\
             application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;\
             escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
        ));
        assert!(prefers_openmetrics("Application/OpenMetrics-Text"));
        for other in [
            "",
            "*/*",
            "text/plain;version=0.0.4",
            "text/plain, application/openmetrics-text;q=0.5",
            "application/openmetrics-text;q=0",
        ] {
            assert!(!prefers_openmetrics(other), "{other}");
        }
    }
}
