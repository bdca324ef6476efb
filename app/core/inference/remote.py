"""A model on a remote OpenAI-compatible server, driven through the `Backend` protocol.

`RemoteBackend` streams chat completions over SSE (vLLM, SGLang, llama-server, Ollama,
llama-cpp-python's server, another Hearth). What the server cannot do is declared in its
`Capabilities`: token probabilities only when its replies carry `logprobs`; exact token
counts only where it has `/tokenize`; never the full distribution, KV snapshots or live
sampler changes. Time to first token and tokens/s are measured here, token counts come
from the server's `usage`.

Token ids are local: the server names tokens by their text, so each distinct token text
gets an id for the life of the backend (`token_text` / `token_bytes` map it back).
"""

from __future__ import annotations

import json
import logging
import math
import random
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import suppress
from typing import Any

import httpx

from app.core.errors import (
    EngineStateError,
    InvalidSettingError,
    RemoteError,
    RemoteModelNotFoundError,
    RemoteRequestError,
    RemoteServerError,
    RemoteStreamCutError,
    RemoteTimeoutError,
)
from app.core.inference.backend import Capabilities
from app.core.inference.events import (
    GenerationDone,
    GenerationEvent,
    GenerationStats,
    PrefillStarted,
    StopReason,
    TokenAlternative,
    TokenEvent,
)
from app.core.inference.kv_snapshot import KVSnapshot
from app.core.inference.messages import Message
from app.core.inference.prompt import OverflowPolicy, PromptPlan, plan_prompt
from app.core.inference.remote_http import (
    Endpoint,
    explained,
    open_client,
    status_error,
    transport_error,
)
from app.core.inference.remote_server import (
    KINDS_WITH_LOGPROBS,
    ServerFacts,
    fetch_server_facts,
    request_fields,
    samplers_of,
)
from app.core.inference.sampling import MAX_SEED, SamplingSettings, SettingsHolder
from app.core.inference.token_estimate import MESSAGE_OVERHEAD, estimate_tokens

log = logging.getLogger(__name__)

UNKNOWN_CONTEXT = 131_072
"""The context assumed when a server does not state it (the server then decides)."""
MAX_TOP_LOGPROBS = 20
_TOKENIZE_PROBES = (("/tokenize", "content"), ("/extras/tokenize", "input"))


class _StreamCloser:
    """Closes a request's socket as soon as `cancel` is set, even inside a blocking read
    (waiting for headers or for the next chunk), so the server sees the client leave and
    stops generating. The socket comes from httpcore's trace of the connection (the
    streaming client keeps no idle connections, so every request opens its own)."""

    def __init__(self, cancel: threading.Event) -> None:
        self._cancel = cancel
        self._done = threading.Event()
        self._stream: Any = None
        self._thread = threading.Thread(target=self._run, name="hearth-remote-cancel", daemon=True)
        self._thread.start()

    def trace(self, event_name: str, info: dict[str, Any]) -> None:
        """httpcore's trace hook: keep the network stream once it is connected."""
        if event_name in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            self._stream = info.get("return_value")

    def _run(self) -> None:
        while not self._done.is_set():
            if self._cancel.wait(0.02):
                break
        while not self._done.is_set():
            if self._abort():
                return
            self._done.wait(0.02)

    def _abort(self) -> bool:
        stream = self._stream
        sock = stream.get_extra_info("socket") if stream is not None else None
        if not isinstance(sock, socket.socket):
            return False
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        return True

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def _sse_data(lines: Iterable[str]) -> Iterator[str]:
    """The `data:` payloads of a server-sent event stream, one per event."""
    parts: list[str] = []
    for line in lines:
        if not line:
            if parts:
                yield "\n".join(parts)
                parts = []
        elif line.startswith("data:"):
            parts.append(line[5:].removeprefix(" "))
    if parts:
        yield "\n".join(parts)


class RemoteBackend:
    """One model on an OpenAI-compatible server (see the module docstring).

    Not thread-safe: one thread drives it; `cancel.set()` may come from any thread.
    """

    def __init__(self, endpoint: Endpoint, model: str | None = None) -> None:
        """Connect: list the server's models, pick `model`, probe its tokenizer.

        `model` None picks the server's first model.

        Raises:
            RemoteError: (subclasses) unreachable, refused, or no such model.
        """
        self.endpoint = endpoint
        self._client = open_client(endpoint)
        self._streaming = open_client(endpoint, keep_alive=False)
        try:
            facts = fetch_server_facts(endpoint, self._client)
            self.model, self._n_ctx = self._pick(facts, model)
            self.kind = facts.kind
            self._tokenize_path = self._probe_tokenizer()
        except BaseException:
            self.close()
            raise
        self._logprobs: bool | None = None
        self._ids: dict[bytes, int] = {}
        self._texts: list[bytes] = []
        self._counts: dict[str, int] = {}

    def _pick(self, facts: ServerFacts, model: str | None) -> tuple[str, int]:
        if not facts.models:
            if model is None:
                raise RemoteModelNotFoundError(
                    f"{self.endpoint.label} lists no models; name one with --model.",
                    endpoint=self.endpoint.base_url,
                )
            return model, UNKNOWN_CONTEXT
        for entry in facts.models:
            if model is None or entry.id == model:
                return entry.id, entry.n_ctx or UNKNOWN_CONTEXT
        names = ", ".join(m.id for m in facts.models[:8])
        raise RemoteModelNotFoundError(
            f"{self.endpoint.label} does not serve the model {model!r}; it serves: {names}.",
            endpoint=self.endpoint.base_url,
        )

    def _probe_tokenizer(self) -> str | None:
        for path, _ in _TOKENIZE_PROBES:
            try:
                if self._server_tokens("Hello", path) is not None:
                    return path
            except RemoteError:
                continue
        return None

    def _server_tokens(self, text: str, path: str) -> list[int] | None:
        key = dict(_TOKENIZE_PROBES)[path]
        body = {"model": self.model, key: text, "prompt": text, "add_special": False}
        with explained(self.endpoint):
            response = self._client.post(self.endpoint.root + path, json=body, timeout=10.0)
        if response.status_code >= 400:
            return None
        try:
            tokens = response.json().get("tokens")
        except (ValueError, AttributeError):
            return None
        if not isinstance(tokens, list):
            return None
        return [int(t["id"]) if isinstance(t, dict) else int(t) for t in tokens]

    # ----- Backend -----

    @property
    def capabilities(self) -> Capabilities:
        """What this server offers (token probabilities as its last reply showed)."""
        probs = self._logprobs if self._logprobs is not None else self.kind in KINDS_WITH_LOGPROBS
        return Capabilities(
            token_probabilities=probs,
            full_distribution=False,
            kv_snapshots=False,
            exact_token_counts=self._tokenize_path is not None,
            live_settings=False,
            samplers=samplers_of(self.kind),
        )

    @property
    def n_ctx(self) -> int:
        """The model's context as the server states it (else `UNKNOWN_CONTEXT`)."""
        return self._n_ctx

    def tokenize(
        self, text: str, *, add_special: bool = False, parse_special: bool = True
    ) -> list[int]:
        """The server's token ids where it has a tokenizer, else `estimate_tokens` zeros."""
        if self._tokenize_path is not None and text:
            tokens = self._server_tokens(text, self._tokenize_path)
            if tokens is not None:
                return tokens
        return [0] * estimate_tokens(text)

    def token_text(self, token_id: int) -> str:
        """Readable text of a token this backend has seen."""
        return self.token_bytes(token_id).decode("utf-8", "backslashreplace")

    def token_bytes(self, token_id: int) -> bytes:
        """Bytes of a token this backend has seen (b"" for others)."""
        return self._texts[token_id] if 0 <= token_id < len(self._texts) else b""

    def _id_of(self, data: bytes) -> int:
        found = self._ids.get(data)
        if found is None:
            found = self._ids[data] = len(self._texts)
            self._texts.append(data)
        return found

    def _count(self, message: Message) -> int:
        key = f"{message.role}\0{message.content}"
        if key not in self._counts:
            self._counts[key] = len(self.tokenize(message.content)) + MESSAGE_OVERHEAD
        return self._counts[key]

    def plan(
        self,
        messages: Sequence[Message],
        max_tokens: int | None = None,
        policy: OverflowPolicy = OverflowPolicy.STOP,
    ) -> PromptPlan:
        """Count (the server's tokenizer or an estimate, plus template overhead) and fit."""

        def tokens_of(chosen: Sequence[Message]) -> list[int]:
            return [0] * sum(self._count(m) for m in chosen)

        return plan_prompt(messages, tokens_of, self.n_ctx, max_tokens, policy)

    @property
    def cached_tokens(self) -> tuple[int, ...]:
        """Nothing: the server's cache is not visible from here."""
        return ()

    def save_snapshot(self) -> KVSnapshot:
        """Not available from a server."""
        raise EngineStateError(f"{self.endpoint.label}: saved KV caches are not available.")

    def restore_snapshot(self, snapshot: KVSnapshot) -> bool:
        """Not available from a server: always False."""
        return False

    def close(self) -> None:
        """Close the HTTP clients. Safe to call twice."""
        self._client.close()
        self._streaming.close()

    def generate(
        self,
        messages: Sequence[Message],
        settings: SettingsHolder | SamplingSettings | None = None,
        *,
        cancel: threading.Event | None = None,
        policy: OverflowPolicy = OverflowPolicy.STOP,
        top_n: int = 10,
        continue_with: Sequence[int] = (),
    ) -> Iterator[GenerationEvent]:
        """Stream the server's reply to `messages` (see `Backend.generate`).

        Raises (before any event): ContextOverflowError, InvalidSettingError; (while
        iterating, before the first token) RemoteError subclasses. A connection cut after
        the first token ends the reply with `StopReason.INTERRUPTED` and a `note`.
        """
        if not 0 <= top_n <= MAX_TOP_LOGPROBS:
            raise InvalidSettingError(f"top_n must be 0 to {MAX_TOP_LOGPROBS} (got {top_n})")
        if continue_with:
            raise EngineStateError(
                "Branching at a token needs a local model: a server cannot continue from "
                "given token ids."
            )
        holder = settings if isinstance(settings, SettingsHolder) else SettingsHolder(settings)
        current = holder.get()
        plan = self.plan(messages, current.max_tokens, policy)
        kept = [messages[i] for i in plan.kept]
        seed = current.seed if current.seed is not None else random.randint(0, MAX_SEED)
        return self._stream(kept, plan, current, seed, top_n, cancel or threading.Event())

    # ----- streaming -----

    def _body(
        self, messages: Sequence[Message], settings: SamplingSettings, seed: int, top_n: int
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [m.as_dict() for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        for name, field in request_fields(self.kind).items():
            value: Any = seed if name == "seed" else getattr(settings, name)
            if name == "stop":
                value = list(settings.stop) or None
            if value is not None:
                body[field] = value
        if top_n > 0 and self._logprobs is not False:
            body["logprobs"] = True
            body["top_logprobs"] = top_n
        return body

    def _open(
        self, body: dict[str, Any], closer: _StreamCloser
    ) -> tuple[httpx.Response, dict[str, Any]]:
        """POST the request and return the streaming response (status checked)."""
        for attempt in (1, 2):
            request = self._streaming.build_request(
                "POST", "/chat/completions", json=body, extensions={"trace": closer.trace}
            )
            response = self._streaming.send(request, stream=True)  # errors: see _stream
            if response.status_code < 400:
                return response, body
            try:
                response.read()
            finally:
                response.close()
            error = status_error(response, self.endpoint, self.model)
            if (
                attempt == 1
                and isinstance(error, RemoteRequestError)
                and "logprobs" in body
                and "logprob" in error.message.lower()
            ):
                log.info("%s refuses logprobs; asking without", self.endpoint.base_url)
                self._logprobs = False
                body = {k: v for k, v in body.items() if k not in ("logprobs", "top_logprobs")}
                continue
            raise error
        raise AssertionError("unreachable")

    def _stream(
        self,
        messages: Sequence[Message],
        plan: PromptPlan,
        settings: SamplingSettings,
        seed: int,
        top_n: int,
        cancel: threading.Event,
    ) -> Iterator[GenerationEvent]:
        t_start = time.perf_counter()
        yield PrefillStarted(len(plan.tokens), 0, plan.dropped)
        if cancel.is_set():
            yield GenerationDone.cancelled_before_prompt()
            return
        body = self._body(messages, settings, seed, top_n)
        parts: list[str] = []
        ids: list[int] = []
        usage: dict[str, Any] = {}
        finish: str | None = None
        t_first: float | None = None
        reason: StopReason | None = None
        note = ""
        saw_logprobs = False
        closer = _StreamCloser(cancel)
        try:
            response, body = self._open(body, closer)
            try:
                for data in _sse_data(response.iter_lines()):
                    if data.strip() == "[DONE]":
                        break
                    chunk = self._chunk(data)
                    if isinstance(chunk.get("usage"), dict):
                        usage = chunk["usage"]
                    for event in self._events(chunk, top_n, settings):
                        if t_first is None:
                            t_first = time.perf_counter()
                        saw_logprobs = saw_logprobs or bool(event.alternatives)
                        parts.append(event.text)
                        ids.append(event.token_id)
                        yield event
                    finish = self._finish(chunk) or finish
                    if cancel.is_set():
                        reason = StopReason.CANCELLED
                        break
            finally:
                response.close()
        except (httpx.TransportError, httpx.StreamError) as exc:
            if cancel.is_set():
                reason = StopReason.CANCELLED
            elif t_first is None:
                raise self._cut_before_first(exc) from None
            else:
                reason = StopReason.INTERRUPTED
                note = (
                    f"The connection to {self.endpoint.label} broke mid-reply "
                    f"({type(exc).__name__}); the partial reply is kept."
                )
                log.warning("%s", note)
        finally:
            closer.stop()
        if cancel.is_set():
            reason = StopReason.CANCELLED
        if "logprobs" in body and ids:
            self._logprobs = saw_logprobs
        t_end = time.perf_counter()
        yield self._done(
            parts, ids, usage, finish, reason, note, plan, seed, (t_start, t_first, t_end)
        )

    def _cut_before_first(self, exc: Exception) -> RemoteError:
        if isinstance(exc, httpx.ReadTimeout):
            return RemoteTimeoutError(
                f"{self.endpoint.label} accepted the request but sent no token for "
                f"{self.endpoint.read_timeout_s:g} s. The server may be overloaded or stuck; "
                "try again, or check its log.",
                endpoint=self.endpoint.base_url,
            )
        if isinstance(exc, httpx.TransportError) and not isinstance(
            exc, httpx.RemoteProtocolError | httpx.ReadError
        ):
            return transport_error(exc, self.endpoint)
        return RemoteStreamCutError(
            f"The connection to {self.endpoint.label} broke before the reply began "
            f"({type(exc).__name__}). Check that the server is still running, then "
            "regenerate.",
            endpoint=self.endpoint.base_url,
        )

    def _chunk(self, data: str) -> dict[str, Any]:
        try:
            chunk = json.loads(data)
        except ValueError:
            chunk = None
        if not isinstance(chunk, dict):
            raise RemoteServerError(
                f"{self.endpoint.label} sent a stream chunk that is not JSON: {data[:120]!r}",
                endpoint=self.endpoint.base_url,
            )
        if "error" in chunk and not chunk.get("choices"):
            error = chunk["error"]
            said = error.get("message", error) if isinstance(error, dict) else error
            raise RemoteServerError(
                f"{self.endpoint.label} failed mid-reply: {said}", endpoint=self.endpoint.base_url
            )
        return chunk

    @staticmethod
    def _finish(chunk: dict[str, Any]) -> str | None:
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict) and choice.get("finish_reason"):
                return str(choice["finish_reason"])
        return None

    def _events(
        self, chunk: dict[str, Any], top_n: int, settings: SamplingSettings
    ) -> list[TokenEvent]:
        """The tokens of one chunk: one per logprobs entry, else one for its text.

        The chunk's text goes with its first token, so the events' texts add up to the
        reply."""
        events: list[TokenEvent] = []
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = str(delta.get("content") or "")
            logprobs = choice.get("logprobs") or {}
            entries = logprobs.get("content") if isinstance(logprobs, dict) else None
            if isinstance(entries, list) and entries:
                for i, entry in enumerate(entries):
                    piece = self._token_from(entry)
                    events.append(
                        TokenEvent(
                            self._id_of(piece),
                            text if i == 0 else "",
                            _prob(entry),
                            self._alternatives(entry, top_n),
                            settings=settings,
                        )
                    )
            elif text:
                piece = text.encode("utf-8")
                events.append(TokenEvent(self._id_of(piece), text, math.nan, (), settings=settings))
        return events

    @staticmethod
    def _token_from(entry: Any) -> bytes:
        if isinstance(entry, dict):
            raw = entry.get("bytes")
            if isinstance(raw, list) and all(isinstance(b, int) and 0 <= b < 256 for b in raw):
                return bytes(raw)
            return str(entry.get("token", "")).encode("utf-8")
        return b""

    def _alternatives(self, entry: Any, top_n: int) -> tuple[TokenAlternative, ...]:
        top = entry.get("top_logprobs") if isinstance(entry, dict) else None
        if not isinstance(top, list):
            return ()
        result = []
        for alt in top[:top_n]:
            piece = self._token_from(alt)
            logprob = _logprob(alt)
            result.append(
                TokenAlternative(
                    self._id_of(piece),
                    piece.decode("utf-8", "backslashreplace"),
                    logprob,
                    math.exp(logprob),
                )
            )
        return tuple(result)

    def _done(
        self,
        parts: list[str],
        ids: list[int],
        usage: dict[str, Any],
        finish: str | None,
        reason: StopReason | None,
        note: str,
        plan: PromptPlan,
        seed: int,
        times: tuple[float, float | None, float],
    ) -> GenerationDone:
        t_start, t_first, t_end = times
        prompt_tokens = _int(usage.get("prompt_tokens"), len(plan.tokens))
        completion = _int(usage.get("completion_tokens"), len(ids))
        details = usage.get("prompt_tokens_details")
        cached = _int(details.get("cached_tokens") if isinstance(details, dict) else None, 0)
        if reason is None:
            reason = StopReason.MAX_TOKENS if finish == "length" else StopReason.END_OF_TURN
            if finish == "length" and prompt_tokens + completion >= self.n_ctx:
                reason = StopReason.CONTEXT_FULL
        ttft_s = (t_first - t_start) if t_first is not None else 0.0
        decode_s = (t_end - t_first) if t_first is not None else 0.0
        stats = GenerationStats(
            prompt_tokens=prompt_tokens,
            cached_tokens=cached,
            prefill_ms=ttft_s * 1000,
            prefill_tps=(prompt_tokens - cached) / ttft_s if ttft_s > 0 else 0.0,
            ttft_ms=ttft_s * 1000,
            completion_tokens=completion,
            decode_ms=decode_s * 1000,
            decode_tps=(completion - 1) / decode_s if completion > 1 and decode_s > 0 else 0.0,
            stop_reason=reason,
            seed=seed,
            dropped_messages=plan.dropped,
        )
        return GenerationDone("".join(parts), "", tuple(ids), stats, note=note)


def _logprob(entry: Any) -> float:
    value = entry.get("logprob") if isinstance(entry, dict) else None
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else -9999.0


def _prob(entry: Any) -> float:
    return math.exp(_logprob(entry))


def _int(value: Any, default: int) -> int:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else default
