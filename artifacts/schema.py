"""The schema of a run folder's JSON files, checked when a run is read and when it is written.

One JSON Schema (draft 2020-12, checked with ``jsonschema``) per file kind:
``manifest.json``, ``level.json`` and the ``shapes`` metadata of
``masks.safetensors``. Only the fields the readers rely on are constrained;
any other field is allowed, so a run written by a newer version of the code
(with more fields) still opens. A violation raises
:class:`artifacts.run_format.RunFormatError` naming the file and the field.

Method names are folder names of the run (``RUN/<method>/level_00``) and are
checked as identifiers: letters, digits, ``_``, ``-``, ``.``, starting with a
letter or digit, never ``..``, never a path. Ticket names are labels, never
used as paths (embedded runs have tickets such as ``T-shirt/top``); they must
be non-empty, distinct, at most 200 printable characters, neither absolute
nor holding a ``..`` component.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

# Importing RunFormatError from run_format would make a cycle; it is defined there and
# passed in by the callers through ``error``. Keep this module free of run_format imports.

IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
_IDENTIFIER_RE = re.compile(IDENTIFIER_PATTERN)
RESERVED_METHODS = ("extra",)  # folder names of the run that are not methods
MAX_TICKET_NAME = 200
# Printable, no backslash, not starting with "/"; ".." components are refused in code.
_TICKET_RE = re.compile(r"^(?!/)[^\x00-\x1f\x7f\\]{1," + str(MAX_TICKET_NAME) + r"}$")

_STRING_LIST = {"type": "array", "items": {"type": "string"}}
_SHAPE = {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1}
_PRUNABLE = {"type": "object", "additionalProperties": _SHAPE}
_TICKET = {"type": "string", "pattern": _TICKET_RE.pattern}

METHOD_SCHEMA: dict = {
    "type": "object",
    "required": ["tickets"],
    "properties": {
        "tickets": {"type": "array", "items": _TICKET, "minItems": 1, "uniqueItems": True},
        "ticket_kind": {"type": "string"},
        "routings": _STRING_LIST,
        "default_routing": {"type": ["string", "null"]},
        "weights_layout": {"type": "string"},
        "description": {"type": "string"},
        "prunable": _PRUNABLE,
        # what score_<k> holds: "sigmoid", "subset_mass" or "confidence" (artifacts.run_format);
        # any string, so that a newer definition still opens
        "score": {"type": "string", "minLength": 1},
    },
}

MANIFEST_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["schema_version", "methods"],
    "properties": {
        "schema_version": {"type": "integer"},
        "name": {"type": "string"},
        "task": {"type": "string"},
        "methods": {
            "type": "object",  # non-empty when read (checked in code: a run being created may have none)
            "propertyNames": {"pattern": IDENTIFIER_PATTERN, "not": {"enum": list(RESERVED_METHODS)}},
            "additionalProperties": METHOD_SCHEMA,
        },
        "groups": _STRING_LIST,
        "layers": _STRING_LIST,
        "prunable": _PRUNABLE,
        "dataset": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "classes": {"type": "array", "items": {"type": ["string", "integer"]}},
                "n_train": {"type": "integer", "minimum": 0},
                "n_val": {"type": "integer", "minimum": 0},
                "n_test": {"type": "integer", "minimum": 0},
            },
        },
        "model": {"type": "object"},
        "partition": {
            "type": "object",
            "properties": {
                "k": {"type": "integer", "minimum": 1},
                "names": {"type": "array", "items": {"type": ["string", "integer"]}},
            },
        },
        "source": {"type": "object"},
    },
}

_FRACTION = {"type": "number", "minimum": 0, "maximum": 1}
_COUNT = {"type": "integer", "minimum": 0}
LEVEL_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["sparsity"],
    "properties": {
        "level": {"type": "integer", "minimum": 0},
        "sparsity": _FRACTION,
        "ticket_sparsity": {"type": "array", "items": _FRACTION},
        "params_per_ticket": {"type": "array", "items": _COUNT},
        "params_union": _COUNT,
        "params_total": _COUNT,
        "params_prunable": _COUNT,
        "metrics": {"type": "object", "additionalProperties": {"type": ["number", "null"]}},
        "ticket_metrics": {"type": "array", "items": {"type": "object"}},
    },
}

MASK_SHAPES_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "minProperties": 1,
    "additionalProperties": {
        "type": "array",
        "minItems": 2,
        "prefixItems": [{"type": "integer", "minimum": 1}],
        "items": {"type": "integer", "minimum": 0},
    },
}

_VALIDATORS = {id(s): Draft202012Validator(s) for s in (MANIFEST_SCHEMA, LEVEL_SCHEMA, MASK_SHAPES_SCHEMA)}
for _s in (MANIFEST_SCHEMA, LEVEL_SCHEMA, MASK_SHAPES_SCHEMA):
    Draft202012Validator.check_schema(_s)


def _field(path: Any) -> str:
    parts = [str(p) for p in path]
    return "/".join(parts) if parts else "(top level)"


def _short(text: str, n: int = 240) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def check(instance: Any, schema: dict, where: str | Path, error: type[Exception]) -> None:
    """Validate ``instance`` against one of this module's schemas.

    Parameters
    ----------
    instance : object
        Parsed JSON.
    schema : dict
        :data:`MANIFEST_SCHEMA`, :data:`LEVEL_SCHEMA` or :data:`MASK_SHAPES_SCHEMA`.
    where : str or Path
        The file, for the message.
    error : type
        Exception raised (``RunFormatError``).

    Raises
    ------
    error
        ``"<file>: field <a/b/c>: <reason>"`` for the first violation (shallowest field first).
    """
    validator = _VALIDATORS[id(schema)]
    errors = sorted(
        validator.iter_errors(instance), key=lambda e: (len(e.absolute_path), str(e.absolute_path))
    )
    if errors:
        e = errors[0]
        raise error(f"{where}: field {_field(e.absolute_path)}: {_short(e.message)}")


def identifier_problem(name: Any) -> str | None:
    """Why ``name`` cannot name a method (a folder of a run), or None if it can."""
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a string"
    if name in RESERVED_METHODS:
        return f"is reserved ({name!r} is a folder of every run)"
    if not _IDENTIFIER_RE.match(name) or name in (".", ".."):
        return "must be 1-128 letters, digits, '_', '-', '.', starting with a letter or digit (no paths)"
    return None


def ticket_problem(name: Any) -> str | None:
    """Why ``name`` cannot name a ticket, or None if it can."""
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a string"
    if not _TICKET_RE.match(name):
        return f"must be 1-{MAX_TICKET_NAME} printable characters, without backslashes, not starting with '/'"
    if ".." in name.split("/"):
        return "must not hold a '..' component"
    return None


def check_method_name(name: Any, error: type[Exception], where: str = "") -> str:
    """Return ``name`` if it is a valid method name, else raise ``error``."""
    problem = identifier_problem(name)
    if problem:
        raise error(f"{where + ': ' if where else ''}method name {name!r} {problem}")
    return name


def check_ticket_names(names: Any, error: type[Exception], where: str = "") -> list[str]:
    """Return ``names`` as a list if every ticket name is valid and distinct, else raise ``error``."""
    prefix = where + ": " if where else ""
    if isinstance(names, str | bytes) or not isinstance(names, list | tuple):
        raise error(f"{prefix}tickets must be a list of names, not a {type(names).__name__}")
    for n in names:
        problem = ticket_problem(n)
        if problem:
            raise error(f"{prefix}ticket name {_short(repr(n), 80)} {problem}")
    if len(set(names)) != len(names):
        raise error(f"{prefix}ticket names are not distinct")
    return list(names)


def method_prunable(manifest: Mapping, method: str) -> dict | None:
    """The prunable shapes ``{layer: shape}`` of a method: its own, else the run's, else None."""
    own = manifest["methods"][method].get("prunable")
    if own is not None:
        return own
    return manifest.get("prunable")


def parse_mask_shapes(raw: Any, where: str | Path, error: type[Exception]) -> dict[str, list[int]]:
    """The ``shapes`` metadata of a mask file, parsed and validated.

    Returns
    -------
    dict of str to list of int
        ``{layer: [K, *weight_shape]}`` with K >= 1 and every size >= 0.
    """
    try:
        shapes = json.loads(raw)
    except (TypeError, json.JSONDecodeError, RecursionError):
        raise error(f"{where}: metadata 'shapes' is missing or not JSON") from None
    check(shapes, MASK_SHAPES_SCHEMA, f"{where} metadata 'shapes'", error)
    return shapes
