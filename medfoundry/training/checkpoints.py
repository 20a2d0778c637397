"""Fault tolerance for every trainer: periodic HF Trainer checkpoints (model, optimizer, scheduler, RNG state and
trainer state; the sampler's order is a function of seed and epoch, see `EpochSeededSampler`), keep-last pruning, and
resuming from the newest complete checkpoint after a kill or preemption.

A checkpoint folder counts as complete when its `trainer_state.json` parses: the HF Trainer writes it last, after
the weights, optimizer, scheduler and RNG files, so a process killed mid-save leaves a folder without it (skipped).
A `resume_key.json` next to the checkpoints records the stage settings they were made with; checkpoints made with
other settings are never resumed from (they are cleared, and the run says so).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("medfoundry.training")
TRAINER_STATE = "trainer_state.json"
RESUME_KEY = "resume_key.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_arguments(stage_cfg: Any) -> dict[str, Any]:
    """TrainingArguments fields for the stage's checkpoint policy (`checkpoint_every` steps, keep the last
    `checkpoint_keep`); `checkpoint_every: 0` turns checkpoints off."""
    every = int(getattr(stage_cfg, "checkpoint_every", 0) or 0)
    if not every:
        return {"save_strategy": "no"}
    return {"save_strategy": "steps", "save_steps": every, "save_total_limit": stage_cfg.checkpoint_keep}


def _complete(folder: Path) -> bool:
    try:
        json.loads((folder / TRAINER_STATE).read_text())
    except (OSError, ValueError):
        return False
    return True


def newest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest complete `checkpoint-<step>` folder under `checkpoint_dir`, or None."""
    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        return None
    found = sorted(
        ((int(m.group(1)), p) for p in checkpoint_dir.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))),
        reverse=True,
    )
    for _, folder in found:
        if _complete(folder):
            return folder
        log.warning("checkpoint %s is incomplete (killed while saving?): skipped", folder)
    return None


def prepare_resume(checkpoint_dir: Path, settings: dict[str, Any]) -> Path | None:
    """The checkpoint to resume from, made with the same `settings` (a JSON-able dict of what shapes the run:
    the stage section, data and base model); checkpoints made otherwise are removed. Only rank 0 writes."""
    checkpoint_dir = Path(checkpoint_dir)
    key_file = checkpoint_dir / RESUME_KEY
    key = json.loads(json.dumps(settings, sort_keys=True, default=str))
    if checkpoint_dir.is_dir() and key_file.is_file() and json.loads(key_file.read_text()) != key:
        log.warning("%s holds checkpoints of other settings: starting over", checkpoint_dir)
        if _rank() == 0:
            for folder in checkpoint_dir.glob("checkpoint-*"):
                shutil.rmtree(folder, ignore_errors=True)
    found = newest_checkpoint(checkpoint_dir)
    if _rank() == 0 and not (key_file.is_file() and json.loads(key_file.read_text()) == key):
        # written whole under another name, then renamed: the other ranks read this file meanwhile (torchrun), and
        # a half-written one failed them with a JSONDecodeError
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        partial = key_file.with_name(f"{RESUME_KEY}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(key, indent=2, sort_keys=True))
        os.replace(partial, key_file)
    if found is not None:
        log.warning("resuming from %s", found)
    return found


def folder_fingerprint(folder: Path) -> str:
    """sha256 over a folder's file names and bytes (a model folder: same weights, same fingerprint)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def checkpoint_step(checkpoint: Path | None) -> int:
    return int(_CHECKPOINT.match(checkpoint.name).group(1)) if checkpoint is not None else 0


def _rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return int(os.environ.get("RANK", "0"))


class EpochSeededSampler(torch.utils.data.Sampler[int]):
    """Draws a shuffled order (uniform weights) or a weighted draw with replacement, seeded by (seed, epoch).

    The order of epoch e is the same in a run that was killed and resumed as in one that never stopped: the HF
    Trainer calls `set_epoch` before each epoch and skips the batches of the resumed epoch that were already trained.
    """

    def __init__(self, weights: list[float], seed: int):
        self.weights = torch.as_tensor(weights, dtype=torch.double)
        self.uniform = len(set(weights)) <= 1
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.weights)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        n = len(self.weights)
        if self.uniform:
            return iter(torch.randperm(n, generator=generator).tolist())
        return iter(torch.multinomial(self.weights, n, replacement=True, generator=generator).tolist())


def reseeded_per_epoch(sampler: Any) -> Any:
    """A sampler that owns a seeded generator (TRL's RepeatSampler, GRPO's prompt order) made to draw epoch e's order
    from (seed, e), like `EpochSeededSampler`. Its generator is seeded once and advances epoch after epoch, and no
    checkpoint holds it: a GRPO run resumed in a later epoch would replay epoch 0's prompt order. The Trainer calls
    `set_epoch` (through accelerate's DataLoaderShard) before each epoch, resumed or not."""
    generator, seed = getattr(sampler, "generator", None), getattr(sampler, "seed", None)
    if not isinstance(generator, torch.Generator) or seed is None or hasattr(sampler, "set_epoch"):
        return sampler
    sampler.set_epoch = lambda epoch: generator.manual_seed(seed * 100_003 + epoch)
    return sampler


def with_exact_resume(trainer_class: type) -> type:
    """`trainer_class` whose resume restores every weight and, for samplers with their own generator, the order of
    the resumed epoch (`reseeded_per_epoch`). The HF Trainer loads a checkpoint's safetensors with
    `load_state_dict(strict=False)`, but `save_pretrained` writes vision-language models (Qwen2-VL, ...) under their
    original checkpoint key names, which differ from the module's own; the load then silently keeps the old weights.
    Here the checkpoint is read back through `from_pretrained` (which maps the names) and loaded strictly."""

    class ExactResume(trainer_class):
        def _get_train_sampler(self, *args, **kwargs):
            return reseeded_per_epoch(super()._get_train_sampler(*args, **kwargs))

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            model = model if model is not None else self.model
            config_file = Path(resume_from_checkpoint) / "config.json"
            if not config_file.is_file() or not hasattr(model, "state_dict") or hasattr(model, "peft_config"):
                return super()._load_from_checkpoint(resume_from_checkpoint, model)
            saved = type(model).from_pretrained(resume_from_checkpoint, dtype=model.dtype, local_files_only=True)
            model.load_state_dict(saved.state_dict(), strict=True)
            del saved

    ExactResume.__name__ = ExactResume.__qualname__ = f"ExactResume{trainer_class.__name__}"
    return ExactResume
