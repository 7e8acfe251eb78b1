"""What the planning controller shows: the document's events redraw the panels, the
reformats, the 3-D view (implants, cement, levels, trajectories), the needle views and the
C-arm; and the answers to the C-arm pane's questions (what to project, the named views)."""

from __future__ import annotations

import numpy as np

from fluoroplan.app.reformat import display_axes
from fluoroplan.app.slice_view import spine_box
from fluoroplan.geometry.carm import bullseye_pose
from fluoroplan.geometry.conventions import NEEDLE_OUTER_DIAMETER_MM
from fluoroplan.geometry.fluoro_marks import NeedleMark, ScrewMark
from fluoroplan.geometry.render3d import ellipsoid_actor
from fluoroplan.io.plan_json import pose_from_json
from fluoroplan.model.implants import Cement

LOOSE_RGB = (1.0, 0.42, 0.1)
TIGHT_RGB = (0.55, 0.62, 0.85)
ROD_RGB = (0.6, 0.75, 0.95)
CAGE_RGB = (0.3, 0.9, 0.6)
CONNECTOR_RGB = (0.72, 0.55, 1.0)  # cross-links: violet, apart from the rods' blue
LEVEL_LABEL_BACK_MM = 40.0
LEVEL_LABEL_GAP_MM = 20.0  # level labels in 3-D: at least this far apart, head to feet
CEMENT_RGB = (1.0, 0.96, 0.78)  # bone cement: yellow-white, as bright as it reads on CT
CEMENT_CALLOUT_MM = (60.0, 40.0)  # cement label: this far to screen-right, toward the viewer
NEEDLE_RGB = (1.0, 0.8, 0.0)
OTHER_NEEDLE_RGB = (0.0, 0.78, 1.0)
PROPOSAL_RGB = (0.85, 0.85, 0.85)  # proposals not looked at: faint grey


class ViewsMixin:
    """The drawing and the C-arm pane's questions of :class:`PlanningController`."""

    # --- document events ----------------------------------------------------------------------
    def _on_doc(self, event: str, detail) -> None:
        if event == "analysis":
            self._focus_on_spine()
            self.targets_panel.populate(
                None if self.doc.case is None else self.doc.case.findings, self.doc.targets)
            self._draw_implants()
            self._show_target()
            if self.doc.case is not None and self.doc.trajectories:
                # the checks were made against the previous analysis: make them again
                self.stale_checks.update(t.id for t in self.doc.trajectories)
                self.pending_checks.update(self.stale_checks)
                self._recheck_timer.start()
                self._refresh_plan_panel()
        elif event in ("plan", "trajectories"):
            self._queue_rechecks()
            self._refresh_plan_panel()
            self._draw_trajectories()
            self._redraw_2d()
            self._follow_views()
        elif event == "selection":
            self._refresh_plan_panel()
            self._draw_trajectories()
            self._redraw_2d()
            self._follow_views()
            traj = self.doc.selected
            if traj is not None:
                self.win.statusBar().showMessage(f"Selected {traj.id}", 4000)
        elif event == "target":
            self._show_target()
            self._redraw_2d()
        elif event == "path":
            self._update_title()
        elif event == "measurements":
            self._redraw_2d()
        if event in ("analysis", "plan", "trajectories"):
            self._refresh_notes()
        self._update_actions()

    def _focus_on_spine(self) -> None:
        """The reformats' default zoom: the spine found (its vertebrae, the implants, the
        posterior soft tissue the needles cross), not the whole field with a tiny spine."""
        case, state = self.doc.case, self.win.state
        state.focus_box = spine_box(None if case is None else case.findings, self.doc.volume)
        for v in self.win.views.values():
            if v.at_default_zoom:
                v.reset_view()

    # --- notes ---------------------------------------------------------------------------------
    def _refresh_notes(self) -> None:
        """The Notes dock, its title (with the count), the badges in Targets and Plan."""
        from fluoroplan.planner.notes import all_notes

        doc = self.doc
        found = None if doc.case is None else doc.case.findings
        aj = doc.analysis_json or {}
        self.notes = all_notes(
            () if doc.volume is None else doc.volume.notes, aj.get("warnings", []),
            found.vertebrae if found else (), [s.id for s in found.screws] if found else (),
            doc.plan) if doc.volume is not None else []
        self.notes_panel.populate(self.notes)
        n_warn = sum(n.severity == "warn" for n in self.notes)
        self.docks["notes"].setWindowTitle(f"Notes ({n_warn} \u26a0)" if n_warn else
                                           f"Notes ({len(self.notes)})" if self.notes
                                           else "Notes")
        self.targets_panel.set_badges(self.notes_by_item())
        per_traj: dict[str, list[str]] = {}
        for n in self.notes:
            if n.about and n.about.startswith("trajectory:"):
                per_traj.setdefault(n.about.split(":", 1)[1], []).append(n.text)
        self.plan_panel.set_badges({k: "\n".join(v) for k, v in per_traj.items()})
        self._show_target()

    def notes_by_item(self) -> dict:
        """Note texts by Targets item key ("screw:L2-left", "vertebra:L3", "cage:L2-L3")."""
        out: dict[str, list[str]] = {}
        for n in self.notes:
            if not n.about:
                continue
            kind, _, ref = n.about.partition(":")
            if kind == "target":
                t = self.doc.target(ref)
                if t is None:
                    continue
                key = (f"screw:{t.ref}" if t.kind == "loose-screw" else
                       f"vertebra:{t.ref}" if t.kind == "fracture" else f"cage:{t.ref}")
            elif kind in ("screw", "vertebra"):
                key = n.about
            else:
                continue
            out.setdefault(key, []).append(n.text)
        return out

    def target_notes(self, target) -> list[str]:
        """The notes about a target: its own, its screw's or vertebra's, its level's."""
        if target is None:
            return []
        keys = {f"target:{target.id}", f"vertebra:{target.level}"}
        if target.kind == "loose-screw":
            keys.add(f"screw:{target.ref}")
        return [n.text for n in self.notes if n.about in keys]

    def _show_target(self) -> None:
        target = self.doc.target(self.doc.target_id)
        self.proposals_panel.set_target(target, self.target_notes(target))

    def _show_note_subject(self, about: str) -> None:
        """A note double-clicked: show what it is about (select it, centre the slices)."""
        kind, _, ref = about.partition(":")
        if kind == "trajectory" and self.doc.trajectory(ref) is not None:
            self._plan_row_selected(ref)
            self.docks["plan"].raise_()
        elif kind == "target" and self.doc.target(ref) is not None:
            self.select_target(ref)
            self.docks["targets"].raise_()
        elif kind in ("screw", "vertebra") and self.targets_panel.select_key(about):
            self.docks["targets"].raise_()

    def _refresh_plan_panel(self) -> None:
        self.plan_panel.populate(self.doc.trajectories, self.doc.selected_id, self.pending_checks)
        traj = self.doc.selected
        self.plan_panel.show_checks(traj, traj is not None and traj.id in self.pending_checks)
        self._show_live(traj)

    def _show_live(self, traj) -> None:
        if traj is None:
            self.plan_panel.live.setText("")
            return
        pose = bullseye_pose(traj.entry_lps, traj.aim_lps, self.position)
        self.plan_panel.live.setText(
            f"<b>{traj.id}</b>: depth {traj.depth_mm:.1f} mm ({traj.needle.gauge} G "
            f"{traj.needle.length_mm:.0f} mm needle); bull's-eye: {pose.text} "
            f"({pose.dicom_text})")

    # --- drawing ------------------------------------------------------------------------------
    def _redraw_2d(self) -> None:
        for v in self.win.views.values():
            v.update()

    def _follow_views(self) -> None:
        self._draw_trajectories()
        traj = self.shown_selected()
        for nv in self.win.needle_views.values():
            if traj is None:
                nv.set_trajectory(None, None)
            else:
                nv.set_trajectory(traj.entry_lps, traj.aim_lps,
                                  traj.id + (" (proposal)" if traj is self.preview else ""))
        # a named view (bull's-eye, working, progression) follows the edited or newly
        # selected trajectory, caption included
        self.carm.follow(full=self._drag is None)

    def _draw_implants(self) -> None:
        v3 = self.win.view3d
        for g in ("implants", "levels"):
            v3.remove_group(g)
        case = self.doc.case
        found = None if case is None else case.findings
        # the metal surface becomes translucent so the screws' colours show through it
        v3.set_metal_opacity(1.0 if found is None else 0.3)
        if found is None:
            v3.render()
            return
        for s in found.screws:
            rgb = LOOSE_RGB if s.loose else TIGHT_RGB
            head, tip = s.head_lps, s.tip_lps
            v3.add_cylinder(head, tip, s.diameter_mm / 2 + 0.4, rgb=rgb, group="implants")
            # the shaft is inside bone: a coloured cap just beyond the tulip (about 15 mm
            # behind the head) shows which screw is loose
            axis = s.axis_lps
            v3.add_cylinder(head - 19.0 * axis, head - 16.0 * axis, 4.5, rgb=rgb, group="implants")
        for r in found.rods:
            pts = r.points_lps
            for a, b in zip(pts[:-1], pts[1:], strict=True):
                v3.add_cylinder(a, b, r.diameter_mm / 2 + 0.2, rgb=ROD_RGB, group="implants")
        for c in found.cages:
            centre = c.center_lps
            ext = c.extent_mm if len(c.extent_mm) else np.array([10.0, 10.0, 10.0])
            half = 0.5 * float(ext[-1])
            v3.add_cylinder(centre - [0, 0, half], centre + [0, 0, half], 0.5 * float(ext[0]),
                            rgb=CAGE_RGB, opacity=0.6, group="implants")
        rod_r = np.mean([r.diameter_mm for r in found.rods] or [5.5]) / 2
        for link in found.connectors:
            a, b = link.ends_lps[0], link.ends_lps[-1]
            v3.add_cylinder(a, b, rod_r + 0.2, rgb=CONNECTOR_RGB, group="implants")
        self._draw_cement(tuple(found.listed_cement))
        axes = self.win.view3d_axes()
        last_z = -np.inf
        for v in sorted(found.vertebrae, key=lambda v: float(v.vertebra_centroid_lps[2])):
            # beside the vertebra and behind it (toward the camera looking at the back), so
            # that ribs do not hide the thoracic labels; caudal to cranial, each at least
            # LEVEL_LABEL_GAP_MM above the last (a vertebra cut by the scan's edge has its
            # centroid close to its neighbour's: the labels would overlap)
            c = v.vertebra_centroid_lps + np.array([0.0, LEVEL_LABEL_BACK_MM, 0.0])
            c[2] = max(float(c[2]), last_z + LEVEL_LABEL_GAP_MM)
            last_z = float(c[2])
            v3.add_label(c - axes * 45.0, v.label, rgb=(1.0, 0.85, 0.4), group="levels")
        v3.render()

    def _draw_cement(self, cement: tuple[Cement, ...]) -> None:
        """Each cement deposit as a translucent ellipsoid filling its box; it lies inside bone,
        so a thin line leads from it to a "cement" label beside the spine, toward the viewer."""
        volume = self.doc.volume
        if volume is None or not cement:
            return
        v3 = self.win.view3d
        coronal = display_axes(volume.patient_position)["coronal"]
        out = (CEMENT_CALLOUT_MM[0] * coronal.right_lps
               - CEMENT_CALLOUT_MM[1] * coronal.into_screen_lps)
        placed: list[np.ndarray] = []
        for c in cement:
            lo, hi = (np.asarray(x, float) for x in c.bbox_ijk)
            corners = np.array([[x, y, z] for x in (lo[0], hi[0] - 1) for y in (lo[1], hi[1] - 1)
                                for z in (lo[2], hi[2] - 1)])
            lps = volume.lps_from_ijk_points(corners)
            voxel_mm = np.abs(volume.lps_from_ijk[:3, :3]).sum(axis=1)  # one voxel's LPS size
            semi_mm = 0.5 * (lps.max(axis=0) - lps.min(axis=0) + voxel_mm)
            centre = c.center_lps
            v3.add_actor(ellipsoid_actor(centre, semi_mm, CEMENT_RGB, 0.7), group="implants")
            # labels kept apart: one within 15 mm of another moves up by 12 mm until clear
            at = centre + out
            while any(np.linalg.norm(at - q) < 15.0 for q in placed):
                at = at + np.array([0.0, 0.0, 12.0])
            placed.append(at)
            v3.add_polyline(np.array([centre, at]), rgb=CEMENT_RGB, width_px=2.0,
                            group="implants")
            v3.add_label(at, "cement", rgb=CEMENT_RGB, group="implants")

    def _draw_trajectories(self) -> None:
        v3 = self.win.view3d
        v3.remove_group("trajectories")
        r = NEEDLE_OUTER_DIAMETER_MM / 2
        for tid, entry, aim, target, selected in self.drawn_trajectories():
            rgb = NEEDLE_RGB if selected else OTHER_NEEDLE_RGB
            v3.add_cylinder(entry, aim, r, rgb=rgb, group="trajectories")
            # the skin entry, large enough to see when the needle points at the camera
            n = (aim - entry) / max(float(np.linalg.norm(aim - entry)), 1e-6)
            v3.add_cylinder(entry - 1.5 * n, entry, 3.5, rgb=rgb, group="trajectories")
            if not np.allclose(aim, target):
                v3.add_cylinder(aim, target, r, rgb=rgb, group="trajectories")
            del tid
        for entry, aim, target, current in self.drawn_proposals():
            # the proposal looked at as the selected needle, the other proposals faint
            rgb, alpha = (NEEDLE_RGB, 1.0) if current else (PROPOSAL_RGB, 0.35)
            v3.add_cylinder(entry, aim, r, rgb=rgb, opacity=alpha, group="trajectories")
            n = (aim - entry) / max(float(np.linalg.norm(aim - entry)), 1e-6)
            v3.add_cylinder(entry - 1.5 * n, entry, 3.5, rgb=rgb, opacity=alpha,
                            group="trajectories")
            if not np.allclose(aim, target):
                v3.add_cylinder(aim, target, r, rgb=rgb, opacity=alpha, group="trajectories")
        v3.render()

    def _crosshair_moved(self) -> None:
        if self.doc.selected is None and self.att is not None and self.analysis_done:
            self.carm.refresh()

    # --- the C-arm pane's questions -----------------------------------------------------------
    def drr_context(self):
        if self.att is None:
            return None, None, [], [], None
        traj = self.shown_selected()
        iso = traj.target_lps if traj is not None else self.win.state.crosshair_lps
        needles = [] if traj is None else [NeedleMark(traj.entry_lps, traj.target_lps,
                                                      traj.contact_lps)]
        case = self.doc.case
        screws = [] if case is None else [ScrewMark(s.head_lps, s.tip_lps, s.diameter_mm,
                                                    s.halo_mm, s.loose)
                                          for s in case.findings.screws]
        vis_fn = None
        if traj is not None and case is not None:
            from fluoroplan.planner.checks import visibility_check

            def vis_fn(pose, case=case, traj=traj):
                return visibility_check(case, traj, pose)
        return self.att, iso, needles, screws, vis_fn

    def named_pose(self, name: str):
        traj = self.shown_selected()
        if traj is None or self.doc.volume is None:
            return None
        blocks = traj.views
        if name not in blocks:
            if self.doc.case is None:
                return None
            from fluoroplan.planner.checks import views_for

            blocks = views_for(self.doc.case, traj)[0]
        block = blocks[name]
        pose = pose_from_json(block, self.position)
        label = {"bullseye": "Bull's-eye", "working_view": "Working view",
                 "progression": "Progression view"}[name]
        if traj is self.preview:
            label += " (proposal, not accepted)"
        self.carm.angles_label.setToolTip(block.get("how", ""))
        if name == "progression" and block.get("how"):  # true lateral or not, foreshortening
            return pose, f"{label} of {traj.id}: {block['how']}"
        return pose, f"{label} of {traj.id}"

    def go_view(self, name: str) -> None:
        if not self.carm.go_to(name):
            self.win.statusBar().showMessage("Select a trajectory first", 5000)
        self.docks["carm"].raise_()
