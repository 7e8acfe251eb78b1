"""``fluoroplan series PATH``: list the image series in a folder as a table."""

from __future__ import annotations

import argparse
import sys

from fluoroplan.commands._common import terminal_progress

NAME = "series"
HELP = "list the image series found in a folder (the default one is marked *)"
DESCRIPTION = (
    "Scan a folder (recursively) or files, group DICOM instances into series "
    "and list them; the series fluoroplan loads by default is marked with *."
)


def add_arguments(p) -> None:
    p.add_argument("path", nargs="+", help="DICOM folder(s) or files")
    p.add_argument("--uids", action="store_true", help="also print each SeriesInstanceUID")
    p.add_argument(
        "--load",
        action="store_true",
        help="also read the default series' pixels (every check the planner's loader makes) "
        "and print the volume: grid, voxel size, CT number range and the loader's notes",
    )


def format_table(rows: list[dict[str, str]]) -> str:
    """Plain-text table with a header row and aligned columns."""
    if not rows:
        return ""
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols).rstrip()]
    lines.append("  ".join("-" * widths[c] for c in cols))
    lines += ["  ".join(r[c].ljust(widths[c]) for c in cols).rstrip() for r in rows]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from fluoroplan.io import default_series, load_series, scan
    from fluoroplan.io.errors import LoadError

    found = scan(args.path if len(args.path) > 1 else args.path[0], terminal_progress("scan "))
    try:
        default = default_series(found)
    except LoadError as err:
        default, problem = None, err
    rows = []
    for n, s in enumerate(found, 1):
        row = {"#": ("*" if s is default else " ") + str(n), **s.row()}
        if args.uids:
            row["SeriesInstanceUID"] = s.series_instance_uid
        rows.append(row)
    print(format_table(rows))
    skipped = sum(len(s.skipped) for s in found[:1])
    if skipped:
        print(f"\n{skipped} file(s) were skipped as unreadable or not DICOM images.")
    if default is None:
        print("\nNo series here can be loaded as a CT volume (see 'Usable').")
        sys.stdout.flush()
        print(f"fluoroplan series: {problem}", file=sys.stderr)
        return 2
    print(f"\n* default: {default.describe()}")
    if args.load:
        print(describe_volume(load_series(default, terminal_progress("load "))))
    return 0


def describe_volume(volume) -> str:
    """A few lines on a loaded CT: grid, voxel size, CT numbers, patient position, notes."""
    import numpy as np

    ni, nj, nk = volume.shape_ijk
    si, sj, sk = (float(v) for v in volume.spacing_mm)
    lines = [
        f"Loaded: {ni} x {nj} x {nk} voxels of {si:.3f} x {sj:.3f} x {sk:.3f} mm, "
        f"CT numbers {int(np.min(volume.hu))} to {int(np.max(volume.hu))} HU, "
        f"patient position {volume.patient_position}"
    ]
    lines += [f"Note: {n}" for n in volume.notes]
    return "\n".join(lines)
