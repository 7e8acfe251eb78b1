"""The PDF report: pages rendered and looked at (images where the DRRs are), text extracted and
compared with the plan file's numbers, fonts embedded, images lossless, anonymised export leaks
nothing, the CLI writes it."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from phantom_fixtures import small_phantom
from scipy import ndimage

from fluoroplan.cli import main
from fluoroplan.geometry.carm import signed
from fluoroplan.io.planfile import WrongSeriesError, save_plan
from fluoroplan.model.plan import format_check_value
from fluoroplan.report.pdf import write_plan_pdf
from fluoroplan.resources.phantom import write_phantom

pytestmark = pytest.mark.skipif(shutil.which("pdftotext") is None or
                                shutil.which("pdftoppm") is None,
                                reason="poppler-utils (pdftotext, pdftoppm) not installed")

NAME, PID, BIRTH = "PHANTOM^SPINE", "FP-PHANTOM-0", "19500101"


@functools.lru_cache(maxsize=1)
def _plan():
    from fluoroplan.planner.propose import plan_case

    ph = small_phantom()
    return plan_case(ph.volume, ph.truth, planner="Dr Test")


def _pdftotext(pdf, page=None) -> str:
    args = ["pdftotext", "-layout"]
    if page is not None:
        args += ["-f", str(page), "-l", str(page)]
    return subprocess.run([*args, str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout


def _page_png(pdf, page: int, out_prefix, dpi: int = 50) -> np.ndarray:
    from PIL import Image

    subprocess.run(["pdftoppm", "-png", "-r", str(dpi), "-f", str(page), "-l", str(page),
                    "-singlefile", str(pdf), str(out_prefix)], check=True)
    return np.asarray(Image.open(f"{out_prefix}.png").convert("RGB"))


def _image_blocks(rgb: np.ndarray, dpi: int, cell_mm: float = 4.0) -> list[tuple[float, float]]:
    """(width, height) in mm of the connected regions of the page that are almost entirely
    non-white (pictures; text never fills a cell)."""
    px = max(1, int(round(cell_mm / 25.4 * dpi)))
    nonwhite = (rgb.min(axis=2) < 235)
    h, w = nonwhite.shape[0] // px, nonwhite.shape[1] // px
    cells = nonwhite[: h * px, : w * px].reshape(h, px, w, px).mean(axis=(1, 3)) > 0.93
    lab, n = ndimage.label(cells)
    out = []
    for sl in ndimage.find_objects(lab):
        out.append(((sl[1].stop - sl[1].start) * cell_mm, (sl[0].stop - sl[0].start) * cell_mm))
    return out


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    plan = _plan()
    plan = dataclasses.replace(plan, trajectories=plan.trajectories[:4])
    doc = save_plan(plan, tmp / "plan.json")
    info = write_plan_pdf(plan, small_phantom().volume, tmp / "plan.pdf")
    return tmp, doc, info


def test_pages_and_images(report):
    tmp, doc, info = report
    n = len(doc["trajectories"])
    assert n >= 3
    # the cover, a page per trajectory, then the warnings and failures explained (when any)
    explained = any(c["status"] != "pass" for t in doc["trajectories"] for c in t["checks"])
    assert info.pages == 1 + n + int(explained) and not info.notes
    pages = subprocess.run(["pdfinfo", str(info.path)], capture_output=True, text=True).stdout
    assert re.search(rf"^Pages:\s+{info.pages}$", pages, re.M) and "(A4)" in pages
    for page in (2, 1 + n):
        rgb = _page_png(info.path, page, tmp / f"p{page}")
        blocks = _image_blocks(rgb, 50)
        big = [b for b in blocks if b[0] >= 60 and b[1] >= 60]
        mid = [b for b in blocks if 40 <= b[0] < 60 and 40 <= b[1] < 60]
        assert len(big) >= 2, blocks  # bull's-eye and progression DRRs (70 mm)
        assert len(mid) >= 2, blocks  # axial and along-needle reformats (47 mm)
        assert (rgb[:10, :10] > 240).all()  # paper stays white outside the pictures
    cover = _page_png(info.path, 1, tmp / "cover")
    assert not [b for b in _image_blocks(cover, 50) if b[0] >= 40 and b[1] >= 40]


def test_text_is_the_plan_files_numbers(report):
    tmp, doc, info = report
    cover = _pdftotext(info.path, 1)
    assert NAME in cover and PID in cover and "1950-01-01" in cover
    for t in doc["targets"]:
        assert t["level"] in cover
    for s in doc["analysis"]["screws"]:
        assert s["id"] in cover
    for n, t in enumerate(doc["trajectories"], start=1):
        text = " ".join(_pdftotext(info.path, n + 1).split())
        assert f"Trajectory {n} of {len(doc['trajectories'])}" in text
        assert t["level"] in text and t["approach"] in text and t["side"].upper() in text
        assert f"depth {t['depth_mm']:.2f} mm" in text
        assert f"{t['depth_mm']:.1f} mm" in text
        for key in ("bullseye", "working_view", "progression"):
            v = t[key]
            assert f"DICOM primary {signed(v['primary_deg'])} deg, secondary " \
                   f"{signed(v['secondary_deg'])} deg" in text
            assert f"table rotation {signed(v['table_primary_deg'])}" in text
            sentence = " ".join(v["text"].split())
            assert sentence[1:] in text  # the room-terms sentence, never a bare angle
        # the working view's tilt from its reference in patient terms, not bare signed deltas
        assert f"From the {t['working_view']['reference']}: tilt the detector" in text \
            or f"From the {t['working_view']['reference']}: no tilt" in text
        assert "-0.0" not in text
        for c in t["checks"]:
            assert c["name"][:30] in text
            val = c["value"]
            shown = format_check_value(val, c["unit"], c.get("at_least"), 2, "-")
            # pdftotext may drop the narrow space of "1 %" (the glyphs sit close)
            assert shown in text or shown.replace(" ", "") in text.replace(" ", ""), \
                (c["name"], shown)
            assert c["status"].upper() in text
        assert "spinous process line" in text
        e = t["entry_lps"]
        assert f"Entry LPS ({e[0]:.1f}, {e[1]:.1f}, {e[2]:.1f}) mm" in text


def test_fonts_embedded_images_lossless(report):
    _, _, info = report
    fonts = subprocess.run(["pdffonts", str(info.path)], capture_output=True, text=True).stdout
    rows = [r for r in fonts.splitlines()[2:] if r.strip()]
    assert rows and all(" yes " in r for r in rows), fonts  # emb column
    assert all("TrueType" in r for r in rows)
    images = subprocess.run(["pdfimages", "-list", str(info.path)], capture_output=True,
                            text=True).stdout
    encs = [r.split()[8] for r in images.splitlines()[2:] if r.strip()]
    assert len(encs) >= 5 and set(encs) == {"image"}, images  # Flate, no "jpeg"/"jpx"


def test_anonymised_export_leaks_nothing(tmp_path):
    plan = _plan()
    one = dataclasses.replace(plan, trajectories=plan.trajectories[:1])
    vol = small_phantom().volume
    info = write_plan_pdf(one, vol, tmp_path / "teach.pdf", anonymize=True)
    raw = info.path.read_bytes()
    text = _pdftotext(info.path)
    meta = subprocess.run(["pdfinfo", str(info.path)], capture_output=True, text=True).stdout
    for secret in (NAME, PID, BIRTH, "1950-01-01", "PHANTOM", "Dr Test",
                   vol.identifiers["series_instance_uid"], vol.identifiers["study_instance_uid"]):
        assert secret.encode() not in raw
        assert secret not in text and secret not in meta
    assert "ANONYMISED" in text
    # the same plan not anonymised does carry them (so this test can fail)
    named = write_plan_pdf(one, vol, tmp_path / "named.pdf")
    assert NAME in _pdftotext(named.path) and "Dr Test" in subprocess.run(
        ["pdfinfo", str(named.path)], capture_output=True, text=True).stdout


def test_3d_unavailable_is_noted(tmp_path, monkeypatch):
    import fluoroplan.geometry.render3d as r3d

    monkeypatch.setattr(r3d, "offscreen_status", lambda: (False, "no OpenGL on this test box"))
    plan = _plan()
    one = dataclasses.replace(plan, trajectories=plan.trajectories[:1])
    info = write_plan_pdf(one, small_phantom().volume, tmp_path / "no3d.pdf")
    assert info.notes and "no OpenGL on this test box" in info.notes[0]
    text = " ".join(_pdftotext(info.path).split())
    assert "3-D view not available: no OpenGL on this test box" in text


def test_other_ct_refused(tmp_path):
    vol = small_phantom().volume
    other = dataclasses.replace(vol, identifiers={**vol.identifiers,
                                                  "series_instance_uid": "9.9.9"})
    with pytest.raises(WrongSeriesError, match="9.9.9"):
        write_plan_pdf(_plan(), other, tmp_path / "x.pdf")
    assert not (tmp_path / "x.pdf").exists()


def test_cli_pdf_anonymize_and_markups(tmp_path):
    """``fluoroplan plan PATH --pdf --anonymize --markups`` on a saved plan of the CT (the
    planning itself is covered by test_cli; here the writing)."""
    write_phantom(tmp_path / "case", small_phantom())
    dicom = tmp_path / "case" / "dicom"
    plan = _plan()
    saved = tmp_path / "saved.json"
    save_plan(dataclasses.replace(plan, trajectories=plan.trajectories[:2]), saved)
    j, pdf, mrk = tmp_path / "plan.json", tmp_path / "teach.pdf", tmp_path / "plan.mrk.json"
    assert main(["plan", str(dicom), "--from-plan", str(saved), "--json", str(j), "--pdf",
                 str(pdf), "--anonymize", "--markups", str(mrk), "--quiet"]) == 0
    doc = json.loads(j.read_text())
    orig = json.loads(saved.read_text())
    # re-saved as a teaching copy (test_anonymize_export): the same plan, no identity
    assert doc["trajectories"] == orig["trajectories"] and doc["series"]["teaching_copy"]
    assert doc["series"]["series_instance_uid"] != orig["series"]["series_instance_uid"]
    text = _pdftotext(pdf)
    assert NAME not in text and PID not in text and NAME.encode() not in pdf.read_bytes()
    assert "ANONYMISED" in text
    assert len(json.loads(mrk.read_text())["markups"]) == 2 + len(doc["analysis"]["screws"]) + 1
    named = tmp_path / "named.pdf"
    assert main(["plan", str(dicom), "--from-plan", str(saved), "--pdf", str(named),
                 "--quiet"]) == 0
    text = " ".join(_pdftotext(named).split())
    assert NAME in text
    for t in doc["trajectories"]:
        assert f"depth {t['depth_mm']:.2f} mm" in text
    # the teaching copy belongs to no CT
    assert main(["plan", str(dicom), "--from-plan", str(j), "--pdf", str(named), "--quiet"]) == 2
    # a plan of another CT is refused with exit code 2, naming both series
    other = json.loads(saved.read_text())
    other["series"]["series_instance_uid"] = "1.2.3.999"
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert main(["plan", str(dicom), "--from-plan", str(tmp_path / "other.json"), "--pdf",
                 str(named), "--quiet"]) == 2


def test_every_warning_is_explained_in_words(report):
    """The page after the trajectories says why each warned or failed check is so."""
    tmp, doc, info = report
    bad = [(t, c) for t in doc["trajectories"] for c in t["checks"] if c["status"] != "pass"]
    if not bad:
        pytest.skip("this plan has no warning to explain")
    n = len(doc["trajectories"])
    text = " ".join(" ".join(_pdftotext(info.path, p).split())
                    for p in range(n + 2, info.pages + 1))
    assert "Warnings, failures and checks not made explained" in text
    for t, c in bad:
        assert " ".join(c["detail"].split())[:60] in text, (t["id"], c["name"])


def test_notes_of_the_ct_the_analysis_and_the_plan_are_printed(tmp_path):
    """Issue 16, point 2: what the workstation's Notes list is on the PDF's cover too."""
    from fluoroplan.model.plan import Check

    plan = _plan()
    t0 = plan.trajectories[0]
    failing = dataclasses.replace(t0, checks=(*t0.checks, Check(
        "spinal canal clearance", -1.5, 0.0, "fail", "mm", "the needle enters the canal")))
    warning = ("L3 (vertebra 4 from the top): graded 2 from a 27 % height loss, but heights "
               "read to +-1.5 mm on this CT allow grade 1 to 2: check it on the sagittal view.")
    one = dataclasses.replace(plan, trajectories=(failing,), analysis={
        **plan.analysis, "warnings": [warning],
        "ct_notes": ["NIfTI records no patient position: head first supine (HFS) is assumed."]})
    info = write_plan_pdf(one, small_phantom().volume, tmp_path / "notes.pdf")
    cover = " ".join(_pdftotext(info.path, 1).split())
    assert "Notes" in cover
    assert "CT: NIfTI records no patient position: head first supine (HFS) is assumed." in cover
    assert f"Analysis: {warning}" in cover
    assert f"Plan: {failing.id}: FAILS 'spinal canal clearance' (-1.5 mm)" in cover
    # and a plan with nothing to note prints no Notes heading
    clean = dataclasses.replace(plan, trajectories=plan.trajectories[:1])
    if not [c for c in clean.trajectories[0].checks if c.status == "fail"]:
        info = write_plan_pdf(clean, small_phantom().volume, tmp_path / "clean.pdf")
        assert "Notes" not in _pdftotext(info.path, 1).split()
