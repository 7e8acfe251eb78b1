"""Undoable edits of a :class:`~fluoroplan.app.document.PlanDocument` (QUndoStack commands).

Each command holds the states before and after, so undo and redo are exact; the document
notifies the views.
"""

from __future__ import annotations

from PySide6.QtGui import QUndoCommand

from fluoroplan.app.document import PlanDocument
from fluoroplan.model.plan import Trajectory


class AddTrajectory(QUndoCommand):
    def __init__(self, doc: PlanDocument, traj: Trajectory, text: str | None = None):
        super().__init__(text or f"add {traj.id}")
        self.doc, self.traj = doc, traj

    def redo(self) -> None:
        self.doc.insert_trajectory(self.traj)

    def undo(self) -> None:
        self.traj = self.doc.remove_trajectory(self.traj.id)[1]


class RemoveTrajectory(QUndoCommand):
    def __init__(self, doc: PlanDocument, traj_id: str):
        super().__init__(f"remove {traj_id}")
        self.doc, self.traj_id = doc, traj_id
        self.index: int | None = None
        self.traj: Trajectory | None = None

    def redo(self) -> None:
        self.index, self.traj = self.doc.remove_trajectory(self.traj_id)

    def undo(self) -> None:
        self.doc.insert_trajectory(self.traj, self.index)


class EditTrajectory(QUndoCommand):
    """Replace a trajectory by an edited copy (an end moved); the same id before and after."""

    def __init__(self, doc: PlanDocument, before: Trajectory, after: Trajectory, text: str):
        super().__init__(text)
        self.doc, self.before, self.after = doc, before, after

    def redo(self) -> None:
        self.doc.replace_trajectory(self.after)
        self.doc.select(self.after.id)

    def undo(self) -> None:
        # keep whatever checks arrived for the edited geometry, for a later redo
        current = self.doc.trajectory(self.after.id)
        if current is not None:
            self.after = current
        self.doc.replace_trajectory(self.before)
        self.doc.select(self.before.id)


class Relabel(QUndoCommand):
    """Levels renamed from "this vertebra is L3": swaps the whole analysis state."""

    def __init__(self, doc: PlanDocument, before: tuple, after: tuple, text: str):
        super().__init__(text)
        self.doc, self.before, self.after = doc, before, after

    def redo(self) -> None:
        self.doc.set_analysis(*self.after)

    def undo(self) -> None:
        self.doc.set_analysis(*self.before)


class SetMeasurements(QUndoCommand):
    """A distance or angle added or removed, or all cleared: swaps the plan's measurements."""

    def __init__(self, doc: PlanDocument, before: tuple, after: tuple, text: str):
        super().__init__(text)
        self.doc, self.before, self.after = doc, tuple(before), tuple(after)

    def redo(self) -> None:
        self.doc.set_measurements(self.after)

    def undo(self) -> None:
        self.doc.set_measurements(self.before)
