"""In-process evaluation with a tiny model built by medfoundry.models: CLI report, parity with the endpoint
backend, the recipe's evaluate stage, decontamination, comparison and MLflow logging."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from evalfixtures import SIX, write_benchmarks
from typer.testing import CliRunner

from medfoundry.config import load_profile
from medfoundry.data.records import Record, write_jsonl
from medfoundry.evaluation.backends import HFBackend, OpenAIBackend
from medfoundry.evaluation.cli import register
from medfoundry.evaluation.compare import compare_runs
from medfoundry.evaluation.decontamination import CorpusContamination
from medfoundry.evaluation.runner import EvalSettings, ItemAnnotator, evaluate, flat_metrics


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return write_benchmarks(tmp_path_factory.mktemp("evaldata") / "data")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, data_root) -> Path:
    from medfoundry.models.loading import build_base_model

    texts = [p.read_text() for p in data_root.rglob("*") if p.suffix in (".json", ".jsonl", ".csv", ".xml")]
    texts += ["The answer is A. <answer>B</answer> yes no maybe"] * 20
    out = tmp_path_factory.mktemp("tiny-model")
    build_base_model(load_profile("tiny").model, texts, out)
    return out


@pytest.fixture(scope="module")
def backend(tiny_model) -> HFBackend:
    return HFBackend.from_uri(tiny_model, max_new_tokens=6, batch_size=4)


def test_cli_in_process_all_six_writes_report(tiny_model, data_root, small_tree, tmp_path):
    app = typer.Typer()
    register(app)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["eval", "--benchmark", "all", "--data", str(data_root), "--out", str(out), "--model", str(tiny_model),
         "--limit", "3", "--max-new-tokens", "4", "--bootstrap", "50", "--entity-tree", str(small_tree)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    for name in SIX:
        res = json.loads((out / name / "results.json").read_text())
        assert res["n"] == min(3, res["n"]) and res["n"] > 0 and res["backend"].startswith("hf:")
        assert 0.0 <= res["score"] <= 1.0 and len(res["ci95"]) == 2
    html = (out / "report.html").read_text()
    assert "<h2>Scores</h2>" in html and html.count("data:image/png;base64,") == 2  # scores and rarity plots
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rarity_available"] and summary["linker"].startswith("entity linker")


def test_endpoint_and_in_process_give_identical_scores(tiny_model, backend, data_root, tmp_path):
    """The same model behind medfoundry's own OpenAI-compatible server (KServe model server, dynamic batching)
    scores exactly like the in-process backend, image items included."""
    import socket

    import pandas as pd

    from medfoundry.config.release import ServingConfig
    from medfoundry.serving.model import MedVLMModel
    from medfoundry.serving.server import BackgroundServer, ServerSettings

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    names = ["pubmedqa", "medqa", "medmcqa", "vqa_rad"]
    settings = EvalSettings(bootstrap_samples=50)
    local = evaluate(names, data_root, backend, tmp_path / "local", settings)
    serving = ServingConfig(max_batch_size=4, batch_timeout_ms=5)
    model = MedVLMModel("tiny", str(tiny_model), serving)
    with BackgroundServer(model, ServerSettings(port=port, api_key="k", serving=serving)) as url:
        remote_backend = OpenAIBackend(f"{url}/openai/v1", "tiny", api_key="k", concurrency=4, max_tokens=6)
        remote = evaluate(names, data_root, remote_backend, tmp_path / "remote", settings)
    for name in names:
        a = pd.read_parquet(tmp_path / "local" / name / "predictions.parquet")
        b = pd.read_parquet(tmp_path / "remote" / name / "predictions.parquet")
        assert b["error"].isna().all(), b["error"].tolist()
        assert a["output"].tolist() == b["output"].tolist(), name
        assert a["output"].str.len().sum() > 0
        assert local["benchmarks"][name]["score"] == remote["benchmarks"][name]["score"]


def _holdout_dataset(root: Path) -> Path:
    from medfoundry.training.qa import is_rl_holdout

    records = []
    for i in range(24):
        split = "holdout" if i % 2 == 0 else "train"
        records.append(
            Record(id=f"r{i}", source="user:test", kind="qa", question=f"Which option is number {i}?",
                   options={"A": "one", "B": "two", "C": "three", "D": "four"}, answer="ABCD"[i % 4], split=split)
        )
    records.append(Record(id="t1", source="user:test", kind="text", text="A training document about femur bones."))
    dataset = root / "curated"
    write_jsonl(dataset / "records.jsonl", records)
    with (dataset / "records.jsonl").open("a") as fh:
        fh.write('{"id": "broken", "kind": "qa"}\n')
    eval_half = [r for r in records if r.split == "holdout" and r.kind == "qa" and not is_rl_holdout(r)]
    assert 0 < len(eval_half) < 12
    return dataset


def test_recipe_evaluate_model(tiny_model, data_root, small_tree, tmp_path):
    from medfoundry.evaluation.recipe import evaluate_model
    from medfoundry.training.qa import is_rl_holdout

    dataset = _holdout_dataset(tmp_path)
    profile = load_profile(
        "tiny", {"eval.benchmarks": ["medqa", "pubmedqa", "mmlu_medical"], "eval.data_dir": str(data_root / "medqa"),
                 "eval.bootstrap_samples": 50, "eval.entity_tree": str(small_tree)}
    )
    out = tmp_path / "eval"
    figures = evaluate_model(profile, tiny_model, dataset, out)
    expected_ids = {
        r.id for r in (Record.model_validate_json(x) for x in (dataset / "records.jsonl").read_text().splitlines()[:-1])
        if r.split == "holdout" and r.kind == "qa" and not is_rl_holdout(r)
    }
    res = json.loads((out / "heldout" / "results.json").read_text())
    assert res["n"] == len(expected_ids) and res["n_skipped"] == 1 and res["skipped"][0]["line"] == 26
    import pandas as pd

    assert set(pd.read_parquet(out / "heldout" / "predictions.parquet")["id"]) == expected_ids
    for key in ("heldout/accuracy", "heldout/ci95_lo", "heldout/ci95_hi", "medqa/score"):
        assert key in figures and 0.0 <= figures[key] <= 1.0
    assert "pubmedqa" in figures["benchmarks_skipped"]  # data_dir points at medqa only
    assert (out / "report.html").is_file()
    assert json.loads((out / "summary.json").read_text())["benchmarks"]["heldout"]["decontamination"]["n_checked"] > 0


def test_evaluate_stage_scores_with_the_small_profiles_protocols_and_the_gate_refuses_mixing_them(
    tiny_model, data_root, small_tree, tmp_path
):
    """The shipped `small` profile scores its multiple-choice benchmarks by log-likelihood (lm-eval's protocol) and its
    open ones generatively; the evaluate stage follows it, each result records its protocol, and the gate refuses to
    compare with a champion scored the other way."""
    from medfoundry.evaluation.recipe import evaluate_model
    from medfoundry.release.gates import evaluate_gate

    small = load_profile("small").eval
    assert small.protocols == {b: "loglikelihood" for b in ("pubmedqa", "medqa", "medmcqa", "mmlu_medical")}
    profile = load_profile(
        "tiny", {"eval.benchmarks": small.benchmarks, "eval.protocols": small.protocols, "eval.limit": 6,
                 "eval.data_dir": str(data_root), "eval.bootstrap_samples": 50, "eval.entity_tree": str(small_tree)}
    )
    out = tmp_path / "eval"
    figures = evaluate_model(profile, tiny_model, _holdout_dataset(tmp_path), out)

    summary = json.loads((out / "summary.json").read_text())
    assert not summary["missing"], summary["missing"]
    for name in small.benchmarks + ["heldout"]:
        expected = small.protocols.get(name, "generative")
        assert summary["protocols"][name] == expected, name
        assert figures[f"{name}/protocol_loglikelihood"] == float(expected == "loglikelihood")
    import pandas as pd

    medqa = pd.read_parquet(out / "medqa" / "predictions.parquet")
    assert set(medqa["extraction"]) == {"loglikelihood"} and not medqa["unparseable"].any()
    assert len(json.loads(medqa["output"].iloc[0])["loglikelihoods"]) == 4
    assert "loglikelihood" not in set(pd.read_parquet(out / "medquad" / "predictions.parquet")["extraction"])

    same = evaluate_gate(profile.gates.model_copy(update={"max_metrics": {}}), figures, dict(figures))
    assert same.passed, same.reasons
    generative_champion = {**figures, "medqa/protocol_loglikelihood": 0.0}
    mixed = evaluate_gate(profile.gates.model_copy(update={"max_metrics": {}}), figures, generative_champion)
    assert not mixed.passed
    assert [c.benchmark for c in mixed.checks if not c.passed] == ["medqa"]
    assert "not comparable" in mixed.reasons[0]


def test_a_misspelled_benchmark_in_eval_protocols_is_a_profile_error():
    from medfoundry.config import ProfileError

    with pytest.raises(ProfileError, match="medqa_4options"):
        load_profile("small", {"eval.protocols": {"medqa_4options": "loglikelihood"}})


class _FakeModel:
    description = "fake"

    def __init__(self, answer):
        self.answer = answer

    def generate(self, requests, progress=None):
        from medfoundry.evaluation.backends import Generation

        return [Generation(self.answer(r)) for r in requests]


def test_decontamination_flags_and_excludes(data_root, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        json.dumps({"text": "Notes: What are the symptoms of Adult Acute Lymphoblastic Leukemia ? Fever, feeling "
                            "tired, and easy bruising or bleeding."}) + "\n"
        + json.dumps({"text": "unrelated text about cardiology and hypertension treatment guidelines"}) + "\n"
    )
    annot = ItemAnnotator(contamination=CorpusContamination(corpus, n=8))
    model = _FakeModel(lambda r: "Fever, feeling tired.")
    summary = evaluate(["medquad"], data_root, model, tmp_path / "a", EvalSettings(bootstrap_samples=50), annot)
    decon = summary["benchmarks"]["medquad"]["decontamination"]
    assert decon["n_contaminated"] == 1 and decon["contaminated_ids"] == ["0000001_1-2"]
    assert decon["clean"]["n"] == 1 and decon["contaminated"]["n"] == 1
    annot = ItemAnnotator(contamination=CorpusContamination(corpus, n=8))
    excluded = evaluate(["medquad"], data_root, model, tmp_path / "b",
                        EvalSettings(bootstrap_samples=50, exclude_contaminated=True), annot)
    assert excluded["benchmarks"]["medquad"]["n"] == 1


def test_compare_two_versions(data_root, tmp_path):
    names = ["medqa", "medmcqa", "mmlu_medical"]
    settings = EvalSettings(bootstrap_samples=200)
    evaluate(names, data_root, _FakeModel(lambda r: "A"), tmp_path / "base", settings)
    from medfoundry.evaluation.benchmarks import get_benchmark
    from medfoundry.tasks.prompts import build_prompt

    gold = {build_prompt(i).user: i.answer for n in names for i in get_benchmark(n).load(data_root)[0]}
    evaluate(names, data_root, _FakeModel(lambda r: gold[r.user]), tmp_path / "cand", settings)
    result = compare_runs(tmp_path / "base", tmp_path / "cand", 200, 0, tmp_path / "cmp")
    medqa = result["benchmarks"]["medqa"]
    assert medqa["base"] == 0.5 and medqa["candidate"] == 1.0 and medqa["delta"] == pytest.approx(0.5)
    assert medqa["n_paired"] == 4 and medqa["delta_ci95"][0] <= 0.5 <= medqa["delta_ci95"][1]
    assert (tmp_path / "cmp" / "comparison.html").read_text().count("Comparison") >= 1


def test_mlflow_logging_inside_active_run(data_root, tmp_path, monkeypatch):
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils

    from medfoundry.evaluation.report import log_mlflow

    # Restored after the test so later tests see the tracking URI they set themselves.
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    # set_experiment exports MLFLOW_EXPERIMENT_ID; register it with monkeypatch so it is undone after the test.
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "0")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("eval-test")
    out = tmp_path / "out"
    summary = evaluate(["medqa"], data_root, _FakeModel(lambda r: "A"), out, EvalSettings(bootstrap_samples=50))
    assert log_mlflow(summary, out) is False  # no active run: nothing logged
    with mlflow.start_run() as run:
        assert log_mlflow(summary, out)
    logged = mlflow.get_run(run.info.run_id)
    assert logged.data.metrics["eval/medqa/accuracy"] == pytest.approx(0.5)
    assert logged.data.metrics["eval/medqa/ci95_hi"] >= 0.5
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "eval")}
    assert {"eval/report.html", "eval/summary.json"} <= artifacts
    assert flat_metrics(summary)["medqa/n"] == 4.0


def test_rarity_tiers_and_report_entity_metrics(small_tree, tmp_path):
    import pandas as pd

    from medfoundry.entities.tree import EntityTree
    from medfoundry.evaluation.rarity import load_linker

    frame = EntityTree.load(small_tree).frame
    linkable = frame[frame["linkable"].astype(bool) & (frame["name"].str.len() > 8) & ~frame["name"].str.contains(r"[(,\[]")]
    rare_name = linkable[linkable["rare"].astype(bool)]["name"].iloc[0]
    common_name = linkable[~linkable["rare"].astype(bool)]["name"].iloc[0]
    linker = load_linker(small_tree)
    assert linker.rarity_tier(f"Is {rare_name} inherited?") == "rare"
    assert linker.rarity_tier(f"Is {common_name} treatable?") == "common"
    assert linker.rarity_tier("Is the sky blue?") == "no_entity"

    data = tmp_path / "mts_dialog"
    data.mkdir()
    pd.DataFrame(
        [
            {"ID": 1, "section_header": "GENHX", "section_text": f"History of {common_name} and {rare_name}.",
             "dialogue": "Doctor: Any history? Patient: Yes."},
            {"ID": 2, "section_header": "ROS", "section_text": f"Positive for {common_name}.",
             "dialogue": "Doctor: Symptoms? Patient: Some."},
            {"ID": 3, "section_header": "CC", "section_text": "", "dialogue": "Doctor: Hi."},
        ]
    ).to_csv(data / "MTS-Dialog-ValidationSet.csv", index=False)
    # Generates the common entity only: item 1 -> P 1, R 1/2; item 2 -> exact. Nothing hallucinated.
    model = _FakeModel(lambda r: f"The patient reports {common_name}.")
    summary = evaluate(["mts_dialog"], tmp_path, model, tmp_path / "out", EvalSettings(bootstrap_samples=50),
                       ItemAnnotator(linker))
    res = summary["benchmarks"]["mts_dialog"]
    assert res["metric"] == "entity_f1" and res["n"] == 2 and res["n_skipped"] == 1
    assert res["metrics"]["entity_recall"]["value"] == pytest.approx((0.5 + 1.0) / 2)
    assert res["metrics"]["entity_precision"]["value"] == pytest.approx(1.0)
    assert res["metrics"]["hallucination_rate"]["value"] == 0.0
    assert res["score"] == pytest.approx((2 * 0.5 / 1.5 + 1.0) / 2)
    assert set(res["by_rarity"]) == {"rare", "common"}
    hallucinating = _FakeModel(lambda r: f"Findings: {rare_name}.")
    summary = evaluate(["mts_dialog"], tmp_path, hallucinating, tmp_path / "out2", EvalSettings(bootstrap_samples=50),
                       ItemAnnotator(linker))
    assert summary["benchmarks"]["mts_dialog"]["metrics"]["hallucination_rate"]["value"] == pytest.approx(0.5)
    # Without a linker the report benchmark falls back to ROUGE-L as its main score.
    plain = evaluate(["mts_dialog"], tmp_path, model, tmp_path / "out3", EvalSettings(bootstrap_samples=50))
    assert plain["benchmarks"]["mts_dialog"]["metric"] == "rouge_l"


def test_cli_registered_model_lineage_decontamination_and_mlflow(tiny_model, data_root, workspace, tmp_path,
                                                                  monkeypatch):
    """`--model models:/NAME/1`: weights from the registry, the training corpus from the version's lineage, and
    the CLI's own MLflow run (MLFLOW_TRACKING_URI set)."""
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils

    from medfoundry.release.registry import register_model_version

    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    # set_experiment exports MLFLOW_EXPERIMENT_ID; register it with monkeypatch so it is undone after the test.
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "0")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    corpus = tmp_path / "curated"
    question = "Which bone is in the thigh? Femur Tibia Ulna Radius"
    write_jsonl(corpus / "records.jsonl", [
        Record(id="c1", source="user:x", kind="text", text=f"Anatomy quiz. {question} and more text follows here."),
    ])
    register_model_version(tiny_model, "eval-test-model", {"dataset_uri": str(corpus)}, {})

    app = typer.Typer()
    register(app)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["eval", "-b", "mmlu_medical", "--data", str(data_root), "--out", str(out), "--model",
         "models:/eval-test-model/1", "--limit", "3", "--max-new-tokens", "2", "--bootstrap", "20",
         "--entity-tree", "none", "--ngram", "8", "--experiment", "eval-cli-test"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    res = json.loads((out / "mmlu_medical" / "results.json").read_text())
    assert res["decontamination"]["contaminated_ids"] == ["anatomy-1"]
    runs = mlflow.search_runs(experiment_names=["eval-cli-test"], output_format="list")
    assert len(runs) == 1 and "eval/mmlu_medical/accuracy" in runs[0].data.metrics
