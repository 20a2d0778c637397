"""Live training curves: a TrainerCallback that streams each logging interval's loss, learning rate, grad norm,
tokens/s (and MFU on GPU) to the active MLflow run while the stage is still training, so a crash leaves the curve up
to the crash.

The MLflow run is the stage's nested run: in a local pipeline it is the active run; in a subprocess or a TrainJob pod
it is named by `MLFLOW_RUN_ID` (see `attach_run`). Only the world's process zero logs; logging is synchronous, so a
point is stored before training goes on.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Any

import torch
from transformers import TrainerCallback

# HF Trainer log keys -> MLflow metric names (the rest keep their own names, e.g. GRPO's reward columns).
METRIC_NAMES = {"loss": "train_loss", "learning_rate": "learning_rate", "grad_norm": "grad_norm"}
SKIPPED = {"epoch", "total_flos", "train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss"}
# Dense bf16 peak FLOP/s per GPU, by a substring of torch.cuda.get_device_name(); MFU is left out for other devices.
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12}


def peak_flops() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((flops for key, flops in PEAK_FLOPS.items() if key in name), None)


@contextmanager
def attach_run(run_id: str | None = None):
    """Inside a `medfoundry train` process (a subprocess or a TrainJob pod): log to `run_id` (default: the
    MLFLOW_RUN_ID variable), the stage's nested run, when no run is active; otherwise do nothing. The run's status is
    left as it was: the stage that opened it owns it."""
    import mlflow

    run_id = run_id or os.environ.get("MLFLOW_RUN_ID")
    if not run_id or mlflow.active_run() is not None:
        yield None
        return
    run = mlflow.start_run(run_id=run_id)
    try:
        yield run
    finally:
        mlflow.end_run(status=mlflow.get_run(run_id).info.status)


class LiveMetricsCallback(TrainerCallback):
    """Logs every HF Trainer log row to the active MLflow run at its global step, plus tokens/s between rows
    (from a collator's `tokens` counter) and MFU (6 * parameters * tokens/s over the GPU's peak)."""

    def __init__(self, collator: Any = None, num_parameters: int = 0, extra: dict[str, float] | None = None):
        self.collator = collator
        self.num_parameters = num_parameters
        self.extra = extra or {}  # constant-per-phase figures set by the trainer (e.g. curriculum phase)
        self.logged: set[str] = set()
        self._last: tuple[float, int] | None = None
        self._peak = peak_flops()
        self._world = 1

    def on_train_begin(self, args, state, control, **kwargs):
        self._world = max(1, int(getattr(args, "world_size", 1) or 1))
        self._last = (time.perf_counter(), self._tokens())

    def _tokens(self) -> int:
        return int(getattr(self.collator, "tokens", 0) or 0)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        import mlflow

        if mlflow.active_run() is None:
            return
        metrics = {
            METRIC_NAMES.get(key, key): float(value)
            for key, value in logs.items()
            if key not in SKIPPED and isinstance(value, int | float) and not isinstance(value, bool)
        }
        if not metrics:  # the end-of-training summary row (runtime, average loss): no point on the curve
            return
        now, tokens = time.perf_counter(), self._tokens()
        if self._last is not None and self.collator is not None and now > self._last[0]:
            rate = (tokens - self._last[1]) * self._world / (now - self._last[0])
            metrics["tokens_per_s"] = rate
            if self._peak and self.num_parameters:
                metrics["mfu"] = 6 * self.num_parameters * rate / (self._peak * self._world)
        self._last = (now, tokens)
        metrics.update(self.extra)
        if metrics:
            mlflow.log_metrics(metrics, step=int(state.global_step), synchronous=True)
            self.logged.update(metrics)
