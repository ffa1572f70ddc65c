# Switchyard tasks. `just --list` shows them all.

set shell := ["bash", "-euo", "pipefail", "-c"]

policies := "rr sma ewma peak-ewma sticky least-request prequal wrr-orca maglev slo"
fixtures := "trap-choose bad-index loop-forever grow-memory trap-init open-file other-world rr-v01 ewma-v01 peak-ewma-v01 ledger hostile made-up-import wrong-choose denied"

# Show the recipes.
default:
    @just --list

# Build the routing policies into policies/*.wasm (installs the wasm32-wasip2 target if missing).
build-policies:
    @rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
    cargo build --release --target wasm32-wasip2 --manifest-path policies/Cargo.toml {{ prepend("-p ", policies) }}
    @for p in {{ policies }}; do cp "policies/target/wasm32-wasip2/release/${p//-/_}.wasm" "policies/$p.wasm"; done
    @ls -l policies/*.wasm | awk '{ print "  " $9 " (" $5 " bytes)" }'

# Build the hostile test policies into policies/fixtures/wasm/ (used by host/tests/all).
build-fixtures:
    @rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
    cargo build --release --target wasm32-wasip2 --manifest-path policies/Cargo.toml {{ prepend("-p fixture-", fixtures) }}
    @mkdir -p policies/fixtures/wasm
    @for p in {{ fixtures }}; do cp "policies/target/wasm32-wasip2/release/fixture_${p//-/_}.wasm" "policies/fixtures/wasm/$p.wasm"; done

# Build the host and the backends (release). With the test targets: they unify dependency
# features (dev-dependencies turn some on), so `just test` and `just demo` share one build
# of wasmtime instead of compiling it twice.
build: build-policies
    cargo build --release --workspace --bins --tests

# Run the study's three simulated backends A, B, C on :8081-8083.
backends: build
    ./target/release/backend --all

# Backends + proxy with a policy; Ctrl+C stops both.
run policy="ewma" upstream="persistent" *args="": build
    #!/usr/bin/env bash
    set -euo pipefail
    ./target/release/backend --all &
    backends=$!
    trap 'kill $backends 2>/dev/null || true; wait $backends 2>/dev/null || true' EXIT
    # Ctrl+C reaches both; the proxy drains and flushes its log, then exits 0.
    status=0
    ./target/release/switchyard --policy policies/{{ policy }}.wasm --upstream {{ upstream }} {{ args }} || status=$?
    exit $status

# The main job: the study's backends, the proxy with the ewma policy, and the dashboard.
demo: (run "ewma" "persistent")

# The layout's rules, checked on the dependency graph: a crate that gains a dependency it must
# not have fails here even before any code uses it (README, "Layout").
layout:
    #!/usr/bin/env bash
    set -euo pipefail
    fail=0
    # crate, tree flags, crates it must not reach
    check() {
      local crate=$1 flags=$2 banned=$3 found
      found=$(cargo tree -q -p "$crate" -e normal --prefix none $flags | awk '{print $1}' | sort -u | grep -xE "$banned" | tr '\n' ' ' || true)
      if [ -n "$found" ]; then echo "layout: $crate must not depend on: $found"; fail=1; fi
    }
    check switchyard-runtime ""          "hyper|http|h2|notify|clap|switchyard-upstream|switchyard-listener"
    check switchyard-upstream ""         "switchyard-runtime|clap|notify"
    check switchyard-sim "--depth 1"     "tokio|hyper|http"
    check switchyard-sim ""              "hyper|plotters"
    check switchyard-report ""           "switchyard-runtime|tokio|hyper|plotters"
    check switchyard "--no-default-features" "plotters|ab_glyph|switchyard-sim|switchyard-analyze"
    [ "$fail" = 0 ] && echo "layout: every crate's dependencies point the documented way"
    exit "$fail"

# Everything CI checks: formatting, lints, the layout, policy unit tests, the workspace tests,
# and the headless-browser dashboard test (node + chromium, which `.ci/setup` installs).
test: build-policies build-fixtures layout
    cargo fmt --all -- --check
    cargo fmt --all --manifest-path policies/Cargo.toml -- --check
    cargo clippy --release --workspace --all-targets -- -D warnings
    cargo test --release --manifest-path policies/Cargo.toml -p switchyard-policy-common -p peak-ewma -p least-request -p prequal -p wrr-orca -p maglev -p slo
    cargo test --release --workspace
    # --workspace, not -p switchyard: the same feature set as above, so nothing is rebuilt.
    cargo test --release --workspace --test all -- --ignored dashboard_

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

# For every upstream mode and every policy in policies/*.wasm (drop a policy in the folder
# and it joins), the proxy under `wrk --latency` with the study's load, then `switchyard
# analyze` (tables, charts, REPORT.md). Environment variables: DURATION (120s),
# CONNECTIONS (100), THREADS (4), MODES ("persistent non-persistent"), POLICIES (all
# policies/*.wasm, by stem). Layout: logs/<run-id>/<upstream>-<policy>/{requests.csv,
# wrk.txt,console.txt}, params.txt, backends.txt, then REPORT.md and the fig7..fig10 charts.
# Ctrl+C stops everything it started. Installs wrk (Debian package) if it is missing.
# The study's benchmark, all modes x policies, then the report (quick: DURATION=10s just bench).
bench: build
    #!/usr/bin/env bash
    set -euo pipefail
    duration="${DURATION:-120s}"; connections="${CONNECTIONS:-100}"; threads="${THREADS:-4}"
    modes="${MODES:-persistent non-persistent}"
    policies="${POLICIES:-$(for f in policies/*.wasm; do basename "$f" .wasm; done | tr '\n' ' ')}"
    fail() { echo "error: $*" >&2; exit 2; }
    [[ "$duration" =~ ^[0-9]+[smh]?$ ]] || fail "DURATION=$duration: write e.g. 120s, 2m or 1h (as wrk's -d takes it)"
    [[ "$connections" =~ ^[1-9][0-9]*$ ]] || fail "CONNECTIONS=$connections: write a whole number, e.g. 100"
    [[ "$threads" =~ ^[1-9][0-9]*$ ]] || fail "THREADS=$threads: write a whole number, e.g. 4"
    (( threads <= connections )) || fail "THREADS=$threads exceeds CONNECTIONS=$connections (wrk needs a connection per thread)"
    for m in $modes; do [[ "$m" == persistent || "$m" == non-persistent ]] || fail "MODES: unknown mode '$m': use persistent and/or non-persistent"; done
    for p in $policies; do [ -f "policies/$p.wasm" ] || fail "POLICIES: policies/$p.wasm does not exist (have: $(cd policies && ls *.wasm | tr '\n' ' '))"; done
    [ -n "$modes" ] && [ -n "$policies" ] || fail "nothing to run: MODES and POLICIES must not be empty"
    if ! command -v wrk >/dev/null; then
      echo "wrk is missing: installing the Debian package"
      sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
      $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >/dev/null
    fi
    busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
    for port in 8081 8082 8083 9090; do
      ! busy "$port" || fail "port $port is in use (another proxy or \`just backends\`?): stop it and retry"
    done
    case "$duration" in *h) secs=$(( ${duration%h} * 3600 ));; *m) secs=$(( ${duration%m} * 60 ));; *) secs=${duration%s};; esac
    human() { if (( $1 >= 60 )); then echo "$(( $1 / 60 ))m $(( $1 % 60 ))s"; else echo "$1s"; fi; }
    admin=""; ./target/release/switchyard --help | grep -q -- '--no-admin' && admin="--no-admin"

    run_id="bench-$(date -u +%Y%m%dT%H%M%SZ)"; out="logs/$run_id"; mkdir -p "$out"
    pids=()
    stop_all() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done; pids=(); }
    trap stop_all EXIT
    trap 'echo; echo "interrupted: stopping the proxy, wrk and backends this run started (logs so far in $out/)"; exit 130' INT TERM
    wait_port() { for _ in $(seq 100); do busy "$1" && return 0; kill -0 "$2" 2>/dev/null || return 1; sleep 0.1; done; return 1; }

    {
      echo "run_id=$run_id"; echo "started=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
      echo "commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo '+changes')"
      echo "wrk=wrk -t$threads -c$connections -d$duration --latency http://127.0.0.1:9090/"
      echo "modes=$modes"; echo "policies=$policies"; echo "cores=$(nproc)"
    } > "$out/params.txt"
    ./target/release/backend --all > "$out/backends.txt" 2>&1 & be=$!; pids+=("$be")
    for port in 8081 8082 8083; do wait_port "$port" "$be" || fail "the backends did not start: see $out/backends.txt"; done

    n=0; total=$(( $(wc -w <<< "$modes") * $(wc -w <<< "$policies") ))
    per=$(( secs + 3 ))   # wrk's run plus starting and stopping the proxy
    echo "bench $run_id: $total configurations x $duration, wrk -t$threads -c$connections; logs in $out/"
    for mode in $modes; do
      for policy in $policies; do
        n=$(( n + 1 )); dir="$out/$mode-$policy"; mkdir -p "$dir"
        left=$(( (total - n + 1) * per ))
        line="[$n/$total] $mode $policy: $duration run, ~$(human "$left") left"
        echo "$line"
        ./target/release/switchyard --policy "policies/$policy.wasm" --upstream "$mode" --log "$dir/requests.csv" \
            --no-watch $admin > "$dir/console.txt" 2>&1 & px=$!; pids=("$be" "$px")
        if ! wait_port 9090 "$px"; then
          echo "error: the proxy did not start; its output ($dir/console.txt):" >&2; tail -n 20 "$dir/console.txt" >&2; exit 1
        fi
        wrk -t"$threads" -c"$connections" -d"$duration" --latency http://127.0.0.1:9090/ > "$dir/wrk.txt" 2>&1 & wk=$!; pids=("$be" "$px" "$wk")
        start=$SECONDS
        while kill -0 "$wk" 2>/dev/null; do
          sleep 1
          if [ -t 1 ]; then printf '\r  %3ds of %s, ~%s left in total ' $(( SECONDS - start )) "$duration" "$(human $(( left - SECONDS + start > 0 ? left - SECONDS + start : 0 )))"; fi
        done
        [ -t 1 ] && printf '\r\033[K'
        wait "$wk" || echo "  warning: wrk failed, see $dir/wrk.txt"
        kill -INT "$px"; wait "$px" || echo "  warning: the proxy exited with an error, see $dir/console.txt"
        pids=("$be")
        grep -h '^Requests/sec' "$dir/wrk.txt" | sed 's/^/  wrk /' || true
      done
    done
    stop_all
    echo
    ./target/release/switchyard analyze "$out"
    echo; echo "Report: $out/REPORT.md (charts: $out/fig7..fig10 .svg/.png)"

# What the proxy costs: direct vs Switchyard vs nginx vs HAProxy against a zero-latency
# backend, interleaved rounds, medians (env: ROUNDS, DURATION, CONNECTIONS).
bench-overhead: build
    @[ -x /usr/sbin/nginx ] && [ -x /usr/sbin/haproxy ] && command -v bc h2load openssl >/dev/null || { echo "installing nginx, haproxy, bc, h2load, openssl (Debian)"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx haproxy bc nghttp2-client openssl >/dev/null; }
    bash host/benches/overhead.sh
    # --workspace: the feature set of `just build`, so wasmtime is not compiled again.
    cargo bench --workspace --bench policy_call -- --noplot 2>/dev/null | grep -E '^choose|time:|^paired'

# What a policy at each sandbox bound costs: the hostile fixture at each bound against
# rr.wasm (paired rounds, zero-latency backend), then p99 on the study's workload.
bench-sandbox: build build-fixtures
    bash host/benches/sandbox.sh

# Every policy in policies/ on every scenario in scenarios/, in the simulator: one markdown
# table per scenario, and logs/matrix/MATRIX.md with its chart (deterministic for a seed).
matrix *args="": build
    ./target/release/switchyard matrix --out logs/matrix {{ args }}

# Simulator against live: each new policy on the scenarios `backend` can serve (study,
# queues), run live (backends + proxy + wrk) and simulated; mean within 3 %, shares within
# 3 points (env: POLICIES, SCENARIOS, DURATION, CONNECTIONS, WARMUP, OVERHEAD).
agree: build
    @command -v wrk >/dev/null || { echo "error: wrk is missing: run .ci/setup" >&2; exit 2; }
    python3 host/benches/agree.py
