"""Along the body centreline: where the bodies lie in front of the canal (the density profile
along the midline ray), the vertebral period, the discs (dips between two bright endplates on the
CT's native voxels, chained at the period's spacings) and the body runs between them, long runs
(fusion, cage) split at the expected level."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

PERIOD_MM = (20, 60)
"""Range of vertebral periods (body + disc height, mm) looked for along the column."""
MIN_BODY_MM = 15.0
"""No vertebral body (even a crushed one) is shorter than this along the column."""
MIN_GAP_FRAC = 0.65
"""Two discs are never closer than this fraction of the vertebral period."""
BODY_RAY_MM = 90.0
"""Length of the ray from the canal centre toward anterior that finds the body's depth."""
BODY_BACK_MM = 25.0
"""The body's back half lies within this distance in front of the canal."""
BODY_MAX_DEPTH_MM = 60.0
"""No vertebral body is deeper (antero-posterior) than this."""
BODY_LINE_MM = 70.0
"""Window of the running median that smooths the body centreline's distance from the canal."""
DISC_FRAC_MAX = 0.8
"""A disc candidate: the filled-bone fraction of the body section falls below this."""


def _body_line(hu, metal, cy, cx, cr, sp):
    """Per ROI slice: is there a body in front of the canal, the distance (mm) from the canal
    centre to the body's middle, and the body's half depth.

    The density profile along the midline ray from the canal centre toward anterior is averaged
    over about two vertebral periods (a running median over slices, so discs and dark
    osteoporotic interiors do not matter); the body is the stretch of that profile above the
    level half-way between the canal's and the brightest bone's.
    """
    rz = hu.shape[0]
    d = np.arange(0.0, BODY_RAY_MM, 1.0)
    dx = np.arange(-6.0, 6.1, 2.0)
    kk = np.arange(rz, dtype=float)[:, None, None]
    yy = (cy[:, None, None] - d[None, :, None]) / sp[1]
    xx = (cx[:, None, None] + dx[None, None, :]) / sp[2]
    kk, yy, xx = np.broadcast_arrays(kk, yy, xx)
    vals = np.where(metal, 1000.0, hu).astype(np.float32)
    prof = ndi.map_coordinates(vals, [kk.ravel(), yy.ravel(), xx.ravel()], order=1, mode="nearest")
    prof = prof.reshape(kk.shape).mean(axis=2)  # (rz, nd)
    w = max(3, int(round(BODY_LINE_MM / sp[0])) | 1)
    prof = ndi.median_filter(prof, size=(w, 1), mode="nearest")
    prof = ndi.gaussian_filter1d(prof, 1.5, axis=1, mode="nearest")
    has = np.zeros(rz, bool)
    gap = np.zeros(rz)
    half = np.zeros(rz)
    for k in range(rz):
        p = prof[k]
        i_c = int(min(len(d) - 1, max(1, round(cr[k]))))
        floor = float(p[: i_c + 1].min())
        # the body's back half lies within BODY_BACK_MM of the canal; anything brighter further
        # out (a contrast-filled aorta in front of the body) must not set the level
        i_end = min(len(d), i_c + int(BODY_BACK_MM) + 1)
        i_pk = i_c + int(np.argmax(p[i_c:i_end]))
        peak = float(p[i_pk])
        if peak - floor < 60.0:
            continue
        thr = floor + 0.5 * (peak - floor)
        above = p >= thr
        i0 = i_c + int(np.argmax(above[i_c:]))
        below = np.nonzero(~above[i0:])[0]
        i1 = i0 + (int(below[0]) if len(below) else len(d) - 1 - i0)
        i1 = min(i1, i0 + int(BODY_MAX_DEPTH_MM))
        if d[i1] - d[i0] < 12.0:
            continue
        has[k] = True
        gap[k] = 0.5 * (d[i0] + d[i1])
        half[k] = 0.5 * (d[i1] - d[i0])
    if has.sum() >= 2:
        # a bright structure touching the body's front (contrast-filled aorta, stent graft) makes
        # the stretch too deep: body depth changes slowly along the spine
        typical = float(np.median(half[has]))
        deep = has & (half > 1.35 * typical)
        front = gap - half
        half[deep] = typical
        gap[deep] = front[deep] + typical
        z = np.arange(rz)
        gap = np.interp(z, z[has], gap[has])
        half = np.interp(z, z[has], half[has])
    return has, gap, half


TUBE_FRAC = 0.5
"""Radius of the full-resolution tube along the body centreline, in body-section radii."""
TUBE_SMOOTH_MM = 0.7
TUBE_MAX_HU = 1200.0
DISC_CAGE_REACH_MM = 3
"""Metal in the tube this close to a dip means the disc space holds an implant."""
TUBE_INTERIOR_MM = 25
"""Window (mm) of the running median that gives the body interior's level along the tube."""
TUBE_MIN_DIP = 0.08
"""A disc dips at least this fraction of the column's contrast below its two endplates."""
DISC_REACH_MM = 7
"""A disc centre has a bright endplate within this distance on both sides; the middle of a
vertebral body (taller than twice this) does not."""


def _disc_score(prof: np.ndarray) -> np.ndarray:
    """How much darker a point is than the brightest profile within DISC_REACH_MM on *both*
    sides (HU): high at disc centres, low inside bodies and on endplates."""
    w = DISC_REACH_MM
    pad = np.pad(prof, w, mode="edge")
    win = np.lib.stride_tricks.sliding_window_view(pad, w)
    n = len(prof)
    left = win[0:n].max(axis=1)  # prof[s-w .. s-1]
    right = win[w + 1 : w + 1 + n].max(axis=1)  # prof[s+1 .. s+w]
    return np.minimum(left, right) - prof


def _body_period(frac: np.ndarray) -> float:
    """Vertebral period (mm) along the column: the first strong peak of the autocorrelation of
    the bone-fraction profile between 20 and 60 mm."""
    col = frac > 0.2
    if col.sum() < 40:
        return 30.0
    a, b = np.nonzero(col)[0][[0, -1]]
    x = frac[a : b + 1] - frac[a : b + 1].mean()
    n = len(x)
    lags = np.arange(PERIOD_MM[0], min(PERIOD_MM[1], n // 2) + 1)
    if len(lags) < 3:
        return 30.0
    ac = np.array([np.dot(x[:-k], x[k:]) / (n - k) for k in lags])
    peaks = [i for i in range(1, len(ac) - 1) if ac[i] >= ac[i - 1] and ac[i] >= ac[i + 1] and ac[i] > 0]
    if not peaks:
        return float(lags[int(np.argmax(ac))])
    i = max(peaks, key=lambda q: ac[q])
    # a strong peak at half the lag is the fundamental (the best peak was its multiple)
    half = [q for q in peaks if abs(2 * lags[q] - lags[i]) <= 4 and ac[q] >= 0.8 * ac[i]]
    return float(lags[half[0]] if half else lags[i])


def _tube_profile(full, C, e1, e2, sp, radius) -> tuple[np.ndarray, np.ndarray]:
    """Mean HU at full resolution in a thin tube of ``radius`` mm around the body centreline
    ``C`` (1 mm steps, grid mm): the native voxels keep the thin discs and their bright endplates
    that the block average blurs away. Metal occupies like bright bone; also returns the
    fraction of each step's samples that are metal."""
    hu_c, metal_c, f = full
    r = float(max(radius, 2.0))
    g = np.arange(-r, r + 1e-6, 1.0)
    uu, vv = np.meshgrid(g, g, indexing="ij")
    inside = uu**2 + vv**2 <= r**2
    uu, vv = uu[inside], vv[inside]
    pts = C[:, None, :] + uu[None, :, None] * e1[:, None, :] + vv[None, :, None] * e2[:, None, :]
    fz = np.asarray(f, float)
    idx = (pts / sp * fz + (fz - 1.0) / 2.0).reshape(-1, 3).T
    vals = ndi.map_coordinates(hu_c, idx, output=np.float32, order=1, mode="nearest")
    metal = ndi.map_coordinates(metal_c.view(np.uint8), idx, order=0, mode="nearest") > 0
    vals = np.where(metal, TUBE_MAX_HU, np.minimum(vals, TUBE_MAX_HU))
    prof = vals.reshape(len(C), -1).mean(axis=1)
    metal_frac = metal.reshape(len(C), -1).mean(axis=1)
    return ndi.gaussian_filter1d(prof, TUBE_SMOOTH_MM, mode="nearest"), metal_frac


def _endplate_pair_depth(tube: np.ndarray, col: np.ndarray) -> np.ndarray:
    """How far the *lower* of the brightest points within ``DISC_REACH_MM`` on either side (a
    disc's two endplates) rises above both the point itself and the local body interior (the
    running median over a vertebral period), relative to the column's endplate contrast. About
    0 inside a body, whose cortices are further apart than that, and at a trabecular dip, whose
    sides are no brighter than the interior."""
    w = DISC_REACH_MM
    pad = np.pad(tube, w, mode="edge")
    win = np.lib.stride_tricks.sliding_window_view(pad, w)
    n = len(tube)
    sides = np.minimum(win[0:n].max(axis=1), win[w + 1 : w + 1 + n].max(axis=1))
    interior = ndi.median_filter(tube, size=TUBE_INTERIOR_MM, mode="nearest")
    score = np.maximum(sides - np.maximum(tube, interior), 0.0)
    vals = tube[col] if col.sum() >= 10 else tube
    scale = float(np.percentile(vals, 95) - np.median(vals))
    return np.clip(score / max(scale, 1.0), 0.0, 1.0)


def _find_discs_frac(
    frac: np.ndarray, tube: np.ndarray | None = None, tube_metal: np.ndarray | None = None
) -> np.ndarray:
    """Disc centres (indices along the 1 mm profile) from the fraction of the body section that is
    (hole-filled) bone: the chain of local minima with the most total depth whose spacings stay
    within a vertebral period (a body is never split: spacings below ``MIN_GAP_FRAC`` periods
    are impossible; a spacing near two periods is a disc not seen, split later).

    With the full-resolution tube profile (``tube``), a candidate is a dip of the tube between
    two bright endplates close on either side and its depth is that dip; a dark body interior
    between cortices a body's height apart is no candidate, nor is a disc space holding metal
    (an interbody cage: no disc seen, the level is split where expected)."""
    period = _body_period(frac)
    if tube is not None:
        dip = _endplate_pair_depth(tube, frac > 0.2)
        if tube_metal is not None:
            near = ndi.maximum_filter1d(tube_metal, 2 * DISC_CAGE_REACH_MM + 1, mode="nearest")
            dip = np.where(near > 0.02, 0.0, dip)
        # the deepest point of each dip (a thick disc's flat floor: its middle, below)
        m = (dip >= ndi.maximum_filter1d(dip, 5, mode="nearest")) & (dip >= TUBE_MIN_DIP)
    else:
        m = (frac <= ndi.minimum_filter1d(frac, 7, mode="nearest")) & (frac < DISC_FRAC_MAX)
    # a disc lies between two bodies: bone on both sides within a period
    w = int(round(period))
    pad = np.pad(frac, w, mode="constant")
    win = np.lib.stride_tricks.sliding_window_view(pad, w)
    n = len(frac)
    before = win[0:n].max(axis=1)
    after = win[w + 1 : w + 1 + n].max(axis=1)
    m &= (before >= 0.6) & (after >= 0.6)
    cand = np.nonzero(m)[0]
    # one candidate per flat minimum
    if len(cand) == 0:
        return cand
    groups = [[cand[0]]]
    for c in cand[1:]:
        if c - groups[-1][-1] > 3:
            groups.append([c])
        else:
            groups[-1].append(c)
    if tube is not None:
        cand = np.array([int(round(0.5 * (g[0] + g[-1]))) for g in groups])
    else:
        cand = np.array([g[0] for g in groups])
    depth = dip[cand] if tube is not None else 1.0 - frac[cand]
    k = len(cand)
    best = depth.copy()
    prev = -np.ones(k, int)
    lo, hi = max(MIN_BODY_MM + 4.0, MIN_GAP_FRAC * period), 1.4 * period
    for i in range(k):
        d = cand[i] - cand[:i]
        ok = ((d >= lo) & (d <= hi)) | ((d >= 1.7 * period) & (d <= 2.4 * period))
        if not ok.any():
            continue
        js = np.nonzero(ok)[0]
        dd = d[js].astype(float)
        r = dd / period
        pen = 4.0 * (r - np.rint(r).clip(1, 2)) ** 2 + np.where(dd > hi, 0.5, 0.0)
        val = best[js] - pen + depth[i]
        j = int(np.argmax(val))
        if val[j] > best[i]:
            best[i] = val[j]
            prev[i] = js[j]
    i = int(np.argmax(best))
    out = []
    while i >= 0:
        out.append(int(cand[i]))
        i = prev[i]
    return np.array(sorted(out), int)


def _runs_between(discs: np.ndarray, n: int, frac: np.ndarray) -> list[tuple[int, int]]:
    """Body runs between consecutive discs; the runs before the first and after the last disc
    count when they hold bone."""
    edges = [0] + [int(d) for d in discs] + [n - 1]
    out = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        a1 = a if a == 0 else a + 2
        b1 = b if b == n - 1 else b - 2
        if b1 - a1 + 1 < 6:
            continue
        seg = frac[a1 : b1 + 1]
        if seg.mean() < 0.4 and (seg > 0.6).sum() < 8:
            continue
        # only the part of the run that holds bone (not the empty column beyond the spine)
        held = np.nonzero(seg > 0.3)[0]
        a1, b1 = a1 + int(held[0]), a1 + int(held[-1])
        if b1 - a1 + 1 < 6:
            continue
        out.append((a1, b1))
    return out


def _runs(mask: np.ndarray, min_len: int, max_gap: int) -> list[tuple[int, int]]:
    """Inclusive (start, stop) index runs of True, bridging gaps <= max_gap, dropping short ones."""
    m = mask.copy()
    if max_gap > 0:
        m = ndi.binary_closing(np.pad(m, max_gap, mode="edge"), np.ones(max_gap + 1, bool))[max_gap:-max_gap]
    lab, n = ndi.label(m)
    out = []
    for sl in ndi.find_objects(lab):
        a, b = sl[0].start, sl[0].stop - 1
        if b - a + 1 >= min_len:
            out.append((a, b))
    return out


class _SplitRun(tuple):
    """A body run cut at an expected level (no disc seen): its ends are not endplates."""

    def __new__(cls, a: int, b: int):
        return super().__new__(cls, (a, b))


def _split_long_runs(runs, frac, warnings):
    """Split a body run much longer than its neighbours (fused levels, interbody cage)."""
    lens = np.array([b - a + 1 for a, b in runs], float)
    inner = lens[1:-1] if len(lens) > 3 else lens
    ref = float(np.median(inner))
    starts = np.array([a for a, _ in runs], float)
    steps = np.diff(starts)
    steps = steps[steps < 1.5 * np.median(steps)] if len(steps) else steps
    period = float(np.median(steps)) if len(steps) else ref
    disc = max(0.0, period - ref)
    out = []
    for a, b in runs:
        L = b - a + 1
        # n bodies and n - 1 discs: L + disc = n periods
        k = int(round((L + disc) / period)) if period > 0 else 1
        if L > 1.6 * ref and k >= 2:
            cuts = [a + int(round(L * q / k)) for q in range(1, k)]
            # move each cut to the weakest bone fraction nearby
            w = max(2, int(0.25 * ref))
            moved = []
            for c in cuts:
                lo, hi = max(a + 3, c - w), min(b - 3, c + w)
                moved.append(lo + int(np.argmin(frac[lo : hi + 1])) if hi > lo else c)
            cuts = moved
            pieces = [a] + cuts + [b + 1]
            for p0, p1 in zip(pieces[:-1], pieces[1:], strict=True):
                out.append(_SplitRun(p0, p1 - 1))
            warnings.append(
                f"Two or more bodies without a visible disc between them ({L} mm along the spine) "
                "were split at the expected level (fusion, interbody cage or a collapsed disc)."
            )
        else:
            out.append((a, b))
    return out

