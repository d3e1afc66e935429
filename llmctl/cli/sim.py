"""`llmctl sim` commands: run the vLLM-faithful engine simulator."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import typer

from llmctl.cli.console import console
from llmctl.cli.help import App
from llmctl.core import aio
from llmctl.sim.config import SimConfig
from llmctl.sim.faults import FaultSpec
from llmctl.sim.profiles import PROFILES, get_profile
from llmctl.sim.scenario import load_scenario

app = App(
    help="Run a simulated vLLM engine (OpenAI API, vLLM metrics, DCGM telemetry).",
    no_args_is_help=True,
)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on (0 picks a free one)."),
    model: str = typer.Option("llmctl-sim", help="Served model name (in /v1/models and metrics)."),
    profile: str = typer.Option(
        "tiny",
        help=f"Hardware profile: {', '.join(PROFILES)}. See docs/simulator.md.",
        autocompletion=lambda incomplete: [p for p in PROFILES if p.startswith(incomplete)],
    ),
    time_scale: float = typer.Option(
        1.0, help="Run N times faster than the simulated hardware (all step times divided by N)."
    ),
    max_num_seqs: int | None = typer.Option(
        None, help="Most requests in the running batch (overrides the profile)."
    ),
    max_model_len: int | None = typer.Option(
        None, help="Context window, tokens: prompt + output at most (overrides the profile)."
    ),
    num_gpu_blocks: int | None = typer.Option(
        None, help="KV cache size in blocks (overrides the profile)."
    ),
    block_size: int | None = typer.Option(
        None, help="Tokens per KV block (overrides the profile)."
    ),
    max_num_batched_tokens: int | None = typer.Option(
        None, help="Token budget per engine step, chunked prefill (overrides the profile)."
    ),
    seed: int = typer.Option(0, help="Seed for generated text, output lengths and faults."),
    startup_delay: float = typer.Option(
        0.0, help="Seconds (wall clock) to report 'loading': /health and the API answer 503."
    ),
    error_rate: float = typer.Option(
        0.0, help="Fraction of requests answered with HTTP 500 before the first byte."
    ),
    drop_rate: float = typer.Option(
        0.0, help="Fraction of requests whose connection is closed after some tokens."
    ),
    stall_rate: float = typer.Option(
        0.0, help="Fraction of requests that get no response at all until the client gives up."
    ),
    scenario: Path | None = typer.Option(
        None,
        help="TOML/JSON file of timed changes (slowdown, KV share, prompt/output scale) in "
        "simulated seconds; see docs/simulator.md. Live: PUT /sim/conditions.",
    ),
    prefix_caching: bool = typer.Option(
        True,
        "--prefix-caching/--no-prefix-caching",
        help="Keep computed prompt blocks for later requests that share the prefix, as vLLM v1 "
        "does unless told not to (its --enable-prefix-caching/--no-enable-prefix-caching work "
        "too).",
    ),
    # vLLM's names for the same switch, kept out of help: the pair would not fit 80 columns.
    vllm_prefix_caching: bool | None = typer.Option(
        None, "--enable-prefix-caching/--no-enable-prefix-caching", hidden=True
    ),
) -> None:
    """Serve the OpenAI API on a simulated vLLM engine until interrupted."""
    config = SimConfig(
        host=host,
        port=port,
        model=model,
        profile=get_profile(profile).with_overrides(
            max_num_seqs=max_num_seqs,
            max_model_len=max_model_len,
            num_gpu_blocks=num_gpu_blocks,
            block_size=block_size,
            max_num_batched_tokens=max_num_batched_tokens,
        ),
        time_scale=time_scale,
        seed=seed,
        faults=FaultSpec(
            startup_delay_s=startup_delay,
            error_rate=error_rate,
            drop_rate=drop_rate,
            stall_rate=stall_rate,
        ),
        scenario=load_scenario(scenario) if scenario is not None else None,
        prefix_caching=prefix_caching if vllm_prefix_caching is None else vllm_prefix_caching,
    )
    _run(config)


def _run(config: SimConfig) -> None:
    from llmctl.sim.server import serve as serve_forever

    def announce(url: str) -> None:
        p = config.profile
        console.print(
            f"llmctl sim: serving [bold]{config.model}[/bold] on {url} "
            f"(profile {p.name}, max_num_seqs={p.max_num_seqs}, "
            f"kv={p.num_gpu_blocks}x{p.block_size} tokens, time_scale={config.time_scale}, "
            f"prefix caching {'on' if config.prefix_caching else 'off'})",
            highlight=False,
            soft_wrap=True,  # one line in a log, whatever COLUMNS says
        )

    async def main() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            if task is not None:
                loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await serve_forever(config, announce)

    aio.run(main())
