"""JSON files fluoroplan writes and reads: schema names, atomic writes, clear read errors."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from fluoroplan.io.errors import FluoroplanError

ANALYSIS_SCHEMA = "fluoroplan.analysis/1"
PLAN_SCHEMA = "fluoroplan.plan/1"


class BadFileError(FluoroplanError):
    """A fluoroplan file is damaged, of another kind, or from an unknown version."""


def _plain(obj):
    """Convert numpy scalars/arrays (and tuples) to JSON types; NaN/inf become null."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return None if not math.isfinite(v) else round(v, 6)
    return obj


def write_json_atomic(path: str | os.PathLike, data: dict) -> Path:
    """Write ``data`` as JSON to ``path`` atomically (temp file in the same folder + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_plain(data), indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); give it the mode a plain write would have
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


MAX_JSON_INT_DIGITS = 18
"""No fluoroplan file holds an integer longer than this (a 401-digit number is damage)."""


class _Unreadable(ValueError):
    """A JSON value no fluoroplan file holds."""


def _no_constant(name: str):
    raise _Unreadable(f"{name} is not a number a fluoroplan file holds")


def _bounded_int(text: str) -> int:
    digits = text.lstrip("-")
    if len(digits) > MAX_JSON_INT_DIGITS:
        raise _Unreadable(f"an integer of {len(digits)} digits")
    return int(text)


def read_json(path: str | os.PathLike, schema: str | None = None) -> dict:
    """Read a fluoroplan JSON file, checking its ``schema`` when given."""
    path = Path(path)
    if not path.is_file():
        raise BadFileError(f"{path} does not exist. Check the path to the file.")
    try:
        text = path.read_text(encoding="utf-8")
    except PermissionError:
        raise BadFileError(f"{path} cannot be read (no permission). Ask for read access to "
                           "it or copy it somewhere readable.") from None
    try:
        data = json.loads(text, parse_constant=_no_constant, parse_int=_bounded_int)
    except (UnicodeDecodeError, json.JSONDecodeError, _Unreadable) as err:
        raise BadFileError(
            f"{path.name} is damaged and cannot be read ({err}). Nothing was loaded from it; "
            "use a backup or the autosaved copy."
        ) from None
    except RecursionError:
        raise BadFileError(
            f"{path.name} is damaged and cannot be read (its values are nested deeper than any "
            "fluoroplan file). Nothing was loaded from it; use a backup or the autosaved copy."
        ) from None
    if not isinstance(data, dict):
        raise BadFileError(f"{path.name} is not a fluoroplan file (no JSON object inside).")
    if schema is not None:
        found = data.get("schema")
        if found != schema:
            kind = schema.split("/")[0]
            if isinstance(found, str) and found.split("/")[0] == kind:
                raise BadFileError(
                    f"{path.name} is a {kind} file of version '{found}', which this version of "
                    f"fluoroplan cannot read (it reads '{schema}'). Open it with a matching "
                    "version of fluoroplan."
                )
            raise BadFileError(
                f"{path.name} is not a '{schema}' file (its schema is {found!r}). Choose the "
                "right file."
            )
    return data
