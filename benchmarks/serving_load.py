"""Bounded load test of `medfoundry serve`: sequential baseline vs dynamic batching at concurrency 8 and 16.

    .venv/bin/python benchmarks/serving_load.py                      # tiny random-init VLM built from the tiny profile
    .venv/bin/python benchmarks/serving_load.py --model models:/medfoundry-medvlm@champion

The server runs as a real `medfoundry serve` process on 127.0.0.1 (client and server do not share a GIL). Phases:
  sequential   one request at a time (the baseline)
  c8-nobatch   concurrency 8 against a server with max_batch_size=1 (concurrency without batching)
  c8           concurrency 8, dynamic batching (max_batch_size 8)
  c16          concurrency 16, 500 requests: must finish with 0 errors
Every 4th request carries a PNG image. Results: JSON (--out) and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-key"
QUESTIONS = [
    "Is there a pleural effusion on this chest radiograph?",
    "What is the first-line drug for type 2 diabetes mellitus?",
    "Describe the findings of this brain MRI.",
    "Which lobe is affected by the pneumonia?",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tiny_model(folder: Path) -> Path:
    from medfoundry.config import load_profile
    from medfoundry.models.loading import build_base_model

    corpus = [q + " The radiograph shows consolidation; metformin treats diabetes." for q in QUESTIONS] * 10
    build_base_model(load_profile("tiny").model, corpus, folder)
    return folder


def png_uri() -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (96, 96), (90, 90, 90)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


class Server:
    def __init__(self, model: str, max_batch_size: int, max_queue: int, max_new_tokens: int, threads: int, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log.open("w")
        cmd = [
            sys.executable, "-m", "medfoundry.cli", "serve", "--model", model, "--port", str(self.port),
            "--model-name", "medvlm", "--backend", "transformers", "--max-batch-size", str(max_batch_size),
            "--max-queue", str(max_queue), "--max-new-tokens", str(max_new_tokens), "--threads", str(threads),
        ]
        self.proc = subprocess.Popen(cmd, env={**os.environ, "MEDFOUNDRY_API_KEY": KEY}, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited; see {self.log.name}")
            try:
                if httpx.get(self.url + "/v2/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise TimeoutError("server did not become ready")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


async def run_phase(url: str, requests: int, concurrency: int, max_tokens: int, image: str) -> dict:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    tokens = 0
    counter = iter(range(requests))

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal tokens
        for i in counter:
            question = QUESTIONS[i % len(QUESTIONS)]
            content = question if i % 4 else [
                {"type": "image_url", "image_url": {"url": image}}, {"type": "text", "text": question}
            ]
            body = {"model": "medvlm", "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens}
            started = time.perf_counter()
            try:
                response = await client.post(url + "/openai/v1/chat/completions", json=body)
            except httpx.HTTPError as err:
                errors[type(err).__name__] = errors.get(type(err).__name__, 0) + 1
                continue
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1
            else:
                tokens += response.json()["usage"]["completion_tokens"]

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=300, limits=limits, headers={"Authorization": f"Bearer {KEY}"}) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests": requests,
        "concurrency": concurrency,
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "seconds": round(elapsed, 2),
        "requests_per_s": round(requests / elapsed, 2),
        "completion_tokens_per_s": round(tokens / elapsed, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 1) if ordered else None,
        "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000, 1) if ordered else None,
    }


def machine() -> dict:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu or platform.processor(), "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["phases"])
    rows = [results["phases"][n] for n in names]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.bar(names, [r["requests_per_s"] for r in rows], color="#4c72b0")
    left.set_ylabel("requests / s")
    left.set_title("throughput")
    x = range(len(names))
    right.bar([i - 0.2 for i in x], [r["p50_ms"] for r in rows], width=0.4, label="p50")
    right.bar([i + 0.2 for i in x], [r["p99_ms"] for r in rows], width=0.4, label="p99")
    right.set_xticks(list(x), names)
    right.set_ylabel("latency (ms)")
    right.set_title("latency")
    right.legend()
    fig.suptitle(f"medfoundry serve, {results['model']}, max_tokens {results['max_tokens']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="Model to serve (default: a tiny random-init VLM built from the tiny profile).")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--sequential", type=int, default=150, help="Requests in the sequential baseline.")
    parser.add_argument("--c8", type=int, default=600, help="Requests at concurrency 8.")
    parser.add_argument("--c16", type=int, default=500, help="Requests at concurrency 16.")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the server (1: best for tiny models).")
    parser.add_argument("--skip-nobatch", action="store_true", help="Skip the concurrency-8 run without batching.")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "serving_load.json")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    workdir = Path(tempfile.mkdtemp(prefix="serving-load-"))
    model = args.model or str(tiny_model(workdir / "model"))
    image = png_uri()
    results: dict = {"machine": machine(), "command": " ".join([Path(sys.executable).name, *sys.argv]),
                     "model": args.model or "tiny random-init Qwen2-VL (tiny profile)", "max_tokens": args.max_tokens, "server_threads": args.threads,
                     "phases": {}}

    def phase(server: Server, name: str, requests: int, concurrency: int) -> None:
        asyncio.run(run_phase(server.url, 8, min(concurrency, 8), args.max_tokens, image))  # warm-up
        results["phases"][name] = asyncio.run(run_phase(server.url, requests, concurrency, args.max_tokens, image))
        print(f"{name}: {results['phases'][name]}", flush=True)

    if not args.skip_nobatch:
        server = Server(model, 1, 64, args.max_tokens, args.threads, workdir / "serve-nobatch.log")
        try:
            server.wait_ready()
            phase(server, "c8-nobatch", args.c8, 8)
        finally:
            server.stop()
    server = Server(model, 8, 64, args.max_tokens, args.threads, workdir / "serve.log")
    try:
        server.wait_ready()
        phase(server, "sequential", args.sequential, 1)
        phase(server, "c8", args.c8, 8)
        phase(server, "c16", args.c16, 16)
    finally:
        server.stop()

    order = ["sequential", "c8-nobatch", "c8", "c16"]
    results["phases"] = p = {k: results["phases"][k] for k in order if k in results["phases"]}
    results["speedup_c8_vs_sequential"] = round(p["c8"]["requests_per_s"] / p["sequential"]["requests_per_s"], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print("\n| phase | requests | concurrency | errors | req/s | tokens/s | p50 ms | p99 ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, row in p.items():
        print(f"| {name} | {row['requests']} | {row['concurrency']} | {row['errors']} | {row['requests_per_s']} | "
              f"{row['completion_tokens_per_s']} | {row['p50_ms']} | {row['p99_ms']} |")
    plot(results, args.out.with_suffix(".png"))
    print(f"\nthroughput c8 / sequential: {results['speedup_c8_vs_sequential']}x; results in {args.out}")
    ok = p["c16"]["errors"] == 0 and results["speedup_c8_vs_sequential"] >= 3
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
