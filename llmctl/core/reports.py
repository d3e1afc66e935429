"""Reading the versioned JSON reports llmctl writes (bench, tune): any known schema version, or one
clear error for a file that is missing, not JSON, or not that kind of report."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from llmctl.core.errors import UsageError
from llmctl.core.validation import first_problem

ModelT = TypeVar("ModelT", bound=BaseModel)
Upgrade = Callable[[dict[str, Any]], dict[str, Any]]


def parse_report(text: str, model: type[ModelT], upgrade: Upgrade) -> ModelT:
    """`text` as `model`, after `upgrade` brought an earlier schema version up to date.

    Raises ValueError (pydantic's ValidationError included) for anything else."""
    data = json.loads(text)
    return model.model_validate(upgrade(data) if isinstance(data, dict) else data)


def read_report(path: Path, model: type[ModelT], upgrade: Upgrade, *, what: str) -> ModelT:
    """The report in `path`; a UsageError that says why when it cannot be one."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not an {what}: not UTF-8 text") from exc
    try:
        return parse_report(text, model, upgrade)
    except (ValueError, RecursionError) as exc:
        problem = first_problem(exc) if isinstance(exc, ValidationError) else "not JSON"
        raise UsageError(f"{path} is not an {what}: {problem}") from exc
