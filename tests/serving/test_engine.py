"""The continuous-batching engine and its scheduler, without HTTP: parity with `models.generation.generate`, rows
joining and leaving the running batch, per-request limits, cancellation and the bounded queue."""

from __future__ import annotations

import asyncio

import pytest
from PIL import Image

from medfoundry.serving import metrics
from medfoundry.serving.batching import Batcher, QueueFull
from medfoundry.serving.engine import GenerationRequest, InProcessEngine, RequestError

PROMPTS = ["Is there a pleural effusion?", "What treats type 2 diabetes?", "Describe the brain MRI findings in detail."]


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    from medfoundry.models.loading import load_model

    return InProcessEngine(load_model(tiny_model_dir), "medvlm")


def request(text, image=None, **kw):
    content = [{"type": "image"}, {"type": "text", "text": text}] if image is not None else text
    return GenerationRequest(messages=[{"role": "user", "content": content}], image=image, **kw)


def test_batched_outputs_equal_models_generate_and_stream_the_same_text(engine):
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
    assert engine.active == 0


def test_rows_joining_and_leaving_the_running_batch_keep_greedy_parity(engine):
    """A long text row runs alone; an image row and a short text row join it mid-way (so their cache rows are
    left-padded to the running batch), the short one leaves first: each output equals generate on its own."""
    from medfoundry.models.generation import ChatPrompt, generate

    image = Image.new("RGB", (64, 64), (120, 30, 30))
    expected = [
        generate(engine.loaded, [ChatPrompt(text=PROMPTS[2])], max_new_tokens=30)[0],
        generate(engine.loaded, [ChatPrompt(text=PROMPTS[0], image=image)], max_new_tokens=12)[0],
        generate(engine.loaded, [ChatPrompt(text=PROMPTS[1])], max_new_tokens=4)[0],
    ]
    done: dict[int, object] = {}
    order: list[int] = []

    def sink(row):
        def record(kind, value):
            if kind in ("done", "error"):
                done[row] = value
                order.append(row)

        return record

    engine.add([request(PROMPTS[2], max_new_tokens=30)], [sink(0)])
    for _ in range(6):
        engine.step()
    engine.add([request(PROMPTS[0], image=image, max_new_tokens=12), request(PROMPTS[1], max_new_tokens=4)],
               [sink(1), sink(2)])
    assert engine.active == 3
    while engine.active:
        engine.step()
    assert [done[i].text for i in range(3)] == expected
    assert order == [2, 1, 0]  # each left when it was done, not when the batch was


def test_per_request_limits_and_stop_strings(engine):
    (free,) = engine.run_batch([request(PROMPTS[2], max_new_tokens=12)])
    assert len(free.text) > 3, "the tiny model should produce some text"
    stop = free.text[2:4]
    short, stopped, too_long = engine.run_batch(
        [request(PROMPTS[0], max_new_tokens=3), request(PROMPTS[2], max_new_tokens=12, stop=[stop]),
         request("pneumonia " * 1500, max_new_tokens=4)],
    )
    assert short.completion_tokens == 3 and short.finish_reason == "length"
    assert stopped.finish_reason == "stop" and stopped.text == free.text[: free.text.find(stop)]
    assert isinstance(too_long, RequestError) and too_long.code == "context_length_exceeded"


def test_text_only_engine_refuses_images_and_serves_the_rest(tiny_text_model_dir):
    from medfoundry.models.loading import load_model

    text_engine = InProcessEngine(load_model(tiny_text_model_dir), "textlm")
    assert not text_engine.accepts_images
    with_image, plain = text_engine.run_batch(
        [request(PROMPTS[0], image=Image.new("RGB", (32, 32)), max_new_tokens=3), request(PROMPTS[1], max_new_tokens=3)]
    )
    assert isinstance(with_image, RequestError) and with_image.code == "unsupported_image"
    assert plain.completion_tokens == 3


def _events(batcher, req, log, name):
    async def consume():
        async for kind, value in batcher.stream(req):
            if kind == "delta" and not any(entry == (name, "first") for entry in log):
                log.append((name, "first"))
            if kind == "done":
                log.append((name, "done"))
                return value

    return consume()


def test_short_request_finishes_before_a_long_one_that_started_earlier(engine):
    batcher = Batcher(engine, max_batch_size=4, batch_timeout_ms=0, max_queue=8)

    async def scenario():
        log: list[tuple[str, str]] = []
        long_task = asyncio.ensure_future(_events(batcher, request(PROMPTS[2], max_new_tokens=300), log, "long"))
        while ("long", "first") not in log:  # the long request is generating before the short one arrives
            await asyncio.sleep(0.005)
        short = await _events(batcher, request(PROMPTS[0], max_new_tokens=3), log, "short")
        long_result = await long_task
        return log, short, long_result

    try:
        log, short, long_result = asyncio.run(scenario())
    finally:
        batcher.close()
    assert log.index(("long", "first")) < log.index(("short", "done")) < log.index(("long", "done"))
    assert short.completion_tokens == 3
    assert long_result.completion_tokens > 3 * 10, "the long request must still have been running"


def test_cancelled_stream_frees_its_slot(engine):
    """One slot: a second request can only run once the first stream, abandoned by its client, leaves the batch."""
    batcher = Batcher(engine, max_batch_size=1, batch_timeout_ms=0, max_queue=8)
    cancelled_before = metrics.CANCELLED._value.get()

    async def scenario():
        stream = batcher.stream(request(PROMPTS[2], max_new_tokens=500))
        async for kind, _ in stream:
            if kind == "delta":
                break  # the client got its first text and went away
        waiting = asyncio.ensure_future(batcher.submit(request(PROMPTS[0], max_new_tokens=3)))
        await asyncio.sleep(0.05)
        await stream.aclose()
        return await asyncio.wait_for(waiting, timeout=60)

    try:
        result = asyncio.run(scenario())
    finally:
        batcher.close()
    assert result.completion_tokens == 3
    assert metrics.CANCELLED._value.get() == cancelled_before + 1
    assert engine.active == 0


def test_queue_is_bounded_beyond_the_running_slots(engine):
    batcher = Batcher(engine, max_batch_size=2, batch_timeout_ms=20, max_queue=2)

    async def burst():
        return await asyncio.gather(
            *(batcher.submit(request(PROMPTS[i % 3], max_new_tokens=4)) for i in range(10)), return_exceptions=True
        )

    try:
        results = asyncio.run(burst())
    finally:
        batcher.close()
    refused = [r for r in results if isinstance(r, QueueFull)]
    served = [r for r in results if not isinstance(r, Exception)]
    # 10 arrive at once: 2 may wait, the scheduler may already have admitted up to 2 into slots.
    assert 6 <= len(refused) <= 8 and all(r.retry_after >= 1 for r in refused)
    assert len(served) == 10 - len(refused)


def test_packed_serving_view_computes_like_the_model_and_leaves_it_as_it_was(engine, monkeypatch):
    """The serving view's linears run on oneDNN-packed weights (the batched-decoding speed-up) over the loaded model's
    own tensors; the loaded model, which `generate`, training and evaluation use, is not changed. The tiny model's
    layers are below the packing threshold (the engine serves it on torch's own path), so the view is built here with
    the threshold at 0."""
    import torch

    from medfoundry.serving import engine as engine_module

    model = engine.loaded.model
    assert engine.model is model  # every tiny layer is under PACKED_MIN_WEIGHTS
    monkeypatch.setattr(engine_module, "PACKED_MIN_WEIGHTS", 0)
    view = engine_module.packed_for_cpu(model)
    linears = [name for name, m in model.named_modules() if type(m) is torch.nn.Linear]
    served = dict(view.named_modules())
    assert linears and all(isinstance(served[name].forward, engine_module._PackedLinear) for name in linears)
    assert all("forward" not in vars(m) for m in model.modules())
    assert {id(p) for p in view.parameters()} == {id(p) for p in model.parameters()}  # no weight copied
    ids = torch.arange(3, 40).view(1, -1)
    with torch.inference_mode():
        expected, got = model(input_ids=ids).logits, view(input_ids=ids).logits
    assert torch.allclose(expected, got, atol=1e-4)
    served_engine = InProcessEngine(engine.loaded, "packed")
    assert served_engine.model is not model
    prompts = [request(p, max_new_tokens=8) for p in PROMPTS]
    assert [r.text for r in served_engine.run_batch(prompts)] == [r.text for r in engine.run_batch(prompts)]


def test_events_posted_while_the_loop_is_busy_ride_along_with_one_wake_up(monkeypatch):
    """The scheduler thread posts three rounds while the event loop is still busy: the loop is woken across threads
    once, and every event reaches its request's queue, in order."""
    import threading
    import time

    from medfoundry.serving.batching import _Mailbox, _Pending

    async def scenario():
        loop = asyncio.get_running_loop()
        wake_ups = []
        original = loop.call_soon_threadsafe
        monkeypatch.setattr(loop, "call_soon_threadsafe", lambda *a: (wake_ups.append(a), original(*a))[1])
        mailbox = _Mailbox(loop)
        pending = [_Pending(request("x"), mailbox, asyncio.Queue()) for _ in range(2)]

        def scheduler():
            for step in range(3):
                mailbox.post([(p, "delta", f"{i}:{step}") for i, p in enumerate(pending)])

        thread = threading.Thread(target=scheduler)
        thread.start()
        thread.join()
        time.sleep(0.05)  # the loop stays busy (blocked) while the three rounds arrive
        received = [[await asyncio.wait_for(p.events.get(), 5) for _ in range(3)] for p in pending]
        mailbox.post([(pending[0], "done", None)])  # the loop is idle again: a new post wakes it
        assert await asyncio.wait_for(pending[0].events.get(), 5) == ("done", None)
        return len(wake_ups), received

    wake_ups, received = asyncio.run(scenario())
    assert received == [[("delta", f"{i}:{step}") for step in range(3)] for i in range(2)]
    assert wake_ups == 2


def test_tiny_model_decodes_on_one_thread_and_leaves_the_callers_threads_as_they_were(engine, monkeypatch):
    """The tiny model's forwards run on one intra-op thread (a second only costs it), whatever the caller set; the
    caller's setting is back once the engine returns."""
    import torch

    seen = []
    forward = engine.model.forward
    monkeypatch.setattr(engine.model, "forward", lambda *a, **kw: (seen.append(torch.get_num_threads()), forward(*a, **kw))[1])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        engine.run_batch([request(PROMPTS[0], max_new_tokens=3), request(PROMPTS[1], max_new_tokens=3)])
        assert engine.threads == 1 and seen and set(seen) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
