"""Decode medical images (DICOM, NIfTI, PNG/JPEG) into normalized 8-bit PIL images plus metadata.

Every failure is an `ImageDecodeError` whose message is the reason (callers quarantine the file with it).
"""

from __future__ import annotations

import gzip
import io
import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from medfoundry.data.records import IMAGES

DEFAULT_MAX_SIZE = 512
_DICOM_SUFFIXES = {".dcm", ".dicom", ".dic", ".ima"}
_NIFTI_SUFFIXES = (".nii", ".nii.gz")
# A generous cap: a bigger compressed image is almost certainly a decompression bomb or not a picture at all.
_MAX_PIXELS = 200_000_000


class ImageDecodeError(ValueError):
    """The image could not be read; str(err) is the reason."""


@dataclass
class NormalizedImage:
    image: Image.Image  # mode "L" or "RGB", 8 bits per channel
    source_format: str  # dicom | nifti | png | jpeg | <PIL format, lower case>
    modality: str | None = None
    body_part: str | None = None
    frames: int = 1
    original_size: tuple[int, int] = (0, 0)  # (width, height) of the decoded frame/slice before resizing
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


def load_image(
    path_or_bytes: str | Path | bytes, filename: str | None = None, mask_burned_in_text: bool = False
) -> NormalizedImage:
    """Decode one image file (path or raw bytes); `filename` helps pick the format when bytes are given.

    With `mask_burned_in_text`, a DICOM image's burned-in identifiers (OCR + the PHI engine, header values included)
    are masked in the decoded image (`medfoundry.deid.dicom`); its headers are not kept beyond modality and body
    part, which the PS3.15 Basic Profile keeps too.
    """
    try:
        if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
            data = bytes(path_or_bytes)
            name = filename or ""
        else:
            path = Path(path_or_bytes)
            name = filename or path.name
            data = path.read_bytes()
    except OSError as err:
        raise ImageDecodeError(f"cannot read file: {err.strerror or err}") from None
    if not data:
        raise ImageDecodeError("empty file")
    kind = _sniff(data, name)
    decoder = {"dicom": _load_dicom, "nifti": _load_nifti, "pil": _load_pil}[kind]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            decoded = decoder(data, name)
    except ImageDecodeError:
        raise
    except Exception as err:  # noqa: BLE001 - any decoder failure becomes a reason, never a crash
        raise ImageDecodeError(f"{kind} decode failed: {type(err).__name__}: {err}") from None
    if mask_burned_in_text and kind == "dicom":
        _mask_dicom_text(decoded, data)
    return decoded


def _mask_dicom_text(decoded: NormalizedImage, data: bytes) -> None:
    import pydicom

    from medfoundry.deid.dicom import OcrUnavailable, identifying_header_values, mask_burned_in_text

    header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
    try:
        decoded.image, boxes = mask_burned_in_text(decoded.image, identifying_header_values(header))
    except OcrUnavailable as err:
        raise ImageDecodeError(str(err)) from None
    decoded.meta["burned_in_text_boxes"] = len(boxes)


def save_normalized(
    img: NormalizedImage | Image.Image, out_dir: Path, stem: str, max_size: int = DEFAULT_MAX_SIZE
) -> str:
    """Write `img` as PNG to `<out_dir>/images/<stem>.png`, at most `max_size` px on its long side.

    `out_dir` is the dataset folder; the returned path is relative to it (what `Record.image` holds).
    """
    pil = img.image if isinstance(img, NormalizedImage) else img
    if pil.mode not in ("L", "RGB"):
        pil = pil.convert("RGB")
    if max(pil.size) > max_size:
        pil = pil.copy()
        pil.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "image"
    rel = f"{IMAGES}/{safe}.png"
    target = Path(out_dir) / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    pil.save(target, format="PNG", optimize=False)
    return rel


def is_image_file(name: str) -> bool:
    """Whether a file name looks like an image this module decodes (by suffix)."""
    lower = name.lower()
    return lower.endswith(_NIFTI_SUFFIXES) or Path(lower).suffix in (
        _DICOM_SUFFIXES | {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
    )


def _sniff(data: bytes, name: str) -> str:
    lower = name.lower()
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    if data[:8] == b"\x89PNG\r\n\x1a\n" or data[:3] == b"\xff\xd8\xff":
        return "pil"
    if lower.endswith(_NIFTI_SUFFIXES) or _looks_like_nifti(data):
        return "nifti"
    if Path(lower).suffix in _DICOM_SUFFIXES:
        return "dicom"  # DICOM files without the 128-byte preamble still exist
    return "pil"


def _looks_like_nifti(data: bytes) -> bool:
    head = data[:540]
    if data[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as fh:
                head = fh.read(540)
        except (OSError, EOFError):
            return False
    return head[344:347] in (b"n+1", b"ni1") or head[4:7] == b"n+2"


def _to_uint8(arr: np.ndarray, low: float | None = None, high: float | None = None) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        raise ImageDecodeError("image has no finite pixel values")
    lo = float(finite.min()) if low is None else low
    hi = float(finite.max()) if high is None else high
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    scaled = (np.nan_to_num(arr, nan=lo) - lo) / (hi - lo)
    return (np.clip(scaled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _percentile_window(arr: np.ndarray, lo_pct: float = 0.5, hi_pct: float = 99.5) -> tuple[float, float]:
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        raise ImageDecodeError("image has no finite pixel values")
    lo, hi = np.percentile(finite, [lo_pct, hi_pct])
    if hi <= lo:
        lo, hi = float(finite.min()), float(finite.max())
    return float(lo), float(hi)


def _load_dicom(data: bytes, name: str) -> NormalizedImage:
    import pydicom

    # pydicom logs a full traceback for every plugin that fails to decode; the reason reaches the caller instead.
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except InvalidDicomError as err:
        raise ImageDecodeError(f"not a DICOM file: {err}") from None
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ImageDecodeError("DICOM file has no pixel data")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows <= 0 or cols <= 0:
        raise ImageDecodeError("DICOM file has no image dimensions (Rows/Columns)")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    index = frames // 2 if frames > 1 else None
    try:
        arr = pydicom.pixels.pixel_array(ds, index=index)
    except Exception as err:  # noqa: BLE001 - truncated data, unsupported transfer syntax, ...
        raise ImageDecodeError(f"DICOM pixel data unreadable: {type(err).__name__}: {err}") from None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    meta: dict[str, Any] = {"photometric": photometric, "frame_index": index or 0}
    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
        samples = 3
    if samples == 1:
        arr = apply_modality_lut(arr, ds)
        has_voi = "WindowCenter" in ds or "VOILUTSequence" in ds
        if has_voi:
            arr = apply_voi_lut(arr, ds, index=index or 0)
            meta["window"] = "voi"
            out = _to_uint8(arr)
        else:
            meta["window"] = "percentile"
            out = _to_uint8(arr, *_percentile_window(arr))
        if photometric == "MONOCHROME1":
            out = 255 - out
            meta["inverted"] = True
        image = Image.fromarray(out, mode="L") if out.ndim == 2 else Image.fromarray(out[..., 0], mode="L")
    else:
        if arr.ndim != 3 or arr.shape[-1] < 3:
            raise ImageDecodeError(f"unexpected colour DICOM frame shape {arr.shape}")
        rgb = arr[..., :3]
        if rgb.dtype != np.uint8:
            bits = int(ds.get("BitsStored", 8) or 8)
            rgb = _to_uint8(rgb, 0.0, float(2**bits - 1))
        image = Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")
    return NormalizedImage(
        image=image,
        source_format="dicom",
        modality=_clean_str(ds.get("Modality")),
        body_part=_clean_str(ds.get("BodyPartExamined")),
        frames=frames,
        original_size=(cols, rows),
        meta=meta,
    )


def _load_nifti(data: bytes, name: str) -> NormalizedImage:
    import nibabel as nib

    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as err:
            raise ImageDecodeError(f"corrupt gzip in NIfTI file: {err}") from None
    head = data[:540]
    cls = nib.Nifti2Image if head[4:7] == b"n+2" else nib.Nifti1Image
    try:
        img = cls.from_bytes(data)
    except Exception as err:  # noqa: BLE001
        raise ImageDecodeError(f"not a readable NIfTI file: {type(err).__name__}: {err}") from None
    img = nib.as_closest_canonical(
        img
    )  # RAS+: the third axis runs inferior -> superior, so axis 2 slices are axial
    shape = img.shape
    if len(shape) < 2:
        raise ImageDecodeError(f"NIfTI volume has too few dimensions: {shape}")
    if len(shape) == 2:
        slice2d = np.asarray(img.dataobj, dtype=np.float64)
        frames = 1
    else:
        frames = shape[2]
        extra = (0,) * (len(shape) - 3)  # first volume of a 4D series
        slice2d = np.asarray(img.dataobj[(slice(None), slice(None), shape[2] // 2, *extra)], dtype=np.float64)
    # Radiological display: rows run anterior -> posterior, so rotate the RAS (x, y) plane.
    slice2d = np.rot90(slice2d)
    out = _to_uint8(slice2d, *_percentile_window(slice2d))
    descrip = img.header.get("descrip")
    meta = {
        "shape": list(shape),
        "slice_index": shape[2] // 2 if len(shape) > 2 else 0,
        "window": "percentile",
    }
    if descrip is not None and bytes(descrip).strip(b"\x00 "):
        meta["description"] = bytes(descrip).split(b"\x00")[0].strip().decode("latin-1")
    return NormalizedImage(
        image=Image.fromarray(np.ascontiguousarray(out), mode="L"),
        source_format="nifti",
        frames=frames,
        original_size=(out.shape[1], out.shape[0]),
        meta=meta,
    )


def _load_pil(data: bytes, name: str) -> NormalizedImage:
    Image.MAX_IMAGE_PIXELS = _MAX_PIXELS
    try:
        pil = Image.open(io.BytesIO(data))
        fmt = (pil.format or Path(name).suffix.lstrip(".") or "unknown").lower()
        frames = int(getattr(pil, "n_frames", 1) or 1)
        if frames > 1:
            pil.seek(frames // 2)
        pil.load()
    except Image.DecompressionBombError as err:
        raise ImageDecodeError(f"image too large: {err}") from None
    except Exception as err:  # noqa: BLE001 - truncated or not an image at all
        raise ImageDecodeError(f"not a readable image: {type(err).__name__}: {err}") from None
    original = pil.size
    if pil.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(pil, dtype=np.float64)
        pil = Image.fromarray(_to_uint8(arr, *_percentile_window(arr)), mode="L")
    elif pil.mode in ("1", "L"):
        pil = pil.convert("L")
    elif pil.mode == "LA":
        pil = pil.convert("L")
    else:
        pil = pil.convert("RGB")
    return NormalizedImage(
        image=pil,
        source_format="jpeg" if fmt in ("jpeg", "jpg", "mpo") else fmt,
        frames=frames,
        original_size=original,
        meta={},
    )


def _clean_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text.upper() if text else None
