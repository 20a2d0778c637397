"""Storage: the same behaviour on a local folder and on a real S3 API (SeaweedFS)."""

from __future__ import annotations

import uuid

import pytest

from medfoundry.storage import LocalStorage, StorageError, fetch, open_storage


def _dataset(tmp_path):
    folder = tmp_path / "ds"
    (folder / "images").mkdir(parents=True)
    (folder / "records.jsonl").write_text('{"id": "a"}\n')
    (folder / "images" / "x.png").write_bytes(b"\x89PNG fake")
    return folder


def _roundtrip(store, tmp_path):
    folder = _dataset(tmp_path)
    key = store.put_dir_versioned(folder, "datasets/curated")
    assert key.startswith("datasets/curated/") and len(key.rsplit("/", 1)[1]) == 16
    # Same content, same version: nothing uploaded twice.
    assert store.put_dir_versioned(folder, "datasets/curated") == key
    assert sorted(store.list(key)) == sorted([f"{key}/.complete", f"{key}/images/x.png", f"{key}/records.jsonl"])
    back = store.get_dir(key, tmp_path / "back")
    assert (back / "records.jsonl").read_text() == '{"id": "a"}\n'
    assert (back / "images" / "x.png").read_bytes() == b"\x89PNG fake"
    # Changed content gets a new version.
    (folder / "records.jsonl").write_text('{"id": "b"}\n')
    assert store.put_dir_versioned(folder, "datasets/curated") != key
    with pytest.raises(StorageError):
        store.get_file("missing/object", tmp_path / "nope")
    return key


def test_local_storage_versioned_roundtrip(tmp_path):
    store = open_storage(str(tmp_path / "store"))
    assert isinstance(store, LocalStorage)
    _roundtrip(store, tmp_path)


def test_local_storage_refuses_escaping_keys(tmp_path):
    store = open_storage(str(tmp_path / "store"))
    with pytest.raises(StorageError, match="escapes"):
        store.put_file(tmp_path / "x", "../outside")


def test_s3_storage_versioned_roundtrip(s3_env, tmp_path):
    bucket = f"mf-{uuid.uuid4().hex[:8]}"
    store = open_storage(f"s3://{bucket}/team-a")
    key = _roundtrip(store, tmp_path)
    assert store.url(key) == f"s3://{bucket}/team-a/{key}"
    # fetch() materializes an s3:// folder locally, as stages do for s3 inputs.
    local = fetch(store.url(key), tmp_path / "fetched")
    assert (local / "images" / "x.png").exists()
    url = store.presigned_url(f"{key}/records.jsonl")
    import httpx

    assert httpx.get(url).text == '{"id": "a"}\n'


def test_s3_errors_are_clear(s3_env, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(StorageError, match="cannot reach bucket"):
        open_storage(f"s3://mf-{uuid.uuid4().hex[:8]}")


def test_bad_uris():
    with pytest.raises(StorageError, match="needs a bucket"):
        open_storage("s3://")
    with pytest.raises(StorageError, match="unsupported storage scheme"):
        open_storage("gs://bucket/x")
