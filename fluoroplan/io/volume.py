"""The CT volume every other part of fluoroplan works on."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class CTVolume:
    """A CT in Hounsfield units on a regular grid placed in patient LPS space.

    Attributes
    ----------
    hu : ndarray of int16, shape (nk, nj, ni)
        Hounsfield units, indexed ``[k, j, i]`` = (slice, row, column).
    lps_from_ijk : ndarray (4, 4)
        Maps homogeneous voxel indices ``(i, j, k, 1)`` to LPS millimetres.
    patient_position : str
        ``HFS``, ``HFP``, ``FFS`` or ``FFP`` (DICOM PatientPosition).
    identifiers : dict
        ``study_instance_uid``, ``series_instance_uid``, ``frame_of_reference_uid``,
        ``series_description``, ``modality``, ``kernel``, ``study_date`` ...
    patient : dict
        ``name``, ``id``, ``birth_date``, ``sex`` (kept for the report; dropped when anonymised).
    notes : list of str
        What the loader did that a user should know (e.g. gantry tilt resampled, files skipped).
    """

    hu: np.ndarray
    lps_from_ijk: np.ndarray
    patient_position: str = "HFS"
    identifiers: dict = field(default_factory=dict)
    patient: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    # derived in __post_init__ (not a constructor argument, not in the repr)
    _ijk_from_lps: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.hu.ndim != 3:
            raise ValueError(f"CT volume must be 3-D, got shape {self.hu.shape}")
        if self.hu.dtype != np.int16:
            raise ValueError(f"CT volume must hold int16 HU, got {self.hu.dtype}")
        a = np.asarray(self.lps_from_ijk, dtype=float)
        if a.shape != (4, 4):
            raise ValueError("lps_from_ijk must be 4x4")
        object.__setattr__(self, "lps_from_ijk", a)
        object.__setattr__(self, "_ijk_from_lps", np.linalg.inv(a))

    # --- geometry --------------------------------------------------------------------------
    @property
    def shape_ijk(self) -> tuple[int, int, int]:
        nk, nj, ni = self.hu.shape
        return (ni, nj, nk)

    @property
    def spacing_mm(self) -> np.ndarray:
        """Voxel size along i, j, k in mm (column norms of the affine)."""
        return np.linalg.norm(self.lps_from_ijk[:3, :3], axis=0)

    @property
    def direction(self) -> np.ndarray:
        """3x3 matrix whose columns are the unit LPS directions of i, j, k."""
        return self.lps_from_ijk[:3, :3] / self.spacing_mm

    @property
    def ijk_from_lps(self) -> np.ndarray:
        return self._ijk_from_lps

    def lps_from_ijk_points(self, ijk: np.ndarray) -> np.ndarray:
        """Map (N, 3) voxel indices (i, j, k) to (N, 3) LPS mm."""
        ijk = np.atleast_2d(np.asarray(ijk, dtype=float))
        return ijk @ self.lps_from_ijk[:3, :3].T + self.lps_from_ijk[:3, 3]

    def ijk_from_lps_points(self, lps: np.ndarray) -> np.ndarray:
        """Map (N, 3) LPS mm to (N, 3) fractional voxel indices (i, j, k)."""
        lps = np.atleast_2d(np.asarray(lps, dtype=float))
        inv = self.ijk_from_lps
        return lps @ inv[:3, :3].T + inv[:3, 3]

    def bounds_lps(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned LPS bounding box (min, max) of the voxel centres."""
        ni, nj, nk = self.shape_ijk
        corners = np.array(
            [[i, j, k] for i in (0, ni - 1) for j in (0, nj - 1) for k in (0, nk - 1)], float
        )
        pts = self.lps_from_ijk_points(corners)
        return pts.min(axis=0), pts.max(axis=0)

    def hu_at_lps(self, lps: np.ndarray, outside: int = -1024) -> np.ndarray:
        """Nearest-voxel HU at (N, 3) LPS points; ``outside`` beyond the volume."""
        ijk = np.rint(self.ijk_from_lps_points(lps)).astype(int)
        ni, nj, nk = self.shape_ijk
        ok = (
            (ijk[:, 0] >= 0) & (ijk[:, 0] < ni) & (ijk[:, 1] >= 0) & (ijk[:, 1] < nj)
            & (ijk[:, 2] >= 0) & (ijk[:, 2] < nk)
        )
        out = np.full(len(ijk), outside, dtype=np.int16)
        out[ok] = self.hu[ijk[ok, 2], ijk[ok, 1], ijk[ok, 0]]
        return out

    def fingerprint(self) -> str:
        """A short content hash of geometry and a subsample of voxels (for plan files)."""
        import hashlib

        h = hashlib.sha256()
        h.update(np.asarray(self.hu.shape, np.int64).tobytes())
        h.update(np.round(self.lps_from_ijk, 4).tobytes())
        h.update(np.ascontiguousarray(self.hu[:: max(1, self.hu.shape[0] // 16), ::8, ::8]).tobytes())
        return h.hexdigest()[:16]

    def series_json(self) -> dict:
        """The ``series`` block of the analysis and plan JSON files."""
        return {
            "series_instance_uid": self.identifiers.get("series_instance_uid", ""),
            "study_instance_uid": self.identifiers.get("study_instance_uid", ""),
            "series_description": self.identifiers.get("series_description", ""),
            "patient_position": self.patient_position,
            "shape_ijk": [int(n) for n in self.shape_ijk],
            "spacing_mm": [float(s) for s in self.spacing_mm],
            "affine_lps": [[float(v) for v in row] for row in self.lps_from_ijk],
            "fingerprint": self.fingerprint(),
        }
