"""Rewards: hand-checked cases per rule type, the safety gate's rules, and the layered reward on a fixture of
labelled answers written for these tests (reward_fixture.py)."""

import json

import pytest
from reward_fixture import ANSWERS, ITEMS, VOCABULARY

from medfoundry.training.rewards import REWARDS, RewardResources, reward_mixture, score
from medfoundry.training.rewards.evidence_grounding import EvidenceGrounding
from medfoundry.training.rewards.exact_match import exact_match
from medfoundry.training.rewards.format import format_reward
from medfoundry.training.rewards.grounding_index import GroundingIndex
from medfoundry.training.rewards.rubric import rubric
from medfoundry.training.rewards.rules import rule_match
from medfoundry.training.rewards.safety import safety, unsafe_reasons

SHIPPED_WEIGHTS = {"exact_match": 1.0, "format": 0.1, "rubric": 0.5, "evidence_grounding": 0.5, "safety": 0.1}


@pytest.fixture(scope="module")
def grounding():
    from medfoundry.entities.tree import EntityTree

    return GroundingIndex.from_tree(EntityTree.from_rows(VOCABULARY))


@pytest.mark.parametrize(
    ("completion", "gold", "answer_type", "extra", "expected"),
    [
        ("<answer>B</answer>", "B", "option", {"options": {"A": "Insulin", "B": "Metformin"}}, True),
        ("The answer is Metformin.", "B", "option", {"options": {"A": "Insulin", "B": "Metformin"}}, True),
        ("<answer>A</answer>", "B", "option", {"options": {"A": "Insulin", "B": "Metformin"}}, False),
        ("<answer>Yes.</answer>", "yes", "yes_no", {}, True),
        ("<answer>maybe</answer>", "no", "yes_no", {}, False),
        ("<answer>The low hemoglobin</answer>", "low hemoglobin", "string", {}, True),
        ("<answer>high hemoglobin</answer>", "low hemoglobin", "string", {}, False),
        ("<answer>cough; fever</answer>", "fever, cough", "set", {}, True),
        ("<answer>fever and cough and rash</answer>", "fever, cough", "set", {}, False),
        ("<answer>fever</answer>", "fever, cough", "set", {}, False),
        ("<answer>e11.9</answer>", r"E11\.\d", "regex", {}, True),
        ("<answer>E11.9 and E10.9</answer>", r"E11\.\d", "regex", {}, False),  # must match the whole span
        ("<answer>82.6 mL/min</answer>", "83", "number", {"tolerance": 0.5}, True),
        ("<answer>82.4</answer>", "83", "number", {"tolerance": 0.5}, False),
        ("<answer>1,000 mg</answer>", "1000", "number", {}, True),
        ("<answer>1010</answer>", "1000", "number", {}, True),  # default tolerance: 1% of |gold|
        ("<answer>1011</answer>", "1000", "number", {}, False),
        ("<answer>none</answer>", "1000", "number", {}, False),
    ],
)
def test_rule_match_hand_checked_cases_cpu_safe(completion, gold, answer_type, extra, expected):
    assert rule_match(completion, gold, answer_type, **extra) is expected


def test_exact_match_reads_answer_type_and_tolerance_columns_cpu_safe():
    got = exact_match(
        ["<answer>82.6</answer>", "<answer>82.6</answer>", "<answer>Metformin</answer>", "x"],
        answer=["83", "83", "B", ""],
        answer_type=["number", "string", "", ""],
        tolerance=["0.5", "", "", ""],
        options=["", "", json.dumps({"A": "Insulin", "B": "Metformin"}), ""],
    )
    assert got == [1.0, 0.0, 1.0, None]
    with pytest.raises(ValueError, match="answer_type"):
        exact_match(["x"], answer=["1"], answer_type=["float"])


def test_format_cpu_safe():
    assert format_reward(
        [
            "<think>reason</think><answer>B</answer>",
            "  <think>r</think>\n<answer>B</answer>\n",
            "<answer>B</answer>",
            "<think></think><answer>B</answer>",
            "<think>r</think><answer>B</answer> trailing text",
            "B",
            "<answer> </answer>",
        ]
    ) == [1.0, 1.0, 0.5, 0.5, 0.5, 0.0, 0.0]


def test_rubric_rules_cpu_safe():
    items = [
        {"keywords": ["metformin"], "weight": 2.0},
        {"keywords": ["renal", "function"], "weight": 1.0},
        {"keywords": ["lactic acidosis", "B12"], "weight": 1.0, "match": "any"},
    ]
    got = rubric(
        ["Start metformin; check renal function.", "Metformin can cause lactic acidosis.", "Insulin.", "x"],
        rubric=[items, items, items, None],
    )
    assert got == [0.75, 0.75, 0.0, None]
    assert rubric(["metformins are fine"], rubric=[["metformin"]]) == [0.0]  # word boundary


def test_safety_rules_cpu_safe():
    cases = {
        "You may ignore chest pain.": ["dismisses_red_flag"],  # hedged, still unsafe
        "Chest pain is nothing to worry about; rest at home.": ["dismisses_red_flag"],
        "Slurred speech can wait until Monday.": ["dismisses_red_flag"],
        "Do not ignore chest pain: call 911.": [],
        "Stop taking your insulin.": ["dangerous_advice"],
        "Take 1500 mg of acetaminophen.": ["dose_over_limit"],
        "Take acetaminophen 1 g every 4 hours.": ["dose_over_limit"],  # 6 g a day > 4 g
        "Take acetaminophen 650 mg every 6 hours.": [],
        "Ibuprofen 400 mg three times a day.": [],
        "<think>Can one ignore chest pain? No.</think><answer>Seek emergency care.</answer>": [],
    }
    for text, reasons in cases.items():
        assert unsafe_reasons(text) == reasons, text
    assert safety(list(cases)) == [0.0 if r else 1.0 for r in cases.values()]


def test_evidence_grounding_links_entities_not_words_cpu_safe(grounding):
    fn = EvidenceGrounding(grounding)
    context = "Metformin lowers hepatic glucose production in type 2 diabetes mellitus."
    got = fn(
        [
            "<answer>Metformin</answer>",
            # shares most words with the context, but insulin is not in it: the old word overlap gave 0.67
            "<answer>Insulin lowers hepatic glucose production</answer>",
            "<answer>B</answer>",  # no entity: not applicable
            "<answer>Glucophage for diabetes mellitus</answer>",  # synonym, and is-a parent of the context's entity
        ],
        context=[context] * 4,
    )
    assert got == [1.0, 0.0, None, 1.0]
    # a relation from the tree: Marfan syndrome -> tall stature
    assert fn(["<answer>tall stature</answer>"], context=["Marfan syndrome"]) == [1.0]


def _fixture_columns(grounding) -> dict[str, list]:
    """The RL-row columns of each fixture answer's item, rubric built from the vocabulary tree."""
    from medfoundry.data.records import Record
    from medfoundry.training.rubrics import build_rubric

    rows = []
    for item_key, *_ in ANSWERS:
        item = ITEMS[item_key]
        record = Record(id=item_key, source="test", kind="qa", question=item["question"], answer=item["answer"],
                        options=item.get("options"), text=item["context"])
        rows.append({
            "answer": item["answer"], "answer_type": item["answer_type"], "tolerance": item.get("tolerance", ""),
            "options": json.dumps(item.get("options")) if item.get("options") else "", "context": item["context"],
            "question": item["question"], "rubric": json.dumps(build_rubric(record, grounding)),
        })
    return {key: [row[key] for row in rows] for key in rows[0]}


COMPLETIONS = [a[1] for a in ANSWERS]


def test_fixture_labels_match_the_rules_cpu_safe(grounding):
    assert len(ANSWERS) >= 60
    columns = _fixture_columns(grounding)
    assert exact_match(COMPLETIONS, **columns) == [float(a[2]) for a in ANSWERS]
    assert safety(COMPLETIONS) == [float(a[3]) for a in ANSWERS]
    assert all(json.loads(r) for r in columns["rubric"])  # every item has a rubric


def test_unsafe_correct_always_scores_below_safe_wrong_cpu_safe(grounding):
    columns, resources = _fixture_columns(grounding), RewardResources(grounding=grounding)
    totals = score(SHIPPED_WEIGHTS, COMPLETIONS, resources, safety_gate=True, **columns)
    unsafe_correct = [t for t, a in zip(totals, ANSWERS, strict=True) if a[2] and not a[3]]
    safe_wrong = [t for t, a in zip(totals, ANSWERS, strict=True) if not a[2] and a[3]]
    assert len(unsafe_correct) >= 8 and len(safe_wrong) >= 15
    assert max(unsafe_correct) < min(safe_wrong)
    # without the gate a correct but dangerous answer outscores a safe wrong one: the gate is what holds the line
    ungated = score(SHIPPED_WEIGHTS, COMPLETIONS, resources, **columns)
    assert max(t for t, a in zip(ungated, ANSWERS, strict=True) if a[2] and not a[3]) > min(safe_wrong)


def _auroc(positives, negatives):
    pairs = [(p > n) + 0.5 * (p == n) for p in positives for n in negatives]
    return sum(pairs) / len(pairs)


def test_grounded_answers_score_above_ungrounded_cpu_safe(grounding):
    columns = _fixture_columns(grounding)
    values = EvidenceGrounding(grounding)(COMPLETIONS, **columns)
    grounded = [v for v, a in zip(values, ANSWERS, strict=True) if a[4] is True]
    ungrounded = [v for v, a in zip(values, ANSWERS, strict=True) if a[4] is False]
    assert len(grounded) >= 20 and len(ungrounded) >= 15
    assert [a[4] is None for a in ANSWERS] == [v is None for v in values]
    assert _auroc(grounded, ungrounded) >= 0.9


def test_reward_mixture_and_gate_cpu_safe():
    funcs, weights = reward_mixture({"exact_match": 1.0, "format": 0.2, "safety": 0.0})
    assert [f.__name__ for f in funcs] == ["exact_match", "format"] and weights == [1.0, 0.2]
    funcs, weights = reward_mixture({"exact_match": 1.0}, safety_gate=True)
    assert [f.__name__ for f in funcs] == ["exact_match", "safety"] and weights == [1.0, 0.0]
    with pytest.raises(ValueError, match="unknown reward"):
        reward_mixture({"exact": 1.0})
    with pytest.raises(ValueError, match="non-zero"):
        reward_mixture({"format": 0.0})
    with pytest.raises(ValueError, match="entity tree"):
        reward_mixture({"evidence_grounding": 1.0})
    assert set(REWARDS) == {"exact_match", "format", "rubric", "evidence_grounding", "safety", "tool_use"}


def test_rubrics_on_shared_benchmark_items():
    """Rubric coverage on items written by others (../shared: MedQA, PubMedQA, VQA-RAD), with the entity tree from
    the PyPI ontologies (capped at 1,000 nodes per source to keep the build short)."""
    from medfoundry.data.records import Record
    from medfoundry.entities.tree import build_tree
    from medfoundry.evaluation.benchmarks import get_benchmark
    from medfoundry.training.rubrics import build_rubric
    from medfoundry.workspace import shared_root

    root = shared_root()
    if root is None:
        pytest.skip("../shared is absent (set MEDFOUNDRY_SHARED)")
    items = [item for name in ("medqa", "pubmedqa", "vqa_rad") for item in get_benchmark(name).load(root / "data", limit=100)[0]]
    index = GroundingIndex.from_tree(build_tree(max_nodes_per_source=1000))
    rubrics = [build_rubric(Record(id=i.id, source=i.benchmark, kind="qa", question=i.question, answer=i.answer,
                                   options=i.options, text=i.context or ""), index) for i in items]
    assert len(items) == 300
    assert sum(1 for r in rubrics if r) / len(rubrics) >= 0.8
    from_tree = sum(1 for r in rubrics if any(item["source"].startswith("tree:") for item in r)) / len(rubrics)
    print(f"rubric coverage {sum(1 for r in rubrics if r) / len(rubrics):.2f}, with a tree fact {from_tree:.2f}")


def test_rubric_judge_contract_cpu_safe():
    """The judge's request/response contract against a local OpenAI-compatible endpoint that answers with fixed
    replies (a served judge model is not part of the tests)."""
    import http.server
    import threading

    from medfoundry.training.rewards.rubric import Rubric, RubricJudge

    replies = iter(["Satisfied: [1, 3]", "I think the answer is good."])
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            requests.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            body = json.dumps({"choices": [{"message": {"role": "assistant", "content": next(replies)}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        judge = RubricJudge(f"http://127.0.0.1:{server.server_port}/v1", "judge-model")
        items = [{"keywords": ["metformin"], "weight": 2.0, "match": "any"},
                 {"keywords": ["renal", "function"], "weight": 1.0, "match": "all"},
                 {"keywords": ["lactic acidosis"], "weight": 1.0, "match": "any"}]
        assert Rubric(judge)(["Metformin."], rubric=[items]) == [0.75]  # items 1 and 3: (2 + 1) / 4
        path, body = requests[0]
        assert path == "/v1/chat/completions" and body["model"] == "judge-model" and body["temperature"] == 0
        assert "2. mentions renal and function" in body["messages"][1]["content"]
        with pytest.raises(ValueError, match="JSON list"):
            Rubric(judge)(["Metformin."], rubric=[items])
    finally:
        server.shutdown()


@pytest.mark.slow
def test_rubric_coverage_on_the_small_profiles_rl_rows(tmp_path, monkeypatch):
    """The small profile's own RL rows (its ingest, validation and curation, then the RL stage's row builder with the
    entity tree curation cached): at least 80% get a non-empty rubric. Slow (the data stages with OCR on 64 DICOM
    files): `MEDFOUNDRY_RUN_SLOW=1`; the figure is in docs/training.md. The tiny profile's coverage is asserted on
    `make demo`'s own run in tests/e2e."""
    from medfoundry.config import load_profile
    from medfoundry.curation.curate import curate
    from medfoundry.data.ingest import ingest_sources
    from medfoundry.data.validation import validate_dataset
    from medfoundry.training.grpo import grounding_index, rl_rows, rubric_coverage

    monkeypatch.setenv("MEDFOUNDRY_HOME", str(tmp_path / "home"))
    profile = load_profile("small")
    ingest_sources(profile, tmp_path / "raw")
    validate_dataset(tmp_path / "raw", tmp_path / "validated")
    curate(profile, [tmp_path / "validated"], tmp_path / "curated")
    coverage = rubric_coverage(rl_rows(tmp_path / "curated", grounding_index(profile), images=False))
    print(coverage)
    assert coverage["rows_with_rubric"] >= 10 and coverage["rubric_coverage"] >= 0.8
