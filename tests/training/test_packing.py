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


def _segment_losses(packed: dict, logits: torch.Tensor) -> dict[int, float]:
    """Loss of every real example in packed rows, keyed by its length (the test's examples all differ in length);
    segments start where the text positions restart at 0, pad segments (no labels) are left out."""
    text_positions = packed["position_ids"][0] if packed["position_ids"].dim() == 3 else packed["position_ids"]
    found = {}
    for row in range(packed["input_ids"].shape[0]):
        starts = (text_positions[row] == 0).nonzero().flatten().tolist() + [text_positions.shape[1]]
        lengths = [b - a for a, b in zip(starts, starts[1:], strict=False)]
        losses = _per_example_losses(logits[row], packed["labels"][row], lengths)
        for start, n, loss in zip(starts, lengths, losses, strict=False):
            if (packed["labels"][row, start : start + n] != IGNORE_INDEX).any():
                found[n] = loss
    return found


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
    rows, width = packed["input_ids"].shape
    assert width == max(lengths) and rows < len(batch) and "attention_mask" not in packed  # examples share rows
    assert packed["position_ids"].shape == (4, rows, width)  # text positions + 3D M-RoPE
    with torch.no_grad():
        logits = loaded.model(**{k: v for k, v in packed.items() if k != "labels"}).logits
        alone = {}
        for ex in batch:
            single = TokenCountingCollator(loaded)([ex])
            out = loaded.model(**{k: v for k, v in single.items() if k != "labels"}).logits[0]
            alone[len(ex.input_ids)] = _per_example_losses(out, single["labels"][0], [len(ex.input_ids)])[0]
    together = _segment_losses(packed, logits)
    assert sorted(together) == sorted(alone)
    assert max(abs(together[n] - alone[n]) for n in alone) < 1e-4, (together, alone)

    # The same rows with positions that run on across examples let attention cross the boundaries: losses move.
    leaking = dict(packed)
    positions = packed["position_ids"].clone()
    positions[0] = torch.arange(width).expand(rows, -1)
    leaking["position_ids"] = positions
    with torch.no_grad():
        crossed = loaded.model(**{k: v for k, v in leaking.items() if k != "labels"}).logits
    moved = _segment_losses(packed, crossed)
    assert max(abs(moved[n] - alone[n]) for n in alone) > 1e-3


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
