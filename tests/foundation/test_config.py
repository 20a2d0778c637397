"""Profiles: built-ins validate, mistakes fail fast with one line naming the field."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from medfoundry.config import ProfileError, load_profile, profile_hash
from medfoundry.config.profile import available_profiles


@pytest.mark.parametrize("name", ["tiny", "small", "production-7b"])
def test_builtin_profiles_validate(name):
    profile = load_profile(name)
    assert profile.name == name


def test_available_profiles_lists_builtins():
    assert {"tiny", "small", "production-7b"} <= set(available_profiles())


def test_overrides_apply_and_change_hash():
    base = load_profile("tiny")
    changed = load_profile("tiny", {"sft.max_steps": 2})
    assert changed.sft.max_steps == 2
    assert profile_hash(base) != profile_hash(changed)
    assert profile_hash(base) == profile_hash(load_profile("tiny"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("name: x\nsft: {max_stepz: 3}\n", "sft.max_stepz: unknown field"),
        ("name: x\nsft: {max_steps: 0}\n", "sft.max_steps: Input should be greater than or equal to 1"),
        ("name: x\ncluster: {mode: cloud}\n", "cluster.mode: Input should be 'local' or 'kubernetes'"),
        ("name: x\ndata: {holdout_fraction: 2}\n", "data.holdout_fraction"),
        ("- just\n- a list\n", "expected a mapping"),
        ("name: [unclosed\n", "invalid YAML"),
    ],
)
def test_bad_profiles_fail_with_one_line(tmp_path, body, message):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    text = str(err.value)
    assert message in text
    assert "\n" not in text


def test_unknown_profile_name_lists_choices():
    with pytest.raises(ProfileError, match="use one of .*tiny"):
        load_profile("nope")


def test_cli_rejects_bad_profile_fast(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\npretrain: {learning_rate: -1}\n")
    started = time.time()
    result = subprocess.run(
        [sys.executable, "-m", "medfoundry.cli", "run", "medical-mllm-recipe", "--profile", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.time() - started
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "pretrain.learning_rate" in lines[0] and "greater than 0" in lines[0]
    assert elapsed < 5, f"profile error took {elapsed:.1f}s"
