"""The bundled demo case: the synthetic instrumented spine CT written once as a real DICOM
series. The ``fluoroplan demo`` command and the workstation's "Open the demo case" both get it
here, so neither imports the other."""

from __future__ import annotations

from pathlib import Path

from fluoroplan.resources.phantom import make_phantom, write_phantom


def demo_case(out: Path, seed: int = 0, regenerate: bool = False, progress=None) -> Path:
    """Write (once) the demo phantom as DICOM under ``out/case``; return the DICOM folder."""
    case = Path(out) / "case"
    dicom = case / "dicom"
    stamp = case / "truth.json"
    if regenerate or not stamp.exists() or not any(dicom.glob("*.dcm")):
        phantom = make_phantom(seed=seed, progress=progress)
        write_phantom(case, phantom)
    return dicom
