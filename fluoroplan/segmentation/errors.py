"""Errors the anatomy analysis reports to a user (``str(error)`` is shown as is)."""

from __future__ import annotations

from fluoroplan.io.errors import FluoroplanError


class AnatomyError(FluoroplanError):
    """The spine anatomy could not be analysed."""


class NoSpineFound(AnatomyError):
    """The CT holds no recognisable spinal column (e.g. a head CT, a limb)."""

    def __init__(self, detail: str = ""):
        message = (
            "No spinal column found in this CT: no vertebral bodies with a spinal canal behind "
            "them could be traced over more than two levels. Load a CT that covers the "
            "instrumented spine (thoracic, lumbar or sacral region)."
        )
        if detail:
            message = f"{message} ({detail})"
        super().__init__(message)


class UnknownLevel(AnatomyError):
    """A level name such as ``"L3"`` could not be understood or does not fit the spine."""


class LabelMapError(AnatomyError):
    """A label map made elsewhere (TotalSegmentator, 3D Slicer) cannot be used."""
