"""Decontamination through the recipe pipeline's curate stage (`run_stage`) with the shipped profiles, unchanged:
the curate stage checks training data against every benchmark the profile's evaluate stage scores.

The shipped tiny profile evaluates on the dataset's own held-out split (the evaluate stage's "heldout" benchmark,
no ../shared needed); small and production-7b add the public benchmarks under `eval.data_dir`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from PIL import Image, ImageDraw

from medfoundry import tracking
from medfoundry.config import load_profile
from medfoundry.data.records import Record, read_jsonl, write_jsonl
from medfoundry.entities.tree import EntityTree, cache_key
from medfoundry.pipeline import stages
from medfoundry.workspace import Workspace

HELD_OUT_QA = Record(
    id="heldout-ct-1",
    source="pydicom:CT_small.dcm",
    kind="qa",
    question="Which imaging modality produced this axial image of the chest with a small pleural effusion?",
    options={"A": "Computed tomography", "B": "Magnetic resonance", "C": "Ultrasound", "D": "Radiography"},
    answer="A",
    reasoning="The acquisition is computed tomography (CT) of the chest; the header records modality CT.",
    image="images/heldout-ct.png",
    modality="CT",
    split="holdout",
)


def _scan(size: int, shapes: list[tuple[int, int, int]]) -> Image.Image:
    """A smooth synthetic slice (a gradient with bright discs): enough structure for a perceptual hash."""
    ramp = np.linspace(20, 140, size, dtype=np.float32)
    image = Image.fromarray(np.add.outer(ramp, ramp[::-1] / 2).clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for x, y, r in shapes:
        draw.ellipse([x - r, y - r, x + r, y + r], fill=235)
    return image


def _ct_caption(record_id: str, text: str, image: str) -> Record:
    return Record(id=record_id, source="user:teaching", kind="caption", text=text, image=image, modality="CT")


@pytest.fixture()
def validated_dataset(tmp_path):
    folder = tmp_path / "validated"
    (folder / "images").mkdir(parents=True)
    held_out = _scan(256, [(80, 90, 30), (170, 150, 45)])
    held_out.save(folder / "images" / "heldout-ct.png")
    # the same evaluation image resized and re-encoded as JPEG, slipped into training data with its own caption
    held_out.resize((320, 320)).save(folder / "images" / "teaching-file.jpg", quality=85)
    _scan(256, [(200, 60, 35), (60, 200, 25), (128, 128, 15)]).transpose(Image.Transpose.ROTATE_90).save(
        folder / "images" / "other-ct.png"
    )
    leaked_item = "\n".join(
        [HELD_OUT_QA.question, *(f"{k}. {v}" for k, v in HELD_OUT_QA.options.items()), HELD_OUT_QA.reasoning]
    )
    records = [
        HELD_OUT_QA,
        Record(
            id="forum-leak",
            source="user:forum",
            kind="text",
            text="Radiology quiz night, question 4 as posted:\n" + leaked_item + "\nAnswer key: A.",
        ),
        _ct_caption("teaching-caption", "Axial slice from an outside teaching collection, windowed for soft tissue.",
                    "images/teaching-file.jpg"),
        _ct_caption("other-caption", "Computed tomography of the abdomen in the portal venous phase, another patient.",
                    "images/other-ct.png"),
        Record(
            id="clean-note",
            source="user:notes",
            kind="text",
            text="Chest radiographs are the first test for suspected community-acquired pneumonia in adults "
            "with fever and cough; computed tomography is kept for complications such as empyema.",
        ),
    ]
    write_jsonl(folder / "records.jsonl", records)
    return folder


def test_tiny_curate_stage_removes_heldout_items_and_images_from_training(workspace, validated_dataset, tmp_path):
    profile = load_profile("tiny")
    assert profile.eval.benchmarks == [] and profile.curation.decontaminate_holdout  # the shipped demo settings
    # play the earlier build: a small cached entity tree, so the stage does not build one from the ontologies
    cache = Workspace.resolve(profile.workspace).cache / "entity_tree"
    rows = [{"id": "D:pneumonia", "name": "Pneumonia", "kind": "disease"},
            {"id": "D:effusion", "name": "Pleural effusion", "kind": "disease"}]
    EntityTree.from_rows(rows).save(cache / cache_key(profile.curation.ontology_dir, profile.curation.max_nodes_per_source))
    parent = tracking.start_pipeline_run(profile, "medical-mllm-recipe", "decontam-stage-test")
    out = tmp_path / "curated"
    figures = stages.run_stage(
        "curate",
        yaml.safe_dump(profile.model_dump(mode="json")),
        parent,
        paths={"validated_data": str(validated_dataset), "curated_data": str(out)},
    )
    removed = {row["id"]: row for row in read_jsonl(out / "removed.jsonl")}
    leak = removed["forum-leak"]
    assert leak["reason"] == "eval_contamination" and leak["benchmark"] == "heldout"
    assert leak["item_id"] == "heldout:heldout-ct-1" and leak["method"] == "ngram"
    image = removed["teaching-caption"]
    assert image["reason"] == "eval_image_contamination" and image["benchmark"] == "heldout"
    assert image["method"] == "phash" and image["hamming"] <= profile.curation.decontamination_image_distance
    kept = {row["id"] for row in read_jsonl(out / "records.jsonl")}
    assert {"other-caption", "clean-note", "heldout-ct-1"} <= kept  # a different image and clean text stay
    report = json.loads((out / "decontamination.json").read_text())
    assert report["benchmarks"]["heldout"] == 1 and report["eval_images"] == 1
    assert report["removed_by_eval_set"] == {"heldout": 2}
    assert figures["removed"] >= 2


def test_small_profile_decontaminates_against_its_shared_benchmarks(monkeypatch, tmp_path):
    """The shipped small profile, unchanged, indexes the ../shared splits its evaluate stage scores: a VQA-RAD
    question with its answer inside a training note, and a VQA-RAD image re-encoded, both match naming vqa_rad."""
    from medfoundry.curation.decontam import profile_eval_index
    from medfoundry.workspace import REPO_ROOT, shared_root

    shared = shared_root()
    if shared is None or shared.resolve() != (REPO_ROOT.parent / "shared").resolve():
        pytest.skip("../shared beside the checkout not found: the small profile's benchmarks are unavailable")
    monkeypatch.chdir(REPO_ROOT)  # the profile's relative data_dir is read from the checkout
    # two of its six keep this quick (protocols of the benchmarks left out go too: the profile refuses them)
    profile = load_profile("small", {"eval.benchmarks": ["vqa_rad", "medqa"]})
    assert {"vqa_rad", "medqa"} <= set(load_profile("small").eval.benchmarks)
    index = profile_eval_index(profile)
    assert index.skipped == {} and index.benchmarks["vqa_rad"] == 1798
    vqa = json.loads((shared / "data" / "vqa_rad" / "trainset.json").read_text())
    item = next(x for x in vqa if len(f"{x['question']} {x['answer']}".split()) >= 9)
    note = Record(id="n", source="user:x", kind="text", text=f"Teaching file. {item['question']} {item['answer']}.")
    reason, detail = index.match(note, None)
    assert reason == "eval_contamination" and detail["benchmark"] == "vqa_rad"
    with Image.open(shared / "data" / "vqa_rad" / "images" / item["image_name"]) as image:
        image.convert("L").resize((300, 300)).save(tmp_path / "copy.png")
    copy = Record(id="c", source="user:x", kind="caption", text="Outside study.", image="copy.png")
    reason, detail = index.match(copy, tmp_path)
    assert reason == "eval_image_contamination" and detail["benchmark"] == "vqa_rad"
