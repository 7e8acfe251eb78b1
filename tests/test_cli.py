"""The command-line contracts: exit codes, no tracebacks, JSON keys exactly as the issues say."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from phantom_fixtures import small_phantom

from fluoroplan.cli import build_parser, main
from fluoroplan.commands import COMMAND_MODULES
from fluoroplan.io.dicom_write import write_series
from fluoroplan.resources.phantom import write_phantom


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("case")
    write_phantom(folder, small_phantom())
    return folder / "dicom"


def _run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "fluoroplan.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_every_command_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert len(sub.choices) == len(COMMAND_MODULES)
    for name in sub.choices:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0


@pytest.mark.parametrize("args", [
    ["series", "/nonexistent/folder"],
    ["analyze", "/nonexistent/folder", "--json", "/tmp/x.json"],
    ["plan", "/nonexistent/folder", "--json", "/tmp/x.json"],
])
def test_errors_exit_2_without_traceback(args):
    r = _run(*args)
    assert r.returncode == 2, r
    assert "Traceback" not in r.stderr
    assert "does not exist" in r.stderr


def test_not_a_ct_folder_is_refused_clearly(tmp_path):
    (tmp_path / "notes.txt").write_text("not dicom")
    r = _run("analyze", str(tmp_path), "--json", str(tmp_path / "a.json"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("fluoroplan analyze: No readable DICOM")


def test_series_table_marks_default(case_dir, capsys):
    assert main(["series", str(case_dir)]) == 0
    out = capsys.readouterr().out
    assert "*1" in out and "axial" in out and "default:" in out


def test_analyze_json_contract(case_dir, tmp_path):
    out = tmp_path / "analysis.json"
    assert main(["analyze", str(case_dir), "--json", str(out), "--quiet"]) == 0
    d = json.loads(out.read_text())
    assert d["schema"] == "fluoroplan.analysis/1"
    s = d["series"]
    assert set(s) >= {"series_instance_uid", "patient_position", "shape_ijk", "spacing_mm",
                      "affine_lps"}
    assert s["patient_position"] == "HFP" and s["shape_ijk"] == [256, 256, 200]
    assert np.array(s["affine_lps"]).shape == (4, 4)
    assert d["vertebrae"] and d["screws"]
    for v in d["vertebrae"]:
        assert set(v) >= {"label", "label_confident", "centroid_lps", "heights_mm",
                          "fracture_grade"}
        assert set(v["heights_mm"]) >= {"anterior", "middle", "posterior"}
    for sc in d["screws"]:
        assert set(sc) >= {"id", "level", "side", "tip_lps", "head_lps", "axis_lps",
                           "diameter_mm", "length_mm", "halo_mm", "loose"}
        assert sc["side"] in ("left", "right")
        assert abs(np.linalg.norm(sc["axis_lps"]) - 1) < 1e-3
    for r in d["rods"]:
        assert set(r) >= {"side", "points_lps", "diameter_mm"}
    assert set(d["timings_s"]) >= {"load", "implants", "vertebrae"}


def test_levels_override(case_dir, tmp_path):
    out = tmp_path / "analysis.json"
    assert main(["analyze", str(case_dir), "--json", str(out), "--levels", "L1", "--quiet"]) == 0
    labels = [v["label"] for v in json.loads(out.read_text())["vertebrae"]]
    assert labels[0] == "L1" and labels[1] == "L2"


def test_plan_json_contract(case_dir, tmp_path):
    out = tmp_path / "plan.json"
    assert main(["plan", str(case_dir), "--json", str(out), "--quiet"]) == 0
    d = json.loads(out.read_text())
    assert d["schema"] == "fluoroplan.plan/1"
    assert d["series"]["patient_position"] == "HFP"
    assert d["trajectories"], d.get("no_safe_trajectory")
    for t in d["trajectories"]:
        assert t["target"]["kind"] in ("loose-screw", "fracture", "cage", "manual")
        assert t["needle"]["gauge"] == 15 and t["needle"]["outer_diameter_mm"] == 1.829
        assert t["working_view"]["delta_from_screw_bullseye_deg"]
        for c in t["checks"]:
            assert c["status"] in ("pass", "warn", "unknown", "fail")


def test_no_metal_ct_is_a_clear_message(tmp_path):
    """A CT without metal: no screws and a note, not an error."""
    ph = small_phantom(instrumented=(), loose_screw=None)
    write_phantom(tmp_path / "c", ph)
    out = tmp_path / "a.json"
    r = _run("analyze", str(tmp_path / "c" / "dicom"), "--json", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert d["screws"] == []
    assert any("no metal" in w.lower() for w in d["warnings"]), d["warnings"]


def test_non_spine_ct_is_refused_clearly(tmp_path):
    hu = np.full((12, 64, 64), -1000, np.int16)
    yy, xx = np.mgrid[:64, :64]
    hu[:, (yy - 32) ** 2 + (xx - 32) ** 2 < 28 ** 2] = 30  # a water cylinder, no bone
    write_series(hu, np.diag([3.0, 3.0, 3.0, 1.0]), tmp_path / "w")
    r = _run("analyze", str(tmp_path / "w"), "--json", str(tmp_path / "a.json"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "spin" in r.stderr.lower()


def test_demo_without_display_writes_the_results(tmp_path):
    """The README's first command: without a display, one line says so and the results land in
    files (the loader, the analysis, the plan and its PDF all ran on the demo DICOM)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    r = subprocess.run([sys.executable, "-m", "fluoroplan.cli", "demo", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr
    first = r.stdout.splitlines()[0]
    assert first.startswith("No display: writing the demo's results to")
    for name in ("series.txt", "volume.json", "analysis.json", "plan.json", "plan.pdf"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert len(list((tmp_path / "case" / "dicom").glob("*.dcm"))) >= 250
    analysis = json.loads((tmp_path / "analysis.json").read_text())
    assert [s["id"] for s in analysis["screws"] if s["loose"]] == ["L2-left"]
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert any(t["approach"] == "transpedicular-parallel" for t in plan["trajectories"])
    assert list(tmp_path.glob("*-bullseye.png")) and list(tmp_path.glob("*-progression.png"))


@pytest.mark.realdata
def test_analyze_with_a_totalsegmentator_label_map(tmp_path):
    from conftest import shared_data

    ct = shared_data("totalseg-abdomen-ct", "ct.nii.gz")
    labels = shared_data("totalseg-abdomen-ct", "labels_totalseg.nii.gz")
    out = tmp_path / "a.json"
    assert main(["analyze", str(ct), "--labels", str(labels), "--json", str(out), "--quiet"]) == 0
    d = json.loads(out.read_text())
    got = [v["label"] for v in d["vertebrae"]]
    assert got[-3:] == ["L4", "L5", "S1"] and "L1" in got and "T12" in got
    assert all(v["label_confident"] for v in d["vertebrae"])
    assert d["screws"] == []  # the femoral implant is not a screw


@pytest.mark.realdata
def test_analyze_json_centroids_are_the_reference_labels_centres(tmp_path):
    """The CLI contract on the real abdomen CT, without a label map: each JSON vertebra's
    ``centroid_lps`` is the whole vertebra's centre (what a label map's centre of mass gives),
    within 3 mm of TotalSegmentator's label for every level T11..S1 (S1 measured 2.9 mm);
    ``body_centroid_lps`` lies in front of it (the arch is behind the body)."""
    import SimpleITK as sitk
    from conftest import shared_data
    from scipy import ndimage as ndi

    ct = shared_data("totalseg-abdomen-ct", "ct.nii.gz")
    out = tmp_path / "a.json"
    assert main(["analyze", str(ct), "--json", str(out), "--quiet"]) == 0
    d = json.loads(out.read_text())
    ref_im = sitk.ReadImage(str(shared_data("totalseg-abdomen-ct", "labels_totalseg.nii.gz")))
    ref = sitk.GetArrayFromImage(ref_im)
    A = np.array(d["series"]["affine_lps"])
    ids = {"S1": 26, "L5": 27, "L4": 28, "L3": 29, "L2": 30, "L1": 31, "T12": 32, "T11": 33}
    by_label = {v["label"]: v for v in d["vertebrae"]}
    assert set(by_label) == set(ids)
    for name, value in ids.items():
        c = np.array(ndi.center_of_mass(ref == value))[::-1]
        p = A[:3, :3] @ c + A[:3, 3]
        dist = np.linalg.norm(np.array(by_label[name]["centroid_lps"]) - p)
        assert dist < 3.0, (name, dist)
    for name in ("L1", "L2", "L3", "L4", "L5"):
        v = by_label[name]
        assert v["body_centroid_lps"][1] < v["centroid_lps"][1] - 5.0, name  # LPS: +y posterior
