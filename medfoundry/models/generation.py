"""Batched greedy generation (left padding) for text and image+text chat prompts."""

from __future__ import annotations

import torch

from medfoundry.models.chat import ChatPrompt, encode, render
from medfoundry.models.loading import LoadedModel

__all__ = ["ChatPrompt", "generate"]


def generate(
    loaded: LoadedModel, prompts: list[ChatPrompt], max_new_tokens: int, batch_size: int = 8, seed: int = 0
) -> list[str]:
    """Greedy completions (special tokens stripped, structure tags like <answer> kept), one per prompt, in order.

    Deterministic; batching does not change the outputs (left padding with matching attention masks). Text-only
    models ignore the prompts' images."""
    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError("batch_size and max_new_tokens must be >= 1")
    model, tokenizer = loaded.model, loaded.tokenizer
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    outputs: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            texts = [render(loaded, p.to_messages(loaded.is_vision), add_generation_prompt=True) for p in chunk]
            images = [p.image if loaded.is_vision else None for p in chunk]
            batch = encode(loaded, texts, images, padding_side="left").to(loaded.device)
            with torch.inference_mode():
                generated = model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                )
            new_tokens = generated[:, batch["input_ids"].shape[1] :]
            outputs.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    finally:
        model.train(was_training)
    return outputs
