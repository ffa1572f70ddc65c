//! The dashboard page and its assets, compiled into the binary: the page works offline and
//! cannot drift from the server it talks to. The chart library (uPlot) is vendored from
//! npm; see `assets/VENDORED.md` for its version, licence and source.
use http::{header, Response, StatusCode};

use super::body::AdminBody;

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");
const UPLOT_JS: &str = include_str!("assets/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("assets/uPlot.min.css");

/// Scripts and styles only from this server, no inline code, no framing by other sites.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
                   img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'";

pub(super) fn index() -> Response<AdminBody> {
    let page = super::respond(
        StatusCode::OK,
        "text/html; charset=utf-8",
        INDEX.as_bytes().into(),
    );
    super::with_headers(
        page,
        &[
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
    )
}

pub(super) fn asset(path: &str) -> Response<AdminBody> {
    let (body, content_type) = match path {
        "/assets/app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "/assets/style.css" => (STYLE, "text/css; charset=utf-8"),
        "/assets/uPlot.iife.min.js" => (UPLOT_JS, "text/javascript; charset=utf-8"),
        "/assets/uPlot.min.css" => (UPLOT_CSS, "text/css; charset=utf-8"),
        _ => return super::text(StatusCode::NOT_FOUND, "no such asset\n"),
    };
    super::respond(StatusCode::OK, content_type, body.as_bytes().into())
}
