"""Request bodies: synthetic prompts of a target length, or chat requests read from a JSONL file."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from llmctl.bench.config import PromptSpec
from llmctl.core.errors import UsageError
from llmctl.core.openai import ENDPOINTS

# Short common words: each is one token (with its leading space) in the Llama, Qwen and GPT
# tokenizers, so N words make a prompt of about N tokens without shipping a tokenizer.
_WORD_TEXT = (
    "the of and to in is you that it he was for on are as with his they at be this have from or one "
    "had by word but not what all were we when your can said there use an each which she do how their "
    "if will up other about out many then them these so some her would make like him into time has "
    "look two more write go see number no way could people my than first water been call who oil its "
    "now find long down day did get come made may part over new sound take only little work know place "
    "year live me back give most very after thing our just name good sentence man think say great where "
    "help through much before line right too mean old any same tell boy follow came want show also "
    "around form three small set put end does another well large must big even such because turn here"
)
_WORDS = _WORD_TEXT.split()


def load_dataset(path: Path, field: str = "messages") -> list[dict[str, Any]]:
    """Read requests, one JSON object per line with a `messages` list (chat) or a `prompt`."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read dataset {path}: {exc.strerror or exc}") from exc
    requests: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise UsageError(f"{path}:{number}: not JSON ({exc})") from exc
        if not isinstance(obj, dict) or not obj.get(field):
            raise UsageError(f"{path}:{number}: expected a request object with '{field}'")
        requests.append(obj)
    if not requests:
        raise UsageError(f"dataset {path} has no requests")
    return requests


class PromptSource:
    """Hands out one request body per call; synthetic prompts differ so no prefix cache helps.

    The seed fixes the lengths (and so the workload's shape); the words are drawn afresh for each
    source, so a second run against the same engine (another bench, the next trial of a tune) is
    not served from the prefix cache the first one filled."""

    def __init__(self, spec: PromptSpec, model: str, seed: int = 0) -> None:
        self.spec = spec
        self.model = model
        self._rng = random.Random(seed)
        self._words = random.Random()  # seeded from the OS: new words in every run
        self.route = ENDPOINTS[spec.endpoint]
        self.path, self.token_key, self._field = (
            self.route.path,
            self.route.text_key,
            self.route.body_key,
        )
        dataset = spec.dataset
        self._dataset = load_dataset(dataset, self._field) if dataset is not None else None
        self._next = 0

    def next_body(self) -> tuple[bytes, int]:
        """A request body and its estimated prompt length (used when the server sends no usage)."""
        if self._dataset is not None:
            base = self._dataset[self._next % len(self._dataset)]
            self._next += 1
            body: dict[str, Any] = {"max_tokens": self.spec.output_len, **base}
            estimate = max(1, len(json.dumps(base[self._field])) // 4)
        else:
            length = self.input_len()
            text = self.synthetic_text(length)
            prompt: Any = text if self._field == "prompt" else [{"role": "user", "content": text}]
            body = {self._field: prompt, "max_tokens": self.output_len()}
            estimate = length
            if self.spec.ignore_eos:
                body["ignore_eos"] = True
        body["model"] = self.model
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        return json.dumps(body, separators=(",", ":")).encode(), estimate

    def input_len(self) -> int:
        """A prompt length drawn uniformly within mean x (1 +- spread), as vLLM's random dataset."""
        return self._draw(self.spec.input_len, self.spec.input_spread)

    def output_len(self) -> int:
        """A max_tokens drawn the same way (the spread 0 keeps the seeded prompt sequence)."""
        if not self.spec.output_spread:
            return self.spec.output_len
        return self._draw(self.spec.output_len, self.spec.output_spread)

    def _draw(self, mean: int, spread: float) -> int:
        low = max(1, round(mean * (1 - spread)))
        high = max(low, round(mean * (1 + spread)))
        return self._rng.randint(low, high)

    def synthetic_text(self, length: int) -> str:
        return " ".join(self._words.choices(_WORDS, k=length))
