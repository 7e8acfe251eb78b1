"""Reading CTs (DICOM, NIfTI) into :class:`CTVolume`, and the project's file formats."""

from fluoroplan.io.errors import FluoroplanError, LoadError
from fluoroplan.io.progress import CancelToken
from fluoroplan.io.volume import CTVolume

__all__ = ["CTVolume", "CancelToken", "FluoroplanError", "LoadError"]
