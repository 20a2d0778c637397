"""The loglikelihood protocol against lm-evaluation-harness 0.4.13's own code, on the same items from ../shared.

A tiny random-init Llama with a locally trained tokenizer is saved as an ordinary HF folder; the harness (its CLI, in
its own venv from `make lm-eval`, with task files that include its upstream medqa_4options, medmcqa, pubmedqa and
mmlu tasks) and our scorer both read it. Same choice on every item, log-likelihoods equal to float precision.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medfoundry.evaluation import parity
from medfoundry.evaluation.benchmarks import EvalItem, get_benchmark
from medfoundry.evaluation.compare import compare_runs
from medfoundry.evaluation.loglikelihood import (
    ChoiceRequest,
    ProtocolError,
    choice_scores,
    encode_pair,
    harness_request,
)

REPO = Path(__file__).resolve().parents[2]
PER_BENCHMARK = 8


@pytest.fixture(scope="module")
def shared_items(shared_dir):
    data = shared_dir / "data"
    items = []
    for name in ("medqa", "medmcqa", "pubmedqa"):
        items += get_benchmark(name).load(data, PER_BENCHMARK)[0]
    mmlu = get_benchmark("mmlu_medical").load(data)[0]
    for subject in sorted({it.meta["subject"] for it in mmlu}):
        items += [it for it in mmlu if it.meta["subject"] == subject][: PER_BENCHMARK // 2]
    return items


@pytest.fixture(scope="module")
def tiny_lm(shared_items, tmp_path_factory):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from medfoundry.models.tokenizer import train_tokenizer

    folder = tmp_path_factory.mktemp("tiny-llama")
    texts = [harness_request(it).context for it in shared_items] * 2
    tokenizer = train_tokenizer(texts, 1024, folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
    )
    model = LlamaForCausalLM(config)
    # Random init gives near-uniform choices; larger weights make the choices depend on the text.
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_harness_prompts_match_the_upstream_task_text():
    item = EvalItem("1", "medqa", "multiple_choice", "Q?", "B", {"A": "x", "B": "y", "C": "z", "D": "w"})
    request = harness_request(item)
    assert request.context == "Question: Q?\nA. x\nB. y\nC. z\nD. w\nAnswer:" and request.gold == 1
    assert harness_request(EvalItem("1", "medmcqa", "multiple_choice", "Q?", "A", {"A": "x", "B": "y"})).context == (
        "Question: Q?\nChoices:\nA. x\nB. y\nAnswer:"
    )
    mmlu = EvalItem("1", "mmlu_medical", "multiple_choice", " Q? ", "A", {"A": "x", "B": "y"}, meta={"subject": "medical_genetics"})
    assert harness_request(mmlu).context == (
        "The following are multiple choice questions (with answers) about medical genetics.\n\nQ?\nA. x\nB. y\nAnswer:"
    )
    pubmed = EvalItem("1", "pubmedqa", "yes_no", "Q?", "maybe", context="c1\nc2", labels=("yes", "no", "maybe"))
    assert harness_request(pubmed) == ChoiceRequest("Abstract: c1\nc2\nQuestion: Q?\nAnswer:", ("yes", "no", "maybe"), 2, "lm-eval:pubmedqa")
    with pytest.raises(ProtocolError, match="use --protocol generative"):
        harness_request(EvalItem("1", "medquad", "long_answer", "Q?", "text"))


def test_acc_norm_divides_by_characters_and_acc_bytes_by_bytes():
    request = ChoiceRequest("ctx", ("yes", "no", "maybe"), 2, "t")
    scored = choice_scores(request, [(-3.0, False), (-2.5, True), (-4.0, False)])
    assert (scored.pred, scored.pred_norm) == (1, 2)  # -4/5 > -3/3 > -2.5/2
    accented = choice_scores(ChoiceRequest("c", ("é", "e"), 0, "t"), [(-1.0, False), (-0.9, False)])
    assert (accented.pred_norm, accented.pred_bytes) == (1, 0)


def test_trailing_space_moves_to_the_continuation(tiny_lm):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    assert encode_pair(tokenizer, "Answer: ", "A") == encode_pair(tokenizer, "Answer:", " A")


def test_same_choices_as_lm_evaluation_harness_on_shared_items(shared_items, tiny_lm, tmp_path):
    python = parity.harness_python(REPO)
    if python is None:
        pytest.skip("lm-evaluation-harness venv missing: run `make lm-eval` (make test does)")
    tasks = parity.write_tasks(shared_items, tmp_path / "tasks", parity.lm_eval_tasks_dir(python))
    parity.run_harness(python, tiny_lm, tmp_path / "tasks", list(tasks), tmp_path / "out", timeout_s=600)
    harness = parity.read_samples(tmp_path / "out", tasks)
    ours = parity.score_ours(shared_items, tiny_lm)
    figures = parity.compare(shared_items, ours, harness)
    assert {f.benchmark for f in figures} == {"medqa", "medmcqa", "pubmedqa", "mmlu_medical"}
    for fig in figures:
        assert fig.n >= PER_BENCHMARK
        assert fig.agreement == 1.0, fig
        assert abs(fig.acc_delta_points) == 0.0, fig
        assert fig.max_abs_ll_diff < 1e-3, fig
    # The choices are not all the same letter: agreement is not trivially reached.
    assert len({o["pred"] for o in ours.values()}) > 1


def test_cross_protocol_comparison_is_refused(tmp_path):
    import pandas as pd

    for folder, protocol in (("base", "generative"), ("cand", "loglikelihood")):
        bench = tmp_path / folder / "medqa"
        bench.mkdir(parents=True)
        pd.DataFrame({"id": ["1"], "score": [1.0]}).to_parquet(bench / "predictions.parquet")
        (bench / "results.json").write_text(json.dumps({"protocol": protocol}))
    with pytest.raises(ProtocolError, match="different protocols: generative vs loglikelihood"):
        compare_runs(tmp_path / "base", tmp_path / "cand")
