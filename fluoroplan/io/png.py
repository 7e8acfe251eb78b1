"""A tiny PNG writer (zlib + struct): grey or RGB uint8 images, no Qt or imaging library."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def png_bytes(image: np.ndarray) -> bytes:
    """PNG file contents of a uint8 image, shape (rows, cols) grey or (rows, cols, 3) RGB."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ValueError(f"PNG writer takes uint8 images, got {img.dtype}")
    if img.ndim == 2:
        colour_type, channels = 0, 1
    elif img.ndim == 3 and img.shape[2] == 3:
        colour_type, channels = 2, 3
    else:
        raise ValueError(f"PNG writer takes (rows, cols) or (rows, cols, 3), got {img.shape}")
    rows, cols = img.shape[:2]
    raw = np.zeros((rows, 1 + cols * channels), np.uint8)  # filter byte 0 per scanline
    raw[:, 1:] = img.reshape(rows, cols * channels)
    header = struct.pack(">IIBBBBB", cols, rows, 8, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
        + _chunk(b"IEND", b"")
    )


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write a uint8 grey or RGB image as PNG; returns the path."""
    path = Path(path)
    path.write_bytes(png_bytes(image))
    return path


def read_png(path: str | os.PathLike) -> np.ndarray:
    """Read back a PNG written by :func:`write_png` (8-bit grey/RGB, filter 0 only)."""
    data = Path(path).read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG file")
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    if header is None:
        raise ValueError(f"{path} has no PNG header")
    cols, rows, depth, colour_type = header[:4]
    channels = {0: 1, 2: 3}.get(colour_type)
    if depth != 8 or channels is None:
        raise ValueError(f"{path}: only 8-bit grey or RGB PNG can be read here")
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(rows, 1 + cols * channels)
    if np.any(raw[:, 0] != 0):
        raise ValueError(f"{path}: PNG row filters are not supported by this reader")
    img = raw[:, 1:].reshape(rows, cols, channels)
    return img[..., 0] if channels == 1 else img
