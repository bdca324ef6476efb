"""Several replies at once in one llama.cpp context: one `llama_decode` per step for all.

As llama.cpp's tools/server does: the context holds `n_slots` sequences (`n_seq_max`), each
reply owns one (its sequence id), and every step puts the next token of each replying
sequence plus a chunk of any new prompt into one batch, decodes it once, and samples each
sequence from its own row of logits. On a CPU the weights are read once per step instead
of once per reply, so several clients share the memory bandwidth instead of queueing.

It reuses the engine's pieces (the model's weights through `Engine.model_handle`, its
`Vocabulary`, `SamplerChain`, `ReplyText`, `ProbabilityReader`) and creates only its own
context, so the engine's own context and KV cache (the app's conversation) stay intact.
Like the engine, it is driven from one thread; `cancel` events may be set from others.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import llama_cpp

from app.core.errors import ModelLoadError
from app.core.inference.events import (
    GenerationDone,
    GenerationEvent,
    GenerationStats,
    PrefillStarted,
    StopReason,
    TokenAlternative,
    TokenEvent,
)
from app.core.inference.llama_params import context_params
from app.core.inference.load_options import LoadedModel
from app.core.inference.logits_row import LogitsRow
from app.core.inference.reply_text import ReplyText
from app.core.inference.sampler_chain import SamplerChain
from app.core.inference.sampling import MAX_SEED, SamplingSettings
from app.core.inference.token_probs import ProbabilityReader
from app.core.inference.vocab import Vocabulary

log = logging.getLogger(__name__)

DEFAULT_BATCH = 256
"""Tokens per step: bounds a step's time (and so cancel latency) while prompts are read."""


@dataclass
class BatchJob:
    """One reply to generate: its prompt tokens, settings, cancel flag and event sink."""

    tokens: tuple[int, ...]
    settings: SamplingSettings
    emit: Callable[[GenerationEvent], None]
    cancel: threading.Event = field(default_factory=threading.Event)
    grammar: str | None = None
    dropped: tuple[int, ...] = ()
    stops: tuple[str, ...] = ()


@dataclass
class _Slot:
    seq: int
    cached: list[int] = field(default_factory=list)  # this sequence's tokens in the KV cache
    job: BatchJob | None = None
    fed: int = 0
    reused: int = 0
    chain: SamplerChain | None = None
    reply: ReplyText | None = None
    generated: list[int] = field(default_factory=list)
    pending: int | None = None
    out: int = -1
    seed: int = 0
    t_start: float = 0.0
    t_prefilled: float = 0.0
    t_first: float | None = None


class BatchDecoder:
    """`n_slots` replies in one context of `n_slots * n_ctx` cells (each reply `n_ctx`).

    Args:
        model: A loaded `llama_model` pointer (`Engine.model_handle`); must outlive this.
        vocab: Its vocabulary.
        n_slots: Replies generated at once.
        n_ctx: Context of each reply, in tokens.
        n_threads: CPU threads for decoding.
        n_batch: Most tokens read per step.
        top_n: Alternatives per `TokenEvent`.
        like: The engine's `LoadedModel`: its flash attention and KV cache types are used
            too, so replies match the engine's numerically (same seed, same tokens).

    Raises:
        ModelLoadError: llama.cpp could not create the context.
    """

    def __init__(
        self,
        model: Any,
        vocab: Vocabulary,
        n_slots: int,
        n_ctx: int,
        n_threads: int,
        n_batch: int = DEFAULT_BATCH,
        top_n: int = 20,
        like: LoadedModel | None = None,
    ) -> None:
        options = like.options if like is not None else None
        flash_attn: Literal["on", "off"] = (
            "on" if like is not None and like.flash_attn == "on" else "off"
        )
        params = context_params(
            options, n_ctx * n_slots, n_threads, flash_attn, n_seq_max=n_slots, n_batch=n_batch
        )
        params.n_ubatch = n_batch
        params.n_threads_batch = n_threads
        params.kv_unified = False
        self._ctx: Any = llama_cpp.llama_init_from_model(model, params)
        if not self._ctx:
            raise ModelLoadError(
                f"llama.cpp could not create a context for {n_slots} parallel replies of "
                f"{n_ctx:,} tokens; use fewer (--parallel) or a smaller context."
            )
        self._n_ctx = n_ctx
        self._n_batch = n_batch
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self._vocab = vocab
        self._probs = ProbabilityReader(vocab.n_tokens, top_n)
        self._rows = LogitsRow(vocab.n_tokens)
        self._mem = llama_cpp.llama_get_memory(self._ctx)
        self._slots = [_Slot(seq) for seq in range(n_slots)]

    @property
    def n_ctx(self) -> int:
        """Context of each reply, in tokens."""
        return self._n_ctx

    @property
    def free_slots(self) -> int:
        """Replies that can start now."""
        return sum(1 for s in self._slots if s.job is None)

    @property
    def active(self) -> bool:
        """Some reply is being read or generated."""
        return any(s.job is not None for s in self._slots)

    def admit(self, job: BatchJob) -> None:
        """Start a reply in the free slot whose cache shares the longest prefix with it.

        Raises:
            InvalidSettingError: llama.cpp refused the job's grammar.
        """
        prompt = list(job.tokens)
        free = [s for s in self._slots if s.job is None]
        if not free:
            raise RuntimeError("no free slot")
        settings = job.settings
        seed = settings.seed if settings.seed is not None else secrets.randbelow(MAX_SEED + 1)
        chain = SamplerChain(  # first: it raises InvalidSettingError for a bad grammar
            settings,
            seed,
            self._vocab.n_tokens,
            self._n_ctx,
            grammar=job.grammar,
            vocab=self._vocab.pointer,
        )
        chain.remember(prompt)
        best = max(free, key=lambda s: _common_prefix(s.cached, prompt))
        keep = _common_prefix(best.cached, prompt)
        if not llama_cpp.llama_memory_seq_rm(self._mem, best.seq, keep, -1):
            llama_cpp.llama_memory_seq_rm(self._mem, best.seq, -1, -1)
            keep = 0
        del best.cached[keep:]
        best.job, best.fed, best.reused, best.seed, best.chain = job, keep, keep, seed, chain
        best.reply = ReplyText(settings.stop + job.stops)
        best.generated, best.pending, best.out = [], None, -1
        best.t_start, best.t_prefilled, best.t_first = time.perf_counter(), 0.0, None
        job.emit(PrefillStarted(len(prompt), keep, job.dropped))

    def step(self) -> None:
        """One decode for every active reply: sample, emit, finish those that ended."""
        for slot in self._slots:
            if slot.job is not None and slot.job.cancel.is_set():
                self._finish(slot, StopReason.CANCELLED)
        chunks = self._fill_batch()
        if not chunks:
            return
        rc = int(llama_cpp.llama_decode(self._ctx, self._batch))
        if rc == 1:
            for slot, _ in chunks:
                self._finish(slot, StopReason.CONTEXT_FULL)
            return
        if rc != 0:
            raise ModelLoadError(f"llama.cpp failed to decode a batch (error {rc}).")
        now = time.perf_counter()
        for slot, tokens in chunks:
            slot.cached.extend(tokens)
            if slot.pending is not None:
                slot.pending = None
            else:
                slot.fed += len(tokens)
                if slot.out >= 0:
                    slot.t_prefilled = now
            if slot.out >= 0:
                self._sample(slot)

    def close(self) -> None:
        """Cancel what runs and free the context (idempotent)."""
        for slot in self._slots:
            if slot.job is not None:
                self._finish(slot, StopReason.CANCELLED)
        if self._ctx is not None:
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self._ctx)
            self._ctx = None

    # ----- one step -----

    def _fill_batch(self) -> list[tuple[_Slot, list[int]]]:
        """Next tokens of replying slots first, then prompt chunks; returns what went in."""
        batch = self._batch
        chunks: list[tuple[_Slot, list[int]]] = []
        n = 0

        def add(slot: _Slot, tokens: list[int], logits_last: bool) -> None:
            nonlocal n
            start = len(slot.cached)
            for i, token in enumerate(tokens):
                batch.token[n] = token
                batch.pos[n] = start + i
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = slot.seq
                batch.logits[n] = logits_last and i == len(tokens) - 1
                n += 1
            slot.out = n - 1 if logits_last else -1
            chunks.append((slot, tokens))

        for slot in self._slots:
            if slot.job is not None and slot.pending is not None:
                add(slot, [slot.pending], True)
        for slot in self._slots:
            job = slot.job
            if job is None or slot.pending is not None or slot.fed >= len(job.tokens):
                continue
            take = min(len(job.tokens) - slot.fed, self._n_batch - n)
            if take <= 0:
                break
            tokens = list(job.tokens[slot.fed : slot.fed + take])
            add(slot, tokens, slot.fed + take == len(job.tokens))
        batch.n_tokens = n
        return chunks

    def _sample(self, slot: _Slot) -> None:
        job, chain, reply = slot.job, slot.chain, slot.reply
        assert job is not None and chain is not None and reply is not None
        row = self._rows.at(self._ctx, slot.out)
        token, scanned = chain.pick(row, self._ctx, slot.out, self._probs.top_n)
        top = self._probs.read(row, scanned)
        if slot.t_first is None:
            slot.t_first = time.perf_counter()
        if self._vocab.is_end_of_turn(token):
            self._finish(slot, StopReason.END_OF_TURN)
            return
        slot.generated.append(token)
        text = reply.add(self._vocab.token_bytes(token))
        job.emit(
            TokenEvent(
                token_id=token,
                text=text,
                prob=self._probs.prob_of(token),
                alternatives=tuple(
                    TokenAlternative(int(i), self._vocab.token_text(int(i)), float(lg), float(p))
                    for i, lg, p in zip(top.ids, top.logits, top.probs, strict=True)
                ),
                settings=job.settings,
            )
        )
        limit = job.settings.max_tokens
        if reply.stopped:
            self._finish(slot, StopReason.STOP_STRING)
        elif limit is not None and len(slot.generated) >= limit:
            self._finish(slot, StopReason.MAX_TOKENS)
        elif len(slot.cached) + 1 >= self._n_ctx:
            self._finish(slot, StopReason.CONTEXT_FULL)
        else:
            slot.pending = token

    def _finish(self, slot: _Slot, reason: StopReason) -> None:
        job, reply = slot.job, slot.reply
        assert job is not None and reply is not None
        now = time.perf_counter()
        tail = reply.finish()
        n_new = slot.fed - slot.reused
        prefill_s = (slot.t_prefilled - slot.t_start) if slot.t_prefilled else 0.0
        decode_s = (now - slot.t_first) if slot.t_first is not None else 0.0
        n_gen = len(slot.generated)
        stats = GenerationStats(
            prompt_tokens=len(job.tokens),
            cached_tokens=slot.reused,
            prefill_ms=prefill_s * 1000,
            prefill_tps=n_new / prefill_s if prefill_s > 0 else 0.0,
            ttft_ms=((slot.t_first - slot.t_start) * 1000) if slot.t_first is not None else 0.0,
            completion_tokens=n_gen,
            decode_ms=decode_s * 1000,
            decode_tps=(n_gen - 1) / decode_s if n_gen > 1 and decode_s > 0 else 0.0,
            stop_reason=reason,
            seed=slot.seed,
            dropped_messages=job.dropped,
        )
        if slot.chain is not None:
            slot.chain.close()
        slot.job, slot.chain, slot.reply, slot.pending, slot.out = None, None, None, None, -1
        job.emit(GenerationDone(reply.text, tail, tuple(slot.generated), stats))


def _common_prefix(cached: list[int], prompt: list[int]) -> int:
    """Tokens of `prompt` already cached, leaving at least one to read (for fresh logits)."""
    limit = min(len(cached), len(prompt) - 1)
    n = 0
    while n < limit and cached[n] == prompt[n]:
        n += 1
    return n
