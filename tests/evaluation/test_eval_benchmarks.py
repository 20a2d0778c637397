"""Adapters over the upstream formats: items, gold answers, malformed rows reported with file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from evalfixtures import MALFORMED, SIX

from medfoundry.evaluation.benchmarks import (
    BENCHMARKS,
    Benchmark,
    BenchmarkDataError,
    BenchmarkDataMissing,
    EvalItem,
    get_benchmark,
    public_benchmarks,
    register,
    split_of,
)
from medfoundry.tasks.prompts import build_prompt


def test_registry_names():
    assert public_benchmarks() == sorted(SIX)
    assert "heldout" in BENCHMARKS
    with pytest.raises(KeyError, match="unknown benchmark"):
        get_benchmark("nope")


def test_fixture_items_and_gold(bench_root):
    loaded = {name: get_benchmark(name).load(bench_root) for name in SIX}
    pubmed, skipped = loaded["pubmedqa"]
    assert [(i.id, i.answer) for i in pubmed] == [("101", "yes"), ("102", "no"), ("103", "maybe"), ("105", "yes")]
    assert pubmed[0].context == "Trial of aspirin.\nFewer strokes." and pubmed[0].labels == ("yes", "no", "maybe")
    assert [i.answer for i in loaded["medqa"][0]] == ["A", "C", "A", "B"]
    assert [i.answer for i in loaded["medmcqa"][0]] == ["C", "A", "B", "D"]  # cop 4 present: 1-based
    assert loaded["medmcqa"][0][0].options == {"A": "Antegrade", "B": "Retrograde", "C": "Both", "D": "None"}
    mmlu = loaded["mmlu_medical"][0]
    assert [i.answer for i in mmlu] == ["A", "C", "B"] and mmlu[2].question.startswith('A "dished face"')
    vqa = loaded["vqa_rad"][0]
    assert [(i.task, i.answer, i.meta["answer_type"]) for i in vqa] == [
        ("yes_no", "no", "closed"), ("short_answer", "CT", "open"), ("yes_no", "yes", "closed")  # "CLOSED " trimmed
    ]
    assert all(i.image.is_file() for i in vqa)
    medquad = loaded["medquad"][0]
    assert [i.id for i in medquad] == ["0000001_1-1", "0000001_1-2"] and medquad[0].task == "long_answer"
    assert "\n" not in medquad[0].answer


@pytest.mark.parametrize("name", SIX)
def test_malformed_rows_reported_with_file_and_line(bench_root, name):
    items, skipped = get_benchmark(name).load(bench_root)
    file_name, line = MALFORMED[name]
    bad = [s for s in skipped if Path(s.file).name == file_name]
    assert len(bad) == 1, skipped
    if line is not None:
        assert bad[0].line == line
    else:
        assert bad[0].line is not None and "invalid XML" in bad[0].reason
    assert items  # the run goes on


def test_medquad_empty_answer_is_skipped_with_its_line(bench_root):
    _, skipped = get_benchmark("medquad").load(bench_root)
    empty = next(s for s in skipped if "missing question or answer" in s.reason)
    assert Path(empty.file).name == "0000001_1.xml" and empty.line == 15


def test_data_path_forms(bench_root):
    bench = get_benchmark("medqa")
    by_root = bench.load(bench_root)[0]
    by_folder = bench.load(bench_root / "medqa")[0]
    by_file = bench.load(bench_root / "medqa" / "us_4options.jsonl")[0]
    assert [i.id for i in by_root] == [i.id for i in by_folder] == [i.id for i in by_file]
    assert len(bench.load(bench_root, limit=2)[0]) == 2
    with pytest.raises(BenchmarkDataMissing):
        bench.load(bench_root / "pubmedqa")
    with pytest.raises(BenchmarkDataMissing):
        bench.load(bench_root / "nothing-here")


def test_adding_a_benchmark_is_one_class(tmp_path):
    @register
    class TinyQA(Benchmark):
        name = "tiny_test_qa"
        folder = "tiny"
        patterns = ("*.txt",)
        public = False

        def read(self, path):
            for n, line in enumerate(path.read_text().splitlines(), start=1):
                question, answer = line.split("|")
                yield EvalItem(f"t{n}", self.name, "yes_no", question, answer)

    try:
        (tmp_path / "tiny").mkdir()
        (tmp_path / "tiny" / "q.txt").write_text("Is water wet?|yes\n")
        items, _ = get_benchmark("tiny_test_qa").load(tmp_path)
        assert items[0].answer == "yes"
        assert "Answer with yes or no only." in build_prompt(items[0]).user
    finally:
        BENCHMARKS.pop("tiny_test_qa")


def test_prompts_are_versioned():
    item = EvalItem("1", "x", "multiple_choice", "Q?", "A", options={"A": "one", "B": "two"})
    plain, reasoning = build_prompt(item), build_prompt(item, "reasoning")
    assert plain.template_id == "multiple_choice/plain@v1" and reasoning.template_id == "multiple_choice/reasoning@v1"
    assert "A. one\nB. two" in plain.user and "<answer>" in reasoning.user


@pytest.mark.shared
def test_shared_data_loads_completely(shared_dir):
    expected = {"pubmedqa": 500, "medqa": 300, "medmcqa": 1000, "mmlu_medical": 235, "vqa_rad": 1798}
    for name, count in expected.items():
        items, skipped = get_benchmark(name).load(shared_dir / "data")
        assert (len(items), len(skipped)) == (count, 0), name
    items, skipped = get_benchmark("medquad").load(shared_dir / "data" / "medquad", limit=200)
    assert len(items) == 200


# --- data hygiene: splits, MedMCQA cop convention, VQA-RAD closed ----------------------------------------------------

def _medmcqa(path, cops):
    rows = [
        {"question": f"Q{i}?", "opa": "w", "opb": "x", "opc": "y", "opd": "z", "cop": cop, "id": f"q{i}"}
        for i, cop in enumerate(cops)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_medmcqa_zero_based_export_is_detected_not_shifted(tmp_path):
    items, skipped = get_benchmark("medmcqa").load(_medmcqa(tmp_path / "validation.jsonl", [0, 3, 1]))
    assert [i.answer for i in items] == ["A", "D", "B"] and not skipped
    items, _ = get_benchmark("medmcqa").load(_medmcqa(tmp_path / "dev.jsonl", [1, 4, 2]))
    assert [i.answer for i in items] == ["A", "D", "B"]


def test_medmcqa_ambiguous_cop_is_a_loud_error_unless_the_convention_is_given(tmp_path):
    path = _medmcqa(tmp_path / "dev.jsonl", [1, 2, 3])
    with pytest.raises(BenchmarkDataError, match="cannot tell whether cop is 0-based"):
        get_benchmark("medmcqa").load(path)
    with pytest.raises(BenchmarkDataError, match="both 0 and 4"):
        get_benchmark("medmcqa").load(_medmcqa(tmp_path / "mixed.jsonl", [0, 4]))
    assert [i.answer for i in get_benchmark("medmcqa", cop_base=0).load(path)[0]] == ["B", "C", "D"]
    assert [i.answer for i in get_benchmark("medmcqa", cop_base=1).load(path)[0]] == ["A", "B", "C"]


def test_split_is_chosen_explicitly_and_train_and_test_are_never_merged(tmp_path):
    folder = tmp_path / "medmcqa"
    folder.mkdir()
    _medmcqa(folder / "train.jsonl", [0, 1, 2, 3, 0])
    _medmcqa(folder / "test.jsonl", [3, 0])
    with pytest.raises(BenchmarkDataError, match=r"several splits \(test, train\): choose one with --split"):
        get_benchmark("medmcqa").load(tmp_path)
    assert len(get_benchmark("medmcqa", "test").load(tmp_path)[0]) == 2
    assert len(get_benchmark("medmcqa", "train").load(tmp_path)[0]) == 5
    with pytest.raises(BenchmarkDataMissing, match="no dev file"):
        get_benchmark("medmcqa", "dev").load(tmp_path)
    assert len(get_benchmark("medmcqa").load(folder / "test.jsonl")[0]) == 2  # a file is used as given
    assert [split_of(Path(n)) for n in ("pqal_dev.json", "trainset.json", "anatomy_test.csv", "us_4options.jsonl")] == [
        "dev", "train", "test", None,
    ]


def test_vqa_rad_closed_means_yes_no(shared_dir):
    items, _ = get_benchmark("vqa_rad").load(shared_dir / "data")
    closed = [i for i in items if i.meta["answer_type"] == "closed"]
    assert closed and all(i.task == "yes_no" and i.answer in ("yes", "no") for i in closed)
    relabelled = [i for i in items if i.meta["upstream_answer_type"] == "closed" and i.meta["answer_type"] == "open"]
    assert relabelled, "VQA-RAD has CLOSED items with non-yes/no answers; they are scored as open"
