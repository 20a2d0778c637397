"""Profile sections for registration, promotion gates, GitOps and serving."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medfoundry.config.sections import Section

Environment = Literal["dev", "staging", "prod"]


class GateConfig(Section):
    # Minimum main score per benchmark name ("heldout" is the recipe's own held-out split).
    min_scores: dict[str, float] = Field(default_factory=dict)
    # Ceilings on any flat metric key, e.g. {"heldout/unparseable_rate": 0.5}: the model must answer in a form the
    # extractor reads. A named key the candidate does not report refuses.
    max_metrics: dict[str, float] = Field(default_factory=dict)
    # Largest allowed drop versus the current champion (absolute score points, 0..1), judged on the paired
    # difference over the items both were scored on: refused when the lower bound of the paired bootstrap interval
    # of candidate - champion is below -max_regression.
    max_regression: float = Field(0.02, ge=0.0, le=1.0)
    # Per-benchmark overrides of max_regression.
    max_regression_by_benchmark: dict[str, float] = Field(default_factory=dict)
    # Paired bootstrap settings (one-sided lower bound at `confidence`).
    bootstrap_samples: int = Field(2000, ge=100)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    require_rare_not_worse: bool = True
    max_hallucination_rate: float | None = Field(None, ge=0.0, le=1.0)


class PredictorConfig(Section):
    """How the promoted model is served on KServe (written into the InferenceService by promotion)."""

    # RawDeployment: plain Deployment + HPA (no Knative); Serverless: Knative scale-to-zero.
    deployment_mode: Literal["RawDeployment", "Serverless"] = "RawDeployment"
    # >0: GPUs per replica, served by KServe's huggingface runtime (vLLM); 0: the medfoundry-vlm runtime on CPU.
    gpus: int = Field(0, ge=0)
    # KServe ServingRuntime for GPU serving (KServe's huggingface server, vLLM backend).
    gpu_runtime: str = "kserve-huggingfaceserver"
    # Weights size used to size the startup probe; None: estimated from the profile's model section.
    model_size_gb: float | None = Field(None, gt=0)
    scale_metric: Literal["concurrency", "rps", "cpu", "memory"] = "concurrency"
    scale_target: int = Field(4, ge=1)
    # Requests and limits of each replica; None keeps what the environment's overlay (the platform) sets.
    cpu_request: str | None = None
    memory_request: str | None = None
    cpu_limit: str | None = None
    memory_limit: str | None = None


class GitOpsConfig(Section):
    # Local checkout of the GitOps repository. Empty: <workspace>/gitops (created on first promotion, cloned from
    # `remote` when one is set).
    repo: str = ""
    # Git remote (URL or path) pushed after each promotion or rollback; None: commit locally only.
    remote: str | None = None
    branch: str = "main"
    environment: Environment = "dev"
    # Kubernetes namespace per environment for the InferenceService; empty: "medfoundry-<env>".
    namespaces: dict[str, str] = Field(default_factory=dict)
    # KServe ServingRuntime (defined in platform/) that runs `medfoundry serve` for model format medfoundry-vlm.
    runtime: str = "medfoundry-vlm"
    service_name: str = "medfoundry-model"
    predictor: PredictorConfig = Field(default_factory=PredictorConfig)


class ServingConfig(Section):
    max_batch_size: int = Field(8, ge=1)
    batch_timeout_ms: int = Field(10, ge=0)
    # Requests waiting for a batch slot beyond this are refused with 429 and Retry-After.
    max_queue: int = Field(64, ge=1)
    # Default and ceiling for max_tokens in a request.
    max_new_tokens: int = Field(64, ge=1)
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    # Images larger than this (long side, px) are downscaled before the processor sees them.
    max_image_size: int = Field(448, ge=28)
    # torch intra-op threads for the in-process engine; None keeps torch's default (all cores). Small models on
    # shared CPUs are faster with 1.
    threads: int | None = Field(None, ge=1)
    # Request contents (prompts, images) are never logged unless this is set.
    log_prompts: bool = False
