"""A tiny Qwen2-VL model built once per session from the tiny profile (tokenizer trained on a small corpus)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

CORPUS = [
    "The chest radiograph shows a right lower lobe pneumonia with a small pleural effusion.",
    "Type 2 diabetes mellitus is treated with metformin, diet and exercise.",
    "Magnetic resonance imaging of the brain shows no acute infarct.",
    "Question: is aspirin an antiplatelet drug? <think>Aspirin inhibits COX-1.</think><answer>yes</answer>",
] * 10


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from medfoundry.config import load_profile
    from medfoundry.models.loading import build_base_model

    out = tmp_path_factory.mktemp("tiny_model")
    build_base_model(load_profile("tiny").model, CORPUS, out)
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from medfoundry.models.loading import load_model

    return load_model(tiny_model_dir)


@pytest.fixture(scope="session")
def noise_image():
    def make(seed: int, size: tuple[int, int] = (64, 72)) -> Image.Image:
        rng = np.random.default_rng(seed)
        return Image.fromarray((rng.random((*size, 3)) * 255).astype("uint8"))

    return make
