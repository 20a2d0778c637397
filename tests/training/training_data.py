"""Test data for the training tests: a tiny dataset folder (records.jsonl + two PNG images) and helpers."""

from __future__ import annotations

import numpy as np
from PIL import Image

from medfoundry.data.records import IMAGES, RECORDS, Record, write_jsonl


def records() -> list[Record]:
    rows = [
        Record(id="cap-1", source="test", kind="caption", text="Chest radiograph: right lower lobe consolidation.",
               image=f"{IMAGES}/chest.png", modality="CR"),
        Record(id="rep-1", source="test", kind="report", text="CT head without contrast: no acute hemorrhage.",
               image=f"{IMAGES}/head.png", modality="CT"),
        Record(id="txt-1", source="test", kind="text", text="Metformin is first-line therapy for type 2 diabetes."),
        Record(id="txt-2", source="test", kind="text", text="Iron deficiency anemia causes fatigue and pallor."),
        Record(id="txt-held", source="test", kind="text", text="held back text", split="holdout"),
    ]
    qa = [
        ("Which drug is first-line for type 2 diabetes?", {"A": "Insulin", "B": "Metformin", "C": "Aspirin"}, "B",
         "Guidelines recommend metformin first.", None),
        ("Is there consolidation in the right lower lobe?", None, "yes", "The radiograph shows consolidation.",
         f"{IMAGES}/chest.png"),
        ("What causes pallor in anemia?", None, "low hemoglobin", "Less hemoglobin makes skin pale.", None),
        ("Is the head CT positive for hemorrhage?", None, "no", "No hyperdensity is seen.", f"{IMAGES}/head.png"),
    ]
    for i, (question, options, answer, reasoning, image) in enumerate(qa):
        rows.append(Record(id=f"qa-{i}", source="test", kind="qa", question=question, options=options,
                              answer=answer, reasoning=reasoning, image=image))
    context = "Metformin lowers glucose in type 2 diabetes; aspirin inhibits platelets; the pancreas makes insulin."
    holdout = [
        ("Which vitamin deficiency causes scurvy?", {"A": "Vitamin C", "B": "Vitamin D"}, "A", "rl"),
        ("Is aspirin an antiplatelet drug?", None, "yes", "rl"),
        ("Which organ produces insulin?", {"A": "Liver", "B": "Pancreas"}, "B", "rl"),
        ("Is metformin an insulin?", None, "no", "rl"),
        ("Evaluation-only question?", None, "yes", "eval"),
    ]
    for i, (question, options, answer, use) in enumerate(holdout):
        rows.append(Record(id=f"hold-{i}", source="test", kind="qa", question=question, options=options,
                              answer=answer, text=context, split="holdout", meta={"holdout_use": use}))
    return rows


def make_dataset(folder):
    (folder / IMAGES).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((64, 64)) * 255).astype("uint8"), mode="L").save(folder / IMAGES / "chest.png")
    Image.fromarray((rng.random((48, 80, 3)) * 255).astype("uint8")).save(folder / IMAGES / "head.png")
    write_jsonl(folder / RECORDS, records())
    return folder


def max_param_change(dir_a, dir_b) -> float:
    """Largest absolute weight difference between two saved models (same architecture)."""
    from medfoundry.models.loading import load_model

    a = load_model(dir_a).model.state_dict()
    b = load_model(dir_b).model.state_dict()
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
