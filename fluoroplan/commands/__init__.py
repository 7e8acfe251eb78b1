"""Sub-commands of the ``fluoroplan`` CLI, one module each.

Each module defines ``NAME``, ``HELP`` and ``DESCRIPTION``, ``add_arguments(parser)`` and
``run(args) -> int`` (or, with actions of its own, sets their functions in
``add_arguments``); :func:`fluoroplan.cli.build_parser` makes the sub-command from them.
Modules are listed in :data:`COMMAND_MODULES`; a module is imported lazily so ``fluoroplan
--help`` stays fast and no command pays for another's imports.
"""

COMMAND_MODULES = [
    "fluoroplan.commands.series",
    "fluoroplan.commands.demo",
    "fluoroplan.commands.gui",
    "fluoroplan.commands.analyze",
    "fluoroplan.commands.plan",
    "fluoroplan.commands.drr",
    "fluoroplan.commands.rehearse",
]
