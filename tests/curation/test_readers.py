"""Robust reading: every damaged input is quarantined with a reason and its source; nothing is lost."""

from __future__ import annotations

from collections import Counter

from corrupt_corpus import MAX_CHARS, build

from medfoundry.config import load_profile
from medfoundry.curation.readers import read_corpora
from medfoundry.data.records import Record


def test_corrupt_corpus_is_read_without_loss(tmp_path):
    expected = build(tmp_path / "corpus")
    profile = load_profile("tiny", {"curation.max_record_chars": MAX_CHARS})
    out = tmp_path / "out"
    items = list(read_corpora([tmp_path / "corpus", tmp_path / "missing.jsonl"], out, profile))
    records = [i for i in items if isinstance(i, Record)]
    bad = [i for i in items if not isinstance(i, Record)]
    assert len(records) == expected["read_ok"], [r.id for r in records]
    assert len(bad) == expected["read_quarantined"] + 1  # + the missing input
    assert all(row["reason"] and row["source"] for row in bad)
    reasons = Counter(row["reason"].split(":")[0] for row in bad)
    assert reasons["invalid JSON (truncated line?)"] == 1
    assert reasons["not UTF-8"] == 2  # one JSONL line, one CSV row
    assert reasons["empty record"] == 2  # JSONL id 4 and CSV c4
    assert reasons["oversized record"] == 1
    assert reasons["wrong type"] == 3
    assert reasons["invalid record"] == 1
    assert (
        reasons[
            "no text field (expected one of text, section_text, note, report, caption, content, body, abstract or question/answer)"
        ]
        == 1
    )
    assert reasons["unreadable image"] == 2
    assert reasons["image without a caption"] == 1
    assert reasons["unsupported file type '.bin'"] == 1
    assert reasons["cannot open input"] == 1
    jsonl_lines = {row["line"] for row in bad if row["source"] == "user:notes.jsonl"}
    assert jsonl_lines == {2, 3, 4, 5, 6, 7, 8, 10, 12}
    by_id = {r.id: r for r in records}
    ct = next(r for r in records if r.image)
    assert ct.modality == "CT" and (out / ct.image).is_file()
    assert by_id["notes-9"].kind == "note" and by_id["notes-11"].kind == "qa"
    assert by_id["table-c1"].kind == "note" and by_id["table-c1"].meta["line"] == 2
    # The broken images left nothing behind in the output folder.
    assert sorted(p.name for p in (out / "images").iterdir()) == [ct.image.split("/")[-1]]


def test_dataset_folder_records_keep_their_images(tmp_path):
    from PIL import Image

    from medfoundry.data.records import write_jsonl

    src = tmp_path / "ds"
    (src / "images").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(src / "images" / "a.png")
    write_jsonl(
        src / "records.jsonl",
        [
            Record(id="a", source="user:x", kind="caption", text="Fundus photograph.", image="images/a.png"),
            Record(id="b", source="user:x", kind="caption", text="Missing image.", image="images/zzz.png"),
        ],
    )
    items = list(read_corpora([src], tmp_path / "out"))
    assert [i.id for i in items if isinstance(i, Record)] == ["a"]
    assert (tmp_path / "out" / "images" / "a.png").is_file()
    bad = [i for i in items if isinstance(i, dict)]
    assert bad[0]["reason"].startswith("image file missing") and bad[0]["line"] == 2


def test_s3_prefix_and_single_object_inputs(s3_env, tmp_path):
    import uuid

    from medfoundry.storage import open_storage

    corpus = tmp_path / "corpus"
    expected = build(corpus)
    bucket = f"mf-read-{uuid.uuid4().hex[:8]}"
    store = open_storage(f"s3://{bucket}")
    store.put_dir(corpus, "raw/corpus")
    profile = load_profile("tiny", {"curation.max_record_chars": MAX_CHARS})
    items = list(read_corpora([f"s3://{bucket}/raw/corpus"], tmp_path / "out", profile))
    assert sum(isinstance(i, Record) for i in items) == expected["read_ok"]
    assert sum(isinstance(i, dict) for i in items) == expected["read_quarantined"]
    single = list(read_corpora([f"s3://{bucket}/raw/corpus/notes.jsonl"], tmp_path / "out2", profile))
    assert [i.id for i in single if isinstance(i, Record)] == ["notes-1", "notes-9", "notes-11"]
    missing = list(read_corpora([f"s3://{bucket}/nothing/here"], tmp_path / "out3", profile))
    assert len(missing) == 1 and missing[0]["reason"].startswith("cannot open input")
