"""DeepSpeed ZeRO configs for the HF Trainer, built from a profile's `deepspeed_stage` (used only when it is > 0).

Batch sizes, learning rate and precision are "auto" so the Trainer fills them from its own arguments; no optimizer
block, so the Trainer's torch AdamW is used (DeepSpeed's CPU Adam would compile a C++ op on first use).
"""

from __future__ import annotations

from typing import Any

import torch


def build_deepspeed_config(zero_stage: int, offload: bool = False) -> dict[str, Any]:
    """A ZeRO-1/2/3 config dict for `TrainingArguments(deepspeed=...)`; `offload` moves optimizer state (and for
    ZeRO-3 the parameters) to CPU memory."""
    if zero_stage not in (1, 2, 3):
        raise ValueError(f"deepspeed_stage must be 1, 2 or 3 to build a ZeRO config, got {zero_stage}")
    zero: dict[str, Any] = {"stage": zero_stage}
    if zero_stage >= 2:
        zero.update(overlap_comm=False, contiguous_gradients=True, reduce_bucket_size="auto")
    if zero_stage == 3:
        zero.update(
            stage3_prefetch_bucket_size="auto",
            stage3_param_persistence_threshold="auto",
            # save_pretrained needs whole weights, not the rank-local shards
            stage3_gather_16bit_weights_on_model_save=True,
        )
    if offload:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
        if zero_stage == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    return {
        "train_micro_batch_size_per_gpu": "auto",
        "train_batch_size": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "zero_optimization": zero,
        "steps_per_print": 1_000_000,
        "wall_clock_breakdown": False,
    }


def prepare_cpu_deepspeed() -> None:
    """On CPU, skip DeepSpeed's shared-memory comm op: building it compiles C++ on first use (100 s to minutes);
    gloo works without it. The module is taken from `sys.modules`: `import deepspeed.comm.torch as m` binds the
    `torch` package itself (deepspeed.comm re-exports it under that name), so patching it would change nothing."""
    if torch.cuda.is_available():
        return
    import importlib

    ds_comm_torch = importlib.import_module("deepspeed.comm.torch")
    ds_comm_torch.build_shm_op = lambda: None
