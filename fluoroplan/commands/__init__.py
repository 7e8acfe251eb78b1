"""Sub-commands of the ``fluoroplan`` CLI, one module each.

Each module defines ``register(subparsers)`` which adds its parser and sets ``func`` to a
function ``run(args) -> int``. Modules are listed in :data:`COMMAND_MODULES`; a module is
imported lazily so ``fluoroplan --help`` stays fast and no command pays for another's imports.
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
