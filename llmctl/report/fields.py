"""Typed reads from a parsed JSON object, each failure naming the file and the field's path."""

from __future__ import annotations

import math
from typing import Any

from llmctl.core.errors import UsageError


class RunFileError(UsageError):
    """A file given to `llmctl report` cannot be read as a bench or tune result."""


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    return "a list" if isinstance(value, list) else "an object"


class Fields:
    """One JSON object, `where` it sits in `path` (e.g. `levels[2].strategy`), read field by field."""

    def __init__(self, data: dict[str, Any], path: str, where: str = "") -> None:
        self.data = data
        self.path = path
        self.where = where

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, wanted: str, value: object) -> RunFileError:
        return RunFileError(
            f"{self.path}: {self._name(key)} should be {wanted}, not {_kind(value)}"
        )

    def _present(self, key: str, required: bool) -> object:
        value = self.data.get(key)
        if value is None and required:
            raise RunFileError(f"{self.path}: {self._name(key)} is missing")
        return value

    def _as_number(self, key: str, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, "a number", value)
        if not math.isfinite(value):  # Python's json reads NaN and Infinity; nothing can plot them
            raise RunFileError(
                f"{self.path}: {self._name(key)} should be a finite number, not {value}"
            )
        return float(value)

    def number(self, key: str) -> float | None:
        value = self.data.get(key)
        return None if value is None else self._as_number(key, value)

    def need_number(self, key: str) -> float:
        return self._as_number(key, self._present(key, True))

    def integer(self, key: str) -> int:
        value = self._present(key, True)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, "a whole number", value)
        return value

    def whole(self, key: str) -> int | None:
        """A whole number that may be missing or null."""
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, "a whole number", value)
        return value

    def numbers(self, key: str) -> list[float | None] | None:
        """A list of numbers and nulls (a series), None when missing or null."""
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, list):
            raise self.fail(key, "a list of numbers", value)
        return [
            None if v is None else self._as_number(f"{key}[{i}]", v) for i, v in enumerate(value)
        ]

    def text(self, key: str, *, required: bool = False) -> str | None:
        value = self._present(key, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(key, "text", value)
        return value

    def _as_obj(self, key: str, value: object) -> Fields:
        if not isinstance(value, dict):
            raise self.fail(key, "an object", value)
        return Fields(value, self.path, self._name(key))

    def obj(self, key: str) -> Fields | None:
        value = self.data.get(key)
        return None if value is None else self._as_obj(key, value)

    def need_obj(self, key: str) -> Fields:
        return self._as_obj(key, self._present(key, True))

    def objects(self, key: str) -> list[Fields]:
        value = self._present(key, True)
        if not isinstance(value, list):
            raise self.fail(key, "a list", value)
        out: list[Fields] = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise self.fail(f"{key}[{i}]", "an object", item)
            out.append(Fields(item, self.path, f"{self._name(key)}[{i}]"))
        return out

    def counts(self, key: str) -> dict[str, int]:
        """An object of whole numbers, e.g. failures by class."""
        value = self._present(key, False) or {}
        if not isinstance(value, dict):
            raise self.fail(key, "an object", value)
        out: dict[str, int] = {}
        for name, count in value.items():
            if isinstance(count, bool) or not isinstance(count, int):
                raise self.fail(f"{key}.{name}", "a whole number", count)
            out[str(name)] = count
        return out

    def texts(self, key: str) -> dict[str, str]:
        value = self._present(key, False) or {}
        if not isinstance(value, dict):
            raise self.fail(key, "an object", value)
        return {str(k): str(v) for k, v in value.items()}

    def has(self, key: str) -> bool:
        """Whether the key is there at all (null included): a field the file's writer knew."""
        return key in self.data


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested settings as `a.b: text` pairs, in a form two runs can be compared by."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, list):
            out[name] = ", ".join(str(v) for v in value) if value else "none"
        elif value is None:
            out[name] = "none"
        elif isinstance(value, float):
            out[name] = f"{value:g}"
        else:
            out[name] = str(value)
    return out
