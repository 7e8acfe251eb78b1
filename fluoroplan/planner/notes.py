"""Everything the user must read before trusting a plan, gathered in one list: the CT loader's
notes (slices resampled, position assumed), the analysis' warnings (a grade that may be
another, a canal not closed), and the plan's own (no safe path, a progression view that is not
a true lateral, a failed check, a view the C-arm cannot reach).

Each :class:`Note` says where it comes from and, when it concerns one, which vertebra, screw
or trajectory (``about``: ``"vertebra:L3"``, ``"screw:L2-left"``, ``"trajectory:<id>"``,
``"target:<id>"``), so that the window can put a badge there. The analysis numbers
vertebrae "from the top" before they have names; the note names the level as it is now
(``"L3 (vertebra 4 from the top)"``), relabelling included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FROM_TOP = re.compile(r"^Vertebra (\d+) from the top")
_LEVEL = re.compile(r"\b([CTLS]\d{1,2})\b")

SOURCES = ("CT", "analysis", "plan")


@dataclass(frozen=True)
class Note:
    source: str  # "CT" (the loader), "analysis", "plan"
    text: str
    about: str | None = None  # "vertebra:L3", "screw:L2-left", "trajectory:<id>", ...
    severity: str = "warn"  # "info" (said for the record) or "warn" (check it)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"note source must be one of {SOURCES}, not {self.source!r}")

    def as_json(self) -> dict:
        return {"source": self.source, "text": self.text, "about": self.about,
                "severity": self.severity}


def ct_notes(notes) -> list[Note]:
    """The loader's notes (``CTVolume.notes``): what was done to the images on loading."""
    return [Note("CT", str(n), None, "info" if "assumed" not in str(n) else "warn")
            for n in notes]


def analysis_notes(warnings, vertebrae=(), screw_ids=()) -> list[Note]:
    """The analysis' warnings, each tied to the vertebra or screw it names.

    ``vertebrae``: the model's :class:`Vertebra` objects (their ``index`` from the top and
    their current ``label``); ``screw_ids``: the screws' names ("L2-left")."""
    by_index = {int(v.index): v.label for v in vertebrae}
    labels = {v.label for v in vertebrae}
    out: list[Note] = []
    for w in warnings:
        text, about = str(w), None
        m = _FROM_TOP.match(text)
        if m is not None and int(m.group(1)) - 1 in by_index:
            label = by_index[int(m.group(1)) - 1]
            text = f"{label} (vertebra {m.group(1)} from the top){text[m.end():]}"
            about = f"vertebra:{label}"
        else:
            screw = next((s for s in screw_ids if re.search(rf"\b{re.escape(s)}\b", text)),
                         None)
            if screw is not None:
                about = f"screw:{screw}"
            else:
                level = next((lv for lv in _LEVEL.findall(text) if lv in labels), None)
                about = f"vertebra:{level}" if level else None
        out.append(Note("analysis", text, about))
    return out


def plan_notes(plan) -> list[Note]:
    """What the plan itself tells the operator to mind (``plan``: a model :class:`Plan`)."""
    out: list[Note] = []
    for u in plan.unsolved:
        side = f" ({u.side})" if getattr(u, "side", "") else ""
        out.append(Note("plan", f"No safe trajectory for {u.target.ref}, {u.approach}{side}: "
                                f"{u.reason}", f"target:{u.target.id}"))
    for t in plan.trajectories:
        about = f"trajectory:{t.id}"
        for c in t.checks:
            if c.status == "fail":
                out.append(Note("plan", f"{t.id}: FAILS '{c.name}' ({c.display(1)}): "
                                        f"{c.detail}", about))
            elif c.status == "unknown":
                out.append(Note("plan", f"{t.id}: '{c.name}' could not be checked: "
                                        f"{c.detail.removeprefix('NOT CHECKED: ')}", about))
            elif c.name.endswith("view reachable") and c.value == "no":
                out.append(Note("plan", f"{t.id}: the {c.name[:-len(' reachable')]} cannot be "
                                        f"reached by the C-arm ({c.detail})", about))
        prog = t.views.get("progression") or {}
        if prog and prog.get("true_lateral") is False:
            out.append(Note("plan", f"{t.id}: the progression view is not a true lateral: "
                                    f"{prog.get('how', '')}", about))
        if t.edited and not t.checks:
            out.append(Note("plan", f"{t.id}: edited and not checked yet", about, "info"))
    return out


def all_notes(ct: list | tuple = (), warnings: list | tuple = (), vertebrae=(), screw_ids=(),
              plan=None) -> list[Note]:
    """The CT's, the analysis' and the plan's notes, in that order."""
    out = ct_notes(ct) + analysis_notes(warnings, vertebrae, screw_ids)
    if plan is not None:
        out += plan_notes(plan)
    return out


def plan_analysis_notes(analysis_json: dict, vertebrae=(), screw_ids=()) -> dict:
    """What a plan stores of an analysis' notes (its ``analysis`` block): ``ct_notes`` (the
    loader's) and ``warnings`` (the analysis', levels named as they are now)."""
    return {"ct_notes": [str(n) for n in analysis_json.get("notes", [])],
            "warnings": [n.text for n in analysis_notes(analysis_json.get("warnings", []),
                                                        vertebrae, screw_ids)]}


def notes_from_plan_json(doc: dict) -> list[Note]:
    """The notes a saved plan carries: the CT's and the analysis' (stored in its ``analysis``
    block) and those of its trajectories (recomputed from the document by the caller)."""
    a = doc.get("analysis") or {}
    out = ct_notes(a.get("ct_notes", []))
    out += [Note("analysis", str(w), None) for w in a.get("warnings", [])]
    return out
