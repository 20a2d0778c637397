import pytest

from medfoundry.data.records import Record
from medfoundry.training.deepspeed import build_deepspeed_config
from medfoundry.training.qa import is_rl_holdout, qa_messages, task_of


def _qa(i: int, **kw) -> Record:
    return Record(id=f"q{i}", source="test", kind="qa", question="Q?", answer="yes", split="holdout", **kw)


def test_rl_holdout_rule_cpu_safe():
    assert is_rl_holdout(_qa(0, meta={"holdout_use": "rl"}))
    assert not is_rl_holdout(_qa(0, meta={"holdout_use": "eval"}))
    assert not is_rl_holdout(_qa(0).model_copy(update={"split": "train"}))
    by_hash = [is_rl_holdout(_qa(i)) for i in range(400)]
    assert by_hash == [is_rl_holdout(_qa(i)) for i in range(400)]  # stable
    assert 0.4 < sum(by_hash) / len(by_hash) < 0.6  # about half


def test_qa_prompt_matches_evaluation_template_cpu_safe():
    record = Record(id="x", source="test", kind="qa", question="Best drug?", options={"A": "a", "B": "b"},
                    answer="A", text="Some abstract.")
    system, user = qa_messages(record)
    assert system["content"] == "You are a medical expert."
    assert user["content"].startswith("Context:\nSome abstract.\n\nQuestion: Best drug?\n\nOptions:\nA. a\nB. b")
    assert "<think></think>" in user["content"] and task_of(record) == "multiple_choice"
    assert "<think>" not in qa_messages(record, reasoning=False)[1]["content"]


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_deepspeed_config_builds_cpu_safe(stage):
    config = build_deepspeed_config(stage, offload=True)
    assert config["zero_optimization"]["stage"] == stage
    assert config["train_micro_batch_size_per_gpu"] == "auto" and "optimizer" not in config
    assert ("offload_param" in config["zero_optimization"]) == (stage == 3)
    if stage == 3:
        assert config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


def test_deepspeed_config_is_accepted_by_the_trainer_cpu_safe(tmp_path):
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    ds = HfTrainerDeepSpeedConfig(build_deepspeed_config(2))
    assert ds.get_value("zero_optimization.stage") == 2 and ds.is_zero2()


def test_deepspeed_stage_zero_is_an_error_cpu_safe():
    with pytest.raises(ValueError, match="1, 2 or 3"):
        build_deepspeed_config(0)
