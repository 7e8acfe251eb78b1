"""``fluoroplan drr PATH --pose P S --out view.png``: a simulated fluoroscopy image of a CT."""

from __future__ import annotations

import argparse
import json
import sys

from fluoroplan.commands._common import OutputProblems, add_series_argument, load_volume

NAME = "drr"
HELP = "simulate a fluoroscopy image (DRR) of a CT at a C-arm pose"
DESCRIPTION = (
    "Render a digitally reconstructed radiograph of the CT at a C-arm pose "
    "(DICOM patient-relative angles), around the planned target when a plan trajectory "
    "is given (drawn as a 15-gauge needle), else around the centre of the volume. Prints "
    "the pose in patient and table terms and in words, and warns when the C-arm cannot "
    "reach it."
)


def add_arguments(p) -> None:
    p.add_argument("path", help="DICOM folder/file or NIfTI file of the CT")
    add_series_argument(p)
    p.add_argument(
        "--pose",
        nargs=2,
        type=float,
        metavar=("PRIMARY", "SECONDARY"),
        help="DICOM primary and secondary angles, patient-relative, degrees "
        "(e.g. -165 -10: prone, detector over the back, 15 deg to the right, 10 deg caudal)",
    )
    p.add_argument(
        "--view",
        choices=("bullseye", "progression"),
        help="instead of --pose: the trajectory's bull's-eye or progression (lateral) view",
    )
    p.add_argument("--size", type=int, default=512, help="image size in pixels (default 512)")
    p.add_argument("--invert", action="store_true", help="bone bright on a dark background")
    p.add_argument("--plan", metavar="PLAN.json", help="plan file with trajectories")
    p.add_argument("--trajectory", metavar="ID", help="trajectory id in the plan to draw")
    p.add_argument("--position", choices=("HFP", "HFS", "FFP", "FFS"),
                   help="how the patient lies in the angiosuite, for the room-terms sentence and "
                   "table angles (default: the plan's procedure position, else HFP: prone)")
    p.add_argument("--out", required=True, metavar="view.png", help="PNG file to write")


def _trajectory(plan_path: str, traj_id: str, volume) -> tuple[dict, dict]:
    """(the plan document, the trajectory's JSON block). A plan file (``fluoroplan.plan/1``)
    is validated completely and refused when it was made on another CT, as ``plan
    --from-plan`` refuses it; a hand-written list of trajectories needs finite entry and target
    points."""
    import math

    from fluoroplan.io.jsonio import read_json
    from fluoroplan.io.planfile import load_plan

    plan = read_json(plan_path)
    if "schema" in plan:  # a hand-written list of trajectories has none
        load_plan(plan_path, volume)
    trajs = plan.get("trajectories")
    if not isinstance(trajs, list):
        raise ValueError(f"{plan_path} holds no list of trajectories: give a fluoroplan plan "
                         "file or {\"trajectories\": [{\"id\", \"entry_lps\", \"target_lps\"}]}")
    for t in trajs:
        if isinstance(t, dict) and str(t.get("id")) == traj_id:
            for key in ("entry_lps", "target_lps", "contact_lps"):
                v = t.get(key)
                if v is None and key == "contact_lps":
                    continue
                ok = (isinstance(v, list) and len(v) == 3
                      and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                              and math.isfinite(x) for x in v))
                if not ok:
                    raise ValueError(f"trajectory {traj_id!r} of {plan_path}: {key} must be "
                                     f"three finite numbers (LPS mm), not {v!r}")
            return plan, t
    ids = ", ".join(str(t.get("id")) for t in trajs if isinstance(t, dict)) or "none"
    raise ValueError(f"trajectory {traj_id!r} is not in {plan_path} (its trajectories: {ids})")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from fluoroplan.geometry.carm import CArmPose, bullseye_pose, check_reachable, progression_pose
    from fluoroplan.geometry.drr import AttenuationVolume, render_drr
    from fluoroplan.io.plan_json import pose_from_json, pose_json
    from fluoroplan.io.png import write_png

    if bool(args.plan) != bool(args.trajectory):
        raise ValueError("--plan and --trajectory go together")
    if (args.pose is None) == (args.view is None):
        raise ValueError("give either --pose PRIMARY SECONDARY or --view")
    if args.view and not args.trajectory:
        raise ValueError("--view needs --plan and --trajectory")
    if not 16 <= args.size <= 4096:
        raise ValueError(f"--size must be 16..4096 pixels, got {args.size}")

    outputs = OutputProblems("drr")
    outputs.check(args.out, "image")
    ct = load_volume(args.path, args.series)
    if min(ct.shape_ijk) < 2:
        raise ValueError(f"the CT is {ct.shape_ijk[0]}x{ct.shape_ijk[1]}x{ct.shape_ijk[2]} "
                         "voxels: a simulated fluoroscopy image needs a volume (two slices or "
                         "more in every direction); load the whole series")
    plan, block = _trajectory(args.plan, args.trajectory, ct) if args.plan else (None, None)
    position = args.position or (plan or {}).get("procedure_position") or "HFP"
    traj = None
    if block is not None:
        # the straight insertion: to the planned contact with a screw when there is one
        aim = block.get("contact_lps") or block["target_lps"]
        traj = (np.asarray(block["entry_lps"], float), np.asarray(aim, float))
    # --view needs --plan and --trajectory (checked above): with a view, block and traj are set
    if args.view is not None and block is not None and args.view in block:
        # the plan's own pose, so the image is the one the plan's numbers describe
        pose = pose_from_json(block[args.view], position)
    elif args.view == "bullseye" and traj is not None:
        pose = bullseye_pose(*traj, position)
    elif args.view == "progression" and traj is not None:
        pose = progression_pose(*traj, position)
    else:
        pose = CArmPose(args.pose[0], args.pose[1], position)
    if traj is not None:
        iso = traj[1]
    else:
        lo, hi = ct.bounds_lps()
        iso = (lo + hi) / 2.0
    vol = AttenuationVolume.from_ct(ct)
    drr = render_drr(
        vol,
        pose,
        iso,
        size=args.size,
        invert=args.invert,
        trajectories=[traj] if traj is not None else None,
    )
    _, where = outputs.write(args.out, "image", lambda path: write_png(path, drr.image))
    block = pose_json(pose)
    print(json.dumps(block))
    print(f"{pose.dicom_text}; {pose.text}")
    reach = check_reachable(pose)
    if not reach.reachable:
        print(f"warning: the C-arm cannot reach this pose: {reach.reason}", file=sys.stderr)
    if where:
        print(f"wrote {where} ({drr.image.shape[1]}x{drr.image.shape[0]}, pyramid level "
              f"{drr.level})")
    return outputs.report()
