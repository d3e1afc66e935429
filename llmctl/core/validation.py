"""Pydantic validation errors turned into messages for people, one way for every input llmctl reads.

Each problem becomes one line `KEY: WHAT` (plus the value given), with the key in the user's own
terms (`names` maps a field to a flag, say), "did you mean ...?" for an unknown key that is close to
a known one, where it came from, and, for values read from a file, `FILE:LINE:COLUMN`.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

# dotted key -> (line, column) in the file it came from, when known
Locate = Callable[[str], tuple[int, int] | None]

_TEMPLATES = {
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "literal_error": "must be one of {expected}",
    "missing": "is required",
    "too_short": "must have at least {min_length} item(s)",
    "too_long": "must have at most {max_length} item(s)",
    "string_too_short": "must not be empty",
    "string_pattern_mismatch": "does not have the expected form ({pattern})",
}


def explain(
    exc: ValidationError,
    *,
    what: str,
    model: type[BaseModel] | None = None,
    names: Mapping[str, str] | None = None,
    sources: Mapping[str, str] | None = None,
    files: Mapping[str, tuple[str, Locate]] | None = None,
) -> str:
    """The message for `exc`: `invalid WHAT:` then one line per problem.

    `model` lets unknown keys get a "did you mean"; `names` renames dotted keys (field -> flag);
    `sources` tells where each dotted key's value came from; `files` maps such a source to the
    file's path and a locator, so those lines start with `PATH:LINE:COL`."""
    lines = [f"invalid {what}:"]
    for err in exc.errors():
        lines.append("  " + _line(err, model, names or {}, sources or {}, files or {}))
    return "\n".join(lines)


def first_problem(exc: ValidationError, *, names: Mapping[str, str] | None = None) -> str:
    """The first problem alone, as `KEY: WHAT` (for one-line errors)."""
    return _line(exc.errors()[0], None, names or {}, {}, {})


def _line(
    err: ErrorDetails,
    model: type[BaseModel] | None,
    names: Mapping[str, str],
    sources: Mapping[str, str],
    files: Mapping[str, tuple[str, Locate]],
) -> str:
    loc = [str(part) for part in err["loc"]]
    dotted = ".".join(loc)
    key = names.get(dotted, ".".join(_shown_key(part) for part in loc)) or "(root)"
    text = f"{key}: {message(err, model)}"
    source = sources.get(dotted) or _enclosing_source(dotted, sources)
    if source is None:
        return text
    if source in files:
        path, locate = files[source]
        where = locate(dotted)
        if where is not None:
            return f"{path}:{where[0]}:{where[1]}: {text}"
        return f"{path}: {text}"
    return f"{text} (from {source})"


def message(err: ErrorDetails, model: type[BaseModel] | None = None) -> str:
    """What is wrong with one value, in words (no pydantic jargon), with the value given."""
    kind = err["type"]
    if kind == "extra_forbidden":
        text = "unknown key"
        known = _known_keys(model, [str(p) for p in err["loc"][:-1]]) if model else []
        guess = difflib.get_close_matches(str(err["loc"][-1]), known, n=1, cutoff=0.6)
        return text + (f"; did you mean {guess[0]!r}?" if guess else "")
    template = _TEMPLATES.get(kind)
    ctx = {k: f"{v:g}" if isinstance(v, float) else v for k, v in (err.get("ctx") or {}).items()}
    if template is not None:
        try:
            text = template.format(**ctx)
        except (KeyError, IndexError):
            text = err["msg"]
    else:
        text = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    given = err.get("input")
    if kind not in ("missing", "value_error") and _shown(given):
        text += f" (got {given!r})"
    return text


def _shown_key(part: str) -> str:
    """A key as typed, or quoted with escapes when it holds what a terminal would act on."""
    return part if part.isprintable() and part.strip() == part and part else repr(part)


def _shown(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and len(repr(value)) <= 60


def _enclosing_source(dotted: str, sources: Mapping[str, str]) -> str | None:
    # A model-level error names a section ("ports"); any value set inside it is the likely cause.
    inside = [src for key, src in sources.items() if key.startswith(dotted + ".")]
    return inside[-1] if inside else None


def _known_keys(model: type[BaseModel], path: list[str]) -> list[str]:
    """The field names (and aliases) of the model found by following `path` from `model`."""
    current: type[BaseModel] | None = model
    for part in path:
        if part.isdigit():  # an item of a list: its model is the list's
            continue
        if current is None or part not in current.model_fields:
            return []
        current = _model_of(current.model_fields[part].annotation)
    if current is None:
        return []
    keys = list(current.model_fields)
    keys += [f.alias for f in current.model_fields.values() if f.alias]
    return keys


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (`Spec`, `Spec | None`, `list[Spec]`), if there is
    one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list, tuple):
        for arg in typing.get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None
