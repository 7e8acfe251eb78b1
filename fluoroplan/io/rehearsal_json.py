"""The JSON forms of a rehearsal attempt's parts (the ``fluoroplan.rehearsal/1`` attempt file
that :meth:`fluoroplan.rehearsal.session.RehearsalSession.save` writes): the views of Task 1,
the setup a replay needs, the simulator's state, the score, and the target block."""

from __future__ import annotations

import numpy as np

from fluoroplan.geometry.carm import CArmPose
from fluoroplan.geometry.conventions import CArmLimits
from fluoroplan.io.plan_json import pose_json
from fluoroplan.model.plan import Target
from fluoroplan.model.rehearsal import Phase, RehearsalSetup, RehearsalState, Score

__all__ = [
    "phase_json",
    "score_from_json",
    "score_json",
    "setup_from_json",
    "setup_json",
    "state_json",
    "target_from_json",
]


def _r(v) -> list[float]:
    return [round(float(x), 4) for x in np.asarray(v, float)]


def phase_json(p: Phase) -> dict:
    return {"name": p.name, "label": p.label, "pose": pose_json(p.pose)}


def setup_json(s: RehearsalSetup) -> dict:
    return {
        "patient_position": s.patient_position,
        "phases": [phase_json(p) for p in s.phases],
        "isocenter_lps": [float(v) for v in s.isocenter_lps],
        "tolerance_deg": s.tolerance_deg,
        "limits": _limits_json(s.limits),
        "shot_s": s.shot_s,
        "start_table_deg": list(s.start_table_deg),
        "chain": {k: list(v) if isinstance(v, tuple) else v for k, v in s.chain.items()},
        "needle_length_mm": s.needle_length_mm,
        **({} if s.lateral_limits is None else {"lateral_limits": _limits_json(s.lateral_limits)}),
    }


def _limits_json(lim: CArmLimits) -> dict:
    return {"rotation_deg": list(lim.rotation_deg), "angulation_deg": list(lim.angulation_deg),
            "sid_mm": list(lim.sid_mm)}


def _limits_from_json(lim: dict) -> CArmLimits:
    return CArmLimits(tuple(lim["rotation_deg"]), tuple(lim["angulation_deg"]),
                      tuple(lim["sid_mm"]))


def setup_from_json(attempt: dict) -> RehearsalSetup:
    """The setup of an attempt document (its ``settings``, ``reference`` and ``target``)."""
    s = attempt["settings"]
    chain = {k: tuple(v) if isinstance(v, list) else v for k, v in s.get("chain", {}).items()}
    pos = s["patient_position"]
    phases = tuple(
        Phase(p["name"], p["label"], CArmPose.from_detector_dir(
            np.asarray(p["pose"]["detector_dir_lps"], float), pos, **chain))
        for p in s["phases"]
    )
    lim = s["limits"]
    return RehearsalSetup(
        patient_position=pos, phases=phases, reference=attempt["reference"],
        target=attempt["target"], isocenter_lps=np.asarray(s["isocenter_lps"], float),
        tolerance_deg=float(s["tolerance_deg"]),
        limits=_limits_from_json(lim),
        shot_s=float(s["shot_s"]), start_table_deg=tuple(s["start_table_deg"]),
        chain=chain, needle_length_mm=float(s.get("needle_length_mm", 150.0)),
        lateral_limits=(None if s.get("lateral_limits") is None
                        else _limits_from_json(s["lateral_limits"])),
    )


def state_json(st: RehearsalState) -> dict:
    tip = st.tip_lps
    return {
        "table_deg": [round(v, 4) for v in st.table_deg],
        "phase_index": st.phase_index,
        "declared": {k: round(v, 4) for k, v in st.declared.items()},
        "shots": st.shots,
        "fluoro_s": round(st.fluoro_s, 4),
        "dap_cm2s": round(st.dap_cm2s, 3),
        "entry_lps": None if st.entry_lps is None else _r(st.entry_lps),
        "tip_lps": None if tip is None else _r(tip),
        "depth_mm": round(st.depth_mm, 4),
        "corrections": st.corrections,
        "ended": st.ended,
        "t_s": round(st.t_s, 3),
        "last_event": st.last_event,
    }


def score_json(sc: Score) -> dict:
    return {
        "total": round(sc.total, 3),
        "out_of": 100,
        "parts": {k: round(v, 3) for k, v in sc.parts.items()},
        "lost": [{"points": round(p, 3), "reason": r} for p, r in sc.lost],
        "metrics": sc.metrics,
    }


def score_from_json(block: dict) -> Score:
    return Score(
        total=float(block["total"]),
        lost=tuple((float(x["points"]), str(x["reason"])) for x in block["lost"]),
        parts=dict(block.get("parts", {})),
        metrics=dict(block.get("metrics", {})),
    )


def target_from_json(block: dict) -> Target:
    """The target of an attempt (a :func:`~fluoroplan.io.plan_json.target_to_json` block;
    level and description may be absent)."""
    return Target(
        kind=block["kind"], ref=block["ref"], level=block.get("level", ""),
        side=block.get("side"), point_lps=np.asarray(block["point_lps"], float),
        description=block.get("description", ""),
    )
