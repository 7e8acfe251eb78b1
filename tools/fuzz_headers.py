"""Seeded header fuzzer over the demo series: every case must load or be refused, never crash.

Each case copies the demo DICOM series (hard links), damages the headers of one file, a few
files or all of them (an element given a lying or junk value, deleted, bytes flipped, the file
cut short, replaced by a pipe, a directory, a device link or junk), and runs
``fluoroplan series CASE --load`` (every check of the planner's loader) in a subprocess with a
timeout. A case passes when the command exits 0, or 2 with a one-line ``fluoroplan series:``
message on stderr; a traceback, another exit code, a warning on the terminal or a timeout is a
failure.

The damage is done on the file's bytes (elements re-encoded by hand, explicit VR little
endian), so values no DICOM writer would accept can be planted.

Usage::

    python tools/fuzz_headers.py [--cases 420] [--seed 13] [--jobs N] [--command analyze]

prints one line per failure and a summary (cases, loaded, refused, tracebacks, hangs, other
exit codes, slowest refusal); exit code 1 if any case failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# VRs whose explicit-VR header has a 4-byte length (and 2 reserved bytes).
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"}

_NUMBER_JUNK = [
    "0", "-1", "-0", "1e9", "1e308", "1e400", "nan", "NaN", "inf", "-inf", "", " ", "abc",
    "65535", "4294967296", "1e-9", "3.5", "1\\2", "1\\2\\3\\4\\5\\6\\7", "9" * 401, "\x00",
    "1,5", "100000000", "-2147483649", "0x10", "1e-320",
]
_TEXT_JUNK = ["", "\\", "\\\\\\", "x" * 5000, "\x00\x00", "CT\\MR", " ", "ÄÖÜ", "\u202e"]
_RAW_JUNK = [b"\xff\xfe\xfd\xfc", b"\xc3\x28", b"\x00", b"\x80" * 64]
_UID_JUNK = ["", "1.2.3", "not a uid", "1.2." + "9" * 70, "1..2", "0.0", "1.2.840.10008.1.2.4.50",
             "1.2.840.10008.1.2.2", "1.2.840.10008.1.2", "1.2.840.10008.1.2.5",
             "1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.1.3.10"]
_US_VALUES = [0, 1, 2, 7, 8, 12, 15, 16, 17, 24, 32, 64, 255, 256, 1024, 4096, 32768, 65535]

# keyword: (group, element, VR, kind)
_TAGS = {
    "TransferSyntaxUID": (0x0002, 0x0010, b"UI", "uid"),
    "MediaStorageSOPInstanceUID": (0x0002, 0x0003, b"UI", "uid"),
    "SpecificCharacterSet": (0x0008, 0x0005, b"CS", "charset"),
    "ImageType": (0x0008, 0x0008, b"CS", "text"),
    "SOPClassUID": (0x0008, 0x0016, b"UI", "uid"),
    "SOPInstanceUID": (0x0008, 0x0018, b"UI", "uid"),
    "Modality": (0x0008, 0x0060, b"CS", "modality"),
    "SeriesDescription": (0x0008, 0x103E, b"LO", "text"),
    "PatientName": (0x0010, 0x0010, b"PN", "text"),
    "SliceThickness": (0x0018, 0x0050, b"DS", "number"),
    "ConvolutionKernel": (0x0018, 0x1210, b"SH", "text"),
    "GantryDetectorTilt": (0x0018, 0x1120, b"DS", "number"),
    "PatientPosition": (0x0018, 0x5100, b"CS", "position"),
    "StudyInstanceUID": (0x0020, 0x000D, b"UI", "uid"),
    "SeriesInstanceUID": (0x0020, 0x000E, b"UI", "uid"),
    "SeriesNumber": (0x0020, 0x0011, b"IS", "number"),
    "InstanceNumber": (0x0020, 0x0013, b"IS", "number"),
    "ImagePositionPatient": (0x0020, 0x0032, b"DS", "ipp"),
    "ImageOrientationPatient": (0x0020, 0x0037, b"DS", "iop"),
    "FrameOfReferenceUID": (0x0020, 0x0052, b"UI", "uid"),
    "SliceLocation": (0x0020, 0x1041, b"DS", "number"),
    "SamplesPerPixel": (0x0028, 0x0002, b"US", "us"),
    "PhotometricInterpretation": (0x0028, 0x0004, b"CS", "photometric"),
    "NumberOfFrames": (0x0028, 0x0008, b"IS", "frames"),
    "Rows": (0x0028, 0x0010, b"US", "size"),
    "Columns": (0x0028, 0x0011, b"US", "size"),
    "PixelSpacing": (0x0028, 0x0030, b"DS", "spacing"),
    "BitsAllocated": (0x0028, 0x0100, b"US", "us"),
    "BitsStored": (0x0028, 0x0101, b"US", "us"),
    "HighBit": (0x0028, 0x0102, b"US", "us"),
    "PixelRepresentation": (0x0028, 0x0103, b"US", "us"),
    "WindowCenter": (0x0028, 0x1050, b"DS", "number"),
    "RescaleIntercept": (0x0028, 0x1052, b"DS", "number"),
    "RescaleSlope": (0x0028, 0x1053, b"DS", "number"),
    "PixelData": (0x7FE0, 0x0010, b"OW", "pixels"),
}


# ---------------------------------------------------------------------------------------------
# Reading and re-encoding explicit VR little endian elements
# ---------------------------------------------------------------------------------------------
def _elements(data: bytes) -> list[tuple[int, int, int, bytes, int, int]]:
    """(tag, start, end, VR, value start, value length) of the top-level elements."""
    out = []
    pos = 132 if data[128:132] == b"DICM" else 0
    while pos + 8 <= len(data):
        group, elem = struct.unpack_from("<HH", data, pos)
        vr = data[pos + 4:pos + 6]
        if vr in _LONG_VRS:
            if pos + 12 > len(data):
                break
            length = struct.unpack_from("<I", data, pos + 8)[0]
            value = pos + 12
        else:
            length = struct.unpack_from("<H", data, pos + 6)[0]
            value = pos + 8
        tag = (group << 16) | elem
        if length == 0xFFFFFFFF:  # undefined length (a sequence): stop, not used by the demo
            break
        end = value + length
        out.append((tag, pos, end, vr, value, length))
        if tag == 0x7FE00010:
            break
        pos = end
    return out


def _encode(group: int, elem: int, vr: bytes, value: bytes) -> bytes:
    if vr in _LONG_VRS or len(value) > 0xFFFF:
        vr = vr if vr in _LONG_VRS else b"UN"
        return struct.pack("<HH2sHI", group, elem, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr, len(value)) + value


def _text_value(text: str, rng: random.Random) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) % 2 and rng.random() < 0.85:  # now and then leave an odd length
        raw += b" "
    return raw


def _value_of(data: bytes, elements, tag: int) -> str | None:
    for t, _s, _e, _vr, v, n in elements:
        if t == tag:
            return data[v:v + n].decode("latin-1").strip("\x00 ")
    return None


def _lie(kind: str, current: str | None, rng: random.Random, k: int, n_files: int) -> str | None:
    """A plausible but wrong value derived from the current one (None: no lie for this kind)."""
    try:
        nums = [float(x) for x in (current or "").split("\\")]
    except ValueError:
        return None
    if kind == "ipp" and len(nums) == 3:
        choice = rng.randrange(6)
        if choice == 0:
            nums[2] *= 1e6  # positions 1e6 mm apart
        elif choice == 1:
            nums[0] += rng.choice([50.0, -50.0, 0.4, 300.0])
        elif choice == 2:
            nums[2] += rng.choice([0.3, 0.5, -1.0, 2.0, 1e4])
        elif choice == 3:
            nums = [nums[0], nums[1], 0.0]  # every slice at the same depth
        elif choice == 4:
            nums[2] = -nums[2]
        else:
            nums[1] += k * rng.choice([0.1, 1.0, 5.0])  # a drift: tilt, or a lie
        return "\\".join(f"{v:.6g}" for v in nums)
    if kind == "spacing" and len(nums) == 2:
        f = rng.choice([1e-9, 1e-3, 0.5, 1.01, 2.0, 1e3, 1e9])
        return "\\".join(f"{v * f:.6g}" for v in nums)
    if kind == "iop" and len(nums) == 6:
        choice = rng.randrange(4)
        if choice == 0:
            return "0\\0\\0\\0\\0\\0"
        if choice == 1:
            return "1\\0\\0\\1\\0\\0"  # parallel row and column
        if choice == 2:
            return "1\\0\\0\\0\\0\\1"  # coronal
        return "0.9\\0\\0\\0\\0.9\\0"  # not unit length
    if kind == "frames":
        return rng.choice(["2", "300", "100000000", "0", "inf"])
    if kind == "number" and nums:
        return f"{nums[0] * rng.choice([-1.0, 0.0, 1.5, 1e6]):.6g}"
    return None


def _new_value(kind: str, vr: bytes, current: str | None, rng: random.Random, k: int,
               n_files: int) -> tuple[bytes, bytes]:
    """(VR, value bytes) to plant."""
    if rng.random() < 0.08:  # the wrong VR for the tag, with text or binary in it
        return rng.choice([b"UN", b"SQ", b"OB", b"LO", b"US", b"XX", b"\x00\x00"]), rng.choice(
            [b"", b"\x01\x00", b"512 ", b"\xff" * 8] + _RAW_JUNK)
    if vr == b"US":
        roll = rng.random()
        if roll < 0.75:
            values = _US_VALUES if kind != "size" else _US_VALUES + [1, 2, 511, 513, 65535] * 2
            return vr, struct.pack("<H", rng.choice(values))
        return vr, rng.choice([b"", b"\x01", b"\x01\x00\x00", struct.pack("<I", 2 ** 31),
                               struct.pack("<HH", 512, 512)])
    if vr == b"UI":
        if kind == "uid" and rng.random() < 0.2:
            return vr, _text_value(f"1.2.826.0.1.3680043.10.999.{rng.randrange(10 ** 6)}", rng)
        return vr, _text_value(rng.choice(_UID_JUNK), rng)
    if kind in ("ipp", "iop", "spacing", "number", "frames"):
        lie = _lie(kind, current, rng, k, n_files) if rng.random() < 0.55 else None
        if lie is not None:
            return vr, _text_value(lie, rng)
        if rng.random() < 0.1:
            return vr, rng.choice(_RAW_JUNK)
        return vr, _text_value(rng.choice(_NUMBER_JUNK), rng)
    if kind == "modality":
        return vr, _text_value(rng.choice(["MR", "", "ct", "SEG", "CT\\CT", "OT"]), rng)
    if kind == "position":
        return vr, _text_value(rng.choice(["FFS", "HFDL", "", "XYZ", "hfs", "HFS\\FFS"]), rng)
    if kind == "photometric":
        return vr, _text_value(rng.choice(["RGB", "MONOCHROME1", "PALETTE COLOR", "", "YBR_FULL"]),
                               rng)
    if kind == "charset":
        return vr, _text_value(rng.choice(["ISO_IR 192", "GB18030", "bogus", "ISO 2022 IR 87",
                                           "\\ISO_IR 100"]), rng)
    if kind == "pixels":
        return vr, b"\x00" * rng.choice([0, 2, 1000])
    if rng.random() < 0.2:
        return vr, rng.choice(_RAW_JUNK)
    return vr, _text_value(rng.choice(_TEXT_JUNK), rng)


def _set_element(data: bytes, keyword: str, rng: random.Random, k: int, n_files: int,
                 delete: bool) -> bytes:
    group, elem, vr, kind = _TAGS[keyword]
    tag = (group << 16) | elem
    elements = _elements(data)
    current = _value_of(data, elements, tag)
    if delete:
        for t, s, e, *_ in elements:
            if t == tag:
                return data[:s] + data[e:]
        return data
    new_vr, value = _new_value(kind, vr, current, rng, k, n_files)
    if kind == "pixels" and elements and elements[-1][0] == tag:
        _t, s, _e, old_vr, _v, _n = elements[-1]
        return data[:s] + _encode(group, elem, old_vr, value)
    encoded = _encode(group, elem, new_vr, value)
    for t, s, e, *_ in elements:
        if t == tag:
            return data[:s] + encoded + data[e:]
        if t > tag:
            return data[:s] + encoded + data[s:]
    return data + encoded


def _flip(data: bytes, rng: random.Random) -> bytes:
    elements = _elements(data)
    header_end = next((s for t, s, *_ in elements if t == 0x7FE00010), min(len(data), 2000))
    out = bytearray(data)
    for _ in range(rng.choice([1, 2, 4, 8, 32])):
        at = rng.randrange(0, max(header_end, 1))
        out[at] = rng.randrange(256) if rng.random() < 0.7 else out[at] ^ (1 << rng.randrange(8))
    return bytes(out)


def _truncate(data: bytes, rng: random.Random) -> bytes:
    elements = _elements(data)
    pixel = next((s for t, s, *_ in elements if t == 0x7FE00010), None)
    if pixel is not None and rng.random() < 0.6:
        return data[: pixel + rng.randrange(0, 17)]  # in the pixel-data element header
    return data[: rng.randrange(0, len(data))]


# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------
@dataclass
class Case:
    index: int
    scope: str
    damage: str
    files: list[str]
    rc: int | None = None
    seconds: float = 0.0
    message: str = ""
    verdict: str = ""


_FILE_DAMAGE = ["fifo", "directory", "device", "junk", "empty", "text", "symlink-loop"]


def describe_case(seed: int, index: int, names: list[str]) -> tuple[str, str, list[str]]:
    """(scope, damage, file names) of one case, from the seed alone."""
    rng = random.Random(f"{seed}:{index}")
    roll = rng.random()
    if roll < 0.08:
        return "one", rng.choice(_FILE_DAMAGE), [rng.choice(names)]
    roll = rng.random()
    if roll < 0.12:
        scope, files = "all", list(names)
    elif roll < 0.35:
        scope, files = "few", sorted(rng.sample(names, rng.randrange(2, 6)))
    else:
        scope, files = "one", [rng.choice(names)]
    roll = rng.random()
    if roll < 0.62 or scope == "all":
        keyword = rng.choice(list(_TAGS))
        damage = f"{'delete' if rng.random() < 0.12 else 'set'}:{keyword}"
    elif roll < 0.82:
        damage = "flip"
    else:
        damage = "truncate"
    return scope, damage, files


def build_case(base: Path, out: Path, seed: int, index: int, names: list[str]) -> Case:
    scope, damage, files = describe_case(seed, index, names)
    out.mkdir(parents=True)
    chosen = set(files)
    for name in names:
        if name not in chosen:
            os.link(base / name, out / name)
    rng = random.Random(f"{seed}:{index}:damage")
    for k, name in enumerate(files):
        target = out / name
        if damage == "fifo":
            os.mkfifo(target)
        elif damage == "directory":
            target.mkdir()
            os.link(base / names[0], target / "inside.dcm")
        elif damage == "device":
            os.symlink("/dev/zero", target)
        elif damage == "symlink-loop":
            os.symlink(target.name, target)
        elif damage == "junk":
            target.write_bytes(rng.randbytes(rng.choice([10, 200, 600000])))
        elif damage == "empty":
            target.write_bytes(b"")
        elif damage == "text":
            target.write_bytes(b"DICM" * 50 + b"\n not an image\n")
        else:
            data = (base / name).read_bytes()
            if damage == "flip":
                data = _flip(data, rng)
            elif damage == "truncate":
                data = _truncate(data, rng)
            else:
                op, keyword = damage.split(":")
                data = _set_element(data, keyword, rng, k, len(files), delete=op == "delete")
            target.write_bytes(data)
    return Case(index, scope, damage, files if len(files) <= 5 else [f"{len(files)} files"])


def classify(rc: int, stderr: str, command: str) -> tuple[str, str]:
    """(verdict, message) of one finished run: "loaded", "refused", or a failure."""
    lines = [ln for ln in stderr.splitlines() if ln.startswith(f"fluoroplan {command}:")]
    tail = stderr.strip()[-600:]
    if "Traceback" in stderr:
        return "traceback", tail
    if "Warning" in stderr:
        return "warning", tail
    if rc == 0:
        return "loaded", lines[-1] if lines else ""
    if rc == 2 and lines:
        return "refused", lines[-1]
    return f"rc {rc}", tail


def _command_argv(command: str, folder: Path, work: Path, index: int) -> list[str]:
    argv = [sys.executable, "-m", "fluoroplan.cli"]
    if command == "analyze":
        return argv + ["analyze", str(folder), "--json", str(work / f"case{index:04d}.json")]
    return argv + ["series", str(folder), "--load"]


def run_case(base: Path, work: Path, seed: int, index: int, names: list[str], command: str,
             timeout: float) -> Case:
    folder = work / f"case{index:04d}"
    case = build_case(base, folder, seed, index, names)
    argv = _command_argv(command, folder, work, index)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.monotonic()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        case.seconds = time.monotonic() - t0
        case.verdict = "hang"
        case.message = f"no answer within {timeout:.0f} s"
    else:
        case.seconds = time.monotonic() - t0
        case.rc = proc.returncode
        case.verdict, case.message = classify(proc.returncode, proc.stderr, command)
    shutil.rmtree(folder, ignore_errors=True)
    (work / f"case{index:04d}.json").unlink(missing_ok=True)
    return case


def demo_series(cache: Path) -> Path:
    from fluoroplan.resources.demo import demo_case

    return demo_case(cache)


def fuzz(base: Path, cases: int, seed: int, jobs: int, command: str = "series",
         timeout: float = 60.0, work: Path | None = None) -> list[Case]:
    names = sorted(p.name for p in base.iterdir() if p.is_file())
    own = work is None
    work = Path(tempfile.mkdtemp(prefix="fluoroplan-fuzz-")) if own else work
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(run_case, base, work, seed, i, names, command, timeout)
                       for i in range(cases)]
            return [f.result() for f in futures]
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)


def summary(results: list[Case]) -> dict:
    counts: dict[str, int] = {}
    for c in results:
        counts[c.verdict] = counts.get(c.verdict, 0) + 1
    refused = [c for c in results if c.verdict == "refused"]
    slowest = max(refused, key=lambda c: c.seconds, default=None)
    return {
        "cases": len(results),
        "verdicts": counts,
        "failures": sum(1 for c in results if c.verdict not in ("loaded", "refused")),
        "slowest_refusal_s": round(slowest.seconds, 2) if slowest else None,
        "slowest_refusal": asdict(slowest) if slowest else None,
        "slowest_case_s": round(max((c.seconds for c in results), default=0.0), 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=420)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--command", choices=["series", "analyze"], default="series")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--demo-dir", type=Path, default=Path(tempfile.gettempdir()) / "fluoroplan-fuzz-demo")
    ap.add_argument("--report", type=Path, help="write every case as JSON here")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    base = demo_series(args.demo_dir)
    t0 = time.monotonic()
    results = fuzz(base, args.cases, args.seed, args.jobs, args.command, args.timeout)
    for c in results:
        if c.verdict not in ("loaded", "refused"):
            print(f"FAIL case {c.index} [{c.scope} {c.damage} {c.files}]: {c.verdict}: {c.message}")
    info = summary(results)
    info["wall_s"] = round(time.monotonic() - t0, 1)
    print(json.dumps({k: v for k, v in info.items() if k != "slowest_refusal"}, indent=1))
    if info["slowest_refusal"]:
        s = info["slowest_refusal"]
        print(f"slowest refusal: case {s['index']} [{s['scope']} {s['damage']}] "
              f"{s['seconds']:.2f} s: {s['message']}")
    if args.report:
        args.report.write_text(json.dumps([asdict(c) for c in results], indent=1))
    return 1 if info["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
