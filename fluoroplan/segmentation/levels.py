"""Vertebral level names, automatic labelling from anchors, and relabelling on a user statement.

Levels run cranial to caudal: C1..C7, T1..T12, L1..L5, S1 (the sacrum, counted as one level).
A list of vertebrae is always ordered cranial to caudal; labelling is positional: once one
vertebra is known (an anchor or the user's word), every other one follows by counting.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from fluoroplan.segmentation.errors import UnknownLevel

if TYPE_CHECKING:  # pragma: no cover
    from fluoroplan.model.anatomy import Vertebra

LEVELS: tuple[str, ...] = (
    tuple(f"C{n}" for n in range(1, 8))
    + tuple(f"T{n}" for n in range(1, 13))
    + tuple(f"L{n}" for n in range(1, 6))
    + ("S1",)
)
"""All levels, cranial to caudal."""

SOURCE_NONE = "none"
SOURCE_USER = "user"
SOURCE_LAST_RIB = "anchor:T12-last-rib"
SOURCE_SACRUM = "anchor:sacrum"
SOURCE_LABEL_MAP = "label-map"

_LEVEL_RE = re.compile(r"^\s*(?:vertebrae?[_\s-]*)?([CTLS])\s*0*(\d{1,2})\s*$", re.IGNORECASE)


def normalize_level(name: str) -> str:
    """``"l3"``, ``"L03"``, ``"vertebrae_L3"`` -> ``"L3"``; ``"sacrum"`` -> ``"S1"``.

    Raises
    ------
    UnknownLevel
        When the text names no vertebral level.
    """
    text = str(name).strip()
    if text.lower() in ("sacrum", "s", "sacral"):
        return "S1"
    m = _LEVEL_RE.match(text)
    if m:
        level = f"{m.group(1).upper()}{int(m.group(2))}"
        if level in LEVELS:
            return level
    raise UnknownLevel(
        f"'{name}' is not a vertebral level; use a name like C7, T12, L3 or S1 (the sacrum)."
    )


def level_index(name: str) -> int:
    """Position of a level in :data:`LEVELS` (C1 = 0 ... S1 = 24)."""
    return LEVELS.index(normalize_level(name))


def generic_label(position: int) -> str:
    """Placeholder label of the vertebra at ``position`` (0 = most cranial) when no anchor is known."""
    return f"V{position + 1}"


def labels_from_anchor(count: int, anchor_position: int, anchor_level: str) -> list[str | None]:
    """Labels of ``count`` vertebrae (cranial to caudal) when the one at ``anchor_position`` is
    ``anchor_level``; positions that fall outside C1..S1 get None."""
    base = level_index(anchor_level) - anchor_position
    out: list[str | None] = []
    for pos in range(count):
        idx = base + pos
        out.append(LEVELS[idx] if 0 <= idx < len(LEVELS) else None)
    return out


def apply_labels(
    vertebrae: Sequence[Vertebra],
    anchor_position: int,
    anchor_level: str,
    source: str,
    confident: bool,
) -> list[Vertebra]:
    """Label every vertebra by counting from one known vertebra (list ordered cranial to caudal)."""
    labels = labels_from_anchor(len(vertebrae), anchor_position, anchor_level)
    out = []
    for pos, (v, lab) in enumerate(zip(vertebrae, labels, strict=True)):
        if lab is None:
            out.append(
                replace(v, label=generic_label(pos), label_confident=False, label_source=source)
            )
        else:
            out.append(replace(v, label=lab, label_confident=confident, label_source=source))
    return out


def relabel(
    vertebrae: Sequence[Vertebra], index_or_label: int | str, level: str
) -> list[Vertebra]:
    """Relabel all levels from one user statement, e.g. ``relabel(vs, 2, "L3")`` or
    ``relabel(vs, "V3", "L3")``: "this vertebra is L3".

    Parameters
    ----------
    vertebrae : sequence of Vertebra
        Ordered cranial to caudal (as :class:`~fluoroplan.segmentation.anatomy.Anatomy` holds them).
    index_or_label : int or str
        The vertebra the user points at: its ``Vertebra.index`` (an int) or its current label.
    level : str
        What the user says it is (``"L3"``, ``"t12"``, ``"S1"``).

    Returns
    -------
    list of Vertebra
        New objects (the inputs are frozen), ``label_source="user"``, ``label_confident=True``.
    """
    if not vertebrae:
        raise UnknownLevel("There are no vertebrae to label.")
    level = normalize_level(level)
    position = None
    for pos, v in enumerate(vertebrae):
        if isinstance(index_or_label, int) and not isinstance(index_or_label, bool):
            if v.index == index_or_label:
                position = pos
                break
        elif str(v.label).upper() == str(index_or_label).strip().upper():
            position = pos
            break
    if position is None:
        raise UnknownLevel(
            f"No vertebra '{index_or_label}' in this spine; known: "
            + ", ".join(str(v.label) for v in vertebrae)
        )
    first = level_index(level) - position
    last = first + len(vertebrae) - 1
    if first < 0 or last >= len(LEVELS):
        raise UnknownLevel(
            f"Calling vertebra '{index_or_label}' {level} would put the spine's "
            f"{len(vertebrae)} vertebrae outside C1..S1; check the level."
        )
    return apply_labels(vertebrae, position, level, SOURCE_USER, True)
