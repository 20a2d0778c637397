"""DICOM de-identification: headers per the DICOM PS3.15 Basic Application Level Confidentiality Profile, and text
burned into the pixels found by OCR and masked.

- Headers: the profile's action table (Annex E, table E.1-1: D replace, Z empty, X remove, U new UID, and the
  combined actions) as shipped by PyPI `dicom-anonymizer` (Kitware, BSD-3), in its 2026c edition of the standard;
  private tags are removed, and the attributes the profile asks for are set: Patient Identity Removed (0012,0062)
  YES, De-identification Method (0012,0063) and its code sequence (0012,0064) with DCM 113100 (Basic Application
  Confidentiality Profile) and, where pixels were checked, 113101 (Clean Pixel Data Option).
- Pixels: Microsoft Presidio's image redactor (`presidio-image-redactor`) reads the image with Tesseract OCR
  (Debian's `tesseract-ocr`), the same PHI engine as for text finds identifiers in what it read (plus the header
  values, so a burned-in patient name is found even where NER would miss it), and each one's box is filled.

`deidentify_dataset` does both on a pydicom Dataset; `mask_burned_in_text` masks a decoded image (any format), which
is what the data stage stores.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from functools import lru_cache

PROFILE_EDITION = "dicomfields_2026c"
BASIC_PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")
CLEAN_PIXEL_CODE = ("113101", "DCM", "Clean Pixel Data Option")


class OcrUnavailable(RuntimeError):
    """Tesseract is not installed: burned-in text cannot be checked."""


@dataclass
class DicomDeidReport:
    header_actions: int = 0
    private_tags_removed: int = 0
    text_boxes: list[dict] = field(default_factory=list)
    pixels_checked: bool = False


def tesseract_available() -> bool:
    return shutil.which("tesseract") is not None


def _require_tesseract() -> None:
    if not tesseract_available():
        raise OcrUnavailable("burned-in text check needs Tesseract OCR: apt-get install tesseract-ocr")


@lru_cache(maxsize=1)
def _image_analyzer():
    from presidio_image_redactor import ImageAnalyzerEngine

    from medfoundry.deid.engine import default_deidentifier

    logging.getLogger("presidio-image-redactor").setLevel(logging.ERROR)
    return ImageAnalyzerEngine(analyzer_engine=default_deidentifier().analyzer)


def _entities() -> list[str]:
    from medfoundry.deid.engine import default_deidentifier

    return default_deidentifier().entities


def deidentify_dataset(ds, clean_pixels: bool = True) -> DicomDeidReport:
    """De-identify `ds` in place: burned-in text masked (when `clean_pixels`), then the header profile applied."""
    report = DicomDeidReport()
    if clean_pixels and "PixelData" in ds:
        _require_tesseract()
        from presidio_image_redactor import DicomImageRedactorEngine

        redactor = DicomImageRedactorEngine(image_analyzer_engine=_image_analyzer())
        redacted, boxes = redactor.redact_and_return_bbox(
            ds, fill="background", use_metadata=True, entities=_entities(), score_threshold=0.4
        )
        ds.PixelData = redacted.PixelData
        report.text_boxes = boxes
        report.pixels_checked = True
    _apply_basic_profile(ds, report)
    return report


def _apply_basic_profile(ds, report: DicomDeidReport) -> None:
    from dicomanonymizer.simpledicomanonymizer import anonymize_dataset, initialize_actions
    from pydicom.dataset import Dataset

    private = sum(1 for element in ds.iterall() if element.tag.is_private)
    actions = initialize_actions(PROFILE_EDITION)
    anonymize_dataset(ds, base_rules_gen=lambda: actions, delete_private_tags=True)
    report.header_actions = len(actions)
    report.private_tags_removed = private
    ds.PatientIdentityRemoved = "YES"
    codes = [BASIC_PROFILE_CODE] + ([CLEAN_PIXEL_CODE] if report.pixels_checked else [])
    ds.DeidentificationMethod = "PS3.15 Basic Profile" + (
        "; Clean Pixel Data Option" if report.pixels_checked else ""
    )
    sequence = []
    for value, scheme, meaning in codes:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
        sequence.append(item)
    ds.DeidentificationMethodCodeSequence = sequence
    if report.pixels_checked:
        ds.BurnedInAnnotation = "NO"


# Header values that, burned into the pixels, identify the patient (looked for in the OCR text by the redactor).
IDENTIFYING_HEADERS = (
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "PatientBirthDate",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "InstitutionName",
    "AccessionNumber",
)


def identifying_header_values(ds) -> list[str]:
    values = []
    for keyword in IDENTIFYING_HEADERS:
        value = ds.get(keyword)
        if value:
            values += [str(value), *str(value).replace("^", " ").split()]
    return values


def mask_burned_in_text(image, header_values: list[str] | None = None):
    """`image` (PIL) with every burned-in identifier's box filled black; returns (image, boxes).

    `header_values` (patient name, id, ...) are looked for in the text read, as the DICOM redactor does.
    """
    _require_tesseract()
    import pytesseract
    from PIL import ImageDraw

    # Most images hold no text at all: a plain OCR pass first spares loading the PHI engine for them.
    if not any(ch.isalnum() for ch in pytesseract.image_to_string(image.convert("L"))):
        return image, []
    from presidio_analyzer import PatternRecognizer

    deny = [v for v in (header_values or []) if v and len(v) > 2]
    recognizers = [PatternRecognizer(supported_entity="PERSON", deny_list=deny)] if deny else None
    results = _image_analyzer().analyze(
        image.convert("RGB"), ad_hoc_recognizers=recognizers, entities=_entities(), score_threshold=0.4
    )
    if not results:
        return image, []
    masked = image.copy()
    draw = ImageDraw.Draw(masked)
    boxes = []
    for box in results:
        draw.rectangle([box.left, box.top, box.left + box.width, box.top + box.height], fill=0)
        boxes.append(
            {
                "left": box.left,
                "top": box.top,
                "width": box.width,
                "height": box.height,
                "entity": box.entity_type,
            }
        )
    return masked, boxes
