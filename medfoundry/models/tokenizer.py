"""Byte-level BPE tokenizers trained locally, with the chat template and special tokens of the Qwen2-VL family."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PAD_TOKEN = "<|endoftext|>"
EOS_TOKEN = "<|im_end|>"
IMAGE_TOKEN = "<|image_pad|>"
VIDEO_TOKEN = "<|video_pad|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
# Control tokens: never produced as text, dropped by decode(skip_special_tokens=True).
SPECIAL_TOKENS = [
    PAD_TOKEN,
    "<|im_start|>",
    EOS_TOKEN,
    VISION_START,
    VISION_END,
    "<|vision_pad|>",
    IMAGE_TOKEN,
    VIDEO_TOKEN,
]
# Structure tokens the model writes (reasoning, answers, tool calls): atomic, but kept when decoding so rewards and
# extractors can read them, as Qwen does for <tool_call>.
STRUCTURE_TOKENS = [
    "<think>",
    "</think>",
    "<answer>",
    "</answer>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
]


def chat_template() -> str:
    """The Qwen3-VL chat template as bundled (verbatim) by TRL: images, tool calls and tool responses, and TRL
    recognises it (response parsing for tool-calling GRPO, its training variant for assistant-only masks). It uses
    the same special tokens as Qwen2-VL."""
    spec = importlib.util.find_spec("trl")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("trl is not installed; it ships the Qwen3-VL chat template medfoundry uses")
    path = Path(next(iter(spec.submodule_search_locations))) / "chat_templates" / "qwen3_vl.jinja"
    return path.read_text(encoding="utf-8")


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: Path) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on `texts` and save it (tokenizer.json + config) to `out_dir`.

    The vocabulary holds at most `vocab_size` entries; a small corpus yields fewer (use `len(tokenizer)`).
    """
    if vocab_size < len(SPECIAL_TOKENS) + len(STRUCTURE_TOKENS) + 256:
        raise ValueError(f"vocab_size {vocab_size} is too small: byte-level BPE needs at least 256 + special tokens")
    texts = (t for t in texts if t and t.strip())
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(STRUCTURE_TOKENS),
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in STRUCTURE_TOKENS])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=1 << 20,
        padding_side="right",
    )
    tokenizer.chat_template = chat_template()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out_dir)
    return tokenizer
