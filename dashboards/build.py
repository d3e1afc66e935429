"""Build the Grafana dashboards (dashboards/*.json) from llmctl's metric names: `python dashboards/build.py`.

The JSON files are committed (the stack copies them into Grafana's provisioning folder); a test checks
they match this script, so edit here and rebuild. Every query names its series through
llmctl.core.metrics, limits come from the gateway's gauges, never from numbers typed in here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from llmctl.core import metrics as m

OUT = Path(__file__).resolve().parent
DS = {"type": "prometheus", "uid": m.GRAFANA_DATASOURCE_UID}
RI = "$__rate_interval"
GW = f'job="{m.JOB_GATEWAY}", instance=~"$instance"'
ENG = 'instance=~"$instance", model_name=~"$model"'
REJECTED = GW + ', status=~"429|503"'
NOT_OK = GW + f', reason!="{m.REASON_OK}"'
ANY_ENG = 'model_name=~"$model"'
GPU = 'instance=~"$instance", gpu=~"$gpu"'

# Grafana unit ids: rates are rates, ratios 0..1 are percentunit, DCGM's 0..100 is percent.
REQPS, TOKPS, PERS = "reqps", "suffix: tokens/s", "suffix: /s"

Json = dict[str, Any]


def q(expr: str, legend: str = "") -> Json:
    return {"expr": expr, "legendFormat": legend or "__auto", "datasource": DS}


def rate(series: str, matchers: str, by: str = "") -> str:
    group = f" by ({by}) " if by else ""
    return f"sum{group} (rate({series}{{{matchers}}}[{RI}]))"


def quantiles(spec: m.MetricSpec, matchers: str) -> list[Json]:
    """p50/p95/p99 from the recording rules (names shared with top and the alerts)."""
    return [
        q(f"max({m.quantile_rule(spec, p)}{{{matchers}}})", f"p{round(p * 100)}")
        for p in m.QUANTILES
    ]


def panel(kind: str, title: str, targets: list[Json], unit: str, desc: str, **field: Any) -> Json:
    for ref, target in zip("ABCDEFGH", targets, strict=False):
        target["refId"] = ref
    return {
        "type": kind,
        "title": title,
        "description": desc,
        "datasource": DS,
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit, **field}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}}
        if kind == "timeseries"
        else {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
    }


def ts(title: str, targets: list[Json], unit: str, desc: str, **field: Any) -> Json:
    return panel("timeseries", title, targets, unit, desc, **field)


def stat(title: str, target: Json, unit: str, desc: str, **field: Any) -> Json:
    return panel("stat", title, [target], unit, desc, **field)


def variable(name: str, label: str, query: str) -> Json:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": query,  # the plain-string form every Grafana version reads
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


INSTANCE_GW = variable(
    "instance", "gateway", f"label_values({m.GATEWAY_MAX_ACTIVE.series}, instance)"
)
INSTANCE_ENG = variable("instance", "engine", f"label_values({m.VLLM_RUNNING.series}, instance)")
INSTANCE_GPU = variable("instance", "exporter", f"label_values({m.DCGM_GPU_UTIL.series}, instance)")
MODEL = variable("model", "model", f"label_values({m.VLLM_RUNNING.series}, model_name)")
GPU_VAR = variable("gpu", "GPU", f"label_values({m.DCGM_GPU_UTIL.series}, gpu)")


def limit_changes_annotation() -> Json:
    """A marker on every panel's time axis where MAX_ACTIVE moved (adaptive, admin or tune)."""
    return {
        "name": "limit changes",
        "datasource": DS,
        "enable": True,
        "iconColor": "orange",
        "expr": f"sum by (source, direction, reason) "
        f"(increase({m.GATEWAY_LIMIT_CHANGES.series}{{{GW}}}[1m])) > 0",
        "step": "15s",
        "titleFormat": "limit {{direction}} ({{source}})",
        "textFormat": "reason: {{reason}}",
        "tagKeys": "source,direction,reason",
        "useValueForTime": False,
    }


def dashboard(
    uid: str,
    title: str,
    rows: list[list[Json]],
    variables: list[Json],
    annotations: list[Json] | None = None,
) -> Json:
    """Lay panels out in rows (each row shares the 24-column width), ids in order."""
    panels: list[Json] = []
    y = 0
    for row in rows:
        height = 4 if all(p["type"] == "stat" for p in row) else 8
        width = 24 // len(row)
        for i, p in enumerate(row):
            p["id"] = len(panels) + 1
            p["gridPos"] = {"x": i * width, "y": y, "w": width, "h": height}
            panels.append(p)
        y += height
    return {
        "uid": uid,
        "title": title,
        "tags": ["llmctl"],
        "timezone": "browser",
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": variables},
        "annotations": {"list": annotations or []},
        "links": [
            {"type": "dashboards", "tags": ["llmctl"], "asDropdown": True, "title": "llmctl"}
        ],
        "panels": panels,
    }


REQ = m.GATEWAY_REQUESTS.series
ACTIVE, MAX_ACTIVE = m.GATEWAY_ACTIVE.series, m.GATEWAY_MAX_ACTIVE.series
DEPTH, QMAX = m.GATEWAY_QUEUE_DEPTH.series, m.GATEWAY_QUEUE_MAX.series
FB_TOTAL = f"({m.DCGM_FB_USED.series}{{{GPU}}} + {m.DCGM_FB_FREE.series}{{{GPU}}})"


def overview() -> Json:
    return dashboard(
        "llmctl-overview",
        "llmctl / Overview",
        [
            [
                stat("Slots in use", q(f"sum({ACTIVE}{{{GW}}}) / sum({MAX_ACTIVE}{{{GW}}})"),
                     "percentunit", "Active requests / MAX_ACTIVE (from the gauge).", min=0, max=1),
                stat("Queue", q(f"sum({DEPTH}{{{GW}}})"), "short", "Requests waiting for a slot."),
                stat("Requests", q(rate(REQ, GW)), REQPS, "Finished requests per second."),
                stat("Rejected", q(f"{rate(REQ, REJECTED)} / {rate(REQ, GW)}"),
                     "percentunit", "Share of answers that are 429 or 503.", min=0, max=1),
                stat("p95 TTFT", q(f"max({m.REC_TTFT_P95}{{{GW}}})"), "s",
                     "Time to first token users feel (from arrival, queue included), p95 over 1m."),
                stat("GPU utilisation", q(f"avg({m.DCGM_GPU_UTIL.series})"), "percent",
                     "Mean DCGM GPU utilisation.", min=0, max=100),
            ],
            [
                ts("Requests by outcome", [q(rate(REQ, GW, "reason"), "{{reason}}")], REQPS,
                   "Finished requests per second by reason (ok, queue_full, ...)."),
                ts("End-to-end latency", quantiles(m.GATEWAY_E2E, GW), "s",
                   "What users feel: arrival at the gateway to the last byte, queue included "
                   "(recording rules, 1m)."),
            ],
            [
                ts("Active vs MAX_ACTIVE", [q(f"sum({ACTIVE}{{{GW}}})", "active"),
                                            q(f"sum({MAX_ACTIVE}{{{GW}}})", "max_active")],
                   "short", "Slots in use against the live limit."),
                ts("Engine tokens", [
                    q(rate(m.VLLM_PROMPT_TOKENS.series, ANY_ENG), "prompt"),
                    q(rate(m.VLLM_GENERATION_TOKENS.series, ANY_ENG), "generation")],
                   TOKPS, "Tokens per second processed by the engine."),
            ],
        ],
        [INSTANCE_GW, MODEL],
        [limit_changes_annotation()],
    )  # fmt: skip


def gateway() -> Json:
    return dashboard(
        "llmctl-gateway",
        "llmctl / Gateway",
        [
            [
                stat("Engine ready", q(f"min({m.GATEWAY_ENGINE_READY.series}{{{GW}}})"), "bool_yes_no",
                     "1 when the gateway's last readiness probe found the model."),
                stat("MAX_ACTIVE", q(f"max({MAX_ACTIVE}{{{GW}}})"), "short", "Live concurrency limit."),
                stat("QUEUE_MAX", q(f"max({QMAX}{{{GW}}})"), "short", "Live queue bound (0 = no queue)."),
                stat("Queue timeout", q(f"max({m.GATEWAY_QUEUE_TIMEOUT.series}{{{GW}}})"), "s",
                     "How long a request may wait for a slot."),
            ],
            [
                ts("Admission", [q(f"sum({ACTIVE}{{{GW}}})", "active"),
                                 q(f"sum({MAX_ACTIVE}{{{GW}}})", "max_active"),
                                 q(f"sum({DEPTH}{{{GW}}})", "queued"),
                                 q(f"sum({QMAX}{{{GW}}})", "queue_max")],
                   "short", "Active and queued requests against the live limits."),
                ts("Requests by status", [q(rate(REQ, GW, "status"), "{{status}}")], REQPS,
                   "Finished requests per second by HTTP status."),
            ],
            [
                ts("Rejections and failures by reason", [q(rate(REQ, NOT_OK, "reason"),
                                                           "{{reason}}")],
                   REQPS, "Requests that did not end ok, per second, by reason."),
                ts("Queue wait", quantiles(m.GATEWAY_QUEUE_WAIT, GW), "s",
                   "Time from arrival to the slot's grant, per admitted request (recording rules)."),
            ],
            [
                ts("End-to-end latency", quantiles(m.GATEWAY_E2E, GW), "s",
                   "What users feel: arrival to last byte, queue included (recording rules)."),
                ts("Time to first token", quantiles(m.GATEWAY_TTFT, GW), "s",
                   "What users feel: arrival to first generated text, queue included."),
            ],
            [
                ts("Time to first token at the engine", quantiles(m.GATEWAY_ADMITTED_TTFT, GW), "s",
                   "From the slot's grant to first text: the engine's part, without the queue."),
                ts("Time per output token", quantiles(m.GATEWAY_TPOT, GW), "s",
                   "Per streamed request: its mean gap between tokens."),
            ],
            [
                ts("Limit and its changes", [
                    q(f"sum({MAX_ACTIVE}{{{GW}}})", "max_active"),
                    q(f"max({m.GATEWAY_LIMIT_ADAPTIVE.series}{{{GW}}})", "adaptive (1) / static (0)"),
                    q(f"sum by (source, direction, reason) (increase({m.GATEWAY_LIMIT_CHANGES.series}"
                      f"{{{GW}}}[{RI}]))", "{{source}} {{direction}}: {{reason}}")],
                   "short", "MAX_ACTIVE over time and every change by who made it (adaptive, admin, "
                   "tune), direction and reason; the orange markers are the same changes."),
                ts("Adaptive limit: what it steers on", [
                    q(f"max({m.GATEWAY_ADAPTIVE_TTFT.series}{{{GW}}})", "TTFT p95"),
                    q(f'max({m.GATEWAY_ADAPTIVE_SLO.series}{{{GW}, signal="ttft"}})', "TTFT target"),
                    q(f"max({m.GATEWAY_ADAPTIVE_ITL.series}{{{GW}}})", "ITL p95"),
                    q(f'max({m.GATEWAY_ADAPTIVE_SLO.series}{{{GW}, signal="itl"}})', "ITL target")],
                   "s", "p95 TTFT (from the slot's grant) and inter-token latency of the requests "
                   "admitted under the current limit, against adaptive mode's targets."),
            ],
            [
                ts("Engines: slots in use", [
                    q(f"sum by (engine) ({m.GATEWAY_ENGINE_ACTIVE.series}{{{GW}}})", "{{engine}} active"),
                    q(f"sum by (engine) ({m.GATEWAY_ENGINE_LIMIT.series}{{{GW}}})", "{{engine}} limit"),
                    q(f"min by (engine) ({m.GATEWAY_ENGINE_UP.series}{{{GW}}})", "{{engine}} up")],
                   "short", "Requests at each engine against its own limit (it ramps up after a "
                   "comeback); up = 1 while in rotation."),
                ts("Engines: routing", [
                    q(rate(m.GATEWAY_ROUTED.series, GW, "engine, reason"), "{{engine}} {{reason}}")],
                   PERS, "Requests sent to each engine per second, by why it was chosen."),
            ],
            [
                ts("Classes: waiting and active", [
                    q(f"sum by (class) ({m.GATEWAY_CLASS_QUEUE.series}{{{GW}}})", "{{class}} waiting"),
                    q(f"sum by (class) ({m.GATEWAY_CLASS_ACTIVE.series}{{{GW}}})", "{{class}} active")],
                   "short", "Per priority class (with a tenants file): requests in the queue and holding slots."),
                ts("Tenants: requests", [
                    q(rate(m.GATEWAY_TENANT_REQUESTS.series, GW, "tenant, reason"), "{{tenant}} {{reason}}"),
                    q(rate(m.GATEWAY_RATE_LIMITED.series, GW, "tenant, limit"), "{{tenant}} limited ({{limit}})")],
                   REQPS, "Finished requests per second by tenant and reason, and refusals at a tenant's limits."),
                ts("Tenants: tokens", [q(rate(m.GATEWAY_TENANT_TOKENS.series, GW, "tenant, kind"),
                                         "{{tenant}} {{kind}}")],
                   TOKPS, "Prompt and completion tokens per second by tenant (the engine's usage)."),
            ],
            [
                ts("Tokens", [q(rate(m.GATEWAY_PROMPT_TOKENS.series, GW), "prompt"),
                              q(rate(m.GATEWAY_COMPLETION_TOKENS.series, GW), "completion")],
                   TOKPS, "Tokens per second through the gateway."),
                ts("Client disconnects and upstream errors", [
                    q(rate(m.GATEWAY_CLIENT_DISCONNECTS.series, GW, "stage"), "disconnect {{stage}}"),
                    q(rate(m.GATEWAY_UPSTREAM_ERRORS.series, GW, "kind"), "upstream {{kind}}")],
                   PERS, "Per second, by stage / kind."),
            ],
            [
                ts("Response cache: lookups", [
                    q(rate(m.GATEWAY_CACHE_LOOKUPS.series, GW, "result"), "{{result}}"),
                    q(rate(m.GATEWAY_CACHE_EVICTIONS.series, GW, "reason"), "evicted ({{reason}})")],
                   REQPS, "Cacheable requests per second by what the cache did (hit, coalesced "
                   "onto one in flight, miss, bypass with no-cache), and answers dropped by reason "
                   "(all zero while the cache is off)."),
                ts("Response cache: size", [
                    q(f"sum({m.GATEWAY_CACHE_BYTES.series}{{{GW}}})", "held"),
                    q(f"sum({m.GATEWAY_CACHE_MAX_BYTES.series}{{{GW}}})", "bound")],
                   "bytes", "Answers the cache holds against its size bound."),
                ts("Prompt tokens counted at admission", [
                    q(rate(m.GATEWAY_ADMISSION_PROMPT_TOKENS.series, GW, "counting"), "{{counting}}")],
                   TOKPS, "Exact: the model's tokenizer and chat template; estimated: 4 characters "
                   "a token (no tokenizer, or a request it cannot count exactly)."),
            ],
        ],
        [INSTANCE_GW, MODEL],
        [limit_changes_annotation()],
    )  # fmt: skip


def capacity() -> Json:
    completions = f"sum(rate({m.GATEWAY_E2E.name}_count{{{GW}}}[{RI}]))"
    return dashboard(
        "llmctl-capacity",
        "llmctl / Capacity & saturation",
        [
            [
                stat("Free slots", q(f"sum({MAX_ACTIVE}{{{GW}}}) - sum({ACTIVE}{{{GW}}})"), "short",
                     "MAX_ACTIVE minus active requests."),
                stat("Free queue places", q(f"sum({QMAX}{{{GW}}}) - sum({DEPTH}{{{GW}}})"), "short",
                     "QUEUE_MAX minus queued requests."),
                stat("Estimated wait", q(f"sum({DEPTH}{{{GW}}}) / {completions}"), "s",
                     "Queue depth / completion rate (Little's law): how long a new arrival waits."),
                stat("KV cache", q(f"max({m.VLLM_KV_USAGE.series}{{{ANY_ENG}}})"), "percentunit",
                     "Engine KV cache use.", min=0, max=1),
            ],
            [
                ts("Active vs MAX_ACTIVE", [q(f"sum({ACTIVE}{{{GW}}})", "active"),
                                            q(f"sum({MAX_ACTIVE}{{{GW}}})", "max_active")],
                   "short", "The limit is the gateway's gauge, so a live change shows at once."),
                ts("Queue vs QUEUE_MAX", [q(f"sum({DEPTH}{{{GW}}})", "queued"),
                                          q(f"sum({QMAX}{{{GW}}})", "queue_max")],
                   "short", "Requests waiting against the queue bound."),
            ],
            [
                ts("Saturation", [
                    q(f"sum({ACTIVE}{{{GW}}}) / sum({MAX_ACTIVE}{{{GW}}})", "slots"),
                    q(f"sum({DEPTH}{{{GW}}}) / (sum({QMAX}{{{GW}}}) > 0)", "queue")],
                   "percentunit", "Share of slots and queue places in use.", min=0, max=1),
                ts("Headroom", [
                    q(f"sum({MAX_ACTIVE}{{{GW}}}) - sum({ACTIVE}{{{GW}}})", "free slots"),
                    q(f"sum({QMAX}{{{GW}}}) - sum({DEPTH}{{{GW}}})", "free queue places")],
                   "short", "Room left before 429 queue_full."),
            ],
            [
                ts("Estimated wait vs observed", [
                    q(f"sum({DEPTH}{{{GW}}}) / {completions}", "estimated"),
                    q(f"max({m.REC_QUEUE_WAIT_P95}{{{GW}}})", "observed p95")],
                   "s", "Little's-law estimate against the measured p95 queue wait."),
                ts("Engine batch", [q(f"sum({m.VLLM_RUNNING.series}{{{ANY_ENG}}})", "running"),
                                    q(f"sum({m.VLLM_WAITING.series}{{{ANY_ENG}}})", "waiting")],
                   "short", "Requests the engine runs and queues itself (waiting > 0: slots too high)."),
            ],
        ],
        [INSTANCE_GW, MODEL],
        [limit_changes_annotation()],
    )  # fmt: skip


def engine() -> Json:
    return dashboard(
        "llmctl-engine",
        "llmctl / Engine (vLLM)",
        [
            [
                ts("Requests", [q(f"sum({m.VLLM_RUNNING.series}{{{ENG}}})", "running"),
                                q(f"sum({m.VLLM_WAITING.series}{{{ENG}}})", "waiting")],
                   "short", "Requests in the batch and waiting in the engine."),
                ts("KV cache use", [q(f"max by (instance) ({m.VLLM_KV_USAGE.series}{{{ENG}}})",
                                      "{{instance}}")],
                   "percentunit", "Share of KV cache blocks in use.", min=0, max=1),
            ],
            [
                ts("Tokens", [q(rate(m.VLLM_PROMPT_TOKENS.series, ENG), "prompt"),
                              q(rate(m.VLLM_GENERATION_TOKENS.series, ENG), "generation")],
                   TOKPS, "Prefill and generation tokens per second."),
                ts("Preemptions", [q(rate(m.VLLM_PREEMPTIONS.series, ENG), "preemptions")], PERS,
                   "Requests preempted per second (KV cache pressure)."),
            ],
            [
                ts("Time to first token", quantiles(m.VLLM_TTFT, ENG), "s", "Engine TTFT percentiles."),
                ts("Inter-token latency", quantiles(m.VLLM_ITL, ENG), "s", "Engine ITL percentiles."),
            ],
            [
                ts("End-to-end latency", quantiles(m.VLLM_E2E, ENG), "s", "Engine E2E percentiles."),
                ts("Finished requests", [q(rate(m.VLLM_REQUEST_SUCCESS.series, ENG, "finished_reason"),
                                           "{{finished_reason}}")],
                   REQPS, "Requests finished per second by reason."),
            ],
        ],
        [INSTANCE_ENG, MODEL],
    )  # fmt: skip


def gpu() -> Json:
    by = "gpu"
    return dashboard(
        "llmctl-gpu",
        "llmctl / GPU",
        [
            [
                ts("Utilisation", [q(f"max by ({by}) ({m.DCGM_GPU_UTIL.series}{{{GPU}}})", "GPU {{gpu}}")],
                   "percent", "DCGM GPU utilisation.", min=0, max=100),
                ts("Memory", [q(f"max by ({by}) ({m.DCGM_FB_USED.series}{{{GPU}}})", "used {{gpu}}"),
                              q(f"max by ({by}) {FB_TOTAL}", "total {{gpu}}")],
                   "mbytes", "Framebuffer used and total (used + free), MiB."),
            ],
            [
                ts("Memory used", [q(f"max by ({by}) ({m.DCGM_FB_USED.series}{{{GPU}}} / {FB_TOTAL})",
                                     "GPU {{gpu}}")],
                   "percentunit", "Share of framebuffer in use.", min=0, max=1),
                ts("Temperature", [q(f"max by ({by}) ({m.DCGM_TEMP.series}{{{GPU}}})", "GPU {{gpu}}")],
                   "celsius", "GPU temperature."),
                ts("Power", [q(f"max by ({by}) ({m.DCGM_POWER.series}{{{GPU}}})", "GPU {{gpu}}")],
                   "watt", "Power draw."),
            ],
        ],
        [INSTANCE_GPU, GPU_VAR],
    )  # fmt: skip


DASHBOARDS = {
    "overview": overview,
    "gateway": gateway,
    "capacity": capacity,
    "engine": engine,
    "gpu": gpu,
}


def render() -> dict[str, str]:
    """File name -> JSON text for every dashboard."""
    return {
        f"{name}.json": json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        for name, build in DASHBOARDS.items()
    }


def main() -> int:
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
