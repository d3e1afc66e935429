"""How the stack commands print what they found: one view per report (status, config, doctor),
printed in the format asked for (`--format table|plain|md|json`, `--json` for short), and the
lines that say what `up` did to a running stack."""

from __future__ import annotations

from rich.table import Table

from llmctl.cli.output import Format, emit
from llmctl.stack.lifecycle import UpOutcome
from llmctl.stack.reports import ConfigReport, DoctorReport, StatusReport, to_json

_HEALTH = {"healthy": "green", "unhealthy": "red", "starting": "yellow", "none": "dim"}
_MARKS = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]"}


def status_table(report: StatusReport) -> Table:
    table = Table(title=f"{report.stack} ({report.runtime})", title_justify="left")
    for column in ("service", "state", "health", "endpoint", "detail"):
        table.add_column(column)
    for s in report.services:
        health = f"[{_HEALTH[s.health]}]{s.health}[/]"
        table.add_row(s.name, s.state, health, s.url or "-", s.detail)
    return table


def show_status(report: StatusReport, form: Format = "table") -> None:
    emit(status_table(report), form, lambda: to_json(report))


def _shown(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return str(value).lower() if isinstance(value, bool) else repr(value)


def config_table(report: ConfigReport) -> Table:
    table = Table(title=f"stack {report.stack} ({report.origin})", title_justify="left")
    for column in ("key", "value", "source"):
        table.add_column(column)
    for setting in report.settings:
        style = "dim" if setting.source == "default" else ""
        table.add_row(setting.key, _shown(setting.value), setting.source, style=style)
    return table


def show_config(report: ConfigReport, form: Format = "table") -> None:
    emit(config_table(report), form, lambda: to_json(report))


def doctor_table(report: DoctorReport) -> Table:
    title = f"doctor for stack {report.stack} ({report.runtime}), {report.seconds:.2f} s"
    table = Table(title=title, title_justify="left")
    for column in ("check", "result", "detail"):
        table.add_column(column)
    for check in report.checks:
        table.add_row(check.name, _MARKS[check.level], check.detail)
    return table


def show_doctor(report: DoctorReport, form: Format = "table") -> None:
    emit(doctor_table(report), form, lambda: to_json(report))


def reconciled(outcome: UpOutcome) -> list[str]:
    """What `up` did to a running stack: each setting that differs (and whether it went live),
    the services it stopped and restarted, and why."""
    plan = outcome.plan
    if plan is None:
        return []
    name = outcome.spec.name
    lines = []
    if plan.changes:
        lines.append(f"stack {name} is running; settings that differ from what it runs with:")
        for change in plan.changes:
            field = change.key.partition(".")[2]
            how = ""
            if field in plan.live:
                how = "  (already live)" if field in outcome.already_live else "  (changed live)"
            lines.append(f"  {change.key}: {_shown(change.old)} -> {_shown(change.new)}{how}")
    if plan.live:
        lines.append("the gateway's limits changed live: no restart, no request dropped")
    lines += [f"stopped {line}" for line in outcome.stopped]
    for service in plan.restart:
        lines.append(f"restarted {service}: {plan.why.get(service, 'asked to')}")
    if not plan.changes and not plan.restart and not plan.stop:
        lines.append(f"stack {name} is already running; nothing changed")
    elif plan.changes and not plan.restart and not plan.live and not plan.stop:
        lines.append("no service's configuration changed: nothing restarted")
    return lines
