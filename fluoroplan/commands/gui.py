"""``fluoroplan gui``: open the workstation window (optionally on a folder or the demo case)."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "gui"
HELP = "open the workstation window"
DESCRIPTION = (
    "Open the workstation on a CT folder (or NIfTI file), on the demo case, or "
    "empty, optionally with a saved plan of that CT (--plan). With --screenshot the window loads, "
    "analyses, opens the plan, renders, saves a PNG of itself and exits. "
    "Needs a display; without one use `xvfb-run -a fluoroplan gui ...` (or "
    "QT_QPA_PLATFORM=offscreen for screenshots)."
)


def add_arguments(p) -> None:
    p.add_argument("path", nargs="?", help="folder of DICOM images, or a .nii/.nii.gz file")
    p.add_argument("--demo", action="store_true", help="open the demo case (written once per user)")
    p.add_argument("--plan", metavar="PLAN.json",
                   help="open this plan (made on the same CT) once the CT is analysed")
    p.add_argument("--screenshot", metavar="FILE.png",
                   help="save a picture of the whole window once loaded, then exit")


def run(args: argparse.Namespace) -> int:
    from fluoroplan import app

    if args.path and args.demo:
        print("fluoroplan gui: give a PATH or --demo, not both")
        return 2
    if args.screenshot and not (args.path or args.demo):
        print("fluoroplan gui: --screenshot needs a PATH or --demo to show")
        return 2
    if args.plan and not (args.path or args.demo):
        print("fluoroplan gui: --plan needs the CT it was made on (a PATH or --demo)")
        return 2
    if args.plan and not Path(args.plan).is_file():
        print(f"fluoroplan gui: the plan file {args.plan} does not exist")
        return 2
    if args.screenshot:
        shot = Path(args.screenshot)
        if shot.suffix.lower() != ".png":
            print("fluoroplan gui: --screenshot writes a PNG; give a file name ending in .png")
            return 2
        if not shot.resolve().parent.is_dir():
            print(f"fluoroplan gui: the folder of {shot} does not exist")
            return 2
    return app.run_app(path=args.path, demo=args.demo, screenshot=args.screenshot,
                       plan=args.plan)
