//! Switching the policy from the page or with curl:
//!
//! ```text
//! curl localhost:5002/api/policies
//! curl -X POST -H 'content-type: application/json' -d '{"file":"sma.wasm"}' localhost:5002/api/policy
//! ```
//!
//! Only a bare `*.wasm` file name found in the folder of `--policy` is accepted (no paths,
//! so nothing outside that folder can be loaded). The switch goes through the reloader,
//! the same validated, rehearsed hot swap as a file change; a refused policy leaves the
//! running one in place and the answer says why.
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::body::AdminBody;
use super::Ctx;

/// Largest request body accepted: `{"file": "..."}` is tiny.
const MAX_BODY: usize = 4096;

#[derive(Debug, Serialize)]
struct Choices {
    folder: String,
    /// The file loaded now, if it is in `folder`.
    current: Option<String>,
    files: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct SwitchRequest {
    file: String,
}

#[derive(Debug, Serialize)]
struct Switched {
    ok: bool,
    file: String,
    from: String,
    to: String,
    generation: u64,
    took_ms: f64,
    replayed: usize,
}

/// The `*.wasm` files directly in `dir`, sorted.
fn wasm_files(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut files: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".wasm") && !n.starts_with('.'))
        .collect();
    files.sort();
    Ok(files)
}

fn folder(ctx: &Ctx) -> PathBuf {
    let d = &ctx.app.policy_dir;
    if d.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        d.clone()
    }
}

pub(super) fn list_response(ctx: &Ctx) -> Response<AdminBody> {
    let dir = folder(ctx);
    match wasm_files(&dir) {
        Ok(files) => {
            let status = ctx.app.shared.router.status();
            let current = status
                .file
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|n| files.iter().any(|f| f == n))
                .map(String::from);
            super::json(
                StatusCode::OK,
                &Choices {
                    folder: dir.display().to_string(),
                    current,
                    files,
                },
            )
        }
        Err(e) => super::json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot list {}: {e}", dir.display()),
        ),
    }
}

/// Checks that `name` is one of the folder's policy files, by name only.
fn validate(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let bare = Path::new(name).file_name().and_then(|n| n.to_str()) == Some(name);
    if name.is_empty() || !bare || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(format!(
            "`{name}` is not a file name: give one of the .wasm files in {} (see /api/policies)",
            dir.display()
        ));
    }
    if !name.ends_with(".wasm") {
        return Err(format!("`{name}` is not a .wasm file"));
    }
    let files = wasm_files(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    if !files.iter().any(|f| f == name) {
        return Err(format!(
            "no {name} in {}: choose one of {}",
            dir.display(),
            files.join(", ")
        ));
    }
    Ok(dir.join(name))
}

/// Refuses requests a web page on another origin could send (forms cannot send JSON, and
/// a cross-origin `fetch` carries an Origin that does not match the Host).
fn same_origin_json(req: &Request<Incoming>) -> Result<(), String> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if !is_json {
        return Err("send the body as JSON with `content-type: application/json`".into());
    }
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    match (origin, host) {
        (None, _) => Ok(()),
        (Some(o), Some(h))
            if o.strip_prefix("http://").or(o.strip_prefix("https://")) == Some(h) =>
        {
            Ok(())
        }
        (Some(o), _) => Err(format!("cross-origin request from {o} refused")),
    }
}

pub(super) async fn switch_response(ctx: &Ctx, req: Request<Incoming>) -> Response<AdminBody> {
    if let Err(e) = same_origin_json(&req) {
        return super::json_error(StatusCode::FORBIDDEN, e);
    }
    let body: Bytes = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return super::json_error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body (at most {MAX_BODY} bytes): {e}"),
            )
        }
    };
    let wanted: SwitchRequest = match serde_json::from_slice(&body) {
        Ok(w) => w,
        Err(e) => {
            return super::json_error(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"file\": \"NAME.wasm\"}}: {e}"),
            )
        }
    };
    let dir = folder(ctx);
    let path = match validate(&dir, &wanted.file) {
        Ok(p) => p,
        Err(e) => return super::json_error(StatusCode::BAD_REQUEST, e),
    };
    let reloader = ctx.app.reloader.clone();
    // Loading compiles the component (tens of ms): keep it off the async workers.
    match tokio::task::spawn_blocking(move || reloader.switch_to(path)).await {
        Ok(Ok(report)) => super::json(
            StatusCode::OK,
            &Switched {
                ok: true,
                file: wanted.file,
                from: report.from.to_string(),
                to: report.to.to_string(),
                generation: report.generation,
                took_ms: report.took.as_secs_f64() * 1e3,
                replayed: report.replayed,
            },
        ),
        Ok(Err(e)) => super::json_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{} was refused, the running policy stays: {e}", wanted.file),
        ),
        Err(e) => super::json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the swap task failed: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bare_wasm_names_in_the_folder() {
        let dir = std::env::temp_dir().join(format!("switchyard-swap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.wasm"), b"x").unwrap();
        std::fs::write(dir.join("notes.txt"), b"x").unwrap();
        assert_eq!(validate(&dir, "a.wasm").unwrap(), dir.join("a.wasm"));
        for bad in [
            "",
            "b.wasm",
            "notes.txt",
            "../a.wasm",
            "/etc/passwd",
            "sub/a.wasm",
            "..\\a.wasm",
            ".",
            "..",
            ".hidden.wasm",
        ] {
            assert!(validate(&dir, bad).is_err(), "{bad:?}");
        }
        assert_eq!(wasm_files(&dir).unwrap(), vec!["a.wasm".to_string()]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
