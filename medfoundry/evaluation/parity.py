"""Run lm-evaluation-harness's own code on our items and compare it with our `loglikelihood` protocol.

The harness runs in its own virtual environment (`make lm-eval`: `.venv-lmeval`, lm-eval==0.4.13), offline, on an
ordinary HF model folder. Our items are written in each upstream dataset's schema, and a task YAML per benchmark
`include`s the harness's own task file (its prompt functions, choices and metrics) with only the data source swapped
for the local JSONL, so the prompts are the harness's, not a copy of them.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medfoundry.evaluation.benchmarks import BENCHMARKS, EvalItem

LM_EVAL_VENV = ".venv-lmeval"
LM_EVAL_VERSION = "0.4.13"


def harness_python(root: Path) -> Path | None:
    """The harness venv's python under the repository root, or None when `make lm-eval` has not created it."""
    python = Path(root) / LM_EVAL_VENV / "bin" / "python"
    return python if python.is_file() else None


def upstream_doc(item: EvalItem) -> dict[str, Any]:
    """The item in the upstream dataset's schema, as the harness's task functions read it."""
    letters = list(item.options or {})
    texts = list((item.options or {}).values())
    if item.benchmark == "medqa":
        doc = {"sent1": item.question, **{f"ending{i}": t for i, t in enumerate(texts)}, "label": letters.index(item.answer)}
    elif item.benchmark == "medmcqa":
        doc = {"question": item.question, **dict(zip(("opa", "opb", "opc", "opd"), texts, strict=True))}
        doc["cop"] = letters.index(item.answer)  # the HF dataset's 0-based index, which the harness's task reads
    elif item.benchmark == "pubmedqa":
        doc = {"QUESTION": item.question, "CONTEXTS": (item.context or "").split("\n"), "final_decision": item.answer}
    elif item.benchmark == "mmlu_medical":
        doc = {"question": item.question, "choices": texts, "answer": letters.index(item.answer)}
    else:
        raise ValueError(f"{item.benchmark}: no lm-evaluation-harness task to compare with")
    return {**doc, "mf_id": item_key(item)}


def item_key(item: EvalItem) -> str:
    return f"{item.benchmark}/{item.id}"


def _task_key(item: EvalItem) -> str:
    return f"mmlu_medical_{item.meta['subject']}" if item.benchmark == "mmlu_medical" else item.benchmark


def write_tasks(items: Sequence[EvalItem], task_dir: Path, lm_eval_tasks: Path) -> dict[str, list[str]]:
    """Write docs and task YAMLs (each including the upstream task file); returns task name -> item ids in doc order."""
    task_dir = Path(task_dir)
    task_dir.mkdir(parents=True, exist_ok=True)
    groups: dict[str, list[EvalItem]] = {}
    for item in items:
        groups.setdefault(_task_key(item), []).append(item)
    tasks: dict[str, list[str]] = {}
    for key, group in sorted(groups.items()):
        first = group[0]
        task_file = BENCHMARKS[first.benchmark].harness_task_file
        if task_file is None:
            raise ValueError(f"{first.benchmark}: no lm-evaluation-harness task to compare with")
        upstream = task_file.format(subject=first.meta.get("subject", ""))
        data = task_dir / f"{key}.jsonl"
        data.write_text("".join(json.dumps(upstream_doc(it)) + "\n" for it in group))
        name = f"mf_{key}"
        config = {
            "include": str(Path(lm_eval_tasks) / upstream),
            "task": name,
            "tag": [],
            "dataset_path": "json",
            "dataset_name": None,
            "dataset_kwargs": {"data_files": {"test": str(data)}},
            "training_split": None,
            "validation_split": None,
            "test_split": "test",
            "fewshot_split": None,
        }
        (task_dir / f"{name}.yaml").write_text(json.dumps(config, indent=2))
        tasks[name] = [item_key(it) for it in group]
    return tasks


def run_harness(
    python: Path, model_dir: Path, task_dir: Path, tasks: Sequence[str], out_dir: Path, batch_size: int = 8,
    timeout_s: float = 3600,
) -> subprocess.CompletedProcess:
    """`lm_eval` (its CLI, in its venv) on the HF model folder, 0-shot, float32 on CPU, per-sample logs kept."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [
        str(python), "-m", "lm_eval", "--model", "hf",
        "--model_args", f"pretrained={model_dir},dtype=float32,trust_remote_code=False",
        "--tasks", ",".join(tasks), "--include_path", str(task_dir), "--num_fewshot", "0",
        "--batch_size", str(batch_size), "--device", "cpu", "--log_samples", "--output_path", str(out_dir),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"lm_eval failed ({done.returncode}): {done.stderr[-3000:]}")
    return done


def lm_eval_tasks_dir(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import lm_eval, os; print(os.path.join(os.path.dirname(lm_eval.__file__), 'tasks'))"],
        capture_output=True, text=True, check=True,
    )
    return Path(out.stdout.strip())


def read_samples(out_dir: Path, tasks: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """item id -> {"loglikelihoods": [...], "acc": 0/1, "acc_norm": 0/1 or None, "pred": index} from the harness's
    per-sample logs."""
    samples: dict[str, dict[str, Any]] = {}
    for name, ids in tasks.items():
        files = sorted(Path(out_dir).rglob(f"samples_{name}_*.jsonl"))
        if not files:
            raise FileNotFoundError(f"no lm_eval samples for {name} under {out_dir}")
        for line in files[-1].read_text().splitlines():
            row = json.loads(line)
            lls = [float(resp[0]) for resp in row["filtered_resps"]]
            samples[ids[row["doc_id"]]] = {
                "loglikelihoods": lls,
                "acc": float(row["acc"]),
                "acc_norm": float(row["acc_norm"]) if "acc_norm" in row else None,
                "pred": max(range(len(lls)), key=lambda i: (lls[i], -i)),
            }
    return samples


@dataclass
class ParityFigures:
    benchmark: str
    n: int
    ours_acc: float
    harness_acc: float
    agreement: float  # share of items where both chose the same option
    max_abs_ll_diff: float

    @property
    def acc_delta_points(self) -> float:
        return 100.0 * (self.ours_acc - self.harness_acc)


def compare(items: Sequence[EvalItem], ours: dict[str, dict[str, Any]], harness: dict[str, dict[str, Any]]) -> list[ParityFigures]:
    """Per benchmark: accuracy of each side, per-item agreement, largest log-likelihood difference."""
    by_bench: dict[str, list[EvalItem]] = {}
    for item in items:
        by_bench.setdefault(item.benchmark, []).append(item)
    figures = []
    for bench, group in sorted(by_bench.items()):
        keys = [item_key(it) for it in group]
        pairs = [(ours[k], harness[k]) for k in keys if k in ours and k in harness]
        if not pairs:
            continue
        diffs = [abs(a - b) for o, h in pairs for a, b in zip(o["loglikelihoods"], h["loglikelihoods"], strict=True)]
        figures.append(
            ParityFigures(
                bench,
                len(pairs),
                sum(o["acc"] for o, _ in pairs) / len(pairs),
                sum(h["acc"] for _, h in pairs) / len(pairs),
                sum(o["pred"] == h["pred"] for o, h in pairs) / len(pairs),
                max(diffs),
            )
        )
    return figures


def score_ours(items: Sequence[EvalItem], model_dir: Path, batch_size: int = 8) -> dict[str, dict[str, Any]]:
    """Our loglikelihood protocol on an HF causal-LM folder (the same weights the harness loads)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medfoundry.evaluation.loglikelihood import LoglikelihoodScorer, score_items

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    scorer = LoglikelihoodScorer(model, tokenizer, batch_size)
    out = {}
    for item, (request, scored) in zip(items, score_items(items, scorer), strict=True):
        out[item_key(item)] = {
            "loglikelihoods": scored.loglikelihoods,
            "acc": float(scored.pred == request.gold),
            "acc_norm": float(scored.pred_norm == request.gold),
            "pred": scored.pred,
        }
    return out
