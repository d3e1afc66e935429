"""What one scheduler step (schedule + complete) costs in CPU for a batch of decoding requests.

    python benchmarks/scheduler_step.py [--requests 256] [--steps 3000] [--repeat 5]

Pure Python, no clock and no sockets: the simulator's per-step bookkeeping, which bounds how many
tokens per second it can serve. Prints the best of `--repeat` runs in microseconds per step.
"""

from __future__ import annotations

import argparse
import time

from llmctl.sim.scheduler import Scheduler, SimRequest


def step_cost_us(requests: int, steps: int) -> float:
    scheduler = Scheduler(
        max_num_seqs=requests, num_blocks=8192, block_size=16, max_num_batched_tokens=8192
    )
    for _ in range(requests):
        scheduler.add(
            SimRequest(prompt_tokens=16, target_tokens=10**9, target_reason="length", arrival=0.0)
        )
    scheduler.complete(scheduler.schedule(0.0), 0.0)  # the prefills: every step after decodes
    start = time.perf_counter()
    for _ in range(steps):
        scheduler.complete(scheduler.schedule(0.0), 0.0)
    return (time.perf_counter() - start) / steps * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    best = min(step_cost_us(args.requests, args.steps) for _ in range(args.repeat))
    print(f"{args.requests} decoding requests: {best:.1f} us per step (best of {args.repeat})")


if __name__ == "__main__":
    main()
