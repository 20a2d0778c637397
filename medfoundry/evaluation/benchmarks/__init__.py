"""Benchmark adapters over the upstream file formats, one file per benchmark (as lm-evaluation-harness keeps its
task files), registered by name.

Adding a benchmark is one small file: subclass `Benchmark`, set `name`, `folder`, `patterns` and `main_metric`,
implement `read(path)` yielding `EvalItem` or `Skipped` (a malformed row with its file and line), decorate it with
`@register`, and import the module below. Items are yielded in file order so `--limit N` always takes the same N items.
"""

from medfoundry.evaluation.benchmarks import (  # noqa: F401 - importing a benchmark's module registers it
    heldout,
    medmcqa,
    medqa,
    medquad,
    mmlu_medical,
    mts_dialog,
    pubmedqa,
    report_findings,
    vqa_rad,
)
from medfoundry.evaluation.benchmarks.base import (
    BENCHMARKS,
    LETTERS,
    SPLITS,
    Benchmark,
    BenchmarkDataError,
    BenchmarkDataMissing,
    EvalItem,
    Skipped,
    Task,
    get_benchmark,
    iter_dataset_records,
    iter_json_container,
    iter_jsonl,
    public_benchmarks,
    register,
    split_of,
)

__all__ = [
    "BENCHMARKS", "LETTERS", "SPLITS", "Benchmark", "BenchmarkDataError", "BenchmarkDataMissing", "EvalItem",
    "Skipped", "Task", "get_benchmark", "iter_dataset_records", "iter_json_container", "iter_jsonl",
    "public_benchmarks", "register", "split_of",
]
