"""The teaching export (issue 13, point 6): ``plan --anonymize`` removes or replaces every
identifying field in every file it writes (PDF text, metadata and images, plan JSON, markups),
after PS3.15 Annex E. A DICOM series of the phantom carries a planted name, ID, birth date,
accession number, institution, physician, series description, study date and UIDs; a NIfTI
one a planted file name; every byte written (raw, inflated PDF streams, the PDF's extracted
text and metadata; Latin-1, UTF-8 and UTF-16) is searched for them. The same runs without
``--anonymize`` carry them, so the search can fail."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from phantom_fixtures import small_phantom

from fluoroplan.io.dicom import load_ct
from fluoroplan.io.plan_json import plan_to_json
from fluoroplan.io.planfile import WrongSeriesError, load_plan
from fluoroplan.report.teaching import teaching_document, teaching_plan, teaching_volume
from fluoroplan.resources.phantom import make_phantom, write_phantom

pytestmark = pytest.mark.skipif(shutil.which("pdftotext") is None
                                or shutil.which("pdfinfo") is None,
                                reason="poppler-utils (pdftotext, pdfinfo) not installed")

TINY = {"shape_ijk": (128, 128, 96), "pixel_mm": 2.0, "slice_mm": 2.0}  # ~6 s a plan
PROJECT = Path(__file__).resolve().parents[1]
LOGIN = "zzloginuser"  # the planner the code records when --planner is not given

PLANTED = {
    "PatientName": "ZZTOPSECRET^ANNA",
    "PatientID": "ZZID998877",
    "PatientBirthDate": "19311224",
    "PatientSex": "F",
    "AccessionNumber": "ZZACC4455",
    "InstitutionName": "ZZ Secret Clinic",
    "InstitutionAddress": "ZZ Hidden Street 7",
    "ReferringPhysicianName": "ZZDOCTOR^HOUSE",
    "PerformingPhysicianName": "ZZPERFORMER^ONE",
    "OperatorsName": "ZZOPERATOR^TWO",
    "StationName": "ZZSTATION9",
    "StudyDescription": "ZZSTUDY lumbar",
    "SeriesDescription": "Spine 2mm ZZTOPSECRET ANNA",
    "StudyID": "ZZSTUDYID31",
    "StudyDate": "19990316",
    "StudyTime": "134501",
}
SECRETS = [*[v for k, v in PLANTED.items() if k != "PatientSex"],
           "ZZTOPSECRET", "ZZID998877", "998877", "1931-12-24", "ZZACC", "Secret Clinic",
           "ZZDOCTOR", "ZZPERFORMER", "ZZOPERATOR", "1999-03-16", LOGIN, "ZZCASEFOLDER"]
NIFTI_NAME = "ZZTOPSECRET_ANNA_ct.nii.gz"
NIFTI_SECRETS = ["ZZTOPSECRET_ANNA_ct", "ZZTOPSECRET", "ZZNIFTIFOLDER", LOGIN]


# --- searching every byte ---------------------------------------------------------------------
def _inflated_streams(raw: bytes) -> list[bytes]:
    out = []
    for m in re.finditer(rb"stream\r?\n", raw):
        end = raw.find(b"endstream", m.end())
        if end < 0:
            continue
        try:
            out.append(zlib.decompressobj().decompress(raw[m.end():end]))
        except zlib.error:
            continue  # not Flate (there is no other filter in these files)
    return out


def _haystacks(paths: list[Path]) -> list[tuple[str, bytes]]:
    """(where, bytes) of every file: its raw bytes; for a PDF also every inflated stream, the
    text poppler extracts and the metadata it reads (text is drawn with subset fonts, so names
    are glyph numbers in the content streams)."""
    out = []
    for p in paths:
        raw = p.read_bytes()
        out.append((p.name, raw))
        if p.suffix == ".pdf":
            out += [(f"{p.name} stream {n}", s) for n, s in enumerate(_inflated_streams(raw))]
            for tool in (["pdftotext", "-layout"], ["pdfinfo", "-meta"], ["pdfinfo"]):
                res = subprocess.run([*tool, str(p), "-"] if tool[0] == "pdftotext"
                                     else [*tool, str(p)], capture_output=True, timeout=60)
                out.append((f"{p.name} {' '.join(tool)}", res.stdout))
    return out


def _encodings(secret: str) -> list[bytes]:
    s = secret.lower()
    return [s.encode("latin-1"), s.encode("utf-8"), s.encode("utf-16-be"),
            s.encode("utf-16-le")]


def _found(secrets, paths) -> list[tuple[str, str]]:
    hay = [(where, data.lower()) for where, data in _haystacks(paths)]
    return [(s, where) for s in secrets for where, data in hay
            if any(e in data for e in _encodings(s))]


# --- the cases ----------------------------------------------------------------------------------
def _cli(*args, env=None):
    return subprocess.Popen([sys.executable, "-m", "fluoroplan.cli", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=PROJECT, env={**os.environ, "LOGNAME": LOGIN, **(env or {})})


def _outputs(folder: Path) -> list[Path]:
    return [folder / "a.json", folder / "a.pdf", folder / "a.mrk.json"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Four ``plan`` runs, two at a time: the DICOM and the NIfTI case, each with and without
    ``--anonymize``. Returns {case: (outputs folder, CompletedProcess-like, secrets)}."""
    root = tmp_path_factory.mktemp("teaching")
    ph = make_phantom(0, **TINY)
    write_phantom(root / "ZZCASEFOLDER", ph)
    dicom = root / "ZZCASEFOLDER" / "dicom"
    uids = set()
    for f in sorted(dicom.iterdir()):
        ds = pydicom.dcmread(f)
        for key, value in PLANTED.items():
            setattr(ds, key, value)
        ds.save_as(f)
        uids |= {ds.SOPInstanceUID, ds.file_meta.MediaStorageSOPInstanceUID}
    uids |= {ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID}
    uid_parts = {u.rsplit(".", 1)[1] for u in uids}
    import nibabel as nib

    (root / "ZZNIFTIFOLDER").mkdir()
    nii = root / "ZZNIFTIFOLDER" / NIFTI_NAME
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ph.volume.lps_from_ijk
    nib.save(nib.Nifti1Image(np.ascontiguousarray(ph.volume.hu.transpose(2, 1, 0)), ras), nii)

    cases = {"dicom": (dicom, [*SECRETS, *uids, *uid_parts]),
             "nifti": (nii, NIFTI_SECRETS)}
    jobs = {}
    for case, (src, _) in cases.items():
        for anon in (True, False):
            out = root / f"{case}-{'anon' if anon else 'plain'}"
            out.mkdir()
            a = _outputs(out)
            jobs[(case, anon)] = (out, [
                "plan", src, "--json", a[0], "--pdf", a[1], "--markups", a[2], "--quiet",
                *(["--anonymize"] if anon else [])])
    done = {}
    keys = list(jobs)
    for pair in (keys[:2], keys[2:]):
        procs = {k: _cli(*jobs[k][1]) for k in pair}
        for k, p in procs.items():
            stdout, stderr = p.communicate(timeout=300)
            done[k] = (jobs[k][0], p.returncode, stdout, stderr, cases[k[0]][1])
    return done


@pytest.mark.parametrize("case", ["dicom", "nifti"])
def test_the_teaching_export_carries_no_identity(runs, case):
    out, rc, stdout, stderr, secrets = runs[(case, True)]
    assert rc == 0, stderr
    assert "anonymised" in stdout
    leaks = _found(secrets, _outputs(out))
    assert not leaks, leaks
    # nor the planted series' fingerprint, nor today's date (the plan's creation time)
    plain = json.loads((runs[(case, False)][0] / "a.json").read_text())
    today = dt.date.today()
    dates = {today.isoformat(), today.strftime("%Y%m%d"), plain["created"][:16]}
    assert not _found([plain["series"]["fingerprint"], *dates], _outputs(out))
    doc = json.loads((out / "a.json").read_text())
    s = doc["series"]
    assert s["teaching_copy"] is True and s["fingerprint"] == "" and s["series_description"] == ""
    assert s["series_instance_uid"].startswith("2.25.") and doc["planner"] == ""
    assert doc["created"] == doc["modified"] == ""
    assert s["affine_lps"] == plain["series"]["affine_lps"]  # the geometry stays
    # the same plan: trajectories, targets and markups as the named run's
    assert [t["id"] for t in doc["trajectories"]] == [t["id"] for t in plain["trajectories"]]
    assert doc["trajectories"] == plain["trajectories"] and doc["targets"] == plain["targets"]
    assert (json.loads((out / "a.mrk.json").read_text())
            == json.loads((runs[(case, False)][0] / "a.mrk.json").read_text()))
    text = subprocess.run(["pdftotext", str(out / "a.pdf"), "-"], capture_output=True,
                          text=True).stdout
    assert "ANONYMISED" in text and "teaching copy" in text


@pytest.mark.parametrize("case", ["dicom", "nifti"])
def test_without_anonymize_the_identity_is_there(runs, case):
    """So the search above can fail: the named outputs carry the name (the file name of a
    NIfTI), the UIDs and the planner."""
    out, rc, _, stderr, secrets = runs[(case, False)]
    assert rc == 0, stderr
    found = {s for s, _ in _found(secrets, _outputs(out))}
    pdf_found = {s for s, _ in _found(secrets, [out / "a.pdf"])}
    if case == "dicom":
        doc = json.loads((out / "a.json").read_text())
        uids = [doc["series"]["series_instance_uid"], doc["series"]["study_instance_uid"]]
        assert {"ZZTOPSECRET^ANNA", "ZZID998877", "Spine 2mm ZZTOPSECRET ANNA", LOGIN,
                *uids} <= found
        assert {"ZZTOPSECRET^ANNA", "1931-12-24", "19990316", LOGIN, *uids} <= pdf_found
    else:
        assert {"ZZTOPSECRET_ANNA_ct", LOGIN} <= found and "ZZTOPSECRET_ANNA_ct" in pdf_found


def test_a_teaching_copy_is_not_reopened_against_the_ct(runs):
    out = runs[("dicom", True)][0]
    src = runs[("dicom", False)][0]
    vol_folder = out.parent / "ZZCASEFOLDER" / "dicom"
    with pytest.raises(WrongSeriesError, match="anonymised teaching copy"):
        load_plan(out / "a.json", load_ct(vol_folder))
    load_plan(out / "a.json")  # still a valid plan file
    load_plan(src / "a.json", load_ct(vol_folder))  # the named one opens


def test_the_pdf_function_the_workstation_calls_anonymises_alike(tmp_path):
    """``write_plan_pdf(..., anonymize=True)`` (the workstation's export) reads only the
    teaching copy: a volume with planted identity and a plan with a planted planner, series
    description and UIDs leave nothing in the PDF."""
    from fluoroplan.planner.propose import plan_case
    from fluoroplan.report.pdf import write_plan_pdf

    ph = small_phantom()
    ids = {**ph.volume.identifiers, "series_description": "Spine 2mm ZZTOPSECRET ANNA",
           "study_date": "19990316", "source_file": "/data/ZZNIFTIFOLDER/" + NIFTI_NAME}
    vol = dataclasses.replace(ph.volume, identifiers=ids, notes=["ZZNOTE file ZZSECRET.dcm"],
                              patient={"name": "ZZTOPSECRET^ANNA", "id": "ZZID998877",
                                       "birth_date": "19311224", "sex": "F"})
    plan = plan_case(vol, ph.truth, planner="ZZPLANNER Smith")
    plan = dataclasses.replace(plan, trajectories=plan.trajectories[:1])
    secrets = ["ZZTOPSECRET", "ZZID998877", "19311224", "1931-12-24", "19990316",
               "ZZPLANNER", "ZZNIFTIFOLDER", "ZZNOTE", "ZZSECRET", plan.created[:16],
               ids["series_instance_uid"], ids["study_instance_uid"], vol.fingerprint()]
    try:  # the workstation's own call, when its module imports without a display
        from fluoroplan.app.planning import _write_pdf
    except Exception:  # noqa: BLE001 - no Qt here: the function it calls
        def _write_pdf(plan, volume, path, anonymize, progress, cancel):
            return write_plan_pdf(plan, volume, path, anonymize=anonymize, progress=progress)
    info = _write_pdf(plan, vol, tmp_path / "teach.pdf", True, None, None)
    assert not _found(secrets, [info.path])
    named = _write_pdf(plan, vol, tmp_path / "named.pdf", False, None, None)
    assert {"ZZTOPSECRET", "ZZPLANNER", "19990316"} <= {s for s, _ in _found(secrets,
                                                                             [named.path])}
    # the document and volume it prints from
    doc = teaching_document(plan_to_json(teaching_plan(plan)))
    assert "ZZPLANNER" not in json.dumps(doc) and "ZZTOPSECRET" not in json.dumps(doc)
    tv = teaching_volume(vol)
    assert tv.patient == {} and tv.notes == [] and "ZZ" not in json.dumps(tv.identifiers)
    assert tv.hu is vol.hu
