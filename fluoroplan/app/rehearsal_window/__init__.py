"""Rehearsal mode: the window that turns the workstation into a fluoroscopy simulator.

The trainee picks a target, drives the virtual C-arm like the console's controls (rotation =
table primary angle, angulation = table secondary angle), takes counted fluoro shots (the
monitor changes only on a shot), declares the bull's-eye and the working view, picks the
needle's entry and target on an axial reformat, advances and withdraws the needle, checks it
on progression (lateral) shots, and ends the attempt to see the score. The expert plan stays
hidden until the attempt has ended.

All the simulation and scoring is :class:`fluoroplan.rehearsal.session.RehearsalSession`; this
window only drives it and shows its state. Keys (window-wide):

- Left/Right: rotation -1/+1 deg (Shift: 5 deg); Down/Up: angulation -1/+1 deg (Shift: 5 deg)
- Space or F (foot pedal): fluoro shot
- A: advance the needle 2 mm (Shift+A: 5 mm); W: withdraw 2 mm (Shift+W: 5 mm)

Submodules, each importing only those listed before it:

- ``views``: the widgets (fluoro monitor, axial placement view, score dialog)
- ``common``: the step sizes shared by the parts and the LPS read-out of a point
- ``errors``: the error dialogs (``RehearsalWindow.report_error``)
- ``panel``: the construction of the window (views, control panel, menus, replay bar)
- ``attempt``: the session prepared on a worker and the trainee's actions on it
- ``display``: what the window shows of the attempt's state
- ``files``: saving the attempt and the summary sheet
- ``replay``: stepping through a saved attempt
- ``window``: :class:`RehearsalWindow`, made of the mixins above
- ``launch``: :func:`open_rehearsal` and :func:`run_rehearsal`
"""

from fluoroplan.app.rehearsal_window.launch import open_rehearsal, run_rehearsal
from fluoroplan.app.rehearsal_window.window import RehearsalWindow

__all__ = ["RehearsalWindow", "open_rehearsal", "run_rehearsal"]
