import pytest

from medfoundry.data.records import Record
from medfoundry.entities.coverage import compute_coverage, count_mentions, frequency_tier
from medfoundry.entities.rebalance import rebalance_weights

TEXTS = [
    "Fever and cough.",
    "Fever, cough and chest pain.",
    "Fever again.",
    "Cough with fever.",
    "Type 2 diabetes mellitus.",
    "Marfan syndrome with tall stature.",
    "No pneumonia.",
]


@pytest.fixture
def records(vocab_linker):
    return vocab_linker.annotate(
        [Record(id=str(i), source="t", kind="text", text=t) for i, t in enumerate(TEXTS)]
    )


def test_counts_propagate_and_coverage_breaks_down(vocab_tree, records, tmp_path):
    report = compute_coverage(
        vocab_tree, records, reference=["D:marfan", "D:noonan", "P:fever"], plots_dir=tmp_path
    )
    counts = report.counts()
    assert counts["P:fever"] == 4 and counts["P:cough"] == 3 and counts["D:t2dm"] == 1
    frame = report.frame.set_index("id")
    assert frame.at["D:diabetes", "count"] == 0 and frame.at["D:diabetes", "propagated"] == 1
    assert frame.at["P:abn", "propagated"] == 4 + 3 + 1 + 1  # fever, cough, chest pain, tall stature
    assert frame.at["D:marfan", "tier"] == "sparse" and frame.at["D:noonan", "tier"] == "uncovered"
    assert frame.at["P:fever", "tier"] == "common"
    summary = report.summary
    assert summary["mentions"] == 12 and summary["covered_nodes"] == 7
    assert summary["coverage"] == pytest.approx(7 / summary["nodes"], abs=1e-6)
    assert report.breakdown["by_kind"]["disease"]["covered"] == 3  # t2dm, marfan, pneumonia (negated counts)
    assert report.breakdown["by_rarity"]["rare"] == {
        "nodes": 3,
        "covered": 1,
        "coverage": pytest.approx(1 / 3, 1e-4),
    }
    reference = report.breakdown["reference"]
    assert reference["forward_coverage"] == pytest.approx(2 / 3, 1e-4)
    assert reference["backward_coverage"] == pytest.approx(2 / 7, 1e-4)
    assert reference["missing"] == ["D:noonan"]
    for path in report.plots.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = report.save(tmp_path / "out")
    assert saved.exists() and (tmp_path / "out" / "node_counts.parquet").exists()
    rows = {row["id"]: row for row in report.to_dict()["entities"]}
    assert rows["P:fever"]["count"] == 4 and rows["D:noonan"]["tier"] == "uncovered"


def test_negated_mentions_can_be_excluded(records):
    assert "D:pneumonia" in count_mentions(records)
    assert "D:pneumonia" not in count_mentions(records, include_negated=False)


def test_frequency_tiers():
    assert [frequency_tier(c, 2) for c in (0, 1, 2, 3, 20, 21)] == [
        "uncovered",
        "sparse",
        "sparse",
        "common",
        "common",
        "frequent",
    ]


def test_rebalancing_raises_rare_share_and_entropy(records):
    result = rebalance_weights(records, temperature=0.5, max_weight=10.0)
    weights = result.weights
    assert len(weights) == len(records) and weights.mean() == pytest.approx(1.0, abs=0.05)
    report = result.report
    assert report["after_rare_share"] > report["before_rare_share"]
    assert report["after_entropy_bits"] > report["before_entropy_bits"]
    by_id = dict(zip((r.id for r in records), weights, strict=True))
    assert by_id["5"] > by_id["0"]  # Marfan (rare, once) outweighs fever + cough (frequent)
    assert result.apply(records)[5].meta["sample_weight"] == pytest.approx(by_id["5"], abs=1e-5)
    assert len(result.resample(50, seed=1)) == 50


def test_rebalancing_cap_and_temperature_zero(records):
    flat = rebalance_weights(records, temperature=0.0)
    assert flat.weights.tolist() == pytest.approx([1.0] * len(records))
    capped = rebalance_weights(records, temperature=1.0, max_weight=1.2)
    assert capped.weights.max() <= 1.2 and capped.report["capped_records"] >= 1
    with pytest.raises(ValueError, match="temperature"):
        rebalance_weights(records, temperature=2.0)
