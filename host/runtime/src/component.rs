//! Loading a policy file: reading, validating and compiling it, with errors that name the
//! file and what to do about it.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use thiserror::Error;
use wasmtime::component::Component;

use crate::bindings::RouterPre;
use crate::sandbox::StoreState;
use crate::PolicyRuntime;

/// Why a policy could not be loaded. Callers branch on it (exit code 2 at start-up, keep the
/// running policy on reload), and its message is shown to the operator as is.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("policy file {0} not found: pass the path of a built .wasm component")]
    NotFound(PathBuf),
    #[error("cannot read policy file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("policy file {0} is empty: it may still be being written; rebuild it")]
    Empty(PathBuf),
    #[error("policy file {0} is not WebAssembly (no \\0asm header): pass a .wasm component built for wasm32-wasip2")]
    NotWasm(PathBuf),
    #[error("policy file {0} is a core wasm module, not a component: build it for the wasm32-wasip2 target (or wrap it with `wasm-tools component new`)")]
    CoreModule(PathBuf),
    #[error("policy file {path} is not a valid wasm component ({reason}): rebuild it; if it was being written, it will be retried")]
    Invalid { path: PathBuf, reason: String },
    #[error("policy file {path} does not implement switchyard:policy/policy@0.1.0 (world `router` in wit/policy.wit): {reason}")]
    WrongWorld { path: PathBuf, reason: String },
    #[error("policy file {path} imports {import}, which the sandbox does not give policies (no files, sockets, environment or clocks): remove that use from the policy")]
    Forbidden { path: PathBuf, import: String },
    #[error("policy {path} rejected its configuration: {message}")]
    Rejected { path: PathBuf, message: String },
    #[error("policy {path} faulted in {stage}: {reason}")]
    Faulted {
        path: PathBuf,
        stage: &'static str,
        reason: String,
    },
}

impl LoadError {
    /// True for errors that may go away on their own when a file is still being written.
    pub fn may_be_partial(&self) -> bool {
        matches!(
            self,
            LoadError::Empty(_) | LoadError::Invalid { .. } | LoadError::NotFound(_)
        )
    }
}

/// A compiled, validated policy component, ready to be instantiated any number of times.
pub struct PolicyComponent {
    pub(crate) pre: RouterPre<StoreState>,
    path: PathBuf,
    label: String,
    pub(crate) compile_time: std::time::Duration,
}

impl PolicyComponent {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file name, used to prefix the policy's log lines.
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn compile_time(&self) -> std::time::Duration {
        self.compile_time
    }
}

const COMPONENT_HEADER: [u8; 8] = [0, b'a', b's', b'm', 0x0d, 0x00, 0x01, 0x00];
const CORE_HEADER: [u8; 8] = [0, b'a', b's', b'm', 0x01, 0x00, 0x00, 0x00];

pub(crate) fn load(rt: &PolicyRuntime, path: &Path) -> Result<Arc<PolicyComponent>, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => LoadError::NotFound(path.to_path_buf()),
        _ => LoadError::Read {
            path: path.to_path_buf(),
            source,
        },
    })?;
    load_bytes(rt, path, &bytes)
}

pub(crate) fn load_bytes(
    rt: &PolicyRuntime,
    path: &Path,
    bytes: &[u8],
) -> Result<Arc<PolicyComponent>, LoadError> {
    let path = path.to_path_buf();
    if bytes.is_empty() {
        return Err(LoadError::Empty(path));
    }
    if bytes.len() < 8 && COMPONENT_HEADER.starts_with(bytes) {
        return Err(LoadError::Invalid {
            path,
            reason: "the file ends inside the wasm header".into(),
        });
    }
    if bytes.len() < 8 || bytes[..4] != COMPONENT_HEADER[..4] {
        return Err(LoadError::NotWasm(path));
    }
    if bytes[..8] == CORE_HEADER {
        return Err(LoadError::CoreModule(path));
    }
    let started = Instant::now();
    let component = Component::new(rt.engine(), bytes).map_err(|e| LoadError::Invalid {
        path: path.clone(),
        reason: format!("{e:#}"),
    })?;
    if let Some(import) = crate::sandbox::forbidden_import(&component, rt.engine()) {
        return Err(LoadError::Forbidden { path, import });
    }
    let linker = rt.linker();
    let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
        path: path.clone(),
        reason: format!("{e:#}"),
    };
    let instance_pre = linker.instantiate_pre(&component).map_err(wrong_world)?;
    let pre = RouterPre::new(instance_pre).map_err(wrong_world)?;
    let label = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    Ok(Arc::new(PolicyComponent {
        pre,
        path,
        label,
        compile_time: started.elapsed(),
    }))
}
