#!/usr/bin/env python3
"""Load benchmark on loopback: ibex-api against a bare axum baseline measured in the same run.

Server processes run on core 0; wrk and the standalone auth service share core 1. Each round
runs every scenario once (interleaved, so drift hits all alike); the report gives medians over
rounds and each scenario's throughput as a ratio to bare axum *in the same round*.

usage: scripts/bench.py [--rounds 5] [--seconds 5] [--connections 32] [--out bench-results]
Needs: cargo, taskset, wrk (installed from Debian's packages when missing).
"""

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

TOKEN = "ibex_pat_0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e6f72_benchmarkTokenNotASecret00000000000000000"
SERVER_CORE, LOAD_CORE = "0", "1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # answering at all is enough
        except OSError:
            time.sleep(0.1)
    sys.exit(f"no answer from {url}")


def spawn(cmd, core, env=None):
    full_env = {"PATH": os.environ["PATH"], **(env or {})}
    return subprocess.Popen(["taskset", "-c", core, *cmd], env=full_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def to_ms(text):
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url, seconds, connections, headers=()):
    cmd = ["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = to_ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = to_ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if socket_errors:
        sys.exit(f"wrk socket errors on {url}: {socket_errors.group(1)}")
    return rps, p50, p99, int(errors.group(1)) if errors else 0


def peak_rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--out", default="bench-results")
    args = parser.parse_args()
    os.chdir(Path(__file__).resolve().parent.parent)
    if os.cpu_count() < 2:
        sys.exit("needs two cores: one for the server, one for the load")
    if not shutil.which("wrk"):
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "ibex-api",
                    "--example", "bare_axum", "--example", "axum_grpc_baseline"], check=True)

    release = Path("target/release")
    auth_port, bare_port, grpc_port, api_port, cached_port, quiet_port = (free_port() for _ in range(6))
    auth_addr = f"http://127.0.0.1:{auth_port}"
    api_env = lambda port, extra=None: {
        "IBEX_API_HOST": "127.0.0.1", "IBEX_API_PORT": str(port), "IBEX_API_AUTH_GRPC_ADDR": auth_addr,
        "IBEX_API_LOG_FORMAT": "json", "IBEX_API_LOG_LEVEL": "info", **(extra or {})}
    procs = {
        "auth": spawn([str(release / "ibex-api"), "dev-auth-server", "--listen", f"127.0.0.1:{auth_port}",
                       "--token", TOKEN], LOAD_CORE),
        "bare": spawn([str(release / "examples/bare_axum"), str(bare_port)], SERVER_CORE),
        "grpc": spawn([str(release / "examples/axum_grpc_baseline"), str(grpc_port), auth_addr, TOKEN], SERVER_CORE),
        "api": spawn([str(release / "ibex-api")], SERVER_CORE, api_env(api_port)),
        "cached": spawn([str(release / "ibex-api")], SERVER_CORE, api_env(cached_port, {"IBEX_API_AUTH_CACHE_TTL_MS": "60000"})),
        "quiet": spawn([str(release / "ibex-api")], SERVER_CORE, api_env(quiet_port, {"IBEX_API_LOG_LEVEL": "warn"})),
    }
    bearer = f"Authorization: Bearer {TOKEN}"
    scenarios = [
        ("bare axum hello-world (baseline)", f"http://127.0.0.1:{bare_port}/", (), "bare"),
        ("ibex-api GET /health", f"http://127.0.0.1:{api_port}/health", (), "api"),
        ("ibex-api GET /health, access log off (LOG_LEVEL=warn)", f"http://127.0.0.1:{quiet_port}/health", (), "quiet"),
        ("ibex-api GET /v1/agents, ValidateToken per request", f"http://127.0.0.1:{api_port}/v1/agents", (bearer,), "api"),
        ("ibex-api GET /v1/agents, validation cache on", f"http://127.0.0.1:{cached_port}/v1/agents", (bearer,), "cached"),
        ("reference: bare axum + one tonic call per request", f"http://127.0.0.1:{grpc_port}/", (), "grpc"),
    ]
    try:
        for _, url, _, _ in scenarios:
            wait_http(url.rsplit("/", 1)[0] + "/health" if "ibex" in url else url)
        for name, url, headers, _ in scenarios:  # warm-up: connections, caches, CPU frequency
            wrk(url, 2, args.connections, headers)
        results = {name: [] for name, *_ in scenarios}
        for round_no in range(1, args.rounds + 1):
            for name, url, headers, _ in scenarios:
                results[name].append(wrk(url, args.seconds, args.connections, headers))
            print(f"round {round_no}: " + ", ".join(f"{r[-1][0]:.0f}" for r in results.values()), flush=True)
        memory = {key: peak_rss_mib(proc.pid) for key, proc in procs.items()}
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait()

    baseline = results[scenarios[0][0]]
    lines = [
        f"Rounds: {args.rounds} x {args.seconds} s per scenario, {args.connections} connections, wrk -t1 on core {LOAD_CORE}, servers on core {SERVER_CORE}.",
        "",
        "| Scenario | req/s (median) | ratio to bare axum (median of per-round ratios) | p50 ms | p99 ms | non-2xx | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, _, _, proc_key in scenarios:
        runs = results[name]
        ratios = [run[0] / base[0] for run, base in zip(runs, baseline)]
        lines.append(
            f"| {name} | {statistics.median(r[0] for r in runs):,.0f} | {statistics.median(ratios):.1%} "
            f"| {statistics.median(r[1] for r in runs):.3f} | {statistics.median(r[2] for r in runs):.3f} "
            f"| {sum(r[3] for r in runs)} | {memory[proc_key]:.1f} |")
    lines += ["", "Per-round req/s:", ""]
    for name, runs in results.items():
        lines.append(f"- {name}: " + ", ".join(f"{r[0]:.0f}" for r in runs))
    report = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    (out / "latest.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
