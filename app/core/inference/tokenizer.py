"""Count tokens with a model's own vocabulary, without its weights or a context.

`VocabTokenizer` loads only the vocabulary of a GGUF (llama.cpp's `vocab_only`): fast,
small, and independent of the `Engine`, so a draft can be counted on another thread while
the engine generates. Its counts are the engine's: the same tokenizer calls, the same
chat template, the same BOS rule.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp

from app.core.errors import EngineStateError, ModelLoadError
from app.core.gguf_file import GGUFInfo, read_gguf_info
from app.core.inference.messages import Message
from app.core.inference.prompt import ChatTemplate, fit_messages, reply_budget
from app.core.inference.prompt_parts import PromptParts, describe_prompt
from app.core.inference.vocab import Vocabulary, ensure_backend
from app.core.logs import route_llama_log

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromptCount:
    """How a conversation fits the context window.

    `prompt_tokens` counts every message as the chat template renders it (before any is
    dropped). `dropped` are the indices the drop-oldest overflow policy would leave out:
    empty when it fits, None when even the system prompt and the last message alone do not
    fit.
    """

    prompt_tokens: int
    reply_budget: int
    limit: int
    dropped: tuple[int, ...] | None

    @property
    def used(self) -> int:
        """Prompt plus the room kept for the reply."""
        return self.prompt_tokens + self.reply_budget

    @property
    def fits(self) -> bool:
        """True when nothing has to be dropped."""
        return self.used <= self.limit


class VocabTokenizer:
    """A GGUF's vocabulary and chat template, loaded without the model's weights.

    Not thread-safe: use it from one thread. `close()` frees it; later calls raise.

    Raises (from the constructor):
        ModelFileError: The file is missing, not a GGUF, corrupt or truncated.
        ModelLoadError: llama.cpp could not read its vocabulary.
        ChatTemplateError: The model's chat template does not compile.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.info: GGUFInfo = read_gguf_info(self.path)
        ensure_backend()
        router = route_llama_log()
        mark = router.mark()
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        params.n_gpu_layers = 0
        model = llama_cpp.llama_model_load_from_file(str(self.path).encode(), params)
        if not model:
            said = router.first_error_since(mark) or "no reason given"
            raise ModelLoadError(
                f"llama.cpp could not read the vocabulary of {self.path.name}: {said}. "
                "The file may be damaged or made for a newer llama.cpp.",
                path=self.path,
            )
        self._model: Any = model
        self._vocab: Vocabulary | None = None
        try:
            self._vocab = Vocabulary(
                llama_cpp.llama_model_get_vocab(model),
                self.info.chat_template,
                model=self.path.name,
            )
        except Exception:
            self.close()
            raise
        self.template = self._vocab.template
        log.info("vocabulary of %s loaded for counting", self.path.name)

    @property
    def is_closed(self) -> bool:
        """True once `close()` ran."""
        return self._model is None

    def close(self) -> None:
        """Free the vocabulary. Safe to call twice."""
        if self._model is not None:
            llama_cpp.llama_model_free(self._model)
            self._model = None
            self._vocab = None

    def _require(self) -> Vocabulary:
        if self._vocab is None:
            raise EngineStateError("The tokenizer was closed; load the model's vocabulary again.")
        return self._vocab

    def tokenize(
        self, text: str, *, add_special: bool = False, parse_special: bool = True
    ) -> list[int]:
        """Token ids of `text` (the engine's call and defaults)."""
        return self._require().tokenize(text, add_special=add_special, parse_special=parse_special)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one token stands for (special tokens render as nothing)."""
        return self._require().token_bytes(token_id)

    def tokenize_prompt(self, text: str) -> list[int]:
        """Tokens of rendered prompt text, with BOS as the engine adds it."""
        return self._require().tokenize_prompt(text)

    def token_text(self, token_id: int) -> str:
        """Readable text of one token (the engine's rendering)."""
        return self._require().token_text(token_id)

    def count(self, text: str) -> int:
        """How many tokens `text` is."""
        return len(self.tokenize(text))

    def count_prompt(
        self,
        messages: Sequence[Message],
        max_tokens: int | None,
        n_ctx: int,
        template: ChatTemplate | None = None,
        *,
        cancel: threading.Event | None = None,
    ) -> PromptCount:
        """Count the prompt for `messages` and what the drop-oldest policy would leave out.

        Uses `fit_messages`, the rule the engine's plan applies, so the counts agree.

        Raises:
            ChatTemplateError: The template rejects these messages.
            PromptCancelled: `cancel` was set while the template rendered.
        """
        chat = template or self.template
        budget = reply_budget(max_tokens, n_ctx) if n_ctx > 0 else 0
        if not messages:
            return PromptCount(0, budget, n_ctx, ())
        vocab = self._require()
        fit = fit_messages(
            messages, lambda chosen: vocab.encode_prompt(chosen, chat, cancel=cancel), budget, n_ctx
        )
        return PromptCount(len(fit.all_tokens), budget, n_ctx, fit.dropped)

    def describe_prompt(
        self,
        messages: Sequence[Message],
        max_tokens: int | None,
        n_ctx: int,
        *,
        cancel: threading.Event | None = None,
    ) -> PromptParts:
        """The prompt for `messages` split into parts with token counts (the engine's
        tokens, after the drop-oldest rule).

        Raises:
            ChatTemplateError: The template rejects these messages.
            PromptCancelled: `cancel` was set while the template rendered.
        """
        return describe_prompt(
            self._require(),
            messages,
            n_ctx=n_ctx,
            max_tokens=max_tokens,
            template=self.template,
            cancel=cancel,
        )
