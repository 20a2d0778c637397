"""Tiny random-init models (Qwen2-VL, text-only Llama) saved once per session, and hardened servers on free 127.0.0.1
ports, one per engine where the suite is parametrized over engines."""

from __future__ import annotations

import base64
import io
import socket

import pytest
from PIL import Image

API_KEY = "test-key-123"
CORPUS = [
    "The chest radiograph shows a right lower lobe pneumonia with a small pleural effusion.",
    "Type 2 diabetes mellitus is treated with metformin, diet and exercise.",
    "Magnetic resonance imaging of the brain shows no acute infarct.",
] * 10


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _png_data_uri(size=(64, 64), colour=(120, 30, 30)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from medfoundry.config import load_profile
    from medfoundry.models.loading import build_base_model

    out = tmp_path_factory.mktemp("serving_model")
    build_base_model(load_profile("tiny").model, CORPUS, out)
    return out


@pytest.fixture(scope="session")
def tiny_text_model_dir(tmp_path_factory):
    """A text-only tiny Llama (same tokenizer recipe): what every engine must refuse images for."""
    from medfoundry.config import load_profile
    from medfoundry.models.loading import build_base_model

    out = tmp_path_factory.mktemp("serving_text_model")
    build_base_model(load_profile("tiny").model.model_copy(update={"family": "llama"}), CORPUS, out)
    return out


@pytest.fixture(scope="session")
def serving_config():
    from medfoundry.config.release import ServingConfig

    # Small limits so every hardening rule is reachable with small requests.
    return ServingConfig(max_batch_size=2, batch_timeout_ms=5, max_queue=4, max_new_tokens=16, max_body_bytes=256 * 1024)


def _vllm_missing() -> bool:
    from medfoundry.serving.engine import vllm_available

    return not vllm_available()


# The OpenAI-SDK suite runs against each engine; vLLM's only where it can run.
ENGINES = [
    "transformers",
    pytest.param("vllm", marks=[pytest.mark.gpu, pytest.mark.skipif(
        _vllm_missing(), reason="vLLM engine needs a CUDA GPU and the vllm package (the GPU image); none here"
    )]),
]


def _serve(model_dir, serving_config, backend, name="medvlm"):
    from medfoundry.serving.model import MedVLMModel
    from medfoundry.serving.server import BackgroundServer, ServerSettings

    model = MedVLMModel(name, str(model_dir), serving_config, backend=backend)
    settings = ServerSettings(port=_free_port(), api_key=API_KEY, serving=serving_config)
    return BackgroundServer(model, settings)


@pytest.fixture(scope="module")
def server(tiny_model_dir, serving_config):
    with _serve(tiny_model_dir, serving_config, "transformers") as url:
        yield url


@pytest.fixture(scope="module", params=ENGINES)
def engine_server(request, tiny_model_dir, serving_config):
    with _serve(tiny_model_dir, serving_config, request.param) as url:
        yield url


@pytest.fixture(scope="module", params=ENGINES)
def text_server(request, tiny_text_model_dir, serving_config):
    with _serve(tiny_text_model_dir, serving_config, request.param, name="textlm") as url:
        yield url


@pytest.fixture(scope="session")
def api_key() -> str:
    return API_KEY


@pytest.fixture(scope="session")
def free_port():
    return _free_port


@pytest.fixture(scope="session")
def png_data_uri():
    return _png_data_uri
