"""Tiny random-init models built from `ModelConfig`, for tests and the CPU demo (no download)."""

from __future__ import annotations

import torch
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerBase,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from medfoundry.config.sections import ModelConfig
from medfoundry.models.processors import FAMILY_PROCESSORS
from medfoundry.models.tokenizer import (
    EOS_TOKEN,
    IMAGE_TOKEN,
    PAD_TOKEN,
    VIDEO_TOKEN,
    VISION_END,
    VISION_START,
)

PATCH_SIZE = 14
MERGE_SIZE = 2
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _mrope_section(head_dim: int) -> list[int]:
    """Split the rotary half-dimension over (temporal, height, width) like Qwen2-VL's [16, 24, 24] for 128."""
    half = head_dim // 2
    temporal = half // 4
    height = (half - temporal) // 2
    return [temporal, height, half - temporal - height]


def _text_config(cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase) -> dict:
    if cfg.hidden_size % cfg.num_heads or cfg.num_heads % cfg.num_kv_heads:
        raise ValueError(
            f"model: hidden_size {cfg.hidden_size} must divide by num_heads {cfg.num_heads}, "
            f"and num_heads by num_kv_heads {cfg.num_kv_heads}"
        )
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=max(cfg.max_length * 4, 512),
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids(EOS_TOKEN),
        pad_token_id=tokenizer.convert_tokens_to_ids(PAD_TOKEN),
    )


def _vision_heads(embed_dim: int) -> int:
    heads = max(1, embed_dim // 16)
    while embed_dim % heads or (embed_dim // heads) % 4:
        heads -= 1
    return heads


def build_tiny_model(cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase, seed: int = 0):
    """Random-init model of `cfg.family` sized by `cfg`; returns (model, processor or None)."""
    torch.manual_seed(seed)
    text = _text_config(cfg, tokenizer)
    head_dim = cfg.hidden_size // cfg.num_heads
    token_ids = {
        "image_token_id": tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        "video_token_id": tokenizer.convert_tokens_to_ids(VIDEO_TOKEN),
        "vision_start_token_id": tokenizer.convert_tokens_to_ids(VISION_START),
        "vision_end_token_id": tokenizer.convert_tokens_to_ids(VISION_END),
    }
    vision_common = dict(
        depth=cfg.vision_depth,
        num_heads=_vision_heads(cfg.vision_embed_dim),
        patch_size=PATCH_SIZE,
        spatial_merge_size=MERGE_SIZE,
        temporal_patch_size=2,
    )
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": _mrope_section(head_dim)}
    family = cfg.family if cfg.family != "auto" else "qwen2_vl"
    if family == "qwen2_vl":
        config = Qwen2VLConfig(
            text_config={**text, "rope_parameters": rope},
            vision_config={
                **vision_common,
                "embed_dim": cfg.vision_embed_dim,
                "hidden_size": cfg.hidden_size,
                "mlp_ratio": 2,
            },
            **token_ids,
        )
        model = Qwen2VLForConditionalGeneration(config)
    elif family == "qwen2_5_vl":
        config = Qwen2_5_VLConfig(
            text_config={**text, "rope_parameters": rope},
            vision_config={
                **vision_common,
                "hidden_size": cfg.vision_embed_dim,
                "intermediate_size": cfg.vision_embed_dim * 2,
                "out_hidden_size": cfg.hidden_size,
                "window_size": PATCH_SIZE * MERGE_SIZE * 2,
                "fullatt_block_indexes": [cfg.vision_depth - 1],
            },
            **token_ids,
        )
        model = Qwen2_5_VLForConditionalGeneration(config)
    elif family == "llama":
        model = LlamaForCausalLM(LlamaConfig(**text, head_dim=head_dim, tie_word_embeddings=True))
    else:  # pragma: no cover - ModelFamily is a Literal
        raise ValueError(f"no tiny builder for family {family!r}")
    model.generation_config.pad_token_id = text["pad_token_id"]
    model.generation_config.eos_token_id = [text["eos_token_id"], text["pad_token_id"]]
    model.generation_config.bos_token_id = None
    model = model.to(DTYPES[cfg.dtype]).eval()
    if family not in FAMILY_PROCESSORS:
        return model, None
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=PATCH_SIZE,
        merge_size=MERGE_SIZE,
        temporal_patch_size=2,
        min_pixels=(PATCH_SIZE * MERGE_SIZE) ** 2,
        max_pixels=max(cfg.image_size, PATCH_SIZE * MERGE_SIZE) ** 2,
    )
    processor = FAMILY_PROCESSORS[family](
        image_processor=image_processor, tokenizer=tokenizer, chat_template=tokenizer.chat_template
    )
    return model, processor
