"""A small Prometheus text-format reader for the simulator tests."""

from __future__ import annotations

import re

import httpx

_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def types(text: str) -> dict[str, str]:
    """`# TYPE name type` lines as {name: type}."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            out[name] = kind
    return out


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match:
            labels = dict(_LABEL.findall(match.group(2) or ""))
            out.append((match.group(1), labels, float(match.group(3))))
    return out


def value(text: str, name: str, **labels: str) -> float:
    """The one sample called `name` whose labels include `labels`."""
    found = [v for n, ls, v in samples(text) if n == name and labels.items() <= ls.items()]
    if len(found) != 1:
        raise KeyError(f"{name}{labels}: {len(found)} samples")
    return found[0]


def scrape(url: str, name: str, **labels: str) -> float:
    return value(httpx.get(f"{url}/metrics", timeout=5).text, name, **labels)
