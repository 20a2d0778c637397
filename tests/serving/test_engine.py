"""The in-process engine and the dynamic batcher, without HTTP."""

from __future__ import annotations

import asyncio

import pytest

from medfoundry.serving.batching import Batcher, QueueFull
from medfoundry.serving.engine import GenerationRequest, InProcessEngine, RequestError

PROMPTS = ["Is there a pleural effusion?", "What treats type 2 diabetes?", "Describe the brain MRI findings in detail."]


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    from medfoundry.models.loading import load_model

    return InProcessEngine(load_model(tiny_model_dir), "medvlm")


def request(text, **kw):
    return GenerationRequest(messages=[{"role": "user", "content": text}], **kw)


def test_matches_models_generate_and_streams_the_same_text(engine):
    from medfoundry.models.generation import ChatPrompt, generate

    expected = generate(engine.loaded, [ChatPrompt(text=p) for p in PROMPTS], max_new_tokens=10)
    deltas = {i: "" for i in range(len(PROMPTS))}

    def emit(row, kind, value):
        if kind == "delta":
            deltas[row] += value

    results = engine.run_batch([request(p, max_new_tokens=10) for p in PROMPTS], emit)
    assert [r.text for r in results] == expected
    assert [deltas[i] for i in range(len(PROMPTS))] == expected
    assert all(r.completion_tokens <= 10 and r.prompt_tokens > 0 for r in results)


def test_per_request_limits_and_stop_strings(engine):
    (free,) = engine.run_batch([request(PROMPTS[2], max_new_tokens=12)], lambda *a: None)
    assert len(free.text) > 3, "the tiny model should produce some text"
    stop = free.text[2:4]
    short, stopped, too_long = engine.run_batch(
        [request(PROMPTS[0], max_new_tokens=3), request(PROMPTS[2], max_new_tokens=12, stop=[stop]),
         request("pneumonia " * 1500, max_new_tokens=4)],
        lambda *a: None,
    )
    assert short.completion_tokens == 3 and short.finish_reason == "length"
    assert stopped.finish_reason == "stop" and stopped.text == free.text[: free.text.find(stop)]
    assert isinstance(too_long, RequestError) and too_long.code == "context_length_exceeded"


def test_batcher_groups_concurrent_requests_and_bounds_its_queue(engine):
    sizes = []
    original = engine.run_batch

    def recording(requests, emit):
        sizes.append(len(requests))
        return original(requests, emit)

    engine.run_batch = recording
    try:
        batcher = Batcher(engine, max_batch_size=4, batch_timeout_ms=50, max_queue=2)

        async def burst():
            return await asyncio.gather(
                *(batcher.submit(request(PROMPTS[i % 3], max_new_tokens=4)) for i in range(10)), return_exceptions=True
            )

        results = asyncio.run(burst())
        batcher.close()
    finally:
        engine.run_batch = original
    refused = [r for r in results if isinstance(r, QueueFull)]
    # At most 2 wait; the worker may already hold a batch of up to 4 while the rest arrive.
    assert len(refused) >= 4 and all(r.retry_after >= 1 for r in refused)
    assert sum(sizes) == 10 - len(refused) and max(sizes) >= 2  # admitted requests ran batched, not one by one

