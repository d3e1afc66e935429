"""Command-line options made from a settings model: one flag per field, its help the field's
description, its default and environment variable shown the same way everywhere."""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import typer
from pydantic import BaseModel

from llmctl.cli.help import env_note
from llmctl.core.errors import ConfigError


def _option_type(annotation: Any) -> Any:
    """The type typer parses for a field: numbers and strings as such, tuples as repeatable lists,
    Literals as plain strings (the model checks the value and says what is allowed)."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _option_type(args[0])
    if origin is tuple or origin is list:
        return list[str]
    if annotation in (int, float, bool):
        return annotation
    return str


_METAVARS: dict[Any, str | None] = {
    int: "INTEGER",
    float: "FLOAT",
    str: "TEXT",
    list[str]: "TEXT",
    bool: None,  # a plain flag takes no value
}


def _shown_default(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple | list):
        return ", ".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def setting_options(
    model: type[BaseModel], flags: Mapping[str, str], env: Mapping[str, str]
) -> list[inspect.Parameter]:
    """A keyword parameter (default None: "not given") for every field of `model` that has a flag
    in `flags` (field -> flag), in the table's order; `env` maps field -> environment variable."""
    params = []
    for field_name, flag in flags.items():
        info = model.model_fields.get(field_name)
        if info is None:
            continue
        default = info.get_default(call_default_factory=True)
        help_text = info.description or ""
        if field_name in env:
            help_text += env_note(env[field_name])
        kind = _option_type(info.annotation)
        metavar = _METAVARS.get(kind)
        # The option's own default is None ("not given"); help shows the setting's.
        shown = False if kind is bool and not default else _shown_default(default)
        option = typer.Option(flag, help=help_text, show_default=shown, metavar=metavar)
        annotation: Any = Annotated.__class_getitem__((kind | None, option))  # type: ignore[attr-defined]
        params.append(
            inspect.Parameter(
                field_name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation
            )
        )
    return params


def with_options(
    command: Callable[..., None], extra: list[inspect.Parameter], into: str
) -> Callable[..., None]:
    """`command` with `extra` options in place of its parameter `into`, which receives the values
    given (None for options not given) as a dict."""
    signature = inspect.signature(command, eval_str=True)
    names = {p.name for p in extra}
    params: list[inspect.Parameter] = []
    for param in signature.parameters.values():
        if param.name == into:
            params += extra
        else:
            params.append(param.replace(kind=inspect.Parameter.KEYWORD_ONLY))

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        given = {name: kwargs.pop(name) for name in list(kwargs) if name in names}
        command(**kwargs, **{into: given})

    if into not in signature.parameters:
        raise ConfigError(f"{command.__name__} has no parameter {into!r}")
    setattr(wrapper, "__signature__", signature.replace(parameters=params))  # noqa: B010
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper
