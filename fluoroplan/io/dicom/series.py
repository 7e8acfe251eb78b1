"""Series listing: :func:`scan` gathers the files under the given paths, reads their headers
(:mod:`.headers`), groups them into series and describes each one as a :class:`SeriesInfo`
(usable as a CT volume, or why not); :func:`default_series` picks the one to load.
Uses :mod:`.headers` and :mod:`.geometry`.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fluoroplan.io.dicom.geometry import _name, _plan_geometry, _unique, orientation_label
from fluoroplan.io.dicom.headers import (
    CT_CLASSES,
    DOSE_SR,
    MEDIA_DIRECTORY,
    SECONDARY_CAPTURE_PREFIX,
    STRUCTURED_REPORT_PREFIX,
    _Frame,
    _Instance,
    _read_instance,
    _Skip,
)
from fluoroplan.io.errors import EmptyFolder, LoadError, NoSeriesFound, NotCT
from fluoroplan.io.progress import CancelToken, ProgressCallback, no_progress


@dataclass(frozen=True)
class SeriesInfo:
    """One series found by :func:`scan`, for a user to choose from.

    ``usable`` tells whether it can be loaded as a CT volume; ``reason`` says why not.
    ``spacing_mm`` is the median slice spacing along the slice normal (None if unknown).
    """

    series_instance_uid: str
    study_instance_uid: str
    series_number: str
    description: str
    modality: str
    kind: str  # "CT volume", "localizer", "dose report", "secondary capture", ...
    image_count: int
    orientation: str  # "axial", "sagittal", "coronal", "oblique", "mixed" or ""
    spacing_mm: float | None
    tilt_deg: float
    kernel: str
    rows: int
    columns: int
    study_date: str
    usable: bool
    reason: str
    files: tuple[str, ...] = field(repr=False)
    skipped: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    _frames: tuple[_Frame, ...] = field(default=(), repr=False, compare=False)
    _header: dict = field(default_factory=dict, repr=False, compare=False)
    _problem: LoadError | None = field(default=None, repr=False, compare=False)

    def row(self) -> dict[str, str]:
        """Column name -> text, for a table in the series chooser."""
        return {
            "Series": self.series_number,
            "Description": self.description or "(no description)",
            "Modality": self.modality or "?",
            "Images": str(self.image_count),
            "Orientation": self.orientation or "-",
            "Spacing": f"{self.spacing_mm:.2f} mm" if self.spacing_mm else "-",
            "Kernel": self.kernel or "-",
            "Size": f"{self.columns}x{self.rows}" if self.rows else "-",
            "Usable": "yes" if self.usable else f"no: {self.reason}",
        }

    def describe(self) -> str:
        """One line, e.g. ``Series 2 'Spine 1mm': CT, 400 images, axial, 1.00 mm, kernel BONE``."""
        parts = [self.modality or "?", f"{self.image_count} image{'s' * (self.image_count != 1)}"]
        if self.orientation:
            parts.append(self.orientation)
        if self.spacing_mm:
            parts.append(f"{self.spacing_mm:.2f} mm")
        if self.tilt_deg:
            parts.append(f"gantry tilt {self.tilt_deg:.1f} deg")
        if self.kernel:
            parts.append(f"kernel {self.kernel}")
        head = f"Series {self.series_number} " if self.series_number else "Series "
        text = f"{head}'{self.description or '(no description)'}': " + ", ".join(parts)
        if not self.usable:
            text += f" - not usable: {self.reason}"
        return text


def _kind(instances: Sequence[_Instance], header: dict) -> tuple[str, str]:
    """(kind, reason-not-usable or '') of a series from its SOP class, modality and type."""
    sop = instances[0].sop_class
    image_type = set(instances[0].image_type)
    desc = header.get("series_description", "").lower()
    if sop == DOSE_SR or (sop.startswith(STRUCTURED_REPORT_PREFIX) and "dose" in desc):
        return "dose report", "a radiation dose report, not images"
    if sop.startswith(STRUCTURED_REPORT_PREFIX):
        return "report", "a structured report, not images"
    if not any(i.has_pixels for i in instances):
        return "non-image object", "holds no images"
    if sop.startswith(SECONDARY_CAPTURE_PREFIX):
        if "dose" in desc:
            return "dose report", "a screenshot of the dose report, not a CT volume"
        return "secondary capture", "a secondary capture (screenshot), not a CT volume"
    if "LOCALIZER" in image_type or "SCOUT" in image_type or "TOPOGRAM" in desc:
        return "localizer", "a localizer (scout) image, not a volume"
    if "dose" in desc and ("SECONDARY" in image_type or "SCREEN SAVE" in image_type):
        return "dose report", "a screenshot of the dose report, not a CT volume"
    modality = header.get("modality", "")
    if modality != "CT":
        return (modality or "unknown") + " images", (f"modality {modality or 'unknown'}, not CT")
    if header.get("colour"):
        return "colour images", "colour images, not a CT volume"
    if sop and sop not in CT_CLASSES:
        return "other images", "not a CT image storage object"
    return "CT volume", ""


def _problem_for(kind: str, reason: str, header: dict) -> LoadError:
    name = _name(header)
    if kind.endswith(" images") and "modality" in reason:
        return NotCT(
            f"The {name} is {reason.replace('modality ', '')}: its modality is "
            f"{header.get('modality') or 'not given'}. fluoroplan plans on CT only; choose a "
            "CT series."
        )
    if kind == "damaged images":
        return NoSeriesFound(
            f"The {name} has no readable image: {reason}. Export the series again from the "
            "scanner or PACS."
        )
    verb = "" if reason.startswith("holds") else "is "
    return NoSeriesFound(
        f"The {name} {verb}{reason}, so it cannot be used to plan. Choose the axial CT series."
    )


def _build_series(instances: Sequence[_Instance], skipped: Sequence[tuple[str, str]]) -> SeriesInfo:
    header = dict(instances[0].header)
    if any(i.header.get("colour") for i in instances):
        header["colour"] = True
    frames = tuple(f for i in instances for f in i.frames)
    kind, reason = _kind(instances, header)
    if kind == "non-image object" and not skipped and all(
        i.sop_class in CT_CLASSES for i in instances
    ):  # a CT image object always holds pixel data: these files were cut before it
        skipped = [(i.path, "truncated: the file ends before its pixel data") for i in instances]
    if kind == "non-image object" and skipped:
        names = ", ".join(Path(p).name for p, _ in skipped[:3]) + (
            "..." if len(skipped) > 3 else ""
        )
        kind = "damaged images"
        reason = (
            f"{len(skipped)} of its file(s) are damaged or truncated ({names}; "
            f"{skipped[0][1]})"
        )
    problem: LoadError | None = None
    orientation, spacing, tilt = "", None, 0.0
    if frames:
        iops = [f.iop for f in frames if f.iop is not None]
        if iops:
            labels = {orientation_label(np.cross(np.array(v[:3]), np.array(v[3:]))) for v in iops}
            orientation = labels.pop() if len(labels) == 1 else "mixed"
    if kind == "CT volume":
        try:
            geo = _plan_geometry(frames, header)
        except LoadError as exc:
            problem, reason = exc, getattr(exc, "short_reason", str(exc))
        else:
            spacing = float(np.median(np.diff(geo.depth_mm)))
            tilt = round(geo.tilt_deg, 2)
    else:
        problem = _problem_for(kind, reason, header)
    if problem is not None and skipped and kind != "damaged images":
        # The refusal may follow from the files left out (a gap, too few slices): name them.
        names = ", ".join(Path(p).name for p, _ in skipped[:3]) + (
            "..." if len(skipped) > 3 else ""
        )
        problem.args = (
            f"{problem} ({len(skipped)} file(s) of this folder could not be read and were left "
            f"out: {names}: {skipped[0][1]}.)",
        )
    rows = frames[0].pixels.rows if frames else 0
    cols = frames[0].pixels.columns if frames else 0
    return SeriesInfo(
        series_instance_uid=header["series_instance_uid"],
        study_instance_uid=header["study_instance_uid"],
        series_number=header.get("series_number", ""),
        description=header.get("series_description", ""),
        modality=header.get("modality", ""),
        kind=kind,
        image_count=len(_unique(frames)) if frames else len(instances),
        orientation=orientation,
        spacing_mm=spacing,
        tilt_deg=tilt,
        kernel=header.get("kernel", ""),
        rows=rows,
        columns=cols,
        study_date=header.get("study_date", ""),
        usable=problem is None,
        reason=reason if problem is not None else "",
        files=tuple(sorted({i.path for i in instances})),
        skipped=tuple(skipped),
        _frames=frames,
        _header=header,
        _problem=problem,
    )


def _regular(path: str) -> bool:
    """True for a regular file (after symbolic links); pipes, devices, sockets and broken or
    looping links are not read: a named pipe would block the scan forever."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def _gather_files(paths) -> tuple[list[str], str]:
    """All regular files under ``paths`` (a folder, a file, or several), and a label for them."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise NoSeriesFound("No files were given. Choose the folder that holds the CT images.")
    files: list[str] = []
    unreadable: list[OSError] = []
    others = 0
    for p in paths:
        if p.is_dir():
            if not os.access(p, os.R_OK | os.X_OK):
                raise EmptyFolder(
                    f"The folder {p} cannot be read (no permission to list it). Ask for read "
                    "access to it, or copy the CT images to a folder you can read."
                )
            for root, dirs, names in os.walk(p, onerror=unreadable.append):
                dirs.sort()
                for n in sorted(names):
                    if n.startswith("."):
                        continue
                    full = os.path.join(root, n)
                    if _regular(full):
                        files.append(full)
                    else:
                        others += 1
        elif p.exists() and not p.is_file():
            raise NoSeriesFound(
                f"{p} is not a regular file (a pipe, device or socket) and cannot hold CT "
                "images. Choose the folder that holds the CT images."
            )
        elif p.is_file():
            files.append(str(p))
        else:
            raise NoSeriesFound(
                f"{p} does not exist. Check the path, or choose the folder that holds the CT "
                "images."
            )
    label = str(paths[0]) if len(paths) == 1 else f"the {len(paths)} selected paths"
    if not files:
        if unreadable:
            where = unreadable[0].filename or label
            raise EmptyFolder(
                f"The folder {where} cannot be read ({unreadable[0].strerror or unreadable[0]}), "
                f"and no readable files were found in {label}. Ask for read access, or copy the "
                "CT images to a folder you can read."
            )
        extra = f" (only {others} pipe(s), device(s) or broken link(s))" if others else ""
        raise EmptyFolder(
            f"The folder {label} contains no files{extra}. Choose the folder that holds the CT "
            "images (the .dcm files or the DICOM export of the study)."
        )
    return files, label


def scan(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> list[SeriesInfo]:
    """Read the headers of every file under ``paths`` and list the series found.

    Parameters
    ----------
    paths : a folder (searched recursively), a file, or an iterable of them.
    progress : ``progress(fraction, message)``.
    cancel : polled between files; raises :class:`~fluoroplan.io.errors.Cancelled`.

    Returns
    -------
    list of SeriesInfo, ordered by series number then description. Unreadable and truncated
    files are skipped and listed in each series' ``skipped``; non-DICOM files are ignored.

    Raises
    ------
    EmptyFolder, NoSeriesFound
    """
    progress = progress or no_progress
    files, label = _gather_files(paths)
    instances: dict[str, list[_Instance]] = {}
    headers: dict[str, dict] = {}
    damaged: list[tuple[str, str, str]] = []  # (path, reason, series uid or "")
    not_dicom = 0
    n = len(files)
    step = max(1, n // 100)
    for k, path in enumerate(files):
        if cancel is not None:
            cancel.check()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pydicom's complaints about odd values
                inst = _read_instance(path, headers)
        except _Skip as skip:
            if skip.damaged:
                damaged.append((path, skip.reason, skip.series_uid))
            else:
                not_dicom += 1
        else:
            if inst.sop_class != MEDIA_DIRECTORY:
                key = inst.series_uid or f"no-uid:{Path(path).parent}"
                instances.setdefault(key, []).append(inst)
        if k % step == 0 or k == n - 1:
            msg = f"Reading headers: {k + 1} of {n} files"
            if damaged:
                msg += f" ({len(damaged)} damaged or truncated file(s) skipped)"
            progress((k + 1) / n, msg)
    if damaged:
        progress(1.0, f"Skipped {len(damaged)} unreadable or truncated file(s)")
    if not instances:
        what = []
        if damaged:
            what.append(f"{len(damaged)} damaged or truncated DICOM file(s)")
        if not_dicom:
            what.append(f"{not_dicom} file(s) that are not DICOM")
        raise NoSeriesFound(
            f"No readable DICOM images were found in {label} ({' and '.join(what)}). Choose "
            "the folder that holds the CT images, or export the study again."
        )
    out = []
    for uid, insts in instances.items():
        mine = [(p, r) for p, r, s in damaged if s == uid or not s]
        out.append(_build_series(insts, mine))

    def order(s: SeriesInfo):
        try:
            num = int(s.series_number)
        except ValueError:
            num = 1 << 30
        return (num, s.description, s.series_instance_uid)

    return sorted(out, key=order)


def default_series(series_list: Sequence[SeriesInfo]) -> SeriesInfo:
    """The series to load unless the user chooses: the axial CT volume with the most slices
    (then the thinnest spacing). Localizers, dose reports, secondary captures and non-image
    objects are never chosen.

    Raises
    ------
    NoSeriesFound, or the specific error of the only series when there is just one.
    """
    series_list = list(series_list)
    usable = [s for s in series_list if s.usable]
    if not usable:
        if len(series_list) == 1 and series_list[0]._problem is not None:
            raise series_list[0]._problem
        if not series_list:
            raise NoSeriesFound("No series was found. Choose the folder that holds the CT images.")
        listed = "; ".join(
            f"'{s.description or s.series_number or '?'}' ({s.reason})" for s in series_list[:6]
        )
        raise NoSeriesFound(
            f"None of the {len(series_list)} series found is a CT volume that can be loaded: "
            f"{listed}. Choose the folder of the thin-slice axial CT series."
        )

    def rank(s: SeriesInfo):
        return (s.orientation == "axial", s.image_count, -(s.spacing_mm or 1e9))

    return max(usable, key=rank)
