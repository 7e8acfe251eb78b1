"""``fluoroplan rehearse``: scores and summary sheets of rehearsal attempts, and the
instructor's choice of a plan's reference trajectory.

- ``fluoroplan rehearse score ATTEMPT.json``: replays the attempt from its events, re-scores it
  (with the safety checks saved in it) and prints the score and every lost point's reason.
- ``fluoroplan rehearse summary ATTEMPT.json... --pdf OUT.pdf``: one table row per attempt.
- ``fluoroplan rehearse mark-reference PLAN.json TRAJECTORY_ID``: marks the expert trajectory
  rehearsals of its target are scored against (``"reference": true`` in the plan JSON).
- ``fluoroplan rehearse gui PATH|--demo [--plan PLAN.json] [--trainee NAME] [--screenshot
  FILE.png]``: loads and analyses the CT, then opens the rehearsal window (the fluoroscopy
  simulator, expert plan hidden). Needs a display, like ``fluoroplan gui``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fluoroplan.commands._common import (
    OutputProblems,
    add_series_argument,
    load_volume,
    terminal_progress,
)
from fluoroplan.io.analysis_json import analysis_json

NAME = "rehearse"
HELP = "score rehearsal attempts, print their summary sheet, mark a reference trajectory"
DESCRIPTION = (
    "Rehearsal mode: trainees rehearse an access on a real case with the expert "
    "plan hidden. These commands score saved attempts (fluoroplan.rehearsal/1 JSON), write "
    "the summary sheet and let an instructor mark the expert trajectory."
)


def add_arguments(p) -> None:
    rs = p.add_subparsers(dest="rehearse_command", metavar="ACTION")
    sc = rs.add_parser("score", help="replay an attempt and print its score and lost points")
    sc.add_argument("attempt", metavar="ATTEMPT.json")
    sc.set_defaults(func=run_score)
    sm = rs.add_parser("summary", help="summary sheet (PDF) of attempts: one row per attempt")
    sm.add_argument("attempts", nargs="+", metavar="ATTEMPT.json")
    sm.add_argument("--pdf", required=True, metavar="OUT.pdf", help="where to write the sheet")
    sm.add_argument("--title", default="Rehearsal attempts", help="title of the sheet")
    sm.set_defaults(func=run_summary)
    mr = rs.add_parser("mark-reference",
                       help="mark a plan trajectory as the reference of its target's rehearsals")
    mr.add_argument("plan", metavar="PLAN.json")
    mr.add_argument("trajectory_id", metavar="TRAJECTORY_ID")
    mr.add_argument("-o", "--output", metavar="OUT.json",
                    help="write the marked plan here (default: update PLAN.json in place)")
    mr.set_defaults(func=run_mark_reference)
    gu = rs.add_parser(
        "gui", help="open the rehearsal window (fluoroscopy simulator) on a case",
        description="Load and analyse a CT (or the demo case), then open the rehearsal window: "
        "the trainee picks a target, drives the virtual C-arm, takes counted fluoro shots, "
        "places and advances the needle and is scored against the expert reference (a plan "
        "trajectory marked with `fluoroplan rehearse mark-reference`, else the automatic "
        "proposal), which stays hidden until the attempt ends. Needs a display, like "
        "`fluoroplan gui`: without one use `xvfb-run -a fluoroplan rehearse gui ...` (or "
        "QT_QPA_PLATFORM=offscreen with --screenshot).")
    gu.add_argument("path", nargs="?", help="folder of DICOM images, or a .nii/.nii.gz file")
    gu.add_argument("--demo", action="store_true",
                    help="rehearse on the demo case (written once per user)")
    gu.add_argument("--plan", metavar="PLAN.json",
                    help="the case's plan; its trajectory marked as reference is the expert's")
    gu.add_argument("--trainee", default="", metavar="NAME", help="the trainee's name")
    gu.add_argument("--biplane", action="store_true",
                    help="a biplane suite: the lateral plane shoots the target vertebra's true "
                         "lateral (key G) while the frontal plane stays")
    gu.add_argument("--screenshot", metavar="FILE.png",
                    help="open, take one fluoro shot, save a picture of the window and exit")
    add_series_argument(gu)
    gu.set_defaults(func=run_gui)
    p.set_defaults(func=lambda args: _no_action(p))


def _no_action(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_score(args: argparse.Namespace) -> int:
    from fluoroplan.rehearsal.session import load_attempt, score_attempt

    attempt = load_attempt(args.attempt)
    score = score_attempt(attempt)
    stored = attempt.get("score")
    print(f"{attempt.get('trainee') or '(unnamed)'}, {attempt['target']['kind']}:"
          f"{attempt['target']['ref']}, {attempt.get('started', '')}")
    print(score.text)
    m = score.metrics
    print(f"shots {m['shots']}, fluoro {m['fluoro_s']:.1f} s, DAP proxy {m['dap_cm2s']:.0f} "
          f"cm2*s, corrections {m['corrections']}")
    if stored is None:
        print("note: the attempt was not ended; scored as it stands")
    elif abs(float(stored["total"]) - score.total) > 0.01:
        print(f"warning: the saved score was {float(stored['total']):.2f}; the replay gives "
              f"{score.total:.2f}")
        return 1
    return 0


def run_summary(args: argparse.Namespace) -> int:
    from fluoroplan.rehearsal.session import load_attempt
    from fluoroplan.rehearsal.summary import write_summary_pdf

    outputs = OutputProblems("rehearse summary")
    outputs.check(args.pdf, "summary sheet")
    attempts = [load_attempt(a) for a in args.attempts]
    _, out = outputs.write(args.pdf, "summary sheet",
                           lambda path: write_summary_pdf(attempts, path, title=args.title))
    if out:
        print(f"{len(attempts)} attempt(s) -> {out}")
    return outputs.report()


def run_mark_reference(args: argparse.Namespace) -> int:
    from fluoroplan.io.jsonio import PLAN_SCHEMA, read_json, write_json_atomic
    from fluoroplan.rehearsal.session import mark_reference

    plan = read_json(args.plan, PLAN_SCHEMA)
    marked = mark_reference(plan, args.trajectory_id)
    outputs = OutputProblems("rehearse mark-reference")
    out = args.output or args.plan
    outputs.check(out, "marked plan")
    _, out = outputs.write(out, "marked plan", lambda path: write_json_atomic(path, marked))
    if out:
        print(f"{args.trajectory_id} is the reference of its target -> {out}")
    return outputs.report()


def run_gui(args: argparse.Namespace) -> int:
    from fluoroplan import app

    if bool(args.path) == bool(args.demo):
        print("fluoroplan rehearse gui: give a PATH or --demo (one of them)", file=sys.stderr)
        return 2
    if args.screenshot:
        shot = Path(args.screenshot)
        if shot.suffix.lower() != ".png":
            print("fluoroplan rehearse gui: --screenshot writes a PNG; give a file name ending "
                  "in .png", file=sys.stderr)
            return 2
        if not shot.resolve().parent.is_dir():
            print(f"fluoroplan rehearse gui: the folder of {shot} does not exist",
                  file=sys.stderr)
            return 2
    problem = app.display_problem()  # before the minutes of loading and analysis
    if problem:
        print(f"fluoroplan: {problem}", file=sys.stderr)
        return 2
    from fluoroplan.io.errors import FluoroplanError
    from fluoroplan.io.jsonio import PLAN_SCHEMA, read_json
    from fluoroplan.io.planfile import load_plan
    from fluoroplan.segmentation.analysis import analyze

    try:
        if args.demo:
            from fluoroplan.app.main_window import demo_root
            from fluoroplan.resources.demo import demo_case

            app.application()  # the per-user folder is named after the application
            path = demo_case(demo_root(), progress=terminal_progress("demo "))
        else:
            path = args.path
        volume = load_volume(str(path), args.series)
        plan_json = None
        if args.plan:
            load_plan(args.plan, volume)  # validated, and refused when made on another CT
            plan_json = read_json(args.plan, PLAN_SCHEMA)
        found = analyze(volume, progress=terminal_progress("analyse "))
        analysis = analysis_json(found)
    except (FluoroplanError, OSError) as exc:
        print(f"fluoroplan rehearse gui: {exc}", file=sys.stderr)
        return 2
    from fluoroplan.app.rehearsal_window import run_rehearsal

    return run_rehearsal(volume, analysis, plan_json, trainee=args.trainee,
                         screenshot=args.screenshot, labels=found.anatomy.labels,
                         biplane=args.biplane)
