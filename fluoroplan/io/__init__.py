"""Reading CTs (DICOM, NIfTI) into :class:`CTVolume`, and the project's file formats."""

from fluoroplan.io.dicom import SeriesInfo, default_series, load_ct, load_series, scan
from fluoroplan.io.errors import FluoroplanError, LoadError
from fluoroplan.io.nifti import load_nifti
from fluoroplan.io.progress import CancelToken
from fluoroplan.io.volume import CTVolume

__all__ = [
    "CTVolume",
    "CancelToken",
    "FluoroplanError",
    "LoadError",
    "SeriesInfo",
    "default_series",
    "load_ct",
    "load_nifti",
    "load_series",
    "scan",
]
