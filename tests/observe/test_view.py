"""The `llmctl top` screen rendered from known snapshots into a 100-column StringIO console."""

from __future__ import annotations

import io

from rich.console import Console

from llmctl.observe.snapshot import GpuSnapshot, History, StackSnapshot
from llmctl.observe.view import MISSING, bar, fit, render, sparkline


def screen(snap: StackSnapshot) -> str:
    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(render(snap))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(out, str)
    return out


def line_with(text: str, label: str) -> str:
    lines = [line for line in text.splitlines() if label in line]
    assert lines, f"no line with {label!r} in:\n{text}"
    return lines[0]


def cell(text: str, label: str) -> str:
    """What follows `label` inside its panel (up to the panel's border)."""
    line = line_with(text, label)
    return line[line.index(label) + len(label) :].split("│")[0].strip()


BUSY = StackSnapshot(
    source="prometheus",
    source_url="http://127.0.0.1:9090",
    taken_at=0.0,
    window_s=10.0,
    history_span_s=120.0,
    slots_active=4,
    slots_max=4,
    queue_depth=7,
    queue_max=10,
    queue_wait_p95_s=0.25,
    ok_per_s=12.5,
    rejected_429_per_s=1.2,
    unavailable_503_per_s=0.0,
    error_per_s=0.05,
    e2e_p50_s=0.8,
    e2e_p95_s=2.5,
    e2e_p99_s=4.1,
    ttft_p50_s=0.04,
    ttft_p95_s=0.12,
    admitted_ttft_p95_s=0.03,
    tpot_p95_s=0.021,
    engine_running=4,
    engine_waiting=0,
    kv_cache_usage=0.873,
    preemptions_per_s=0.25,
    prompt_tokens_per_s=900,
    generation_tokens_per_s=412,
    gpus=[
        GpuSnapshot(
            gpu="0",
            name="NVIDIA H100",
            util_pct=97,
            mem_used_mib=71680,
            mem_total_mib=81920,
            temp_c=71,
            power_w=650,
        )
    ],
    history=History(request_rate=[0, 2, 4, 8], e2e_p95_s=[1, 1, 2], queue_depth=[0, 7]),
)


def test_key_cells_of_a_busy_stack() -> None:
    text = screen(BUSY)
    assert "source: prometheus http://127.0.0.1:9090" in line_with(text, "llmctl top")
    assert "q to quit" not in text
    console = Console(file=io.StringIO(), width=100)
    console.print(render(BUSY, live=True))
    assert "q to quit" in console.file.getvalue()  # type: ignore[attr-defined]
    assert "4 / 4" in line_with(text, "slots")
    assert "7 / 10" in line_with(text, "queue ")
    assert "250 ms" in line_with(text, "wait p95")
    assert "12.5/s" in line_with(text, "ok ")
    assert "1.2/s" in line_with(text, "429")
    assert "0.0/s" in line_with(text, "503")
    assert "800 ms" in line_with(text, "E2E p50")
    assert "2.50 s" in line_with(text, "E2E p95")
    assert "4.10 s" in line_with(text, "E2E p99")
    assert "40 ms" in line_with(text, "TTFT p50")
    assert "120 ms" in line_with(text, "TTFT p95")
    assert "30 ms" in line_with(text, "engine TTFT p95")
    assert "21 ms" in line_with(text, "TPOT p95")
    # Every live panel names its window; history names its longer span.
    assert "latency (last 10 s)" in text
    assert "traffic (last 10 s)" in text
    assert "history (last 2 min" in text
    assert "87.3 %" in line_with(text, "KV cache")
    assert "0.25/s" in line_with(text, "preemptions")
    assert "412/s" in line_with(text, "gen tok")
    gpu = line_with(text, "NVIDIA H100")
    for value in ("97 %", "70.0 / 80.0 GiB", "71 °C", "650 W"):
        assert value in gpu
    assert cell(text, "requests/s") == "▁▃▅█  8.0/s"
    history = text[text.index("history (") :]
    assert cell(history, "queue") == "▁█  7"
    assert cell(history, "E2E p95").endswith("2.00 s")
    assert cell(history, "GPU util") == MISSING


def test_missing_series_show_a_dash_and_the_fallback_source() -> None:
    empty = StackSnapshot(
        source="direct",
        source_url="http://127.0.0.1:8080/metrics",
        note="Prometheus unreachable; reading /metrics directly",
        taken_at=0.0,
        window_s=1.0,
        gpus=[GpuSnapshot(gpu="0")],
    )
    text = screen(empty)
    assert "source: direct" in text
    assert "Prometheus unreachable" in text
    assert f"{MISSING} / {MISSING}" in line_with(text, "slots")
    for label in ("ok ", "429", "p99", "KV cache", "gen tok", "GPU util"):
        assert cell(text, label) == MISSING, label


def test_bars_and_sparklines_edge_cases() -> None:
    assert "0 / 0" in bar(0, 0).plain
    assert bar(3, 0).plain.startswith("█")  # waiting with no queue allowed: full
    assert bar(9, 4).plain.count("█") == bar(4, 4).plain.count("█")  # clamped, no overflow
    assert sparkline([]) == MISSING
    assert sparkline([0, 0]) == "▁▁"
    assert len(sparkline(list(range(100)), width=40)) == 40


def test_engines_and_classes_get_rows_of_their_own() -> None:
    from llmctl.observe.snapshot import ClassSnapshot, EngineSnapshot

    snap = BUSY.model_copy(
        update={
            "engines": [
                EngineSnapshot(engine="10.0.0.1:8000", active=3, limit=4, up=True),
                EngineSnapshot(engine="10.0.0.2:8000", active=0, limit=1, up=False),
            ],
            "classes": [
                ClassSnapshot(name="batch", queued=12, active=1),
                ClassSnapshot(name="interactive", queued=0, active=3),
            ],
        }
    )
    text = screen(snap)
    assert "3 / 4" in line_with(text, "10.0.0.1:8000")
    assert "out of rotation" in line_with(text, "10.0.0.2:8000")
    assert "12 waiting, 1 active" in line_with(text, "batch")
    assert "0 waiting, 3 active" in line_with(text, "interactive")
    assert "engines" not in screen(BUSY)  # one engine: no engine rows


def test_the_response_cache_gets_a_panel_while_it_is_on() -> None:
    assert "response cache" not in screen(BUSY.model_copy(update={"cache_max_bytes": 0.0}))
    snap = BUSY.model_copy(
        update={
            "cache_hit_per_s": 3.0,
            "cache_miss_per_s": 1.0,
            "cache_bytes": 16 * 2**20,
            "cache_max_bytes": 64 * 2**20,
        }
    )
    text = screen(snap)
    assert "response cache" in text
    assert cell(text, "hits") == "3.0/s (75 %)"
    assert cell(text, "misses") == "1.0/s"
    assert "16 / 64" in line_with(text, "held MiB")


def test_the_limit_line_says_how_the_limit_moved_and_why() -> None:
    assert cell(screen(BUSY), "limit") == "4"  # an old gateway: no mode gauge
    static = BUSY.model_copy(update={"limit_adaptive": 0.0})
    assert cell(screen(static), "limit") == "4 static"
    adaptive = BUSY.model_copy(
        update={
            "slots_max": 12,
            "limit_adaptive": 1.0,
            "limit_direction": "up",
            "limit_reason": "headroom",
            "adaptive_ttft_p95_s": 0.41,
            "adaptive_slo_ttft_s": 1.0,
            "adaptive_itl_p95_s": 0.12,
            "adaptive_slo_itl_s": 0.1,
            "kv_cache_usage": 0.63,
        }
    )
    assert cell(screen(adaptive), "limit") == (
        "12 ↑ adaptive (headroom): TTFT p95 410 ms < 1.00 s, ITL p95 120 ms > 100 ms, KV 63 %"
    )


def test_a_short_terminal_drops_the_least_needed_sections_first() -> None:
    from llmctl.observe.snapshot import ClassSnapshot, EngineSnapshot

    snap = BUSY.model_copy(
        update={
            "engines": [
                EngineSnapshot(engine=f"e{i}", active=1, limit=4, up=True) for i in range(3)
            ],
            "classes": [ClassSnapshot(name="batch", queued=1, active=1)],
        }
    )

    def shown(width: int, height: int) -> str:
        console = Console(file=io.StringIO(), width=width, height=height, color_system=None)
        console.print(fit(snap, console))
        out = console.file.getvalue()  # type: ignore[attr-defined]
        assert isinstance(out, str)
        assert len(out.splitlines()) <= height
        return out

    tall = shown(110, 60)
    assert all(s in tall for s in ("history", "classes", "engines", "admission"))
    short = shown(80, 24)
    assert "history" not in short
    assert all(s in short for s in ("limit", "admission", "latency", "GPU"))
