#!/usr/bin/env bash
# What a policy at each sandbox bound can cost the proxy: the `hostile` fixture set to
# misbehave right at a bound (not over it), against rr.wasm, in paired rounds.
#
# Part 1 (zero-latency backend): wrk against Switchyard with each configuration, in
# rounds; each round runs every configuration once, and the table reports each one's
# median req/s and its median paired ratio to rr.wasm (the goal: >= 0.8x, or the policy
# is faulted and disabled within seconds). Backend and proxies on CPU 0, wrk on CPU 1.
# Part 2 (the study's workload): backends A/B/C with their study cycles, wrk -t4 -c100,
# one run per configuration: p99 (the goal: <= 410 ms).
#
# Env: ROUNDS (3), DURATION (5s), STUDY_DURATION (10s), CONNECTIONS (50).
set -euo pipefail
cd "$(dirname "$0")/../.."

rounds=${ROUNDS:-3}
duration=${DURATION:-5s}
study_duration=${STUDY_DURATION:-10s}
conns=${CONNECTIONS:-50}
out="logs/sandbox-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
for tool in wrk taskset bc; do
  command -v "$tool" >/dev/null || { echo "error: $tool is missing: run .ci/setup" >&2; exit 1; }
done
hostile=policies/fixtures/wasm/hostile.wasm
[ -f "$hostile" ] || { echo "error: $hostile is missing: run just build-fixtures" >&2; exit 1; }

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
on_cpu0() { exec taskset -c 0 "$@"; }

# name | policy args (space-separated KEY=VALUE), each at a bound:
#   headers-32 / response-headers-32: the most names policy-info may list;
#   log-4096-per-call: 4 KiB of stderr every call, the per-call cap (the per-second cap
#     drops most of it); random-4096: the per-call cap of wasi:random;
#   spin-4ms: 4 ms of CPU per choose, just under the 5 ms deadline (over the budget:
#     it must be faulted and disabled); spin-4us / observe-spin-4us: a few microseconds
#     a call, over the 100 ms/s budget at these rates; scores-16: the scores cap (one
#     backend here), with
#     the dashboard's sampler asking every second; name-64: the longest name.
configs=(
  "rr.wasm|"
  "hostile-plain|"
  "headers-32|headers=32"
  "response-headers-32|response-headers=32"
  "log-4096-per-call|stderr-std-bytes=4095"
  "random-4096|random-bytes=4096"
  "spin-4ms|spin=2500000"
  "spin-4us|spin=3000"
  "observe-spin-4us|observe-spin=3000"
  "scores-16|scores=16"
  "name-64|name-bytes=64"
)

# Sets `flags` to a configuration's --policy and --policy-arg flags.
policy_flags() { # "name|args"
  local name=${1%%|*} args=${1#*|} a
  flags=(--policy "$hostile")
  [ "$name" = rr.wasm ] && flags=(--policy policies/rr.wasm)
  for a in $args; do flags+=(--policy-arg "$a"); done
}

be=18180
on_cpu0 ./target/release/backend --id Z --latencies 0 --port $be --threads 1 > "$out/backend.txt" 2>&1 & pids+=($!)
port=18181
declare -A PORT
for c in "${configs[@]}"; do
  name=${c%%|*}
  policy_flags "$c"
  admin=(--no-admin)
  [ "$name" = scores-16 ] && admin=(--admin 127.0.0.1:$((port + 100)))
  on_cpu0 ./target/release/switchyard --threads 1 --no-log --no-watch "${admin[@]}" --listen 127.0.0.1:$port \
    --backend http://127.0.0.1:$be "${flags[@]}" > "$out/switchyard-$name.txt" 2>&1 & pids+=($!)
  PORT[$name]=$port
  port=$((port + 1))
done
for c in "${configs[@]}"; do
  name=${c%%|*} p=${PORT[${c%%|*}]}
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$p/" && break; sleep 0.1; done
  curl -sf -o /dev/null "http://127.0.0.1:$p/" || { echo "error: $name did not come up on :$p (see $out)" >&2; exit 1; }
done

median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
to_ms() { awk '{ v=$1; if (v ~ /us$/) { sub(/us$/,"",v); v/=1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v) } else if (v ~ /s$/) { sub(/s$/,"",v); v*=1000 } printf "%.3f", v }'; }

echo "method: zero-latency backend; wrk -t2 -c$conns -d$duration on CPU 1, backend and proxy on CPU 0; $rounds rounds, interleaved; medians of req/s and of each round's ratio to rr.wasm"
results="$out/results.tsv"
: > "$results"
for r in $(seq "$rounds"); do
  for c in "${configs[@]}"; do
    name=${c%%|*}
    printf '\r[round %d/%d] %-24s' "$r" "$rounds" "$name" >&2
    taskset -c 1 wrk -t2 -c"$conns" -d"$duration" --latency "http://127.0.0.1:${PORT[$name]}/" > "$out/wrk-$name-$r.txt" 2>&1
    rps=$(awk '/Requests\/sec/ { print $2 }' "$out/wrk-$name-$r.txt")
    p99=$(awk '$1 == "99%" { print $2 }' "$out/wrk-$name-$r.txt" | to_ms)
    errs=$(awk '/Socket errors|Non-2xx/ { print }' "$out/wrk-$name-$r.txt" | tr '\n' ' ')
    printf '%s\t%s\t%s\t%s\n' "$name" "$rps" "$p99" "$errs" >> "$results"
  done
done
printf '\r%60s\r' '' >&2
ratio() { awk -F'\t' -v a="$1" '$1 == a { x[++i] = $2 } $1 == "rr.wasm" { y[++j] = $2 }
  END { for (k = 1; k <= i && k <= j; k++) print x[k] / y[k] }' "$results" | median; }
fate() { # log file: what the proxy's log says happened to the policy
  local log=$1
  if grep -q "POLICY DISABLED" "$log"; then echo "disabled $(grep -c 'faulted in' "$log") faults: $(grep -m1 -o 'faulted in [a-z]* ([a-z_]*)' "$log")"
  elif grep -q "faulted" "$log"; then echo "$(grep -c 'faulted' "$log") faults"
  else echo "no fault"; fi
}
{
  printf '| configuration | req/s | p99 ms | vs rr.wasm | what happened |\n|---|---:|---:|---:|---|\n'
  for c in "${configs[@]}"; do
    n=${c%%|*}
    rps=$(awk -F'\t' -v n="$n" '$1 == n { print $2 }' "$results" | median)
    p99=$(awk -F'\t' -v n="$n" '$1 == n { print $3 }' "$results" | median)
    printf '| %s | %.0f | %.3f | %.3fx | %s |\n' "$n" "$rps" "$p99" "$(ratio "$n")" "$(fate "$out/switchyard-$n.txt")"
  done
} | tee "$out/table.md"
errors=$(awk -F'\t' '$4 != "" { print $1 ": " $4 }' "$results")
[ -n "$errors" ] && { echo; echo "wrk reported errors:"; echo "$errors"; }

# Part 2: the study's workload, one proxy at a time (they share the three backends).
cleanup
pids=()
./target/release/backend --all --base-port 18280 > "$out/study-backends.txt" 2>&1 & pids+=($!)
sleep 0.5
echo
echo "method: the study's workload (backends A/B/C, wrk -t4 -c100 -d$study_duration), one run per configuration"
printf '| configuration | req/s | p99 ms | what happened |\n|---|---:|---:|---|\n' | tee "$out/study.md"
for c in "${configs[@]}"; do
  name=${c%%|*}
  policy_flags "$c"
  ./target/release/switchyard --no-log --no-watch --no-admin --listen 127.0.0.1:18290 "${flags[@]}" \
    --backend A=http://127.0.0.1:18280 --backend B=http://127.0.0.1:18281 --backend C=http://127.0.0.1:18282 \
    > "$out/study-$name.txt" 2>&1 & sp=$!
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:18290/" && break; sleep 0.1; done
  wrk -t4 -c100 -d"$study_duration" --latency "http://127.0.0.1:18290/" > "$out/study-wrk-$name.txt" 2>&1
  kill $sp; wait $sp 2>/dev/null || true
  rps=$(awk '/Requests\/sec/ { print $2 }' "$out/study-wrk-$name.txt")
  p99=$(awk '$1 == "99%" { print $2 }' "$out/study-wrk-$name.txt" | to_ms)
  printf '| %s | %.0f | %.1f | %s |\n' "$name" "$rps" "$p99" "$(fate "$out/study-$name.txt")" | tee -a "$out/study.md"
done
echo "raw results: $out/"
