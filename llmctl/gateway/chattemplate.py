"""A model's chat template, rendered as transformers renders it over messages made as vLLM makes them.

vLLM (0.32) turns each request message into a template message (`renderers/chat_utils.py`): text
parts are joined with newlines for a template that reads `message.content` as a string, or kept as
`{"type": "text", ...}` parts for one that loops over the content (the "openai" content format,
found from the template's syntax tree); only known keys are kept; `developer` becomes `system` for a
template that does not know that role. transformers then renders it in a sandboxed Jinja
environment (trim_blocks, lstrip_blocks, loop controls, its own `tojson`, `raise_exception`) with
the special tokens as variables. Anything this module cannot render exactly as vLLM would (images,
tools, unknown part types) raises NotExactError, and the caller falls back to an estimate.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.sandbox

ContentFormat = Literal["string", "openai"]
SPECIAL_TOKENS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)
_TEXT_PARTS = frozenset({"text", "input_text", "output_text"})
_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "
# Request fields vLLM hands to the template besides the messages (None values are left out).
_TEMPLATE_FIELDS = ("documents", "reasoning_effort")
# chat_template_kwargs that transformers takes as its own arguments (they change more than the
# template's variables), or that vLLM refuses.
_CONSUMED = frozenset(
    {
        "conversation",
        "tools",
        "chat_template",
        "tokenize",
        "padding",
        "truncation",
        "max_length",
        "return_tensors",
        "return_dict",
        "return_assistant_tokens_mask",
        "tokenizer_kwargs",
    }
)


class NotExactError(Exception):
    """This request cannot be rendered exactly as vLLM would render it."""


class _Generation(jinja2.ext.Extension):
    """transformers' `{% generation %}` tag; rendering only needs its body."""

    tags = {"generation"}  # noqa: RUF012 (jinja's own class attribute)

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.Scope(body).set_lineno(lineno)


def _raise(message: str) -> None:
    raise jinja2.TemplateError(message)


def _tojson(
    x: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # transformers' filter: Jinja's own escapes HTML characters.
    return json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def environment() -> jinja2.sandbox.ImmutableSandboxedEnvironment:
    """The Jinja environment transformers renders chat templates in."""
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_Generation, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


class ChatTemplate:
    """One model's template, its content format and its special tokens."""

    def __init__(self, source: str, special_tokens: dict[str, str]) -> None:
        self.source = source
        self.special_tokens = special_tokens
        env = environment()
        self._template = env.from_string(source)
        self.format: ContentFormat = content_format(env.parse(source))
        self._developer = '"developer"' in source or "'developer'" in source

    @classmethod
    def load(cls, folder: Path) -> ChatTemplate | None:
        """The template of a model folder (chat_template.jinja, else tokenizer_config.json's
        chat_template), or None when it has none."""
        config = _read_json(folder / "tokenizer_config.json")
        source: Any = None
        jinja = folder / "chat_template.jinja"
        if jinja.is_file():
            source = jinja.read_text(encoding="utf-8")
        else:
            source = config.get("chat_template")
        if isinstance(source, list):  # named templates: the default one is used
            named = {t.get("name"): t.get("template") for t in source if isinstance(t, dict)}
            source = named.get("default")
        if not isinstance(source, str):
            return None
        fallback = _read_json(folder / "special_tokens_map.json")
        special = {}
        for key in SPECIAL_TOKENS:
            value = config.get(key, fallback.get(key))
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str):
                special[key] = value
        return cls(source, special)

    def render(self, data: dict[str, Any]) -> str:
        """The prompt text vLLM would build from chat request `data`."""
        if data.get("tools") or data.get("chat_template") or data.get("mm_processor_kwargs"):
            raise NotExactError("tools, a request's own template or multimodal settings")
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            raise NotExactError("no messages")
        chat = [self._message(m) for m in messages]
        if any(m["role"] == "developer" for m in chat) and not self._developer:
            chat = _merge_system([_as_system(m) for m in chat])
        extra = data.get("chat_template_kwargs") or {}
        if not isinstance(extra, dict) or _CONSUMED & extra.keys():
            raise NotExactError("chat_template_kwargs that change more than the template")
        generation = data.get("add_generation_prompt", True)
        final = data.get("continue_final_message", False)
        if generation and final:
            raise NotExactError("add_generation_prompt with continue_final_message")
        # The request's own fields win over chat_template_kwargs, unless they are null.
        variables = {**self.special_tokens, "documents": None, **extra, "tools": None}
        variables.update({k: data[k] for k in _TEMPLATE_FIELDS if data.get(k) is not None})
        if data.get("reasoning_effort") is not None and "enable_thinking" not in extra:
            variables["enable_thinking"] = data["reasoning_effort"] != "none"
        variables["add_generation_prompt"] = bool(generation)
        final_text = _tag_final(chat) if final else None
        variables["messages"] = chat
        try:
            text = self._template.render(**variables)
        except Exception as exc:  # a template's own refusal (raise_exception) or its bug
            raise NotExactError(f"the template failed: {exc}") from exc
        if final_text is not None:
            at = text.rfind(_CONTINUE_TAG.strip())
            if at < 0 or final_text.strip() not in text:
                raise NotExactError("the template dropped the final message")
            exact = text[at : at + len(_CONTINUE_TAG)] == _CONTINUE_TAG
            text = text[:at] if exact else text[:at].rstrip()
        return text

    def _message(self, message: Any) -> dict[str, Any]:
        """One request message as vLLM hands it to the template."""
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise NotExactError("a message is not an object with a role")
        role = message["role"]
        if message.get("tool_calls"):
            raise NotExactError("tool calls")
        texts = _texts(message.get("content"))
        if role == "system":
            texts = [t for t in texts if not t.startswith("x-anthropic-billing-header")]
        out: dict[str, Any] = {"role": role}
        if self.format == "openai" and role != "tool":
            out["content"] = [{"type": "text", "text": t} for t in texts]
        else:
            out["content"] = "\n".join(texts)
        if role == "assistant" and message.get("reasoning") is not None:
            out["reasoning"] = out["reasoning_content"] = message["reasoning"]
        if role == "tool" and "tool_call_id" in message:
            out["tool_call_id"] = message["tool_call_id"]
        for key in ("name", "task"):
            if isinstance(message.get(key), str):
                out[key] = message[key]
        if role == "developer":
            out["tools"] = message.get("tools")
        return out


def _texts(content: Any) -> list[str]:
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        raise NotExactError("content is neither text nor a list of parts")
    texts = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif (
            isinstance(part, dict)
            and part.get("type") in _TEXT_PARTS
            and isinstance(part.get("text"), str)
            and part.keys() <= {"type", "text"}
        ):
            texts.append(part["text"])
        else:
            raise NotExactError("a content part that is not plain text")
    return texts


def _as_system(message: dict[str, Any]) -> dict[str, Any]:
    if message["role"] != "developer":
        return message
    return {k: v for k, v in message.items() if k != "tools"} | {"role": "system"}


def _merge_system(chat: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """vLLM's merge of every system message into one at the front (after `developer` became
    `system`), done only when one is not already alone at the front."""
    contents: list[str] = []
    rest: list[dict[str, Any]] = []
    merge = False
    for i, message in enumerate(chat):
        if message["role"] != "system":
            rest.append(message)
            continue
        merge = merge or i > 0 or bool(contents)
        content = message.get("content", "")
        if isinstance(content, list):
            content = "\n".join(p["text"] for p in content)
        if content:
            contents.append(content)
    if not merge:
        return chat
    return [{"role": "system", "content": "\n\n".join(contents)}, *rest]


def _tag_final(chat: list[dict[str, Any]]) -> str:
    """Mark the final message for continue_final_message (as transformers does); its text."""
    last = chat[-1] = dict(chat[-1])
    content = last.get("content")
    if isinstance(content, list):
        parts = last["content"] = [dict(p) for p in content]
        if not parts:
            raise NotExactError("no text to continue")
        text = str(parts[-1]["text"])
        parts[-1]["text"] = text + _CONTINUE_TAG
        return text
    text = str(content)
    last["content"] = text + _CONTINUE_TAG
    return text


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# --- the content format: does the template loop over a message's content? (vLLM's detection) ----


def _name(node: jinja2.nodes.Node, var: str) -> bool:
    return isinstance(node, jinja2.nodes.Name) and node.ctx == "load" and node.name == var


def _item(node: jinja2.nodes.Node, var: str, key: str) -> bool:
    if isinstance(node, jinja2.nodes.Getitem):
        arg = node.arg
        return _name(node.node, var) and isinstance(arg, jinja2.nodes.Const) and arg.value == key
    return isinstance(node, jinja2.nodes.Getattr) and _name(node.node, var) and node.attr == key


def _reads(node: jinja2.nodes.Node, var: str, key: str | None = None) -> bool:
    """`var` (or `var.key`), possibly through filters, tests and slices."""
    if isinstance(node, jinja2.nodes.Filter):
        return node.node is not None and _reads(node.node, var, key)
    if isinstance(node, jinja2.nodes.Test):
        return _reads(node.node, var, key)
    if isinstance(node, jinja2.nodes.Getitem) and isinstance(node.arg, jinja2.nodes.Slice):
        return _reads(node.node, var, key)
    return _item(node, var, key) if key else _name(node, var)


def _aliases(root: jinja2.nodes.Template, var: str) -> list[str]:
    """`var` and every name assigned from it, transitively."""
    names, todo = [var], deque([var])
    while todo:
        current = todo.popleft()
        for assign in root.find_all(jinja2.nodes.Assign):
            if _reads(assign.node, current) and isinstance(assign.target, jinja2.nodes.Name):
                names.append(assign.target.name)
                if assign.target.name != current:
                    todo.append(assign.target.name)
    return names


def _loop_names(root: jinja2.nodes.Template, over: list[str]) -> Iterator[str]:
    for loop in root.find_all(jinja2.nodes.For):
        if any(_reads(loop.iter, v) for v in over) and isinstance(loop.target, jinja2.nodes.Name):
            yield loop.target.name


def content_format(root: jinja2.nodes.Template) -> ContentFormat:
    """ "openai" when the template loops over a message's content (or over a macro parameter that
    is given a message's content), else "string"."""
    messages = list(_loop_names(root, _aliases(root, "messages")))
    macro_params: dict[int, set[str]] = {}
    in_macros: set[int] = set()
    for macro in root.find_all(jinja2.nodes.Macro):
        names = [a.name for a in macro.args]
        params: set[str] = set()
        for call in root.find_all(jinja2.nodes.Call):
            if not (isinstance(call.node, jinja2.nodes.Name) and call.node.name == macro.name):
                continue
            for i, arg in enumerate(call.args):
                if i < len(names) and any(_reads(arg, m, "content") for m in messages):
                    params.add(names[i])
            for kw in call.kwargs:
                if kw.key in names and any(_reads(kw.value, m, "content") for m in messages):
                    params.add(kw.key)
        for loop in macro.find_all(jinja2.nodes.For):
            in_macros.add(id(loop))
            if params:
                macro_params[id(loop)] = params
    for loop in root.find_all(jinja2.nodes.For):
        it = loop.iter
        if any(_reads(it, m, "content") for m in messages):
            return "openai"
        if isinstance(it, jinja2.nodes.Name) and (
            it.name in macro_params.get(id(loop), ())
            or (id(loop) not in in_macros and it.name == "content")
        ):
            return "openai"
    return "string"
