"""DeepSpeed ZeRO-2 and ZeRO-3 with 2 CPU processes under torchrun (gloo): real SFT steps in one launch, no C++ op
compiled (the product skips DeepSpeed's shm comm op on CPU and uses torch AdamW), ranks agree, both stages learn the
same weights, and ZeRO-3's partitioned weights are gathered into one whole saved model."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from training_data import max_param_change

# Both ZeRO stages in one launch: the imports (most of the time on 2 cores) are paid once.
ENTRY = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from accelerate.state import AcceleratorState
    from medfoundry.config import load_profile
    from medfoundry.training.sft import run_sft
    data, base, root = map(Path, sys.argv[1:4])
    for stage in (2, 3):
        profile = load_profile("tiny", {"sft.deepspeed_stage": stage, "sft.max_steps": 3, "sft.batch_size": 2})
        metrics = run_sft(profile, data, base, root / f"zero{stage}")
        metrics["zero_stage_used"] = AcceleratorState().deepspeed_plugin.zero_stage
        metrics["world_size"] = AcceleratorState().num_processes
        print("RESULT", json.dumps(metrics))
        AcceleratorState._reset_state()  # the next stage builds its own DeepSpeed plugin
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_sft_zero2_and_zero3_on_two_cpu_processes(tiny_dataset, base_model_dir, tmp_path):
    from medfoundry.models.loading import load_model

    (tmp_path / "entry.py").write_text(ENTRY)
    torchrun = Path(sys.executable).parent / "torchrun"
    extensions = tmp_path / "torch_extensions"
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(extensions), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [str(torchrun), "--nproc_per_node=2", f"--master_port={_free_port()}", str(tmp_path / "entry.py"),
         str(tiny_dataset), str(base_model_dir), str(tmp_path)],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )
    log = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, log
    assert "built successfully" not in proc.stdout + proc.stderr and not extensions.exists(), "a DeepSpeed op compiled"
    results = [json.loads(line.split(" ", 1)[1]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    by_stage = {stage: [r for r in results if r["zero_stage_used"] == stage] for stage in (2, 3)}
    for stage, ranks in by_stage.items():
        assert len(ranks) == 2 and all(r["world_size"] == 2 and r["steps"] == 3 for r in ranks), (stage, log)
        assert ranks[0]["loss_first"] == ranks[1]["loss_first"] and ranks[0]["loss_last"] == ranks[1]["loss_last"]
        assert ranks[0]["loss_last"] < ranks[0]["loss_first"] - 0.1, ranks[0]  # the loss falls
    assert abs(by_stage[2][0]["loss_last"] - by_stage[3][0]["loss_last"]) < 1e-4  # same maths, sharded differently
    # ZeRO-3 saved whole weights (gathered from both ranks' shards): every parameter, the same as ZeRO-2's
    assert by_stage[3][0]["num_parameters"] == load_model(base_model_dir).model.num_parameters()
    assert max_param_change(base_model_dir, tmp_path / "zero2") > 1e-3
    assert max_param_change(tmp_path / "zero2", tmp_path / "zero3") < 1e-4
