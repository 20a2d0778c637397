"""Train tokens/s of medfoundry's trainer (HF Trainer + image/text collator) against a plain HF Trainer baseline.

Same text model size for all rows (Qwen2 text dims: hidden 256, 4 layers, vocab 2048, ~4.2M parameters), sequence
length 256, batch 8, float32, random token ids (throughput does not depend on the text). Rows:
  baseline       plain `transformers.Trainer` on Qwen2ForCausalLM, default collator (text only)
  text           medfoundry trainer setup on a Llama-family model of the same dims (text only): collator overhead
  vlm-text       medfoundry on Qwen2-VL with the same text dims, text-only batches
  vlm-image      medfoundry on Qwen2-VL, every sequence = one 56x56 image (4 tokens) + text, images decoded from PNG
                 and preprocessed per batch, as in training
Steps after `--warmup` are timed with a callback (setup and the first steps excluded); `--rounds` interleave the\nruns and the median is reported, since the machine may be shared.

    .venv/bin/python benchmarks/training_throughput.py [--steps 10] [--rounds 3] [--threads 2] [--write-docs]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DOC = ROOT / "docs" / "training.md"
START, END = "<!-- training-throughput:start -->", "<!-- training-throughput:end -->"
SEQ, BATCH = 256, 8
TEXT_DIMS = dict(hidden_size=256, intermediate_size=768, num_layers=4, num_heads=4, num_kv_heads=2, vocab_size=2048)


class StepTimer:
    def __init__(self, warmup: int):
        from transformers import TrainerCallback

        timer = self

        class Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                if state.global_step == warmup:
                    timer.start, timer.cpu_start = time.perf_counter(), time.process_time()

            def on_step_end(self, args, state, control, **kwargs):
                timer.end, timer.cpu_end = time.perf_counter(), time.process_time()
                timer.steps = state.global_step - warmup

        self.callback = Callback()
        self.start = self.end = self.cpu_start = self.cpu_end = 0.0
        self.steps = 0

    def rates(self, tokens_per_step: int) -> tuple[float, float]:
        """(tokens per wall-clock second, tokens per CPU second of this process)."""
        tokens = self.steps * tokens_per_step
        return tokens / (self.end - self.start), tokens / (self.cpu_end - self.cpu_start)


def baseline_setup():
    """Plain HF Trainer: Qwen2ForCausalLM, default collator, dict rows."""
    from transformers import Qwen2Config, Qwen2ForCausalLM, default_data_collator

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(
        vocab_size=TEXT_DIMS["vocab_size"], hidden_size=TEXT_DIMS["hidden_size"],
        intermediate_size=TEXT_DIMS["intermediate_size"], num_hidden_layers=TEXT_DIMS["num_layers"],
        num_attention_heads=TEXT_DIMS["num_heads"], num_key_value_heads=TEXT_DIMS["num_kv_heads"],
        tie_word_embeddings=False,
    ))
    rng = np.random.default_rng(0)
    rows = [{"input_ids": ids, "attention_mask": [1] * SEQ, "labels": ids}
            for ids in (rng.integers(10, TEXT_DIMS["vocab_size"], SEQ).tolist() for _ in range(64))]
    return model, rows, default_data_collator


def medfoundry_setup(tmp: Path, family: str, with_images: bool):
    """medfoundry: a model from the tiny builder, encoded examples, the image/text collator."""
    from medfoundry.config import load_profile
    from medfoundry.models.loading import LoadedModel
    from medfoundry.models.tiny import build_tiny_model
    from medfoundry.models.tokenizer import train_tokenizer
    from medfoundry.training.common import EncodedExample, TokenCountingCollator

    cfg = load_profile("tiny", {f"model.{k}": v for k, v in {**TEXT_DIMS, "family": family}.items()}).model
    words = [f"w{i}" for i in range(4000)]
    tokenizer = train_tokenizer([" ".join(words[i : i + 50]) for i in range(0, 4000, 10)], cfg.vocab_size, tmp / family)
    model, processor = build_tiny_model(cfg, tokenizer)
    rng = np.random.default_rng(0)
    image = tmp / "image.png"
    Image.fromarray((rng.random((56, 56, 3)) * 255).astype("uint8")).save(image)
    examples = []
    for _ in range(64):
        ids = rng.integers(20, len(tokenizer) - 10, SEQ).tolist()
        if with_images:
            ids[:4] = [processor.image_token_id] * 4  # a 56x56 image is 4 merged tokens
            examples.append(EncodedExample(ids, [-100] * 4 + ids[4:], image))
        else:
            examples.append(EncodedExample(ids, ids))
    collator = TokenCountingCollator(LoadedModel(model, tokenizer, processor, model.config.model_type))
    return model, examples, collator


def timed_run(setup, out: Path, steps: int, warmup: int, medfoundry_args: bool) -> tuple[float, float]:
    """(train tokens per second, per CPU second) over the steps after warm-up."""
    from transformers import Trainer, TrainingArguments

    from medfoundry.config.training import PretrainConfig
    from medfoundry.training.common import training_arguments

    model, rows, collator = setup
    if medfoundry_args:
        stage = PretrainConfig(max_steps=steps + warmup, batch_size=BATCH, max_length=SEQ, learning_rate=1e-4)
        args = training_arguments(stage, out, use_cpu=True, bf16=False, logging_steps=1000)
    else:
        args = TrainingArguments(
            output_dir=str(out), max_steps=steps + warmup, per_device_train_batch_size=BATCH, learning_rate=1e-4,
            logging_steps=1000, save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
        )
    timer = StepTimer(warmup)
    model.train()
    Trainer(model=model, args=args, train_dataset=rows, data_collator=collator, callbacks=[timer.callback]).train()
    return timer.rates(SEQ * BATCH)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    parser.add_argument("--write-docs", action="store_true", help=f"write the table into {DOC.relative_to(ROOT)}")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        setups = {
            "baseline: plain HF Trainer, Qwen2 text": (baseline_setup(), False),
            "medfoundry, Llama-family text model, same dims": (medfoundry_setup(tmp, "llama", False), True),
            "medfoundry, Qwen2-VL, text-only batches": (medfoundry_setup(tmp, "qwen2_vl", False), True),
            "medfoundry, Qwen2-VL, image+text batches": (medfoundry_setup(tmp, "qwen2_vl", True), True),
        }
        # Rounds interleave the runs so load from other processes on a shared machine hits all of them alike.
        measured: dict[str, list[tuple[float, float]]] = {name: [] for name in setups}
        for round_ in range(args.rounds):
            for name, (setup, ours) in setups.items():
                wall, cpu = timed_run(setup, tmp / "out", args.steps, args.warmup, ours)
                measured[name].append((wall, cpu))
                print(f"round {round_ + 1}: {name:50s} {wall:8.0f} tokens/s {cpu:8.0f} tokens/CPU-s", flush=True)
        rows = [
            {
                "run": name,
                "best": round(max(w for w, _ in values)),
                "median": round(float(np.median([w for w, _ in values]))),
                "per_cpu_s": round(float(np.median([c for _, c in values]))),
                "params_m": round(sum(p.numel() for p in setups[name][0][0].parameters()) / 1e6, 2),
            }
            for name, values in measured.items()
        ]
    base = rows[0]
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} threads"
    command = (
        f".venv/bin/python benchmarks/training_throughput.py --steps {args.steps} --rounds {args.rounds} "
        f"--threads {args.threads}"
    )
    table = [
        f"Measured {time.strftime('%Y-%m-%d')} on {machine}; seq {SEQ}, batch {BATCH}, float32, "
        f"{args.rounds} interleaved rounds of {args.steps} timed steps after {args.warmup} warm-up steps; load average "
        f"{os.getloadavg()[0]:.1f} at the end. Command: `{command}`",
        "",
        "| run | params | train tokens/s, best round | median round | tokens per CPU-second (median) | best vs baseline |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *[
            f"| {r['run']} | {r['params_m']}M | {r['best']:,} | {r['median']:,} | {r['per_cpu_s']:,} | "
            f"{r['best'] / base['best']:.2f}x |"
            for r in rows
        ],
    ]
    print("\n".join(table))
    print(json.dumps(rows))
    if args.write_docs:
        text = DOC.read_text()
        if START not in text:
            raise SystemExit(f"{DOC} has no {START} marker")
        head, rest = text.split(START, 1)
        DOC.write_text(head + START + "\n" + "\n".join(table) + "\n" + END + rest.split(END, 1)[1])


if __name__ == "__main__":
    main()
