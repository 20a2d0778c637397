"""Dynamic batching: concurrent requests wait up to `batch_timeout_ms` to share one forward pass.

One worker thread owns the engine (models are not thread-safe); the asyncio side only enqueues and awaits. The wait
queue is bounded: past `max_queue` waiting requests a submit fails at once with `QueueFull` (HTTP 429 + Retry-After)
instead of letting latency and memory grow without limit.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from medfoundry.serving import metrics
from medfoundry.serving.engine import Engine, GenerationRequest, GenerationResult

log = logging.getLogger("medfoundry.serving")


class QueueFull(RuntimeError):
    def __init__(self, retry_after: int):
        super().__init__(f"server busy: request queue is full, retry after {retry_after}s")
        self.retry_after = retry_after


class ShuttingDown(RuntimeError):
    pass


@dataclass
class _Pending:
    request: GenerationRequest
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue
    enqueued: float = field(default_factory=time.perf_counter)

    def send(self, kind: str, value: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
        except RuntimeError:  # the client's event loop is gone (server shutting down)
            pass


class Batcher:
    def __init__(self, engine: Engine, max_batch_size: int, batch_timeout_ms: int, max_queue: int):
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.batch_timeout = batch_timeout_ms / 1000.0
        self.max_queue = max_queue
        self._queue: deque[_Pending] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._batch_seconds = 1.0  # moving average, for Retry-After
        self._worker = threading.Thread(target=self._run, name="medfoundry-batcher", daemon=True)
        self._worker.start()

    # ---------------------------------------------------------------- asyncio side
    def _enqueue(self, request: GenerationRequest) -> _Pending:
        pending = _Pending(request, asyncio.get_running_loop(), asyncio.Queue())
        with self._cond:
            if self._closed:
                raise ShuttingDown("server is shutting down")
            if len(self._queue) >= self.max_queue:
                metrics.REJECTED.labels(reason="queue_full").inc()
                raise QueueFull(self.retry_after())
            self._queue.append(pending)
            metrics.QUEUE_DEPTH.set(len(self._queue))
            self._cond.notify()
        return pending

    def retry_after(self) -> int:
        batches_ahead = len(self._queue) / self.max_batch_size + 1
        return max(1, math.ceil(batches_ahead * self._batch_seconds))

    async def submit(self, request: GenerationRequest) -> GenerationResult:
        pending = self._enqueue(request)
        try:
            while True:
                kind, value = await pending.events.get()
                if kind == "done":
                    return value
                if kind == "error":
                    raise value
        finally:
            request.cancelled = True  # no-op when done; stops generating for a client that went away

    async def stream(self, request: GenerationRequest) -> AsyncIterator[tuple[str, Any]]:
        """Events ("start", prompt_tokens), ("delta", text)..., then ("done", GenerationResult); errors are raised."""
        pending = self._enqueue(request)
        try:
            while True:
                kind, value = await pending.events.get()
                if kind == "error":
                    raise value
                yield kind, value
                if kind == "done":
                    return
        finally:
            request.cancelled = True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            waiting = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for pending in waiting:
            pending.send("error", ShuttingDown("server is shutting down"))
        self._worker.join(timeout=30)

    # ---------------------------------------------------------------- worker thread
    def _take_batch(self) -> list[_Pending] | None:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            deadline = self._queue[0].enqueued + self.batch_timeout
            while len(self._queue) < self.max_batch_size and not self._closed:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            group = self._queue[0].request.group
            batch, keep = [], deque()
            while self._queue:
                item = self._queue.popleft()
                if item.request.cancelled:
                    continue
                if len(batch) < self.max_batch_size and item.request.group == group:
                    batch.append(item)
                else:
                    keep.append(item)
            self._queue = keep
            metrics.QUEUE_DEPTH.set(len(self._queue))
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            if not batch:
                continue
            started = time.perf_counter()
            for item in batch:
                metrics.QUEUE_WAIT.observe(started - item.enqueued)
            metrics.BATCH_SIZE.observe(len(batch))

            def emit(row: int, kind: str, value: Any, batch=batch) -> None:
                batch[row].send(kind, value)

            try:
                results = self.engine.run_batch([item.request for item in batch], emit)
            except Exception as err:  # noqa: BLE001 - fail this batch's requests, keep serving
                log.exception("batch of %d failed", len(batch))
                results = [err] * len(batch)
            elapsed = time.perf_counter() - started
            self._batch_seconds = 0.8 * self._batch_seconds + 0.2 * elapsed
            for item, result in zip(batch, results, strict=True):
                if isinstance(result, Exception):
                    item.send("error", result)
                else:
                    metrics.PROMPT_TOKENS.inc(result.prompt_tokens)
                    metrics.COMPLETION_TOKENS.inc(result.completion_tokens)
                    item.send("done", result)
