"""A stack's engine replicas: their service names, the GPUs one replica takes and which GPUs each
one gets.

One replica is the service `engine`, as it always was; N > 1 are `engine-0` .. `engine-{N-1}`,
each a whole model copy on its own GPUs. A vLLM replica takes tensor x pipeline x data parallel
GPUs (the sizes in `engine.extra_args`, as vLLM reads them), and the replicas take consecutive
groups of `engine.device_ids` in order: with 4 ids and tensor parallel 2, `engine-0` gets the
first two and `engine-1` the next two.
"""

from __future__ import annotations

from collections.abc import Sequence

ENGINE = "engine"

# vLLM's flag -> its short form; each multiplies the GPUs one server takes.
PARALLEL_FLAGS = {
    "--tensor-parallel-size": "-tp",
    "--pipeline-parallel-size": "-pp",
    "--data-parallel-size": "-dp",
}


def names(replicas: int) -> list[str]:
    """The engine services of a stack with `replicas` engines."""
    return [ENGINE] if replicas == 1 else [f"{ENGINE}-{i}" for i in range(replicas)]


def is_engine(service: str) -> bool:
    """Whether `service` is one of a stack's engines (`engine` or `engine-N`)."""
    index = service.removeprefix(f"{ENGINE}-")
    return service == ENGINE or (index != service and index.isdigit())


def parallel_size(args: Sequence[str], flag: str) -> int:
    """The value of vLLM's `flag` (or its short form, or `flag=N`) in `args`; 1 when absent.
    The last one wins, as in argparse."""
    short = PARALLEL_FLAGS.get(flag)
    size = 1
    for i, arg in enumerate(args):
        value = None
        if arg in (flag, short) and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(f"{flag}="):
            value = arg.split("=", 1)[1]
        if value is not None and value.isdigit():
            size = max(1, int(value))
    return size


def gpus_per_replica(args: Sequence[str]) -> int:
    """The GPUs one vLLM server with these arguments takes."""
    total = 1
    for flag in PARALLEL_FLAGS:
        total *= parallel_size(args, flag)
    return total


def gpu_indices(groups: Sequence[Sequence[str]] | None, replicas: int) -> list[int]:
    """The GPU each replica's simulator says it runs on (its DCGM `gpu` label): the first id of
    its group when that is an index, else its position."""
    if groups is None:
        return list(range(replicas))
    return [int(g[0]) if g and g[0].isdigit() else i for i, g in enumerate(groups)]


def device_groups(
    device_ids: Sequence[str] | None, replicas: int, per_replica: int
) -> list[list[str]] | None:
    """The device ids of each replica, in order; None when no ids are given and one replica runs
    (then it takes any `per_replica` GPUs). Several replicas without ids take 0 .. N-1.
    ValueError when the ids given do not match what the replicas need."""
    needed = replicas * per_replica
    if device_ids is None:
        if replicas == 1:
            return None
        device_ids = [str(i) for i in range(needed)]
    if len(device_ids) != needed:
        raise ValueError(
            f"{len(device_ids)} GPU(s) listed, but {replicas} replica(s) x "
            f"{per_replica} GPU(s) each (tensor x pipeline x data parallel size) need {needed}"
        )
    return [list(device_ids[i * per_replica : (i + 1) * per_replica]) for i in range(replicas)]
