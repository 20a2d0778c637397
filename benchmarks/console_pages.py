"""Render the console's runs and models pages with 1,000 runs and 200 model versions in the store; report p50/p95.

    .venv/bin/python benchmarks/console_pages.py --runs 1000 --versions 200 --requests 60

Requests go through the ASGI app in-process (FastAPI's TestClient), so the figure is server time: session check,
service calls (run files, one MLflow registry query), template rendering. /healthz in the same run is the baseline
(what a request costs on this machine at this moment). Not a test: the figures go to docs/console.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.console.seeding import register_many, write_run_records  # noqa: E402


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18] if len(values) >= 20 else max(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--versions", type=int, default=200)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--home", type=Path, help="Reuse a workspace this script seeded before (skips seeding).")
    args = parser.parse_args()

    home = args.home or Path(tempfile.mkdtemp(prefix="mf-console-bench-"))
    os.environ["MEDFOUNDRY_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    print(f"workspace {home}")
    if args.home is None:
        seed(home, args.runs, args.versions)
    _measure(args)


def seed(home: Path, runs: int, versions: int) -> None:
    started = time.perf_counter()
    write_run_records(home, runs)
    model_dir = home / "model-files"
    model_dir.mkdir()
    (model_dir / "config.json").write_text('{"model_type": "tiny"}')
    register_many(home, versions, model_dir)
    print(f"seeded {runs} runs and {versions} model versions in {time.perf_counter() - started:.0f}s")


def _measure(args: argparse.Namespace) -> None:
    from fastapi.testclient import TestClient

    from medfoundry.console.app import ConsoleSettings, create_app
    from medfoundry.console.auth import AuthSettings, TokenEntry

    token = "benchmark-operator-token"
    auth = AuthSettings(tokens=[TokenEntry("bench", "viewer", hashlib.sha256(token.encode()).hexdigest())])
    client = TestClient(create_app(ConsoleSettings(auth=auth)))
    headers = {"Authorization": f"Bearer {token}"}
    pages = {"/healthz (baseline)": "/healthz", "/runs": "/runs", "/runs?page=20": "/runs?page=20", "/models": "/models"}
    for path in pages.values():  # warm-up: imports, template compilation
        assert client.get(path, headers=headers).status_code == 200, path
    shown, path = 0, "/models"
    while path:  # every version is reachable through the pages
        body = client.get(path, headers=headers).text
        shown += body.count('<td><a href="/models/')
        found = re.search(r'href="(/models\?page_token=[^"]+)"', body)
        path = found.group(1).replace("&amp;", "&") if found else ""
    assert shown == args.versions, f"the models pages list {shown} of {args.versions} versions"
    print(f"load average before: {os.getloadavg()}")
    # Wall time is what a user waits; CPU time (this process, all threads) is what the page costs, and is what a
    # loaded shared machine distorts least.
    print(f"{'page':<22}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'cpu p50':>9}{'cpu p95':>9}")
    for label, path in pages.items():
        times, cpu = [], []
        for _ in range(args.requests):
            t0, c0 = time.perf_counter(), time.process_time()
            response = client.get(path, headers=headers)
            times.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
            assert response.status_code == 200
        print(
            f"{label:<22}{statistics.median(times):>9.1f}{_p95(times):>9.1f}{max(times):>9.1f}"
            f"{statistics.median(cpu):>9.1f}{_p95(cpu):>9.1f}"
        )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
