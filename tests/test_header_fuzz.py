"""The seeded header fuzzer over the demo series (issue 13, point 4): 240 damaged copies of the
demo CT, each loaded by ``fluoroplan series --load`` in a subprocess with a timeout, end in a
load (exit 0) or a one-line refusal (exit 2): no traceback, no hang, no other exit code, no
warning on the terminal. The fuzzer itself is in ``tools/fuzz_headers.py``."""

from __future__ import annotations

import importlib.util
import os
import stat
import sys
from pathlib import Path

import pydicom
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("fuzz_headers", ROOT / "tools" / "fuzz_headers.py")
fuzz_headers = importlib.util.module_from_spec(_spec)
sys.modules["fuzz_headers"] = fuzz_headers
_spec.loader.exec_module(fuzz_headers)

CASES = 240  # the suite must stay within 15 minutes; `python tools/fuzz_headers.py --cases 420` runs more
SEED = 13


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    from fluoroplan.resources.demo import demo_case

    return demo_case(tmp_path_factory.mktemp("fuzzdemo"))


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_fuzzer_damages_what_it_says(demo, tmp_path):
    """The damage is real, read back another way (pydicom, os.stat), before trusting a pass."""
    names = _names(demo)
    kinds = [fuzz_headers.describe_case(SEED, i, names)[1] for i in range(CASES)]
    assert {"flip", "truncate", "fifo"} <= set(kinds)
    assert sum(k.startswith("set:") for k in kinds) > CASES // 3
    checked = set()
    for i, damage in enumerate(kinds):
        if damage in checked or damage not in ("set:Rows", "fifo", "truncate", "delete:PixelSpacing"):
            continue
        folder = tmp_path / f"c{i}"
        case = fuzz_headers.build_case(demo, folder, SEED, i, names)
        files = [folder / n for n in fuzz_headers.describe_case(SEED, i, names)[2]]
        for f in files:
            if damage == "fifo":
                assert stat.S_ISFIFO(os.lstat(f).st_mode)
            elif damage == "truncate":
                assert f.stat().st_size < (demo / f.name).stat().st_size
            elif damage == "set:Rows":
                assert f.read_bytes() != (demo / f.name).read_bytes()
            else:
                ds = pydicom.dcmread(f, stop_before_pixels=True, force=True)
                assert "PixelSpacing" not in ds
        untouched = next(n for n in names if n not in {p.name for p in files})
        assert os.path.samefile(folder / untouched, demo / untouched)  # a hard link
        checked.add(damage)
        assert case.damage == damage
    assert checked, "no case of the checked kinds in this seed"


def test_fuzzer_counts_only_clean_outcomes_as_passes():
    """A traceback, a warning, another exit code or a refusal without its one-line message is
    a failure; a load or a clean refusal is a pass."""
    tb = "scan 100%\nTraceback (most recent call last):\n  File x\nOverflowError: boom\n"
    said = "fluoroplan series: The folder x contains no files. Choose the folder."
    assert fuzz_headers.classify(1, tb, "series")[0] == "traceback"
    assert fuzz_headers.classify(2, said + "\n" + tb, "series")[0] == "traceback"
    assert fuzz_headers.classify(0, "x.py:3: RuntimeWarning: overflow\n", "series")[0] == "warning"
    assert fuzz_headers.classify(2, "scan 100% Reading headers\n", "series")[0] == "rc 2"
    assert fuzz_headers.classify(-9, "", "series")[0] == "rc -9"
    assert fuzz_headers.classify(2, "scan 50%\n" + said + "\n", "series") == ("refused", said)
    assert fuzz_headers.classify(0, "load 100%\n", "series")[0] == "loaded"


def test_fuzzer_times_out_a_hanging_case(demo, tmp_path, monkeypatch):
    names = _names(demo)
    fifo = next(i for i in range(CASES) if fuzz_headers.describe_case(SEED, i, names)[1] == "fifo")
    # a reader that blocks on the pipe, as the scan did before it read regular files only
    monkeypatch.setattr(fuzz_headers, "_command_argv",
                        lambda command, folder, work, index: [sys.executable, "-c",
                        f"import glob; [open(p, 'rb').read() for p in sorted(glob.glob('{folder}/*'))]"])
    case = fuzz_headers.run_case(demo, tmp_path, SEED, fifo, names, "series", 5.0)
    assert case.verdict == "hang"


def test_header_fuzzer_finds_no_crash_hang_or_other_exit_code(demo):
    results = fuzz_headers.fuzz(demo, CASES, SEED, jobs=max(2, os.cpu_count() or 2),
                                timeout=90.0)
    info = fuzz_headers.summary(results)
    failures = [c for c in results if c.verdict not in ("loaded", "refused")]
    report = "\n".join(f"case {c.index} [{c.scope} {c.damage} {c.files}]: {c.verdict}: "
                       f"{c.message[-300:]}" for c in failures[:10])
    print(f"\nheader fuzzer: {info['cases']} cases, {info['verdicts']}, slowest refusal "
          f"{info['slowest_refusal_s']} s")
    assert not failures, report
    assert info["cases"] == CASES
    # both outcomes occur: the damage is neither all harmless nor all fatal
    assert info["verdicts"].get("refused", 0) > CASES // 4
    assert info["verdicts"].get("loaded", 0) > CASES // 10
