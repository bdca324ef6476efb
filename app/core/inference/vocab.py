"""A loaded model's vocabulary: tokenize, the BOS rule, token text, and its chat template.

The engine (full model) and the draft counter (vocabulary only) both read tokens through
`Vocabulary`, so their counts cannot drift apart.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence
from typing import Any

import llama_cpp

from app.core.inference.messages import Message
from app.core.inference.prompt import ChatTemplate
from app.core.inference.prompt_tokens import ControlTokens, encode_prompt
from app.core.logs import route_llama_log

_ATTR_UNKNOWN = int(llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN)
_ATTR_CONTROL = int(llama_cpp.LLAMA_TOKEN_ATTR_CONTROL)
_ATTR_LSTRIP = int(llama_cpp.LLAMA_TOKEN_ATTR_LSTRIP)
_ATTR_RSTRIP = int(llama_cpp.LLAMA_TOKEN_ATTR_RSTRIP)

_backend_lock = threading.Lock()
_backend_ready = False


def ensure_backend() -> None:
    """Initialise llama.cpp once per process, with its log routed into Python logging."""
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            route_llama_log()
            llama_cpp.llama_backend_init()
            _backend_ready = True


class Vocabulary:
    """Token operations on one `llama_vocab` (valid while its model is loaded).

    Args:
        vocab: The `llama_vocab` pointer of a loaded model.
        chat_template: The GGUF's `tokenizer.chat_template`, or None for the fallback.
        model: The model's name, for messages.
    """

    def __init__(self, vocab: Any, chat_template: str | None, *, model: str = "") -> None:
        self.pointer = vocab
        self.n_tokens = int(llama_cpp.llama_vocab_n_tokens(vocab))
        self._add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
        self._bos_text = self.special_text(llama_cpp.llama_vocab_bos(vocab))
        eos_text = self.special_text(llama_cpp.llama_vocab_eos(vocab))
        self._bos = int(llama_cpp.llama_vocab_bos(vocab))
        self.template = ChatTemplate(chat_template, self._bos_text, eos_text, model=model)
        self._controls: ControlTokens | None = None
        self._pieces: dict[int, bytes] = {}
        self._piece_buf = ctypes.create_string_buffer(256)

    def tokenize(
        self, text: str, *, add_special: bool = False, parse_special: bool = True
    ) -> list[int]:
        """Token ids of `text`."""
        data = text.encode("utf-8")
        capacity = len(data) + 8
        buf = (llama_cpp.llama_token * capacity)()
        n = llama_cpp.llama_tokenize(
            self.pointer, data, len(data), buf, capacity, add_special, parse_special
        )
        if n < 0:
            capacity = -n
            buf = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(
                self.pointer, data, len(data), buf, capacity, add_special, parse_special
            )
        return list(buf[:n])

    def tokenize_prompt(self, text: str) -> list[int]:
        """Tokens of rendered prompt text, with BOS added only if the model wants one and
        the template has not written it already."""
        add = self._add_bos and not (self._bos_text and text.startswith(self._bos_text))
        return self.tokenize(text, add_special=add, parse_special=True)

    @property
    def controls(self) -> ControlTokens:
        """The spellings of the control tokens (what `parse_special` turns into ids)."""
        if self._controls is None:
            ids: dict[str, int] = {}
            lstrip: set[str] = set()
            rstrip: set[str] = set()
            for token in range(self.n_tokens):
                attr = int(llama_cpp.llama_vocab_get_attr(self.pointer, token))
                if not attr & (_ATTR_CONTROL | _ATTR_UNKNOWN):
                    continue
                text = self.special_text(token)
                if text and text not in ids:
                    ids[text] = token
                    if attr & _ATTR_LSTRIP:
                        lstrip.add(text)
                    if attr & _ATTR_RSTRIP:
                        rstrip.add(text)
            self._controls = ControlTokens(ids, frozenset(lstrip), frozenset(rstrip))
        return self._controls

    def encode_prompt(
        self,
        messages: Sequence[Message],
        template: ChatTemplate | None = None,
        *,
        cancel: threading.Event | None = None,
    ) -> list[int]:
        """Prompt tokens for `messages`: the template's markers are control tokens and the
        messages' text is plain text, whatever it spells; BOS as `tokenize_prompt` adds it.

        Raises:
            ChatTemplateError: The template failed.
            PromptCancelled: `cancel` was set while rendering.
        """
        return encode_prompt(
            template or self.template,
            messages,
            self.controls,
            lambda text: self.tokenize(text, parse_special=False),
            self._bos if self._add_bos and self._bos >= 0 else None,
            cancel=cancel,
        )

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one token stands for (special tokens render as nothing); cached."""
        cached = self._pieces.get(token_id)
        if cached is None:
            buf = self._piece_buf
            n = llama_cpp.llama_token_to_piece(self.pointer, token_id, buf, len(buf), 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = llama_cpp.llama_token_to_piece(self.pointer, token_id, buf, len(buf), 0, False)
            cached = buf.raw[:n]
            self._pieces[token_id] = cached
        return cached

    def token_text(self, token_id: int) -> str:
        """Readable text of one token (bytes that are not whole UTF-8 shown as escapes)."""
        return self.token_bytes(token_id).decode("utf-8", errors="backslashreplace")

    def is_end_of_turn(self, token_id: int) -> bool:
        """True for end-of-generation tokens (EOS, end of turn)."""
        return bool(llama_cpp.llama_vocab_is_eog(self.pointer, token_id))

    def special_text(self, token_id: int) -> str:
        """The text of a special token such as BOS ('' for none)."""
        if token_id < 0:
            return ""
        raw = llama_cpp.llama_vocab_get_text(self.pointer, token_id)
        return raw.decode("utf-8", errors="replace") if raw else ""
