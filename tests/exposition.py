"""The one reader of Prometheus text pages in the tests, on prometheus_client's own parser.

The parser names families as the data model does: a counter's family is `x` for the sample
`x_total`, a histogram's is `x` for `x_bucket`, `x_sum` and `x_count`. A line it cannot read is
an error, never a sample silently left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Sample:
    family: str
    name: str
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Exposition:
    """One page: family name -> type, and every sample."""

    types: dict[str, str]
    samples: list[Sample]

    @classmethod
    def parse(cls, text: str) -> Exposition:
        types: dict[str, str] = {}
        samples: list[Sample] = []
        for family in text_string_to_metric_families(text):
            types[family.name] = family.type
            samples += [
                Sample(family.name, s.name, dict(s.labels), s.value) for s in family.samples
            ]
        return cls(types, samples)

    @classmethod
    def scrape(cls, url: str, headers: dict[str, str] | None = None) -> Exposition:
        """GET the page at `url` (the full URL, `/metrics` included)."""
        resp = httpx.get(url, headers=headers, timeout=10)
        resp.raise_for_status()
        return cls.parse(resp.text)

    def matching(self, name: str, **labels: str) -> list[Sample]:
        """The samples called `name` whose labels include `labels`."""
        return [s for s in self.samples if s.name == name and labels.items() <= s.labels.items()]

    def value(self, name: str, **labels: str) -> float:
        """The value of the one sample `name` with `labels`; KeyError if none or several match."""
        found = self.matching(name, **labels)
        if len(found) != 1:
            raise KeyError(f"{name}{labels}: {len(found)} samples match")
        return found[0].value

    def total(self, name: str, **labels: str) -> float:
        """The sum over the samples `name` with `labels` (0 when none match)."""
        return sum(s.value for s in self.matching(name, **labels))

    def sample_names(self) -> set[str]:
        return {s.name for s in self.samples}

    def family_of(self, series: str) -> str | None:
        """The family a PromQL series name belongs to (`x_bucket` -> histogram `x`), if any."""
        if series in self.types:
            return series
        return next((s.family for s in self.samples if s.name == series), None)


def scrape_value(url: str, name: str, **labels: str) -> float:
    """The one sample `name` with `labels` on the page at `url` (`/metrics` included)."""
    return Exposition.scrape(url).value(name, **labels)
