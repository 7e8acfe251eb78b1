"""``fluoroplan series PATH``: list the image series in a folder as a table."""

from __future__ import annotations

import argparse

from fluoroplan.commands._common import terminal_progress


def register(sub) -> None:
    p = sub.add_parser(
        "series",
        help="list the image series found in a folder (the default one is marked *)",
        description="Scan a folder (recursively) or files, group DICOM instances into series "
        "and list them; the series fluoroplan loads by default is marked with *.",
    )
    p.add_argument("path", nargs="+", help="DICOM folder(s) or files")
    p.add_argument("--uids", action="store_true", help="also print each SeriesInstanceUID")
    p.set_defaults(func=run)


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
    from fluoroplan.io import default_series, scan
    from fluoroplan.io.errors import NoSeriesFound

    found = scan(args.path if len(args.path) > 1 else args.path[0], terminal_progress("scan "))
    try:
        default = default_series(found)
    except NoSeriesFound:
        default = None
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
        return 2
    print(f"\n* default: {default.describe()}")
    return 0
