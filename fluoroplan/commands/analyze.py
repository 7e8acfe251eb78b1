"""``fluoroplan analyze PATH --json OUT.json``: find screws, rods, cages, vertebrae and levels."""

from __future__ import annotations

import argparse
import time

from fluoroplan.commands._common import (
    OutputProblems,
    add_analysis_arguments,
    load_volume,
    terminal_progress,
)
from fluoroplan.io.analysis_json import analysis_json

NAME = "analyze"
HELP = "find screws (with halos), rods, cages and vertebrae (with levels) in a CT"
DESCRIPTION = (
    "Analyse a spine CT: every screw (tip, head, axis, diameter, length, halo, "
    "loose), rod, cage and vertebra (levels, heights, fracture grade). Writes the "
    "fluoroplan.analysis/1 JSON."
)


def add_arguments(p) -> None:
    add_analysis_arguments(p)
    p.add_argument("--json", required=True, metavar="OUT.json", help="where to write the analysis")


def analyze_path(args: argparse.Namespace):
    """Load and analyse; returns (analysis, seconds to load)."""
    from fluoroplan.segmentation.analysis import analyze

    t0 = time.perf_counter()
    volume = load_volume(args.path, args.series, quiet=args.quiet)
    load_s = time.perf_counter() - t0
    analysis = analyze(volume, levels=args.levels, metal_hu=args.metal_hu,
                       progress=None if args.quiet else terminal_progress("analyse "),
                       label_map=args.labels)
    return analysis, load_s


def run(args: argparse.Namespace) -> int:
    from fluoroplan.io.jsonio import write_json_atomic

    outputs = OutputProblems("analyze")
    outputs.check(args.json, "analysis JSON")
    analysis, load_s = analyze_path(args)
    doc = analysis_json(analysis)
    doc["timings_s"] = {"load": round(load_s, 3), **doc["timings_s"]}
    _, where = outputs.write(args.json, "analysis JSON", lambda path: write_json_atomic(path, doc))
    loose = [s["id"] for s in doc["screws"] if s["loose"]]
    print(f"{len(doc['vertebrae'])} vertebrae ({', '.join(v['label'] for v in doc['vertebrae'])}), "
          f"{len(doc['screws'])} screws ({len(loose)} loose: {', '.join(loose) or 'none'}), "
          f"{len(doc['rods'])} rods, {len(doc['cages'])} cages -> {where or 'not written'}")
    for w in doc["warnings"]:
        print(f"note: {w}")
    return outputs.report()
