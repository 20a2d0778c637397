from medfoundry.models.tokenizer import SPECIAL_TOKENS, STRUCTURE_TOKENS, train_tokenizer


def test_tokenizer_round_trip_and_special_tokens(tmp_path):
    from transformers import AutoTokenizer

    texts = ["Pleural effusion on the chest radiograph.", "Metformin for type 2 diabetes."] * 20
    tokenizer = train_tokenizer(texts, vocab_size=400, out_dir=tmp_path)
    assert len(tokenizer) <= 400
    text = "Metformin for type 2 diabetes; pleural effusion (ICD-10 J90) — 5 mg."
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert tokenizer.decode(ids) == text  # byte-level BPE: unseen characters still round-trip

    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded(text, add_special_tokens=False).input_ids == ids
    assert reloaded.eos_token == "<|im_end|>" and reloaded.pad_token == "<|endoftext|>"
    for token in SPECIAL_TOKENS + STRUCTURE_TOKENS:
        assert len(reloaded(token, add_special_tokens=False).input_ids) == 1, token

    tagged = "<think>effusion</think><answer>B</answer><|im_end|>"
    decoded = reloaded.decode(reloaded(tagged, add_special_tokens=False).input_ids, skip_special_tokens=True)
    assert decoded == "<think>effusion</think><answer>B</answer>"  # structure tags survive, control tokens do not


def test_chat_template_places_image_tokens(tmp_path):
    tokenizer = train_tokenizer(["a b c"] * 5, vocab_size=300, out_dir=tmp_path)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is shown?"}]}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert "<|vision_start|><|image_pad|><|vision_end|>What is shown?<|im_end|>" in rendered
    assert rendered.endswith("<|im_start|>assistant\n")


def test_vocab_too_small_is_a_clear_error(tmp_path):
    import pytest

    with pytest.raises(ValueError, match="too small"):
        train_tokenizer(["a"], vocab_size=100, out_dir=tmp_path)
