"""Stack commands: init, config, render, up, restart, down, status, logs, doctor, chat."""

from __future__ import annotations

import functools
import inspect
import os
import time
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from llmctl.cli import completion
from llmctl.cli.console import console, err_console
from llmctl.cli.help import env_note
from llmctl.cli.output import FormatOpt, chosen, print_whole
from llmctl.cli.services import service_progress
from llmctl.cli.stackview import (
    reconciled,
    show_config,
    show_doctor,
    show_status,
    status_table,
)
from llmctl.core.errors import ConfigError, RuntimeBackendError
from llmctl.core.files import write_file
from llmctl.stack import kubernetes, lifecycle
from llmctl.stack.doctor import diagnose
from llmctl.stack.render import render_stack
from llmctl.stack.reports import ConfigReport, DoctorReport, StatusReport
from llmctl.stack.runtime import ServiceStatus
from llmctl.stack.settings import (
    CONFIG_FILE,
    LoadedStack,
    Override,
    env_var_for,
    list_presets,
    load_stack,
    parse_set,
    preset_path,
    stack_dir,
)
from llmctl.stack.spec import StackSpec

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Stack file.", show_default=f"./{CONFIG_FILE}"),
]
PresetOpt = Annotated[
    str | None,
    typer.Option(
        "--preset",
        "-p",
        metavar="NAME",
        help=f"Use a preset instead of a file: {', '.join(list_presets())}.",
        autocompletion=completion.presets,
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="Override any key, e.g. --set engine.sim.time_scale=10 (repeatable).",
    ),
]
RuntimeOpt = Annotated[
    Literal["local", "docker"] | None, typer.Option("--runtime", help="Where services run.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Same as --format json.")]
TimeoutOpt = Annotated[float | None, typer.Option("--timeout", help="Seconds to wait for health.")]
ServiceArg = Annotated[
    str | None,
    typer.Argument(
        metavar="SERVICE",
        help="One service: engine, gateway, prometheus (grafana and more with docker).",
        autocompletion=completion.services,
        show_default=False,
    ),
]


class RenderTarget(StrEnum):
    """What `llmctl render` writes: compose (with Prometheus/Grafana files) or a kustomize base."""

    compose = "compose"
    kubernetes = "kubernetes"


# The override flags `config`, `render` and `up` share: parameter name -> (stack key, annotation).
# `--set` reaches every key; these name the ones people change most.
OVERRIDE_FLAGS: dict[str, tuple[str, Any]] = {
    "runtime": ("runtime", RuntimeOpt),
    "max_active": (
        "gateway.max_active",
        Annotated[int | None, typer.Option("--max-active", help="gateway.max_active")],
    ),
    "queue_mode": (
        "gateway.queue_mode",
        Annotated[str | None, typer.Option("--queue-mode", help="gateway.queue_mode")],
    ),
    "queue_max": (
        "gateway.queue_max",
        Annotated[int | None, typer.Option("--queue-max", help="gateway.queue_max")],
    ),
    "queue_timeout": (
        "gateway.queue_timeout_s",
        Annotated[float | None, typer.Option("--queue-timeout", help="gateway.queue_timeout_s")],
    ),
    "request_timeout": (
        "gateway.request_timeout_s",
        Annotated[
            float | None, typer.Option("--request-timeout", help="gateway.request_timeout_s")
        ],
    ),
    "bind": (
        "ports.bind_address",
        Annotated[str | None, typer.Option("--bind", help="ports.bind_address")],
    ),
    "gateway_port": (
        "ports.gateway",
        Annotated[int | None, typer.Option("--gateway-port", help="ports.gateway")],
    ),
    "engine_port": (
        "ports.engine",
        Annotated[int | None, typer.Option("--engine-port", help="ports.engine")],
    ),
    "prometheus_port": (
        "ports.prometheus",
        Annotated[int | None, typer.Option("--prometheus-port", help="ports.prometheus")],
    ),
    "grafana_port": (
        "ports.grafana",
        Annotated[int | None, typer.Option("--grafana-port", help="ports.grafana")],
    ),
    "scrape_interval": (
        "observability.scrape_interval",
        Annotated[
            str | None,
            typer.Option("--scrape-interval", help="observability.scrape_interval"),
        ],
    ),
}
_SETS = "sets"


def with_overrides(command: Callable[..., None]) -> Callable[..., None]:
    """Give `command` `--set` and every OVERRIDE_FLAGS option, in place of its `overrides`
    parameter, which receives them as a list of Override (flags first, then --set)."""
    signature = inspect.signature(command, eval_str=True)
    flag_params = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ann)
        for name, (_, ann) in OVERRIDE_FLAGS.items()
    ]
    for key, ann in OVERRIDE_FLAGS.values():  # help names the variable that sets the key too
        option = ann.__metadata__[0]
        if "[env:" not in option.help:
            option.help += env_note(env_var_for(key))
    sets_param = inspect.Parameter(
        _SETS, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=SetOpt
    )
    params: list[inspect.Parameter] = []
    for param in signature.parameters.values():
        if param.name == "overrides":
            params += [sets_param, *flag_params]
        else:
            params.append(param.replace(kind=inspect.Parameter.KEYWORD_ONLY))

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        sets = kwargs.pop(_SETS, None)
        flags = [
            Override(key, value, "flag --" + name.replace("_", "-"))
            for name, (key, _) in OVERRIDE_FLAGS.items()
            if (value := kwargs.pop(name, None)) is not None
        ]
        command(**kwargs, overrides=flags + _sets(sets))

    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper


def _sets(sets: list[str] | None) -> list[Override]:
    return [parse_set(item) for item in sets or []]


def _load(config: Path | None, preset: str | None, flags: Sequence[Override] = ()) -> LoadedStack:
    loaded = load_stack(config=config, preset=preset, flags=flags)
    for note in loaded.notes:
        err_console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    return loaded


def _note(text: str) -> None:
    err_console.print(f"[yellow]note:[/yellow] {text}", highlight=False)


def _running_spec(config: Path | None, preset: str | None, sets: list[str] | None) -> StackSpec:
    """The spec the stack was brought up with (saved by `up`), else the current config's; the
    recorded one, with the error as a note, when the stack file is broken."""
    spec, notes = lifecycle.acted_on(lambda: _load(config, preset, _sets(sets)))
    for note in notes:
        _note(note)
    return spec


running_spec = _running_spec  # `chat` (its own module) acts on the running stack too


def init(
    preset: PresetOpt = None,
    path: Annotated[Path, typer.Option("--path", help="Where to write.")] = Path(CONFIG_FILE),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write llmctl.toml from a preset (local-sim unless --preset names another)."""
    name = preset or "local-sim"
    source = preset_path(name)
    if (path.exists() or path.is_symlink()) and not force:
        raise ConfigError(f"{path} exists; use --force to overwrite it")
    try:
        text = source.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the preset {source}: {exc.strerror}") from exc
    write_file(path, text)
    console.print(
        f"wrote {path} from preset [bold]{name}[/bold]; presets: {', '.join(list_presets())}"
    )


@with_overrides
def config(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    overrides: Sequence[Override] = (),
    form: FormatOpt = "table",
    as_json: JsonOpt = False,
) -> None:
    """Show the effective stack settings and where each value came from."""
    show_config(ConfigReport.of(_load(config, preset, overrides)), chosen(form, as_json))


@with_overrides
def render(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    overrides: Sequence[Override] = (),
    target: Annotated[
        RenderTarget,
        typer.Option(
            "--target",
            help="compose: .llmctl/<stack>/ (compose, Prometheus, Grafana); kubernetes: a "
            "kustomize base in .llmctl/<stack>/kubernetes/ (docs/kubernetes.md).",
        ),
    ] = RenderTarget.compose,
) -> None:
    """Write the stack's files into .llmctl/<stack>/ (nothing starts)."""
    spec = _load(config, preset, overrides).spec
    out = stack_dir(spec)
    if target is RenderTarget.kubernetes:
        paths = kubernetes.render_stack(spec, out)
        base = out / kubernetes.OUT
        for note in kubernetes.notes(spec, os.environ, base):
            _note(note)
        console.print(f"rendered {len(paths)} files into {base}", highlight=False)
        console.print(f"apply with: kubectl apply -k {base}", highlight=False)
        return
    paths = render_stack(spec, out)
    console.print(f"rendered {len(paths)} files into {out}")


@with_overrides
def up(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    overrides: Sequence[Override] = (),
    timeout: TimeoutOpt = None,
    force_recreate: Annotated[
        bool, typer.Option("--force-recreate", help="Restart every service, changed or not.")
    ] = False,
) -> None:
    """Render the stack and start it; waits until every service is healthy.

    On a running stack, applies what changed, as docker compose does: prints each setting that
    differs, changes the gateway's limits live (no restart) and restarts only the services whose
    configuration changed."""
    spec = _load(config, preset, overrides).spec
    with service_progress(console, lambda s: _table(spec, s)) as progress:
        outcome = lifecycle.up(spec, progress=progress, timeout=timeout, force=force_recreate)
    spec = outcome.spec
    for note in outcome.notes:
        _note(note)
    for line in reconciled(outcome):
        console.print(line, highlight=False, markup=False)
    if outcome.plan is None:
        console.print(f"stack [bold]{spec.name}[/bold] is up ({spec.runtime})")
    print_whole(_table(spec, outcome.result.services))
    console.print(f'try: llmctl chat "Hello"   (gateway {spec.endpoints()["gateway"]}/v1)')


def _table(spec: StackSpec, services: Sequence[ServiceStatus]) -> Table:
    return status_table(StatusReport.of(spec, services))


def restart(
    services: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="SERVICE",
            help="Services to restart: engine, gateway, prometheus (grafana and more with docker).",
            autocompletion=completion.services,
            show_default="every service",
        ),
    ] = None,
    timeout: TimeoutOpt = None,
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    sets: SetOpt = None,
) -> None:
    """Restart services of the running stack (all, or those named) with the settings it runs
    with; waits until every service is healthy."""
    spec = _running_spec(config, preset, sets)
    with service_progress(console, lambda s: _table(spec, s)) as progress:
        result = lifecycle.restart(spec, services or [], progress=progress, timeout=timeout)
    console.print(f"restarted {', '.join(services or ['every service'])} of stack {spec.name}")
    print_whole(_table(spec, result.services))


def down(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    sets: SetOpt = None,
    volumes: Annotated[bool, typer.Option("--volumes", help="Also delete stored data.")] = False,
) -> None:
    """Stop the stack's services (exactly those llmctl started)."""
    spec = _running_spec(config, preset, sets)
    for line in lifecycle.down(spec, volumes=volumes):
        console.print(line, highlight=False)


def status(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    sets: SetOpt = None,
    form: FormatOpt = "table",
    as_json: JsonOpt = False,
) -> None:
    """Show each service's state and health; exit 1 when any is not healthy."""
    spec = _running_spec(config, preset, sets)
    report = StatusReport.of(spec, lifecycle.status(spec))
    show_status(report, chosen(form, as_json))
    if not report.ready:
        raise typer.Exit(1)


def logs(
    service: ServiceArg = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing.")] = False,
    tail: Annotated[
        int | None, typer.Option("--tail", "-n", help="Only the last N lines of each service.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only lines since: a duration back (10m, 2h) or a time."),
    ] = None,
    timestamps: Annotated[
        bool, typer.Option("--timestamps", "-t", help="Show when each line was logged.")
    ] = False,
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    sets: SetOpt = None,
) -> None:
    """Print the stack's logs (all services, or one)."""
    options = lifecycle.log_options(tail, since, timestamps)
    spec = _running_spec(config, preset, sets)
    try:
        for line in lifecycle.logs(spec, service, follow=follow, options=options):
            console.out(line, highlight=False)
    except KeyboardInterrupt:
        pass


def doctor(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    sets: SetOpt = None,
    form: FormatOpt = "table",
    as_json: JsonOpt = False,
) -> None:
    """Check what the stack needs here, all in one run: Docker, Compose, the NVIDIA driver and
    runtime, GPUs and their free memory against the model's need, ports, disk, Prometheus, vLLM."""
    spec = _load(config, preset, _sets(sets)).spec
    started = time.monotonic()
    checks = diagnose(spec)
    report = DoctorReport.of(spec, checks, time.monotonic() - started)
    show_doctor(report, chosen(form, as_json))
    if not report.ok:
        raise RuntimeBackendError(f"stack {spec.name} cannot run here; see the checks marked FAIL")


def register(app: typer.Typer) -> None:
    """Add the stack commands to the top-level app."""
    for command in (init, config, render, up, restart, down, status, logs, doctor):
        app.command(command.__name__)(command)
