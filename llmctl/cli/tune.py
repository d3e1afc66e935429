"""`llmctl tune` commands: find the best MAX_ACTIVE under a latency target, live."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from llmctl.cli.console import console, err_console, fail
from llmctl.cli.help import App
from llmctl.cli.options import check_output, env_secret, write_output
from llmctl.cli.output import FormatOpt, emit
from llmctl.core.errors import LlmctlError, UsageError
from llmctl.stack.endpoints import DEFAULT_URLS, resolve
from llmctl.stack.settings import edit_stack_file, list_presets
from llmctl.tune.limits import GatewayAdmin
from llmctl.tune.live import ConsoleTuneProgress
from llmctl.tune.report import TuneSettings, tune_slo
from llmctl.tune.runner import tune_max_active
from llmctl.tune.trial import TrialPlan
from llmctl.tune.view import render_report

app = App(
    help="Tune the stack live: the best MAX_ACTIVE under a latency target.", no_args_is_help=True
)


@app.command("max-active")
def max_active(
    gateway: str | None = typer.Option(
        None,
        "--gateway",
        help="Gateway URL.",
        show_default=f"the stack's, else {DEFAULT_URLS['gateway']}",
    ),
    admin_key_env: str | None = typer.Option(
        None,
        "--admin-key-env",
        help="Environment variable holding the gateway's admin key.",
        show_default="the stack's (its admin_key_env/admin_key_file or generated .env), "
        "else LLMCTL_ADMIN_KEY",
    ),
    api_key_env: str | None = typer.Option(
        None, "--api-key-env", help="Environment variable holding a gateway API key, if needed."
    ),
    engine_metrics: list[str] = typer.Option(
        [],
        "--engine-metrics",
        help="Engine /metrics URL for preemptions and KV use (repeatable).",
        show_default="the stack's",
    ),
    slo: str | None = typer.Option(
        None,
        "--slo",
        help="p95 targets of admitted requests, e.g. ttft=2s,itl=100ms,e2e=30s.",
        show_default="the stack's alert SLOs (ttft, e2e)",
    ),
    max_preemptions_per_s: float | None = typer.Option(
        None,
        "--max-preemptions-per-s",
        min=0,
        help="Engine preemptions per second a passing trial may have.",
        show_default="the stack's alert",
    ),
    low: int = typer.Option(1, "--min", min=1, help="Smallest MAX_ACTIVE to try."),
    high: int = typer.Option(256, "--max", min=1, help="Largest MAX_ACTIVE to try."),
    trial_duration: float = typer.Option(
        20.0, "--trial-duration", min=0.1, help="Seconds measured per trial (after the warm-up)."
    ),
    warmup: float = typer.Option(5.0, "--warmup", min=0, help="Seconds discarded per trial."),
    input_len: int = typer.Option(256, "--input-len", min=1, help="Prompt length, tokens."),
    output_len: int = typer.Option(128, "--output-len", min=1, help="Output length, tokens."),
    grid: bool = typer.Option(False, "--grid", help="Try every value from --min to --max."),
    switch_adaptive: bool = typer.Option(
        False,
        "--switch-adaptive",
        help="If the gateway's limit is adaptive, make it static for the trials (restored after).",
    ),
    apply: bool = typer.Option(
        False, "--apply", help="Keep the recommendation live and write it into the stack file."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the report as JSON here."),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="Stack file for defaults and --apply.",
        show_default="./llmctl.toml",
    ),
    form: FormatOpt = "table",
) -> None:
    """Find the highest-throughput MAX_ACTIVE whose admitted requests meet the SLO.

    Each trial sets MAX_ACTIVE through the gateway's admin API (no restart) and drives
    closed-loop load above it. The original limits come back afterwards, and on Ctrl-C or
    error, unless --apply succeeds.
    """
    if high < low:
        raise UsageError(f"--max ({high}) is below --min ({low})")
    check_output(json_out, "--json")
    defaults = resolve(config)
    gateway_url = (gateway or defaults.gateway_url or DEFAULT_URLS["gateway"]).rstrip("/")
    # The stack's engine and keys belong to the stack's gateway, not to one named by --gateway.
    ours = defaults.owns(gateway_url)
    admin_key = (
        env_secret(admin_key_env, "--admin-key-env")
        if admin_key_env
        else (defaults.admin_key if ours else None) or os.environ.get("LLMCTL_ADMIN_KEY")
    )
    if not admin_key:
        raise UsageError(
            "no admin key: pass --admin-key-env VAR naming the variable that holds the gateway's "
            "admin key (the gateway's LLMCTL_ADMIN_KEY)"
        )
    if apply and defaults.config_path is None:
        running = defaults.spec.name if defaults.spec is not None else None
        init = f"llmctl init --preset {running}" if running in list_presets() else "llmctl init"
        raise UsageError(
            "--apply writes the result into the stack file, and there is none here: create "
            f"llmctl.toml with `{init}`, or pass --config PATH"
        )
    if apply and defaults.config_path is not None:
        check_output(defaults.config_path, "--apply")  # now, not after the whole run
    if apply and not ours:
        raise UsageError(
            f"--apply writes {defaults.config_path}, whose gateway is {defaults.gateway_url}, "
            f"not {gateway_url}"
        )
    stack_engine = defaults.engine_metrics_url if ours else None
    stack_key = defaults.api_key if ours else None
    metrics_urls = engine_metrics or ([stack_engine] if stack_engine else [])
    if max_preemptions_per_s is not None and not metrics_urls:
        raise UsageError("--max-preemptions-per-s needs the engine's metrics: --engine-metrics URL")
    if max_preemptions_per_s is None and metrics_urls:
        max_preemptions_per_s = defaults.preemptions_per_s
    settings = TuneSettings(
        gateway=gateway_url,
        engine_metrics=metrics_urls,
        slo=tune_slo(slo, defaults.slo),
        max_preemptions_per_s=max_preemptions_per_s,
        min_max_active=low,
        max_max_active=high,
        grid=grid,
        trial_duration_s=trial_duration,
        warmup_s=warmup,
        input_len=input_len,
        output_len=output_len,
        apply=apply,
        switch_adaptive=switch_adaptive,
    )
    plan = TrialPlan(
        settings, api_key=env_secret(api_key_env, "--api-key-env") if api_key_env else stack_key
    )
    config_path = defaults.config_path
    writer = (
        (lambda value: edit_stack_file(config_path, {"gateway.max_active": value}))
        if apply and config_path is not None
        else None
    )
    admin = GatewayAdmin(gateway_url, admin_key)
    # With a document format (md, json) on stdout, progress goes to stderr.
    log = console if form in ("table", "plain") else err_console
    try:
        with ConsoleTuneProgress(log) as live:
            report = tune_max_active(plan, admin, progress=live, apply=writer)
    except KeyboardInterrupt:
        fail("interrupted: the gateway's original limits were restored")
        raise typer.Exit(130) from None
    finally:
        admin.close()
    emit(render_report(report), form, report.to_json)
    if json_out is not None:
        write_output(json_out, report.to_json() + "\n")
        log.print(f"Report written to {json_out}", highlight=False, soft_wrap=True)
    if report.apply_error:
        raise LlmctlError(f"--apply failed: {report.apply_error}; the original limits are live")
