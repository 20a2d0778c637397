"""Ingest: real medical sources that ship inside PyPI packages, plus user corpora, into one raw dataset.

Built-in sources (no network, no ../shared):
- DICOM studies shipped by pydicom / pydicom-data: normalized images with modality and body part read from their
  headers, each as a caption record and a header-verified modality question (an image QA item whose answer is known).
- HPO phenotype terms with definitions, HPO-annotated (rare) diseases with their phenotypes, ICD-10-CM codes with
  their descriptions; ICD-10-CM also yields coding questions (description -> code) whose answers are verifiable.
User corpora (`data.corpora`: local paths or s3:// URIs) are read by `medfoundry.curation.readers`.
Unreadable inputs are quarantined with a reason; `input == kept + quarantined` always holds.
"""

from __future__ import annotations

import json
import random
import warnings
from collections import Counter
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from medfoundry.config import Profile
from medfoundry.data.records import QUARANTINE, RECORDS, Record, assign_split, write_manifest

# DICOM modalities that are clinical images (the pydicom test corpus also holds RT doses, segmentations, ...).
MODALITY_NAMES = {
    "CT": "computed tomography",
    "MR": "magnetic resonance imaging",
    "CR": "computed radiography (X-ray)",
    "DX": "digital radiography (X-ray)",
    "US": "ultrasound",
    "NM": "nuclear medicine",
    "PT": "positron emission tomography",
    "MG": "mammography",
    "XA": "X-ray angiography",
    "RF": "radiofluoroscopy",
}
LETTERS = "ABCD"


def dicom_files() -> list[Path]:
    """Every DICOM file shipped by pydicom and pydicom-data, in a stable order.

    Globbed from the installed packages: pydicom's own lookup helper tries to download missing files.
    """
    import importlib.util

    import pydicom

    roots = [Path(pydicom.__file__).parent / "data" / "test_files"]
    store = importlib.util.find_spec("data_store")  # the module pydicom-data installs
    if store and store.submodule_search_locations:
        roots += [Path(p) / "data" for p in store.submodule_search_locations]
    files = {p for root in roots if root.is_dir() for p in root.rglob("*.dcm")}
    return sorted(files, key=lambda p: (p.name, str(p)))


def _dicom_modality(path: Path) -> str | None:
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception:  # noqa: BLE001 - unreadable headers are handled by the full decode below
        return None
    return str(header.get("Modality", "") or "") or None


def _multiple_choice(correct: str, pool: list[str], rng: random.Random) -> tuple[dict[str, str], str]:
    distractors = rng.sample(sorted(set(pool) - {correct}), k=min(3, len(set(pool) - {correct})))
    options = [correct, *distractors]
    rng.shuffle(options)
    return {LETTERS[i]: text for i, text in enumerate(options)}, LETTERS[options.index(correct)]


def ingest_dicom(
    out_dir: Path, limit: int | None, holdout: float, seed: int, mask_burned_in_text: bool = True
) -> Iterator[Record | dict]:
    """Caption and modality-QA records for the clinical DICOM images; quarantine dicts for unreadable files."""
    from medfoundry.data.images import ImageDecodeError, load_image, save_normalized

    rng = random.Random(seed)
    candidates = [p for p in dicom_files() if _dicom_modality(p) in MODALITY_NAMES]
    taken = 0
    for path in candidates:
        if limit is not None and taken >= limit:
            return
        source = f"pydicom:{path.name}"
        try:
            image = load_image(path, mask_burned_in_text=mask_burned_in_text)
        except ImageDecodeError as err:
            yield {"raw": str(path), "source": source, "reason": f"unreadable DICOM: {err}"}
            continue
        taken += 1
        modality = (image.modality or "").upper()
        body = (image.body_part or "").replace("_", " ").lower() or None
        rel = save_normalized(image, out_dir, f"dicom_{path.stem}")
        name = MODALITY_NAMES[modality]
        where = f" of the {body}" if body else ""
        description = image.meta.get("study_description") or image.meta.get("series_description") or ""
        caption = f"{name.capitalize()} ({modality}) image{where}." + (
            f" {description}." if description else ""
        )
        yield Record(
            id=f"dicom-caption-{path.stem}",
            source=source,
            kind="caption",
            text=caption,
            image=rel,
            modality=modality,
            body_part=body,
            license="pydicom test data (MIT/public test files)",
        )
        options, answer = _multiple_choice(name, list(MODALITY_NAMES.values()), rng)
        qid = f"dicom-modality-{path.stem}"
        yield Record(
            id=qid,
            source=source,
            kind="qa",
            question="Which imaging modality produced this image?",
            options=options,
            answer=answer,
            reasoning=f"The acquisition is {name} ({modality}){where}.",
            image=rel,
            modality=modality,
            body_part=body,
            split=assign_split(qid, holdout, seed),
            license="pydicom test data (MIT/public test files)",
            meta={"verified_by": "DICOM header (0008,0060) Modality"},
        )


def ingest_ontologies(profile: Profile, limit: int | None) -> Iterator[Record]:
    from medfoundry.entities.sources import iter_hpo_diseases, iter_hpo_terms

    data = profile.data
    rng = random.Random(data.seed)
    per_source = None if limit is None else max(1, limit // 3)
    if data.hpo:
        all_terms = list(iter_hpo_terms())
        phenotype_names = {term["id"]: term["name"] for term in all_terms}
        terms = (t for t in all_terms if t["category"] == "phenotype" and t["definition"])
        for term in islice(terms, per_source):
            also = f" Also known as: {', '.join(term['synonyms'][:5])}." if term["synonyms"] else ""
            yield Record(
                id=f"hpo-{term['id']}",
                source=f"hpo:{term['id']}",
                kind="text",
                text=f"{term['name']} ({term['id']}) is a phenotypic abnormality. {term['definition']}{also}",
                license="HPO (hpo.jax.org license, free for use with attribution)",
            )
        for disease in islice(iter_hpo_diseases(), per_source):
            phenotypes = [phenotype_names.get(p, p) for p in disease["phenotypes"][:8]]
            if not phenotypes:
                continue
            yield Record(
                id=f"hpoa-{disease['id']}",
                source=f"hpoa:{disease['id']}",
                kind="text",
                text=f"{disease['name']} ({disease['id']}) is a rare disease. Its clinical features include "
                f"{', '.join(phenotypes)}.",
                license="HPO annotations (hpo.jax.org), OMIM/Orphanet sources",
            )
    if data.icd10cm:
        codes = _billable_icd10cm_sample(per_source, rng)
        pool = [c["code"] for c in codes]
        for item in codes:
            yield Record(
                id=f"icd10cm-{item['code']}",
                source=f"icd10cm:{item['code']}",
                kind="text",
                text=f"ICD-10-CM code {item['code']} denotes {item['description']}.",
                license="ICD-10-CM (CDC/NCHS, public domain)",
            )
            options, answer = _multiple_choice(item["code"], pool, rng)
            qid = f"icd10cm-qa-{item['code']}"
            yield Record(
                id=qid,
                source=f"icd10cm:{item['code']}",
                kind="qa",
                question=f"Which ICD-10-CM code denotes {item['description']}?",
                options=options,
                answer=answer,
                reasoning=f"{item['description']} is coded {item['code']} in ICD-10-CM.",
                split=assign_split(qid, data.holdout_fraction, data.seed),
                license="ICD-10-CM (CDC/NCHS, public domain)",
            )


def _billable_icd10cm_sample(count: int | None, rng: random.Random) -> list[dict]:
    """A seeded sample of billable ICD-10-CM codes across all chapters (everything when count is None)."""
    if count is None:
        from medfoundry.entities.sources import iter_icd10cm

        return [c for c in iter_icd10cm() if c["level"] == "code" and c["billable"]]
    import simple_icd_10_cm as cm

    candidates = cm.get_all_codes(with_dots=True)
    picked: list[dict] = []
    for code in rng.sample(candidates, k=min(len(candidates), count * 4)):
        if cm.is_leaf(code) and not cm.is_extended_subcategory(code):
            picked.append({"code": code, "description": cm.get_description(code)})
            if len(picked) == count:
                break
    return picked


def ingest_sources(profile: Profile, out_dir: Path) -> dict[str, Any]:
    """Write the raw dataset to `out_dir`; return its figures."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = profile.data
    streams: list[Iterator[Record | dict]] = []
    if data.dicom:
        streams.append(
            ingest_dicom(
                out_dir, data.max_dicom_files, data.holdout_fraction, data.seed, data.mask_burned_in_text
            )
        )
    if data.hpo or data.icd10cm:
        streams.append(ingest_ontologies(profile, data.max_ontology_terms))
    if data.corpora:
        from medfoundry.curation.readers import read_corpora

        streams.append(read_corpora(data.corpora, out_dir, profile))

    by_source: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    kept = quarantined = 0
    with (
        (out_dir / RECORDS).open("w", encoding="utf-8") as records,
        (out_dir / QUARANTINE).open("w", encoding="utf-8") as quarantine,
    ):
        for stream in streams:
            for item in stream:
                if isinstance(item, Record):
                    records.write(item.model_dump_json() + "\n")
                    kept += 1
                    by_source[item.source.split(":", 1)[0]] += 1
                    by_kind[item.kind] += 1
                else:
                    quarantine.write(json.dumps(item, ensure_ascii=False, default=str) + "\n")
                    quarantined += 1
    figures = {
        "records": kept,
        "quarantined": quarantined,
        "input": kept + quarantined,
        "images": sum(1 for _ in (out_dir / "images").glob("*.png")) if (out_dir / "images").exists() else 0,
        **{f"source/{k}": v for k, v in sorted(by_source.items())},
        **{f"kind/{k}": v for k, v in sorted(by_kind.items())},
    }
    write_manifest(out_dir, stage="ingest", counts=figures)
    return figures
