"""The geometry of a series: sort its frames along the slice normal, validate them and plan
the output grid (:class:`_Geometry`, :func:`_plan_geometry`).

Refuses, with a message naming the file, a series too short, without positions, with
duplicate UIDs at different places, implausible spacings, mixed orientations or sizes,
scattered or displaced slices, missing slices or a grid beyond the size limit; detects gantry
tilt and uneven spacing (the slices are then resampled). Also the naming helpers the messages
share (``_name``, ``_label``, ``_short``) and :func:`orientation_label`. Of the other
submodules, uses :mod:`.headers` only.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fluoroplan.io.dicom.headers import _Frame
from fluoroplan.io.errors import (
    InconsistentGeometry,
    InconsistentSlices,
    LoadError,
    MissingSlices,
    MixedOrientations,
    TooFewSlices,
    TooLarge,
    UnsupportedOrientation,
)
from fluoroplan.io.limits import check_volume_size

MIN_SLICES = 3
# Plausible CT pixel spacing and extent (mm); headers beyond them are refused as wrong.
PIXEL_SPACING_RANGE_MM = (0.05, 10.0)
MAX_EXTENT_MM = 3000.0


@dataclass(frozen=True)
class _Geometry:
    """How the sorted frames map onto the output grid."""

    frames: tuple[_Frame, ...]  # sorted along the slice normal
    row_dir: np.ndarray  # unit LPS direction of increasing column index i
    col_dir: np.ndarray  # unit LPS direction of increasing row index j
    normal: np.ndarray
    pixel_spacing: tuple[float, float]  # (along i, along j) mm
    depth_mm: np.ndarray  # each frame's position along the normal, relative to the first
    shift_mm: np.ndarray  # (n, 2) each frame's in-plane offset (along i, along j)
    spacing_mm: float  # output slice spacing
    tilt_deg: float
    uneven: bool
    resample: bool
    # (kept, other) frames that share one SOP Instance UID and position: their pixels are
    # compared when the series is read, and the series refused if they differ.
    duplicates: tuple[tuple[_Frame, _Frame], ...] = ()
    # frames whose rescale differs from the series' most common one: read, they must agree
    # with their neighbouring slices.
    odd_rescale: tuple[_Frame, ...] = ()

    @property
    def n_out(self) -> int:
        if not self.resample:
            return len(self.frames)
        return int(round(self.depth_mm[-1] / self.spacing_mm)) + 1

    def output_shape(self) -> tuple[int, int, int]:
        rows, cols = self.frames[0].pixels.rows, self.frames[0].pixels.columns
        if not self.resample:
            return (len(self.frames), rows, cols)
        (si0, sj0), (si1, sj1) = self.shift_mm.min(axis=0), self.shift_mm.max(axis=0)
        extra_i = int(math.ceil((si1 - si0) / self.pixel_spacing[0] - 1e-6))
        extra_j = int(math.ceil((sj1 - sj0) / self.pixel_spacing[1] - 1e-6))
        return (self.n_out, rows + extra_j, cols + extra_i)

    def lps_from_ijk(self) -> np.ndarray:
        first = np.asarray(self.frames[0].ipp, float)
        origin = first
        if self.resample:
            si0, sj0 = self.shift_mm.min(axis=0)
            origin = first + si0 * self.row_dir + sj0 * self.col_dir
        a = np.eye(4)
        a[:3, 0] = self.row_dir * self.pixel_spacing[0]
        a[:3, 1] = self.col_dir * self.pixel_spacing[1]
        a[:3, 2] = self.normal * self.spacing_mm
        a[:3, 3] = origin
        return a


def orientation_label(normal: np.ndarray) -> str:
    """'axial', 'coronal', 'sagittal' (slice normal within ~25 deg of an axis) or 'oblique'."""
    n = np.abs(np.asarray(normal, float))
    axis = int(np.argmax(n))
    if n[axis] < 0.9:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def _name(header: dict) -> str:
    desc = header.get("series_description") or "(no description)"
    num = header.get("series_number")
    return f"series {num} '{desc}'" if num else f"series '{desc}'"


def _short(reason: str, exc: LoadError) -> LoadError:
    """Attach the short phrase shown in the series table (``SeriesInfo.reason``)."""
    exc.short_reason = reason  # type: ignore[attr-defined]
    return exc


def _unique(frames: Sequence[_Frame]) -> list[_Frame]:
    """Drop repeated instances (e.g. a compressed and an uncompressed copy of one image)."""
    return _split_duplicates(frames)[0]


def _split_duplicates(frames: Sequence[_Frame]) -> tuple[list[_Frame], list[tuple[_Frame, _Frame]]]:
    """(frames with each SOP Instance UID once, [(kept, repeated copy), ...])."""
    seen: dict[str, _Frame] = {}
    unique, repeats = [], []
    for f in frames:
        if f.sop_uid and f.sop_uid in seen:
            repeats.append((seen[f.sop_uid], f))
            continue
        seen[f.sop_uid] = f
        unique.append(f)
    return unique, repeats


def _label(frame: _Frame) -> str:
    """How a message names one image: its file (and frame), e.g. ``image IM00042.dcm``."""
    name = Path(frame.pixels.path).name
    if frame.pixels.frames > 1:
        return f"frame {frame.index + 1} of {name}"
    return f"image {name}"


def _encoding(frame: _Frame) -> tuple[int, int, bool]:
    px = frame.pixels
    return (px.bits_allocated, px.bits_stored, px.signed)


def _describe_encoding(key: tuple[int, int, bool]) -> str:
    allocated, stored, signed = key
    return f"{'signed' if signed else 'unsigned'} {allocated}-bit values ({stored} bits stored)"


def _others(n: int) -> str:
    return f"the other {n} image{'s' if n != 1 else ''}"


def _check_slices_agree(frames: Sequence[_Frame], name: str) -> tuple[_Frame, ...]:
    """Refuse a series whose images disagree on pixel encoding or carry an unusable rescale.

    Returns the frames whose (valid) rescale differs from the series' most common one.
    """
    for f in frames:
        slope, intercept = f.slope, f.intercept
        if not (math.isfinite(slope) and slope > 0 and slope < 1e4):
            raise _short(
                "invalid rescale slope",
                InconsistentSlices(
                    f"The {_label(f)} of the {name} has RescaleSlope {slope:g}: its pixel values "
                    "cannot be converted to CT numbers (HU = stored value x slope + intercept "
                    "needs a positive slope). The file's header is damaged; export the series "
                    "again from the scanner or PACS."
                ),
            )
        if not (math.isfinite(intercept) and abs(intercept) < 1e5):
            raise _short(
                "invalid rescale intercept",
                InconsistentSlices(
                    f"The {_label(f)} of the {name} has RescaleIntercept {intercept:g}: its pixel "
                    "values cannot be converted to CT numbers (HU). The file's header is "
                    "damaged; export the series again from the scanner or PACS."
                ),
            )
    counts = Counter(_encoding(f) for f in frames)
    if len(counts) > 1:
        common, n_common = counts.most_common(1)[0]
        odd = [f for f in frames if _encoding(f) != common]
        more = f" (and {len(odd) - 1} more)" if len(odd) > 1 else ""
        raise _short(
            "images encoded differently",
            InconsistentSlices(
                f"The {_label(odd[0])}{more} of the {name} stores "
                f"{_describe_encoding(_encoding(odd[0]))} where {_others(n_common)} store "
                f"{_describe_encoding(common)}, so its CT numbers would be read wrongly and "
                "the series is not loaded. Export the series again from the scanner or PACS, "
                "or remove that file."
            ),
        )
    rescales = Counter((f.slope, f.intercept) for f in frames)
    if len(rescales) == 1:
        return ()
    usual = rescales.most_common(1)[0][0]
    if rescales[usual] <= len(frames) // 2:
        return ()  # no majority: a scanner that sets the rescale per image
    return tuple(f for f in frames if (f.slope, f.intercept) != usual)


def _check_positions_on_line(
    frames: Sequence[_Frame], depth: np.ndarray, shift: np.ndarray, spacing_ij, name: str
) -> None:
    """Refuse images lying off the straight line the slice origins of the series follow.

    Gantry tilt moves every slice's origin in-plane steadily with depth (a straight line);
    a single image shifted sideways is a damaged or foreign header, not tilt.
    """
    n = len(frames)
    tol = max(0.3 * min(spacing_ij), 0.1)
    keep = np.ones(n, bool)
    design = np.stack([np.ones(n), depth], axis=1)
    for _ in range(min(n - 2, 5)):
        coef, *_ = np.linalg.lstsq(design[keep], shift[keep], rcond=None)
        resid = np.linalg.norm(shift - design @ coef, axis=1)
        if resid[keep].max() <= tol:
            break
        keep[np.flatnonzero(keep)[int(np.argmax(resid[keep]))]] = False
    else:
        coef, *_ = np.linalg.lstsq(design[keep], shift[keep], rcond=None)
        resid = np.linalg.norm(shift - design @ coef, axis=1)
    off = np.flatnonzero(resid > tol)
    if len(off) == 0:
        return
    if len(off) > max(2, n // 10) or resid[keep].max() > tol:
        k = int(np.argmax(resid))
        raise _short(
            "slice positions scattered",
            InconsistentSlices(
                f"The slice positions of the {name} do not lie on a straight line (the "
                f"{_label(frames[k])} is {resid[k]:.1f} mm off it, {len(off)} images in all): "
                "neither a straight nor a gantry-tilted acquisition places slices so. The "
                "positions in the headers are damaged or the folder mixes series; export the "
                "series again."
            ),
        )
    k = int(off[np.argmax(resid[off])])
    more = f" ({len(off)} images in all)" if len(off) > 1 else ""
    raise _short(
        "an image out of line",
        InconsistentSlices(
            f"The {_label(frames[k])} of the {name} lies {resid[k]:.1f} mm sideways from the "
            f"line the other slices follow{more}. A gantry tilt shifts every slice steadily, "
            "not one: its position in the header is wrong or it belongs to another series. "
            "Remove that file or export the series again."
        ),
    )


def _check_size(geo: _Geometry, name: str, memory: bool) -> None:
    """Refuse a volume beyond ``MAX_GRID`` (and, with ``memory``, beyond the free memory)
    before anything is allocated; the resampled case also holds the original slices."""
    nk, nj, ni = geo.output_shape()
    need = nk * nj * ni * 2
    if geo.resample:
        px = geo.frames[0].pixels
        need += len(geo.frames) * px.rows * px.columns * 2
    try:
        check_volume_size((ni, nj, nk), need if memory else 0, f"the {name}")
    except TooLarge as exc:
        raise _short("too large", exc) from None


def _displaced_slice(depth: np.ndarray, irregular: np.ndarray, median: float,
                     tol: float) -> tuple[int, float] | None:
    """(index, mm off the grid) of the one slice whose removal leaves a regular series (with at
    most one empty slot, where it belongs) and which lies off that series' grid; else None.
    Only the slices beside an irregular gap can be it; an end slice may end a scan at its own
    gap."""
    if len(depth) < 6:
        return None
    odd = np.flatnonzero(irregular)
    for k in sorted({int(i) for i in odd} | {int(i) + 1 for i in odd}):
        if not 0 < k < len(depth) - 1:
            continue
        rest = np.delete(depth, k)
        gaps = np.diff(rest)
        steps = np.round(gaps / median)
        if np.any(np.abs(gaps - steps * median) > tol) or np.any(steps < 1):
            continue
        if np.sum(steps > 1) > 1 or np.any(steps > 2):
            continue
        grid = rest[0] + median * np.round((depth[k] - rest[0]) / median)
        off = float(abs(depth[k] - grid))
        if off > tol:
            return k, off
    return None


def _finest_common_gap(gaps: np.ndarray, fallback: float) -> float:
    """The smallest slice gap that recurs (so a single overlap slice does not set the grid)."""
    tol = max(0.02, 0.02 * fallback)
    common = [g for g in np.sort(gaps) if np.count_nonzero(np.abs(gaps - g) <= tol) >= 2]
    return float(common[0]) if common else fallback


def _plan_geometry(frames: Sequence[_Frame], header: dict) -> _Geometry:
    """Sort, validate and describe the frames of one series; raise a LoadError if unusable."""
    name = _name(header)
    # Same instance twice (e.g. a compressed and an uncompressed copy): keep one, and compare
    # the copies' pixels when the series is read.
    frames, repeats = _split_duplicates(frames)
    if len(frames) < MIN_SLICES:
        raise _short(
            f"only {len(frames)} image{'s' if len(frames) != 1 else ''}",
            TooFewSlices(
                f"The {name} has only {len(frames)} image{'s' if len(frames) != 1 else ''}; a CT "
                f"volume needs at least {MIN_SLICES} slices. Choose a series with more images "
                "(a thin-slice axial series), or export the complete series again."
            ),
        )
    missing = [f for f in frames if f.ipp is None or f.iop is None or f.pixel_spacing is None]
    if missing:
        raise _short(
            "no position information",
            UnsupportedOrientation(
                f"{len(missing)} image(s) of the {name} carry no position, orientation or pixel "
                "spacing (e.g. " + Path(missing[0].pixels.path).name + "), so the volume cannot be "
                "placed in the patient. Choose another series or export the original images."
            ),
        )
    for kept, other in repeats:
        if other.ipp is None or kept.ipp is None or (
            np.abs(np.subtract(other.ipp, kept.ipp)).max() > 0.01
            or (other.pixels.rows, other.pixels.columns) != (kept.pixels.rows, kept.pixels.columns)
        ):
            raise _short(
                "one image UID used twice",
                InconsistentSlices(
                    f"Two files of the {name} carry the same SOP Instance UID "
                    f"({kept.sop_uid.split('#')[0]}) but differ in position or size: "
                    f"{Path(kept.pixels.path).name} and {Path(other.pixels.path).name}. One of "
                    "them is a damaged or foreign copy; remove it or export the series again."
                ),
            )
    for f in frames:
        lo, hi = PIXEL_SPACING_RANGE_MM
        f_ps = f.pixel_spacing
        assert f_ps is not None  # frames without one were refused above
        if not all(lo <= v <= hi for v in f_ps):
            raise _short(
                "implausible pixel spacing",
                InconsistentSlices(
                    f"The {_label(f)} of the {name} gives a pixel spacing of "
                    f"{f_ps[0]:g} x {f_ps[1]:g} mm; a CT's pixels are "
                    f"{lo:g}-{hi:g} mm. The header is damaged; export the series again."
                ),
            )
    odd_rescale = _check_slices_agree(frames, name)
    iops = np.array([f.iop for f in frames], float)
    if np.abs(iops - iops[0]).max() > 1e-3:
        labels = sorted({orientation_label(np.cross(v[:3], v[3:])) for v in iops})
        raise _short(
            "mixed orientations",
            MixedOrientations(
                f"The {name} mixes images of different orientations ({', '.join(labels)}); a "
                "volume needs parallel slices. It probably contains localizer images: choose "
                "another series, or export only the axial images."
            ),
        )
    sizes = {(f.pixels.rows, f.pixels.columns) for f in frames}
    if len(sizes) > 1:
        listed = ", ".join(f"{r}x{c}" for r, c in sorted(sizes))
        raise _short(
            "images of different sizes",
            InconsistentGeometry(
                f"The images of the {name} do not all have the same size ({listed} pixels), so "
                "they cannot be stacked into one volume. Choose another series, or export only "
                "the axial images of this one."
            ),
        )
    ps = np.array([f.pixel_spacing for f in frames], float)
    if np.abs(ps - ps[0]).max() > 1e-3 * ps[0].max():
        raise _short(
            "different pixel spacings",
            InconsistentGeometry(
                f"The images of the {name} have different pixel spacings, so they cannot be "
                "stacked into one volume. Choose another series."
            ),
        )
    row = iops[0, :3] / np.linalg.norm(iops[0, :3])
    col = iops[0, 3:] / np.linalg.norm(iops[0, 3:])
    if (
        abs(float(row @ col)) > 1e-3
        or min(np.linalg.norm(iops[0, :3]), np.linalg.norm(iops[0, 3:])) < 0.5
    ):
        raise _short(
            "invalid orientation",
            UnsupportedOrientation(
                f"The image orientation of the {name} is not a valid pair of perpendicular "
                "directions, so the volume cannot be placed in the patient. Choose another series."
            ),
        )
    col = col - (col @ row) * row
    col /= np.linalg.norm(col)
    normal = np.cross(row, col)
    ipps = np.array([f.ipp for f in frames], float)
    depth = ipps @ normal
    order = np.lexsort((np.array([f.instance for f in frames]), depth))
    frames = [frames[i] for i in order]
    ipps, depth = ipps[order], depth[order]
    gaps = np.diff(depth)
    spacing_ij = (float(ps[0, 1]), float(ps[0, 0]))  # along i (columns), along j (rows)
    if gaps.min() < 0.01:
        k = int(np.argmin(gaps))
        raise _short(
            "several images at one position",
            InconsistentGeometry(
                f"The {name} holds more than one image at the same slice position "
                f"({depth[k]:.2f} mm along the slice normal): it mixes several acquisitions or "
                "phases. Choose another series, or export a single phase."
            ),
        )
    rel = ipps - ipps[0]
    shift = np.stack([rel @ row, rel @ col], axis=1)
    depth_rel = depth - depth[0]
    median = float(np.median(gaps))
    for k, lone in ((0, frames[0]), (len(gaps) - 1, frames[-1])):  # an end image far away
        if gaps[k] > max(50.0, 20.0 * median):
            raise _short(
                "an image far from the others",
                InconsistentSlices(
                    f"In the {name} the {_label(lone)} lies {gaps[k]:.0f} mm beyond the other "
                    f"slices, which are {median:.2f} mm apart: the position in its header is "
                    "wrong, or it belongs to another scan. Remove that file or export the "
                    "series again."
                ),
            )
    if depth_rel[-1] > MAX_EXTENT_MM:
        raise _short(
            "implausible extent",
            InconsistentSlices(
                f"The slices of the {name} span {depth_rel[-1]:.0f} mm, longer than any body "
                "scan: the positions in the headers are damaged. Export the series again."
            ),
        )
    _check_positions_on_line(frames, depth_rel, shift, spacing_ij, name)
    drift = np.abs(shift - shift[0]).max(axis=0)
    tilted = bool(drift[0] > 0.1 * spacing_ij[0] or drift[1] > 0.1 * spacing_ij[1])
    tilt_deg = 0.0
    if tilted:
        lateral = float(np.hypot(*(shift[-1] - shift[0])))
        tilt_deg = math.degrees(math.atan2(lateral, depth_rel[-1]))
    tol = max(0.02, 0.02 * median)
    irregular = np.abs(gaps - median) > tol
    displaced = (_displaced_slice(depth, irregular, median, tol)
                 if 0 < irregular.sum() <= 3 else None)
    if displaced is not None:
        # One slice off the regular spacing all the others keep (with a gap where it belongs):
        # its recorded position is wrong, or it is of another acquisition. Resampling would put
        # its pixels at the wrong depth; say which file it is instead.
        k, off = displaced
        raise _short(
            "one slice off the spacing",
            InconsistentSlices(
                f"In the {name} the {_label(frames[k])} lies {off:.2f} mm off the regular "
                f"{median:.2f} mm spacing of all the other slices: the position in its header "
                "is wrong, or it belongs to another acquisition. Remove that file or export "
                "the series again."
            ),
        )
    uneven = False
    if irregular.any():
        ratio = gaps[irregular] / median
        whole = np.abs(ratio - np.round(ratio)) < 0.15
        idx = np.flatnonzero(irregular)
        isolated = len(idx) < 2 or np.diff(idx).min() > 1
        if np.all(whole & (np.round(ratio) >= 2)) and isolated:
            k = int(idx[0])
            n_missing = int(round(gaps[k] / median)) - 1
            lo, hi = float(depth[k]), float(depth[k + 1])
            more = f" ({len(idx)} gaps in all)" if len(idx) > 1 else ""
            raise _short(
                "slices missing",
                MissingSlices(
                    f"The {name} is missing {n_missing} slice{'s' if n_missing > 1 else ''} "
                    f"between the positions {lo:.2f} mm and {hi:.2f} mm (a {gaps[k]:.2f} mm gap "
                    f"where the slices are {median:.2f} mm apart){more}. Export the complete "
                    "series again from the scanner or PACS, or choose another series.",
                    gap_mm=float(gaps[k]),
                    between_mm=(lo, hi),
                ),
            )
        uneven = True
    resample = tilted or uneven
    if resample:
        spacing = _finest_common_gap(gaps, median)
        n_out = int(round(depth_rel[-1] / spacing)) + 1
        spacing = float(depth_rel[-1] / (n_out - 1))
    else:
        spacing = float(depth_rel[-1] / (len(frames) - 1))
    geo = _Geometry(
        frames=tuple(frames),
        row_dir=row,
        col_dir=col,
        normal=normal,
        pixel_spacing=spacing_ij,
        depth_mm=depth_rel,
        shift_mm=shift,
        spacing_mm=spacing,
        tilt_deg=tilt_deg,
        uneven=uneven,
        resample=resample,
        duplicates=tuple(repeats),
        odd_rescale=odd_rescale,
    )
    _check_size(geo, name, memory=False)  # the series table: the grid limit only
    return geo
