"""The planning workstation's controller: analysis, targets, proposals, edits, views, files.

It calls the engine (``segmentation.analysis``, ``planner``, ``geometry``, ``io.planfile``) on
worker threads and shows the results; the plan lives in a :class:`PlanDocument`, every edit is
an undoable command on it (``app/undo.py``), and every edit is autosaved.

Dragging an end of a trajectory redraws the reformats at once with the moved line (depth and
bull's-eye angles are plain geometry, shown at once too); the 3-D view, the needle views and
the C-arm follow after a short rest, and the checks are re-run on a worker thread.

Submodules, each importing only those listed before it:

- :mod:`.workers`: what runs on the worker threads (the analysis and its planning look-ups,
  the proposals for a target, the PDF report) and :func:`label_map_source`;
- :mod:`.chrome`: the docks, actions, menus and status bar, their enabled state, the title;
- :mod:`.analysis`: loading a CT and its analysis, the worker tasks (busy, settled, cancel,
  shutdown, progress) and the error dialogs;
- :mod:`.autosave`: the autosave of every edit and the recovery of an unsaved plan;
- :mod:`.views`: the drawing (panels, reformats, 3-D view, needle views, C-arm) and the
  C-arm pane's questions; the colours of the 3-D view;
- :mod:`.editing`: targets, proposals, placing and dragging trajectories;
- :mod:`.rechecks`: re-running the checks of edited trajectories on a worker;
- :mod:`.labels`: renaming the levels and importing a label map made elsewhere;
- :mod:`.files`: opening and saving plans, the PDF report, unsaved changes on close;
- :mod:`.controller`: :class:`PlanningController`, made of the mixins above.

``analysis`` and ``labels`` call ``workers._analyse`` as an attribute of its module, read when
an analysis starts (tests replace it there to analyse each CT once).
"""

from fluoroplan.app.planning.controller import LIVE_DELAY_MS as LIVE_DELAY_MS
from fluoroplan.app.planning.controller import RECHECK_DELAY_MS as RECHECK_DELAY_MS
from fluoroplan.app.planning.controller import PlanningController
from fluoroplan.app.planning.views import CAGE_RGB as CAGE_RGB
from fluoroplan.app.planning.views import CEMENT_CALLOUT_MM as CEMENT_CALLOUT_MM
from fluoroplan.app.planning.views import CEMENT_RGB as CEMENT_RGB
from fluoroplan.app.planning.views import CONNECTOR_RGB as CONNECTOR_RGB
from fluoroplan.app.planning.views import LEVEL_LABEL_BACK_MM as LEVEL_LABEL_BACK_MM
from fluoroplan.app.planning.views import LEVEL_LABEL_GAP_MM as LEVEL_LABEL_GAP_MM
from fluoroplan.app.planning.views import LOOSE_RGB as LOOSE_RGB
from fluoroplan.app.planning.views import NEEDLE_RGB as NEEDLE_RGB
from fluoroplan.app.planning.views import OTHER_NEEDLE_RGB as OTHER_NEEDLE_RGB
from fluoroplan.app.planning.views import ROD_RGB as ROD_RGB
from fluoroplan.app.planning.views import TIGHT_RGB as TIGHT_RGB
from fluoroplan.app.planning.workers import _case_state as _case_state
from fluoroplan.app.planning.workers import _propose_all as _propose_all
from fluoroplan.app.planning.workers import _write_pdf as _write_pdf
from fluoroplan.app.planning.workers import label_map_source

__all__ = ["PlanningController", "label_map_source"]
