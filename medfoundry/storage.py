"""One storage interface over a local folder and S3-compatible object stores (AWS S3, MinIO, SeaweedFS).

Datasets and models are published content-addressed: `put_dir_versioned(folder, "datasets/curated")` uploads to
`datasets/curated/<sha256-prefix>/` and returns that key, so the same content is stored once and a lineage tag can
name it exactly. Credentials for S3 come only from the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY).
"""

from __future__ import annotations

import os
import shutil
from abc import ABC, abstractmethod
from pathlib import Path
from urllib.parse import urlparse

from medfoundry.data.records import content_hash


class StorageError(RuntimeError):
    pass


class Storage(ABC):
    """Keys are '/'-separated paths relative to the storage root."""

    uri: str

    @abstractmethod
    def put_file(self, local: Path, key: str) -> str: ...

    @abstractmethod
    def get_file(self, key: str, local: Path) -> Path: ...

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    def put_dir(self, local_dir: Path, prefix: str) -> list[str]:
        local_dir = Path(local_dir)
        keys = []
        for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
            keys.append(self.put_file(path, f"{prefix.rstrip('/')}/{path.relative_to(local_dir).as_posix()}"))
        return keys

    def get_dir(self, prefix: str, local_dir: Path) -> Path:
        prefix = prefix.rstrip("/") + "/"
        keys = self.list(prefix)
        if not keys:
            raise StorageError(f"nothing stored under {self.url(prefix)}")
        for key in keys:
            self.get_file(key, Path(local_dir) / key[len(prefix) :])
        return Path(local_dir)

    def put_dir_versioned(self, local_dir: Path, prefix: str) -> str:
        """Upload a folder under `<prefix>/<content hash>` unless that version exists; return the version key."""
        version = content_hash(Path(local_dir))[:16]
        key = f"{prefix.rstrip('/')}/{version}"
        if not self.exists(f"{key}/.complete"):
            self.put_dir(local_dir, key)
            marker = Path(local_dir).parent / f".{version}.complete"
            marker.write_text(version)
            try:
                self.put_file(marker, f"{key}/.complete")
            finally:
                marker.unlink(missing_ok=True)
        return key

    def url(self, key: str) -> str:
        return f"{self.uri.rstrip('/')}/{key.lstrip('/')}"


class LocalStorage(Storage):
    def __init__(self, root: Path):
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.uri = self.root.as_uri()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents and path != self.root:
            raise StorageError(f"key {key!r} escapes the storage root")
        return path

    def put_file(self, local: Path, key: str) -> str:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, target)
        return key

    def get_file(self, key: str, local: Path) -> Path:
        source = self._path(key)
        if not source.is_file():
            raise StorageError(f"no object {self.url(key)}")
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, local)
        return Path(local)

    def list(self, prefix: str = "") -> list[str]:
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in self.root.rglob("*")
            if p.is_file() and p.relative_to(self.root).as_posix().startswith(prefix)
        )

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def url(self, key: str) -> str:
        return str(self._path(key))


class S3Storage(Storage):
    """S3 through the minio SDK (works with AWS S3, MinIO and SeaweedFS)."""

    def __init__(
        self, bucket: str, prefix: str = "", endpoint_url: str | None = None, region: str | None = None
    ):
        from minio import Minio

        endpoint_url = (
            endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        )
        parsed = urlparse(endpoint_url or "https://s3.amazonaws.com")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.client = Minio(
            parsed.netloc,
            access_key=os.environ.get("AWS_ACCESS_KEY_ID"),
            secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
            session_token=os.environ.get("AWS_SESSION_TOKEN"),
            secure=parsed.scheme == "https",
            region=region or os.environ.get("AWS_REGION"),
        )
        try:
            if not self.client.bucket_exists(bucket_name=bucket):
                self.client.make_bucket(bucket_name=bucket)
        except Exception as err:  # noqa: BLE001 - surface connection and auth problems as one clear error
            raise StorageError(f"cannot reach bucket {bucket!r} at {parsed.netloc}: {err}") from err

    def _object(self, key: str) -> str:
        return f"{self.prefix}/{key.lstrip('/')}" if self.prefix else key.lstrip("/")

    def put_file(self, local: Path, key: str) -> str:
        self.client.fput_object(bucket_name=self.bucket, object_name=self._object(key), file_path=str(local))
        return key

    def get_file(self, key: str, local: Path) -> Path:
        from minio.error import S3Error

        try:
            self.client.fget_object(
                bucket_name=self.bucket, object_name=self._object(key), file_path=str(local)
            )
        except S3Error as err:
            raise StorageError(f"no object {self.url(key)}: {err.code}") from err
        return Path(local)

    def list(self, prefix: str = "") -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        objects = self.client.list_objects(bucket_name=self.bucket, prefix=base + prefix, recursive=True)
        return sorted(obj.object_name[len(base) :] for obj in objects)

    def exists(self, key: str) -> bool:
        from minio.error import S3Error

        try:
            self.client.stat_object(bucket_name=self.bucket, object_name=self._object(key))
            return True
        except S3Error:
            return False

    def delete(self, key: str) -> None:
        self.client.remove_object(bucket_name=self.bucket, object_name=self._object(key))

    def presigned_url(self, key: str, expires_s: int = 3600) -> str:
        from datetime import timedelta

        return self.client.presigned_get_object(
            bucket_name=self.bucket, object_name=self._object(key), expires=timedelta(seconds=expires_s)
        )


def open_storage(uri: str, endpoint_url: str | None = None, region: str | None = None) -> Storage:
    """`s3://bucket/prefix` or a local folder path (file:// accepted)."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StorageError(f"{uri!r}: an s3 URI needs a bucket, e.g. s3://bucket/prefix")
        return S3Storage(parsed.netloc, parsed.path, endpoint_url=endpoint_url, region=region)
    if parsed.scheme in ("", "file"):
        return LocalStorage(Path(parsed.path if parsed.scheme == "file" else uri))
    raise StorageError(f"{uri!r}: unsupported storage scheme {parsed.scheme!r} (use a folder path or s3://)")


def fetch(uri: str, local_dir: Path, endpoint_url: str | None = None) -> Path:
    """Materialize a dataset/model folder given as a local path or s3:// URI; local paths are used in place."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        bucket_root = open_storage(f"s3://{parsed.netloc}", endpoint_url=endpoint_url)
        return bucket_root.get_dir(parsed.path.lstrip("/"), Path(local_dir))
    path = Path(parsed.path if parsed.scheme == "file" else uri)
    if not path.exists():
        raise StorageError(f"{uri}: no such file or folder")
    return path
