"""The ``fluoroplan`` command line. Errors go to stderr with exit code 2, never a traceback."""

from __future__ import annotations

import argparse
import importlib
import sys

from fluoroplan import __version__
from fluoroplan.commands import COMMAND_MODULES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fluoroplan",
        description=(
            "Plan fluoroscopically guided cement augmentation of an instrumented spine on CT."
        ),
    )
    parser.add_argument("--version", action="version", version=f"fluoroplan {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        command = importlib.import_module(name)
        p = sub.add_parser(command.NAME, help=command.HELP, description=command.DESCRIPTION)
        if hasattr(command, "run"):
            p.set_defaults(func=command.run)
        command.add_arguments(p)  # may set its own actions' functions (rehearse)
    return parser


def main(argv: list[str] | None = None) -> int:
    import warnings

    from fluoroplan.io.errors import FluoroplanError

    # Library warnings (numpy floating-point, pydicom's odd values) are not for the user: every
    # problem that matters is checked and reported as one sentence; refusals go to stderr.
    warnings.simplefilter("ignore")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except FluoroplanError as err:
        print(f"fluoroplan {args.command}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fluoroplan {args.command}: interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError) as err:
        print(f"fluoroplan {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
