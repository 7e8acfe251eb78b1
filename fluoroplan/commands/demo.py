"""``fluoroplan demo``: run the main job on the bundled demo case (the synthetic phantom).

With a display the workstation opens on the demo case. Without one, fluoroplan says so in
one line and writes the demo's results to files instead.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from fluoroplan.commands._common import terminal_progress

DEFAULT_OUT = "fluoroplan-demo"


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="run the main job on the bundled demo case (synthetic instrumented spine CT)",
        description="Generate the demo case (a synthetic prone instrumented spine CT written as "
        "a real DICOM series, with a loose screw and a fracture), load it through the real "
        "loader and run the job on it. With a display the workstation opens on it; without one "
        "the results are written to files in --out.",
    )
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default ./{DEFAULT_OUT})")
    p.add_argument("--seed", type=int, default=0, help="phantom seed (default 0)")
    p.add_argument(
        "--regenerate", action="store_true", help="write the demo DICOM again even if present"
    )
    p.add_argument("--no-gui", action="store_true", help="write files even when a display exists")
    p.set_defaults(func=run)


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def demo_case(out: Path, seed: int = 0, regenerate: bool = False, progress=None) -> Path:
    """Write (once) the demo phantom as DICOM under ``out/case``; return the DICOM folder."""
    from fluoroplan.resources.phantom import make_phantom, write_phantom

    case = out / "case"
    dicom = case / "dicom"
    stamp = case / "truth.json"
    if regenerate or not stamp.exists() or not any(dicom.glob("*.dcm")):
        phantom = make_phantom(seed=seed, progress=progress)
        write_phantom(case, phantom)
    return dicom


def write_results(out: Path, dicom: Path, volume, series_rows: str, seconds: dict) -> list[Path]:
    """The demo's results as files: what was loaded, and (as the engine grows) what was found."""
    written = []
    (out / "series.txt").write_text(series_rows + "\n")
    written.append(out / "series.txt")
    summary = {
        "schema": "fluoroplan.demo/1",
        "dicom": str(dicom),
        "series": volume.series_json(),
        "identifiers": volume.identifiers,
        "notes": list(volume.notes),
        "hu_range": [int(volume.hu.min()), int(volume.hu.max())],
        "timings_s": seconds,
    }
    (out / "volume.json").write_text(json.dumps(summary, indent=2) + "\n")
    written.append(out / "volume.json")
    return written


def run(args: argparse.Namespace) -> int:
    from fluoroplan.commands.series import format_table
    from fluoroplan.io import default_series, load_series, scan

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    dicom = demo_case(out, args.seed, args.regenerate, terminal_progress("phantom "))
    t1 = time.perf_counter()
    found = scan(dicom, terminal_progress("scan "))
    info = default_series(found)
    volume = load_series(info, terminal_progress("load "))
    t2 = time.perf_counter()
    seconds = {"phantom": round(t1 - t0, 3), "load": round(t2 - t1, 3)}
    table = format_table([s.row() for s in found])

    if has_display() and not args.no_gui:
        from fluoroplan import app

        if hasattr(app, "run_app"):
            return int(app.run_app(volume=volume))
        print("The workstation window is not part of this version yet; writing the demo's "
              f"results to {out} instead.")
    elif not args.no_gui:
        print(f"No display: writing the demo's results to {out} instead of opening the window.")
    written = write_results(out, dicom, volume, table, seconds)
    print(f"Demo case: {info.describe()}")
    print(f"Loaded {volume.shape_ijk[0]}x{volume.shape_ijk[1]}x{volume.shape_ijk[2]} voxels "
          f"({', '.join(f'{s:.2f}' for s in volume.spacing_mm)} mm), patient position "
          f"{volume.patient_position}, in {seconds['load']:.2f} s.")
    for p in written:
        print(f"  wrote {p}")
    return 0
