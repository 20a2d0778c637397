"""Kill-and-resume harness shared by the SFT and GRPO resume tests: run `medfoundry train <stage>` as a subprocess,
SIGKILL it once a complete checkpoint exists (and, optionally, the MLflow run holds enough curve points), then run
the same command again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from medfoundry.training.checkpoints import newest_checkpoint
from medfoundry.training.common import METRICS_FILE, TRAINER_DIR


def train_command(stage: str, data: Path, model: Path, out: Path, overrides: dict) -> list[str]:
    sets = [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]
    return [sys.executable, "-m", "medfoundry.cli", "train", stage, "--data", str(data), "--model", str(model),
            "--out", str(out), *sets]


def kill_after_checkpoint(
    command: list[str],
    out: Path,
    env: dict[str, str],
    ready: Callable[[], bool] = lambda: True,
    timeout: float = 900,
    checkpoints: Path | None = None,
) -> dict:
    """Start `command`, SIGKILL it while it is still training once a complete checkpoint exists and `ready()` holds;
    return what was seen at the kill (the checkpoint step, whatever `ready` recorded)."""
    log = out.parent / f"{out.name}-killed.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(command, env={**os.environ, **env}, stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            checkpoint = newest_checkpoint(checkpoints or out / TRAINER_DIR)
            if proc.poll() is not None:
                raise AssertionError(f"training ended (rc {proc.returncode}) before it could be killed mid-run:\n"
                                     + log.read_text()[-3000:])
            if checkpoint is not None and ready():
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                assert proc.returncode == -signal.SIGKILL
                return {"checkpoint": checkpoint}
            time.sleep(0.05)
        raise AssertionError("no checkpoint appeared in time")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def run_to_the_end(command: list[str], out: Path, env: dict[str, str]) -> dict:
    proc = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / METRICS_FILE).read_text())
