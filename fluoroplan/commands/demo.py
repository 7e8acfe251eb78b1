"""``fluoroplan demo``: run the main job on the bundled demo case (the synthetic phantom).

With a display the workstation opens on the demo case. Without one, fluoroplan says so in
one line and writes the demo's results to files instead.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from fluoroplan.commands._common import terminal_progress
from fluoroplan.io.analysis_json import analysis_json

DEFAULT_OUT = "fluoroplan-demo"


NAME = "demo"
HELP = "run the main job on the bundled demo case (synthetic instrumented spine CT)"
DESCRIPTION = (
    "Generate the demo case (a synthetic prone instrumented spine CT written as "
    "a real DICOM series, with a loose screw and a fracture), load it through the real "
    "loader and run the job on it. With a display the workstation opens on it; without one "
    "the results are written to files in --out."
)


def add_arguments(p) -> None:
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default ./{DEFAULT_OUT})")
    p.add_argument("--seed", type=int, default=0, help="phantom seed (default 0)")
    p.add_argument(
        "--regenerate", action="store_true", help="write the demo DICOM again even if present"
    )
    p.add_argument("--no-gui", action="store_true", help="write files even when a display exists")


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def write_results(out: Path, dicom: Path, volume, series_rows: str, seconds: dict,
                  analysis=None, plan=None) -> list[Path]:
    """The demo's results as files: what was loaded, what was found, the plan and its views."""
    from fluoroplan.io.jsonio import write_json_atomic

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
    written.append(write_json_atomic(out / "volume.json", summary))
    if analysis is not None:
        doc = analysis_json(analysis)
        doc["timings_s"] = {"load": seconds.get("load", 0.0), **doc["timings_s"]}
        written.append(write_json_atomic(out / "analysis.json", doc))
    if plan is not None:
        from fluoroplan.io.planfile import save_plan
        from fluoroplan.report.pdf import write_plan_pdf

        save_plan(plan, out / "plan.json")
        written.append(out / "plan.json")
        written += write_views(out, volume, plan)
        write_plan_pdf(plan, volume, out / "plan.pdf")
        written.append(out / "plan.pdf")
    return written


def write_views(out: Path, volume, plan) -> list[Path]:
    """Simulated fluoroscopy (DRR) of the best trajectory's bull's-eye and progression views."""
    from fluoroplan.geometry.drr import AttenuationVolume, render_drr
    from fluoroplan.io.plan_json import pose_from_json
    from fluoroplan.io.png import write_png

    if not plan.trajectories:
        return []
    best = min(plan.trajectories, key=lambda t: (t.status == "fail", t.target.kind != "loose-screw",
                                                 t.cost))
    vol = AttenuationVolume.from_ct(volume)
    written = []
    for name in ("bullseye", "progression"):
        pose = pose_from_json(best.views[name], plan.procedure_position)
        drr = render_drr(vol, pose, best.aim_lps, size=512,
                         trajectories=[(best.entry_lps, best.aim_lps)])
        written.append(write_png(out / f"{best.id}-{name}.png", drr.image))
    return written


def run(args: argparse.Namespace) -> int:
    from fluoroplan.commands.series import format_table
    from fluoroplan.io import default_series, load_series, scan
    from fluoroplan.resources.demo import demo_case

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    headless = not has_display() or args.no_gui
    if headless:
        print(f"No display: writing the demo's results to {out} instead of opening the window."
              if not args.no_gui else f"Writing the demo's results to {out}.")
    t0 = time.perf_counter()
    dicom = demo_case(out, args.seed, args.regenerate, terminal_progress("phantom "))
    t1 = time.perf_counter()
    found = scan(dicom, terminal_progress("scan "))
    info = default_series(found)
    volume = load_series(info, terminal_progress("load "))
    t2 = time.perf_counter()
    seconds = {"phantom": round(t1 - t0, 3), "load": round(t2 - t1, 3)}
    table = format_table([s.row() for s in found])
    if not headless:
        from fluoroplan.app import run_app

        return int(run_app(volume=volume))
    from fluoroplan.planner.propose import plan_case
    from fluoroplan.segmentation.analysis import analyze

    analysis = analyze(volume, progress=terminal_progress("analyse "))
    t3 = time.perf_counter()
    plan = plan_case(volume, analysis_json(analysis), progress=terminal_progress("plan "),
                     labels=analysis.anatomy.labels)
    seconds.update(analysis=round(t3 - t2, 3), plan=round(time.perf_counter() - t3, 3))
    written = write_results(out, dicom, volume, table, seconds, analysis, plan)
    print(f"Demo case: {info.describe()}")
    print(f"Loaded {volume.shape_ijk[0]}x{volume.shape_ijk[1]}x{volume.shape_ijk[2]} voxels "
          f"({', '.join(f'{s:.2f}' for s in volume.spacing_mm)} mm), patient position "
          f"{volume.patient_position}, in {seconds['load']:.2f} s.")
    loose = [s.id for s in analysis.implants.screws if s.loose]
    print(f"Found {len(analysis.anatomy.vertebrae)} vertebrae, {len(analysis.implants.screws)} "
          f"screws (loose: {', '.join(loose) or 'none'}); planned {len(plan.trajectories)} "
          f"trajectories for {len(plan.targets)} targets.")
    for p in written:
        print(f"  wrote {p}")
    return 0
