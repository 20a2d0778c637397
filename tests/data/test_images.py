"""Image decoding on real DICOM (pydicom, pydicom-data), NIfTI (nibabel) and PNG/JPEG files."""

from __future__ import annotations

import io
from pathlib import Path

import nibabel.testing
import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from medfoundry.data.images import ImageDecodeError, load_image, save_normalized

NIB = Path(nibabel.testing.data_path)


def test_ct_dicom_has_modality_and_8bit_image():
    img = load_image(get_testdata_file("CT_small.dcm"))
    assert img.source_format == "dicom"
    assert img.modality == "CT"
    assert img.image.mode == "L"
    arr = np.asarray(img.image)
    assert arr.dtype == np.uint8 and arr.min() == 0 and arr.max() == 255
    assert img.original_size == (128, 128)


def test_multiframe_dicom_takes_middle_frame_and_body_part():
    img = load_image(get_testdata_file("emri_small.dcm"))
    assert img.frames == 10
    assert img.meta["frame_index"] == 5
    assert img.modality == "MR" and img.body_part == "HEAD"


def test_monochrome1_is_inverted_with_voi_window():
    import data_store

    path = Path(data_store.__file__).parent / "data" / "RG1_UNCI.dcm"
    if not path.exists():
        pytest.skip("pydicom-data RG1_UNCI.dcm not installed")
    img = load_image(path)
    assert img.modality == "CR" and img.body_part == "CHEST"
    assert img.meta["inverted"] is True and img.meta["window"] == "voi"
    arr = np.asarray(img.image, dtype=float)
    h, w = arr.shape
    # Displayed like a film after inversion: the mediastinum (centre) is bright, the lungs beside it dark.
    band = slice(h // 3, h // 2)
    mediastinum = arr[band, w // 2 - 60 : w // 2 + 60].mean()
    lungs = (
        arr[band, w // 4 - 60 : w // 4 + 60].mean() + arr[band, 3 * w // 4 - 60 : 3 * w // 4 + 60].mean()
    ) / 2
    assert mediastinum > lungs + 40


def test_colour_dicom_becomes_rgb():
    img = load_image(get_testdata_file("SC_rgb.dcm"))
    assert img.image.mode == "RGB"
    red = np.asarray(img.image)[5, 50]
    assert red[0] > 200 and red[1] < 50 and red[2] < 50


def test_nifti_middle_axial_slice_from_bytes():
    data = (NIB / "example4d.nii.gz").read_bytes()
    img = load_image(data, filename="example4d.nii.gz")
    assert img.source_format == "nifti"
    assert img.frames == 24 and img.meta["slice_index"] == 12
    assert img.image.mode == "L" and np.asarray(img.image).max() == 255
    # Sniffed from content even without a file name.
    assert load_image((NIB / "anatomical.nii").read_bytes()).source_format == "nifti"


def test_png_and_jpeg_round_trip(tmp_path):
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8))
    for fmt, name in (("PNG", "a.png"), ("JPEG", "b.jpg")):
        buf = io.BytesIO()
        rgb.save(buf, format=fmt)
        img = load_image(buf.getvalue(), filename=name)
        assert img.source_format == fmt.lower() and img.original_size == (60, 40) and img.image.mode == "RGB"
    sixteen = Image.fromarray(np.arange(100 * 100, dtype=np.uint16).reshape(100, 100) * 3)
    path = tmp_path / "deep.png"
    sixteen.save(path)
    assert load_image(path).image.mode == "L"


@pytest.mark.parametrize(
    ("payload", "name", "reason"),
    [
        (b"", "x.dcm", "empty"),
        (b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage", "broken.dcm", "dicom"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "trunc.png", "not a readable image"),
        (b"hello world", "notes.txt", "not a readable image"),
        (b"\x1f\x8bnot really gzip", "vol.nii.gz", "nifti"),
    ],
)
def test_unreadable_files_raise_with_reason(payload, name, reason):
    with pytest.raises(ImageDecodeError) as err:
        load_image(payload, filename=name)
    assert reason.lower() in str(err.value).lower()


def test_truncated_real_dicom_gives_reason():
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    with pytest.raises(ImageDecodeError, match="pixel data"):
        load_image(data[: len(data) // 2], filename="ct.dcm")


def test_missing_file_gives_reason(tmp_path):
    with pytest.raises(ImageDecodeError, match="cannot read"):
        load_image(tmp_path / "nope.dcm")


def test_save_normalized_resizes_and_returns_relative_path(tmp_path):
    import data_store

    big = Path(data_store.__file__).parent / "data" / "RG1_UNCI.dcm"
    img = load_image(big if big.exists() else get_testdata_file("CT_small.dcm"))
    rel = save_normalized(img, tmp_path, "study 1/RG1", max_size=128)
    assert rel == "images/study_1_RG1.png"
    saved = Image.open(tmp_path / rel)
    assert max(saved.size) <= 128 and saved.format == "PNG"
