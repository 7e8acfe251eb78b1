"""The workstation's links between its parts, driven with pytest-qt on the phantom case:
Training > Rehearse this case, File > Import vertebra labels (TotalSegmentator NIfTI written
here from the phantom's truth labels), and the recovery offer of an autosaved plan."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

import test_gui_planning as gp  # noqa: E402
from PySide6.QtWidgets import QMessageBox  # noqa: E402

from fluoroplan.model.anatomy import (  # noqa: E402
    CANAL_LABEL,
    FIRST_STRUCTURE_LABEL,
)

# the planning tests' fixtures (each runs once per module where it is module-scoped)
phantom, case_dir, boxes, window = gp.phantom, gp.case_dir, gp.boxes, gp.window
analysed_once = gp.analysed_once
WAIT_MS, _loose, _open, _settle = gp.WAIT_MS, gp._loose, gp._open, gp._settle

pytestmark = pytest.mark.gui

# TotalSegmentator v2 multilabel class ids of the levels in the phantom (written by hand here,
# not taken from fluoroplan's own table, so a wrong table fails)
TOTALSEG_V2 = {"S1": 26, "L5": 27, "L4": 28, "L3": 29, "L2": 30, "L1": 31, "T12": 32, "T11": 33}


def _write_totalseg(path, phantom, shift_lps=(0.0, 0.0, 0.0), ids=None) -> None:
    """The phantom's truth labels as a TotalSegmentator v2 multilabel NIfTI on the CT's grid
    (optionally moved by ``shift_lps`` mm, or with other class ids)."""
    import SimpleITK as sitk

    ids = ids or {n + 1: TOTALSEG_V2[v["label"]] for n, v in enumerate(phantom.truth["vertebrae"])}
    out = np.zeros(phantom.labels.shape, np.uint8)
    for value, class_id in ids.items():
        out[phantom.labels == value] = class_id
    A = phantom.volume.lps_from_ijk
    spacing = np.linalg.norm(A[:3, :3], axis=0)
    im = sitk.GetImageFromArray(out)  # [k, j, i] -> size (i, j, k)
    im.SetSpacing([float(s) for s in spacing])
    im.SetDirection([float(v) for v in (A[:3, :3] / spacing).ravel()])
    im.SetOrigin([float(v) for v in A[:3, 3] + np.asarray(shift_lps, float)])
    sitk.WriteImage(im, str(path))


def _place(qtbot, win, target_id: str, entry_offset) -> None:
    pl = win.planning
    pl.select_target(target_id)
    target = pl.doc.target(target_id)
    pl.toggle_place()
    pl.place_point(target.point_lps + np.asarray(entry_offset, float))
    pl.place_point(target.point_lps)
    _settle(qtbot, win)


# --- Training > Rehearse this case ---------------------------------------------------------------
def test_rehearse_this_case_opens_the_simulator_with_the_plan_as_reference(qtbot, window,
                                                                           case_dir, phantom,
                                                                           boxes):
    from fluoroplan.app.rehearsal_window import RehearsalWindow

    act = window.act_rehearse
    assert act in window.training_menu.actions() and "Rehearse this case" in act.text()
    assert not act.isEnabled()  # nothing loaded
    pl = window.planning
    when_loaded = []  # the action's state once the CT is shown, before its analysis
    window.volume_loaded.connect(lambda _v: when_loaded.append(
        (act.isEnabled(), pl.analysis_task is not None)))
    with qtbot.waitSignal(pl.analysis_ready, timeout=WAIT_MS):
        window.open_folder(case_dir)
    assert when_loaded == [(False, True)]
    assert act.isEnabled()
    qtbot.waitUntil(lambda: window.is_ready and pl.is_settled(), timeout=WAIT_MS)
    target_id = f"loose-screw:{_loose(phantom)['id']}"
    _place(qtbot, window, target_id, [25.0, 70.0, 0.0])
    placed = pl.doc.selected
    assert placed is not None and placed.target.id == target_id

    act.trigger()
    assert len(window.rehearsal_windows) == 1
    reh = window.rehearsal_windows[0]
    qtbot.addWidget(reh)
    assert isinstance(reh, RehearsalWindow) and reh.isVisible()
    # the case's targets, as the planning window lists them
    assert [t.id for t in reh.targets] == [t.id for t in pl.doc.targets]
    combo = [reh.target_combo.itemData(i) for i in range(reh.target_combo.count())]
    assert combo == [t.id for t in pl.doc.targets]
    assert reh.volume is pl.doc.volume
    # the plan's trajectory is the expert reference of its target
    marked = [t for t in reh.plan_json["trajectories"] if t.get("reference")]
    assert [t["id"] for t in marked] == [placed.id]
    qtbot.waitUntil(lambda: reh.session is not None, timeout=WAIT_MS)
    assert reh.session.target.id == target_id
    assert reh.session.setup.reference["source"] == "plan reference"
    assert reh.session.setup.reference["id"] == placed.id
    np.testing.assert_allclose(reh.session.setup.reference["entry_lps"], placed.entry_lps,
                               atol=1e-3)
    assert not boxes
    reh.close()


# --- File > Import vertebra labels ------------------------------------------------------------
def test_import_totalsegmentator_labels_replaces_the_analysis_undoably(qtbot, window, case_dir,
                                                                       phantom, tmp_path, boxes):
    nifti = tmp_path / "spine_totalseg.nii.gz"
    _write_totalseg(nifti, phantom)
    _open(qtbot, window, case_dir)
    pl = window.planning
    assert pl.act_import_labels in window.file_menu.actions() and pl.act_import_labels.isEnabled()
    automatic = pl.doc.analysis
    assert automatic.anatomy.label_source != "label-map"
    # a plan exists: its trajectory is kept and checked again against the new analysis
    fracture = next(t for t in pl.doc.targets if t.kind == "fracture")
    _place(qtbot, window, fracture.id, [30.0, 70.0, 0.0])
    placed = pl.doc.selected
    assert placed.checks

    with qtbot.waitSignal(pl.analysis_ready, timeout=WAIT_MS):
        assert pl.import_labels(str(nifti))
        assert not pl.act_import_labels.isEnabled()  # one import at a time
    imported = pl.doc.analysis
    assert imported is not automatic
    assert [v.label for v in imported.anatomy.vertebrae] == \
        [v["label"] for v in phantom.truth["vertebrae"]]
    assert all(v.label_source == "label-map" for v in imported.anatomy.vertebrae)
    # the map's voxels, not fluoroplan's own separation
    # every vertebra voxel is the map's; the canal's lumen takes precedence on the few of the
    # map's edge voxels it covers (a needle there is in the canal); the canal, foramina, ilia
    # and ribs are labelled beside
    lab = imported.anatomy.labels
    vertebral = (lab > 0) & (lab < FIRST_STRUCTURE_LABEL)
    mapped = phantom.labels > 0
    assert not (vertebral & ~mapped).any()
    taken = mapped & ~vertebral
    assert (lab[taken] == CANAL_LABEL).all() and taken.sum() <= 0.005 * mapped.sum()
    for v, t in zip(imported.anatomy.vertebrae, phantom.truth["vertebrae"], strict=True):
        assert np.linalg.norm(v.centroid_lps - t["centroid_lps"]) < 3.0, t["label"]
    # the targets and the screws' levels come from the new analysis
    assert {t.id for t in pl.doc.targets} >= {f"loose-screw:{_loose(phantom)['id']}", fracture.id}
    assert f"vertebra:{fracture.ref}" in pl.targets_panel.items
    assert pl.stack.undoText() == f"import vertebra labels from {nifti.name}"
    assert pl.doc.trajectory(placed.id) is not None
    assert placed.id in pl.pending_checks or pl.recheck_task is not None
    _settle(qtbot, window)
    rechecked = pl.doc.trajectory(placed.id)
    assert rechecked.checks and rechecked is not placed
    np.testing.assert_allclose(rechecked.entry_lps, placed.entry_lps)
    assert not boxes

    # undo: the automatic analysis again; redo: the imported one
    pl.stack.undo()
    assert pl.doc.analysis is automatic
    pl.stack.redo()
    assert pl.doc.analysis is imported
    _settle(qtbot, window)


def test_unusable_label_maps_are_explained_and_change_nothing(qtbot, window, case_dir, phantom,
                                                              tmp_path, boxes):
    _open(qtbot, window, case_dir)
    pl = window.planning
    before = pl.doc.analysis
    depth = pl.stack.count()
    cases = []
    far = tmp_path / "elsewhere.nii.gz"  # the right vertebrae, 2 m away from this CT
    _write_totalseg(far, phantom, shift_lps=(0.0, 0.0, 2000.0))
    cases.append((far, "do not overlap this CT"))
    organs = tmp_path / "organs.nii.gz"  # classes 1..6: organs, no vertebra
    _write_totalseg(organs, phantom, ids={n + 1: n + 1 for n in range(len(phantom.truth["vertebrae"]))})
    cases.append((organs, "no TotalSegmentator v2 vertebra classes"))
    for path, words in cases:
        n_boxes = len(boxes)
        assert pl.import_labels(str(path))
        qtbot.waitUntil(lambda n=n_boxes: len(boxes) > n, timeout=WAIT_MS)
        kind, title, text = boxes[-1]
        assert kind == "warning" and "importing the vertebra labels" in title
        assert words in text and "Traceback" not in text
        assert pl.doc.analysis is before and pl.stack.count() == depth
        assert pl.relabel_task is None and pl.act_import_labels.isEnabled()


# --- recovery of an autosaved plan --------------------------------------------------------------
def test_autosaved_plan_is_offered_and_restored(qtbot, window, case_dir, phantom, boxes):
    from dataclasses import replace

    from fluoroplan.io import default_series, load_series, scan
    from fluoroplan.io.planfile import autosave, find_recovery
    from fluoroplan.model.plan import Plan
    from fluoroplan.planner.case import PlanningCase
    from fluoroplan.planner.propose import manual_trajectory
    from fluoroplan.planner.targets import targets_from_analysis

    # what a crashed session left: an unsaved plan of this series with two trajectories
    volume = load_series(default_series(scan(case_dir)))
    case = PlanningCase(volume, phantom.truth)
    targets = targets_from_analysis(case)
    screw = next(t for t in targets if t.kind == "loose-screw")
    first = manual_trajectory(case, screw.point_lps + [25.0, 70.0, 0.0], screw.point_lps, screw)
    second = manual_trajectory(case, screw.point_lps + [5.0, 75.0, 10.0], screw.point_lps, screw)
    trajs = (first, replace(second, id=f"{second.id}-2"))
    plan = Plan(series=volume.series_json(), targets=(screw,), trajectories=trajs)
    series_uid = volume.identifiers["series_instance_uid"]
    saved = autosave(plan)
    assert find_recovery(series_uid=series_uid) is not None

    pl = window.planning
    with qtbot.waitSignal(pl.analysis_ready, timeout=WAIT_MS):
        window.open_folder(case_dir)
    box = window.findChild(QMessageBox, "recovery_box")
    assert box is not None and box.isVisible()
    assert "2 trajectories" in box.text() and "Restore it?" in box.text()
    assert not pl.doc.trajectories  # nothing restored before the answer
    box.button(QMessageBox.StandardButton.Yes).click()
    qtbot.waitUntil(lambda: len(pl.doc.trajectories) == 2, timeout=5000)
    assert [t.id for t in pl.doc.trajectories] == [t.id for t in trajs]
    for got, want in zip(pl.doc.trajectories, trajs, strict=True):
        np.testing.assert_allclose(got.entry_lps, want.entry_lps, atol=1e-3)
        np.testing.assert_allclose(got.target_lps, want.target_lps, atol=1e-3)
    assert pl.plan_panel.table.rowCount() == 2
    assert window.windowTitle().startswith("*")  # restored, not saved anywhere
    assert saved.is_file()  # kept until the plan is saved
    _settle(qtbot, window)
    assert all(t.checks for t in pl.doc.trajectories)  # checked on this analysis
    assert not boxes


def test_the_per_case_discard_asks_first_and_closing_keeps_the_autosave(qtbot, window, case_dir,
                                                                         phantom, boxes):
    """Discard asks before the autosaved plan is deleted; Cancel, Keep for later or closing the
    question keep it (issue 13: closing the offer used to delete it)."""
    from fluoroplan.io import default_series, load_series, scan
    from fluoroplan.io.planfile import autosave
    from fluoroplan.model.plan import Plan
    from fluoroplan.planner.case import PlanningCase
    from fluoroplan.planner.propose import manual_trajectory
    from fluoroplan.planner.targets import targets_from_analysis

    volume = load_series(default_series(scan(case_dir)))
    case = PlanningCase(volume, phantom.truth, labels=phantom.labels)
    screw = next(t for t in targets_from_analysis(case) if t.kind == "loose-screw")
    t = manual_trajectory(case, screw.point_lps + [25.0, 70.0, 0.0], screw.point_lps, screw)
    saved = autosave(Plan(series=volume.series_json(), targets=(screw,), trajectories=(t,)))
    pl = window.planning

    def offer():
        with qtbot.waitSignal(pl.analysis_ready, timeout=WAIT_MS):
            window.open_folder(case_dir)
        box = window.findChild(QMessageBox, "recovery_box")
        assert box is not None and box.isVisible()
        return box

    box = offer()
    box.reject()  # closed with Escape / the window's close button
    qtbot.waitUntil(lambda: not box.isVisible(), timeout=5000)
    assert saved.is_file()
    box = offer()
    box.button(QMessageBox.StandardButton.Discard).click()
    confirm = None
    qtbot.waitUntil(lambda: (c := window.findChild(QMessageBox, "recovery_discard_box"))
                    is not None and c.isVisible(), timeout=5000)
    confirm = window.findChild(QMessageBox, "recovery_discard_box")
    assert "cannot be recovered" in confirm.text()
    confirm.button(QMessageBox.StandardButton.Cancel).click()
    qtbot.wait(50)
    assert saved.is_file()
    box = offer()
    box.button(QMessageBox.StandardButton.Discard).click()
    qtbot.waitUntil(lambda: (c := window.findChild(QMessageBox, "recovery_discard_box"))
                    is not None and c.isVisible(), timeout=5000)
    window.findChild(QMessageBox, "recovery_discard_box").button(
        QMessageBox.StandardButton.Discard).click()
    qtbot.waitUntil(lambda: not saved.is_file(), timeout=5000)
    _settle(qtbot, window)
    assert not boxes
