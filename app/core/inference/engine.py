"""The llama.cpp engine: load a GGUF, stream chat replies as events, cancel, reuse the KV cache.

One `Engine` owns one model and one context. It is not thread-safe: drive it from one
thread (the inference worker). Two things may come from other threads while a reply runs:
`cancel.set()` on the reply's event, and `SettingsHolder.set()`; the engine reads both
between prefill chunks (cancel also inside a chunk, through llama.cpp's abort callback)
and before every token.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt

from app.core.errors import (
    ContextOverflowError,
    EngineStateError,
    InvalidSettingError,
    LoadCancelled,
    ModelLoadError,
    PromptCancelled,
)
from app.core.gguf_file import read_gguf_info
from app.core.inference.backend import LOCAL_LLAMA_CPP, Capabilities
from app.core.inference.events import (
    GenerationDone,
    GenerationEvent,
    GenerationStats,
    PrefillProgress,
    PrefillStarted,
    StopReason,
    TokenEvent,
)
from app.core.inference.kv_snapshot import (
    KVSnapshot,
    llama_build_tag,
    model_key,
    read_sequence_state,
    write_sequence_state,
)
from app.core.inference.llama_params import context_params, model_params
from app.core.inference.load_options import LoadedModel, LoadOptions, effective_flash_attn
from app.core.inference.logits_row import LogitsRow
from app.core.inference.messages import Message
from app.core.inference.next_logits import NextLogits, texts_for
from app.core.inference.prompt import (
    ChatTemplate,
    OverflowPolicy,
    PromptPlan,
    plan_prompt,
    reply_budget,
)
from app.core.inference.reply_text import ReplyText
from app.core.inference.sampler_chain import SamplerChain
from app.core.inference.sampling import MAX_SEED, SamplingSettings, SettingsHolder
from app.core.inference.token_facts import TokenDataMode, TokenFactsHelper
from app.core.inference.token_probs import MAX_TOP_N, TOP_N, ProbabilityReader
from app.core.inference.vocab import Vocabulary, ensure_backend
from app.core.logs import route_llama_log
from app.core.machine.hardware import available_memory, default_threads, spare_core
from app.core.machine.memory import check_fits

log = logging.getLogger(__name__)

ProgressCallback = Callable[[float], None]

_DECODE_OK, _DECODE_NO_SLOT, _DECODE_ABORTED = 0, 1, 2


class Engine:
    """One loaded model and its context; generates chat replies as event streams."""

    def __init__(self) -> None:
        self._model: Any = None
        self._ctx: Any = None
        self._vocab: Vocabulary | None = None
        self._loaded: LoadedModel | None = None
        self._template = ChatTemplate(None)
        self._model_key = ""
        self._kv_tokens: list[int] = []
        # Logits after the last fully read prompt: a rerun of it (regenerate) samples from them,
        # not from its last token re-read alone (other numerics), so it is bit-identical.
        self._prompt_logits: tuple[tuple[int, ...], npt.NDArray[np.float32]] | None = None
        self._probs: ProbabilityReader | None = None
        self._row = LogitsRow(0)
        self._n_vocab = 0
        self._abort_event: threading.Event | None = None
        self._abort_cb = llama_cpp.ggml_abort_callback(self._should_abort)
        self._no_abort_cb = llama_cpp.ggml_abort_callback()
        self._busy = False
        self._one = (llama_cpp.llama_token * 1)()
        self._one_batch = llama_cpp.llama_batch_get_one(self._one, 1)
        self.token_data_mode: TokenDataMode = "auto"
        """Where token probabilities are computed: "auto" (overlapped with the next decode
        when a core is free or the model is on a GPU), "inline" or "overlap"."""

    # ----- loading -----

    @property
    def capabilities(self) -> Capabilities:
        """Everything: token data, full distributions, KV snapshots, exact counts."""
        return LOCAL_LLAMA_CPP

    @property
    def loaded(self) -> LoadedModel | None:
        """The loaded model, or None."""
        return self._loaded

    @property
    def n_ctx(self) -> int:
        """Context window of the loaded model, in tokens."""
        return self._require().n_ctx

    @property
    def template(self) -> ChatTemplate:
        """The chat template in use (set it to `template.fallback()` to use plain text)."""
        self._require()
        return self._template

    @template.setter
    def template(self, template: ChatTemplate) -> None:
        self._require()
        self._template = template

    def load(
        self,
        path: Path | str,
        options: LoadOptions | None = None,
        *,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        check_memory: bool = True,
    ) -> LoadedModel:
        """Validate and load a GGUF, replacing any loaded model.

        Raises:
            ModelFileError: The file is missing, not a GGUF, corrupt or truncated.
            InsufficientMemoryError: It will not fit in this machine's free memory.
            LoadCancelled: `cancel` was set while loading.
            ModelLoadError: llama.cpp refused it; the message quotes llama.cpp.
        """
        options = options or LoadOptions()
        path = Path(path)
        info = read_gguf_info(path)
        n_ctx = options.n_ctx or info.context_length or 4096
        if info.context_length:
            n_ctx = min(n_ctx, info.context_length)
        if check_memory:
            check_fits(info, n_ctx, available_memory(), options.type_k, options.type_v)
        self.close()
        ensure_backend()
        router = route_llama_log()
        log_mark = router.mark()

        offload = bool(llama_cpp.llama_supports_gpu_offload())
        n_gpu_layers = options.n_gpu_layers
        if n_gpu_layers is None:
            n_gpu_layers = -1 if offload else 0
        threads = options.n_threads or default_threads()

        mparams, _keep = model_params(options, n_gpu_layers)  # _keep outlives the load

        def on_progress(fraction: float, _data: Any) -> bool:
            if progress is not None:
                try:
                    progress(float(fraction))
                except Exception:  # a UI callback must never break loading
                    log.exception("load progress callback failed")
            return not (cancel is not None and cancel.is_set())

        progress_cb = llama_cpp.llama_progress_callback(on_progress)
        mparams.progress_callback = progress_cb
        log.info(
            "loading %s (ctx %d, gpu layers %d, threads %d)", path, n_ctx, n_gpu_layers, threads
        )
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), mparams)
        if not model:
            if cancel is not None and cancel.is_set():
                raise LoadCancelled(f"Loading {path.name} was cancelled.", path=path)
            said = router.first_error_since(log_mark) or "no reason given"
            raise ModelLoadError(
                f"llama.cpp could not load {path.name}: {said}. The file may be damaged or "
                "made for a newer llama.cpp; re-download it or update Hearth.",
                path=path,
            )

        flash_attn = effective_flash_attn(options, n_gpu_layers if offload else 0)
        cparams = context_params(options, n_ctx, threads, flash_attn)
        ctx = llama_cpp.llama_init_from_model(model, cparams)
        if not ctx:
            llama_cpp.llama_model_free(model)
            said = router.first_error_since(log_mark) or "no reason given"
            raise ModelLoadError(
                f"llama.cpp could not create a {n_ctx:,}-token context for {path.name}: {said}. "
                "Try a smaller context length or KV cache type.",
                path=path,
            )

        self._model, self._ctx = model, ctx
        self._vocab = Vocabulary(
            llama_cpp.llama_model_get_vocab(model), info.chat_template, model=path.name
        )
        self._n_vocab = self._vocab.n_tokens
        self._probs = ProbabilityReader(self._n_vocab)
        self._row = LogitsRow(self._n_vocab)
        self._template = self._vocab.template
        self._model_key = model_key(path)
        self._kv_tokens = []
        self._loaded = LoadedModel(
            info=info,
            n_ctx=int(llama_cpp.llama_n_ctx(ctx)),
            n_gpu_layers=n_gpu_layers if offload else 0,
            n_threads=threads,
            gpu_offload_supported=offload,
            template_is_fallback=self._template.is_fallback,
            build=llama_build_tag(),
            flash_attn=flash_attn,
            options=options,
        )
        log.info("loaded %s: %s", path.name, self._loaded)
        return self._loaded

    def close(self) -> None:
        """Free the context and the model. Safe to call twice; later calls need a new load."""
        if self._busy:
            raise EngineStateError("Cannot unload the model while a reply is being generated.")
        if self._ctx is not None:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        if self._model is not None:
            llama_cpp.llama_model_free(self._model)
            self._model = None
        self._vocab = None
        self._loaded = None
        self._kv_tokens = []

    def _require(self) -> LoadedModel:
        if self._loaded is None or self._ctx is None:
            raise EngineStateError("No model is loaded. Load a model first.")
        return self._loaded

    # ----- tokens -----

    def tokenize(
        self, text: str, *, add_special: bool = False, parse_special: bool = True
    ) -> list[int]:
        """Token ids of `text` in the loaded model's vocabulary."""
        return self._vocabulary().tokenize(
            text, add_special=add_special, parse_special=parse_special
        )

    def tokenize_prompt(self, text: str) -> list[int]:
        """Tokens of rendered prompt text (BOS only where the model wants it)."""
        return self._vocabulary().tokenize_prompt(text)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one token stands for (special tokens render as nothing)."""
        return self._vocabulary().token_bytes(token_id)

    def token_text(self, token_id: int) -> str:
        """Readable text of one token (bytes that are not whole UTF-8 shown as escapes)."""
        return self._vocabulary().token_text(token_id)

    @property
    def vocabulary(self) -> Vocabulary:
        """The loaded model's vocabulary (tokens, token bytes, end of turn, template)."""
        return self._vocabulary()

    @property
    def model_handle(self) -> Any:
        """The `llama_model` pointer, for another context on the same weights (the API
        server's batch, `app.core.inference.batch`); valid until `close()`."""
        self._require()
        return self._model

    def _vocabulary(self) -> Vocabulary:
        self._require()
        assert self._vocab is not None
        return self._vocab

    def plan(
        self,
        messages: Sequence[Message],
        max_tokens: int | None = None,
        policy: OverflowPolicy = OverflowPolicy.STOP,
        *,
        cancel: threading.Event | None = None,
    ) -> PromptPlan:
        """Render, count and fit `messages` without generating (for counters and meters).
        Only the template's own markers become control tokens; `cancel` stops the render."""
        vocab = self._vocabulary()
        return plan_prompt(
            messages,
            lambda chosen: vocab.encode_prompt(chosen, self._template, cancel=cancel),
            self.n_ctx,
            max_tokens,
            policy,
        )

    # ----- generation -----

    def generate(
        self,
        messages: Sequence[Message],
        settings: SettingsHolder | SamplingSettings | None = None,
        *,
        cancel: threading.Event | None = None,
        policy: OverflowPolicy = OverflowPolicy.STOP,
        top_n: int = TOP_N,
        continue_with: Sequence[int] = (),
        grammar: str | None = None,
    ) -> Iterator[GenerationEvent]:
        """Stream the assistant's reply to `messages` as events, ending with `GenerationDone`.

        Each `TokenEvent` carries the `top_n` (0 to 20) most likely alternatives.
        `continue_with` are token ids the reply starts with, already decided (a branch at
        a chosen token): they are read like the prompt (from the KV cache where it holds
        them) and the events and the reply text cover only what follows. `grammar` (GBNF,
        root rule `root`) constrains the reply.

        Raises (before any event): ContextOverflowError, ChatTemplateError, EngineStateError,
        InvalidSettingError (top_n out of range).
        """
        self._require()
        if not 0 <= top_n <= MAX_TOP_N:
            raise InvalidSettingError(
                f"alternatives per token must be 0 to {MAX_TOP_N} (got {top_n})"
            )
        assert self._probs is not None
        self._probs.top_n = top_n
        holder = settings if isinstance(settings, SettingsHolder) else SettingsHolder(settings)
        cancel = cancel or threading.Event()
        first = holder.get()
        try:
            plan = self.plan(messages, first.max_tokens, policy, cancel=cancel)
        except PromptCancelled:
            return iter((GenerationDone.cancelled_before_prompt(),))
        if continue_with:
            plan = replace(plan, tokens=plan.tokens + tuple(int(t) for t in continue_with))
        return self._run(plan, holder, cancel, grammar)

    def complete(
        self,
        prompt: str,
        settings: SamplingSettings | None = None,
        *,
        cancel: threading.Event | None = None,
        grammar: str | None = None,
        top_n: int = TOP_N,
    ) -> Iterator[GenerationEvent]:
        """Stream the continuation of raw prompt text (no chat template), like `generate`.

        Raises (before any event): ContextOverflowError, EngineStateError.
        """
        self._require()
        assert self._probs is not None
        self._probs.top_n = max(0, min(top_n, MAX_TOP_N))
        holder = SettingsHolder(settings)
        tokens = self.tokenize_prompt(prompt)
        budget = reply_budget(holder.get().max_tokens, self.n_ctx)
        if not tokens or len(tokens) + budget > self.n_ctx:
            raise ContextOverflowError(
                f"The prompt needs {len(tokens):,} tokens plus {budget:,} for the reply, but "
                f"the context holds {self.n_ctx:,}. Shorten it or lower max tokens.",
                needed=len(tokens) + budget,
                limit=self.n_ctx,
            )
        plan = PromptPlan(tuple(tokens), (), (), budget)
        return self._run(plan, holder, cancel or threading.Event(), grammar)

    def _run(
        self,
        plan: PromptPlan,
        holder: SettingsHolder,
        cancel: threading.Event,
        grammar: str | None = None,
    ) -> Iterator[GenerationEvent]:
        t_start = time.perf_counter()
        self._busy = True
        chain: SamplerChain | None = None
        try:
            prompt = list(plan.tokens)
            first = holder.get()
            seed = first.seed if first.seed is not None else secrets.randbelow(MAX_SEED + 1)
            cached = self._reuse_prefix(prompt)
            yield PrefillStarted(len(prompt), cached, plan.dropped)

            t_prefill = time.perf_counter()
            completed = yield from self._prefill(prompt, cached, cancel)
            prefill_s = time.perf_counter() - t_prefill
            n_new = len(prompt) - cached

            reply = ReplyText(first.stop + self._template.extra_stops)
            generated: list[int] = []
            reason = StopReason.CANCELLED
            t_first: float | None = None
            n_ctx = self.n_ctx
            probs, vocab = self._probs, self._vocab
            assert probs is not None and vocab is not None
            logits_row: npt.NDArray[np.float32] | None = None
            from_saved = completed and n_new == 0 and self._prompt_logits is not None
            if from_saved:
                assert self._prompt_logits is not None
                logits_row = self._prompt_logits[1]
            elif completed:
                logits_row = self._last_logits()
                self._prompt_logits = (tuple(prompt), logits_row.copy())
            with TokenFactsHelper(vocab, probs, overlap=self._overlap_token_data()) as data:
                # Per token: sample, assemble text, hand the token's probability and
                # alternatives to `data` (a helper thread when that pays), decode the
                # token, then yield its event. The event of token t thus follows the
                # decode of t, and nothing that does not decide t+1 sits between decodes.
                while completed:
                    if cancel.is_set():
                        reason = StopReason.CANCELLED
                        break
                    current = holder.get()
                    if chain is None or (
                        current is not chain.settings and current != chain.settings
                    ):
                        chain = self._rebuild_chain(chain, current, seed, grammar, generated)
                        reply.set_stops(current.stop + self._template.extra_stops)
                    assert logits_row is not None
                    ctx = None if from_saved else self._ctx
                    token, scanned = chain.pick(logits_row, ctx, depth=probs.top_n)
                    from_saved = False
                    if t_first is None:
                        t_first = time.perf_counter()
                    if vocab.is_end_of_turn(token):
                        reason = StopReason.END_OF_TURN
                        break
                    generated.append(token)
                    text = reply.add(vocab.token_bytes(token))
                    job = data.submit(logits_row, token, scanned)
                    if reply.stopped:
                        reason = StopReason.STOP_STRING
                    elif current.max_tokens is not None and len(generated) >= current.max_tokens:
                        reason = StopReason.MAX_TOKENS
                    elif len(self._kv_tokens) + 1 >= n_ctx:
                        reason = StopReason.CONTEXT_FULL
                    else:
                        rc = self._decode([token])
                        facts = data.take(job)
                        yield TokenEvent(
                            token, text, facts.prob, facts.alternatives, settings=current
                        )
                        if rc == _DECODE_NO_SLOT:
                            reason = StopReason.CONTEXT_FULL
                            break
                        if rc != _DECODE_OK:
                            raise ModelLoadError(
                                f"llama.cpp failed to decode a token (error {rc})."
                            )
                        self._kv_tokens.append(token)
                        logits_row = self._last_logits()
                        continue
                    facts = data.take(job)
                    yield TokenEvent(token, text, facts.prob, facts.alternatives, settings=current)
                    break

            t_end = time.perf_counter()
            tail = reply.finish()
            decode_s = (t_end - t_first) if t_first is not None else 0.0
            stats = GenerationStats(
                prompt_tokens=len(prompt),
                cached_tokens=cached,
                prefill_ms=prefill_s * 1000,
                prefill_tps=(n_new / prefill_s) if completed and prefill_s > 0 else 0.0,
                ttft_ms=((t_first - t_start) * 1000) if t_first is not None else 0.0,
                completion_tokens=len(generated),
                decode_ms=decode_s * 1000,
                decode_tps=((len(generated) - 1) / decode_s)
                if len(generated) > 1 and decode_s > 0
                else 0.0,
                stop_reason=reason,
                seed=seed,
                dropped_messages=plan.dropped,
            )
            yield GenerationDone(text=reply.text, tail=tail, tokens=tuple(generated), stats=stats)
        finally:
            if chain is not None:
                chain.close()
            self._busy = False

    def _overlap_token_data(self) -> bool:
        if self.token_data_mode != "auto":
            return self.token_data_mode == "overlap"
        loaded = self._require()
        return spare_core(loaded.n_threads, loaded.n_gpu_layers)

    def _rebuild_chain(
        self,
        old: SamplerChain | None,
        settings: SamplingSettings,
        seed: int,
        grammar: str | None = None,
        generated: Sequence[int] = (),
    ) -> SamplerChain:
        if old is not None:
            old.close()
        vocab = self._vocab.pointer if self._vocab is not None else None
        chain = SamplerChain(
            settings, seed, self._n_vocab, self.n_ctx, grammar=grammar, vocab=vocab
        )
        chain.remember(self._kv_tokens)
        if grammar is not None:
            chain.replay_grammar(generated)
        return chain

    def _reuse_prefix(self, prompt: list[int]) -> int:
        """Keep the longest common prefix of the KV cache and `prompt`; return its length.

        A prompt read in full before (and still cached) is kept whole: its saved logits
        give the first token. Otherwise at least one prompt token is re-read, so there are
        fresh logits to sample.
        """
        cached = self._kv_tokens
        saved = self._prompt_logits
        if (
            saved is not None
            and saved[0] == tuple(prompt)
            and cached[: len(prompt)] == prompt
            and self._truncate_kv(len(prompt))
        ):
            return len(prompt)
        limit = min(len(cached), len(prompt) - 1)
        n = 0
        while n < limit and cached[n] == prompt[n]:
            n += 1
        if not self._truncate_kv(n):
            log.info("KV cache cannot be trimmed at %d; clearing it", n)
            self._truncate_kv(0)
            n = 0
        return n

    def _truncate_kv(self, n: int) -> bool:
        """Drop every cached position from `n` on."""
        mem = llama_cpp.llama_get_memory(self._ctx)
        if n == 0:
            llama_cpp.llama_memory_clear(mem, True)
            ok = True
        else:
            ok = bool(llama_cpp.llama_memory_seq_rm(mem, 0, n, -1))
        if ok:
            del self._kv_tokens[n:]
            if self._prompt_logits is not None and n < len(self._prompt_logits[0]):
                self._prompt_logits = None
        return ok

    def _prefill(
        self, prompt: list[int], start: int, cancel: threading.Event
    ) -> Generator[GenerationEvent, None, bool]:
        """Read prompt[start:] into the KV cache in batches; return False if cancelled."""
        n_batch = int(llama_cpp.llama_n_batch(self._ctx))
        total = len(prompt) - start
        self._abort_event = cancel
        llama_cpp.llama_set_abort_callback(self._ctx, self._abort_cb, None)
        try:
            for i in range(start, len(prompt), n_batch):
                if cancel.is_set():
                    return False
                chunk = prompt[i : i + n_batch]
                rc = self._decode(chunk)
                if rc == _DECODE_ABORTED or cancel.is_set():
                    self._truncate_kv(len(self._kv_tokens))
                    if rc == _DECODE_OK:
                        self._kv_tokens.extend(chunk)
                    return False
                if rc != _DECODE_OK:
                    self._truncate_kv(len(self._kv_tokens))
                    raise ModelLoadError(
                        f"llama.cpp could not read the prompt (error {rc}); try a smaller "
                        "context or batch size."
                    )
                self._kv_tokens.extend(chunk)
                yield PrefillProgress(i + len(chunk) - start, total)
            return True
        finally:
            llama_cpp.llama_set_abort_callback(self._ctx, self._no_abort_cb, None)
            self._abort_event = None

    def _last_logits(self) -> npt.NDArray[np.float32]:
        """A view of the logits llama.cpp computed for the last token it read."""
        return self._row.at(self._ctx)

    def _should_abort(self, _data: Any) -> bool:
        event = self._abort_event
        return event is not None and event.is_set()

    def _decode(self, tokens: list[int]) -> int:
        if len(tokens) == 1:  # the decode loop's: one batch made once (see `candidates`)
            self._one[0] = tokens[0]
            return int(llama_cpp.llama_decode(self._ctx, self._one_batch))
        arr = (llama_cpp.llama_token * len(tokens))(*tokens)
        return int(llama_cpp.llama_decode(self._ctx, llama_cpp.llama_batch_get_one(arr, len(arr))))

    # ----- the next token's distribution (the sampling explorer) -----

    def next_logits(
        self,
        messages: Sequence[Message],
        *,
        continue_with: Sequence[int] = (),
        cancel: threading.Event | None = None,
        policy: OverflowPolicy = OverflowPolicy.STOP,
        max_tokens: int | None = None,
    ) -> NextLogits:
        """A copy of the logits for the token after `messages`' prompt (+ `continue_with`).

        The KV cache's common prefix is reused, so a cached prefix costs one decode (none
        when this very prompt was read last: its saved logits are returned, and the next
        reply to it starts from them too).

        Raises:
            PromptCancelled: `cancel` was set.
            ContextOverflowError, ChatTemplateError, EngineStateError, ModelLoadError.
        """
        self._require()
        if self._busy:
            raise EngineStateError("The engine is generating; explore after the reply.")
        t0 = time.perf_counter()
        cancel = cancel or threading.Event()
        plan = self.plan(messages, max_tokens, policy, cancel=cancel)
        prompt = list(plan.tokens) + [int(t) for t in continue_with]
        self._busy = True
        try:
            cached = self._reuse_prefix(prompt)
            saved = self._prompt_logits
            if cached == len(prompt) and saved is not None and saved[0] == tuple(prompt):
                row = saved[1].copy()
            else:
                for _event in self._prefill(prompt, cached, cancel):
                    pass
                if len(self._kv_tokens) < len(prompt) or cancel.is_set():
                    raise PromptCancelled("Stopped while the prompt was being read.")
                row = self._last_logits().copy()
                self._prompt_logits = (tuple(prompt), row.copy())
        finally:
            self._busy = False
        vocab = self._vocabulary()
        return NextLogits(
            logits=row,
            tokens=tuple(prompt),
            prompt_tokens=len(plan.tokens),
            cached=cached,
            dropped=plan.dropped,
            n_ctx=self.n_ctx,
            texts=texts_for(row, prompt, vocab.token_text),
            elapsed_ms=(time.perf_counter() - t0) * 1000,
        )

    # ----- KV snapshots -----

    @property
    def cached_tokens(self) -> tuple[int, ...]:
        """The tokens whose keys and values are in the cache now."""
        return tuple(self._kv_tokens)

    def clear_cache(self) -> None:
        """Empty the KV cache (the next reply reads its whole prompt)."""
        self._require()
        self._truncate_kv(0)

    def save_snapshot(self) -> KVSnapshot:
        """Serialize the current KV cache (sequence 0) and the tokens it holds."""
        loaded = self._require()
        return KVSnapshot(
            tokens=tuple(self._kv_tokens),
            state=read_sequence_state(self._ctx),
            build=loaded.build,
            model=self._model_key,
            n_ctx=loaded.n_ctx,
        )

    def restore_snapshot(self, snapshot: KVSnapshot) -> bool:
        """Load a snapshot into the cache. Returns False (cache cleared) if it does not fit
        this build, model and context, or llama.cpp rejects it."""
        loaded = self._require()
        if self._busy:
            raise EngineStateError("Cannot restore a KV snapshot while a reply is being generated.")
        self._truncate_kv(0)
        if not snapshot.matches(loaded.build, self._model_key, loaded.n_ctx):
            log.info("discarding a KV snapshot from another build, model or context size")
            return False
        if not write_sequence_state(self._ctx, snapshot.state):
            log.warning("llama.cpp rejected a KV snapshot; starting from an empty cache")
            self._truncate_kv(0)
            return False
        self._kv_tokens = list(snapshot.tokens)
        return True
