"""Errors raised at the file boundary.

Every message is a sentence a radiologist can act on: what is wrong, and what to do. The GUI
shows ``str(error)`` in a dialog; the CLI prints it to stderr and exits with code 2.
"""

from __future__ import annotations

from fluoroplan.errors import FluoroplanError


class LoadError(FluoroplanError):
    """A CT could not be loaded."""


class NoSeriesFound(LoadError):
    """The path holds no readable image series."""


class EmptyFolder(NoSeriesFound):
    """The folder holds no files at all."""


class NotCT(LoadError):
    """The chosen series is not a CT (e.g. MR, PET, a dose report)."""


class TooFewSlices(LoadError):
    """The series has fewer slices than a volume needs."""


class MissingSlices(LoadError):
    """Slice positions jump: at least one slice is absent."""

    def __init__(self, message: str, gap_mm: float, between_mm: tuple[float, float]):
        super().__init__(message)
        self.gap_mm = gap_mm
        self.between_mm = between_mm


class MixedOrientations(LoadError):
    """Slices of one series do not share an orientation."""


class InconsistentGeometry(LoadError):
    """Slices of one series differ in rows/columns or pixel spacing."""


class InconsistentSlices(InconsistentGeometry):
    """One image disagrees with the rest of its series (pixel encoding, rescale, position, or
    two different images under one SOP Instance UID)."""


class TooLarge(LoadError):
    """The volume a series describes is beyond what fluoroplan (or this machine) can hold."""


class UnsupportedOrientation(LoadError):
    """The orientation cannot be turned into a volume (e.g. degenerate direction cosines)."""


class DecodeError(LoadError):
    """Pixel data could not be decoded (missing decoder, corrupt data)."""


class SeriesNotFound(LoadError):
    """A series UID or index the user asked for is not in the folder."""


class Cancelled(FluoroplanError):
    """The user cancelled a long operation."""

    def __init__(self, message: str = "Cancelled by the user; nothing was changed."):
        super().__init__(message)
