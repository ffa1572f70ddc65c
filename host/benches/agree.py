#!/usr/bin/env python3
"""Does the simulator agree with a live run? (`just agree`)

For each policy and each scenario that `backend`'s flags can express (latency cycles or a
constant, capacity, load reports; no timed changes, no errors, no request keys), this runs
the scenario twice with the same load, closed-loop clients on `CONNECTIONS` connections for
`DURATION` seconds:

- live: one `backend` process per scenario backend, the proxy in front with the policy,
  `wrk` as the clients;
- simulated: `switchyard simulate` on the same file.

Both write the proxy's CSV log, and both are summarised here by the same code, leaving out
the first `WARMUP` seconds of each: mean latency and each backend's share. It prints one
markdown row per pair with the differences, and `agrees` when the mean is within 3 % and
every share within 3 points (the policy-library issue's bar).

Environment: POLICIES (default "least-request prequal wrr-orca maglev slo"), SCENARIOS
(default "study steps"), DURATION (30), CONNECTIONS (100), WARMUP (5), OVERHEAD
(the simulator's per-request proxy time, default 0.2ms: what the proxy adds live here).
"""
import csv
import datetime
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, "target", "release")
FIRST_PORT = 18101
PROXY_PORT = 19090


def fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def expressible(path):
    """The `backend` command lines for a scenario, or the reason it cannot be run live."""
    with open(path, "rb") as f:
        sc = tomllib.load(f)
    if "keys" in sc or "client_timeout" in sc or "timeout" in sc:
        return None, "request keys or timeouts"
    lines = []
    port = FIRST_PORT
    for b in sc.get("backend", []):
        if b.get("change") or b.get("error_rate") or b.get("replicas"):
            return None, f"backend {b.get('id')}: changes, errors or replicas"
        if "cycle_ms" in b:
            cycle = b["cycle_ms"]
        elif b.get("latency", {}).get("dist") == "constant":
            cycle = [b["latency"]["ms"]]
        else:
            return None, f"backend {b.get('id')}: a latency distribution"
        args = [os.path.join(BIN, "backend"), "--id", b["id"], "--port", str(port),
                "--latencies", ",".join(str(x) for x in cycle)]
        if "capacity" in b:
            args += ["--capacity", str(b["capacity"])]
        if b.get("report_load"):
            args.append("--report-load")
        lines.append((b["id"], port, args))
        port += 1
    return lines, None


def wait_port(port, proc, what):
    for _ in range(200):
        if proc.poll() is not None:
            fail(f"{what} exited early")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    fail(f"{what} did not listen on {port}")


def summary(path, warmup_s):
    """Mean latency (ms) and shares (percent by backend id) after the warm-up."""
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            t = datetime.datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00"))
            rows.append((t.timestamp(), r["backend_id"], float(r["latency_ms"])))
    if not rows:
        return 0.0, {}, 0
    # A row is stamped when the request ended; its start is that minus its latency.
    t0 = min(t - lat / 1000 for t, _, lat in rows)
    kept = [(b, lat) for t, b, lat in rows if t - lat / 1000 - t0 >= warmup_s]
    n = len(kept)
    mean = sum(lat for _, lat in kept) / max(n, 1)
    shares = {}
    for b, _ in kept:
        shares[b] = shares.get(b, 0) + 100.0 / max(n, 1)
    return mean, shares, n


def live(policy, backends, duration, connections, out):
    procs = []
    try:
        for bid, port, args in backends:
            p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(p)
            wait_port(port, p, f"backend {bid}")
        flags = []
        for bid, port, _ in backends:
            flags += ["--backend", f"{bid}=http://127.0.0.1:{port}"]
        proxy = subprocess.Popen(
            [os.path.join(BIN, "switchyard"), "--listen", f"127.0.0.1:{PROXY_PORT}",
             "--policy", os.path.join(ROOT, "policies", f"{policy}.wasm"),
             "--log", out, "--no-watch", "--no-admin", *flags],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proxy)
        wait_port(PROXY_PORT, proxy, "the proxy")
        subprocess.run(["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{duration}s",
                        f"http://127.0.0.1:{PROXY_PORT}/"], check=True,
                       stdout=subprocess.DEVNULL)
        proxy.send_signal(signal.SIGINT)
        proxy.wait(timeout=30)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def simulated(policy, scenario, duration, connections, overhead, out):
    subprocess.run(
        [os.path.join(BIN, "switchyard"), "simulate", "--policy",
         os.path.join(ROOT, "policies", f"{policy}.wasm"), "--scenario", scenario,
         "--duration", f"{duration}s", "--connections", str(connections),
         "--overhead", overhead, "--csv", out],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    policies = os.environ.get("POLICIES", "least-request prequal wrr-orca maglev slo").split()
    scenarios = os.environ.get("SCENARIOS", "study steps").split()
    duration = int(os.environ.get("DURATION", "30"))
    connections = int(os.environ.get("CONNECTIONS", "100"))
    warmup = float(os.environ.get("WARMUP", "5"))
    overhead = os.environ.get("OVERHEAD", "0.2ms")
    if warmup >= duration:
        fail(f"WARMUP={warmup} must be shorter than DURATION={duration}")
    for p in policies:
        if not os.path.exists(os.path.join(ROOT, "policies", f"{p}.wasm")):
            fail(f"POLICIES: policies/{p}.wasm does not exist: run `just build-policies`")
    print(f"method: live = backend processes + switchyard + wrk -t2 -c{connections} -d{duration}s; "
          f"simulated = switchyard simulate --connections {connections} --duration {duration}s "
          f"--overhead {overhead}; both leave out requests sent in the first {warmup:g} s\n")
    print("| policy | scenario | live mean ms | sim mean ms | Δ mean | live shares | sim shares "
          "| max Δ share | verdict |")
    print("|---|---|---:|---:|---:|---|---|---:|---|")
    tmp = tempfile.mkdtemp(prefix="agree-")
    for sname in scenarios:
        path = os.path.join(ROOT, "scenarios", f"{sname}.toml")
        if not os.path.exists(path):
            fail(f"SCENARIOS: scenarios/{sname}.toml does not exist")
        backends, why = expressible(path)
        if backends is None:
            print(f"| (all) | {sname} | | | | | | | not expressible live: {why} |")
            continue
        for policy in policies:
            lcsv = os.path.join(tmp, f"{sname}-{policy}-live.csv")
            scsv = os.path.join(tmp, f"{sname}-{policy}-sim.csv")
            live(policy, backends, duration, connections, lcsv)
            simulated(policy, path, duration, connections, overhead, scsv)
            lm, ls, _ = summary(lcsv, warmup)
            sm, ss, _ = summary(scsv, warmup)
            ids = [b for b, _, _ in backends]
            dmean = (lm / sm - 1) * 100 if sm else float("nan")
            dshare = max(abs(ls.get(b, 0) - ss.get(b, 0)) for b in ids)
            fmt = lambda s: " / ".join(f"{s.get(b, 0):.1f}" for b in ids)
            ok = abs(dmean) <= 3 and dshare <= 3
            print(f"| {policy} | {sname} | {lm:.1f} | {sm:.1f} | {dmean:+.1f}% | {fmt(ls)} | "
                  f"{fmt(ss)} | {dshare:.1f} | {'agrees' if ok else 'differs'} |", flush=True)


if __name__ == "__main__":
    main()
