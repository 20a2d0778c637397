"""Prompt pool by pass rate: every kept prompt's measured pass rate lies in the band (tool-use and multi-turn items
excepted, and reported as such), and the composition reconciles."""

import json

import pytest

from medfoundry.config.training import PromptPoolConfig
from medfoundry.training.prompt_pool import build_prompt_pool, passes, select_by_pass_rate

OPTIONS = json.dumps({"A": "Vitamin C", "B": "Vitamin D"})


def _row(i, **extra):
    return {"id": f"q{i}", "prompt": [{"role": "user", "content": f"question {i}"}], "answer": "A",
            "options": OPTIONS, "answer_type": "option", "tolerance": "", "expected_tool": "", **extra}


def _samples(correct: int, k: int = 4):
    return ["<answer>A</answer>"] * correct + ["<answer>B</answer>"] * (k - correct)


def test_kept_prompts_pass_rate_lies_in_band_cpu_safe():
    rows = [_row(i) for i in range(5)]
    samples = [_samples(c) for c in range(5)]  # pass rates 0, .25, .5, .75, 1
    rows.append(_row(5, expected_tool="bmi"))  # a tool item with pass rate 0: kept as tool-use
    samples.append(_samples(0))
    multi = _row(6)
    multi["prompt"] = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                       {"role": "user", "content": "c"}]
    rows.append(multi)
    samples.append(_samples(4))
    # a correct but unsafe answer is not a pass
    rows.append(_row(7))
    samples.append(["<answer>A</answer> You may ignore chest pain."] * 3 + ["<answer>A</answer>"])
    pool = select_by_pass_rate(rows, samples, (0.6, 0.8))
    rates = {m["id"]: m["pass_rate"] for m in pool.measured}
    assert rates == {"q0": 0.0, "q1": 0.25, "q2": 0.5, "q3": 0.75, "q4": 1.0, "q5": 0.0, "q6": 1.0, "q7": 0.25}
    kept = {r["id"]: r for r in pool.rows}
    assert set(kept) == {"q3", "q5", "q6"}
    for row in pool.rows:
        assert (0.6 <= row["pass_rate"] <= 0.8) == row["in_band"]
        assert row["in_band"] or row["expected_tool"] or len(row["prompt"]) > 1
    c = pool.composition
    assert (c["in_band"], c["tool_use"], c["multi_turn"], c["too_easy"], c["too_hard"]) == (1, 1, 1, 1, 4)
    assert c["kept"] + c["too_easy"] + c["too_hard"] == c["candidates"] == 8
    with pytest.raises(ValueError, match="band"):
        select_by_pass_rate(rows, samples, (0.8, 0.6))


def test_prompt_pool_from_the_policy_measures_k_samples_per_prompt(tiny_dataset, base_model_dir):
    from medfoundry.models.loading import load_model
    from medfoundry.training.grpo import rl_rows

    rows = rl_rows(tiny_dataset)
    cfg = PromptPoolConfig(enabled=True, samples_per_prompt=3, pass_rate_band=(0.0, 0.5), max_new_tokens=8)
    pool = build_prompt_pool(load_model(base_model_dir), rows, cfg)
    assert [len(pool.samples[r["id"]]) for r in rows] == [3] * len(rows)
    for row in rows:  # the rates are the rule reward's pass share over the returned samples
        measured = next(m for m in pool.measured if m["id"] == row["id"])
        assert measured["pass_rate"] == sum(passes(row, pool.samples[row["id"]])) / 3
    assert all(0.0 <= r["pass_rate"] <= 0.5 for r in pool.rows if r["in_band"])
    assert pool.composition["kept"] + pool.composition["too_easy"] + pool.composition["too_hard"] == len(rows)


def test_pool_pass_rates_read_back_through_feast_beside_curation_features(tmp_path, tiny_dataset):
    from medfoundry.curation.features import (
        lookup_prompt_pass_rates,
        publish_features,
        publish_prompt_pass_rates,
        training_weights,
    )
    from medfoundry.data.records import read_records

    rows = [_row(i) for i in range(3)]
    pool = select_by_pass_rate(rows, [_samples(0), _samples(2), _samples(4)], (0.4, 0.6))
    workdir = tmp_path / "feast"
    publish_features(tiny_dataset, workdir)  # the store the curate stage publishes, first
    assert publish_prompt_pass_rates(pool.measured, (0.4, 0.6), 4, workdir) == 3
    got = {r["prompt_id"]: r for r in lookup_prompt_pass_rates(["q0", "q1", "q2", "unknown"], workdir)}
    assert [got[f"q{i}"]["pass_rate"] for i in range(3)] == [0.0, 0.5, 1.0]
    assert [got[f"q{i}"]["in_band"] for i in range(3)] == [0, 1, 0]
    assert (got["q1"]["band_low"], got["q1"]["band_high"]) == (pytest.approx(0.4), pytest.approx(0.6))
    assert got["q1"]["samples"] == 4
    assert got["unknown"]["pass_rate"] is None
    # curation's views in the same store still answer
    record_id = next(iter(read_records(tiny_dataset))).id
    assert training_weights([record_id], workdir)["sample_weight"].notna().all()
