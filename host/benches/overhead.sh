#!/usr/bin/env bash
# What the proxy itself costs: wrk against a zero-latency backend, directly and through
# Switchyard, nginx and HAProxy, interleaved in rounds on the same machine.
#
# Method: the backend and every proxy run pinned to CPU 0 (one worker each), wrk runs
# pinned to CPU 1, so each proxy gets the same CPU budget and shares it with the backend.
# Each round runs every configuration once, in the same order; the table reports the
# median of the rounds and each configuration's ratio to direct access.
#
# The h2c rows speak HTTP/2 (prior knowledge) to the backend, which serves both protocols:
# Switchyard --upstream-protocol h2c, and HAProxy `proto h2` as its like-for-like peer
# (nginx cannot proxy HTTP to an HTTP/2 upstream). Clients speak HTTP/1.1 in those rows.
#
# The TLS rows terminate TLS 1.3 from keep-alive wrk clients (https://): the same
# certificate (ECDSA P-256, made here with openssl) and the same cipher for all three
# proxies, TLS_AES_256_GCM_SHA384, which is what rustls agrees with OpenSSL's clients by
# default (it follows the client's order); nginx and HAProxy are limited to it, and each
# server's negotiated cipher is printed before the rounds. The h2load rows are HTTP/2
# clients over the same TLS (ALPN h2; CONNECTIONS connections, H2_STREAMS streams each),
# h2load on CPU 1 like wrk; they report h2load's req/s and mean latency, in their own table.
# The upstream side is HTTP/1.1 keep-alive in every TLS and h2load row.
#
# Env: ROUNDS (3), DURATION (5s), CONNECTIONS (50), WRK_THREADS (2), H2_STREAMS (10).
set -euo pipefail
cd "$(dirname "$0")/../.."

rounds=${ROUNDS:-3}
duration=${DURATION:-5s}
conns=${CONNECTIONS:-50}
wrk_threads=${WRK_THREADS:-2}
h2_streams=${H2_STREAMS:-10}
out="logs/overhead-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
for tool in wrk nginx haproxy taskset h2load openssl; do
  command -v "$tool" >/dev/null || PATH="$PATH:/usr/sbin"
  command -v "$tool" >/dev/null || { echo "error: $tool is missing: run .ci/setup (installs wrk, nginx, haproxy; h2load: apt-get install nghttp2-client)" >&2; exit 1; }
done

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
# exec: so that $! is the program itself, which the cleanup trap can then stop.
on_cpu0() { exec taskset -c 0 "$@"; }

be=18080
on_cpu0 ./target/release/backend --id Z --latencies 0 --port $be --threads 1 > "$out/backend.txt" 2>&1 & pids+=($!)

sy() { # port, extra flags...
  local port=$1; shift
  on_cpu0 ./target/release/switchyard --threads 1 --no-log --no-admin --no-watch --listen 127.0.0.1:$port \
    --backend http://127.0.0.1:$be "$@" > "$out/switchyard-$port.txt" 2>&1 & pids+=($!)
}
# One certificate for every TLS row; HAProxy wants certificate and key in one file.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$out/tls.key" -out "$out/tls.pem" 2>/dev/null
cat "$out/tls.pem" "$out/tls.key" > "$out/tls-haproxy.pem"
suite=TLS_AES_256_GCM_SHA384

sy 18081 --policy policies/rr.wasm
sy 18090 --policy policies/rr.wasm --tls-cert "$out/tls.pem" --tls-key "$out/tls.key"
sy 18082 --builtin-rr
sy 18086 --policy policies/rr.wasm --upstream non-persistent
sy 18088 --policy policies/rr.wasm --upstream-protocol h2c

# Every proxy does the same work per request as Switchyard: keeps the client's Host and
# adds X-Forwarded-For and X-Forwarded-Proto.
#
# nginx: one worker; the keepalive pool holds more idle connections than wrk opens, so
# nginx never has to reconnect (a smaller pool makes it close and reopen constantly).
nginx_conf() { # port, keepalive(yes|no), tls(yes|no)
  local port=$1 ka=$2 tls=${3:-no} dir="$out/nginx-$1"
  mkdir -p "$dir"
  cat > "$dir/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $PWD/$dir/nginx.pid;
error_log $PWD/$dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream backend {
    server 127.0.0.1:$be;
    $( [ "$ka" = yes ] && echo "keepalive $((conns * 4)); keepalive_requests 1000000;" )
  }
  server {
    $( if [ "$tls" = yes ]; then echo "listen 127.0.0.1:$port ssl http2;
    ssl_certificate $PWD/$out/tls.pem; ssl_certificate_key $PWD/$out/tls.key;
    ssl_protocols TLSv1.3; ssl_conf_command Ciphersuites $suite; ssl_session_cache off;"
    else echo "listen 127.0.0.1:$port;"; fi )
    keepalive_requests 1000000;
    http2_max_requests 100000000;
    location / {
      proxy_pass http://backend;
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      $( [ "$ka" = yes ] && echo 'proxy_http_version 1.1; proxy_set_header Connection "";' )
    }
  }
}
CONF
  on_cpu0 nginx -p "$PWD/$dir" -c "$PWD/$dir/nginx.conf" > "$dir/stdout.txt" 2>&1 & pids+=($!)
}
nginx_conf 18083 yes
nginx_conf 18084 no
nginx_conf 18091 yes yes

haproxy_conf() { # port, reuse mode (always | never | h2 | tls)
  local port=$1 mode=$2 dir="$out/haproxy-$1"
  mkdir -p "$dir"
  cat > "$dir/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option forwardfor
  $( case $mode in always|h2|tls) echo "http-reuse always" ;; *) echo "option http-server-close
  http-reuse never" ;; esac )
frontend fe
  bind 127.0.0.1:$port $( [ "$mode" = tls ] && echo "ssl crt $PWD/$out/tls-haproxy.pem alpn h2,http/1.1 ssl-min-ver TLSv1.3 ciphersuites $suite" )
  http-request set-header X-Forwarded-Proto $( [ "$mode" = tls ] && echo https || echo http )
  default_backend be
backend be
  server z 127.0.0.1:$be $( [ "$mode" = h2 ] && echo "proto h2" )
CONF
  on_cpu0 haproxy -f "$dir/haproxy.cfg" -db > "$dir/stdout.txt" 2>&1 & pids+=($!)
}
haproxy_conf 18085 always
haproxy_conf 18087 never
haproxy_conf 18089 h2
haproxy_conf 18092 tls

configs=(
  "direct:$be"
  "switchyard-persistent-wasm-rr:18081"
  "switchyard-persistent-native-rr:18082"
  "nginx-keepalive:18083"
  "nginx-no-keepalive:18084"
  "haproxy-reuse-always:18085"
  "switchyard-non-persistent:18086"
  "haproxy-server-close:18087"
  "switchyard-persistent-h2c-wasm-rr:18088"
  "haproxy-h2-upstream:18089"
  "switchyard-tls:18090"
  "nginx-tls:18091"
  "haproxy-tls:18092"
  "h2load-switchyard-tls:18090"
  "h2load-nginx-tls:18091"
  "h2load-haproxy-tls:18092"
)
# A row's URL: https for the TLS rows.
url() { case $1 in *tls*) echo "https://127.0.0.1:$2/" ;; *) echo "http://127.0.0.1:$2/" ;; esac; }
for c in "${configs[@]}"; do
  name=${c%%:*} port=${c##*:}
  for _ in $(seq 100); do curl -skf -o /dev/null "$(url "$name" "$port")" && break; sleep 0.1; done
  curl -skf -o /dev/null "$(url "$name" "$port")" || { echo "error: $name did not come up on :$port (see $out)" >&2; exit 1; }
done
for port in 18090 18091 18092; do
  got=$(openssl s_client -connect 127.0.0.1:$port -tls1_3 -alpn http/1.1 </dev/null 2>/dev/null | awk '/^New, TLS/ { print $2, $NF }')
  echo "TLS on :$port: $got"
  case $got in *"$suite"*) ;; *) echo "error: :$port did not negotiate $suite" >&2; exit 1 ;; esac
done

to_ms() { awk '{ v=$1; if (v ~ /us$/) { sub(/us$/,"",v); v/=1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v) } else if (v ~ /s$/) { sub(/s$/,"",v); v*=1000 } printf "%.3f", v }'; }

echo "method: wrk -t$wrk_threads -c$conns -d$duration on CPU 1; backend (zero latency) and proxy on CPU 0; $rounds rounds, interleaved; medians"
results="$out/results.tsv"
: > "$results"
for r in $(seq "$rounds"); do
  for c in "${configs[@]}"; do
    name=${c%%:*} port=${c##*:}
    printf '\r[round %d/%d] %-34s' "$r" "$rounds" "$name" >&2
    if [[ $name == h2load-* ]]; then
      # h2load: one thread like one wrk worker pair's CPU; mean latency in the p50 column.
      taskset -c 1 h2load -t"$wrk_threads" -c"$conns" -m"$h2_streams" -D"${duration%s}" "$(url "$name" "$port")" > "$out/h2load-$name-$r.txt" 2>&1
      rps=$(awk '/^finished in/ { gsub(",", ""); print $4 }' "$out/h2load-$name-$r.txt")
      p50=$(awk '$1 == "time" && $3 == "request:" { print $6 }' "$out/h2load-$name-$r.txt" | to_ms)
      p99=$(awk '$1 == "time" && $3 == "request:" { print $5 }' "$out/h2load-$name-$r.txt" | to_ms)
      errs=$(awk '/^requests:/ && ($10 != 0 || $12 != 0) { print }' "$out/h2load-$name-$r.txt" | tr '\n' ' ')
      printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$rps" "$p50" "$p99" "$errs" >> "$results"
      continue
    fi
    taskset -c 1 wrk -t"$wrk_threads" -c"$conns" -d"$duration" --latency "$(url "$name" "$port")" > "$out/wrk-$name-$r.txt" 2>&1
    rps=$(awk '/Requests\/sec/ { print $2 }' "$out/wrk-$name-$r.txt")
    p50=$(awk '$1 == "50%" { print $2 }' "$out/wrk-$name-$r.txt" | to_ms)
    p99=$(awk '$1 == "99%" { print $2 }' "$out/wrk-$name-$r.txt" | to_ms)
    errs=$(awk '/Socket errors|Non-2xx/ { print }' "$out/wrk-$name-$r.txt" | tr '\n' ' ')
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$rps" "$p50" "$p99" "$errs" >> "$results"
  done
done
printf '\r%60s\r' '' >&2

median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
declare -A RPS P50 P99
for c in "${configs[@]}"; do
  n=${c%%:*}
  RPS[$n]=$(awk -F'\t' -v n="$n" '$1 == n { print $2 }' "$results" | median)
  P50[$n]=$(awk -F'\t' -v n="$n" '$1 == n { print $3 }' "$results" | median)
  P99[$n]=$(awk -F'\t' -v n="$n" '$1 == n { print $4 }' "$results" | median)
done
direct=${RPS[direct]}
{
  printf '| configuration | req/s | p50 ms | p99 ms | vs direct |\n|---|---:|---:|---:|---:|\n'
  for c in "${configs[@]}"; do
    n=${c%%:*}
    [[ $n == h2load-* ]] && continue
    printf '| %s | %.0f | %.3f | %.3f | %.3fx |\n' "$n" "${RPS[$n]}" "${P50[$n]}" "${P99[$n]}" "$(echo "${RPS[$n]} / $direct" | bc -l)"
  done
  echo
  printf '| HTTP/2 clients (h2load -c%s -m%s, TLS) | req/s | mean ms | max ms | vs direct (wrk) |\n|---|---:|---:|---:|---:|\n' "$conns" "$h2_streams"
  for c in "${configs[@]}"; do
    n=${c%%:*}
    [[ $n == h2load-* ]] || continue
    printf '| %s | %.0f | %.3f | %.3f | %.3fx |\n' "$n" "${RPS[$n]}" "${P50[$n]}" "${P99[$n]}" "$(echo "${RPS[$n]} / $direct" | bc -l)"
  done
} | tee "$out/table.md"
errors=$(awk -F'\t' '$5 != "" { print $1 ": " $5 }' "$results")
[ -n "$errors" ] && { echo; echo "wrk or h2load reported errors:"; echo "$errors"; }

# Ratios are paired: A/B within each round (same minute, same machine state), then the
# median over rounds, which cancels most of the drift a noisy machine adds between rounds.
ratio() { # name-a name-b
  awk -F'\t' -v a="$1" -v b="$2" '$1 == a { x[++i] = $2 } $1 == b { y[++j] = $2 }
    END { for (k = 1; k <= i && k <= j; k++) print x[k] / y[k] }' "$results" | median
}
best_ka=$([ "$(echo "${RPS[nginx-keepalive]} >= ${RPS[haproxy-reuse-always]}" | bc)" = 1 ] && echo nginx-keepalive || echo haproxy-reuse-always)
best_np=$([ "$(echo "${RPS[nginx-no-keepalive]} >= ${RPS[haproxy-server-close]}" | bc)" = 1 ] && echo nginx-no-keepalive || echo haproxy-server-close)
echo
echo "ratios: median over rounds of each round's ratio"
printf 'persistent:     switchyard http1 / %s = %.2fx req/s (target >= 1.25x); p99 %.3f vs %.3f ms\n' \
  "$best_ka" "$(ratio switchyard-persistent-wasm-rr "$best_ka")" "${P99[switchyard-persistent-wasm-rr]}" "${P99[$best_ka]}"
printf 'persistent:     switchyard h2c   / %s = %.2fx req/s (target >= 1.25x); p99 %.3f vs %.3f ms\n' \
  "$best_ka" "$(ratio switchyard-persistent-h2c-wasm-rr "$best_ka")" "${P99[switchyard-persistent-h2c-wasm-rr]}" "${P99[$best_ka]}"
printf 'like for like:  switchyard h2c / haproxy-h2-upstream = %.2fx req/s; p99 %.3f vs %.3f ms\n' \
  "$(ratio switchyard-persistent-h2c-wasm-rr haproxy-h2-upstream)" "${P99[switchyard-persistent-h2c-wasm-rr]}" "${P99[haproxy-h2-upstream]}"
printf 'non-persistent: switchyard / %s = %.2fx req/s (target >= 1.1x)\n' "$best_np" "$(ratio switchyard-non-persistent "$best_np")"
best_tls=$([ "$(echo "${RPS[nginx-tls]} >= ${RPS[haproxy-tls]}" | bc)" = 1 ] && echo nginx-tls || echo haproxy-tls)
best_h2=$([ "$(echo "${RPS[h2load-nginx-tls]} >= ${RPS[h2load-haproxy-tls]}" | bc)" = 1 ] && echo h2load-nginx-tls || echo h2load-haproxy-tls)
printf 'tls (TLS 1.3):  switchyard / %s = %.2fx req/s, / nginx-tls = %.2fx, / haproxy-tls = %.2fx; p99 %.3f vs %.3f ms\n' \
  "$best_tls" "$(ratio switchyard-tls "$best_tls")" "$(ratio switchyard-tls nginx-tls)" "$(ratio switchyard-tls haproxy-tls)" "${P99[switchyard-tls]}" "${P99[$best_tls]}"
printf 'tls cost:       switchyard tls / switchyard http1 = %.3fx req/s\n' "$(ratio switchyard-tls switchyard-persistent-wasm-rr)"
printf 'h2 clients:     switchyard / %s = %.2fx req/s, / nginx = %.2fx, / haproxy = %.2fx; mean %.3f vs %.3f ms\n' \
  "$best_h2" "$(ratio h2load-switchyard-tls "$best_h2")" "$(ratio h2load-switchyard-tls h2load-nginx-tls)" "$(ratio h2load-switchyard-tls h2load-haproxy-tls)" "${P50[h2load-switchyard-tls]}" "${P50[$best_h2]}"
printf 'policy cost:    wasm rr / native rr = %.3fx req/s (target >= 0.97x)\n' \
  "$(ratio switchyard-persistent-wasm-rr switchyard-persistent-native-rr)"
echo "raw results: $out/"
