"""DeepSpeed ZeRO-2/3 with 2 CPU processes under torchrun (gloo): real SFT steps, weights saved once, gathered."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from training_data import make_dataset, max_param_change

ENTRY = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from medfoundry.config import load_profile
    from medfoundry.training.sft import run_sft
    root, stage = Path(sys.argv[1]), int(sys.argv[2])
    profile = load_profile("tiny", {"sft.deepspeed_stage": stage, "sft.max_steps": 2, "sft.batch_size": 2})
    print("RESULT", json.dumps(run_sft(profile, root / "data", root / "base", root / "out")))
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Slow: on this shared machine each process still compiled DeepSpeed's shm comm op (minutes) in this session.
@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_sft_zero_on_two_cpu_processes(stage, tmp_path, tiny_profile):
    from medfoundry.data.records import read_records
    from medfoundry.models.loading import build_base_model, load_model

    make_dataset(tmp_path / "data")
    texts = [r.text or r.question or "" for r in read_records(tmp_path / "data")] * 5
    build_base_model(tiny_profile.model, texts, tmp_path / "base")
    (tmp_path / "entry.py").write_text(ENTRY)
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path / "ext"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [str(torchrun), "--nproc_per_node=2", f"--master_port={_free_port()}", str(tmp_path / "entry.py"),
         str(tmp_path), str(stage)],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = [json.loads(line.split(" ", 1)[1]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(results) == 2 and all(r["steps"] == 2 for r in results)
    assert results[0]["num_parameters"] == load_model(tmp_path / "base").model.num_parameters()
    assert max_param_change(tmp_path / "base", tmp_path / "out") > 0
