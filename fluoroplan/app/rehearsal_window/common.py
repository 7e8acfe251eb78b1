"""What the parts of the rehearsal window share: the step sizes of the needle and of the
C-arm controls, and the patient-words read-out of a point (LPS mm)."""

from __future__ import annotations

ADVANCE_MM = 2.0
ADVANCE_BIG_MM = 5.0
NUDGE_MM = 1.0
SLIDER_STEPS_PER_DEG = 10  # the sliders move in 0.1 deg


def _lps_words(p) -> str:
    x, y, z = (float(v) for v in p)
    return (f"({x:.1f}, {y:.1f}, {z:.1f}) mm  [{'L' if x >= 0 else 'R'} {abs(x):.0f}, "
            f"{'P' if y >= 0 else 'A'} {abs(y):.0f}, {'H' if z >= 0 else 'F'} {abs(z):.0f}]")
