"""Non-padding train tokens/s on real medical length mixes: medfoundry packed (padding-free) vs medfoundry padded
(the previous path) vs a plain HF Trainer, side by side in one run.

Length mixes are sampled (seeded) from real QA data written by others in ../shared/data (MedQA-USMLE, PubMedQA
PQA-L with its abstracts, MedMCQA with its explanations as reasoning, VQA-RAD with its radiology images), turned into
records and rendered by medfoundry's own SFT and continual-pretraining example builders (chat template, image tokens,
`max_length` cut), so the token lengths are the ones training sees:
  sft   SFT chats: system + question (+ context, + image) -> <think>reasoning</think><answer>..</answer>
  cpt   continual-pretraining texts: image (if any) then "Question / Options / Answer" text
Model: a Qwen2-VL of Qwen2 text dims (hidden 256, 4 layers, ~4.3M parameters) with a tokenizer trained on the same
texts; float32, batch 8, `max_length` 512. Rows, each on the same examples and the same sampled batches:
  plain HF Trainer       `transformers.Trainer` + `DataCollatorForSeq2Seq` (pads to the longest row), text only
                         (VQA-RAD rows keep their text; the stock collator cannot add pixels)
  medfoundry padded      the previous path: rows padded to the longest, images preprocessed per batch
  medfoundry packed      `packing: true`: examples packed first-fit into rows (attention and loss per example)
Only non-padding tokens count. Steps after `--warmup` are timed with a callback; `--rounds` interleave the runs and
the median round is reported, since the machine may be shared.

    .venv/bin/python benchmarks/training_throughput.py [--steps 8] [--rounds 2] [--threads 2] [--mixes sft,cpt]
        [--write-docs]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DOC = ROOT / "docs" / "training.md"
START, END = "<!-- training-throughput:start -->", "<!-- training-throughput:end -->"
BATCH, MAX_LENGTH = 8, 512
TEXT_DIMS = dict(hidden_size=256, intermediate_size=768, num_layers=4, num_heads=4, num_kv_heads=2, vocab_size=4096)
PER_SOURCE = {"medqa": 96, "pubmedqa": 96, "medmcqa": 96, "vqa_rad": 96}


def shared_records(data_root: Path, tmp: Path, seed: int = 0):
    """Records sampled from ../shared/data (seeded), written as a dataset folder (VQA-RAD images linked)."""
    from medfoundry.data.records import IMAGES, RECORDS, Record, write_jsonl
    from medfoundry.evaluation.benchmarks import get_benchmark

    rng = random.Random(seed)
    folder = tmp / "dataset"
    (folder / IMAGES).mkdir(parents=True, exist_ok=True)
    records = []
    for name, count in PER_SOURCE.items():
        items, _ = get_benchmark(name).load(data_root)
        for item in rng.sample(items, min(count, len(items))):
            image = None
            if item.image is not None:
                link = folder / IMAGES / item.image.name
                if not link.exists():
                    link.symlink_to(item.image)
                image = f"{IMAGES}/{item.image.name}"
            reasoning = item.meta.get("explanation") or item.meta.get("exp") or item.meta.get("long_answer")
            records.append(Record(
                id=f"{name}-{item.id}", source=f"shared:{name}", kind="qa", question=item.question,
                options=item.options, answer=item.answer, text=item.context or "", image=image,
                reasoning=str(reasoning) if reasoning else None,
            ))
    write_jsonl(folder / RECORDS, records)
    return folder, records


def build_model(tmp: Path, records):
    from medfoundry.config import load_profile
    from medfoundry.models.loading import LoadedModel
    from medfoundry.models.tiny import build_tiny_model
    from medfoundry.models.tokenizer import train_tokenizer

    cfg = load_profile("tiny", {**{f"model.{k}": v for k, v in TEXT_DIMS.items()}, "model.image_size": 112,
                                "model.max_length": MAX_LENGTH}).model
    texts = [" ".join(filter(None, [r.text, r.question, r.reasoning, *(r.options or {}).values()])) for r in records]
    tokenizer = train_tokenizer(texts, cfg.vocab_size, tmp / "tokenizer")
    model, processor = build_tiny_model(cfg, tokenizer)
    return LoadedModel(model, tokenizer, processor, model.config.model_type)


def length_mixes(loaded, folder: Path):
    from medfoundry.training.common import encode_examples
    from medfoundry.training.pretrain import pretrain_examples
    from medfoundry.training.sft import sft_examples

    sft, _ = encode_examples(loaded, sft_examples(loaded, folder, "think_answer"), MAX_LENGTH, keep_completion=True)
    cpt, _ = encode_examples(loaded, pretrain_examples(loaded, folder)[0], MAX_LENGTH)
    return {"sft": sft, "cpt": cpt}


class StepTimer:
    """Counts non-padding tokens of the timed steps (after `warmup`) through the collator's counter."""

    def __init__(self, warmup: int, counter):
        from transformers import TrainerCallback

        timer = self

        class Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                if state.global_step == warmup:
                    timer.start, timer.tokens_at_start = time.perf_counter(), counter()

            def on_step_end(self, args, state, control, **kwargs):
                timer.end, timer.tokens_at_end = time.perf_counter(), counter()

        self.callback = Callback()
        self.start = self.end = 0.0
        self.tokens_at_start = self.tokens_at_end = 0

    def rate(self) -> float:
        return (self.tokens_at_end - self.tokens_at_start) / (self.end - self.start)


class PlainCounter:
    """Wraps the stock collator to count the tokens it was given (attention mask ones)."""

    def __init__(self, collator):
        self.collator, self.tokens = collator, 0

    def __call__(self, features):
        batch = self.collator(features)
        self.tokens += int(batch["attention_mask"].sum())
        return batch


def timed_run(loaded, examples, mode: str, out: Path, steps: int, warmup: int) -> float:
    from transformers import DataCollatorForSeq2Seq, Trainer

    from medfoundry.config.training import SFTConfigSection
    from medfoundry.training.checkpoints import EpochSeededSampler
    from medfoundry.training.common import TokenCountingCollator, _trainer_class, training_arguments

    stage = SFTConfigSection(max_steps=steps + warmup, batch_size=BATCH, max_length=MAX_LENGTH, learning_rate=1e-4,
                             checkpoint_every=0, packing=mode == "packed")
    args = training_arguments(stage, out, use_cpu=True, bf16=False, logging_steps=1000)
    model = loaded.model
    model.train()
    if mode == "plain":
        image_id = loaded.processor.image_token_id
        rows = [{"input_ids": [t for t in ex.input_ids if t != image_id],
                 "labels": [label for t, label in zip(ex.input_ids, ex.labels, strict=True) if t != image_id]}
                for ex in examples]
        rows = [{**r, "attention_mask": [1] * len(r["input_ids"])} for r in rows]
        collator = PlainCounter(DataCollatorForSeq2Seq(loaded.tokenizer, padding=True, label_pad_token_id=-100))
        timer = StepTimer(warmup, lambda: collator.tokens)

        class PlainTrainer(Trainer):  # stock Trainer, drawing the same order as the other rows
            def _get_train_sampler(self, train_dataset=None):
                return EpochSeededSampler([1.0] * len(rows), stage.seed)

        PlainTrainer(model=model, args=args, train_dataset=rows, data_collator=collator,
                     callbacks=[timer.callback]).train()
        return timer.rate()
    collator = TokenCountingCollator(loaded, packing=mode == "packed")
    timer = StepTimer(warmup, lambda: collator.tokens)
    _trainer_class(EpochSeededSampler([1.0] * len(examples), stage.seed))(
        model=model, args=args, train_dataset=examples, data_collator=collator, callbacks=[timer.callback]
    ).train()
    return timer.rate()


def main() -> None:
    from medfoundry.workspace import shared_root

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the median is reported")
    parser.add_argument("--mixes", default="sft,cpt", help="comma-separated: sft, cpt")
    parser.add_argument("--write-docs", action="store_true", help=f"write the table into {DOC.relative_to(ROOT)}")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    root = shared_root()
    if root is None:
        raise SystemExit("../shared is not here: the benchmark samples its length mixes from ../shared/data")
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder, records = shared_records(root / "data", tmp)
        loaded = build_model(tmp, records)
        mixes = {k: v for k, v in length_mixes(loaded, folder).items() if k in args.mixes.split(",")}
        state = {k: v.clone() for k, v in loaded.model.state_dict().items()}
        modes = ("plain", "padded", "packed")
        measured: dict[tuple[str, str], list[float]] = {(m, x): [] for x in mixes for m in modes}
        for round_ in range(args.rounds):
            for mix, examples in mixes.items():
                for mode in modes:
                    loaded.model.load_state_dict(state)  # every run starts from the same weights
                    rate = timed_run(loaded, examples, mode, tmp / "out", args.steps, args.warmup)
                    measured[(mode, mix)].append(rate)
                    print(f"round {round_ + 1}: {mix} {mode:7s} {rate:8.0f} non-padding tokens/s", flush=True)
        stats = {
            mix: {
                "examples": len(examples),
                "mean_length": float(np.mean([len(e.input_ids) for e in examples])),
                "with_image": sum(e.image is not None for e in examples),
            }
            for mix, examples in mixes.items()
        }
    median = {key: float(np.median(values)) for key, values in measured.items()}
    names = {"plain": "plain HF Trainer (padded, text only)", "padded": "medfoundry padded (previous path)",
             "packed": "medfoundry packed (rows filled first-fit)"}
    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} threads"
    command = (f".venv/bin/python benchmarks/training_throughput.py --steps {args.steps} --warmup {args.warmup} "
               f"--rounds {args.rounds} --threads {args.threads} --mixes {args.mixes}")
    mix_line = "; ".join(
        f"{mix}: {s['examples']} examples, mean {s['mean_length']:.0f} tokens, {s['with_image']} with an image"
        for mix, s in stats.items()
    )
    table = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine}; batch {BATCH}, max_length "
        f"{MAX_LENGTH}, float32, {args.rounds} interleaved rounds of {args.steps} timed steps after {args.warmup} "
        f"warm-up steps; load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (shared "
        f"machine). Mixes sampled from ../shared/data ({', '.join(PER_SOURCE)}): {mix_line}. Command: `{command}`",
        "",
        "| mix | run | non-padding tokens/s (median round) | vs padded path | vs plain HF Trainer |",
        "| --- | --- | ---: | ---: | ---: |",
        *[
            f"| {mix} | {names[mode]} | {median[(mode, mix)]:,.0f} | "
            f"{median[(mode, mix)] / median[('padded', mix)]:.2f}x | {median[(mode, mix)] / median[('plain', mix)]:.2f}x |"
            for mix in stats
            for mode in modes
        ],
    ]
    print("\n".join(table))
    print(json.dumps({f"{m}/{x}": v for (m, x), v in median.items()}))
    if args.write_docs:
        text = DOC.read_text()
        if START not in text:
            raise SystemExit(f"{DOC} has no {START} marker")
        head, rest = text.split(START, 1)
        DOC.write_text(head + START + "\n" + "\n".join(table) + "\n" + END + rest.split(END, 1)[1])


if __name__ == "__main__":
    main()
