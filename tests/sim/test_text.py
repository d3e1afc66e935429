"""The token-counting rule and the seeded pseudo-text."""

from __future__ import annotations

from llmctl.sim.text import TokenStream, count_tokens, render_chat


def test_rule_counts_ceil_quarter_length_per_word() -> None:
    assert count_tokens("") == 0
    assert count_tokens("a bb ccc dddd") == 4
    assert count_tokens("abcde") == 2
    assert count_tokens("  supercalifragilistic\n x ") == 5 + 1
    assert count_tokens(render_chat([("user", "hi")])) == count_tokens("<|user|> hi <|assistant|>")


def test_generated_text_counts_one_token_per_piece_and_is_seeded() -> None:
    a, b, c = TokenStream(1), TokenStream(1), TokenStream(2)
    text = a.text(a.offset(0), 0, 500)
    assert count_tokens(text) == 500
    assert text == b.text(b.offset(0), 0, 500)
    assert text != c.text(c.offset(0), 0, 500)
    assert a.text(a.offset(0), 0, 50) != a.text(a.offset(1), 0, 50)
    assert '"' not in text
    assert "\\" not in text
