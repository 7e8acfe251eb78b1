"""Read CT series from DICOM (and NIfTI) into :class:`CTVolume`.

Two passes, as pydicom teaches: :func:`scan` reads only the headers (``stop_before_pixels``,
``specific_tags``) of every file, groups the instances into series and records where each
file's pixel data starts; :func:`load_series` then sorts the slices along the slice normal,
builds the voxel-to-LPS affine from ImagePositionPatient, ImageOrientationPatient and
PixelSpacing (never SliceThickness) and reads the pixels straight into one preallocated int16
array (uncompressed data with ``readinto`` on the raw bytes, compressed data through pydicom's
decoders). Gantry tilt and uneven slice spacing are resampled onto a regular orthogonal grid and
said so in ``CTVolume.notes``. No thread pool: the header pass is Python (GIL-bound) and
the decoders gained nothing from two threads on the 2-core machine (measured). Every refusal is a :mod:`fluoroplan.io.errors` exception whose
message tells the user what is wrong and what to do.

Public API: :class:`SeriesInfo`, :func:`scan`, :func:`default_series`, :func:`load_series`,
:func:`load_ct`.

Submodules, each importing only those above it:

- :mod:`.headers`: the header pass over one file (SOP classes, per-file records, fast
  raw-element parsing, locating the pixel data);
- :mod:`.geometry`: sorting and validating a series' frames and planning the output grid;
- :mod:`.series`: :func:`scan`, :class:`SeriesInfo` and :func:`default_series`;
- :mod:`.pixels`: the pixel pass (reading, decoding, HU conversion, resampling, the checks on
  duplicate copies and per-image rescales);
- :mod:`.loader`: :func:`load_series` and :func:`load_ct`.
"""

# Tests patch ``os.walk`` and ``os.access`` through ``fluoroplan.io.dicom.os``.
import os as os

from fluoroplan.io.dicom.geometry import MAX_EXTENT_MM as MAX_EXTENT_MM
from fluoroplan.io.dicom.geometry import MIN_SLICES as MIN_SLICES
from fluoroplan.io.dicom.geometry import PIXEL_SPACING_RANGE_MM as PIXEL_SPACING_RANGE_MM
from fluoroplan.io.dicom.geometry import orientation_label as orientation_label
from fluoroplan.io.dicom.headers import CT_CLASSES as CT_CLASSES
from fluoroplan.io.dicom.headers import CT_IMAGE as CT_IMAGE
from fluoroplan.io.dicom.headers import DOSE_SR as DOSE_SR
from fluoroplan.io.dicom.headers import ENHANCED_CT as ENHANCED_CT
from fluoroplan.io.dicom.headers import LEGACY_ENHANCED_CT as LEGACY_ENHANCED_CT
from fluoroplan.io.dicom.headers import MEDIA_DIRECTORY as MEDIA_DIRECTORY
from fluoroplan.io.dicom.headers import SECONDARY_CAPTURE_PREFIX as SECONDARY_CAPTURE_PREFIX
from fluoroplan.io.dicom.headers import STRUCTURED_REPORT_PREFIX as STRUCTURED_REPORT_PREFIX
from fluoroplan.io.dicom.loader import PATIENT_POSITIONS as PATIENT_POSITIONS
from fluoroplan.io.dicom.loader import load_ct, load_series
from fluoroplan.io.dicom.pixels import AIR_HU as AIR_HU
from fluoroplan.io.dicom.pixels import _read_frames as _read_frames
from fluoroplan.io.dicom.series import SeriesInfo, default_series, scan

__all__ = ["SeriesInfo", "default_series", "load_ct", "load_series", "scan"]
