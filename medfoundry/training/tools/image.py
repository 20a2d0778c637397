"""Image tools for image items: crop, zoom and rotate with Pillow. Each writes the resulting image as a PNG and
returns its size, where it lies and its mean grey level (0-255), so an output can be checked without looking at it.
Coordinates are pixels of the original image, origin top left."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from PIL import Image, ImageStat

_state: dict[str, Path | None] = {"out_dir": None}


def use_output_dir(folder: Path) -> None:
    """Where the tools write their images (default: a medfoundry-image-tools folder in the temp dir)."""
    _state["out_dir"] = Path(folder)


def _open(image_path: str) -> Image.Image:
    path = Path(image_path)
    if not path.is_file():
        raise ValueError(f"no image at {image_path!r}")
    with Image.open(path) as image:
        return image.convert("RGB")


def _result(image: Image.Image, source: str, operation: str) -> str:
    folder = _state["out_dir"] or Path(tempfile.gettempdir()) / "medfoundry-image-tools"
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(f"{Path(source).resolve()}|{operation}".encode()).hexdigest()[:12]
    path = folder / f"{Path(source).stem}-{digest}.png"
    image.save(path)
    mean = sum(ImageStat.Stat(image.convert("L")).mean)
    return f"{operation}: {image.width}x{image.height} image at {path}; mean grey level {mean:.1f}"


def _box(image: Image.Image, left: int, top: int, right: int, bottom: int) -> tuple[int, int, int, int]:
    if not (0 <= left < right <= image.width and 0 <= top < bottom <= image.height):
        raise ValueError(f"box ({left}, {top}, {right}, {bottom}) is not inside the {image.width}x{image.height} "
                         "image (need 0 <= left < right <= width, 0 <= top < bottom <= height)")
    return left, top, right, bottom


def image_crop(image_path: str, left: int, top: int, right: int, bottom: int) -> str:
    """
    Crop a region of an image.

    Args:
        image_path: Path of the item's image.
        left: Left edge of the region in pixels.
        top: Top edge of the region in pixels.
        right: Right edge of the region in pixels (exclusive).
        bottom: Bottom edge of the region in pixels (exclusive).

    Returns:
        The cropped image's size, path and mean grey level.
    """
    image = _open(image_path)
    box = _box(image, int(left), int(top), int(right), int(bottom))
    return _result(image.crop(box), image_path, f"crop {box}")


def image_zoom(image_path: str, center_x: int, center_y: int, factor: float) -> str:
    """
    Zoom into an image around a point: the region 1/factor of the image's width and height centred on the point
    (moved inside the image at the edges), enlarged back to the image's size.

    Args:
        image_path: Path of the item's image.
        center_x: Horizontal pixel of the zoom centre.
        center_y: Vertical pixel of the zoom centre.
        factor: Magnification, from 1 to 16.

    Returns:
        The zoomed image's size, path and mean grey level, and the region it shows.
    """
    if not 1.0 <= float(factor) <= 16.0:
        raise ValueError(f"zoom factor {factor}: need 1 to 16")
    image = _open(image_path)
    if not (0 <= int(center_x) < image.width and 0 <= int(center_y) < image.height):
        raise ValueError(f"centre ({center_x}, {center_y}) is outside the {image.width}x{image.height} image")
    width, height = max(1, round(image.width / factor)), max(1, round(image.height / factor))
    left = min(max(int(center_x) - width // 2, 0), image.width - width)
    top = min(max(int(center_y) - height // 2, 0), image.height - height)
    box = (left, top, left + width, top + height)
    zoomed = image.crop(box).resize(image.size, Image.Resampling.BICUBIC)
    return _result(zoomed, image_path, f"zoom x{float(factor):g} of region {box}")


def image_rotate(image_path: str, degrees: float) -> str:
    """
    Rotate an image counter-clockwise; the canvas grows to hold the whole rotated image (black corners).

    Args:
        image_path: Path of the item's image.
        degrees: Counter-clockwise angle in degrees.

    Returns:
        The rotated image's size, path and mean grey level.
    """
    image = _open(image_path)
    angle = float(degrees) % 360
    exact = {90.0: Image.Transpose.ROTATE_90, 180.0: Image.Transpose.ROTATE_180, 270.0: Image.Transpose.ROTATE_270}
    if angle == 0:
        rotated = image.copy()
    elif angle in exact:  # lossless for right angles
        rotated = image.transpose(exact[angle])
    else:
        rotated = image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    return _result(rotated, image_path, f"rotate {angle:g} degrees")
