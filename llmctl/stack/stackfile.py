"""The stack file as text: read it, say where a key sits in it, and edit it keeping its layout.

Reading is tomllib's (its errors carry line and column); editing is tomlkit's, which keeps comments,
blank lines, key order, dotted keys and inline tables as they were, and this module keeps the file's
line endings (CRLF stays CRLF). Writing goes through core.files.write_file.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomlkit
import tomlkit.exceptions
from tomlkit.container import Container
from tomlkit.items import Table

from llmctl.core.errors import ConfigError
from llmctl.core.validation import Locate

_KEY = re.compile(
    r"""((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*="""
)
_WHERE = re.compile(r"\(at line (?P<line>\d+), column (?P<column>\d+)\)")
_INLINE_KEY = re.compile(r"""[{,]\s*([A-Za-z0-9_-]+|"[^"]*"|'[^']*')\s*=""")


def read_text(path: Path) -> str:
    try:
        # Bytes, then decode: read_text would turn CRLF into LF, and an edit must keep them.
        return path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text: {exc.reason}") from exc


def parse(text: str, path: Path) -> dict[str, Any]:
    """The TOML document `text` (read from `path`) as plain values."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib says where as "(at line L, column C)": put it first, as compilers do.
        where = _WHERE.search(str(exc))
        if where is None:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
        what = str(exc)[: where.start()].strip()
        raise ConfigError(
            f"{path}:{where['line']}:{where['column']}: not valid TOML: {what[:1].lower()}{what[1:]}"
        ) from exc


def _parts(dotted: str) -> list[str]:
    return [
        part.strip().strip("\"'")
        for part in re.split(r"\.(?=(?:[^\"']*[\"'][^\"']*[\"'])*[^\"']*$)", dotted)
    ]


def locator(text: str) -> Locate:
    """Where each key of `text` is written, as (line, column), both from 1. A key set through an
    inline table or a table header is found too; an unknown key falls back to its nearest known
    parent (a value's error inside `[ports]` points at the header at worst)."""
    positions: dict[str, tuple[int, int]] = {}
    table: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.lstrip()
        column = len(line) - len(stripped) + 1
        if stripped.startswith("["):
            inner = stripped.lstrip("[")
            end = inner.find("]")
            if end >= 0:
                table = _parts(inner[:end])
                positions.setdefault(".".join(table), (number, column))
            continue
        match = _KEY.match(stripped)
        if match is None:
            continue
        full = [*table, *_parts(match.group(1))]
        positions.setdefault(".".join(full), (number, column))
        rest = stripped[match.end() :]
        offset = column + match.end()
        for inline in _INLINE_KEY.finditer(rest):
            key = ".".join([*full, inline.group(1).strip("\"'")])
            positions.setdefault(key, (number, offset + inline.start(1)))

    def locate(key: str) -> tuple[int, int] | None:
        parts = key.split(".")
        while parts:
            found = positions.get(".".join(parts))
            if found is not None:
                return found
            parts.pop()
        return None

    return locate


def edited(text: str, changes: Mapping[str, Any], path: Path) -> str:
    """`text` with each dotted key set to its value, everything else as it was written."""
    try:
        document = tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    for dotted, value in changes.items():
        *tables, key = dotted.split(".")
        node: Container | Table | Any = document
        for name in tables:
            child = node.get(name)
            if child is None:
                child = tomlkit.table()
                node[name] = child
                child = node[name]
            elif not isinstance(child, Mapping):
                raise ConfigError(f"{path}: {name} is a value, not a table (setting {dotted})")
            node = child
        node[key] = value
    out = tomlkit.dumps(document)
    if "\r\n" in text:
        out = out.replace("\r\n", "\n").replace("\n", "\r\n")
    return out
