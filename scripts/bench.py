#!/usr/bin/env python3
"""Load benchmark on loopback: ibex-api against baselines measured in the same run.

Server processes run on core 0; wrk, the standalone auth service and PostgreSQL share core 1.
Each round runs every scenario once (interleaved, so drift hits all alike); the report gives
medians over rounds and each scenario's throughput as a ratio to bare axum *in the same round*,
and the agents scenarios also as a ratio to the data-layer reference (bare axum + one tonic call
+ the same SQL through sqlx) in the same round.

Data: a throwaway PostgreSQL (`ibex-api dev-database`) whose development org holds 10 000 agents;
two more databases of the same cluster hold the same org with 1 000 and 1 000 000 agents, for the
deep-page scale check (a page at depth 900 in both, and at depth 900 000 in the large one).

Memories (scenarios named "memories"): two seeded agents get 100 000 memories each (every tenth
tagged `vip`); the list is measured with wrk like the agents list, beside the same SQL reference;
then, once, an export of 100 000 memories to the development S3 server (`ibex-api dev-s3`, which
checks signatures) with its wall time and the exporting process's peak RSS growth, and a bulk
delete of the other agent's 100 000 memories with its wall time.

Tag scale (scenarios named "tag-scale"): a third agent gets 1 000 000 memories, one in 1 000
tagged `rare`; the page of 20 with `tag=rare` beside the unfiltered page, at depth 1 and at depth
500 (a cursor after the 500th row of each list): the filtered page must stay within 2x.

Sessions (scenarios named "sessions"): 10 000 sessions in the org; a page of 20 beside the same
SQL reference.

Analytics (scenarios named "analytics"): a throwaway ClickHouse (`ibex-api dev-clickhouse`) with
10 000 000 trace rows over 90 days across 100 organizations (the development org one of them);
`usage?granularity=day` over 30 days and `latency?granularity=hour&percentile=99` over 7 days,
with the Redis cache off and on, at 4 connections (latency, not throughput, is the target).

Open loop (`--open-loop RATE`, default 1000, 0 for none): GET /v1/agents at a fixed rate for
10 s (examples/open_loop.rs; latency counted from each request's due time, which corrects
coordinated omission), for ibex-api, the SQL reference and, with --previous, the previous binary.

usage: scripts/bench.py [--rounds 5] [--seconds 5] [--connections 32] [--out bench-results]
                       [--only SUBSTRING ...]   (run only the scenarios whose names contain one)
                       [--open-loop 1000] [--previous BIN]
Needs: cargo, taskset, wrk (installed from Debian's packages when missing).
"""

import argparse
import base64
import hashlib
import hmac
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
DEV_ORG = "0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e6f70"
# Every ibex-api of a run signs cursors with it, so the script can make deep cursors itself.
BENCH_CURSOR_KEY = "bench-cursor-key-of-at-least-32-characters"
# A seeded agent of the development org (src/devenv/mod.rs).
DEV_AGENT = "0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e7001"
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


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids):
    """User + system CPU of these processes so far (/proc/PID/stat fields 14 and 15)."""
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / CLOCK_TICKS


def postgres_pids():
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if open(f"/proc/{entry}/comm").read().strip() == "postgres":
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


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


def psql(url, sql):
    return subprocess.run(["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
                          capture_output=True, text=True, check=True).stdout.strip()


def seed_agents(url, count):
    """`count` agents in the development org, one millisecond apart, newest first by index."""
    psql(url, f"""
        INSERT INTO ibex_core.agents (id, org_id, name, slug, config, created_at)
        SELECT gen_random_uuid(), '{DEV_ORG}', 'bench agent ' || n, 'bench-' || n,
               '{{"model": "m", "temperature": 0.2}}',
               now() - n * interval '1 millisecond'
        FROM generate_series(1, {count}) AS n""")
    psql(url, "ANALYZE ibex_core.agents")


def cursor_at(url, depth):
    """The cursor the API returns after the `depth`-th newest agent of the unfiltered list (the
    format of src/wire/pagination.rs: version, list fingerprint, microseconds, id)."""
    micros, agent_id = psql(url, f"""
        SELECT (extract(epoch FROM created_at) * 1000000)::bigint, id FROM ibex_core.agents
        WHERE org_id = '{DEV_ORG}' AND deleted_at IS NULL
        ORDER BY created_at DESC, id DESC OFFSET {depth - 1} LIMIT 1""").split("|")
    scope = hashlib.sha256(b"agents\x00status\x02").digest()[:8]
    raw = bytes([1]) + scope + int(micros).to_bytes(8, "big", signed=True) + bytes.fromhex(agent_id.replace("-", ""))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def seed_memories(url, agent, count, tag="vip", every=10):
    """`count` memories of `agent`, one second apart; every `every`-th carries `tag`."""
    ids = f"md5('{agent}' || n)::uuid"
    psql(url, f"""
        INSERT INTO ibex_core.memories (id, org_id, agent_id, content, content_hash, category,
                                        confidence, metadata, created_at, updated_at)
        SELECT {ids}, '{DEV_ORG}', '{agent}',
               'bench memory ' || n || ': the customer prefers "short" answers, in English',
               md5(n::text) || md5(n::text),
               (ARRAY['factual','preference','behavioral','episodic','procedural'])[1 + n % 5],
               (n % 100) / 100.0, '{{"k": 1}}',
               now() - n * interval '1 second', now() - n * interval '1 second'
        FROM generate_series(1, {count}) AS n""")
    psql(url, f"""
        INSERT INTO ibex_core.memory_tags (memory_id, org_id, tag)
        SELECT {ids}, '{DEV_ORG}', '{tag}' FROM generate_series(1, {count}) AS n WHERE n % {every} = 0""")
    psql(url, "ANALYZE ibex_core.memories; ANALYZE ibex_core.memory_tags")


def memories_cursor_at(url, agent, depth, tag=None):
    """The cursor the API returns after the `depth`-th row of an agent's memories list (status
    `active`, optionally one tag), in the format of src/wire/pagination.rs and the scope of
    src/domains/memories/model.rs."""
    tagged = f"AND EXISTS (SELECT 1 FROM ibex_core.memory_tags t WHERE t.memory_id = m.id AND t.tag = '{tag}')" if tag else ""
    micros, memory_id = psql(url, f"""
        SELECT (extract(epoch FROM created_at) * 1000000)::bigint, id FROM ibex_core.memories m
        WHERE org_id = '{DEV_ORG}' AND agent_id = '{agent}' AND deleted_at IS NULL AND status = 'active' {tagged}
        ORDER BY created_at DESC, id DESC OFFSET {depth - 1} LIMIT 1""").split("|")
    scope = hashlib.sha256()
    scope.update(b"memories")
    for name, value in [("agent_id", agent), ("category", None), ("status", "active"), ("source", None),
                        ("tag", tag), ("created_after", None), ("created_before", None)]:
        scope.update(b"\x00" + name.encode())
        scope.update(b"\x01" + value.encode() if value is not None else b"\x02")
    # Signed like src/wire/pagination.rs: HMAC-SHA256 over the organization, the list's scope and the
    # payload, keyed with the key every server of this run is given (BENCH_CURSOR_KEY).
    payload = (bytes([3]) + int(micros).to_bytes(8, "big", signed=True)
               + bytes.fromhex(memory_id.replace("-", "")))
    tag = hmac.new(BENCH_CURSOR_KEY.encode(), bytes.fromhex(DEV_ORG.replace("-", "")) + scope.digest()
                   + payload, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(payload + tag).rstrip(b"=").decode()


def seed_sessions(url, count):
    agents = ["0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e7001", "0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e7002",
              "0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e7003"]
    psql(url, f"""
        INSERT INTO ibex_core.sessions (id, org_id, agent_id, status, model, provider, turn_count,
                                        created_at, updated_at)
        SELECT gen_random_uuid(), '{DEV_ORG}', (ARRAY['{agents[0]}','{agents[1]}','{agents[2]}']::uuid[])[1 + n % 3],
               'completed', 'gpt-4o-mini', 'openai', 1 + n % 9,
               now() - n * interval '1 minute', now() - n * interval '1 minute'
        FROM generate_series(1, {count}) AS n""")
    psql(url, "ANALYZE ibex_core.sessions")


def clickhouse_query(url, sql):
    request = urllib.request.Request(url + "/", data=sql.encode(), method="POST")
    with urllib.request.urlopen(request, timeout=600) as response:
        return response.read().decode()


def seed_traces(url, rows, orgs):
    """`rows` traces over the last 90 days across `orgs` organizations (the dev org first)."""
    org_list = ",".join(f"'{o}'" for o in orgs)
    clickhouse_query(url, f"""
        INSERT INTO ibex.llm_traces
        SELECT hex(sipHash64(number)), arrayElement([{org_list}], 1 + number % {len(orgs)}),
               '{DEV_AGENT}', '', arrayElement(['gpt-4o-mini', 'claude-3-5-sonnet', 'llama-3.1-70b'], 1 + intDiv(number, 7) % 3),
               arrayElement(['openai', 'anthropic', 'groq'], 1 + intDiv(number, 7) % 3),
               toUInt32(200 + sipHash64(number + 1) % 1800), toUInt32(50 + sipHash64(number + 2) % 700),
               toUInt32(250 + sipHash64(number + 3) % 2500),
               toFloat32(2 + (sipHash64(number + 4) % 1200) / 100), toFloat32(120 + sipHash64(number + 5) % 900),
               toFloat32(800 + sipHash64(number + 6) % 3000), toUInt16(200),
               if(sipHash64(number + 7) % 100 < 3, 'UPSTREAM_TIMEOUT', ''),
               toDateTime(toUInt32(now()) - intDiv(number * 7776000, {rows}))
        FROM system.numbers LIMIT {rows}""")


def current_rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def api_call(method, url, body=None):
    import json
    request = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        text = response.read()
        return response.status, response.headers, (json.loads(text) if text else None)


def export_and_delete(port, pid, delete_agent):
    """One export of DEV_AGENT's 100 000 memories and one bulk delete of `delete_agent`'s."""
    base = f"http://127.0.0.1:{port}/v1/agents"
    rss_before = current_rss_mib(pid)
    started = time.time()
    status, headers, job = api_call("POST", f"{base}/{DEV_AGENT}/memories/export", {"format": "csv"})
    location = f"http://127.0.0.1:{port}{headers['Location']}"
    while job["status"] not in ("succeeded", "failed"):
        time.sleep(0.05)
        _, _, job = api_call("GET", location)
    export_s = time.time() - started
    if job["status"] != "succeeded":
        sys.exit(f"the export failed: {job}")
    growth = peak_rss_mib(pid) - rss_before
    with urllib.request.urlopen(job["download_url"], timeout=60) as response:
        downloaded = len(response.read())
    started = time.time()
    status, headers, _ = api_call("DELETE", f"{base}/{delete_agent}/memories?confirm=true")
    delete_s = time.time() - started
    return [
        f"Export of {job['row_count']:,} memories (CSV, {job['size_bytes'] / 2**20:.1f} MiB, downloaded "
        f"{downloaded / 2**20:.1f} MiB through its pre-signed URL): {export_s:.2f} s wall; the process's peak RSS "
        f"grew {growth:.1f} MiB (from {rss_before:.1f} MiB). Target: under 10 s, under 32 MiB.",
        f"Bulk delete of {headers.get('Ibex-Deleted-Count')} memories "
        f"(one transaction, history + outbox rows): {delete_s:.2f} s wall, status {status}.",
    ]


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
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--open-loop", type=int, default=1000, metavar="RATE",
                        help="requests/s of the open-loop latency run of GET /v1/agents (0: none)")
    parser.add_argument("--previous", default=None,
                        help="an ibex-api binary of an earlier commit, measured beside this one on the same data")
    args = parser.parse_args()
    os.chdir(Path(__file__).resolve().parent.parent)
    if os.cpu_count() < 2:
        sys.exit("needs two cores: one for the server, one for the load")
    if not shutil.which("wrk"):
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "ibex-api", "--example", "bare_axum",
                    "--example", "axum_grpc_baseline", "--example", "axum_grpc_sql_baseline",
                    "--example", "otlp_sink", "--example", "open_loop"], check=True)

    release = Path("target/release")
    database = subprocess.Popen(["taskset", "-c", LOAD_CORE, str(release / "ibex-api"), "dev-database"],
                                env={"PATH": os.environ["PATH"]}, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
    db_url = next(line for line in database.stdout if line.startswith("IBEX_API_DATABASE_URL=")).strip().split("=", 1)[1]
    scale_urls = {}
    for name in ("scale_1k", "scale_1m"):
        psql(db_url, f"CREATE DATABASE {name}")
        scale_urls[name] = db_url.rsplit("/", 1)[0] + "/" + name
        subprocess.run([str(release / "ibex-api"), "migrate"], check=True, stdout=subprocess.DEVNULL,
                       env={"PATH": os.environ["PATH"], "IBEX_API_DATABASE_URL": scale_urls[name]})
        psql(scale_urls[name], f"INSERT INTO ibex_core.organizations (id, name, slug) VALUES ('{DEV_ORG}', 'o', 'o')")
    print("seeding 10 000 + 1 000 + 1 000 000 agents", flush=True)
    seed_agents(db_url, 10_000)
    seed_agents(scale_urls["scale_1k"], 1_000)
    # The million rows take a while: only when a scale scenario runs.
    need_scale = not args.only or any("scale" in o for o in args.only)
    big = 1_000_000 if need_scale else 1_000
    seed_agents(scale_urls["scale_1m"], big)
    need_memories = not args.only or any("memories" in o for o in args.only)
    need_sessions = not args.only or any("sessions" in o for o in args.only)
    need_analytics = not args.only or any("analytics" in o for o in args.only)
    if need_sessions:
        seed_sessions(db_url, 10_000)
    ch_url, helpers = None, []
    if need_analytics:
        ch = subprocess.Popen([str(release / "ibex-api"), "dev-clickhouse"], env={"PATH": os.environ["PATH"]},
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        helpers.append(ch)
        ch_url = next(line for line in ch.stdout if line.startswith("IBEX_API_CLICKHOUSE_URL=")).strip().split("=", 1)[1]
        print("seeding 10 000 000 trace rows", flush=True)
        started = time.time()
        seed_traces(ch_url, 10_000_000, [DEV_ORG, *(str(__import__("uuid").uuid4()) for _ in range(99))])
        print(f"seeded in {time.time() - started:.1f} s", flush=True)
        redis_port = free_port()
        helpers.append(subprocess.Popen(["taskset", "-c", LOAD_CORE, "redis-server", "--port", str(redis_port),
                                         "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    delete_agent = "0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e7002"
    tag_agent = "0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e7003"
    need_tag_scale = not args.only or any("tag-scale" in o for o in args.only)
    tag_cursors = {}
    if need_tag_scale:
        print("seeding 1 000 000 memories, 1 in 1 000 tagged", flush=True)
        seed_memories(db_url, tag_agent, 1_000_000, tag="rare", every=1000)
        tag_cursors = {tag: memories_cursor_at(db_url, tag_agent, 500, tag) for tag in (None, "rare")}
    s3_settings = {}
    if need_memories:
        print("seeding 2 x 100 000 memories", flush=True)
        seed_memories(db_url, DEV_AGENT, 100_000)
        seed_memories(db_url, delete_agent, 100_000)
        s3 = subprocess.Popen([str(release / "ibex-api"), "dev-s3"], env={"PATH": os.environ["PATH"]},
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for line in s3.stdout:
            name, value = line.strip().split("=", 1)
            s3_settings[name] = value
            if name == "IBEX_API_ARCHIVE_BUCKET":
                break
    deep_1k, shallow_1m, deep_1m = (cursor_at(scale_urls["scale_1k"], 900), cursor_at(scale_urls["scale_1m"], 900),
                                    cursor_at(scale_urls["scale_1m"], big - 100))

    (auth_port, bare_port, grpc_port, sql_port, api_port, cached_port, quiet_port, k_port, m_port,
     sink_port, obs_port, obs_metrics_port, met_port, met_metrics_port, exp_port, chn_port,
     chc_port) = (free_port() for _ in range(17))
    auth_addr = f"http://127.0.0.1:{auth_port}"
    # The rate limiter is off except in its own scenario (it needs Redis, which the other
    # processes do not have); the previous binary does not know the setting at all.
    base_env = lambda port, extra=None: {
        "IBEX_API_HOST": "127.0.0.1", "IBEX_API_PORT": str(port), "IBEX_API_AUTH_GRPC_ADDR": auth_addr,
        "IBEX_API_DATABASE_URL": db_url, "IBEX_API_LOG_FORMAT": "json", "IBEX_API_LOG_LEVEL": "info",
        "IBEX_API_METRICS_ADDR": "",
        **(extra or {})}
    api_env = lambda port, extra=None: base_env(port, {"IBEX_API_RATE_LIMIT_ENABLED": "false",
                                                       "IBEX_API_CURSOR_KEYS": BENCH_CURSOR_KEY,
                                                       **(extra or {})})
    procs = {
        "auth": spawn([str(release / "ibex-api"), "dev-auth-server", "--listen", f"127.0.0.1:{auth_port}",
                       "--token", TOKEN], LOAD_CORE),
        "bare": spawn([str(release / "examples/bare_axum"), str(bare_port)], SERVER_CORE),
        "grpc": spawn([str(release / "examples/axum_grpc_baseline"), str(grpc_port), auth_addr, TOKEN], SERVER_CORE),
        "sql": spawn([str(release / "examples/axum_grpc_sql_baseline"), str(sql_port), auth_addr, TOKEN, db_url],
                     SERVER_CORE),
        "api": spawn([str(release / "ibex-api")], SERVER_CORE, api_env(api_port)),
        "cached": spawn([str(release / "ibex-api")], SERVER_CORE, api_env(cached_port, {"IBEX_API_AUTH_CACHE_TTL_MS": "60000"})),
        "quiet": spawn([str(release / "ibex-api")], SERVER_CORE, api_env(quiet_port, {"IBEX_API_LOG_LEVEL": "warn"})),
        "api_1k": spawn([str(release / "ibex-api")], SERVER_CORE,
                        api_env(k_port, {"IBEX_API_DATABASE_URL": scale_urls["scale_1k"]})),
        "api_1m": spawn([str(release / "ibex-api")], SERVER_CORE,
                        api_env(m_port, {"IBEX_API_DATABASE_URL": scale_urls["scale_1m"]})),
        "sink": spawn([str(release / "examples/otlp_sink"), str(sink_port)], LOAD_CORE),
        # Metrics on and every request traced, exported to the sink; the same build as "api".
        "observed": spawn([str(release / "ibex-api")], SERVER_CORE, api_env(obs_port, {
            "IBEX_API_METRICS_ADDR": f"127.0.0.1:{obs_metrics_port}",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}",
            "OTEL_TRACES_SAMPLER": os.environ.get("BENCH_SAMPLER", "parentbased_always_on"),
            "OTEL_TRACES_SAMPLER_ARG": os.environ.get("BENCH_SAMPLER_ARG", "1.0")})),
        "metrics_only": spawn([str(release / "ibex-api")], SERVER_CORE, api_env(met_port, {
            "IBEX_API_METRICS_ADDR": f"127.0.0.1:{met_metrics_port}"})),
    }
    prev_port = free_port()
    if args.previous:
        # Without this commit's settings, which an older binary refuses as unknown.
        previous_env = {k: v for k, v in base_env(prev_port).items() if k != "IBEX_API_CURSOR_KEYS"}
        procs["previous"] = spawn([str(Path(args.previous).resolve())], SERVER_CORE, previous_env)
    if need_analytics:
        procs["analytics_nocache"] = spawn([str(release / "ibex-api")], SERVER_CORE, api_env(chn_port, {
            "IBEX_API_CLICKHOUSE_URL": ch_url, "IBEX_API_REDIS_URL": ""}))
        procs["analytics_cache"] = spawn([str(release / "ibex-api")], SERVER_CORE, api_env(chc_port, {
            "IBEX_API_CLICKHOUSE_URL": ch_url, "IBEX_API_REDIS_URL": f"redis://127.0.0.1:{redis_port}"}))
    need_limiter = not args.only or any("rate limit" in o for o in args.only)
    limit_off_port, limit_on_port = free_port(), free_port()
    if need_limiter:
        limiter_redis = free_port()
        helpers.append(subprocess.Popen(["taskset", "-c", LOAD_CORE, "redis-server", "--port", str(limiter_redis),
                                         "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        limiter = {"IBEX_API_REDIS_URL": f"redis://127.0.0.1:{limiter_redis}",
                   # Limits far above the load: the cost of the check, never a 429.
                   "IBEX_API_RATE_LIMIT_ORG_PER_SECOND": "1000000", "IBEX_API_RATE_LIMIT_ORG_BURST": "1000000",
                   "IBEX_API_RATE_LIMIT_TOKEN_PER_SECOND": "1000000", "IBEX_API_RATE_LIMIT_TOKEN_BURST": "1000000"}
        procs["limit_off"] = spawn([str(release / "ibex-api")], SERVER_CORE, api_env(limit_off_port, limiter))
        procs["limit_on"] = spawn([str(release / "ibex-api")], SERVER_CORE, api_env(limit_on_port, {
            **limiter, "IBEX_API_RATE_LIMIT_ENABLED": "true"}))
    if need_memories:
        # Its own process, so its peak RSS is the export's; the bulk delete may take long.
        procs["exporter"] = spawn([str(release / "ibex-api")], SERVER_CORE, api_env(exp_port, {
            **s3_settings, "IBEX_API_REQUEST_TIMEOUT_MS": "120000",
            "IBEX_API_DATABASE_STATEMENT_TIMEOUT_MS": "60000"}))
    bearer = f"Authorization: Bearer {TOKEN}"
    local = "http://127.0.0.1"
    scenarios = [
        ("bare axum hello-world (baseline)", f"{local}:{bare_port}/", (), "bare"),
        ("ibex-api GET /health", f"{local}:{api_port}/health", (), "api"),
        ("ibex-api GET /health, access log off (LOG_LEVEL=warn)", f"{local}:{quiet_port}/health", (), "quiet"),
        ("reference: bare axum + one tonic call per request", f"{local}:{grpc_port}/", (), "grpc"),
        ("reference: bare axum + tonic + same SQL, list of 20", f"{local}:{sql_port}/v1/agents", (), "sql"),
        ("ibex-api GET /v1/agents (20 of 10 000), ValidateToken per request", f"{local}:{api_port}/v1/agents", (bearer,), "api"),
        ("ibex-api GET /v1/agents (20 of 10 000), validation cache on", f"{local}:{cached_port}/v1/agents", (bearer,), "cached"),
        ("reference: bare axum + tonic + same SQL, one agent", f"{local}:{sql_port}/v1/agents/{DEV_AGENT}", (), "sql"),
        ("ibex-api GET /v1/agents/{id}, ValidateToken per request", f"{local}:{api_port}/v1/agents/{DEV_AGENT}", (bearer,), "api"),
        ("ibex-api GET /v1/agents/{id}, validation cache on", f"{local}:{cached_port}/v1/agents/{DEV_AGENT}", (bearer,), "cached"),
        *([("previous commit: GET /v1/agents (20 of 10 000), ValidateToken per request",
            f"{local}:{prev_port}/v1/agents", (bearer,), "previous"),
           ("previous commit: GET /v1/agents/{id}, ValidateToken per request",
            f"{local}:{prev_port}/v1/agents/{DEV_AGENT}", (bearer,), "previous"),
           ("previous commit: GET /v1/sessions (20 of 10 000), ValidateToken per request",
            f"{local}:{prev_port}/v1/sessions", (bearer,), "previous"),
           ("previous commit: GET memories (20 of an agent's 100 000), ValidateToken per request",
            f"{local}:{prev_port}/v1/agents/{DEV_AGENT}/memories", (bearer,), "previous")]
          if args.previous else []),
        *([("rate limit: GET /v1/agents/{id}, limiter off (same Redis, publisher on)",
            f"{local}:{limit_off_port}/v1/agents/{DEV_AGENT}", (bearer,), "limit_off"),
           ("rate limit: GET /v1/agents/{id}, limiter on (one Lua call to Redis per request)",
            f"{local}:{limit_on_port}/v1/agents/{DEV_AGENT}", (bearer,), "limit_on")]
          if need_limiter else []),
        ("observability: GET /v1/agents/{id}, metrics and traces off", f"{local}:{api_port}/v1/agents/{DEV_AGENT}", (bearer,), "api"),
        ("observability: GET /v1/agents/{id}, metrics on, traces exported", f"{local}:{obs_port}/v1/agents/{DEV_AGENT}", (bearer,), "observed"),
        ("observability: GET /health, metrics and traces off", f"{local}:{api_port}/health", (), "api"),
        ("observability: GET /health, metrics on, traces exported", f"{local}:{obs_port}/health", (), "observed"),
        ("observability: GET /health, metrics on, traces off", f"{local}:{met_port}/health", (), "metrics_only"),
        ("reference: bare axum + tonic + same SQL, memories",
         f"{local}:{sql_port}/v1/agents/{DEV_AGENT}/memories", (), "sql"),
        ("ibex-api GET memories (20 of an agent's 100 000), ValidateToken per request",
         f"{local}:{api_port}/v1/agents/{DEV_AGENT}/memories", (bearer,), "api"),
        ("ibex-api GET memories?tag=vip (20 of 10 000 tagged), ValidateToken per request",
         f"{local}:{api_port}/v1/agents/{DEV_AGENT}/memories?tag=vip", (bearer,), "api"),
        ("tag-scale: memories, page 1 of an agent's 1 000 000",
         f"{local}:{api_port}/v1/agents/{tag_agent}/memories", (bearer,), "api"),
        ("tag-scale: memories?tag=rare (1 in 1 000), page 1",
         f"{local}:{api_port}/v1/agents/{tag_agent}/memories?tag=rare", (bearer,), "api"),
        ("tag-scale: memories, at depth 500",
         f"{local}:{api_port}/v1/agents/{tag_agent}/memories?cursor={tag_cursors.get(None)}", (bearer,), "api"),
        ("tag-scale: memories?tag=rare (1 in 1 000), at depth 500",
         f"{local}:{api_port}/v1/agents/{tag_agent}/memories?tag=rare&cursor={tag_cursors.get('rare')}", (bearer,), "api"),
        ("ibex-api GET /v1/sessions (20 of 10 000), ValidateToken per request",
         f"{local}:{api_port}/v1/sessions", (bearer,), "api"),
        ("scale: page at depth 900 of an org of 1 000", f"{local}:{k_port}/v1/agents?cursor={deep_1k}", (bearer,), "api_1k"),
        ("scale: page at depth 900 of an org of 1 000 000", f"{local}:{m_port}/v1/agents?cursor={shallow_1m}", (bearer,), "api_1m"),
        ("scale: page at depth 900 000 of an org of 1 000 000", f"{local}:{m_port}/v1/agents?cursor={deep_1m}", (bearer,), "api_1m"),
    ]
    if need_analytics:
        now = time.time()
        day = lambda t: time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(t))
        hour = lambda t: time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(t))
        usage = f"/v1/analytics/usage?start={day(now - 30 * 86400)}&end={day(now)}&granularity=day"
        latency = f"/v1/analytics/latency?start={hour(now - 7 * 86400)}&end={hour(now)}&granularity=hour&percentile=99"
        scenarios += [
            ("analytics: usage, day buckets over 30 days, cache off", f"{local}:{chn_port}{usage}", (bearer,), "analytics_nocache"),
            ("analytics: usage, day buckets over 30 days, cache on", f"{local}:{chc_port}{usage}", (bearer,), "analytics_cache"),
            ("analytics: latency p99, hour buckets over 7 days, cache off", f"{local}:{chn_port}{latency}", (bearer,), "analytics_nocache"),
            ("analytics: latency p99, hour buckets over 7 days, cache on", f"{local}:{chc_port}{latency}", (bearer,), "analytics_cache"),
        ]
    if args.only:
        keep = [s for s in scenarios if any(o in s[0] for o in args.only)]
        scenarios = [scenarios[0], *[s for s in keep if s is not scenarios[0]]]
    try:
        for _, url, _, _ in scenarios:
            wait_http(url.split("/v1/")[0] + "/health" if "/v1/" in url else url)
        # Analytics are measured at 4 connections: their target is a latency, not a throughput.
        conns = lambda name: 4 if name.startswith("analytics") else args.connections
        for name, url, headers, _ in scenarios:  # warm-up: connections, caches, CPU frequency
            wrk(url, 2, conns(name), headers)
        results = {name: [] for name, *_ in scenarios}
        cpu = {name: [] for name, *_ in scenarios}
        for round_no in range(1, args.rounds + 1):
            for name, url, headers, key in scenarios:
                server = [procs[key].pid] if key in procs else []
                before = (cpu_seconds(server), cpu_seconds(postgres_pids()))
                run = wrk(url, args.seconds, conns(name), headers)
                after = (cpu_seconds(server), cpu_seconds(postgres_pids()))
                requests = max(run[0] * args.seconds, 1)
                cpu[name].append(((after[0] - before[0]) / requests * 1e6, (after[1] - before[1]) / requests * 1e6))
                results[name].append(run)
            print(f"round {round_no}: " + ", ".join(f"{r[-1][0]:.0f}" for r in results.values()), flush=True)
        memory = {key: peak_rss_mib(proc.pid) for key, proc in procs.items()}
        open_loop_lines = []
        if args.open_loop:
            # Open loop: a fixed rate, latency counted from when each request was due
            # (examples/open_loop.rs), so a stall is not hidden by the load backing off.
            targets = [("ibex-api", api_port, "api"), ("reference (bare axum + tonic + same SQL)", sql_port, "sql")]
            if args.previous:
                targets.append(("previous commit", prev_port, "previous"))
            open_loop_lines = ["", f"Open loop at {args.open_loop} req/s, GET /v1/agents (20 of 10 000), 10 s after "
                               "2 s of warm-up, generator on core " + LOAD_CORE + " (latency from the due time):", "",
                               "| Server | requests | errors | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |",
                               "|---|---:|---:|---:|---:|---:|---:|---:|"]
            for label, port, key in targets:
                out = subprocess.run(["taskset", "-c", LOAD_CORE, str(release / "examples/open_loop"),
                                      f"{local}:{port}/v1/agents", TOKEN, str(args.open_loop), "10", "2"],
                                     check=True, capture_output=True, text=True).stdout
                r = __import__("json").loads(out)
                open_loop_lines.append(f"| {label} | {r['requests']} | {r['errors']} | {r['p50_ms']:.2f} | "
                                       f"{r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['p999_ms']:.2f} | {r['max_ms']:.2f} |")
        memories_lines = []
        if need_memories:
            wait_http(f"{local}:{exp_port}/health")
            memories_lines = export_and_delete(exp_port, procs["exporter"].pid, delete_agent)
    finally:
        extra = ([s3] if need_memories else []) + helpers
        for proc in [*procs.values(), database, *extra]:
            proc.terminate()
        for proc in [*procs.values(), database, *extra]:
            proc.wait()

    baseline = results[scenarios[0][0]]
    lines = [
        f"Rounds: {args.rounds} x {args.seconds} s per scenario, {args.connections} connections, wrk -t1 on core {LOAD_CORE}, servers on core {SERVER_CORE}.",
        "",
        "| Scenario | req/s (median) | ratio to bare axum (median of per-round ratios) | ratio to its SQL reference | p50 ms | p99 ms | non-2xx | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    list_ref = results.get("reference: bare axum + tonic + same SQL, list of 20")
    memories_ref = results.get("reference: bare axum + tonic + same SQL, memories")
    one_ref = results.get("reference: bare axum + tonic + same SQL, one agent")
    for name, _, _, proc_key in scenarios:
        runs = results[name]
        ratios = [run[0] / base[0] for run, base in zip(runs, baseline)]
        reference = (list_ref if name.startswith(("ibex-api GET /v1/agents (", "ibex-api GET /v1/sessions"))
                     else memories_ref if name.startswith("ibex-api GET memories")
                     else one_ref if name.startswith("ibex-api GET /v1/agents/{id}") else None)
        to_reference = (f"{statistics.median(r[0] / b[0] for r, b in zip(runs, reference)):.1%}"
                        if reference else "")
        lines.append(
            f"| {name} | {statistics.median(r[0] for r in runs):,.0f} | {statistics.median(ratios):.1%} "
            f"| {to_reference} | {statistics.median(r[1] for r in runs):.3f} | {statistics.median(r[2] for r in runs):.3f} "
            f"| {sum(r[3] for r in runs)} | {memory[proc_key]:.1f} |")
    p50 = lambda name: statistics.median(r[1] for r in results[name])
    if "scale: page at depth 900 of an org of 1 000" in results:
        small = p50("scale: page at depth 900 of an org of 1 000")
        lines += ["", "Scale (p50 of a deep page, ratio to the same depth in the org of 1 000): "
                  f"depth 900 of 1 000 000: {p50('scale: page at depth 900 of an org of 1 000 000') / small:.2f}x, "
                  f"depth 900 000 of 1 000 000: {p50('scale: page at depth 900 000 of an org of 1 000 000') / small:.2f}x"]
    if "tag-scale: memories, page 1 of an agent's 1 000 000" in results:
        ratio = lambda tagged, plain: p50(tagged) / p50(plain)
        lines += ["", "Tag scale (p50 of the page with tag=rare over the unfiltered page, same depth): "
                  f"depth 1: {ratio('tag-scale: memories?tag=rare (1 in 1 000), page 1', 'tag-scale: memories, page 1 of an agent' + chr(39) + 's 1 000 000'):.2f}x, "
                  f"depth 500: {ratio('tag-scale: memories?tag=rare (1 in 1 000), at depth 500', 'tag-scale: memories, at depth 500'):.2f}x"]
    for what in ("GET /v1/agents/{id}", "GET /health"):
        off, on = (f"observability: {what}, metrics and traces off", f"observability: {what}, metrics on, traces exported")
        if off in results and on in results:
            cost = statistics.median(1 - r[0] / b[0] for r, b in zip(results[on], results[off]))
            lines += ["", f"Observability cost, {what} (median of per-round throughput ratios): {cost:.1%}"]
    pairs = [("ibex-api GET /v1/agents (20 of 10 000), ValidateToken per request",
              "previous commit: GET /v1/agents (20 of 10 000), ValidateToken per request"),
             ("ibex-api GET /v1/agents/{id}, ValidateToken per request",
              "previous commit: GET /v1/agents/{id}, ValidateToken per request"),
             ("ibex-api GET /v1/sessions (20 of 10 000), ValidateToken per request",
              "previous commit: GET /v1/sessions (20 of 10 000), ValidateToken per request"),
             ("ibex-api GET memories (20 of an agent's 100 000), ValidateToken per request",
              "previous commit: GET memories (20 of an agent's 100 000), ValidateToken per request")]
    if any(new in results and old in results for new, old in pairs):
        lines += ["", "This commit against the previous one, same run, same data (medians; CPU per request from "
                  "/proc, the API process and all PostgreSQL processes):", "",
                  "| Scenario | req/s ratio | API CPU µs/req (this / previous) | PostgreSQL CPU µs/req (this / previous) | p99 ms (this / previous) |",
                  "|---|---:|---:|---:|---:|"]
        for new, old in pairs:
            if new in results and old in results:
                ratio = statistics.median(n[0] / o[0] for n, o in zip(results[new], results[old]))
                api = (statistics.median(c[0] for c in cpu[new]), statistics.median(c[0] for c in cpu[old]))
                pg = (statistics.median(c[1] for c in cpu[new]), statistics.median(c[1] for c in cpu[old]))
                p99 = (statistics.median(r[2] for r in results[new]), statistics.median(r[2] for r in results[old]))
                lines.append(f"| {new.split(',')[0]} | {ratio:.2f}x | {api[0]:.0f} / {api[1]:.0f} | "
                             f"{pg[0]:.0f} / {pg[1]:.0f} | {p99[0]:.2f} / {p99[1]:.2f} |")
    lines += open_loop_lines
    if memories_lines:
        lines += ["", *memories_lines]
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
