"""``fluoroplan plan PATH --json PLAN.json``: analyse and propose needle trajectories."""

from __future__ import annotations

import argparse

from fluoroplan.commands._common import add_analysis_arguments, terminal_progress


def register(sub) -> None:
    p = sub.add_parser(
        "plan",
        help="analyse a CT and propose the best 15-ga trajectory of each approach per target",
        description="Analyse the CT, find the targets (loose screws, fractured bodies, subsided "
        "cages) and propose, for every target, the best trajectory of each applicable approach "
        "with its safety checks and C-arm angles. Writes the fluoroplan.plan/1 JSON.",
    )
    add_analysis_arguments(p)
    p.add_argument("--json", required=True, metavar="PLAN.json", help="where to write the plan")
    p.add_argument("--planner", help="name of the planner recorded in the plan")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fluoroplan.commands.analyze import analyze_path
    from fluoroplan.io.jsonio import write_json_atomic
    from fluoroplan.planner.propose import plan_case

    analysis, load_s = analyze_path(args)
    doc = analysis.to_json()
    plan = plan_case(analysis.volume, doc, planner=args.planner,
                     progress=None if args.quiet else terminal_progress("plan "))
    out = plan.to_json()
    out["analysis"]["timings_s"] = {"load": round(load_s, 3), **doc["timings_s"]}
    out["analysis"]["warnings"] = doc["warnings"]
    write_json_atomic(args.json, out)
    print(f"{len(plan.targets)} target(s), {len(plan.trajectories)} trajectory(ies) -> {args.json}")
    for t in plan.trajectories:
        print(f"  {t.id}: {t.status}, depth {t.depth_mm:.0f} mm, {t.needle.length_mm:.0f} mm "
              f"needle; bull's-eye: {t.views['bullseye']['text']}")
    for u in plan.unsolved:
        print(f"  {u.target.ref} {u.approach}: no safe trajectory ({u.reason})")
    return 0
