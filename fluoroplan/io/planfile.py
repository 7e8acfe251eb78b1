"""Plan files: saving, opening (validated, version-checked, matched to the CT), autosave and
recovery.

A plan file is the ``fluoroplan.plan/1`` JSON document that ``fluoroplan plan --json`` writes
(:func:`fluoroplan.io.plan_json.plan_to_json`): the series and study UIDs, a fingerprint of
the CT, the analysis the plan relied on (levels, screws) and every trajectory with its user
edits (``edited``). Writes are atomic (temp file in the same folder + rename), so a crash
leaves either the old file or the new one, never half of one.

Opening validates the whole document before anything is returned: a damaged file raises
:class:`BadFileError` (nothing is half-loaded), a plan of another CT raises
:class:`WrongSeriesError` naming both series, a plan of another schema version is migrated
when a migration exists (there is no older version than ``/1`` yet) or refused with
:class:`UnsupportedVersionError`.

Autosave: after every edit the GUI calls :func:`autosave`. A plan that has a file is
autosaved beside it (``PLAN.json`` -> ``.PLAN.json.autosave``); an unsaved plan to a
per-series file in the recovery folder (``$FLUOROPLAN_RECOVERY_DIR``, else
``$XDG_DATA_HOME/fluoroplan/recovery``, else ``~/.local/share/fluoroplan/recovery``).
:func:`find_recovery` / :func:`find_recoveries` find what a crashed session left;
:func:`discard_recovery` removes it (saving a plan does so too).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fluoroplan.io.jsonio import PLAN_SCHEMA, BadFileError, _plain, read_json, write_json_atomic
from fluoroplan.io.plan_json import PlanFormatError, plan_from_json, plan_to_json
from fluoroplan.model.plan import Plan

__all__ = [
    "AUTOSAVE_SCHEMA",
    "BadFileError",
    "Recovery",
    "UnsupportedVersionError",
    "WrongSeriesError",
    "autosave",
    "autosave_path",
    "check_series",
    "discard_recovery",
    "find_recoveries",
    "find_recovery",
    "load_plan",
    "plan_document",
    "plan_from_document",
    "recovery_dir",
    "save_plan",
]

AUTOSAVE_SCHEMA = "fluoroplan.autosave/1"
PLAN_VERSION = int(PLAN_SCHEMA.rsplit("/", 1)[1])
RECOVERY_ENV = "FLUOROPLAN_RECOVERY_DIR"

# version n -> function turning a version-n document into a version n+1 document. Version 1 is
# the first released plan format, so there is nothing to migrate yet; a /2 format adds its
# "1 -> 2" step here and bumps PLAN_SCHEMA.
MIGRATIONS: dict[int, Callable[[dict], dict]] = {}


class UnsupportedVersionError(BadFileError):
    """A plan file of a schema version this fluoroplan can neither read nor migrate."""


class WrongSeriesError(BadFileError):
    """A plan opened against a CT other than the one it was made on."""


# --- documents ------------------------------------------------------------------------------
def plan_document(plan: Plan) -> dict:
    """The JSON document of ``plan`` exactly as a file holds it.

    Positions are stored to 1 um; the document is made from the plan as re-read from those
    stored numbers, so every derived number (direction, depth) is the one any later reader
    computes: saving, loading and saving again gives the same document. The PDF report and the
    GUI print these numbers.
    """
    first = _plain(plan_to_json(plan))
    return _plain(plan_to_json(plan_from_json(first)))


def plan_from_document(doc: dict, source: str = "the plan") -> Plan:
    """Validate a plan document (migrating an older version) and build the :class:`Plan`.

    Raises :class:`BadFileError` (or a subclass) naming ``source`` and the bad field; nothing
    is returned unless the whole document is valid.
    """
    if not isinstance(doc, dict):
        raise BadFileError(f"{source} is not a fluoroplan plan (no JSON object inside).")
    doc = _migrate(doc, source)
    try:
        return plan_from_json(doc)
    except PlanFormatError as err:
        raise BadFileError(
            f"{source} is damaged: {err}. Nothing was loaded from it; use a backup or the "
            "autosaved copy."
        ) from None


def _version(schema, source: str) -> int:
    kind = PLAN_SCHEMA.split("/")[0]
    m = re.fullmatch(re.escape(kind) + r"/(\d+)", schema) if isinstance(schema, str) else None
    if m is None:
        raise BadFileError(
            f"{source} is not a fluoroplan plan (its schema is {schema!r}, expected "
            f"'{PLAN_SCHEMA}'). Choose a plan file."
        )
    return int(m.group(1))


def _migrate(doc: dict, source: str) -> dict:
    version = _version(doc.get("schema"), source)
    if version > PLAN_VERSION:
        raise UnsupportedVersionError(
            f"{source} was written by a newer fluoroplan (plan format version {version}; this "
            f"version reads up to {PLAN_VERSION}). Open it with that version or update "
            "fluoroplan; nothing was loaded."
        )
    while version < PLAN_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise UnsupportedVersionError(
                f"{source} is a plan of format version {version}, which this fluoroplan cannot "
                f"convert to version {PLAN_VERSION}; nothing was loaded."
            )
        doc = step(doc)
        version += 1
        doc["schema"] = f"{PLAN_SCHEMA.split('/')[0]}/{version}"
    return doc


# --- matching the CT ------------------------------------------------------------------------
def _describe_series(uid: str, description: str | None, fingerprint: str | None) -> str:
    parts = [f"series {uid or '(no UID)'}"]
    if description:
        parts.append(f"'{description}'")
    if fingerprint:
        parts.append(f"fingerprint {fingerprint}")
    return " ".join(parts)


def check_series(plan: Plan, volume, source: str = "The plan") -> None:
    """Refuse (:class:`WrongSeriesError`) a plan made on another CT than ``volume``.

    The series UID must match, and so must the fingerprint (geometry and voxels) when both are
    known: a series re-exported with new UIDs but the same voxels is still refused by UID, a
    series whose voxels changed under the same UID by fingerprint. An anonymised teaching copy
    (:mod:`fluoroplan.report.teaching`) is refused whatever the CT, saying so.
    """
    s = plan.series
    if s.get("teaching_copy"):  # fluoroplan.report.teaching.TEACHING_COPY
        raise WrongSeriesError(
            f"{source} is an anonymised teaching copy: its UIDs and CT fingerprint were "
            "removed, so it belongs to no CT and cannot be opened against one. Open the "
            "original plan file; nothing was loaded."
        )
    uid_plan = s.get("series_instance_uid", "")
    uid_ct = volume.identifiers.get("series_instance_uid", "")
    fp_plan = s.get("fingerprint", "")
    fp_ct = volume.fingerprint()
    same_uid = uid_plan == uid_ct
    same_fp = not fp_plan or fp_plan == fp_ct
    if same_uid and same_fp:
        return
    planned = _describe_series(uid_plan, s.get("series_description"), fp_plan)
    opened = _describe_series(uid_ct, volume.identifiers.get("series_description"), fp_ct)
    why = ("its voxels or geometry differ (the fingerprints do not match)" if same_uid
           else "the series UIDs differ")
    raise WrongSeriesError(
        f"{source} was made on {planned}, but the open CT is {opened}: {why}. Open the CT the "
        "plan was made on, or plan this CT afresh; nothing was loaded."
    )


# --- files ----------------------------------------------------------------------------------
def save_plan(plan: Plan, path: str | os.PathLike,
              directory: str | os.PathLike | None = None) -> dict:
    """Write ``plan`` to ``path`` atomically; remove its autosaves that hold this plan or that
    this session made (never another session's unsaved edits), and what interrupted saves of
    it left. Returns the document."""
    path = Path(path)
    doc = plan_document(plan)
    clean_interrupted_saves(path.parent, path.name)
    write_json_atomic(path, doc)
    # a recovery copy goes only when the plan it holds is what was saved, or the session that
    # made it saves: another session's unsaved edits (the workstation's, while a command writes
    # a plan of the same series) stay to be offered
    saved = json.loads(json.dumps(_plain(doc)))
    for file in (autosave_path(path),
                 autosave_path(series_uid=_series_key(plan), directory=directory)):
        pid, held = _autosave_of(file)
        if pid == os.getpid() or (held is not None and held == saved):
            file.unlink(missing_ok=True)
    return doc


INTERRUPTED_SAVE_S = 120.0
"""A save's temporary file older than this was left by an interrupted save (the writes take
milliseconds)."""


def clean_interrupted_saves(folder: str | os.PathLike, name: str | None = None,
                            older_than_s: float = INTERRUPTED_SAVE_S) -> int:
    """Delete the temporary files that saves interrupted by a crash or a kill left in
    ``folder`` (``.<name>.*.tmp`` of :func:`write_json_atomic`; of any file without ``name``),
    older than ``older_than_s``. Returns how many."""
    import time

    folder = Path(folder)
    if not folder.is_dir():
        return 0
    now, n = time.time(), 0
    for tmp in folder.glob(f".{name}.*.tmp" if name else ".*.tmp"):
        try:
            if tmp.is_file() and now - tmp.stat().st_mtime > older_than_s:
                tmp.unlink()
                n += 1
        except OSError:
            continue
    return n


def _autosave_of(file: Path) -> tuple[int | None, dict | None]:
    """(the process that wrote an autosave, the plan document it holds); Nones when there is
    none or it cannot be read."""
    try:
        data = json.loads(Path(file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    pid = data.get("pid")
    held = data.get("plan")
    return (pid if isinstance(pid, int) else None), (held if isinstance(held, dict) else None)


def load_plan(path: str | os.PathLike, volume=None) -> Plan:
    """Open a plan file, validated completely; with ``volume``, also refuse a plan made on
    another CT (:class:`WrongSeriesError`)."""
    path = Path(path)
    data = read_json(path)  # BadFileError for a missing / truncated / non-object file
    plan = plan_from_document(data, path.name)
    if volume is not None:
        check_series(plan, volume, f"The plan {path.name}")
    return plan


# --- autosave and recovery ------------------------------------------------------------------
def recovery_dir(directory: str | os.PathLike | None = None) -> Path:
    """The folder of autosaves of unsaved plans (see the module docstring)."""
    if directory is not None:
        return Path(directory)
    env = os.environ.get(RECOVERY_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "fluoroplan" / "recovery"


def _series_key(plan: Plan) -> str:
    s = plan.series
    return str(s.get("series_instance_uid") or s.get("fingerprint") or "unknown-series")


def autosave_path(path: str | os.PathLike | None = None, series_uid: str | None = None,
                  directory: str | os.PathLike | None = None) -> Path:
    """Where the autosave of a plan goes: ``.NAME.autosave`` beside a saved plan ``path``,
    else ``<recovery dir>/<series_uid>.json``."""
    if path is not None:
        path = Path(path)
        return path.with_name(f".{path.name}.autosave")
    if not series_uid:
        raise ValueError("an autosave needs the plan's path or its series UID")
    safe = re.sub(r"[^0-9A-Za-z._-]", "_", series_uid)
    return recovery_dir(directory) / f"{safe}.json"


def autosave(plan: Plan, path: str | os.PathLike | None = None,
             directory: str | os.PathLike | None = None) -> Path:
    """Write the recovery copy of ``plan`` (call after every edit). ``path`` is the plan's
    own file if it has one. Atomic, so a crash during the write keeps the previous copy."""
    target = autosave_path(path, None if path is not None else _series_key(plan), directory)
    doc = {
        "schema": AUTOSAVE_SCHEMA,
        "saved_at": _dt.datetime.now(_dt.UTC).astimezone().isoformat(timespec="seconds"),
        "plan_path": None if path is None else str(Path(path).resolve()),
        "pid": os.getpid(),
        "plan": plan_document(plan),
    }
    return write_json_atomic(target, doc)


@dataclass(frozen=True, eq=False)
class Recovery:
    """What a crashed session left: the autosave file, the plan it holds, where that plan
    belongs, and whether it is newer than the saved plan file (if there is one)."""

    autosave_path: Path
    plan: Plan
    saved_at: str
    plan_path: Path | None
    newer_than_saved: bool

    @property
    def text(self) -> str:
        where = f"the plan {self.plan_path.name}" if self.plan_path else "an unsaved plan"
        n = len(self.plan.trajectories)
        edited = sum(t.edited for t in self.plan.trajectories)
        return (f"Unsaved changes to {where} were recovered (autosaved {self.saved_at}; "
                f"{n} trajectories, {edited} edited by hand).")


def _read_recovery(file: Path) -> Recovery:
    data = read_json(file, AUTOSAVE_SCHEMA)
    for key in ("saved_at", "plan_path", "plan"):
        if key not in data:
            raise BadFileError(f"{file.name} is damaged: '{key}' is missing. Nothing was loaded.")
    plan = plan_from_document(data["plan"], f"The autosave {file.name}")
    plan_path = Path(data["plan_path"]) if isinstance(data["plan_path"], str) else None
    newer = True
    if plan_path is not None and plan_path.exists():
        newer = file.stat().st_mtime >= plan_path.stat().st_mtime
    return Recovery(file, plan, str(data["saved_at"]), plan_path, newer)


def find_recovery(path: str | os.PathLike | None = None, series_uid: str | None = None,
                  directory: str | os.PathLike | None = None) -> Recovery | None:
    """The autosave of the plan file ``path`` (or of the unsaved plan of ``series_uid``), or
    None. A damaged autosave raises :class:`BadFileError` (offer to discard it)."""
    file = autosave_path(path, series_uid, directory)
    if not file.is_file():
        return None
    return _read_recovery(file)


def find_recoveries(directory: str | os.PathLike | None = None) -> list[Recovery]:
    """Every readable autosave of an unsaved plan in the recovery folder, newest first (what
    the GUI offers at start-up). Damaged files are skipped."""
    folder = recovery_dir(directory)
    clean_interrupted_saves(folder)  # at start-up: what an interrupted save left
    found = []
    for file in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            found.append(_read_recovery(file))
        except BadFileError:
            continue
    return sorted(found, key=lambda r: r.autosave_path.stat().st_mtime, reverse=True)


def discard_recovery(path: str | os.PathLike | None = None, series_uid: str | None = None,
                     directory: str | os.PathLike | None = None) -> bool:
    """Delete the autosave of ``path`` (or of the unsaved plan of ``series_uid``); True if
    there was one."""
    file = autosave_path(path, series_uid, directory)
    try:
        file.unlink()
    except FileNotFoundError:
        return False
    return True
