"""The stacks `up` recorded in a folder (`.llmctl/<stack>/stack.json`), so that a stack file
broken while its stack runs locks nobody out: `down`, `status`, `logs`, `restart` and `chat` act
on the recorded stack and say what is wrong with the file.

Which recorded stack: the one the file names, when its `name` can still be read; else the only
one recorded here; else the only one of several with a service running. More than that cannot
be told apart, and the file's error stands.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from llmctl.core.errors import StackFileError
from llmctl.stack.runtime import observe
from llmctl.stack.settings import SAVED_SPEC, STATE_DIR, saved_spec
from llmctl.stack.spec import StackSpec

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def recorded_stacks(cwd: Path) -> dict[str, StackSpec]:
    """Stack name -> the spec `up` recorded for it under `cwd`."""
    found: dict[str, StackSpec] = {}
    for path in sorted((cwd / STATE_DIR).glob(f"*/{SAVED_SPEC}")):
        spec = saved_spec(path.parent)
        if spec is not None and spec.name == path.parent.name:
            found[spec.name] = spec
    return found


def named_in(path: Path) -> str | None:
    """The stack name a (possibly broken) stack file gives, if it can be read at all."""
    try:
        values = tomllib.loads(path.read_text(errors="replace"))
    except (OSError, tomllib.TOMLDecodeError):
        return None
    name = values.get("name", StackSpec.model_fields["name"].default)
    return name if isinstance(name, str) and _NAME.match(name) else None


def fallback(error: StackFileError, cwd: Path) -> tuple[StackSpec, list[str]]:
    """The recorded stack to act on instead of the settings that did not load, and the notes
    that say so; `error` itself when there is no single stack to pick."""
    stacks = recorded_stacks(cwd)
    name = named_in(Path(error.path))
    spec = stacks.get(name) if name is not None else None
    if spec is None and len(stacks) == 1:
        spec = next(iter(stacks.values()))
    if spec is None:
        live = [
            s
            for s in stacks.values()
            if any(x.state == "running" for x in observe(s, cwd / STATE_DIR / s.name) or [])
        ]
        spec = live[0] if len(live) == 1 else None
    if spec is None:
        if len(stacks) > 1:
            raise StackFileError(
                f"{error}\n(stacks recorded here: {', '.join(stacks)}; fix the file to pick one)",
                error.path,
            ) from error
        raise error
    record = Path(STATE_DIR) / spec.name / SAVED_SPEC
    return spec, [
        f"the stack settings have an error, so this acts on stack {spec.name} as `llmctl up` "
        f"recorded it ({record}):\n{error}"
    ]
