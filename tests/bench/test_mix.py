"""`bench --mix` over real sockets: streams with their own keys and classes through a gateway with
a tenants file, in front of the simulator, reported per stream and for the whole level; a noisy
neighbour and 3:1 weights at a small scale; mix files with mistakes are usage errors."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmctl.bench.compare import compare_reports
from llmctl.bench.config import BenchConfig, PromptSpec
from llmctl.bench.mix import load_mix
from llmctl.bench.report import LevelReport, StreamReport, load_report
from llmctl.bench.runner import CLASS_HEADER, run_bench
from llmctl.bench.strategies import ConcurrentStrategy, MixStrategy, RateStrategy, StreamSpec
from llmctl.cli import main
from llmctl.core.errors import UsageError
from llmctl.core.slo import SLO
from llmctl.gateway import tenants
from llmctl.report.load import load_runs
from tests import support
from tests.exposition import Exposition
from tests.support import free_port, llmctl_server

KEYS = {
    "chat": "sk-t-chat",
    "nightly": "sk-t-nightly",
    "heavy": "sk-t-heavy",
    "light": "sk-t-light",
}
MAX_ACTIVE = 4


def _tenants_file(path: Path) -> Path:
    def tenant(name: str, klass: str, weight: float = 1.0) -> str:
        key = tenants.key_hash(KEYS[name])
        return f'[[tenants]]\nname = "{name}"\nclass = "{klass}"\nweight = {weight}\nkeys = ["{key}"]\n'

    path.write_text(
        "[classes.interactive]\nrank = 0\nreserve = 0.5\n[classes.batch]\nrank = 1\nshare = 0.1\n\n"
        + tenant("chat", "interactive")
        + tenant("nightly", "batch")
        + tenant("heavy", "interactive", 3)
        + tenant("light", "interactive")
    )
    return path


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The simulator (a real GPU's step times, 8 times faster) behind a gateway with tenants."""
    folder = tmp_path_factory.mktemp("mix")
    sim_flags = (
        "--profile",
        "rtx3090-qwen2.5-14b-awq",
        "--time-scale",
        "8",
        "--max-num-seqs",
        "64",
    )
    with support.sim_server(folder / "sim.log", *sim_flags) as sim:
        port = free_port()
        args = ["gateway", "serve", "--port", str(port), "--upstream", sim.url,
                "--max-active", str(MAX_ACTIVE), "--queue-max", "16",
                "--tenants-file", str(_tenants_file(folder / "tenants.toml"))]  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        with llmctl_server(args, ready_url=f"{url}/health", log=folder / "gateway.log"):
            yield url


def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, key in KEYS.items():
        monkeypatch.setenv(f"KEY_{name.upper()}", key)


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(["bench", *args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_the_class_header_is_the_gateways() -> None:
    assert CLASS_HEADER == tenants.CLASS_HEADER


def test_a_mix_runs_each_stream_with_its_key_and_class_and_reports_each(
    gateway: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _env(monkeypatch)
    mix = tmp_path / "pair.toml"
    mix.write_text(
        '[[streams]]\nname = "ui"\napi_key_env = "KEY_CHAT"\nclass = "batch"\nrate = 8\n'
        "output_len = 4\n\n"
        '[[streams]]\nname = "job"\napi_key_env = "KEY_HEAVY"\nconcurrency = 2\n'
    )
    before = Exposition.scrape(f"{gateway}/metrics")
    out_json, out_csv = tmp_path / "run.json", tmp_path / "run.csv"
    code, out, err = _run(capsys, "--target", gateway, "--mix", str(mix), "--duration", "1.5",
                          "--input-len", "16", "--output-len", "8", "--json", str(out_json),
                          "--csv", str(out_csv), "--verbose")  # fmt: skip
    assert code == 0, err
    assert "per stream (mix levels)" in out
    assert "mix pair / ui" in out  # the full table has a column per stream
    report = load_report(out_json)
    level = report.levels[0]
    assert level.label == "mix pair"
    ui, job = level.streams
    assert (ui.name, job.name) == ("ui", "job")
    assert ui.completed + job.completed == level.completed > 0
    assert level.failed == ui.failed + job.failed == 0
    assert ui.total_output_tokens == 4 * ui.completed  # its own output_len
    assert job.total_output_tokens == 8 * job.completed  # the run's
    assert job.max_concurrent_requests <= 2
    # Each stream reached the gateway as its own tenant, the first lowering its class.
    after = Exposition.scrape(f"{gateway}/metrics")
    name = "llmctl_gateway_tenant_requests_total"

    def served(tenant: str, klass: str) -> float:
        labels = {"tenant": tenant, "class": klass, "reason": "ok"}
        return after.total(name, **labels) - before.total(name, **labels)

    assert served("chat", "batch") >= ui.completed
    assert served("heavy", "interactive") >= job.completed
    # The JSON keeps how each stream was configured, never a key.
    text = out_json.read_text()
    assert "sk-t-" not in text
    spec = json.loads(text)["levels"][0]["strategy"]["streams"][0]
    assert spec["api_key_env"] == "KEY_CHAT"
    assert spec["class_name"] == "batch"
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert [(r["level"], r["stream"]) for r in rows] == [
        ("mix pair", ""),
        ("mix pair", "ui"),
        ("mix pair", "job"),
    ]
    assert rows[1]["stream_class"] == "batch"
    assert int(rows[1]["completed"]) == ui.completed
    comparison = compare_reports(report, report)
    assert "mix pair / job" in comparison.levels
    html_run = load_runs([out_json])[0]
    assert [lv.label for lv in html_run.levels] == ["mix pair"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[streams]]\nname = 'a'\n", "exactly one of concurrency or rate"),
        ("[[streams]]\nname = 'a'\nconcurrency = 1\nrate = 2\n", "exactly one"),
        ("[[streams]]\nname = 'a'\nconcurrency = 1\narrival = 'gamma'\n", "go with rate"),
        ("[[streams]]\nname = 'a'\nrate = 1\nburstiness = 2\n", "gamma"),
        ("[[streams]]\nname = 'a'\nrate = 1\noutput_lenn = 2\n", "did you mean 'output_len'"),
        ("[[streams]]\nname = 'a'\nrate = 0\n", "streams.0.rate: must be greater than 0"),
        ("[[streams]]\nname = 'a'\nrate = 1\n[[streams]]\nname = 'a'\nrate = 1\n", "twice"),
        ("[[streams]]\nname = 'a b'\nrate = 1\n", "streams.0.name"),
        ('[[streams]]\nname = "a"\nrate = 1\nclass = "x\\r\\ny"\n', "streams.0.class"),
        ("streams = []\n", "at least 1"),
        ("[[streams]\n", "not valid TOML"),
    ],
)
def test_mistakes_in_a_mix_file_are_usage_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "mix.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message):
        load_mix(path)


def test_a_mix_file_names_the_level_or_its_stem_does(tmp_path: Path) -> None:
    path = tmp_path / "night shift.toml"
    path.write_text("[[streams]]\nname = 'a'\nrate = 2\narrival = 'constant'\n")
    assert load_mix(path).label == "mix night-shift"
    path.write_text("name = 'nightly'\n[[streams]]\nname = 'a'\nconcurrency = 3\n")
    mix = load_mix(path)
    assert mix.label == "mix nightly"
    assert mix.streams[0].load == ConcurrentStrategy(concurrency=3)


def test_mix_flags_that_cannot_be_met_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    mix = tmp_path / "m.toml"
    mix.write_text("[[streams]]\nname = 'a'\napi_key_env = 'NO_SUCH_KEY_X'\nrate = 1\n")
    monkeypatch.delenv("NO_SUCH_KEY_X", raising=False)
    target = ["--target", "http://127.0.0.1:9"]
    code, _, err = _run(capsys, *target, "--mix", str(mix), "--duration", "1")
    assert code == 2
    assert "NO_SUCH_KEY_X" in err
    assert "not set" in err
    code, _, err = _run(capsys, *target, "--mix", str(mix), "--concurrency", "2")
    assert code == 2
    assert "leave out --concurrency" in err
    code, _, err = _run(capsys, *target, "--mix", str(tmp_path / "none.toml"))
    assert code == 2
    assert "cannot read" in err
    # The Python API refuses a stream whose key it was not given, before any level runs.
    config = BenchConfig(target="http://127.0.0.1:9", levels=[load_mix(mix)], duration_s=1)
    with pytest.raises(UsageError, match="api_keys_by_env"):
        run_bench(config)


def _stream(
    name: str, key: str, load: ConcurrentStrategy | RateStrategy, spread: float = 0.0
) -> StreamSpec:
    return StreamSpec(name=name, load=load, api_key_env=key, output_spread=spread)


def _streams(level: LevelReport) -> dict[str, StreamReport]:
    return {s.name: s for s in level.streams}


def _mix_run(
    gateway: str, levels: list[MixStrategy], output_len: int, seconds: float, slo: SLO = SLO()
) -> list[LevelReport]:
    config = BenchConfig(
        target=gateway,
        api_keys_by_env={f"KEY_{n.upper()}": k for n, k in KEYS.items()},
        levels=levels,
        duration_s=seconds,
        warmup_s=0.5,
        prompts=PromptSpec(input_len=32, output_len=output_len),
        reject_backoff_s=0.05,
        slo=slo,
    )
    return run_bench(config).levels


@pytest.mark.slow
def test_an_interactive_tenant_barely_notices_a_batch_flood(gateway: str) -> None:
    """At a small scale: a batch tenant offering about 10x what MAX_ACTIVE 4 can serve, an
    interactive one about 20 %; the interactive one's p99 queue wait stays within about one mean
    service time and it is served as fully and as fast as when it is alone."""
    service_s = 0.18  # measured here: 174-184 ms of mean service with the flood
    capacity = MAX_ACTIVE / service_s
    chat = _stream("chat", "KEY_CHAT", RateStrategy(rate=0.2 * capacity))
    # Batch requests all of one length, the hard case: they finish in the same engine step, so
    # every slot they hold frees at once, and without interactive's reserve (2 of the 4 slots) a
    # request arriving just after batch took them all would wait a whole service time.
    flood = _stream("nightly", "KEY_NIGHTLY", RateStrategy(rate=10 * capacity))
    alone, mixed = _mix_run(
        gateway,
        [
            MixStrategy(name="alone", streams=(chat,)),
            MixStrategy(name="flood", streams=(chat, flood)),
        ],
        output_len=96,
        seconds=5.0,
        slo=SLO(ttft_s=0.1),
    )
    quiet, busy = _streams(alone)["chat"], _streams(mixed)
    assert busy["nightly"].failures["http_429"] > 0  # the flood overflowed the queue
    served = busy["nightly"].completed + busy["chat"].completed
    mean_service_ms = mixed.mean_admitted_e2el_ms
    assert mean_service_ms is not None
    assert served > 0
    interactive = busy["chat"]
    assert interactive.failed == 0  # never refused, whatever the flood did to the queue
    assert interactive.completed == quiet.completed  # the same arrivals, all served
    # The target is one mean service time (docs/benchmarks.md measures it at full scale); the
    # half extra is for this shared machine's scheduling noise. Without classes the interactive
    # requests would queue behind the flood's 16 waiters: four service times at 4 slots.
    wait, batch_wait = interactive.p99_queue_wait_ms, busy["nightly"].mean_queue_wait_ms
    assert wait is not None
    assert batch_wait is not None
    assert wait <= 1.5 * mean_service_ms, (wait, mean_service_ms)
    assert wait < batch_wait / 2, (wait, batch_wait)
    # Mostly it starts at once: without the reserve it waits for the batch round in progress, on
    # average about half a service time (measured: 83-88 ms of 184 ms; with it 19-20 ms of 176).
    mean_wait = interactive.mean_queue_wait_ms
    assert mean_wait is not None
    assert mean_wait <= 0.25 * mean_service_ms, (mean_wait, mean_service_ms)
    # Goodput with a TTFT SLO of 0.1 s (at this scale one service time, about 0.18 s, is too long
    # to tell a batch round's wait apart). Measured: 0.93-0.97 of alone with the reserve, 0.48-0.55
    # without. Two reserved slots of four leave it waiting when three of its requests overlap (a
    # fifth of its arrivals); the benchmark meets 95 % at MAX_ACTIVE 16 with a reserve of 0.25.
    good_alone, good_mixed = quiet.request_goodput, interactive.request_goodput
    assert good_alone is not None
    assert good_mixed is not None
    assert good_mixed >= 0.8 * good_alone, (good_mixed, good_alone)


@pytest.mark.slow
def test_saturating_tenants_share_by_weight(gateway: str) -> None:
    loads = ConcurrentStrategy(concurrency=8)
    weighted = MixStrategy(
        name="weights",
        streams=(_stream("heavy", "KEY_HEAVY", loads), _stream("light", "KEY_LIGHT", loads)),
    )
    equal = MixStrategy(
        name="equal",
        streams=(_stream("chat", "KEY_CHAT", loads), _stream("light", "KEY_LIGHT", loads)),
    )
    three_to_one, one_to_one = _mix_run(gateway, [weighted, equal], output_len=12, seconds=4.0)
    w = _streams(three_to_one)
    ratio = w["heavy"].request_throughput / w["light"].request_throughput
    assert 2.7 <= ratio <= 3.3, ratio
    a, b = (s.request_throughput for s in one_to_one.streams)
    jain = (a + b) ** 2 / (2 * (a * a + b * b))
    assert jain >= 0.95, (a, b)
