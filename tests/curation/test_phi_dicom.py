"""DICOM de-identification: a CT with burned-in text and identifying headers comes out clean."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medfoundry.deid.dicom import deidentify_dataset, tesseract_available

pytestmark = pytest.mark.skipif(
    not tesseract_available(), reason="tesseract-ocr is not installed (make setup installs it with apt-get)"
)
# Where the identifying text is drawn: (top, left, bottom, right) in the 512x512 image.
TEXT_BOX = (10, 10, 90, 500)


def _ct_with_burned_in_text():
    """pydicom's CT_small.dcm scaled to 512x512, a name and birth date drawn into its pixels, PHI in its headers."""
    import pydicom
    from PIL import Image, ImageDraw, ImageFont

    ds = pydicom.dcmread(Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm")
    arr = ds.pixel_array.astype(np.float64)
    img = Image.fromarray(((arr - arr.min()) / (arr.max() - arr.min()) * 255).astype(np.uint8)).resize(
        (512, 512)
    )
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=28)
    top, left, bottom, right = TEXT_BOX
    draw.rectangle([left, top, right, bottom], fill=0)
    draw.text((20, 15), "Smith, John", fill=255, font=font)
    draw.text((20, 50), "DOB 03/04/1961", fill=255, font=font)
    ds.Rows, ds.Columns = 512, 512
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = np.asarray(img).astype(np.int16).tobytes()
    ds.RescaleIntercept, ds.RescaleSlope = 0, 1  # the drawn values are the displayed values
    for keyword in ("WindowCenter", "WindowWidth"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.PatientName = "Smith^John"
    ds.PatientID = "MRN00123456"
    ds.PatientBirthDate = "19610304"
    ds.InstitutionName = "Springfield General"
    ds.ReferringPhysicianName = "Chang^Lee"
    ds.AccessionNumber = "ACC884411"
    ds.add_new((0x0009, 0x0010), "LO", "ACME PRIVATE")
    ds.add_new((0x0009, 0x1001), "LO", "Smith John internal note")
    return ds, np.asarray(img).astype(np.int16)


def test_dicom_with_burned_in_text_and_identifying_headers_comes_out_clean():
    ds, before = _ct_with_burned_in_text()
    original_uid = ds.SOPInstanceUID
    report = deidentify_dataset(ds)

    # Headers per the PS3.15 Basic Profile: identifying values gone, UIDs replaced, private tags removed.
    for keyword in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "InstitutionName",
        "ReferringPhysicianName",
    ):
        assert "Smith" not in str(ds.get(keyword, "")) and "MRN00123456" not in str(ds.get(keyword, ""))
    assert (
        str(ds.get("PatientBirthDate", "")) != "19610304"
        and str(ds.get("AccessionNumber", "")) != "ACC884411"
    )
    assert ds.SOPInstanceUID != original_uid
    assert not any(element.tag.is_private for element in ds.iterall())
    assert ds.PatientIdentityRemoved == "YES" and ds.BurnedInAnnotation == "NO"
    assert [item.CodeValue for item in ds.DeidentificationMethodCodeSequence] == ["113100", "113101"]
    assert ds.Modality == "CT"  # what the profile keeps stays

    # Pixels: both lines of text found and their region masked; the anatomy below is untouched.
    after = ds.pixel_array
    top, left, bottom, right = TEXT_BOX
    boxes = report.text_boxes
    assert {b["entity_type"] for b in boxes} & {"PERSON", "MF_NAME"} and len(boxes) >= 3
    assert any(b["top"] > 45 for b in boxes)  # the birth-date line too
    text_pixels = before[top:bottom, left:right] > 128
    assert (
        after[top:bottom, left:right][text_pixels] != before[top:bottom, left:right][text_pixels]
    ).mean() > 0.9
    assert np.array_equal(after[200:500, :], before[200:500, :])


def test_curation_reader_masks_burned_in_text_with_the_tiny_profile(tmp_path):
    """The tiny profile's data.mask_burned_in_text reaches the reader: the stored PNG has the text masked."""
    from PIL import Image

    from medfoundry.config import load_profile
    from medfoundry.curation.readers import read_corpora
    from medfoundry.data.records import Record

    profile = load_profile("tiny")
    assert profile.data.mask_burned_in_text
    ds, before = _ct_with_burned_in_text()
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    ds.save_as(corpus / "scan.dcm", enforce_file_format=True)
    (corpus / "scan.txt").write_text("CT of the chest.")
    from medfoundry.data.images import load_image

    unmasked = np.asarray(load_image(corpus / "scan.dcm").image.convert("L"))
    top, left, bottom, right = TEXT_BOX
    text_pixels = before[top:bottom, left:right] > 128
    assert unmasked[top:bottom, left:right][text_pixels].mean() > 200  # without masking the text is plain to see
    records = [r for r in read_corpora([corpus], tmp_path / "out", profile) if isinstance(r, Record)]
    assert len(records) == 1
    png = np.asarray(Image.open(tmp_path / "out" / records[0].image).convert("L").resize((512, 512)))
    assert (png[top:bottom, left:right][text_pixels] < 100).mean() > 0.9  # white text is gone
