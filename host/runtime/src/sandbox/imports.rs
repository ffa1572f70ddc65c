//! The WASI allow-list: the linker that gives policies the subset described in the
//! parent module, and the check that refuses, by name, a policy importing anything else.
//! Both live here because they must agree: `LINKED` names what `linker` adds.
use wasmtime::component::Linker;
use wasmtime::Engine;
use wasmtime_wasi::p2::bindings::sync::io::{poll, streams};

use super::random::CappedRandom;
use super::wasi_io::{ErrorIo, SyncIo, Table};
use super::StoreState;

/// The linker with the WASI subset described in the `sandbox` module (and in `LINKED`).
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<StoreState>> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};
    let mut l = Linker::new(engine);
    clocks::wall_clock::add_to_linker::<_, WasiClocks>(&mut l, |t: &mut StoreState| t.clocks())?;
    clocks::monotonic_clock::add_to_linker::<_, WasiClocks>(&mut l, |t: &mut StoreState| {
        t.clocks()
    })?;
    filesystem::preopens::add_to_linker::<_, WasiFilesystem>(&mut l, |t: &mut StoreState| {
        t.filesystem()
    })?;
    // wasmtime-wasi's sync filesystem bindings run every operation through `in_tokio`
    // (`Handle::block_on`), which panics on a Tokio worker, unlike our `wasi:io`. They are
    // safe only because they are unreachable: every operation needs a descriptor, and
    // with no preopens a policy can never obtain one. The `open-file` fixture checks it.
    wasmtime_wasi::p2::bindings::sync::filesystem::types::add_to_linker::<_, WasiFilesystem>(
        &mut l,
        |t: &mut StoreState| t.filesystem(),
    )?;
    // Bounded per call (`Limits::random_bytes_per_call`); see `random::Capped`.
    random::random::add_to_linker::<_, CappedRandom>(&mut l, |t: &mut StoreState| t.random())?;
    random::insecure::add_to_linker::<_, CappedRandom>(&mut l, |t: &mut StoreState| t.random())?;
    random::insecure_seed::add_to_linker::<_, wasmtime_wasi::random::WasiRandom>(
        &mut l,
        |t: &mut StoreState| t.wasi.random(),
    )?;
    cli::exit::add_to_linker::<_, WasiCli>(&mut l, |t: &mut StoreState| t.cli())?;
    cli::environment::add_to_linker::<_, WasiCli>(&mut l, |t: &mut StoreState| t.cli())?;
    cli::stdin::add_to_linker::<_, WasiCli>(&mut l, |t: &mut StoreState| t.cli())?;
    cli::stdout::add_to_linker::<_, WasiCli>(&mut l, |t: &mut StoreState| t.cli())?;
    cli::stderr::add_to_linker::<_, WasiCli>(&mut l, |t: &mut StoreState| t.cli())?;
    cli::terminal_input::add_to_linker::<_, WasiCli>(&mut l, |t: &mut StoreState| t.cli())?;
    cli::terminal_output::add_to_linker::<_, WasiCli>(&mut l, |t: &mut StoreState| t.cli())?;
    cli::terminal_stdin::add_to_linker::<_, WasiCli>(&mut l, |t: &mut StoreState| t.cli())?;
    cli::terminal_stdout::add_to_linker::<_, WasiCli>(&mut l, |t: &mut StoreState| t.cli())?;
    cli::terminal_stderr::add_to_linker::<_, WasiCli>(&mut l, |t: &mut StoreState| t.cli())?;
    wasmtime_wasi::p2::bindings::io::error::add_to_linker::<_, ErrorIo>(
        &mut l,
        |t: &mut StoreState| &mut t.table,
    )?;
    poll::add_to_linker::<_, SyncIo>(&mut l, |t: &mut StoreState| Table(&mut t.table))?;
    streams::add_to_linker::<_, SyncIo>(&mut l, |t: &mut StoreState| Table(&mut t.table))?;
    // The contract's own imports (0.2); 0.1 components import none, and ignore them.
    crate::bindings::v02::switchyard::policy::host::add_to_linker::<
        _,
        wasmtime::component::HasSelf<StoreState>,
    >(&mut l, |t: &mut StoreState| t)?;
    Ok(l)
}

/// Interfaces [`linker`] provides (any 0.2.x version). A policy importing any other WASI
/// interface (sockets, HTTP, ...) is refused at load.
const LINKED: &[&str] = &[
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:filesystem/preopens",
    "wasi:filesystem/types",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:cli/exit",
    "wasi:cli/environment",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
];

/// An import the sandbox does not provide, found at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unprovided {
    /// A WASI interface the sandbox denies (sockets, HTTP, ...).
    Wasi(String),
    /// Neither WASI nor the contract's own `host` interface: no host provides it.
    Unknown(String),
}

/// The contract's own imports, any version: its `types` (type-only, nothing to link)
/// and 0.2's `host` interface.
const CONTRACT: &[&str] = &["switchyard:policy/types", "switchyard:policy/host"];

/// The first import of `component` that the sandbox does not provide, if any (e.g. a
/// policy that uses `std::net` imports `wasi:sockets/tcp`).
pub(crate) fn unprovided_import(
    component: &wasmtime::component::Component,
    engine: &Engine,
) -> Option<Unprovided> {
    let ty = component.component_type();
    let names: Vec<String> = ty
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    names.into_iter().find_map(|name| {
        let unversioned = name.split('@').next().unwrap_or(&name);
        if LINKED.contains(&unversioned) || CONTRACT.contains(&unversioned) {
            None
        } else if unversioned.starts_with("wasi:") {
            Some(Unprovided::Wasi(name))
        } else {
            Some(Unprovided::Unknown(name))
        }
    })
}
