"""Benchmark: fluoroplan's DICOM loader against a bare SimpleITK ImageSeriesReader.

Usage: ``python bench/load.py [PATH]``. Without PATH a 512x512x400 CT series is generated once
(with ``write_series``) into a cached temp folder. Each reader runs in a fresh subprocess, so
the peak memory is honest; the median of several runs is reported. Prints exactly one line::

    load median_s=X sitk_median_s=Y peak_mb=Z

``peak_mb`` is the peak resident memory above the interpreter's baseline (after imports)
during our load. Not a timed test: read the numbers, do not assert on them.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (400, 512, 512)  # k, j, i
RUNS = 5

_CHILD = r"""
import gc, json, sys, threading, time
import psutil
proc = psutil.Process()
which, path = sys.argv[1], sys.argv[2]
if which == "ours":
    from fluoroplan.io.dicom import load_ct
else:
    import SimpleITK as sitk
gc.collect()
base = proc.memory_info().rss
peak = [base]
stop = threading.Event()
def watch():
    while not stop.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.002)
t = threading.Thread(target=watch, daemon=True)
t.start()
t0 = time.perf_counter()
if which == "ours":
    vol = load_ct(path)
    arr = vol.hu
else:
    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(path)
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOff()
    reader.LoadPrivateTagsOff()
    reader.SetOutputPixelType(sitk.sitkInt16)
    img = reader.Execute()
    arr = sitk.GetArrayViewFromImage(img)
elapsed = time.perf_counter() - t0
stop.set()
t.join()
peak[0] = max(peak[0], proc.memory_info().rss)
print(json.dumps({"s": elapsed, "peak_mb": (peak[0] - base) / 2**20,
                  "volume_mb": arr.nbytes / 2**20, "shape": list(arr.shape)}))
"""


def _make_series(folder: Path) -> Path:
    """Write (once) a synthetic 512x512x400 signed 16-bit CT series into ``folder``."""
    done = folder / ".complete"
    if done.exists():
        return folder
    import numpy as np

    from fluoroplan.io.dicom_write import write_series

    rng = np.random.default_rng(0)
    nk, nj, ni = SHAPE
    jj, ii = np.mgrid[0:nj, 0:ni]
    body = ((ii - ni / 2) ** 2 / (0.42 * ni) ** 2 + (jj - nj / 2) ** 2 / (0.33 * nj) ** 2) < 1
    base = np.where(body, 40, -1000).astype(np.int16)
    hu = np.empty(SHAPE, np.int16)
    for k in range(nk):
        hu[k] = base + rng.integers(-20, 21, size=(nj, ni), dtype=np.int16)
    affine = np.array(
        [[0.7, 0, 0, -179.0], [0, 0.7, 0, -179.0], [0, 0, 1.0, -200.0], [0, 0, 0, 1]], float
    )
    write_series(hu, affine, folder)
    done.write_text("ok")
    return folder


def _run(which: str, path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, which, str(path)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        path = Path(argv[1])
    else:
        path = _make_series(Path(tempfile.gettempdir()) / "fluoroplan-bench-512x512x400")
    _run("ours", path)  # warm the page cache
    _run("sitk", path)
    ours, sitk_runs = [], []
    for _ in range(RUNS):  # interleaved so both see the same machine load
        ours.append(_run("ours", path))
        sitk_runs.append(_run("sitk", path))
    med = statistics.median(r["s"] for r in ours)
    smed = statistics.median(r["s"] for r in sitk_runs)
    peak = statistics.median(r["peak_mb"] for r in ours)
    print(f"load median_s={med:.3f} sitk_median_s={smed:.3f} peak_mb={peak:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
