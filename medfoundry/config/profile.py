"""The recipe profile: all sections, YAML loading by name or path, one-line validation errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from medfoundry.config.curation import CurationConfig
from medfoundry.config.evaluation import EvalConfig
from medfoundry.config.release import GateConfig, GitOpsConfig, ServingConfig
from medfoundry.config.sections import (
    ClusterConfig,
    DataConfig,
    FeastConfig,
    ModelConfig,
    Section,
    StorageConfig,
    TrackingConfig,
)
from medfoundry.config.training import PretrainConfig, RLConfig, SFTConfigSection

PROFILES_DIR = Path(__file__).resolve().parent.parent / "profiles"


class ProfileError(ValueError):
    """A profile that cannot be used; str() is one line naming the field and the reason. `fields` maps each
    invalid dotted field to its reason (the console shows them next to the form fields)."""

    def __init__(self, message: str, fields: dict[str, str] | None = None):
        super().__init__(message)
        self.fields = fields or {}


class Profile(Section):
    name: str
    description: str = ""
    # Workspace folder for local state (sqlite MLflow, pipeline root, local store). Empty: $MEDFOUNDRY_HOME or
    # ./.medfoundry
    workspace: str = ""
    data: DataConfig = Field(default_factory=DataConfig)
    curation: CurationConfig = Field(default_factory=CurationConfig)
    feast: FeastConfig = Field(default_factory=FeastConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    sft: SFTConfigSection = Field(default_factory=SFTConfigSection)
    rl: RLConfig = Field(default_factory=RLConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    gates: GateConfig = Field(default_factory=GateConfig)
    gitops: GitOpsConfig = Field(default_factory=GitOpsConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def _format_error(source: str, err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(part) for part in first["loc"]) or "<root>"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown field"
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{source}: {loc}: {msg}{more}"


def _field_errors(err: ValidationError) -> dict[str, str]:
    return {
        ".".join(str(p) for p in e["loc"]) or "<root>": "unknown field" if e["type"] == "extra_forbidden" else e["msg"]
        for e in err.errors()
    }


def parse_profile(data: Any, source: str = "<profile>") -> Profile:
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return Profile.model_validate(data)
    except ValidationError as err:
        raise ProfileError(_format_error(source, err), _field_errors(err)) from None


def load_profile(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> Profile:
    """Load a built-in profile by name (tiny, small, production-7b) or a YAML file by path.

    `overrides` are dotted keys applied after loading, e.g. {"pretrain.max_steps": 2}.
    """
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = PROFILES_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise ProfileError(
                f"unknown profile {str(name_or_path)!r}: use one of {', '.join(available_profiles())} or a .yaml path"
            )
    if not path.exists():
        raise ProfileError(f"{path}: no such profile file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ProfileError(f"{path}:{where} invalid YAML: {getattr(err, 'problem', err)}") from None
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return parse_profile(data, source=str(path.name if path.parent == PROFILES_DIR else path))


def profile_hash(profile: Profile) -> str:
    """Stable content hash of the resolved profile, recorded as lineage on every model version."""
    blob = json.dumps(profile.model_dump(mode="json"), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
