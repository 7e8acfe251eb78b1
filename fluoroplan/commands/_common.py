"""Helpers shared by the CLI sub-commands (progress on the terminal, loading a CT)."""

from __future__ import annotations

import sys
import time

from fluoroplan.io.progress import ProgressCallback


def terminal_progress(label: str = "") -> ProgressCallback:
    """A progress callback that draws one updating line on a terminal, sparse lines otherwise."""
    tty = sys.stderr.isatty()
    state = {"last": -1.0, "t": 0.0}

    def progress(fraction: float, message: str) -> None:
        now = time.monotonic()
        if tty:
            if now - state["t"] < 0.1 and fraction < 1.0:
                return
            state["t"] = now
            bar = "#" * int(30 * fraction)
            sys.stderr.write(f"\r{label}[{bar:<30}] {100 * fraction:5.1f}% {message[:60]:<60}")
            if fraction >= 1.0:
                sys.stderr.write("\n")
            sys.stderr.flush()
        elif fraction - state["last"] >= 0.25 or fraction >= 1.0 > state["last"]:
            state["last"] = fraction
            sys.stderr.write(f"{label}{100 * fraction:3.0f}% {message}\n")

    return progress


def add_series_argument(parser) -> None:
    parser.add_argument(
        "--series",
        metavar="UID",
        help="SeriesInstanceUID (or its row number in `fluoroplan series`) when the folder "
        "holds several series; default: the axial CT with most slices and thinnest spacing",
    )


def load_volume(path: str, series: str | None = None, quiet: bool = False):
    """Load the CT at ``path`` (DICOM folder/file or NIfTI) with terminal progress."""
    from fluoroplan.io import load_ct

    progress = None if quiet else terminal_progress("load ")
    return load_ct(path, series_uid=series, progress=progress)


def _metal_hu(text: str) -> float:
    """``--metal-hu``: a finite threshold between dense bone and the largest CT number."""
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of HU (e.g. 2200)") from None
    if not math.isfinite(value) or not 1000.0 <= value <= 30000.0:
        raise argparse.ArgumentTypeError(
            f"{text} HU cannot separate metal from bone: give a threshold between 1000 and "
            "30000 HU (default 2200; titanium is often clipped at 3071)")
    return value


def add_analysis_arguments(parser) -> None:
    """The input and analysis options shared by ``analyze`` and ``plan``."""
    parser.add_argument("path", help="DICOM folder or file, or a NIfTI volume")
    parser.add_argument("--levels", metavar="LEVEL",
                        help="label of the most cranial vertebra fully in view (e.g. L1); "
                        "overrides the automatic level labels")
    parser.add_argument("--metal-hu", type=_metal_hu, metavar="HU",
                        help="metal threshold in HU (default 2200; titanium is often clipped at "
                        "3071)")
    parser.add_argument("--labels", metavar="LABELMAP",
                        help="use a vertebra label map made elsewhere (TotalSegmentator NIfTI "
                        "file or folder, 3D Slicer .seg.nrrd) instead of fluoroplan's own")
    add_series_argument(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
