"""Session fixtures: the tiny dataset folder, the tiny profile with few steps, a tiny base model."""

from __future__ import annotations

import pytest
from training_data import make_dataset


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("dataset"))


@pytest.fixture(scope="session")
def tiny_profile():
    from medfoundry.config import load_profile

    return load_profile(
        "tiny",
        {
            "pretrain.max_steps": 3,
            "pretrain.curriculum": [],  # phases are tested in test_curriculum.py
            "pretrain.batch_size": 4,
            "sft.max_steps": 3,
            "sft.batch_size": 4,
            "rl.max_steps": 2,
            "rl.batch_size": 4,
            "rl.num_generations": 4,
        },
    )


@pytest.fixture(scope="session")
def base_model_dir(tmp_path_factory, tiny_dataset, tiny_profile):
    from medfoundry.data.records import read_records
    from medfoundry.models.loading import build_base_model

    out = tmp_path_factory.mktemp("base")
    texts = [r.text or r.question or "" for r in read_records(tiny_dataset)] * 5
    build_base_model(tiny_profile.model, texts, out)
    return out
