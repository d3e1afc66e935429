"""A model folder with a real tokenizer.json and chat template, made in a test's tmp_path.

The tokenizer splits on whitespace and punctuation into known words (anything else is one unknown
token), adds `<s>` in front of a sequence when special tokens are asked for, and knows the chat
markers as special tokens: counts in tests are easy to work out by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, processors

WORDS = ["hello", "world", "you", "are", "terse", "again", "ok", "user", "assistant", "system"]
SPECIALS = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]

# ChatML with a default system prompt, tojson and raise_exception, as real templates use them.
TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nyou are terse<|im_end|>\\n' }}"
    "{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown role ' + message['role'] | tojson) }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# A template that loops over a message's parts (vLLM's "openai" content format).
PARTS_TEMPLATE = (
    "{% for message in messages %}{{ bos_token + message['role'] + ':' }}"
    "{% for part in message['content'] %}{{ ' ' + part['text'] }}{% endfor %}"
    "{{ eos_token }}{% endfor %}"
)


def make_tokenizer() -> Tokenizer:
    vocab = {token: i for i, token in enumerate(SPECIALS + WORDS)}
    for mark in ".,!?:":
        vocab[mark] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    tok.add_special_tokens([AddedToken(t, special=True) for t in SPECIALS])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    return tok


def make_model_folder(
    path: Path, template: str | None = TEMPLATE, *, in_config: bool = False
) -> Path:
    """Write tokenizer.json, tokenizer_config.json and (unless `in_config`) chat_template.jinja."""
    path.mkdir(parents=True, exist_ok=True)
    make_tokenizer().save(str(path / "tokenizer.json"))
    config: dict[str, object] = {"bos_token": "<s>", "eos_token": {"content": "</s>"}}
    if template is not None and in_config:
        config["chat_template"] = template
    elif template is not None:
        (path / "chat_template.jinja").write_text(template)
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    return path
