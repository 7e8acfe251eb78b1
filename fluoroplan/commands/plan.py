"""``fluoroplan plan PATH --json PLAN.json [--pdf OUT.pdf] [--markups OUT.mrk.json] [--anonymize]``:
analyse and propose needle trajectories; optionally write the PDF report and 3D Slicer markups.

``--from-plan PLAN.json`` skips the analysis and planning and renders a saved plan (refused
when it was made on another CT). ``--anonymize`` makes every file written a teaching copy
(:mod:`fluoroplan.report.teaching`: no patient, UIDs, series description or file name,
fingerprint, planner or times); such a plan JSON cannot be reopened against a CT."""

from __future__ import annotations

import argparse

from fluoroplan.commands._common import OutputProblems, add_analysis_arguments, terminal_progress
from fluoroplan.io.analysis_json import analysis_json

NAME = "plan"
HELP = "analyse a CT and propose the best 15-ga trajectory of each approach per target"
DESCRIPTION = (
    "Analyse the CT, find the targets (loose screws, fractured bodies, subsided "
    "cages) and propose, for every target, the best trajectory of each applicable approach "
    "with its safety checks and C-arm angles. Writes the fluoroplan.plan/1 JSON."
)


def add_arguments(p) -> None:
    add_analysis_arguments(p)
    p.add_argument("--json", metavar="PLAN.json", help="where to write the plan")
    p.add_argument("--pdf", metavar="OUT.pdf", help="also write the A4 PDF report")
    p.add_argument("--anonymize", action="store_true",
                   help="teaching export: every file written (JSON, PDF, markups) without "
                   "patient, UIDs, series description or file name, CT fingerprint, planner "
                   "or times; such a plan cannot be reopened against the CT")
    p.add_argument("--markups", metavar="OUT.mrk.json",
                   help="also write trajectories, screws and targets as 3D Slicer markups")
    p.add_argument("--from-plan", metavar="PLAN.json",
                   help="render a saved plan of this CT instead of planning afresh")
    p.add_argument("--planner", help="name of the planner recorded in the plan")
    p.add_argument("--procedure-position", choices=("HFP", "FFP", "HFS", "FFS"), default="HFP",
                   help="how the patient will lie in the angiosuite (default HFP: prone, head "
                   "first); C-arm table angles and room words refer to it, whatever position "
                   "the CT was acquired in")


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from fluoroplan.io.planfile import load_plan, save_plan

    if not (args.json or args.pdf or args.markups):
        raise ValueError("say what to write: --json PLAN.json, --pdf OUT.pdf and/or "
                         "--markups OUT.mrk.json")
    outputs = OutputProblems("plan")
    outputs.check(args.json, "plan JSON")
    outputs.check(args.pdf, "PDF report")
    outputs.check(args.markups, "3D Slicer markups")
    if args.from_plan:
        from fluoroplan.commands._common import load_volume

        volume = load_volume(args.path, args.series, args.quiet)
        plan = load_plan(args.from_plan, volume)
    else:
        from fluoroplan.commands.analyze import analyze_path
        from fluoroplan.planner.propose import plan_case

        analysis, load_s = analyze_path(args)
        volume = analysis.volume
        doc = analysis_json(analysis)
        plan = plan_case(volume, doc, planner=args.planner, labels=analysis.anatomy.labels,
                         procedure_position=args.procedure_position,
                         progress=None if args.quiet else terminal_progress("plan "))
        extra = {"timings_s": {"load": round(load_s, 3), **doc["timings_s"]},
                 "warnings": doc["warnings"]}
        plan = replace(plan, analysis={**plan.analysis, **extra})
    # the files' plan: a teaching copy under --anonymize (the PDF makes its own from the plan,
    # which it first checks against the CT)
    written = plan
    if args.anonymize:
        from fluoroplan.report.teaching import teaching_plan

        written = teaching_plan(plan)
    json_path = args.json
    if args.json:
        _, json_path = outputs.write(args.json, "plan JSON",
                                     lambda path: save_plan(written, path))
    print(f"{len(plan.targets)} target(s), {len(plan.trajectories)} trajectory(ies)"
          + (f" -> {json_path}" if json_path else "")
          + (" (anonymised teaching copy)" if json_path and args.anonymize else ""))
    for t in plan.trajectories:
        print(f"  {t.id}: {t.status}, depth {t.depth_mm:.0f} mm, {t.needle.length_mm:.0f} mm "
              f"needle; bull's-eye: {t.views['bullseye']['text']}")
    for u in plan.unsolved:
        print(f"  {u.target.ref} {u.approach}: no safe trajectory ({u.reason})")
    if args.markups:
        from fluoroplan.io.slicer_markups import write_markups

        _, where = outputs.write(args.markups, "3D Slicer markups",
                                 lambda path: write_markups(written, path))
        if where:
            print(f"3D Slicer markups -> {where}")
    if args.pdf:
        from fluoroplan.report.pdf import write_plan_pdf

        info, where = outputs.write(
            args.pdf, "PDF report",
            lambda path: write_plan_pdf(plan, volume, path, anonymize=args.anonymize,
                                        progress=None if args.quiet else terminal_progress(
                                            "report ")))
        if info is not None:
            print(f"PDF report ({info.pages} pages{', anonymised' if args.anonymize else ''}) "
                  f"-> {where} in {info.seconds:.1f} s")
            for note in info.notes:
                print(f"  note: {note}")
    return outputs.report()
