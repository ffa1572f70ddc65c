# Switchyard tasks. `just --list` shows them all.

set shell := ["bash", "-euo", "pipefail", "-c"]

policies := "rr sma ewma peak-ewma"
fixtures := "trap-choose bad-index loop-forever grow-memory trap-init open-file other-world"

# Show the recipes.
default:
    @just --list

# Build the routing policies into policies/*.wasm (installs the wasm32-wasip2 target if missing).
build-policies:
    @rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
    cargo build --release --target wasm32-wasip2 --manifest-path policies/Cargo.toml {{ prepend("-p ", policies) }}
    @for p in {{ policies }}; do cp "policies/target/wasm32-wasip2/release/${p//-/_}.wasm" "policies/$p.wasm"; done
    @ls -l policies/*.wasm | awk '{ print "  " $9 " (" $5 " bytes)" }'

# Build the hostile test policies into policies/fixtures/wasm/ (used by host/tests).
build-fixtures:
    @rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
    cargo build --release --target wasm32-wasip2 --manifest-path policies/Cargo.toml {{ prepend("-p fixture-", fixtures) }}
    @mkdir -p policies/fixtures/wasm
    @for p in {{ fixtures }}; do cp "policies/target/wasm32-wasip2/release/fixture_${p//-/_}.wasm" "policies/fixtures/wasm/$p.wasm"; done

# Build the host and the backends (release).
build: build-policies
    cargo build --release --workspace --bins

# Run the study's three simulated backends A, B, C on :8081-8083.
backends: build
    ./target/release/backend --all

# Backends + proxy with a policy; Ctrl+C stops both.
run policy="ewma" upstream="persistent" *args="": build
    #!/usr/bin/env bash
    set -euo pipefail
    ./target/release/backend --all &
    backends=$!
    trap 'kill $backends 2>/dev/null; wait $backends 2>/dev/null' EXIT
    ./target/release/switchyard --policy policies/{{ policy }}.wasm --upstream {{ upstream }} {{ args }}

# The main job: the study's backends, the proxy with the ewma policy, and the dashboard.
demo: (run "ewma" "persistent")

# Everything CI checks: formatting, lints, policy unit tests, and the workspace tests.
test: build-policies build-fixtures
    cargo fmt --all -- --check
    cargo fmt --all --manifest-path policies/Cargo.toml -- --check
    cargo clippy --release --workspace --all-targets -- -D warnings
    cargo test --release --manifest-path policies/Cargo.toml -p switchyard-policy-common
    cargo test --release --workspace
