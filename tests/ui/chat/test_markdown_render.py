"""Markdown to Qt rich text: escaped HTML, highlighted code with copy links, safe links."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QTextDocument
from pytestqt.qtbot import QtBot

from app.ui.chat.markdown_render import (
    COPY_SCHEME,
    DARK,
    LIGHT,
    document_style_sheet,
    render_markdown,
    render_plain,
)

pytestmark = [pytest.mark.qt_log_level_fail("WARNING")]

CODE = 'def greet(name):\n    return f"Hello, {name}!"  # <b>not bold</b>'
MESSAGE = (
    f"Here is **some** code:\n\n```python\n{CODE}\n```\n\nAnd more:\n\n```\nplain < text\n```\n"
)


def test_raw_html_in_the_source_is_shown_as_text() -> None:
    rendered = render_markdown('<script>alert("x")</script>\n\n<b>bold?</b> <img src="x">')
    assert "<script" not in rendered.html
    assert "<b>" not in rendered.html
    assert "<img" not in rendered.html
    assert "&lt;script&gt;" in rendered.html
    assert "&lt;b&gt;bold?&lt;/b&gt;" in rendered.html


def test_fenced_code_is_highlighted_with_inline_styles_and_a_copy_link() -> None:
    rendered = render_markdown(MESSAGE)
    assert rendered.code_blocks == (CODE, "plain < text")
    assert f'href="{COPY_SCHEME}:0"' in rendered.html
    assert f'href="{COPY_SCHEME}:1"' in rendered.html
    assert '<span style="color' in rendered.html  # Pygments, inline styles
    assert "class=" not in rendered.html
    assert "&lt;b&gt;not bold&lt;/b&gt;" in rendered.html  # code is escaped too
    assert "plain &lt; text" in rendered.html
    assert ">python<" in rendered.html  # the language label


def test_light_and_dark_palettes_differ() -> None:
    light = render_markdown(MESSAGE, False).html
    dark = render_markdown(MESSAGE, True).html
    assert LIGHT.background in light and DARK.background not in light
    assert DARK.background in dark and LIGHT.background not in dark
    assert light != dark


def test_results_are_cached_by_text_and_palette() -> None:
    assert render_markdown(MESSAGE, True) is render_markdown(MESSAGE, True)
    assert render_markdown(MESSAGE, False) is not render_markdown(MESSAGE, True)


def test_unknown_language_is_escaped_plain_code_with_a_copy_link() -> None:
    rendered = render_markdown("```nosuchlanguage\nx <y> & z\n```")
    assert rendered.code_blocks == ("x <y> & z",)
    assert "x &lt;y&gt; &amp; z" in rendered.html
    assert f"{COPY_SCHEME}:0" in rendered.html


def test_inline_code_lists_tables_and_line_breaks() -> None:
    html = render_markdown(
        "Use `a < b`.\nNext line\n\n- one\n- two\n\n| a | b |\n|---|---|\n| 1 | 2 |"
    ).html
    assert "<code" in html and "a &lt; b" in html
    assert "<br />" in html  # single newlines are kept, as models write them
    assert "<li>one</li>" in html
    assert '<table border="1"' in html


def test_images_become_links_and_unsafe_links_are_not_links() -> None:
    html = render_markdown(
        "![a cat](/etc/passwd) [click](javascript:alert(1)) [ok](https://x.org)"
    ).html
    assert "<img" not in html
    assert "[image: a cat]" in html
    assert "javascript:" not in html.replace("[click](javascript:alert(1))", "")
    assert '<a href="https://x.org">ok</a>' in html


def test_plain_rendering_escapes_and_keeps_whitespace() -> None:
    assert render_plain("a <b>\n  c") == "<p style='white-space: pre-wrap'>a &lt;b&gt;\n  c</p>"


def test_qt_reads_the_html_back_to_the_same_text(qtbot: QtBot) -> None:
    document = QTextDocument()
    document.setDefaultStyleSheet(document_style_sheet("Monospace"))
    document.setHtml(render_markdown(MESSAGE).html)
    text = document.toPlainText()
    assert "Here is some code:" in text
    assert 'return f"Hello, {name}!"  # <b>not bold</b>' in text
    assert "Copy" in text
