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
QUEUE_WAIT = Histogram(
    "medfoundry_serving_queue_wait_seconds",
    "Time from enqueue to the start of the request's batch",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_SIZE = Histogram("medfoundry_serving_batch_size", "Requests per generation batch", buckets=(1, 2, 4, 8, 16, 32, 64))
PROMPT_TOKENS = Counter("medfoundry_serving_prompt_tokens_total", "Prompt tokens processed")
COMPLETION_TOKENS = Counter("medfoundry_serving_completion_tokens_total", "Tokens generated")
MODEL_READY = Gauge("medfoundry_serving_model_ready", "1 when the model is loaded and serving", ["model"])
