"""Packing without cross-contamination: a packed (padding-free) batch of mixed-length image+text examples gives each
example the same loss as when it is alone, and the same batch loss as the padded path."""

import pytest
import torch

from medfoundry.models.loading import load_model
from medfoundry.training.common import IGNORE_INDEX, TokenCountingCollator, encode_examples
from medfoundry.training.pretrain import pretrain_examples
from medfoundry.training.sft import sft_examples


def _per_example_losses(logits: torch.Tensor, labels: torch.Tensor, lengths: list[int]) -> list[float]:
    """Mean next-token loss of each example in a packed row (logits (T, V), labels (T,)), shifting inside it."""
    losses, start = [], 0
    for n in lengths:
        seg_logits, seg_labels = logits[start : start + n - 1], labels[start + 1 : start + n]
        losses.append(float(torch.nn.functional.cross_entropy(seg_logits, seg_labels, ignore_index=IGNORE_INDEX)))
        start += n
    return losses


@pytest.fixture(scope="module")
def mixed_batch(tiny_dataset, base_model_dir):
    loaded = load_model(base_model_dir)
    examples = sft_examples(loaded, tiny_dataset, "think_answer") + pretrain_examples(loaded, tiny_dataset)[0]
    encoded, _ = encode_examples(loaded, examples, max_length=512, keep_completion=True)
    batch = sorted(encoded, key=lambda ex: len(ex.input_ids))[::2]  # every other length, short to long
    assert len({len(ex.input_ids) for ex in batch}) == len(batch) >= 5  # all lengths differ
    assert 0 < sum(ex.image is not None for ex in batch) < len(batch)  # image+text and text-only rows
    loaded.model.eval()
    return loaded, batch


def test_packed_batch_gives_each_example_its_own_loss(mixed_batch):
    loaded, batch = mixed_batch
    lengths = [len(ex.input_ids) for ex in batch]
    packed = TokenCountingCollator(loaded, packing=True)(batch)
    assert packed["input_ids"].shape == (1, sum(lengths)) and "attention_mask" not in packed
    assert packed["position_ids"].shape == (4, 1, sum(lengths))  # text positions + 3D M-RoPE
    with torch.no_grad():
        logits = loaded.model(**{k: v for k, v in packed.items() if k != "labels"}).logits[0]
        alone = []
        for ex in batch:
            single = TokenCountingCollator(loaded)([ex])
            out = loaded.model(**{k: v for k, v in single.items() if k != "labels"}).logits[0]
            alone += _per_example_losses(out, single["labels"][0], [len(ex.input_ids)])
    together = _per_example_losses(logits, packed["labels"][0], lengths)
    assert max(abs(a - b) for a, b in zip(together, alone, strict=True)) < 1e-4, (together, alone)

    # The same row with positions that run on across examples lets attention cross the boundaries: the losses move.
    leaking = dict(packed)
    positions = packed["position_ids"].clone()
    positions[0] = torch.arange(sum(lengths))
    leaking["position_ids"] = positions
    with torch.no_grad():
        crossed = loaded.model(**{k: v for k, v in leaking.items() if k != "labels"}).logits[0]
    moved = _per_example_losses(crossed, packed["labels"][0], lengths)
    assert max(abs(a - b) for a, b in zip(moved[1:], alone[1:], strict=True)) > 1e-3


def test_packed_and_padded_batch_losses_agree_and_count_the_same_tokens(mixed_batch):
    loaded, batch = mixed_batch
    padded_collator, packed_collator = TokenCountingCollator(loaded), TokenCountingCollator(loaded, packing=True)
    padded, packed = padded_collator(batch), packed_collator(batch)
    with torch.no_grad():
        padded_loss = float(loaded.model(**padded).loss)
        packed_loss = float(loaded.model(**packed).loss)
    assert abs(padded_loss - packed_loss) < 1e-4
    assert padded_collator.tokens == packed_collator.tokens == sum(len(ex.input_ids) for ex in batch)
    assert padded["input_ids"].numel() > packed["input_ids"].numel()  # the padded path computes on padding
