"""Continuous batching: requests join the engine's running batch at the next decoding step and leave it as soon as
they finish, stop or are cancelled.

One scheduler thread owns the engine (models are not thread-safe); the asyncio side only enqueues and awaits events.
Between two decoding steps the scheduler admits waiting requests into free slots (up to `max_batch_size` running;
newcomers are prefilled together) and drops sequences whose client went away. When the engine is idle it waits up to
`batch_timeout_ms` for simultaneous arrivals so their prefill is batched. The wait queue is bounded: past `max_queue`
waiting requests a submit fails at once with `QueueFull` (HTTP 429 + Retry-After) instead of letting latency and
memory grow without limit.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import weakref
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


class _Mailbox:
    """Events from the scheduler thread to one event loop's requests. At most one cross-thread wake-up of the loop is
    pending at a time: what the scheduler posts while the loop is still busy streaming earlier events is picked up by
    the loop itself once those streams ran, as one delivery. Under concurrency this saves a self-pipe write and a GIL
    hand-over per decoding step exactly when the loop is the bottleneck; an idle loop is woken at once."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self._lock = threading.Lock()
        self._events: list[tuple[_Pending, str, Any]] = []
        self._scheduled = False

    def post(self, events: list[tuple[_Pending, str, Any]]) -> None:
        with self._lock:
            self._events.extend(events)
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the client's event loop is gone (server shutting down)
            pass

    def _drain(self) -> None:
        with self._lock:
            events, self._events = self._events, []
            if not events:
                self._scheduled = False
                return
        for pending, kind, value in events:
            pending.events.put_nowait((kind, value))
        # Runs after the streams these events woke (they were scheduled first): collects what arrived meanwhile.
        self.loop.call_soon(self._drain)


@dataclass
class _Pending:
    request: GenerationRequest
    mailbox: _Mailbox
    events: asyncio.Queue
    enqueued: float = field(default_factory=time.perf_counter)
    admitted: float = 0.0

    def send(self, kind: str, value: Any) -> None:
        self.mailbox.post([(self, kind, value)])


class Batcher:
    def __init__(self, engine: Engine, max_batch_size: int, batch_timeout_ms: int, max_queue: int):
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.batch_timeout = batch_timeout_ms / 1000.0
        self.max_queue = max_queue
        self._queue: deque[_Pending] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._request_seconds = 1.0  # moving average of admission-to-done, for Retry-After
        # Events of one scheduling round, delivered together after it: one event-loop wake-up per round instead of
        # one per token per running request (which, for small models, costs more than the decoding step).
        self._outbox: list[tuple[_Pending, str, Any]] = []
        self._mailboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Mailbox] = weakref.WeakKeyDictionary()
        self._worker = threading.Thread(target=self._run, name="medfoundry-scheduler", daemon=True)
        self._worker.start()

    # ---------------------------------------------------------------- asyncio side
    def _enqueue(self, request: GenerationRequest) -> _Pending:
        loop = asyncio.get_running_loop()
        with self._cond:
            mailbox = self._mailboxes.get(loop)
            if mailbox is None:
                mailbox = self._mailboxes[loop] = _Mailbox(loop)
            pending = _Pending(request, mailbox, asyncio.Queue())
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
        rounds_ahead = len(self._queue) / self.max_batch_size + 1
        return max(1, math.ceil(rounds_ahead * self._request_seconds))

    async def submit(self, request: GenerationRequest) -> GenerationResult:
        async for kind, value in self.stream(request):
            if kind == "done":
                return value
        raise RuntimeError("stream ended without a result")

    async def stream(self, request: GenerationRequest) -> AsyncIterator[tuple[str, Any]]:
        """Events ("start", prompt_tokens), ("delta", text)..., then ("done", GenerationResult); errors are raised.
        Leaving the iteration early (client gone) cancels the request: its slot is freed at the next step."""
        pending = self._enqueue(request)
        held = None
        try:
            while True:
                kind, value = held or await pending.events.get()
                held = None
                # Deltas that piled up while the client was being served go out as one piece (less per-token work
                # on the event loop exactly when it is busiest).
                while kind == "delta" and not pending.events.empty():
                    held = pending.events.get_nowait()
                    if held[0] != "delta":
                        break
                    value, held = value + held[1], None
                if kind == "error":
                    raise value
                yield kind, value
                if kind == "done":
                    return
        finally:
            request.cancelled = True  # no-op when done
            with self._cond:
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            waiting = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for pending in waiting:
            pending.send("error", ShuttingDown("server is shutting down"))
        self._worker.join(timeout=30)

    # ---------------------------------------------------------------- scheduler thread
    def _admit(self) -> list[_Pending] | None:
        """Waiting requests for the free slots (None when closed); blocks while there is nothing to do."""
        with self._cond:
            while not self._queue and not self.engine.active and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            if not self.engine.active and self._queue:  # idle: let simultaneous arrivals share one prefill
                deadline = self._queue[0].enqueued + self.batch_timeout
                while len(self._queue) < self.max_batch_size and not self._closed:
                    remaining = deadline - time.perf_counter()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            admitted = []
            while self._queue and self.engine.active + len(admitted) < self.max_batch_size:
                item = self._queue.popleft()
                if not item.request.cancelled:
                    admitted.append(item)
            metrics.QUEUE_DEPTH.set(len(self._queue))
            return admitted

    def _run(self) -> None:
        while True:
            admitted = self._admit()
            if admitted is None:
                break
            if admitted:
                now = time.perf_counter()
                for item in admitted:
                    metrics.QUEUE_WAIT.observe(now - item.enqueued)
                    item.admitted = now
                try:
                    self.engine.add([item.request for item in admitted], [self._sink(item) for item in admitted])
                except Exception as err:  # noqa: BLE001 - fail the newcomers, keep serving the running batch
                    log.exception("prefill of %d requests failed", len(admitted))
                    for item in admitted:
                        self._outbox.append((item, "error", err))
                self._flush()  # newcomers' first tokens go out now, not after the next decoding step
            try:
                self.engine.step()
            except Exception as err:  # noqa: BLE001 - fail the running batch, keep serving
                log.exception("decoding step failed")
                self.engine.abort(err)
            self._flush()
            metrics.RUNNING.set(self.engine.active)
        self.engine.abort(ShuttingDown("server is shutting down"))
        self._flush()
        metrics.RUNNING.set(0)

    def _flush(self) -> None:
        if not self._outbox:
            return
        by_mailbox: dict[_Mailbox, list[tuple[_Pending, str, Any]]] = {}
        for event in self._outbox:
            by_mailbox.setdefault(event[0].mailbox, []).append(event)
        self._outbox = []
        for mailbox, events in by_mailbox.items():
            mailbox.post(events)

    def _sink(self, item: _Pending):
        def sink(kind: str, value: Any) -> None:
            if kind == "done":
                self._request_seconds = 0.8 * self._request_seconds + 0.2 * (time.perf_counter() - item.admitted)
            self._outbox.append((item, kind, value))

        return sink
