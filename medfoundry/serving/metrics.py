"""Prometheus metrics of the model server, on the default registry that KServe's /metrics exposes.

Labels never carry request content: routes are the matched path templates, not raw URLs.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("medfoundry_serving_requests_total", "HTTP requests by route and status", ["route", "status"])
LATENCY = Histogram(
    "medfoundry_serving_request_seconds",
    "HTTP request latency by route (streaming: until the last byte)",
    ["route"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
REJECTED = Counter(
    "medfoundry_serving_rejected_total",
    "Requests refused before generation, by reason",
    ["reason"],  # unauthenticated | forbidden | too_large | invalid | queue_full | not_ready
)
QUEUE_DEPTH = Gauge("medfoundry_serving_queue_depth", "Requests waiting for a batch slot")
RUNNING = Gauge("medfoundry_serving_running", "Sequences in the running batch (slots in use)")
QUEUE_WAIT = Histogram(
    "medfoundry_serving_queue_wait_seconds",
    "Time from enqueue to the request joining the running batch",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_SIZE = Histogram(
    "medfoundry_serving_batch_size", "Sequences in the batch at each decoding step", buckets=(1, 2, 4, 8, 16, 32, 64)
)
_TOKEN_BUCKETS = (0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30)
TIME_TO_FIRST_TOKEN = Histogram(
    "medfoundry_serving_time_to_first_token_seconds",
    "From the request's arrival at the engine queue to its first generated token",
    buckets=_TOKEN_BUCKETS,
)
INTER_TOKEN_LATENCY = Histogram(
    "medfoundry_serving_inter_token_latency_seconds",
    "Between two consecutive generated tokens of one request",
    buckets=_TOKEN_BUCKETS,
)
CANCELLED = Counter("medfoundry_serving_cancelled_total", "Sequences dropped because their client went away")
PROMPT_TOKENS = Counter("medfoundry_serving_prompt_tokens_total", "Prompt tokens processed")
COMPLETION_TOKENS = Counter("medfoundry_serving_completion_tokens_total", "Tokens generated")
MODEL_READY = Gauge("medfoundry_serving_model_ready", "1 when the model is loaded and serving", ["model"])
