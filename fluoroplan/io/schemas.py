"""The published JSON Schemas of fluoroplan's files, and checking a document against them with
messages a person can act on.

``fluoroplan/resources/plan.schema.json`` and ``analysis.schema.json`` (JSON Schema 2020-12)
describe the plan and analysis files; other tools can check files with them. :func:`check`
validates a document (or one ``$defs`` part of it) with the ``jsonschema`` library and raises
:class:`SchemaViolation` naming the first bad field the way fluoroplan always has:
``trajectories[0] (L2-left-transpedicular-parallel).entry_lps must be three numbers (mm, LPS),
not '12,3,4'``. The schema checks a file's form; its consistency (derived numbers, references
between its parts) is checked where the objects are built (:mod:`fluoroplan.io.plan_json`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from fluoroplan.errors import FluoroplanError

SCHEMA_FILES = {"plan": "plan.schema.json", "analysis": "analysis.schema.json"}

_TYPE_WORDS = {
    "number": "a number", "integer": "a whole number", "string": "text",
    "boolean": "true or false", "array": "a list", "object": "an object", "null": "null",
}


class SchemaViolation(FluoroplanError, ValueError):
    """A document does not have the form its schema describes; the message names the field."""


@cache
def schema(name: str) -> dict:
    """The parsed schema ``name`` ("plan" or "analysis") from the package's resources."""
    text = resources.files("fluoroplan.resources").joinpath(SCHEMA_FILES[name]).read_text("utf-8")
    return json.loads(text)


@cache
def _validator(name: str, part: str | None) -> Draft202012Validator:
    root = schema(name)
    sub = root if part is None else {"$ref": f"#/$defs/{part}", "$defs": root["$defs"]}
    return Draft202012Validator(sub)


def check(doc, name: str, part: str | None = None, where: str = "") -> None:
    """Raise :class:`SchemaViolation` unless ``doc`` has the form of schema ``name`` (or of its
    ``$defs`` entry ``part``). ``where`` names ``doc`` in messages (``"trajectories[2]"``)."""
    bad = _non_finite(doc, [])
    if bad is not None:
        path, value = bad
        raise SchemaViolation(f"{_where(where, path, doc)} must be a finite number, not {value!r}")
    error = next(iter(_validator(name, part).iter_errors(doc)), None)
    if error is not None:
        root_schema = schema(name)
        start = root_schema if part is None else root_schema["$defs"][part]
        raise SchemaViolation(_message(error, doc, where, start, root_schema, name))


def _non_finite(v, path: list):
    if isinstance(v, float) and not math.isfinite(v):
        return path, v
    items: Iterable[tuple[Any, Any]]
    if isinstance(v, dict):
        items = v.items()
    elif isinstance(v, list):
        items = enumerate(v)
    else:
        return None
    for k, x in items:
        found = _non_finite(x, [*path, k])
        if found is not None:
            return found
    return None


def _where(base: str, path, doc) -> str:
    """``trajectories[0] (its id).entry_lps`` for the instance path ``path`` below ``base``."""
    out, node = base, doc
    for key in path:
        if isinstance(key, int):
            out += f"[{key}]"
        else:
            out = f"{out}.{key}" if out else str(key)
        if isinstance(node, dict):
            node = node.get(key)
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            node = node[key]
        else:
            node = None
        if isinstance(key, int) and isinstance(node, dict) and isinstance(node.get("id"), str):
            out += f" ({node['id']})"  # a trajectory is named by its id too
    return out


def _chain(node, root: dict) -> list:
    """``node`` and the schemas its ``$ref`` leads to, in order."""
    out = [node]
    while isinstance(node, dict) and "$ref" in node:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[1]]
        out.append(node)
    return out


def _titled(error: ValidationError, start: dict, root: dict):
    """The deepest schema node with a ``title`` on the error's schema path, and how many
    instance-path steps lead to it (a list of three numbers is reported as a whole). The
    schema path does not record ``$ref`` steps: a key missing from a node is looked up in the
    schemas its ``$ref`` leads to."""
    keys = list(error.relative_schema_path)
    node, depth, found, i = start, 0, None, 0
    while True:
        for n in _chain(node, root):
            if isinstance(n, dict) and "title" in n and n is not start:
                found = (n, depth)
        if i >= len(keys):
            return found
        key, nxt = keys[i], None
        for n in _chain(node, root):
            if not isinstance(n, dict) or key not in n:
                continue
            if key in ("properties", "patternProperties"):
                if i + 1 < len(keys) and keys[i + 1] in n[key]:
                    nxt, depth, i = n[key][keys[i + 1]], depth + 1, i + 2
                    break
                continue
            if key in ("items", "additionalProperties") and isinstance(n[key], dict):
                nxt, depth, i = n[key], depth + 1, i + 1
            else:
                nxt, i = n[key], i + 1
            break
        if nxt is None:
            return found
        if isinstance(nxt, list) and i < len(keys) and isinstance(keys[i], int):
            nxt, i = nxt[keys[i]], i + 1  # oneOf / anyOf branches
        node = nxt


def _message(error: ValidationError, doc, base: str, start: dict, root: dict,
             name: str) -> str:
    path = list(error.absolute_path)
    value = error.instance
    kind = error.validator
    if kind in ("type", "minItems", "maxItems", "oneOf", "anyOf"):
        titled = _titled(error, start, root)
        if titled is not None:
            node, depth = titled
            sub = path[:depth]
            holder = doc
            for k in sub:
                holder = holder[k]
            return f"{_where(base, sub, doc)} must be {node['title']}, not {holder!r}"
    where = _where(base, path, doc)
    if kind == "required":
        missing = [k for k in error.validator_value if k not in value]
        return f"{_where(base, [*path, missing[0]], doc)} is missing"
    if kind in ("additionalProperties", "unevaluatedProperties"):
        known = set(error.schema.get("properties", {}))
        extra = [k for k in value if k not in known] if kind == "additionalProperties" else \
            sorted(_unevaluated(error, value, root))
        return f"{where or 'the ' + name} has unexpected field(s) {extra}"
    if kind == "type":
        types = error.validator_value
        types = [types] if isinstance(types, str) else types
        return f"{where} must be {' or '.join(_TYPE_WORDS[t] for t in types)}, not {value!r}"
    if kind == "enum":
        return f"{where} must be one of {tuple(error.validator_value)}, not {value!r}"
    if kind == "const":
        return f"{where} must be {error.validator_value!r}, not {value!r}"
    if kind in ("minimum", "maximum"):
        lo, hi = error.schema.get("minimum"), error.schema.get("maximum")
        return f"{where} is {value!r}, outside [{lo}, {hi}]"
    if kind == "minLength":
        return f"{where} is empty"
    return f"{where or 'the ' + name}: {error.message}"


def _unevaluated(error: ValidationError, value: dict, root: dict) -> list:
    """Fields of ``value`` neither its schema nor the schemas it refers to describe."""
    known: set = set()
    node = error.schema
    while isinstance(node, dict):
        known |= set(node.get("properties", {}))
        ref = node.get("$ref")
        node = root["$defs"][ref.rsplit("/", 1)[1]] if ref else None
    return [k for k in value if k not in known]
