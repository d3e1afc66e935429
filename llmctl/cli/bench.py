"""`llmctl bench` commands: drive load at levels of concurrency or rate; compare two results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from pydantic import ValidationError
from rich.console import Console

from llmctl.bench.compare import compare_reports
from llmctl.bench.config import BenchConfig, PromptSpec
from llmctl.bench.export import comparison_json, render_comparison, to_csv
from llmctl.bench.live import ConsoleProgress
from llmctl.bench.mix import load_mix
from llmctl.bench.report import BenchReport, load_report
from llmctl.bench.runner import run_bench
from llmctl.bench.strategies import ConcurrentStrategy, MixStrategy, RateStrategy, Strategy
from llmctl.bench.view import compare_view, report_view
from llmctl.cli.console import console, err_console
from llmctl.cli.help import App
from llmctl.cli.options import check_distinct_outputs, check_output, env_secret, write_output
from llmctl.cli.output import FormatOpt, emit
from llmctl.core.errors import LlmctlError, TargetError, UsageError
from llmctl.core.slo import SLO, parse_slo
from llmctl.core.validation import first_problem
from llmctl.stack.endpoints import resolve

app = App(
    help="Load-test an OpenAI-compatible target (gateway or engine) and measure what users feel.",
    no_args_is_help=True,
)

ARRIVALS = ("poisson", "constant", "gamma")
# BenchConfig field -> the flag that sets it, so errors speak in flags.
_FLAGS = {
    "duration_s": "--duration",
    "requests": "--requests",
    "warmup_s": "--warmup",
    "prompts.input_len": "--input-len",
    "prompts.input_spread": "--input-spread",
    "prompts.output_len": "--output-len",
    "prompts.output_spread": "--output-spread",
    "prompts.dataset": "--dataset",
    "request_timeout_s": "--timeout",
    "reject_backoff_s": "--reject-backoff",
    "target": "--target",
}
# PromptSpec is checked on its own first: its fields come without the `prompts.` prefix.
_FLAGS.update(
    {k.removeprefix("prompts."): v for k, v in _FLAGS.items() if k.startswith("prompts.")}
)


def _numbers(text: str, flag: str, kind: type[int] | type[float]) -> list[float]:
    try:
        values = [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(
            f"{flag} takes a comma list of numbers, e.g. 1,8,32 (got {text!r})"
        ) from None
    if not values or any(v <= 0 for v in values):
        raise UsageError(f"{flag} needs positive numbers (got {text!r})")
    return [float(v) for v in values]


def _levels(
    concurrency: str | None,
    rate: str | None,
    arrival: str,
    burstiness: float,
    max_concurrency: int | None,
    mixes: list[Path],
) -> list[Strategy]:
    if mixes:
        if concurrency is not None or rate is not None:
            raise UsageError("--mix sets each stream's load: leave out --concurrency and --rate")
        return [load_mix(path) for path in mixes]
    if (concurrency is None) == (rate is None):
        raise UsageError("give exactly one of --concurrency 1,8,32, --rate 2,4,8 or --mix FILE")
    if arrival not in ARRIVALS:
        raise UsageError(f"--arrival must be one of {', '.join(ARRIVALS)} (got {arrival!r})")
    if burstiness <= 0:
        raise UsageError("--burstiness must be positive")
    if arrival != "gamma" and burstiness != 1.0:
        raise UsageError("--burstiness applies to --arrival gamma (poisson is gamma with 1)")
    if concurrency is not None:
        return [
            ConcurrentStrategy(concurrency=int(n))
            for n in _numbers(concurrency, "--concurrency", int)
        ]
    assert rate is not None
    return [
        RateStrategy(
            rate=r, arrival=arrival, burstiness=burstiness, max_concurrency=max_concurrency
        )
        for r in _numbers(rate, "--rate", float)
    ]


def _stream_keys(levels: list[Strategy]) -> dict[str, str]:
    """The key of every mix stream that names an `api_key_env`, by that variable's name."""
    keys: dict[str, str] = {}
    for level in levels:
        if isinstance(level, MixStrategy):
            for spec in level.streams:
                if spec.api_key_env is not None and spec.api_key_env not in keys:
                    flag = f"--mix (level {level.label}, stream {spec.name}) api_key_env"
                    keys[spec.api_key_env] = env_secret(spec.api_key_env, flag)
    return keys


def _metadata(items: list[str]) -> dict[str, str]:
    """`--metadata KEY=VALUE` (repeatable), as vLLM's: both sides stripped, the last one wins."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--metadata takes KEY=VALUE, e.g. --metadata gpu=h100 (got {item!r})")
        out[key.strip()] = value.strip()
    return out


@app.callback(invoke_without_command=True)
def bench(
    ctx: typer.Context,
    target: str | None = typer.Option(
        None,
        "--target",
        help="Base URL of the gateway or engine, e.g. http://127.0.0.1:8080. With the stack's "
        "gateway, its engine's /metrics is sampled too.",
        show_default="the stack's gateway",
    ),
    concurrency: str | None = typer.Option(
        None, "--concurrency", help="Closed-loop levels: requests kept in flight, e.g. 1,8,32."
    ),
    rate: str | None = typer.Option(
        None, "--rate", help="Open-loop levels: requests started per second, e.g. 2,4,8."
    ),
    arrival: Literal["poisson", "constant", "gamma"] = typer.Option(
        "poisson", "--arrival", help="How --rate levels space their requests."
    ),
    burstiness: float = typer.Option(
        1.0, "--burstiness", help="Gamma shape for --arrival gamma (<1 burstier, >1 smoother)."
    ),
    max_concurrency: int | None = typer.Option(
        None, "--max-concurrency", help="Cap on requests in flight for --rate levels."
    ),
    mix: list[Path] = typer.Option(
        [],
        "--mix",
        help="A level of several streams at once (tenants, classes), from a TOML file; "
        "repeatable, a level per file. See docs/bench.md.",
    ),
    duration: float | None = typer.Option(
        None,
        "--duration",
        help="Seconds to measure per level.",
        show_default="30, unless --requests",
    ),
    requests: int | None = typer.Option(
        None, "--requests", help="Requests to measure per level instead of a duration."
    ),
    warmup: float = typer.Option(
        0.0, "--warmup", help="Seconds of load per level before measuring (discarded)."
    ),
    input_len: int = typer.Option(256, "--input-len", help="Synthetic prompt length, tokens."),
    input_spread: float = typer.Option(
        0.0, "--input-spread", help="Prompt lengths vary uniformly within mean x (1 +- spread)."
    ),
    output_len: int = typer.Option(128, "--output-len", help="max_tokens of a request (mean)."),
    output_spread: float = typer.Option(
        0.0, "--output-spread", help="max_tokens vary uniformly within mean x (1 +- spread)."
    ),
    ignore_eos: bool = typer.Option(
        True, "--ignore-eos/--no-ignore-eos", help="Ask the engine to generate all max_tokens."
    ),
    dataset: Path | None = typer.Option(
        None, "--dataset", help="JSONL file of requests (objects with 'messages', or 'prompt')."
    ),
    endpoint: Literal["chat", "completions"] = typer.Option(
        "chat", "--endpoint", help="/v1/chat/completions or /v1/completions."
    ),
    model: str | None = typer.Option(
        None, "--model", help="Model name.", show_default="the first one the target lists"
    ),
    api_key_env: str | None = typer.Option(
        None, "--api-key-env", help="Environment variable holding the API key."
    ),
    slo: str | None = typer.Option(
        None, "--slo", help="Goodput targets per request, e.g. ttft=2s,itl=100ms,e2e=30s."
    ),
    engine_metrics: list[str] = typer.Option(
        [], "--metrics-url", help="Extra /metrics URL to sample (e.g. the engine behind a gateway)."
    ),
    timeout: float = typer.Option(600.0, "--timeout", help="Client timeout per request, seconds."),
    reject_backoff: float = typer.Option(
        0.1, "--reject-backoff", help="Closed loop: seconds a worker pauses after a 429/503."
    ),
    seed: int = typer.Option(
        0,
        "--seed",
        help="Seed for prompt lengths and arrival times (the words are new in every run).",
    ),
    label: str | None = typer.Option(
        None, "--label", help="A name for this run, kept in the JSON and shown by compare."
    ),
    metadata: list[str] = typer.Option(
        [],
        "--metadata",
        metavar="KEY=VALUE",
        help="Kept in the JSON (repeatable), e.g. gpu=h100.",
    ),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Also print every number of every level (the full table)."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the result as JSON here."),
    csv_out: Path | None = typer.Option(None, "--csv", help="Write one CSV row per level here."),
    form: FormatOpt = "table",
) -> None:
    """Drive load at each level and report latency, throughput, failures and server peaks."""
    if ctx.invoked_subcommand is not None:
        return
    levels = _levels(concurrency, rate, arrival, burstiness, max_concurrency, mix)
    if mix and max_concurrency is not None:
        raise UsageError("--max-concurrency goes in a --mix stream (max_concurrency = N)")
    notes = _metadata(metadata)
    check_output(json_out, "--json")
    check_output(csv_out, "--csv")
    check_distinct_outputs({"--json": json_out, "--csv": csv_out})
    # With a document format (md, json) on stdout, progress and notes go to stderr.
    log = console if form in ("table", "plain") else err_console
    stack = resolve()
    if target is None:
        urls = stack.urls
        target = urls["gateway"]
        # A docker stack publishes no engine: then only the gateway is sampled.
        if not engine_metrics and "engine" in urls:
            engine_metrics = [f"{urls['engine']}/metrics"]
        log.print(f"[dim]target: the stack's gateway {target}[/dim]")
    # The stack's API key belongs to the stack's gateway, not to any --target.
    api_key = env_secret(api_key_env, "--api-key-env") if api_key_env else None
    keys_by_env = _stream_keys(levels)
    if api_key is None and stack.owns(target):
        api_key = stack.api_key
    if endpoint not in ("chat", "completions"):
        raise UsageError(f"--endpoint must be chat or completions (got {endpoint!r})")
    if duration is None and requests is None:
        duration = 30.0
    try:
        config = BenchConfig(
            target=target,
            model=model,
            api_key=api_key,
            api_keys_by_env=keys_by_env,
            levels=levels,
            duration_s=duration,
            requests=requests,
            warmup_s=warmup,
            prompts=PromptSpec(
                input_len=input_len,
                input_spread=input_spread,
                output_len=output_len,
                output_spread=output_spread,
                ignore_eos=ignore_eos,
                dataset=dataset,
                endpoint=endpoint,
            ),
            slo=parse_slo(slo) if slo else SLO(),
            request_timeout_s=timeout,
            reject_backoff_s=reject_backoff,
            metrics_urls=engine_metrics,
            seed=seed,
        )
    except ValidationError as exc:
        raise UsageError(f"bad bench settings: {first_problem(exc, names=_FLAGS)}") from None
    progress = ConsoleProgress(log)
    try:
        report = run_bench(config, progress)
    finally:
        progress.close()
    report = report.model_copy(update={"label": label, "metadata": notes})
    emit(report_view(report, verbose=verbose), form, report.to_json)
    _write(report, json_out, csv_out, log)
    if all(level.completed == 0 for level in report.levels):
        samples = {k: v for level in report.levels for k, v in level.error_samples.items()}
        detail = "; ".join(f"{k}: {v}" for k, v in samples.items())
        raise TargetError(f"no request succeeded ({detail})")


def _write(report: BenchReport, json_out: Path | None, csv_out: Path | None, log: Console) -> None:
    """Write each output asked for; one that fails does not keep the other from being written."""
    outputs: list[tuple[Path, str]] = []
    if json_out is not None:
        outputs.append((json_out, report.to_json() + "\n"))
    if csv_out is not None:
        outputs.append((csv_out, to_csv(report)))
    failed: list[str] = []
    for path, text in outputs:
        try:
            write_output(path, text)
        except LlmctlError as exc:
            failed.append(str(exc))
            continue
        log.print(f"wrote {path}", soft_wrap=True)
    if failed:
        raise LlmctlError("; ".join(failed))


CompareFormat = Literal["table", "plain", "md", "csv", "json"]


@app.command()
def compare(
    a: Path = typer.Argument(..., help="The baseline result (JSON from --json)."),
    b: Path = typer.Argument(..., help="The result to compare with it."),
    form: Annotated[
        CompareFormat,
        typer.Option(
            "--format",
            help="table (coloured on a terminal), plain (lines, for logs), md, csv or json.",
        ),
    ] = "table",
) -> None:
    """Compare two results: the settings that differ, then the headline numbers per level with
    their % change (green and "better" where B is better)."""
    comparison = compare_reports(load_report(a), load_report(b), a.name, b.name)
    view = compare_view(comparison)
    if form in ("md", "csv"):  # written by hand: md keeps the level once per group
        typer.echo(render_comparison(comparison, form), nl=False)
    else:
        emit(view, form, lambda: comparison_json(comparison))
