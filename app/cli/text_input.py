"""Text typed at the terminal, piped in or given as arguments, made valid Unicode.

Bytes that are not UTF-8 (a Latin-1 file piped in, an argument under `LANG=C`) reach
Python as lone surrogates (`surrogateescape`), which no tokenizer, database or terminal
can encode. Each such byte becomes U+FFFD, and the person is told once.
"""

from __future__ import annotations

import io
import os
import re
import sys
from typing import TextIO

_SURROGATE = re.compile("[\ud800-\udfff]")


class TextCleaner:
    """Replaces undecodable bytes in text inputs, saying so once on stderr.

    Args:
        err: Where the one notice goes (default: stderr).
    """

    def __init__(self, err: TextIO | None = None) -> None:
        self._err = err
        self.warned = False

    def clean(self, text: str, where: str) -> str:
        """`text` with every undecodable byte replaced by U+FFFD."""
        if not _SURROGATE.search(text):
            return text
        try:
            raw = os.fsencode(text)  # the original bytes of an argument or escaped input
            fixed = raw.decode("utf-8", errors="replace")
        except UnicodeError:
            fixed = text.encode("utf-8", errors="surrogatepass").decode("utf-8", errors="replace")
        fixed = _SURROGATE.sub("\ufffd", fixed)
        if not self.warned:
            self.warned = True
            print(
                f"hearth: note: {where} had bytes that are not UTF-8; they were replaced "
                "with \ufffd",
                file=self._err or sys.stderr,
            )
        return fixed


def tolerant_stdin() -> TextIO:
    """Standard input that never fails to decode (undecodable bytes come as surrogates)."""
    stream = sys.stdin
    if isinstance(stream, io.TextIOWrapper):
        stream.reconfigure(encoding="utf-8", errors="surrogateescape")
    return stream


def tolerant_output() -> None:
    """Let stdout and stderr print any text, even under an ASCII locale."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
