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


class OutputProblems:
    """The outputs of one command: checked before the work, rescued if writing fails after.

    ``check(path, what)`` refuses, before any long computation, an output whose folder does not
    exist or cannot be written. ``write(path, what, writer)`` calls ``writer(path)``; if that
    fails (disk full, permission, a folder appearing in the way), the result is written beside
    it - in the working folder, the home folder or the temporary folder, the first that works -
    and the problem is remembered, so the computed plan is never lost. ``report()`` prints the
    problems to stderr and returns the exit code (2 if anything had to be rescued).
    """

    def __init__(self, command: str):
        self.command = command
        self.problems: list[str] = []

    @staticmethod
    def check(path: str | None, what: str) -> None:
        import os
        from pathlib import Path

        from fluoroplan.io.errors import FluoroplanError

        if not path:
            return
        p = Path(path)
        if p.is_dir():
            raise FluoroplanError(
                f"{path} is a folder: give the {what} a file name (in that folder or another), "
                "not a folder.")
        parent = p.parent
        if not parent.exists():
            raise FluoroplanError(
                f"The folder {parent} for the {what} does not exist: create it first, or choose "
                "another path.")
        if not parent.is_dir():
            raise FluoroplanError(
                f"{parent} is a file, not a folder, so the {what} cannot be written to {path}: "
                "choose another path.")
        if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
            raise FluoroplanError(
                f"fluoroplan may not write the {what} to {path} (no write permission): choose a "
                "folder you can write to, or ask for the permission.")

    def write(self, path: str, what: str, writer):
        """``writer(path)``; on failure the result goes to a rescue file (returned)."""
        import os
        import tempfile
        import time
        from pathlib import Path

        try:
            return writer(path), path
        except OSError as exc:
            first = exc
        p = Path(path)
        suffix = "".join(p.suffixes[-2:]) if p.name.endswith(".mrk.json") else p.suffix
        stem = p.name[: len(p.name) - len(suffix)] if suffix else p.name
        name = f"{stem}.rescued-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}{suffix}"
        reason = first.strerror or str(first)
        for folder in (Path.cwd(), Path.home(), Path(tempfile.gettempdir())):
            alt = folder / name
            if alt.resolve() == p.resolve():
                continue
            try:
                result = writer(str(alt))
            except OSError:
                continue
            self.problems.append(
                f"could not write the {what} to {path} ({reason}); it was written to {alt} "
                "instead: move it where it belongs, or free the space / fix the permission and "
                "run again.")
            return result, str(alt)
        self.problems.append(
            f"could not write the {what} to {path} ({reason}), nor to the working, home or "
            "temporary folder: free some disk space or choose a folder you can write to, and "
            "run again.")
        return None, None

    def report(self) -> int:
        import sys

        for problem in self.problems:
            print(f"fluoroplan {self.command}: {problem}", file=sys.stderr)
        return 2 if self.problems else 0
