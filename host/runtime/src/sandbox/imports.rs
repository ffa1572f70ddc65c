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

/// Interfaces [`linker`] provides (any 0.2.x version). Any other WASI interface a policy
/// imports (sockets, HTTP, ...) is linked by [`deny_the_rest`] to functions that fault
/// when called.
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

/// The contract's own imports, any version: its `types` (type-only, nothing to link)
/// and 0.2's `host` interface.
const CONTRACT: &[&str] = &["switchyard:policy/types", "switchyard:policy/host"];

/// The first import of `component` that is neither WASI nor the contract, if any: no
/// host provides it, so the component is refused at load rather than linked to traps.
pub(crate) fn unknown_import(
    component: &wasmtime::component::Component,
    engine: &Engine,
) -> Option<String> {
    let ty = component.component_type();
    let names: Vec<String> = ty
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    names.into_iter().find(|name| {
        let unversioned = name.split('@').next().unwrap_or(name);
        !(LINKED.contains(&unversioned)
            || CONTRACT.contains(&unversioned)
            || unversioned.starts_with("wasi:"))
    })
}

/// `linker` for one component, with every WASI function it imports beyond [`LINKED`]
/// (e.g. the `wasi:sockets` and `wasi:http` that CPython's and SpiderMonkey's runtimes
/// import whether or not a policy uses them) defined as a function that fails when
/// called, naming itself, and its resources as opaque types that no function creates.
/// So such a component loads and runs, and gets nothing: its first call into a denied
/// interface is a fault. The shared linker is left as it is.
///
/// Why not wasmtime's `define_unknown_imports_as_traps`: it looks names up exactly, so a
/// component importing `wasi:io/streams@0.2.12` (the linker has 0.2.6, which semver
/// matching accepts) gets a second, stubbed `streams` whose resources clash with the real
/// ones. Here an interface is denied only when no version of it is linked, and a resource
/// a denied interface merely `use`s from a linked one (`input-stream` in `wasi:sockets/tcp`)
/// is left to the linked definition.
pub(crate) fn deny_the_rest(
    linker: &Linker<StoreState>,
    component: &wasmtime::component::Component,
    engine: &Engine,
) -> wasmtime::Result<Linker<StoreState>> {
    use wasmtime::component::types::ComponentItem;
    use wasmtime::component::ResourceType;
    let mut linker = linker.clone();
    // Resources already bound, by earlier imports (imports that `use` a type come after
    // the interface that defines it).
    let mut seen: Vec<ResourceType> = Vec::new();
    for (name, item) in component.component_type().imports(engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        let unversioned = name.split('@').next().unwrap_or(name);
        let denied = unversioned.starts_with("wasi:") && !LINKED.contains(&unversioned);
        let mut stubs = if denied {
            Some(linker.instance(name)?)
        } else {
            None
        };
        for (export, item) in instance.exports(engine) {
            match (item.ty, stubs.as_mut()) {
                (ComponentItem::Resource(ty), Some(stubs)) if !seen.contains(&ty) => {
                    stubs.resource(export, ResourceType::host::<Denied>(), |_, _| Ok(()))?;
                    seen.push(ty);
                }
                (ComponentItem::Resource(ty), _) => seen.push(ty),
                (ComponentItem::ComponentFunc(_), Some(stubs)) => {
                    let call = format!("{name}#{export}");
                    let interface = unversioned.to_string();
                    stubs.func_new(export, move |_, _, _, _| {
                        wasmtime::bail!(
                            "called {call}, but the sandbox denies policies {interface} (no network, files or other I/O; README, \"Sandbox\"): remove that call from the policy"
                        )
                    })?;
                }
                _ => {}
            }
        }
    }
    Ok(linker)
}

/// The host side of a denied interface's resources: never constructed, since every
/// function that could make one fails.
struct Denied;
