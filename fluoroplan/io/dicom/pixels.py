"""The pixel pass: read the frames of a planned series into int16 HU.

Uncompressed little-endian data is read with ``readinto`` straight into the preallocated
volume, anything else is decoded by pydicom; BitsStored is honoured and the rescale applied
(:func:`_read_frames`). Then :func:`_resample` puts tilted or unevenly spaced slices onto the
regular grid, :func:`_compare_duplicates` refuses repeated copies of an image that differ and
:func:`_check_odd_rescale` refuses an image whose own rescale is wrong.
Uses :mod:`.headers` and :mod:`.geometry`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom

from fluoroplan.io.dicom.geometry import _Geometry, _label, _short
from fluoroplan.io.dicom.headers import _Frame, _Pixels
from fluoroplan.io.errors import DecodeError, InconsistentSlices
from fluoroplan.io.progress import Stage

AIR_HU = -1024


def _to_hu(
    stored: np.ndarray,
    slope: float,
    intercept: float,
    out: np.ndarray,
    bounds: tuple[int, int] | None = None,
) -> bool:
    """Write ``stored * slope + intercept`` into int16 ``out``; True if values were clipped.

    ``bounds`` (lowest, highest possible stored value, known from BitsStored once the unused
    bits are masked) lets the common case (slope 1, integer intercept, result within int16)
    run in place in int16 without a wider temporary.
    """
    if slope == 1.0 and float(intercept).is_integer() and stored.dtype.itemsize == 2:
        c = int(intercept)
        if c == 0 and stored.dtype == np.int16:
            if not np.shares_memory(stored, out):
                out[...] = stored
            return False
        lo, hi = bounds if bounds is not None else (int(stored.min()), int(stored.max()))
        if -32768 <= c <= 32767 and hi <= 32767 and lo + c >= -32768 and hi + c <= 32767:
            if not np.shares_memory(stored, out):
                out[...] = stored  # values fit int16, so the cast is exact
            if c:
                np.add(out, np.int16(c), out=out)  # int16 view of the same values
            return False
        tmp = stored.astype(np.int32)
        tmp += c
    else:
        tmp = np.rint(stored.astype(np.float32) * np.float32(slope) + np.float32(intercept))
    lo, hi = tmp.min(), tmp.max()
    clipped = bool(lo < -32768 or hi > 32767)
    if clipped:
        np.clip(tmp, -32768, 32767, out=tmp)
    out[...] = tmp
    return clipped


def _stored_bounds(pixels: _Pixels) -> tuple[int, int] | None:
    """Range of stored values implied by BitsStored (after masking), if narrower than 16 bits."""
    bs = pixels.bits_stored
    if bs <= 0 or bs >= 16:
        return None
    if pixels.signed:
        return -(1 << (bs - 1)), (1 << (bs - 1)) - 1
    return 0, (1 << bs) - 1


def _mask_bits(raw: np.ndarray, pixels: _Pixels) -> np.ndarray:
    """Honour BitsStored: drop the unused high bits (sign-extending signed data)."""
    bs = pixels.bits_stored
    if bs >= 16 or bs <= 0:
        return raw
    if pixels.signed:
        v = raw.view(np.int16)
        np.left_shift(v, 16 - bs, out=v)
        np.right_shift(v, 16 - bs, out=v)
        return v
    v = raw.view(np.uint16)
    np.bitwise_and(v, (1 << bs) - 1, out=v)
    return v


def _read_native(frame: _Frame, out: np.ndarray) -> np.ndarray:
    """Read one uncompressed frame's raw bytes into ``out`` (int16 buffer); return a typed view."""
    px = frame.pixels
    with open(px.path, "rb", buffering=0) as fp:
        fp.seek(px.offset + frame.index * px.frame_bytes)
        got = fp.readinto(out.data.cast("B"))
    if got != px.frame_bytes:
        raise DecodeError(
            f"The file {Path(px.path).name} ended before its image data did (truncated). "
            "Export the series again."
        )
    return out if px.signed else out.view(np.uint16)


def _decode(frame: _Frame, cache: dict) -> np.ndarray:
    """Decode one frame through pydicom (compressed or unusual encodings)."""
    px = frame.pixels
    try:
        if px.frames == 1:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(px.path, force=True)
                arr = ds.pixel_array
        else:
            frames = cache.get(px.path)
            if frames is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    frames = pydicom.dcmread(px.path, force=True).pixel_array
                cache.clear()
                cache[px.path] = frames
            arr = frames[frame.index]
    except Exception as exc:  # noqa: BLE001 - any decoder failure becomes a DecodeError
        raise DecodeError(
            f"The image data of {Path(px.path).name} could not be decoded "
            f"({exc.__class__.__name__}: {exc}). The file may be damaged or use a compression "
            "fluoroplan cannot read; export the series uncompressed and try again."
        ) from None
    if arr.shape != (px.rows, px.columns):
        raise DecodeError(
            f"The image in {Path(px.path).name} decoded to {arr.shape} pixels instead of "
            f"{px.rows}x{px.columns}. Export the series again."
        )
    if arr.dtype.kind not in "iu":
        raise DecodeError(f"The image in {Path(px.path).name} does not hold integer CT values.")
    return arr


def _read_frames(frames: Sequence[_Frame], out: np.ndarray, progress: Stage) -> int:
    """Fill ``out[k]`` with the HU of ``frames[k]``; return the number of slices clipped."""
    n = len(frames)
    cache: dict = {}
    clipped = 0
    step = max(1, n // 50)
    for k, frame in enumerate(frames):
        if frame.pixels.native:
            raw = _read_native(frame, out[k])
        else:
            raw = _decode(frame, cache)
            if raw.dtype.itemsize != 2:
                raw = raw.astype(np.int32)
        if raw.dtype.itemsize == 2:
            raw = _mask_bits(raw, frame.pixels)
        bounds = _stored_bounds(frame.pixels) if raw.dtype.itemsize == 2 else None
        clipped += _to_hu(raw, frame.slope, frame.intercept, out[k], bounds)
        if k % step == 0 or k == n - 1:
            progress((k + 1) / n, f"Reading slice {k + 1} of {n}")
    return clipped


def _resample(geo: _Geometry, stack: np.ndarray, progress: Stage) -> np.ndarray:
    """Resample the sorted original slices onto the regular orthogonal output grid.

    Original slice k lies in a plane parallel to the output slices, at ``depth_mm[k]`` along
    the normal and shifted in-plane by ``shift_mm[k]``. Each output slice blends the two
    original slices around its depth (linear), each shifted into place (bilinear).
    """
    from scipy import ndimage

    nk, nj, ni = geo.output_shape()
    out = np.empty((nk, nj, ni), np.int16)
    si0, sj0 = geo.shift_mm.min(axis=0)
    off_i = (geo.shift_mm[:, 0] - si0) / geo.pixel_spacing[0]
    off_j = (geo.shift_mm[:, 1] - sj0) / geo.pixel_spacing[1]
    depth = geo.depth_mm
    placed: dict[int, np.ndarray] = {}

    def place(k: int) -> np.ndarray:
        if k not in placed:
            for old in [key for key in placed if key < k - 1]:
                del placed[old]
            placed[k] = ndimage.affine_transform(
                stack[k].astype(np.float32),
                [1.0, 1.0],
                offset=(-off_j[k], -off_i[k]),
                output_shape=(nj, ni),
                order=1,
                mode="constant",
                cval=float(AIR_HU),
            )
        return placed[k]

    for kk in range(nk):
        d = kk * geo.spacing_mm
        k1 = int(np.clip(np.searchsorted(depth, d, side="right"), 1, len(depth) - 1))
        k0 = k1 - 1
        w = float(np.clip((d - depth[k0]) / (depth[k1] - depth[k0]), 0.0, 1.0))
        if w < 1e-6:
            sl = place(k0)
        elif w > 1 - 1e-6:
            sl = place(k1)
        else:
            sl = (1.0 - w) * place(k0) + w * place(k1)
        out[kk] = np.rint(sl)
        progress((kk + 1) / nk, f"Resampling slice {kk + 1} of {nk}")
    return out


def _compare_duplicates(geo: _Geometry, stack: np.ndarray) -> int:
    """Read every repeated copy of an image and refuse the series if its pixels differ.

    ``stack[k]`` holds the HU of ``geo.frames[k]`` (the copy kept). Returns the number of
    identical copies dropped.
    """
    if not geo.duplicates:
        return 0
    index = {id(f): k for k, f in enumerate(geo.frames)}
    buf = np.empty(stack.shape[1:], np.int16)
    quiet = Stage(None, 0.0, 1.0)
    for kept, other in geo.duplicates:
        _read_frames([other], buf[None], quiet)
        k = index[id(kept)]
        differ = int(np.count_nonzero(buf != stack[k]))
        if differ:
            raise _short(
                "one image UID used twice",
                InconsistentSlices(
                    f"Two files carry the same SOP Instance UID ({kept.sop_uid.split('#')[0]}) "
                    f"at one position but hold different images ({differ} of {buf.size} pixels "
                    f"differ): {Path(kept.pixels.path).name} and {Path(other.pixels.path).name}. "
                    "fluoroplan cannot tell which one is right; remove the wrong copy or export "
                    "the series again."
                ),
            )
    return len(geo.duplicates)


def _slice_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute HU difference of two slices (every 4th pixel: a quick, robust sample)."""
    return float(np.mean(np.abs(a[::4, ::4].astype(np.float32) - b[::4, ::4])))


def _check_odd_rescale(geo: _Geometry, stack: np.ndarray) -> str | None:
    """Refuse images whose own rescale makes them disagree with their neighbouring slices.

    DICOM lets every image carry its own RescaleSlope/Intercept, so a different rescale is
    legal; a wrong one shows as a slice whose CT numbers jump against both neighbours (air and
    soft tissue move by hundreds of HU). Neighbouring slices of one scan differ by a few tens
    of HU on average; a slice that differs from both by more than max(150 HU, 5 x the series'
    typical difference) is refused. Returns a note for an accepted different rescale.
    """
    if not geo.odd_rescale:
        return None
    n = len(geo.frames)
    step = max(1, (n - 1) // 60)
    typical = float(
        np.median([_slice_difference(stack[k], stack[k + 1]) for k in range(0, n - 1, step)])
    )
    limit = max(150.0, 5.0 * typical)
    index = {id(f): k for k, f in enumerate(geo.frames)}
    for f in geo.odd_rescale:
        k = index[id(f)]
        diffs = [_slice_difference(stack[k], stack[m]) for m in (k - 1, k + 1) if 0 <= m < n]
        if diffs and min(diffs) > limit:
            raise _short(
                "an image with a wrong rescale",
                InconsistentSlices(
                    f"The {_label(f)} has its own rescale (slope {f.slope:g}, intercept "
                    f"{f.intercept:g}, unlike the rest of the series) and its CT numbers then "
                    f"differ from the neighbouring slices by {min(diffs):.0f} HU on average "
                    f"(neighbouring slices differ by {typical:.0f} HU): its header is wrong. "
                    "Remove that file or export the series again."
                ),
            )
    return (
        f"{len(geo.odd_rescale)} image(s) carry a rescale different from the rest of the series; "
        "their CT numbers agree with the neighbouring slices, so they were used as recorded."
    )
