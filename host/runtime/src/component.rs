//! Loading a policy file: reading, validating and compiling it, with errors that name the
//! file and what to do about it.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use thiserror::Error;
use wasmtime::component::Component;

use crate::bindings::{v01, v02};
use crate::sandbox::StoreState;
use crate::PolicyRuntime;

/// Why a policy could not be loaded. Callers branch on it (exit code 2 at start-up, keep the
/// running policy on reload), and its message is shown to the operator as is.
#[derive(Debug, Error)]
// The fields are named by the messages; documenting each would repeat them.
#[allow(missing_docs)]
pub enum LoadError {
    /// The file does not exist.
    #[error("policy file {0} not found: pass the path of a built .wasm component")]
    NotFound(PathBuf),
    /// The file exists but cannot be read.
    #[error("cannot read policy file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is empty (possibly still being written).
    #[error("policy file {0} is empty: it may still be being written; rebuild it")]
    Empty(PathBuf),
    /// The file does not start with the wasm magic number.
    #[error("policy file {0} is not WebAssembly (no \\0asm header): pass a .wasm component built for wasm32-wasip2")]
    NotWasm(PathBuf),
    /// The file is a core module, not a component.
    #[error("policy file {0} is a core wasm module, not a component: build it for the wasm32-wasip2 target (or wrap it with `wasm-tools component new`)")]
    CoreModule(PathBuf),
    /// The file is cut short or does not validate.
    #[error("policy file {path} is not a valid wasm component ({reason}): rebuild it; if it was being written, it will be retried")]
    Invalid { path: PathBuf, reason: String },
    /// The component does not export the policy interface the host calls.
    #[error("policy file {path} does not implement switchyard:policy/policy@0.2.0 (world `router` in wit/policy.wit) or @0.1.0 (wit/0.1.0/policy.wit): {reason}")]
    WrongWorld { path: PathBuf, reason: String },
    /// The component imports something that is neither WASI nor the contract's `host`.
    #[error("policy file {path} imports {import}, which is neither WASI nor the contract's host interface (wit/policy.wit): no host provides it; remove that import from the policy")]
    UnknownImport { path: PathBuf, import: String },
    /// The policy's `configure` returned an error.
    #[error("policy {path} rejected its configuration: {message}")]
    Rejected { path: PathBuf, message: String },
    /// What the policy said about itself in `configure` breaks the contract's rules
    /// (a name that is not a short identifier, too many headers, ...).
    #[error("policy {path} broke the contract in configure: {message}")]
    BrokeContract { path: PathBuf, message: String },
    /// The policy trapped, ran out of time or memory while being set up, rehearsed or
    /// warm-started; `stage` says which.
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

/// The contract version a component was built against, with its pre-linked instance.
pub(crate) enum Pre {
    V01(v01::RouterPre<StoreState>),
    V02(v02::RouterPre<StoreState>),
}

/// A compiled, validated policy component, ready to be instantiated any number of times.
pub struct PolicyComponent {
    pub(crate) pre: Pre,
    path: PathBuf,
    label: String,
    pub(crate) compile_time: std::time::Duration,
}

impl PolicyComponent {
    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file name, used to prefix the policy's log lines.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// How long validation and compilation took.
    pub fn compile_time(&self) -> std::time::Duration {
        self.compile_time
    }

    /// The contract version it was built against, e.g. "0.2.0".
    pub fn contract(&self) -> &'static str {
        match self.pre {
            Pre::V01(_) => "0.1.0",
            Pre::V02(_) => "0.2.0",
        }
    }
}

/// The preamble of a wasm component: magic number, then version 0x0d and layer 1.
const COMPONENT_HEADER: [u8; 8] = [0, b'a', b's', b'm', 0x0d, 0x00, 0x01, 0x00];
/// The preamble of a core wasm module: magic number, then version 1 and layer 0.
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
    check_header(&path, bytes)?;
    let started = Instant::now();
    let component = Component::new(rt.engine(), bytes).map_err(|e| LoadError::Invalid {
        path: path.clone(),
        reason: format!("{e:#}"),
    })?;
    if let Some(import) = crate::sandbox::unknown_import(&component, rt.engine()) {
        return Err(LoadError::UnknownImport { path, import });
    }
    let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
        path: path.clone(),
        reason: format!("{e:#}"),
    };
    let linker =
        crate::sandbox::deny_the_rest(rt.linker(), &component, rt.engine()).map_err(wrong_world)?;
    let instance_pre = linker.instantiate_pre(&component).map_err(wrong_world)?;
    // The current contract first; a component that exports the 0.1 interface instead
    // gets the frozen one. The error names the current contract's mismatch.
    let pre = match v02::RouterPre::new(instance_pre.clone()) {
        Ok(pre) => Pre::V02(pre),
        Err(e) => match v01::RouterPre::new(instance_pre) {
            Ok(pre) => Pre::V01(pre),
            Err(_) => return Err(wrong_world(e)),
        },
    };
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

/// Sniffs the preamble, so that the common mistakes (an empty or half-written file, a
/// core module, not wasm at all) get a message that says what to do rather than the
/// validator's. Anything that passes may still fail to validate.
fn check_header(path: &Path, bytes: &[u8]) -> Result<(), LoadError> {
    let path = || path.to_path_buf();
    if bytes.is_empty() {
        return Err(LoadError::Empty(path()));
    }
    if bytes.len() < 8 && COMPONENT_HEADER.starts_with(bytes) {
        return Err(LoadError::Invalid {
            path: path(),
            reason: "the file ends inside the wasm header".into(),
        });
    }
    if bytes.len() < 8 || bytes[..4] != COMPONENT_HEADER[..4] {
        return Err(LoadError::NotWasm(path()));
    }
    if bytes[..8] == CORE_HEADER {
        return Err(LoadError::CoreModule(path()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sniff(bytes: &[u8]) -> Result<(), LoadError> {
        check_header(Path::new("p.wasm"), bytes)
    }

    #[test]
    fn a_component_header_passes() {
        assert!(sniff(&COMPONENT_HEADER).is_ok());
        let mut longer = COMPONENT_HEADER.to_vec();
        longer.extend_from_slice(b"sections follow");
        assert!(sniff(&longer).is_ok());
    }

    #[test]
    fn a_core_module_is_named_as_such() {
        let mut module = CORE_HEADER.to_vec();
        module.push(0x01);
        assert!(matches!(sniff(&CORE_HEADER), Err(LoadError::CoreModule(_))));
        assert!(matches!(sniff(&module), Err(LoadError::CoreModule(_))));
    }

    #[test]
    fn empty_and_cut_short_files_may_be_partial() {
        assert!(matches!(sniff(b""), Err(LoadError::Empty(_))));
        for len in 1..8 {
            let cut = sniff(&COMPONENT_HEADER[..len]);
            assert!(matches!(cut, Err(LoadError::Invalid { .. })), "{len} bytes");
            assert!(cut.is_err_and(|e| e.may_be_partial()));
        }
    }

    #[test]
    fn garbage_is_not_wasm() {
        for bytes in [&b"hello"[..], b"#!/bin/sh\necho hi\n", b"\0asX\x0d\0\x01\0"] {
            assert!(
                matches!(sniff(bytes), Err(LoadError::NotWasm(_))),
                "{bytes:?}"
            );
        }
        // A core module cut short is not a prefix of a component header either.
        assert!(matches!(
            sniff(&CORE_HEADER[..5]),
            Err(LoadError::NotWasm(_))
        ));
    }
}
