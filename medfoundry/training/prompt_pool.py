"""Prompt pool by pass rate (the recipe's Build 1): sample k answers per candidate prompt from the current policy,
score each with the rule reward behind the safety gate (a pass is a correct, safe answer), and keep the prompts whose
pass rate lies in the configured band; tool-use and multi-turn items are kept whatever their rate. The samples are
returned too: the RFT phase trains on the passing ones (rejection sampling)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from medfoundry.config.training import PromptPoolConfig
from medfoundry.models.chat import attach_image, encode, render
from medfoundry.models.loading import LoadedModel
from medfoundry.training.rewards.exact_match import exact_match
from medfoundry.training.rewards.safety import is_safe

REWARD_COLUMNS = ("answer", "options", "answer_type", "tolerance")


@dataclass
class PromptPool:
    rows: list[dict[str, Any]]  # the kept rows, each with "pass_rate" and "in_band"
    measured: list[dict[str, Any]]  # every candidate with its pass rate, kept or not
    samples: dict[str, list[str]] = field(default_factory=dict)  # row id -> the k sampled completions
    composition: dict[str, Any] = field(default_factory=dict)


def sample_answers(
    loaded: LoadedModel, rows: list[dict[str, Any]], k: int, max_new_tokens: int, temperature: float, seed: int = 0
) -> list[list[str]]:
    """k sampled completions per row's prompt (with its image for vision models)."""
    model, tokenizer = loaded.model, loaded.tokenizer
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    out: list[list[str]] = []
    try:
        for row in rows:
            image = row.get("image") if loaded.is_vision else None
            messages = attach_image(row["prompt"]) if image is not None else row["prompt"]
            batch = encode(loaded, [render(loaded, messages, add_generation_prompt=True)], [image], "left")
            with torch.inference_mode():
                generated = model.generate(
                    **batch.to(loaded.device), max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature,
                    num_return_sequences=k, pad_token_id=tokenizer.pad_token_id,
                )
            out.append(tokenizer.batch_decode(generated[:, batch["input_ids"].shape[1] :], skip_special_tokens=True))
    finally:
        model.train(was_training)
    return out


def passes(row: dict[str, Any], completions: list[str]) -> list[bool]:
    columns = {name: [row.get(name)] * len(completions) for name in REWARD_COLUMNS}
    correct = exact_match(completions, **columns)
    return [bool(c) and is_safe(text) for c, text in zip(correct, completions, strict=True)]


def always_kept(row: dict[str, Any]) -> str | None:
    """Why a row is kept whatever its pass rate: a tool-use item or a multi-turn conversation."""
    if row.get("expected_tool"):
        return "tool_use"
    if sum(1 for m in row["prompt"] if m["role"] in ("user", "assistant")) > 1:
        return "multi_turn"
    return None


def select_by_pass_rate(
    rows: list[dict[str, Any]], samples: list[list[str]], band: tuple[float, float]
) -> PromptPool:
    low, high = band
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"prompt_pool.pass_rate_band {band}: need 0 <= low <= high <= 1")
    kept, measured = [], []
    counts = {"candidates": len(rows), "in_band": 0, "too_easy": 0, "too_hard": 0, "tool_use": 0, "multi_turn": 0}
    for row, completions in zip(rows, samples, strict=True):
        results = passes(row, completions)
        rate = sum(results) / len(results)
        in_band = low <= rate <= high
        measured.append({"id": row["id"], "pass_rate": rate, "in_band": in_band})
        reason = "in_band" if in_band else always_kept(row)
        if reason is None:
            counts["too_easy" if rate > high else "too_hard"] += 1
            continue
        counts[reason] += 1
        kept.append({**row, "pass_rate": rate, "in_band": in_band})
    counts["kept"] = len(kept)
    return PromptPool(kept, measured, {r["id"]: s for r, s in zip(rows, samples, strict=True)}, counts)


def build_prompt_pool(
    loaded: LoadedModel, rows: list[dict[str, Any]], cfg: PromptPoolConfig, seed: int = 0
) -> PromptPool:
    candidates = rows[: cfg.max_candidates] if cfg.max_candidates else rows
    samples = sample_answers(loaded, candidates, cfg.samples_per_prompt, cfg.max_new_tokens, cfg.temperature, seed)
    pool = select_by_pass_rate(candidates, samples, tuple(cfg.pass_rate_band))
    pool.composition["band"] = list(cfg.pass_rate_band)
    pool.composition["samples_per_prompt"] = cfg.samples_per_prompt
    return pool
