"""The `loglikelihood` protocol: multiple-choice scoring exactly as lm-evaluation-harness 0.4.13 does it.

The Open Medical LLM Leaderboard's numbers come from lm-evaluation-harness: each option's continuation
(" A", " yes", ...) is scored by its summed log-probability after the task's prompt, and the option with the highest
log-likelihood is the answer (`acc`); `acc_norm` divides each log-likelihood by the option's length in characters
first (`acc_bytes`: by its length in UTF-8 bytes). This module rebuilds the harness's requests for our items (its task prompts for medqa_4options, medmcqa,
pubmedqa and mmlu) and scores them the way its HF model class does (`_encode_pair` and `_loglikelihood_tokens`):

- a trailing space of the context moves to the front of the continuation;
- context and context+continuation are tokenized with the tokenizer's defaults; the continuation's tokens are the tail of
  the whole sequence after the context's tokens (so a token that spans the boundary is scored as the harness does);
- the model sees (context + continuation)[:-1], and the continuation's log-probabilities are summed.

`benchmarks/lm_eval_parity.py` and tests/evaluation/test_eval_loglikelihood.py compare this with the harness's own
code on the same items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from medfoundry.evaluation.benchmarks import BENCHMARKS, Benchmark, EvalItem

Protocol = Literal["generative", "loglikelihood"]
PROTOCOLS: tuple[Protocol, ...] = ("generative", "loglikelihood")
# lm-evaluation-harness's default `target_delimiter` between the prompt and each choice.
TARGET_DELIMITER = " "
HARNESS_VERSION = "lm-eval 0.4.13"
# The flat metric <benchmark>/protocol_loglikelihood (1.0 or 0.0) carries each benchmark's protocol to the registry.
LOGLIKELIHOOD_FLAG = "protocol_loglikelihood"


class ProtocolError(ValueError):
    """A benchmark or backend that cannot be scored under the requested protocol, or a cross-protocol comparison."""


@dataclass(frozen=True)
class ChoiceRequest:
    context: str
    choices: tuple[str, ...]  # the choice strings as the harness's doc_to_choice gives them ("A", "yes", ...)
    gold: int
    template_id: str


def harness_request(item: EvalItem) -> ChoiceRequest:
    """The harness's prompt (its task for the item's benchmark, `Benchmark.harness_prompt` in the benchmark's own
    file) and choices: the option letters, or the yes/no/maybe labels."""
    if item.task == "multiple_choice" and item.options:
        choices = tuple(item.options)
    elif item.task == "yes_no":
        choices = tuple(item.labels)
    else:
        raise ProtocolError(
            f"{item.benchmark}: {item.task} items have no options to score by log-likelihood; use --protocol generative"
        )
    bench = BENCHMARKS.get(item.benchmark, Benchmark)
    context, template_id = bench.harness_prompt(item)
    return ChoiceRequest(context, choices, choices.index(item.answer), template_id)


@dataclass
class ChoiceScore:
    loglikelihoods: list[float]
    is_greedy: list[bool]
    pred: int  # argmax of the log-likelihoods (the harness's acc)
    pred_norm: int  # argmax of log-likelihood / len(choice) in characters (the harness's acc_norm)
    pred_bytes: int  # argmax of log-likelihood / len(choice) in UTF-8 bytes (the harness's acc_bytes)


def choice_scores(request: ChoiceRequest, results: Sequence[tuple[float, bool]]) -> ChoiceScore:
    """The harness's multiple_choice process_results: acc from the raw log-likelihoods, acc_norm from
    log-likelihood divided by the choice's length in characters, acc_bytes by its length in UTF-8 bytes. Ties go to
    the first choice (numpy argmax)."""
    import numpy as np

    lls = np.array([ll for ll, _ in results], dtype=float)
    chars = np.array([float(len(choice)) for choice in request.choices])
    nbytes = np.array([float(len(choice.encode("utf-8"))) for choice in request.choices])
    return ChoiceScore(
        [float(v) for v in lls], [bool(g) for _, g in results], int(np.argmax(lls)), int(np.argmax(lls / chars)),
        int(np.argmax(lls / nbytes)),
    )


def _tok_encode(tokenizer: Any, text: str) -> list[int]:
    """lm-eval HFLM.tok_encode with its defaults: the tokenizer's own special-token behaviour, except that a string
    already starting with the BOS text gets no second one."""
    bos = tokenizer.bos_token
    if bos and text.startswith(bos):
        return tokenizer.encode(text, add_special_tokens=False)
    return tokenizer.encode(text)


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval TemplateLM._encode_pair: trailing spaces of the context move to the continuation; the continuation's
    tokens are what the whole string has beyond the context's tokens."""
    spaces = len(context) - len(context.rstrip())
    if spaces > 0:
        continuation = context[-spaces:] + continuation
        context = context[:-spaces]
    whole = _tok_encode(tokenizer, context + continuation)
    context_ids = _tok_encode(tokenizer, context)
    return context_ids, whole[len(context_ids) :]


class LoglikelihoodScorer:
    """Scores (context, continuation) pairs with an in-process causal LM, as the harness's HF model class does.

    Distinct inputs are run in right-padded batches; padding sits after every scored position, so with causal attention
    it does not change the scores."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 8, max_length: int | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_length = max_length or int(
            getattr(getattr(model, "config", None), "max_position_embeddings", 0) or 2048
        )

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        import torch

        inputs: list[tuple[int, ...]] = []
        continuations: list[list[int]] = []
        for ctx, cont in pairs:
            context_ids, continuation_ids = encode_pair(self.tokenizer, ctx, cont)
            if not continuation_ids:
                raise ProtocolError(f"empty continuation after tokenizing {cont!r}")
            # The harness keeps the last max_length+1 tokens and drops the final one (it is only predicted).
            inputs.append(tuple((context_ids + continuation_ids)[-(self.max_length + 1) :][:-1]))
            continuations.append(continuation_ids)
        # Choices of one item with one-token continuations (" A", " yes") feed the model the same tokens: run each
        # distinct input once and read every choice from its logits (the harness's logits cache does the same).
        tails: dict[tuple[int, ...], int] = {}
        for tokens, continuation_ids in zip(inputs, continuations, strict=True):
            tails[tokens] = max(tails.get(tokens, 0), len(continuation_ids))
        # Longest first (as the harness orders its requests).
        unique = sorted(tails, key=len, reverse=True)
        logprobs_of: dict[tuple[int, ...], Any] = {}
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.model.eval()
        for start in range(0, len(unique), self.batch_size):
            batch = unique[start : start + self.batch_size]
            width = len(batch[0])
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, tokens in enumerate(batch):
                ids[row, : len(tokens)] = torch.tensor(tokens)
                mask[row, : len(tokens)] = 1
            with torch.no_grad():
                logits = self.model(input_ids=ids, attention_mask=mask).logits
            for row, tokens in enumerate(batch):
                # Only the positions that predict a continuation token are normalised (not the whole sequence).
                logprobs_of[tokens] = torch.log_softmax(logits[row, len(tokens) - tails[tokens] : len(tokens)].float(), -1)
        results = []
        for tokens, continuation_ids in zip(inputs, continuations, strict=True):
            rows = logprobs_of[tokens][tails[tokens] - len(continuation_ids) :]
            target = torch.tensor(continuation_ids)
            greedy = bool((rows.argmax(dim=-1) == target).all())
            results.append((float(rows.gather(1, target[:, None]).sum()), greedy))
        return results


def score_items(items: Sequence[EvalItem], scorer: LoglikelihoodScorer) -> list[tuple[ChoiceRequest, ChoiceScore]]:
    requests = [harness_request(it) for it in items]
    pairs = [(req.context, f"{TARGET_DELIMITER}{choice}") for req in requests for choice in req.choices]
    flat = scorer.loglikelihood(pairs)
    out, pos = [], 0
    for req in requests:
        n = len(req.choices)
        out.append((req, choice_scores(req, flat[pos : pos + n])))
        pos += n
    return out


def check_same_protocol(base: str | None, candidate: str | None, what: str = "results") -> None:
    """Scores from different protocols are not comparable: refuse instead of reporting a delta."""
    if (base or "generative") != (candidate or "generative"):
        raise ProtocolError(
            f"cannot compare {what} scored with different protocols: {base or 'generative'} vs "
            f"{candidate or 'generative'}"
        )
