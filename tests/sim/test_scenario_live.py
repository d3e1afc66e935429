"""Over a real socket: the simulated GPU changes under load, from a scenario file or a live call.

Inter-token gaps are read from the simulator's own vLLM histogram, which records the simulated
step times (the clock the sim paces itself by), so a 3x slowdown shows as 3x, busy machine or not.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.exposition import Exposition
from tests.sim.conftest import Sim, StartSim
from tests.support import eventually

ITL = "vllm:inter_token_latency_seconds"


def _itl_sum_count(url: str) -> tuple[float, float]:
    page = Exposition.scrape(f"{url}/metrics")
    return page.total(f"{ITL}_sum"), page.total(f"{ITL}_count")


def _mean_itl_of_one_stream(sim: Sim, tokens: int = 80) -> float:
    """The mean simulated gap between the tokens of one request, from the sim's histogram."""
    before = _itl_sum_count(sim.url)
    body = {"prompt": "a b c", "max_tokens": tokens, "ignore_eos": True}
    resp = httpx.post(f"{sim.url}/v1/completions", json=body, timeout=60)
    assert resp.status_code == 200
    after = _itl_sum_count(sim.url)
    assert after[1] - before[1] == tokens - 1
    return (after[0] - before[0]) / (after[1] - before[1])


def test_a_scenario_file_slows_decode_at_its_simulated_time(
    start_sim: StartSim, tmp_path: Path
) -> None:
    scenario = tmp_path / "slow.toml"
    # At --time-scale 2 the event at 3 simulated seconds comes 1.5 s after the start.
    scenario.write_text("[[events]]\nat_s = 3\nslowdown = 3.0\n")
    with start_sim("--profile", "tiny", "--time-scale", "2", "--scenario", str(scenario)) as sim:
        state = httpx.get(f"{sim.url}/sim/conditions").json()
        assert state["slowdown"] == 1.0
        assert state["pending_events"] == [{"at_s": 3.0, "slowdown": 3.0}]
        normal = _mean_itl_of_one_stream(sim)
        eventually(
            lambda: httpx.get(f"{sim.url}/sim/conditions").json()["slowdown"] == 3.0, timeout=10
        )
        slow = _mean_itl_of_one_stream(sim)
    assert 2.6 < slow / normal < 3.4, (normal, slow)


def test_live_changes_shrink_the_cache_and_lengthen_requests(start_sim: StartSim) -> None:
    with start_sim("--profile", "tiny", "--num-gpu-blocks", "4096") as sim:
        put = httpx.put(f"{sim.url}/sim/conditions", json={"prompt_scale": 3, "output_scale": 2})
        assert put.status_code == 200, put.text
        body = {"prompt": "a b c d", "max_tokens": 10, "ignore_eos": True}
        usage = httpx.post(f"{sim.url}/v1/completions", json=body, timeout=30).json()["usage"]
        assert usage["prompt_tokens"] == 3 * 4
        assert usage["completion_tokens"] == 2 * 10

        # Half the cache, while 8 long requests hold most of it: the engine preempts to fit.
        httpx.put(f"{sim.url}/sim/conditions", json={"prompt_scale": 1, "output_scale": 1})

        async def load() -> list[int]:
            # Distinct first words: the prefix cache shares nothing between them.
            long = [
                {"prompt": f"r{i} " + "a " * 6000, "max_tokens": 1000, "ignore_eos": True}
                for i in range(8)
            ]
            async with httpx.AsyncClient(timeout=120) as client:

                async def shrink() -> None:
                    # Once the eight hold more than half the cache (~85 % when all decode).
                    while True:
                        page = Exposition.parse((await client.get(f"{sim.url}/metrics")).text)
                        if page.total("vllm:kv_cache_usage_perc") > 0.6:
                            break
                        await asyncio.sleep(0.02)
                    resp = await client.put(f"{sim.url}/sim/conditions", json={"kv_fraction": 0.5})
                    assert resp.json()["kv_blocks"] == 2048

                posts = [client.post(f"{sim.url}/v1/completions", json=body) for body in long]
                *answers, _ = await asyncio.gather(*posts, shrink())
                return [a.status_code for a in answers]

        assert asyncio.run(load()) == [200] * 8
        page = Exposition.scrape(f"{sim.url}/metrics")
        assert page.total("vllm:num_preemptions_total") > 0
        assert page.total("vllm:kv_cache_usage_perc") <= 1.0


def test_a_bad_change_is_a_400_naming_the_field_and_changes_nothing(sim: Sim) -> None:
    before = httpx.get(f"{sim.url}/sim/conditions").json()
    for body, field in (
        ({"slowdown": 0}, "slowdown"),
        ({"kv_fraction": "half"}, "kv_fraction"),
        ({"speed": 2}, "speed"),
    ):
        resp = httpx.put(f"{sim.url}/sim/conditions", json=body)
        assert resp.status_code == 400
        assert field in resp.json()["error"]["message"]
    for raw in (b"[1]", b"{", b'{"slowdown": NaN}'):
        resp = httpx.put(f"{sim.url}/sim/conditions", content=raw)
        assert resp.status_code == 400
    after = httpx.get(f"{sim.url}/sim/conditions").json()
    assert {k: v for k, v in after.items() if k != "virtual_s"} == {
        k: v for k, v in before.items() if k != "virtual_s"
    }
