"""The report's figures as image files (SVG as drawn, or PNG rasterised from it) for docs and chat."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import resvg_py

from llmctl.core.errors import LlmctlError
from llmctl.report.sections import Section
from llmctl.report.svg import render_svg

ImageFormat = Literal["svg", "png"]
PNG_ZOOM = 2.0  # 1280 x 720: sharp on a high-density screen, still small


def figure_files(sections: Sequence[Section], image_format: ImageFormat) -> dict[str, bytes]:
    """{file name: content}, one file per drawn figure, named `<section>-<figure>.<format>`.

    Figures with nothing to draw (a series not recorded in this run) are left out."""
    files: dict[str, bytes] = {}
    for section in sections:
        for fig in section.figures:
            if fig.empty:
                continue
            svg = render_svg(fig) + "\n"
            name = f"{section.key}-{fig.key}.{image_format}"
            if image_format == "svg":
                files[name] = svg.encode("utf-8")
            else:
                png = resvg_py.svg_to_bytes(svg_string=svg, background="#ffffff", zoom=PNG_ZOOM)
                files[name] = bytes(png)
    return files


def write_files(folder: Path, files: dict[str, bytes]) -> list[Path]:
    """Write every file into `folder` (made if missing); a failure names the file."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LlmctlError(f"cannot make {folder}: {exc.strerror or exc}") from exc
    written = []
    for name, content in files.items():
        path = folder / name
        try:
            path.write_bytes(content)
        except OSError as exc:
            raise LlmctlError(f"could not write {path}: {exc.strerror or exc}") from exc
        written.append(path)
    return written
