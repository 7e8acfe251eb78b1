"""PNG files of grey or RGB uint8 images, written and read with Pillow."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


def _image(image: np.ndarray) -> Image.Image:
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ValueError(f"PNG writer takes uint8 images, got {img.dtype}")
    if img.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(img))  # mode L
    if img.ndim == 3 and img.shape[2] == 3:
        return Image.fromarray(np.ascontiguousarray(img))  # mode RGB
    raise ValueError(f"PNG writer takes (rows, cols) or (rows, cols, 3), got {img.shape}")


def png_bytes(image: np.ndarray) -> bytes:
    """PNG file contents of a uint8 image, shape (rows, cols) grey or (rows, cols, 3) RGB."""
    buf = io.BytesIO()
    _image(image).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write a uint8 grey or RGB image as PNG; returns the path."""
    path = Path(path)
    path.write_bytes(png_bytes(image))
    return path


def read_png(path: str | os.PathLike) -> np.ndarray:
    """Read an 8-bit grey or RGB PNG into a uint8 array (rows, cols) or (rows, cols, 3)."""
    try:
        with Image.open(path) as im:
            if im.format != "PNG":
                raise ValueError(f"{path} is not a PNG file")
            if im.mode not in ("L", "RGB"):
                raise ValueError(f"{path}: only 8-bit grey or RGB PNG can be read here")
            return np.asarray(im.copy())
    except UnidentifiedImageError as exc:
        raise ValueError(f"{path} is not a PNG file") from exc
