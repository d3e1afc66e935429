"""The engine's vLLM metrics, built from the specs in llmctl.core.metrics in a private registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from llmctl.core import metrics as m
from llmctl.sim.scheduler import SimRequest


def one_two_five(limit: int) -> tuple[float, ...]:
    """vLLM's build_1_2_5_buckets: 1, 2, 5, 10, 20, 50, ... while <= limit."""
    out: list[float] = []
    exponent = 0
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if value > limit:
                return tuple(out)
            out.append(float(value))
        exponent += 1


class EngineMetrics:
    """vLLM's /metrics for one engine (labels model_name=<served name>, engine="0")."""

    def __init__(self, model_name: str, max_model_len: int) -> None:
        self.registry = CollectorRegistry()
        self._labels = {"model_name": model_name, "engine": "0"}
        self.running = self._gauge(m.VLLM_RUNNING)
        self.waiting = self._gauge(m.VLLM_WAITING)
        self.kv_usage = self._gauge(m.VLLM_KV_USAGE)
        self.preemptions = self._counter(m.VLLM_PREEMPTIONS)
        self.prompt_tokens = self._counter(m.VLLM_PROMPT_TOKENS)
        self.generation_tokens = self._counter(m.VLLM_GENERATION_TOKENS)
        self.prefix_cache_queries = self._counter(m.VLLM_PREFIX_CACHE_QUERIES)
        self.prefix_cache_hits = self._counter(m.VLLM_PREFIX_CACHE_HITS)
        # vLLM exports every finished_reason from the start, so rate() works before the first one.
        success = m.counter(m.VLLM_REQUEST_SUCCESS, self.registry)
        self.success = {
            reason: success.labels(**self._labels, finished_reason=reason)
            for reason in m.VLLM_FINISHED_REASONS
        }
        self.ttft = self._histogram(m.VLLM_TTFT)
        self.itl = self._histogram(m.VLLM_ITL)
        self.e2e = self._histogram(m.VLLM_E2E)
        self.queue_time = self._histogram(m.VLLM_QUEUE_TIME)
        self.prefill_time = self._histogram(m.VLLM_PREFILL_TIME)
        self.decode_time = self._histogram(m.VLLM_DECODE_TIME)
        # vLLM sizes its token-count buckets to the model: 1, 2, 5, 10, ... up to max_model_len.
        token_buckets = one_two_five(max_model_len)
        self.request_prompt_tokens = self._histogram(m.VLLM_REQUEST_PROMPT_TOKENS, token_buckets)
        self.request_generation_tokens = self._histogram(
            m.VLLM_REQUEST_GENERATION_TOKENS, token_buckets
        )

    def _counter(self, spec: m.MetricSpec) -> Counter:
        return m.counter(spec, self.registry).labels(**self._labels)

    def _gauge(self, spec: m.MetricSpec) -> Gauge:
        return m.gauge(spec, self.registry).labels(**self._labels)

    def _histogram(self, spec: m.MetricSpec, buckets: tuple[float, ...] | None = None) -> Histogram:
        return m.histogram(spec, self.registry, buckets).labels(**self._labels)

    def update_state(self, running: int, waiting: int, kv_usage: float) -> None:
        self.running.set(running)
        self.waiting.set(waiting)
        self.kv_usage.set(kv_usage)

    def observe_step(self, generated: int, preempted: int, inter_token: list[float]) -> None:
        if generated:
            self.generation_tokens.inc(generated)
        if preempted:
            self.preemptions.inc(preempted)
        observe = self.itl.observe
        for gap in inter_token:
            observe(gap)

    def observe_prefix_cache(self, queries: int, hits: int) -> None:
        """New requests admitted: their tokens, and how many the prefix cache held."""
        self.prefix_cache_queries.inc(queries)
        if hits:
            self.prefix_cache_hits.inc(hits)

    def observe_first_token(self, req: SimRequest) -> None:
        """Prefill done: count its prompt tokens and the time to first token, as vLLM does."""
        self.prompt_tokens.inc(req.prompt_tokens)
        if req.first_token is not None:
            self.ttft.observe(req.first_token - req.arrival)

    def observe_finished(self, req: SimRequest) -> None:
        """A request the engine finished (stop or length); client aborts record nothing, as in vLLM."""
        if req.finished_reason is None or req.finished_at is None:
            raise ValueError("observe_finished needs a finished request")
        self.success[req.finished_reason].inc()
        first_sched = req.first_scheduled if req.first_scheduled is not None else req.arrival
        first_token = req.first_token if req.first_token is not None else req.finished_at
        self.e2e.observe(req.finished_at - req.arrival)
        queued = req.queued if req.queued is not None else req.arrival
        self.queue_time.observe(max(0.0, first_sched - queued))
        self.prefill_time.observe(first_token - first_sched)
        self.decode_time.observe(req.finished_at - first_token)
        self.request_prompt_tokens.observe(req.prompt_tokens)
        self.request_generation_tokens.observe(req.num_output)

    def render(self) -> bytes:
        return generate_latest(self.registry)
