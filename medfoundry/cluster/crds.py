"""Offline validation of custom resources (TrainJob, InferenceService, Application, ...) against CRD manifests.

The CRDs' openAPIV3Schema is a JSON schema. Validation is strict: a field the schema does not define is an error
(the API server would prune it silently, which hides typos such as `storageURI`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any


def shared_crd_dir() -> Path | None:
    """`$MEDFOUNDRY_SHARED/k8s-crds` or `../shared/k8s-crds` beside the checkout; None when absent."""
    from medfoundry.workspace import shared_root

    base = shared_root()
    path = base / "k8s-crds" if base else None
    return path if path and path.is_dir() else None


def _strict(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@lru_cache(maxsize=32)
def _load_file(path: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader reads these big files 10x faster
    schemas: dict[tuple[str, str, str], dict[str, Any]] = {}
    for doc in yaml.load_all(Path(path).read_text(), Loader=loader):
        if not doc or doc.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
        for version in doc["spec"]["versions"]:
            schemas[(group, version["name"], kind)] = _strict(version["schema"]["openAPIV3Schema"])
    return schemas


def load_crds(crd_dir: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(group, version, kind) -> strict JSON schema, for every CRD file in `crd_dir`."""
    schemas: dict[tuple[str, str, str], dict[str, Any]] = {}
    for path in sorted(Path(crd_dir).glob("*.yaml")):
        schemas.update(_load_file(str(path)))
    return schemas


def crd_schema(crd_dir: Path, group: str, version: str, kind: str) -> dict[str, Any] | None:
    """The strict schema of one kind; reads only `<group>_<plural>.yaml` when the file is named that way."""
    key = (group, version, kind)
    guess = Path(crd_dir) / f"{group}_{kind.lower()}s.yaml"
    if guess.is_file() and key in _load_file(str(guess)):
        return _load_file(str(guess))[key]
    return load_crds(str(crd_dir)).get(key)


def validate_custom_resource(obj: dict[str, Any], crd_dir: Path) -> list[str]:
    """Errors ("path: message") of `obj` against its CRD in `crd_dir`; empty when valid."""
    import jsonschema

    group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
    schema = crd_schema(crd_dir, group, version, str(obj.get("kind")))
    if schema is None:
        return [f"<root>: no CRD for {obj.get('apiVersion')} {obj.get('kind')} in {crd_dir}"]
    validator = jsonschema.Draft7Validator(schema)
    errors = []
    for err in sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path]):
        where = "/".join(str(p) for p in err.absolute_path) or "<root>"
        errors.append(f"{where}: {err.message}")
    return errors
