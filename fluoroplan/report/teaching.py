"""Teaching exports: the one place where a plan and its CT lose who and where they came from.

``fluoroplan plan --anonymize`` (every file it writes: the plan JSON, the PDF report, the 3D
Slicer markups) and the workstation's anonymised PDF export both go through
:func:`teaching_document` / :func:`teaching_plan` (the plan) and :func:`teaching_volume` (the
CT's identity; its voxels stay, they are what is taught). What becomes of each field follows
the DICOM basic application level confidentiality profile (PS3.15 Annex E, table E.1-1):

=========================================  ===================================================
field                                      in the teaching copy
=========================================  ===================================================
patient name, ID, birth date, sex          removed (E.1-1: Z/X); the PDF says "ANONYMISED"
(``CTVolume.patient``)
accession number, institution name and     never read by the loader, so in no output; the
address, referring / performing            volume's identity is rebuilt from a whitelist, so
physician, operator, station, study ID     none can come in later
study / series instance UID                replaced by fresh random UIDs (``2.25.<uuid4>``,
                                           E.1-1: U); nothing derived from the originals
frame of reference UID, SOP instance UIDs  removed (never written to a plan)
series / study description                 removed (E.1-1: X); it often carries names
study date and time                        removed (E.1-1: Z)
NIfTI file name / source path              removed (it is the series description of a NIfTI)
planner (the operator's or login name)     removed: ``""`` in the JSON, "(withheld)" printed
created / modified time                    removed: ``""`` in the JSON; the PDF's creation
                                           and modification dates are reportlab's fixed
                                           invariant date (2000-01-01), no XMP is written
CT fingerprint (a hash of the voxels)      removed: it would link the copy to the archived
                                           scan of the patient
analysis keys other than levels, screws,   removed (whitelist)
warnings and timings
loader notes (they may name files)         removed
plan notes the user typed                  kept (free text: the user's responsibility)
geometry (shape, spacing, LPS affine),     kept: every position in the plan is in it
levels, screws, targets, trajectories
=========================================  ===================================================

A teaching copy is marked ``series.teaching_copy = true``. Being tied to no CT, it cannot be
opened against one: :func:`fluoroplan.io.planfile.check_series` refuses it in one sentence
(``--from-plan``, ``drr --plan``, the workstation) instead of a series mismatch.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import replace

from fluoroplan.io.plan_json import plan_from_json
from fluoroplan.io.planfile import plan_document

__all__ = ["TEACHING_COPY", "WITHHELD", "is_teaching_copy", "new_uid", "teaching_document",
           "teaching_plan", "teaching_volume"]

TEACHING_COPY = "teaching_copy"
"""Key of the plan's ``series`` block marking an anonymised teaching copy."""

WITHHELD = "(withheld)"
"""What the report prints in place of a removed field."""

SERIES_KEPT = ("patient_position", "shape_ijk", "spacing_mm", "affine_lps")
ANALYSIS_KEPT = ("levels", "screws", "warnings", "timings_s", "planning_s")
IDENTIFIERS_KEPT = ("modality",)


def new_uid() -> str:
    """A fresh DICOM UID under the UUID root (PS3.5 B.2): random, so it traces back to nothing."""
    return f"2.25.{uuid.uuid4().int}"


def teaching_document(doc: dict) -> dict:
    """The teaching copy of a ``fluoroplan.plan/1`` document (a new dict; ``doc`` untouched):
    see the module docstring for what goes."""
    out = copy.deepcopy(doc)
    series = doc.get("series") or {}
    out["series"] = {
        "series_instance_uid": new_uid(),
        "study_instance_uid": new_uid(),
        "series_description": "",
        **{k: copy.deepcopy(series[k]) for k in SERIES_KEPT if k in series},
        "fingerprint": "",
        TEACHING_COPY: True,
    }
    out["planner"] = ""
    out["created"] = ""
    out["modified"] = ""
    analysis = doc.get("analysis") or {}
    out["analysis"] = {k: copy.deepcopy(analysis[k]) for k in ANALYSIS_KEPT if k in analysis}
    return out


def teaching_plan(plan):
    """The teaching copy of a :class:`~fluoroplan.model.plan.Plan` (what ``plan
    --anonymize`` writes as JSON and markups)."""
    return plan_from_json(teaching_document(plan_document(plan)))


def teaching_volume(volume):
    """``volume`` with the same voxels and geometry but no patient, no identifiers other than
    the modality, and no loader notes (the report of a teaching export reads only this)."""
    ids = volume.identifiers or {}
    return replace(volume, identifiers={k: ids[k] for k in IDENTIFIERS_KEPT if k in ids},
                   patient={}, notes=[])


def is_teaching_copy(series: dict) -> bool:
    """Whether a plan's ``series`` block is that of a teaching copy."""
    return bool((series or {}).get(TEACHING_COPY))
