"""The forms a stack file's strings must have before any of them reaches a generated file.

Every string in a stack (values, list items, table keys) is text without control characters; on
top of that, names of environment variables, image references, model names and paths have the
strict grammars below. The renderer still encodes everything it writes (llmctl.stack.render,
llmctl.stack.credentials), so these are the second line: they turn a value that could only be a
mistake or an attack into an error naming the key and what is allowed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
# Control characters (C0, DEL, C1), surrogates, and the two non-characters at the end of the BMP:
# none has a place in a name, a path or a command line, and YAML may not carry them raw.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")

# OCI / Docker image references, as github.com/distribution/reference defines them.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?",
    re.ASCII,
)
IMAGE_NAME_MAX = 255
MODEL_MAX = 1024
PATH_MAX = 4096


def printable(value: str) -> str:
    """Refuse text with a control character (a newline, a NUL, an escape ...)."""
    bad = _UNPRINTABLE.search(value)
    if bad is not None:
        raise ValueError(
            f"contains the control character {bad.group()!r} at position {bad.start()}; "
            "only printable text is allowed"
        )
    return value


def printable_all(value: Any) -> Any:
    """`printable` on every string in `value`: list items, table keys and values."""
    if isinstance(value, str):
        printable(value)
    elif isinstance(value, list | tuple):
        for item in value:
            printable_all(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            try:
                printable_all(key)
                printable_all(item)
            except ValueError as exc:
                raise ValueError(f"key {key!r}: {exc}") from None
    return value


def env_name(value: str) -> str:
    """An environment-variable name: letters, digits and `_`, not starting with a digit."""
    if not ENV_NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an environment variable name: use letters, digits and _, "
            "not starting with a digit (give the NAME, not a value)"
        )
    return value


def env_names(values: dict[str, str]) -> dict[str, str]:
    """A table whose keys are environment-variable names."""
    for key in values:
        env_name(key)
    return values


def image(value: str) -> str:
    """A pinned OCI image reference: `[registry[:port]/]path[:tag][@digest]`, with a tag other
    than `latest` or a digest, so a stack comes up the same way twice."""
    match = IMAGE.fullmatch(value)
    if match is None or len(match.group("name")) > IMAGE_NAME_MAX:
        raise ValueError(
            f"{value!r} is not an image reference: [registry[:port]/]name[:tag][@sha256:digest], "
            "with a lowercase name of letters, digits and . _ - separators"
        )
    if match.group("digest"):
        return value
    tag = match.group("tag")
    if not tag:
        raise ValueError(f"image {value!r} has no tag; pin one (e.g. {value}:1.2.3)")
    if tag == "latest":
        raise ValueError(f"image {value!r} uses :latest; pin a version")
    return value


def model_name(value: str) -> str:
    """A model name or path: printable, not empty, not starting with `-` (it would read as a flag)."""
    printable(value)
    if not value.strip():
        raise ValueError("must not be empty")
    if value.startswith("-"):
        raise ValueError(f"{value!r} starts with '-', which a command line reads as a flag")
    if len(value) > MODEL_MAX:
        raise ValueError(f"is longer than {MODEL_MAX} characters")
    return value


def path(value: str) -> str:
    """A file or folder path: printable, not empty, of a sane length."""
    printable(value)
    if not value.strip():
        raise ValueError("must not be empty")
    if len(value) > PATH_MAX:
        raise ValueError(f"is longer than {PATH_MAX} characters")
    try:
        Path(value).expanduser()
    except RuntimeError:  # ~name of no such user
        raise ValueError(f"{value!r}: cannot expand its ~ to a home folder") from None
    return value


def dotenv_safe(value: str) -> str:
    """A value `.env` can hold in single quotes, read the same by compose and by dotenv parsers:
    printable, without `'`, `\\` or a `$NAME` / `${...}` (Compose v2 expands those in .env values,
    single quotes or not; a `$` before anything else stays literal)."""
    printable(value)
    for char in ("'", "\\"):
        if char in value:
            raise ValueError(f"contains {char!r}, which .env cannot carry; rename the folder")
    found = re.search(r"\$(\{|[A-Za-z_])", value)
    if found:
        raise ValueError(
            f"contains {found.group(0)!r}, which Compose would expand; rename the folder"
        )
    return value
