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

# Hot swap under load: wrk for 30 s against rr, swapped to ewma at 10 s and sma at 20 s by
# rewriting the policy file; prints wrk's summary, shares per policy and swap times.
swap-demo duration="30": build
    #!/usr/bin/env bash
    set -euo pipefail
    command -v wrk >/dev/null || { echo "error: wrk is missing: run .ci/setup (installs it)" >&2; exit 1; }
    out="logs/swap-demo-$(date -u +%Y%m%dT%H%M%SZ)"; mkdir -p "$out"
    cp policies/rr.wasm "$out/policy.wasm"
    ./target/release/backend --all > "$out/backends.txt" 2>&1 & be=$!
    ./target/release/switchyard --policy "$out/policy.wasm" --log "$out/requests.csv" > "$out/console.txt" 2> "$out/proxy.log" & px=$!
    trap 'kill $px $be 2>/dev/null || true' EXIT
    for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:9090/ && break; sleep 0.1; done
    third=$(( {{ duration }} / 3 ))
    echo "wrk -t4 -c100 -d{{ duration }}s: rr, then ewma at ${third}s, then sma at $(( 2 * third ))s"
    wrk -t4 -c100 -d{{ duration }}s --latency http://127.0.0.1:9090/ > "$out/wrk.txt" & wrk=$!
    sleep "$third"; date -u +%H:%M:%S.%N > "$out/swap-times.txt"; cp policies/ewma.wasm "$out/policy.wasm"
    sleep "$third"; date -u +%H:%M:%S.%N >> "$out/swap-times.txt"; cp policies/sma.wasm "$out/policy.wasm"
    wait $wrk
    kill -INT $px; wait $px || true
    echo; sed -n '/Latency Distribution/,$p' "$out/wrk.txt"
    echo; echo "Share per backend, by routing_mode (from $out/requests.csv):"
    awk -F, 'NR > 1 { if (!($5 in n)) order[++k] = $5; n[$5]++; c[$5, $6]++ }
         END { for (i = 1; i <= k; i++) { m = order[i]
               printf "  %-15s %6d requests  A %5.1f%%  B %5.1f%%  C %5.1f%%\n", m, n[m], 100*c[m,"A"]/n[m], 100*c[m,"B"]/n[m], 100*c[m,"C"]/n[m] } }' "$out/requests.csv"
    echo; echo "Swaps (from the proxy's log):"; grep -h "policy swap" "$out/proxy.log" | sed 's/^.*policy swap/  policy swap/'
    echo; echo "File change -> first request routed by the new policy (request start = log time - latency):"
    awk -F, -v changes="$(tr '\n' ' ' < "$out/swap-times.txt")" '
         function secs(hms,   p) { split(hms, p, ":"); return p[1]*3600 + p[2]*60 + p[3] }
         NR > 1 { start = secs(substr($1, 12, 12)) - $3/1000
                  if (!($5 in first)) { order[++k] = $5; first[$5] = start }
                  if (start < first[$5]) first[$5] = start }
         END { split(changes, ch, " ")
               for (i = 2; i <= k; i++) printf "  %-15s %.1f ms\n", order[i], (first[order[i]] - secs(ch[i-1]))*1000 }' "$out/requests.csv"
    echo; echo "Everything is in $out/"
