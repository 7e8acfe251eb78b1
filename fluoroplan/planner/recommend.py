"""Which proposal to take, and why, in clinical words; two proposals compared side by side.

The planner proposes one trajectory per approach and side (``planner.propose``). The
recommendation is the proposal with the best status (every check passed, else the fewest
failures, then warnings), then the lowest cost; the reason names what makes it better than
the next best in the terms a radiologist weighs (how far the needle keeps from the canal,
the metal, the pleura and the exiting root, how deep it goes, whether it passes every
check), never the cost number itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from fluoroplan.model.plan import Check, NoSafeTrajectory, Trajectory

RANK = {"pass": 0, "warn": 1, "unknown": 2, "fail": 3}

APPROACH_WORDS = {
    "transpedicular-parallel": "parallel to the screw",
    "transpedicular-tip": "at the screw tip",
    "transpedicular": "transpedicular",
    "extrapedicular-cranial": "extrapedicular, cranial",
    "extrapedicular-caudal": "extrapedicular, caudal",
    "manual": "placed by hand",
}

# cost term -> (its check, the gain in words for a difference of {d} mm, higher is better)
_TERMS = {
    "canal": ("spinal canal clearance", "{d} farther from the spinal canal", True),
    "medial wall": ("medial pedicle wall before the posterior wall",
                    "{d} more room inside the medial pedicle wall", True),
    "metal": ("metal clearance", "{d} farther from metal", True),
    "pleura": ("lung / pleura", "{d} farther from the pleura", True),
    "foramen": ("neural foramen (exiting root)", "{d} farther from the exiting nerve root",
                True),
    "bone in the way": ("bone in the way", "{d} less of other bone grazed", False),
    "lateral breach": ("lateral pedicle cortex breach",
                       "{d} less outside the lateral pedicle cortex", False),
    "anterior margin": ("tip margin to the anterior cortex",
                        "the tip {d} farther from the anterior cortex", True),
    "lateral entry": ("skin entry from the midline", "the skin entry {d} nearer the midline",
                      False),
}
MIN_GAIN_MM = 0.5  # smaller differences are not worth a word
_KEY_CHECKS = (("spinal canal clearance", "canal"), ("metal clearance", "metal"),
               ("lung / pleura", "pleura"), ("neural foramen (exiting root)", "root"))


def approach_words(approach: str) -> str:
    """"transpedicular-parallel" -> "parallel to the screw" (the approach in clinical words)."""
    return APPROACH_WORDS.get(approach, approach.replace("-", " "))


def proposal_name(traj: Trajectory | NoSafeTrajectory) -> str:
    """"parallel to the screw (left)"."""
    side = traj.side if isinstance(traj, Trajectory) else (traj.side or traj.target.side or "")
    return approach_words(traj.approach) + (f" ({side})" if side else "")


def _value(c: Check | None) -> float | None:
    """A check's distance (a lower bound beyond its search range), or None."""
    if c is None:
        return None
    v = c.at_least if c.value is None else c.value
    return None if v is None or isinstance(v, str) else float(v)


def _checks(traj: Trajectory) -> dict[str, Check]:
    return {c.name: c for c in traj.checks}


def rank_key(traj: Trajectory) -> tuple:
    """Best first: no failed check, fewer failures, fewer warnings, then the lowest cost."""
    st = [c.status for c in traj.checks]
    return (RANK[traj.status], st.count("fail"), st.count("unknown") + st.count("warn"),
            float(traj.cost))


def _mm(v: float) -> str:
    return f"{v:.1f} mm"


def _status_words(traj: Trajectory) -> str:
    bad = [c for c in traj.checks if c.status != "pass"]
    if not bad:
        return "passes every check"
    fails = [c for c in bad if c.status == "fail"]
    warns = [c for c in bad if c.status == "warn"]
    parts = []
    if fails:
        parts.append("FAILS " + ", ".join(f"{c.name} ({c.display(1)})" for c in fails))
    unknown = [c for c in bad if c.status == "unknown"]
    if unknown:
        parts.append("could not check " + ", ".join(c.name for c in unknown))
    if warns:
        parts.append("warns on " + ", ".join(f"{c.name} ({c.display(1)})" for c in warns))
    return "; ".join(parts)


def key_numbers(traj: Trajectory) -> str:
    """"6.2 mm from the canal, 2.0 mm from metal, 101 mm deep"."""
    ch = _checks(traj)
    parts = []
    for name, short in _KEY_CHECKS:
        c = ch.get(name)
        v = _value(c)
        if c is None or v is None:
            continue
        far = ">" if c.beyond_range else ""
        if v < 0:  # inside what it should keep away from
            parts.append(f"{_mm(-v)} through the lung" if name == "lung / pleura" else
                         f"{_mm(-v)} into the exiting root's foramen" if short == "root" else
                         f"{_mm(-v)} into {short}")
            continue
        parts.append(f"{far}{_mm(v)} from the {short}" if short != "metal"
                     else f"{far}{_mm(v)} from metal")
    parts.append(f"{traj.depth_mm:.0f} mm deep")
    return ", ".join(parts)


def _versus(best: Trajectory, other: Trajectory) -> list[str]:
    """What ``best`` does better than ``other``, biggest difference first, in words."""
    out: list[tuple[float, str]] = []
    rb, ro = rank_key(best), rank_key(other)
    if rb[:3] != ro[:3]:
        mine = _checks(best)  # a check the best has not got (another approach's) passed
        bad = [c.name for c in other.checks
               if RANK[c.status] > (RANK[mine[c.name].status] if c.name in mine else 0)]
        if bad:
            out.append((1e6, "the other " + ("fails" if ro[0] == 2 else "warns on")
                        + " " + ", ".join(bad[:2])))
    cb, co = _checks(best), _checks(other)
    for term, (check, words, higher) in _TERMS.items():
        gain = float(other.cost_terms.get(term, 0.0)) - float(best.cost_terms.get(term, 0.0))
        vb, vo = _value(cb.get(check)), _value(co.get(check))
        if gain <= 0.05 or vb is None or vo is None:
            continue
        d = (vb - vo) if higher else (vo - vb)
        if d < MIN_GAIN_MM:
            continue
        out.append((gain, words.format(d=_mm(d))))
    dd = other.depth_mm - best.depth_mm
    if dd > 2.0:
        out.append((float(other.cost_terms.get("depth", 0)) - float(best.cost_terms.get(
            "depth", 0)), f"{dd:.0f} mm shorter"))
    tilt = float(other.cost_terms.get("tilt", 0.0)) - float(best.cost_terms.get("tilt", 0.0))
    if tilt > 0.4 and best.approach == other.approach:  # tilts compare within an approach
        out.append((tilt, "closer to the screw's own axis" if best.approach.endswith(
            "parallel") else "a tilt nearer the one the approach prefers"))
    out.sort(key=lambda t: -t[0])
    return [s for _, s in out[:3]]


@dataclass(frozen=True)
class Recommendation:
    """The proposal to take (``index`` into the proposals, None when none is safe) and why."""

    index: int | None
    headline: str  # "Recommended: parallel to the screw (left)"
    reasons: tuple[str, ...]
    numbers: str = ""  # its key numbers ("6.2 mm from the canal, ..., 101 mm deep")

    @property
    def sentence(self) -> str:
        parts = list(self.reasons[:1]) + ([self.numbers] if self.numbers else []) + list(
            self.reasons[1:])
        return self.headline + (": " + "; ".join(parts) if parts else "") + "."


def recommend(results: list) -> Recommendation:
    """The recommended proposal among ``results`` (Trajectory or NoSafeTrajectory, one per
    approach and side) and the reasons, in clinical words."""
    found = [(n, r) for n, r in enumerate(results) if isinstance(r, Trajectory)]
    if not found:
        if not results:
            return Recommendation(None, "No proposals", ())
        return Recommendation(None, "No safe trajectory", tuple(
            f"{proposal_name(r)}: {r.reason}" for r in results))
    order = sorted(found, key=lambda nr: rank_key(nr[1]))
    n, best = order[0]
    reasons = [_status_words(best)]
    if len(order) > 1:
        nxt = order[1][1]
        vs = _versus(best, nxt)
        if vs:
            reasons.append(f"compared with {proposal_name(nxt)}: " + ", ".join(vs))
        elif rank_key(best)[:3] == rank_key(nxt)[:3]:
            reasons.append(f"{proposal_name(nxt)} is about as good")
    unsafe = [r for r in results if isinstance(r, NoSafeTrajectory)]
    if unsafe:
        reasons.append("no safe path " + ("for " if len(unsafe) == 1 else "for each of ")
                       + " and ".join(proposal_name(r) for r in unsafe))
    verdict = ("Recommended" if best.status in ("pass", "warn") else
               "Least bad (not safe as is)" if best.status == "fail" else
               "Best found (some checks could not be made)")
    return Recommendation(n, f"{verdict}: {proposal_name(best)}", tuple(reasons),
                          key_numbers(best))


def _pose_words(block: dict | None) -> str:
    return "\u2014" if not block else str(block.get("text", "\u2014"))


def comparison(a: Trajectory, b: Trajectory) -> list[tuple[str, str, str, str]]:
    """Two proposals side by side: rows of (what, a, b, which is better: "a", "b" or "")."""
    rows: list[tuple[str, str, str, str]] = []

    def better(va, vb, higher=True, tol=0.05):
        if va is None or vb is None or abs(va - vb) <= tol:
            return ""
        return "a" if (va > vb) == higher else "b"

    def status(t: Trajectory) -> str:
        n = sum(c.status != "pass" for c in t.checks)
        return t.status.upper() + ("" if not n else f" ({n} check{'s' if n > 1 else ''})")

    rows.append(("status", status(a), status(b), better(-rank_key(a)[0] * 100 - rank_key(a)[2],
                                                       -rank_key(b)[0] * 100 - rank_key(b)[2])))
    rows.append(("depth", f"{a.depth_mm:.1f} mm", f"{b.depth_mm:.1f} mm",
                 better(a.depth_mm, b.depth_mm, higher=False, tol=1.0)))
    rows.append(("needle", f"{a.needle.gauge} G {a.needle.length_mm:.0f} mm",
                 f"{b.needle.gauge} G {b.needle.length_mm:.0f} mm", ""))
    for key, label in (("bullseye", "bull's-eye"), ("working_view", "working view"),
                       ("progression", "progression")):
        rows.append((label, _pose_words(a.views.get(key)), _pose_words(b.views.get(key)), ""))
    ca, cb = _checks(a), _checks(b)
    names = list(ca) + [n for n in cb if n not in ca]
    for name in names:
        x, y = ca.get(name), cb.get(name)
        tx = "\u2014" if x is None else f"{x.display(1)} {x.status.upper()}"
        ty = "\u2014" if y is None else f"{y.display(1)} {y.status.upper()}"
        if x is not None and y is not None and x.status != y.status:
            w = better(-RANK[x.status], -RANK[y.status])
        else:
            term = next((t for t, (c, _, _) in _TERMS.items() if c == name), None)
            higher = True if term is None else _TERMS[term][2]
            w = better(_value(x), _value(y), higher) if term is not None else ""
        rows.append((name, tx, ty, w))
    return rows
