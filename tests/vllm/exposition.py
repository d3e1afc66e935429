"""Read a Prometheus text page: metric families with their types, and summed sample values."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Exposition:
    """One scrape: family name -> type, and every sample as (name, labels, value)."""

    types: dict[str, str]
    samples: list[tuple[str, dict[str, str], float]]

    @classmethod
    def parse(cls, text: str) -> Exposition:
        types: dict[str, str] = {}
        samples: list[tuple[str, dict[str, str], float]] = []
        for family in text_string_to_metric_families(text):
            types[family.name] = family.type
            samples += [(s.name, dict(s.labels), s.value) for s in family.samples]
        return cls(types, samples)

    @classmethod
    def scrape(cls, url: str) -> Exposition:
        resp = httpx.get(url, timeout=10)
        resp.raise_for_status()
        return cls.parse(resp.text)

    def sample_names(self) -> set[str]:
        return {name for name, _, _ in self.samples}

    def value(self, name: str, **labels: str) -> float:
        """The sum of `name`'s samples whose labels include `labels` (0 when none match)."""
        return sum(
            value
            for sample, lab, value in self.samples
            if sample == name and all(lab.get(k) == v for k, v in labels.items())
        )

    def family_of(self, series: str) -> str | None:
        """The family a PromQL series name belongs to (`x_bucket` -> histogram `x`), if any."""
        if series in self.types:
            return series
        for suffix in ("_total", "_bucket", "_sum", "_count"):
            base = series.removesuffix(suffix)
            if base != series and base in self.types and series in self.sample_names():
                return base
        return None
