import math

from training_data import max_param_change, records

from medfoundry.models.loading import load_model
from medfoundry.training.common import IGNORE_INDEX, encode_examples
from medfoundry.training.qa import sft_target
from medfoundry.training.sft import run_sft, sft_examples


def test_sft_target_formats():
    record = next(r for r in records() if r.id == "qa-0")
    assert sft_target(record, "think_answer") == "<think>Guidelines recommend metformin first.</think><answer>B</answer>"
    assert sft_target(record, "plain") == "B"
    no_reasoning = record.model_copy(update={"reasoning": None})
    assert sft_target(no_reasoning, "think_answer") == "<think>Option B (Metformin) is correct.</think><answer>B</answer>"


def test_sft_loss_only_on_the_assistant_turn(tiny_dataset, base_model_dir):
    loaded = load_model(base_model_dir)
    examples = sft_examples(loaded, tiny_dataset, "think_answer")
    assert len(examples) == 4 and sum(ex.image is not None for ex in examples) == 2
    first = examples[0]
    assert first.prompt.endswith("<|im_start|>assistant\n")
    assert first.completion.startswith("<think>") and "<answer>B</answer><|im_end|>" in first.completion
    assert "Options:\nA. Insulin\nB. Metformin" in first.prompt
    encoded, stats = encode_examples(loaded, examples, max_length=1024)
    assert stats.truncated == 0
    target = [t for t, label in zip(encoded[0].input_ids, encoded[0].labels, strict=True) if label != IGNORE_INDEX]
    assert loaded.tokenizer.decode(target) == first.completion
    image_example = next(e for e in encoded if e.image is not None)
    image_id = loaded.processor.image_token_id
    assert image_example.input_ids.count(image_id) > 1  # placeholder expanded to the image's token count
    assert all(label == IGNORE_INDEX for t, label in zip(image_example.input_ids, image_example.labels, strict=True)
               if t == image_id)


def test_sft_runs_real_steps_and_reloads(tiny_profile, tiny_dataset, base_model_dir, tmp_path):
    out = tmp_path / "sft"
    metrics = run_sft(tiny_profile, tiny_dataset, base_model_dir, out)
    assert metrics["steps"] == tiny_profile.sft.max_steps and math.isfinite(metrics["final_loss"])
    assert metrics["examples"] == 4 and metrics["examples_with_image"] == 2
    assert max_param_change(base_model_dir, out) > 0
    assert load_model(out).is_vision


def test_sft_without_train_qa_is_a_clear_error(tiny_profile, base_model_dir, tmp_path):
    import pytest

    from medfoundry.data.records import RECORDS, Record, write_jsonl

    write_jsonl(tmp_path / RECORDS, [Record(id="t", source="test", kind="text", text="only text")])
    with pytest.raises(ValueError, match="no QA records"):
        run_sft(tiny_profile, tmp_path, base_model_dir, tmp_path / "out")


def test_sft_truncation_keeps_the_target(base_model_dir):
    from medfoundry.training.common import TextExample

    loaded = load_model(base_model_dir)
    tok = loaded.tokenizer
    long_prompt = "context " * 200 + "<|im_start|>assistant\n"
    target = "<think>short</think><answer>B</answer><|im_end|>"
    encoded, stats = encode_examples(loaded, [TextExample(long_prompt, target)], max_length=64, keep_completion=True)
    assert stats.truncated == 1 and len(encoded[0].input_ids) == 64
    kept = [t for t, label in zip(encoded[0].input_ids, encoded[0].labels, strict=True) if label != IGNORE_INDEX]
    assert tok.decode(kept) == target
    tail, _ = encode_examples(loaded, [TextExample(long_prompt, target)], max_length=64)
    assert tail == []  # cutting the tail leaves no target: skipped
