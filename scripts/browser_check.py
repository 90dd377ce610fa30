#!/usr/bin/env python3
"""Opens /docs in headless Chromium and checks what an operator sees.

Asserts that Swagger UI rendered every operation of /openapi.json (all eight domains plus the
probes), that the browser fetched nothing but loopback (the assets are compiled into the binary),
and saves a screenshot. Standard library only.

usage: browser_check.py BASE_URL SCREENSHOT.png
"""

import json
import re
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

DOMAINS = {"organizations", "users", "agents", "tokens", "directives", "memories", "sessions", "analytics"}

# As the workplace's probe starts it: no sandbox as root, and no background traffic that the closed
# network would refuse. The resolver rule makes any non-loopback host unresolvable.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--virtual-time-budget=20000",
]


def chromium(args, profile):
    cmd = ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout


def main():
    base, screenshot = sys.argv[1].rstrip("/"), Path(sys.argv[2])
    with urllib.request.urlopen(f"{base}/openapi.json") as response:
        spec = json.load(response)
    expected = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
    }
    problems = []
    with tempfile.TemporaryDirectory() as profile:
        netlog = Path(profile) / "netlog.json"
        dom = chromium([f"--log-net-log={netlog}", "--dump-dom", f"{base}/docs/"], profile + "/a")
        rendered = set(re.findall(r'opblock-summary-method">(\w+)</span>.*?data-path="([^"]+)"', dom))
        tags = set(re.findall(r'data-tag="([^"]+)"', dom))
        missing = sorted(expected - rendered)
        if missing:
            problems.append(f"operations not rendered: {missing}")
        if not DOMAINS <= tags:
            problems.append(f"domain sections missing: {sorted(DOMAINS - tags)}")
        # Requests the page itself started carry its origin as initiator; Chromium's own
        # background traffic (update checks and the like) does not, and is not the page's doing.
        origin = re.match(r"^https?://[^/]+", base).group(0)
        events = json.loads(netlog.read_text(errors="replace"))["events"]
        urls = {
            e["params"]["url"]
            for e in events
            if e.get("params", {}).get("initiator") == origin and "url" in e["params"]
        }
        foreign = sorted(u for u in urls if not u.startswith(origin + "/"))
        if foreign:
            problems.append(f"the page loaded non-loopback URLs: {foreign}")
        for needed in ("/docs/swagger-ui-bundle.js", "/openapi.json"):
            if origin + needed not in urls:
                problems.append(f"the page did not load {needed} (saw {sorted(urls)})")
        chromium(["--window-size=1280,4400", "--hide-scrollbars", f"--screenshot={screenshot}", f"{base}/docs/"], profile + "/b")
    if not screenshot.exists() or screenshot.stat().st_size < 10_000:
        problems.append("no screenshot")
    print(f"browser check: {len(rendered)} operations rendered in {len(tags)} sections, "
          f"{len(urls)} URLs fetched by the page, screenshot {screenshot}")
    if problems:
        print("browser check FAILED:\n  " + "\n  ".join(problems))
        return 1
    print("browser check: 1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
