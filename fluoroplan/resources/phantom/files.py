"""The phantom on disk: ``write_phantom`` (a DICOM CT series and ``truth.json``), ``load_truth``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fluoroplan.io.dicom_write import write_series
from fluoroplan.resources.phantom.model import SCHEMA, Phantom


# --- files -----------------------------------------------------------------------------------
def write_phantom(folder: str | Path, phantom: Phantom, **write_series_kwargs) -> list[Path]:
    """Write ``folder/dicom/IM*.dcm`` (a CT series) and ``folder/truth.json``; return the paths."""
    folder = Path(folder)
    vol = phantom.volume
    kwargs: dict[str, Any] = {"patient_position": vol.patient_position, "patient": vol.patient,
                              "study": dict(vol.identifiers)}
    kwargs.update(write_series_kwargs)
    paths = write_series(vol.hu, vol.lps_from_ijk, folder / "dicom", **kwargs)
    truth_path = folder / "truth.json"
    truth_path.write_text(json.dumps(phantom.truth, indent=1))
    return [*paths, truth_path]


def load_truth(folder: str | Path) -> dict:
    """Read ``truth.json`` written by ``write_phantom`` (a folder or the file itself)."""
    p = Path(folder)
    if p.is_dir():
        p = p / "truth.json"
    truth = json.loads(p.read_text())
    if truth.get("schema") != SCHEMA:
        raise ValueError(f"{p} is not a fluoroplan phantom truth file (schema {truth.get('schema')!r})")
    return truth
