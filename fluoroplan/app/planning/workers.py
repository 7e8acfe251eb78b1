"""What the planning controller runs on its worker threads: the analysis of a CT and the
planning look-ups made from it, the proposals for a target, and the PDF report.

The analysis (``segmentation.analysis``, which loads SimpleITK) and the planner (which loads
``scipy.spatial``) are imported when a worker first needs them, so that opening the window
does not wait for them.
"""

from __future__ import annotations

from pathlib import Path

from fluoroplan.io.analysis_json import analysis_json
from fluoroplan.io.progress import Stage
from fluoroplan.report.pdf import write_plan_pdf


def _write_pdf(plan, volume, path, anonymize, progress, cancel):
    return write_plan_pdf(plan, volume, path, anonymize=anonymize, progress=progress)


def _analyse(volume, progress, cancel, label_map: str | None = None):
    from fluoroplan.segmentation.analysis import analyze

    analysis = analyze(volume, progress=Stage(progress, 0.0, 0.9, cancel), cancel=cancel,
                       label_map=label_map)
    return _case_state(volume, analysis, progress)


def label_map_source(path: str | Path) -> Path:
    """What to read for a chosen label map: a TotalSegmentator per-structure mask
    (``vertebrae_L3.nii.gz``, ``sacrum.nii.gz``) stands for its whole folder; anything else
    (a multilabel NIfTI, a ``.seg.nrrd``, a folder) is read as it is."""
    p = Path(path)
    name = p.name.lower()
    if p.is_file() and (name.startswith("vertebrae_") or name.startswith("sacrum.")):
        return p.parent
    return p


def _case_state(volume, analysis, progress):
    from fluoroplan.planner.case import PlanningCase
    from fluoroplan.planner.targets import targets_from_analysis

    progress(0.92, "Preparing the planning look-ups")
    aj = analysis_json(analysis)
    case = PlanningCase(volume, aj, labels=analysis.anatomy.labels)
    return analysis, aj, case, targets_from_analysis(case)


def _propose_all(case, target, progress, cancel):
    from fluoroplan.planner.approaches import applicable
    from fluoroplan.planner.propose import propose

    jobs = applicable(case, target)
    out = []
    for n, (approach, side) in enumerate(jobs):
        progress(n / max(len(jobs), 1), f"Proposing {approach} ({side}) for {target.ref}")
        out.append(propose(case, target, approach, side, cancel))
    progress(1.0, "Proposals ready")
    return out
