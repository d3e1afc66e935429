"""Side by side: `llmctl bench` and guidellm against the same simulator, the same prompts, one run.

guidellm lives in its own virtualenv so its pins do not touch ours:

    python -m venv /root/.cache/llmctl/guidellm-venv
    /root/.cache/llmctl/guidellm-venv/bin/pip install guidellm==0.8.1
    python benchmarks/vs_guidellm.py --concurrency 4,16 --duration 15

Both tools get the same prompt texts (a JSONL file each, in its own format), the same max tokens
with ignore_eos, closed loop at the same concurrency, no warm-up, one after the other per level.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

# Run as `python benchmarks/vs_guidellm.py`, so this folder is on sys.path.
from _common import started

from llmctl.bench.prompts import _WORDS

GUIDELLM = Path("/root/.cache/llmctl/guidellm-venv/bin/guidellm")
PROFILE = "rtx3090-qwen2.5-14b-awq"


def write_prompts(folder: Path, count: int, words: int, output: int) -> tuple[Path, Path]:
    rng = random.Random(0)
    texts = [" ".join(rng.choices(_WORDS, k=words)) for _ in range(count)]
    ours, theirs = folder / "llmctl.jsonl", folder / "guidellm.jsonl"
    with ours.open("w") as f:
        for text in texts:
            f.write(json.dumps({"messages": [{"role": "user", "content": text}]}) + "\n")
    with theirs.open("w") as f:
        for text in texts:
            f.write(json.dumps({"prompt": text, "output_tokens_count": output}) + "\n")
    return ours, theirs


def run_guidellm(
    url: str, data: Path, streams: int, duration: float, out: Path
) -> dict[str, float]:
    cmd = [str(GUIDELLM), "run", "--backend", f"kind=openai_http,target={url}",
           "--profile", f"kind=concurrent,streams={streams}",
           "--constraint", f"kind=max_duration,seconds={duration:g}",
           "--data", f"kind=json_file,path={data}", "--output", f"kind=json,path={out}",
           "--disable-progress"]  # fmt: skip
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=out.parent)
    metrics: dict[str, Any] = json.loads(out.read_text())["benchmarks"][0]["metrics"]
    return {
        "output_throughput": metrics["output_tokens_per_second"]["total"]["mean"],
        "request_throughput": metrics["requests_per_second"]["total"]["mean"],
        "mean_ttft_ms": metrics["time_to_first_token_ms"]["successful"]["mean"],
        "median_ttft_ms": metrics["time_to_first_token_ms"]["successful"]["median"],
        # guidellm's ITL is per request (e2e - ttft) / (tokens - 1): what vLLM and llmctl call TPOT.
        "median_tpot_ms": metrics["inter_token_latency_ms"]["successful"]["median"],
    }


def run_llmctl(
    url: str, data: Path, streams: int, duration: float, output: int, out: Path
) -> dict[str, float]:
    cmd = [sys.executable, "-m", "llmctl", "bench", "--target", url, "--dataset", str(data),
           "--output-len", str(output), "--concurrency", str(streams),
           "--duration", f"{duration:g}", "--json", str(out)]  # fmt: skip
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    level = json.loads(out.read_text())["levels"][0]
    keys = ("output_throughput", "request_throughput", "mean_ttft_ms", "median_ttft_ms")
    return {k: level[k] for k in (*keys, "median_tpot_ms")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="4,16")
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--input-len", type=int, default=128)
    parser.add_argument("--output-len", type=int, default=64)
    parser.add_argument("--port", type=int, default=9500)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/llmctl-vs-guidellm"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    ours, theirs = write_prompts(args.workdir, 4000, args.input_len, args.output_len)
    url = f"http://127.0.0.1:{args.port}"
    sim_cmd = [sys.executable, "-m", "llmctl", "sim", "serve", "--profile", PROFILE,
               "--port", str(args.port)]  # fmt: skip
    print("$", " ".join(sim_cmd), flush=True)
    # started() fails clearly if the simulator never answers /health, and stops it by PID
    # (SIGTERM, then SIGKILL after a grace period) however the run ends.
    with started(sim_cmd, f"{url}/health", stderr=subprocess.DEVNULL):
        rows = []
        for streams in (int(s) for s in args.concurrency.split(",")):
            g = run_guidellm(url, theirs, streams, args.duration, args.workdir / f"g{streams}.json")
            ll = run_llmctl(url, ours, streams, args.duration, args.output_len,
                            args.workdir / f"l{streams}.json")  # fmt: skip
            rows.append((streams, g, ll))
    print(f"\n{'conc':>4} {'metric':<20}{'guidellm':>10}{'llmctl':>10}{'llmctl/g':>10}")
    for streams, g, ll in rows:
        for key in g:
            print(f"{streams:>4} {key:<20}{g[key]:>10.2f}{ll[key]:>10.2f}{ll[key] / g[key]:>10.3f}")


if __name__ == "__main__":
    main()
