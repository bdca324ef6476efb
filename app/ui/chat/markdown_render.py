"""Markdown to the HTML subset Qt's rich text understands, for one chat message.

Model output is untrusted: HTML in it is shown as text, never rendered; links keep only
safe schemes (markdown-it's own check), and images become plain links, so a message can
never make the view read a local file or reach the network. Fenced code blocks are
highlighted by Pygments with inline styles (a light or a dark palette) and carry a "Copy"
link whose address is ``copy:<index>``; `RenderedMarkdown.code_blocks[index]` is the code
it stands for.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported on the first render: the window shows without them
    from markdown_it import MarkdownIt
    from markdown_it.token import Token
    from pygments.formatters import HtmlFormatter
    from pygments.lexer import Lexer

COPY_SCHEME = "copy"
"""Links to copy a code block are ``copy:<index>``."""

LIGHT_STYLE = "default"
DARK_STYLE = "github-dark"
_CACHE_SIZE = 1024


@dataclass(frozen=True)
class CodePalette:
    """Colours around highlighted code (the tokens' own colours come from Pygments)."""

    background: str
    header_background: str
    header: str
    inline_background: str


LIGHT = CodePalette(
    background="#f6f8fa",
    header_background="#e9edf1",
    header="#57606a",
    inline_background="#eaeef2",
)
DARK = CodePalette(
    background="#0d1117",
    header_background="#1f252d",
    header="#9198a1",
    inline_background="#343a42",
)


@dataclass(frozen=True)
class RenderedMarkdown:
    """A message as HTML, and the code of each block its ``copy:<index>`` links stand for."""

    html: str
    code_blocks: tuple[str, ...]


def palette_for(dark: bool) -> CodePalette:
    """The code-block colours for a light or a dark window."""
    return DARK if dark else LIGHT


@functools.lru_cache(maxsize=_CACHE_SIZE)
def render_markdown(text: str, dark: bool = False) -> RenderedMarkdown:
    """Render one message's Markdown (cached by text and palette)."""
    env: dict[str, Any] = {"code_blocks": [], "dark": dark}
    body = _markdown().render(text, env)
    return RenderedMarkdown(html=body.rstrip(), code_blocks=tuple(env["code_blocks"]))


def render_plain(text: str) -> str:
    """Plain text as HTML (escaped, line breaks kept), as a streaming reply shows."""
    return "<p style='white-space: pre-wrap'>" + html.escape(text) + "</p>"


def document_style_sheet(fixed_family: str) -> str:
    """The default style sheet a message document needs: fixed font, calmer headings."""
    family = fixed_family.replace("'", "")
    return (
        f"pre, code {{ font-family: '{family}'; }}\n"
        "h1 { font-size: x-large; } h2 { font-size: large; } "
        "h3, h4, h5, h6 { font-size: medium; }\n"
        "p, ul, ol, blockquote { margin-top: 4px; margin-bottom: 4px; }\n"
    )


# ----- markdown-it set-up -----


@functools.cache
def _markdown() -> MarkdownIt:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "breaks": True})
    md.enable(["table", "strikethrough"])
    md.add_render_rule("fence", _render_fence)
    md.add_render_rule("code_block", _render_code_block)
    md.add_render_rule("code_inline", _render_code_inline)
    md.add_render_rule("image", _render_image)
    md.add_render_rule("table_open", _render_table_open)
    return md


def _render_fence(
    _renderer: Any, tokens: Sequence[Token], idx: int, _options: Any, env: dict[str, Any]
) -> str:
    token = tokens[idx]
    language = token.info.strip().split(maxsplit=1)[0] if token.info.strip() else ""
    return _code_block(token.content, language, env)


def _render_code_block(
    _renderer: Any, tokens: Sequence[Token], idx: int, _options: Any, env: dict[str, Any]
) -> str:
    return _code_block(tokens[idx].content, "", env)


def _render_code_inline(
    _renderer: Any, tokens: Sequence[Token], idx: int, _options: Any, env: dict[str, Any]
) -> str:
    colours = palette_for(bool(env.get("dark")))
    return (
        f'<code style="background-color:{colours.inline_background}">'
        f"{html.escape(tokens[idx].content, quote=False)}</code>"
    )


def _render_image(
    renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict[str, Any]
) -> str:
    token = tokens[idx]
    alt = renderer.renderInlineAsText(token.children or [], options, env) or "image"
    source = str(token.attrGet("src") or "")
    label = html.escape(f"[image: {alt}]", quote=False)
    if not source:
        return label
    return f'<a href="{html.escape(source)}">{label}</a>'


def _render_table_open(
    _renderer: Any, _tokens: Sequence[Token], _idx: int, _options: Any, _env: dict[str, Any]
) -> str:
    return (
        '<table border="1" cellspacing="0" cellpadding="4" '
        'style="border-collapse: collapse; border-color: #8c959f; margin: 4px 0px">\n'
    )


def _code_block(code: str, language: str, env: dict[str, Any]) -> str:
    dark = bool(env.get("dark"))
    blocks: list[str] = env.setdefault("code_blocks", [])
    index = len(blocks)
    text = code[:-1] if code.endswith("\n") else code
    blocks.append(text)
    from pygments import highlight

    colours = palette_for(dark)
    lexer = _lexer(language.lower())
    body = (
        highlight(text, lexer, _formatter(dark)).rstrip("\n")
        if lexer is not None
        else html.escape(text, quote=False)
    )
    label = html.escape(language or "text", quote=False)
    return (
        f'<table width="100%" cellspacing="0" cellpadding="6" border="0" '
        f'bgcolor="{colours.background}" style="margin-top: 6px; margin-bottom: 6px">'
        f'<tr><td bgcolor="{colours.header_background}" style="color: {colours.header}">'
        f"<small>{label}</small></td>"
        f'<td bgcolor="{colours.header_background}" align="right">'
        f'<a href="{COPY_SCHEME}:{index}"><small>Copy</small></a></td></tr>'
        f'<tr><td colspan="2"><pre style="white-space: pre-wrap; margin: 0px">{body}</pre>'
        "</td></tr></table>\n"
    )


@functools.lru_cache(maxsize=64)
def _lexer(language: str) -> Lexer | None:
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound

    if not language:
        return None
    try:
        return get_lexer_by_name(language, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return None


@functools.cache
def _formatter(dark: bool) -> HtmlFormatter[str]:
    from pygments.formatters import HtmlFormatter
    from pygments.styles import get_style_by_name

    style = get_style_by_name(DARK_STYLE if dark else LIGHT_STYLE)
    return HtmlFormatter(style=style, noclasses=True, nowrap=True)
