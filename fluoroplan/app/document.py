"""The plan being edited, as a plain object that tells its observers what changed.

:class:`PlanDocument` holds the CT, what the analysis found (the engine's ``Analysis``, its
JSON form, the ``PlanningCase`` built from it and the targets), the :class:`Plan` and the
selected trajectory. It has no Qt: widgets subscribe with :meth:`PlanDocument.subscribe` and
redraw on the events; undo/redo (``app/undo.py``) are commands that call its edit methods.

Events (``callback(event, detail)``):

- ``"analysis"``: a new analysis (after loading, or after relabelling levels);
- ``"plan"``: a whole plan was set (new CT, plan opened);
- ``"trajectories"``: a trajectory was added, removed, moved or re-checked (detail: its id);
- ``"measurements"``: a distance or angle was added or removed;
- ``"selection"``: the selected trajectory changed (detail: its id or None);
- ``"target"``: the current target changed (detail: the target id or None);
- ``"path"``: the plan's file changed (saved under a name, opened).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from fluoroplan.model.plan import Plan, Target, Trajectory


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).astimezone().isoformat(timespec="seconds")


def same_geometry(a: Trajectory, b: Trajectory) -> bool:
    """Whether two trajectories have the same entry, target and contact points (to 1 um)."""
    if (a.contact_lps is None) != (b.contact_lps is None):
        return False
    pts = [(a.entry_lps, b.entry_lps), (a.target_lps, b.target_lps)]
    if a.contact_lps is not None:
        pts.append((a.contact_lps, b.contact_lps))
    return all(np.allclose(x, y, atol=1e-3) for x, y in pts)


class PlanDocument:
    """The case and plan under edit (see the module docstring for the events)."""

    def __init__(self) -> None:
        self.volume = None
        self.analysis = None  # fluoroplan.segmentation.analysis.Analysis
        self.analysis_json: dict | None = None
        self.case = None  # fluoroplan.planner.case.PlanningCase
        self.targets: list[Target] = []
        self.plan: Plan | None = None
        self.path: str | None = None
        self.selected_id: str | None = None
        self.target_id: str | None = None
        self._observers: list[Callable[[str, object], None]] = []

    # --- observers --------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[str, object], None]) -> None:
        self._observers.append(callback)

    def _notify(self, event: str, detail=None) -> None:
        for callback in list(self._observers):
            callback(event, detail)

    # --- the case ---------------------------------------------------------------------------
    def reset(self, volume) -> None:
        """A new CT: no analysis, an empty plan of its series."""
        self.volume = volume
        self.analysis = self.analysis_json = self.case = None
        self.targets = []
        self.path = None
        self.selected_id = self.target_id = None
        self.plan = None if volume is None else Plan(series=volume.series_json())
        self._notify("plan")
        self._notify("analysis")
        self._notify("path", None)  # the previous plan's file is not this CT's

    def set_analysis(self, analysis, analysis_json: dict, case, targets: list[Target]) -> None:
        """What the analysis found (computed off the GUI thread)."""
        self.analysis, self.analysis_json, self.case = analysis, analysis_json, case
        self.targets = list(targets)
        if self.plan is not None:
            from fluoroplan.planner.notes import plan_analysis_notes

            found = case.findings if case is not None else None
            self.plan = replace(self.plan, analysis={
                "levels": [v["label"] for v in analysis_json.get("vertebrae", [])],
                "screws": analysis_json.get("screws", []),
                **plan_analysis_notes(analysis_json, found.vertebrae if found else (),
                                      [s.id for s in found.screws] if found else ()),
            })
        if self.target_id is not None and self.target(self.target_id) is None:
            self.target_id = None
        self._notify("analysis")

    def analysis_state(self) -> tuple:
        return self.analysis, self.analysis_json, self.case, list(self.targets)

    def target(self, target_id: str | None) -> Target | None:
        for t in self.targets:
            if t.id == target_id:
                return t
        if self.plan is not None:
            for t in self.plan.targets:
                if t.id == target_id:
                    return t
        return None

    def set_target(self, target_id: str | None) -> None:
        if target_id != self.target_id:
            self.target_id = target_id
            self._notify("target", target_id)

    # --- the plan ---------------------------------------------------------------------------
    def set_plan(self, plan: Plan, path: str | None = None) -> None:
        self.plan = plan
        self.path = path
        self.selected_id = plan.trajectories[0].id if plan.trajectories else None
        self._notify("plan")
        self._notify("path", path)
        self._notify("selection", self.selected_id)

    def set_path(self, path: str | None) -> None:
        self.path = path
        self._notify("path", path)

    @property
    def trajectories(self) -> tuple[Trajectory, ...]:
        return () if self.plan is None else self.plan.trajectories

    def trajectory(self, traj_id: str | None) -> Trajectory | None:
        for t in self.trajectories:
            if t.id == traj_id:
                return t
        return None

    @property
    def selected(self) -> Trajectory | None:
        return self.trajectory(self.selected_id)

    def select(self, traj_id: str | None) -> None:
        if traj_id != self.selected_id:
            self.selected_id = traj_id
            self._notify("selection", traj_id)

    def unique_id(self, wanted: str) -> str:
        taken = {t.id for t in self.trajectories}
        if wanted not in taken:
            return wanted
        n = 2
        while f"{wanted}-{n}" in taken:
            n += 1
        return f"{wanted}-{n}"

    def _set_trajectories(self, trajs: tuple[Trajectory, ...], extra_target: Target | None = None,
                          changed: str | None = None) -> None:
        assert self.plan is not None, "no plan: load a CT first"
        targets = self.plan.targets
        if extra_target is not None and all(
                (t.kind, t.ref) != (extra_target.kind, extra_target.ref) for t in targets):
            targets = targets + (extra_target,)
        self.plan = replace(self.plan, trajectories=trajs, targets=targets, modified=_now())
        self._notify("trajectories", changed)

    def insert_trajectory(self, traj: Trajectory, index: int | None = None) -> None:
        trajs = list(self.trajectories)
        trajs.insert(len(trajs) if index is None else index, traj)
        self._set_trajectories(tuple(trajs), traj.target, traj.id)
        self.select(traj.id)

    def remove_trajectory(self, traj_id: str) -> tuple[int, Trajectory]:
        trajs = list(self.trajectories)
        index = next(n for n, t in enumerate(trajs) if t.id == traj_id)
        traj = trajs.pop(index)
        self._set_trajectories(tuple(trajs), changed=traj_id)
        if self.selected_id == traj_id:
            self.select(trajs[min(index, len(trajs) - 1)].id if trajs else None)
        return index, traj

    @property
    def measurements(self) -> tuple:
        return () if self.plan is None else self.plan.measurements

    def set_measurements(self, measurements: tuple) -> None:
        """The plan's distances and angles (saved with it)."""
        assert self.plan is not None, "no plan: load a CT first"
        self.plan = replace(self.plan, measurements=tuple(measurements), modified=_now())
        self._notify("measurements", None)

    def replace_trajectory(self, traj: Trajectory) -> None:
        trajs = tuple(traj if t.id == traj.id else t for t in self.trajectories)
        self._set_trajectories(trajs, changed=traj.id)

    def update_checked(self, traj: Trajectory) -> bool:
        """Put a re-checked trajectory in place if the plan still holds the same geometry (a
        check result that arrives after a further edit is dropped). True when used."""
        current = self.trajectory(traj.id)
        if current is None or not same_geometry(current, traj):
            return False
        self.replace_trajectory(traj)
        return True
