"""Publish pipelines to a Kubeflow Pipelines API: one pipeline version per package version + git commit + profile.

The compiled IR depends on the profile (images, requests, GPUs, Secrets, retries), so `upload` and `submit` share
`publish_pipeline`: compile for the profile, upload as `<version>-<sha7>-<profile hash8>`. A submit therefore runs
exactly the version an upload of the same profile created, never one compiled for another profile.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medfoundry.config import profile_hash
from medfoundry.images import image_tag


@dataclass(frozen=True)
class UploadResult:
    pipeline_name: str
    pipeline_id: str
    version_name: str
    version_id: str
    created_pipeline: bool  # the first upload of this pipeline
    created_version: bool  # False when this exact version was already there (re-running an upload is harmless)


@dataclass(frozen=True)
class SubmitResult:
    pipeline_name: str
    version_name: str
    version_id: str
    experiment_id: str
    run_id: str
    url: str


def pipeline_version_name(profile: Any) -> str:
    """`<package version>-<git sha7>-<profile hash8>`: the images' tag plus the profile the IR was compiled for."""
    return f"{image_tag()}-{profile_hash(profile)[:8]}"


def _find_version(client: Any, pipeline_id: str, version_name: str) -> str | None:
    version_filter = json.dumps(
        {"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": version_name}]}
    )
    response = client.list_pipeline_versions(pipeline_id=pipeline_id, filter=version_filter, page_size=1)
    versions = response.pipeline_versions or []
    return versions[0].pipeline_version_id if versions else None


def upload_pipeline(
    package_path: str | Path,
    pipeline_name: str,
    *,
    host: str | None = None,
    client: Any = None,
    version_name: str,
    description: str | None = None,
) -> UploadResult:
    """Upload `package_path` (compiled pipeline IR YAML) as version `version_name` of `pipeline_name`.

    The first upload creates the pipeline (KFP names its first version after the pipeline) and then adds the
    versioned name; later uploads add a version. An existing version of the same name is reported, not duplicated.
    """
    package = Path(package_path)
    if not package.is_file():
        raise FileNotFoundError(f"{package}: no compiled pipeline file")
    if client is None:
        import kfp

        client = kfp.Client(host=host)
    pipeline_id = client.get_pipeline_id(pipeline_name)
    created_pipeline = pipeline_id is None
    if created_pipeline:
        pipeline_id = client.upload_pipeline(str(package), pipeline_name=pipeline_name, description=description).pipeline_id
    existing = _find_version(client, pipeline_id, version_name)
    if existing:
        return UploadResult(pipeline_name, pipeline_id, version_name, existing, created_pipeline, False)
    version = client.upload_pipeline_version(
        str(package), pipeline_version_name=version_name, pipeline_id=pipeline_id, description=description
    )
    return UploadResult(pipeline_name, pipeline_id, version_name, version.pipeline_version_id, created_pipeline, True)


def compile_to(pipeline_name: str, out_dir: str | Path, profile: Any = None) -> Path:
    from medfoundry.pipeline.compiler import compile_pipeline

    return compile_pipeline(pipeline_name, Path(out_dir), profile)


def publish_pipeline(
    pipeline_name: str,
    profile: Any,
    *,
    host: str | None = None,
    client: Any = None,
    description: str | None = None,
    package_path: str | Path | None = None,
) -> UploadResult:
    """Compile `pipeline_name` for `profile` (or take `package_path`, compiled for it) and upload it as version
    `pipeline_version_name(profile)`; an existing version of that name is reused."""
    import tempfile

    if client is None:
        import kfp

        client = kfp.Client(host=host)
    with tempfile.TemporaryDirectory(prefix="medfoundry-compile-") as tmp:
        package = Path(package_path) if package_path else compile_to(pipeline_name, tmp, profile)
        return upload_pipeline(
            package, pipeline_name, client=client, version_name=pipeline_version_name(profile), description=description
        )


def submit_pipeline(
    pipeline_name: str,
    profile: Any,
    *,
    host: str | None = None,
    experiment: str = "medfoundry",
    namespace: str | None = None,
    client: Any = None,
    package_path: str | Path | None = None,
) -> SubmitResult:
    """Publish the profile's pipeline version (`publish_pipeline`) and start a run of it with `profile` under the
    profile's pipeline ServiceAccount (the one allowed to create TrainJobs)."""
    if client is None:
        import kfp

        client = kfp.Client(host=host, namespace=namespace or "kubeflow")
    uploaded = publish_pipeline(pipeline_name, profile, client=client, package_path=package_path)
    exp = client.create_experiment(experiment, namespace=namespace)
    run = client.run_pipeline(
        experiment_id=exp.experiment_id,
        job_name=f"{pipeline_name}-{profile.name}-{uploaded.version_name}",
        params={"profile": profile.to_yaml()},
        pipeline_id=uploaded.pipeline_id,
        version_id=uploaded.version_id,
        service_account=profile.cluster.service_account,
    )
    url = f"{host.rstrip('/')}/#/runs/details/{run.run_id}" if host else ""
    return SubmitResult(pipeline_name, uploaded.version_name, uploaded.version_id, exp.experiment_id, run.run_id, url)
