"""The routes: /health, /v1/models, /v1/chat/completions and /v1/completions."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from app import __version__
from app.core.errors import (
    ChatTemplateError,
    ContextOverflowError,
    HearthError,
    InvalidSettingError,
)
from app.core.inference.events import GenerationDone, PrefillStarted
from app.core.server.config import ServerConfig as ServerConfig  # re-exported
from app.core.server.errors import RETRY_AFTER_S, ApiError, unavailable
from app.core.server.middleware import (
    AccessLog,
    RequestCallback,
    RequireKey,
    read_body,
)
from app.core.server.responses import (
    CompletionLogprobs,
    Envelope,
    chat_logprob,
    finish_reason,
    usage,
    usage_of,
)
from app.core.server.scheduler import (
    GenerationService,
    Job,
    JobFailed,
    JobOutput,
    ModelFacts,
    NotReady,
    QueueFull,
    State,
    TokenPiece,
)
from app.core.server.schemas import GenerationRequest, parse_chat, parse_completion

POLL_S = 0.05
"""How often a waiting request checks that its client is still there."""


class ClientGone(Exception):
    """The client disconnected while its request waited or ran."""


def create_app(
    service: GenerationService, config: ServerConfig, on_request: RequestCallback | None = None
) -> ASGIApp:
    """The ASGI app: routes wrapped in key checks, CORS (if asked) and the access log."""
    api = _Api(service, config)
    routes = [
        Route("/health", api.health, methods=["GET"]),
        Route("/v1/models", api.models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", api.model, methods=["GET"]),
        Route("/v1/chat/completions", api.chat, methods=["POST"]),
        Route("/v1/completions", api.completions, methods=["POST"]),
    ]
    app: ASGIApp = Starlette(routes=routes)
    app = RequireKey(app, config.api_key)
    if config.cors_origins:
        app = CORSMiddleware(
            app,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return AccessLog(app, on_request)


class _Api:
    def __init__(self, service: GenerationService, config: ServerConfig) -> None:
        self.service = service
        self.config = config
        self.fingerprint = f"hearth-{__version__}"

    # ----- plain routes -----

    async def health(self, _request: Request) -> Response:
        state = self.service.state
        model = self.service.model
        if state is State.READY and model is not None:
            return JSONResponse({"status": "ok", "model": model.id})
        return JSONResponse(
            {"status": state.value},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    async def models(self, _request: Request) -> Response:
        model = self.service.model
        data = [self._model_object(model)] if model is not None else []
        return JSONResponse({"object": "list", "data": data})

    async def model(self, request: Request) -> Response:
        model = self.service.model
        wanted = request.path_params["model_id"]
        if model is None or not _names(wanted, model):
            return _unknown_model(wanted).response()
        return JSONResponse(self._model_object(model))

    @staticmethod
    def _model_object(model: ModelFacts) -> dict[str, Any]:
        return {
            "id": model.id,
            "object": "model",
            "created": model.created,
            "owned_by": "hearth",
            "context_length": model.n_ctx,
        }

    # ----- generation -----

    async def chat(self, request: Request) -> Response:
        return await self._generate(request, "chat")

    async def completions(self, request: Request) -> Response:
        return await self._generate(request, "completion")

    async def _generate(self, request: Request, kind: str) -> Response:
        started = time.perf_counter()
        try:
            raw = await read_body(request, self.config.max_body_bytes)
            try:
                body = json.loads(raw)
            except ValueError:
                raise ApiError(400, "The request body is not valid JSON.", param="body") from None
            model = self._ready_model()
            parse = parse_chat if kind == "chat" else parse_completion
            parsed = parse(body, model.n_ctx)
            if not _names(parsed.model, model):
                raise _unknown_model(parsed.model)
            run = _Run(request, parsed, self._submit(parsed), started)
            first = await run.next()  # PrefillStarted, or the error that prevented it
            if isinstance(first, JobFailed):
                raise _api_error(first.error)
            if isinstance(first, GenerationDone):  # stopped before its prompt was read
                raise unavailable("The server stopped this request; try again.", "cancelled")
        except ApiError as exc:
            return exc.response()
        except ClientGone:
            return Response(status_code=499)
        envelope = Envelope(kind, model.id, self.fingerprint)
        if parsed.stream:
            return EventSourceResponse(run.stream(envelope), ping=15)
        try:
            return JSONResponse(await run.whole(envelope))
        except ApiError as exc:
            return exc.response()
        except ClientGone:
            return Response(status_code=499)

    def _ready_model(self) -> ModelFacts:
        state, model = self.service.state, self.service.model
        if state is State.READY and model is not None:
            return model
        if state is State.LOADING:
            raise unavailable("The model is still loading; try again shortly.", "model_loading")
        raise unavailable(f"The server's model is not available ({state.value}).", "not_ready")

    def _submit(self, parsed: GenerationRequest) -> tuple[Job, asyncio.Queue[JobOutput]]:
        loop = asyncio.get_running_loop()
        outputs: asyncio.Queue[JobOutput] = asyncio.Queue()

        def sink(item: JobOutput) -> None:
            loop.call_soon_threadsafe(outputs.put_nowait, item)

        job = Job(parsed, sink)
        try:
            self.service.submit(job)
        except QueueFull:
            raise unavailable(
                "The server is busy: every queue slot is taken. Try again shortly.", "queue_full"
            ) from None
        except NotReady as exc:
            raise unavailable(
                f"The server's model is not available ({exc}).", "not_ready"
            ) from None
        return job, outputs


class _Run:
    """One submitted job seen from its request: its outputs, its client, its counts."""

    def __init__(
        self,
        request: Request,
        parsed: GenerationRequest,
        submitted: tuple[Job, asyncio.Queue[JobOutput]],
        started: float,
    ) -> None:
        self.request = request
        self.parsed = parsed
        self.job, self.outputs = submitted
        self.started = started
        self.prefill: PrefillStarted | None = None
        self.n_tokens = 0
        self.ttft_ms = 0.0

    async def next(self) -> JobOutput:
        """The next output; raises ClientGone (and cancels) if the client left meanwhile."""
        while True:
            try:
                item = await asyncio.wait_for(self.outputs.get(), POLL_S)
            except asyncio.TimeoutError:
                if await self.request.is_disconnected():
                    self.job.cancel.set()
                    raise ClientGone from None
                continue
            if isinstance(item, PrefillStarted):
                self.prefill = item
                self._record()
            elif isinstance(item, TokenPiece):
                self.n_tokens += 1
                if self.n_tokens == 1:
                    self.ttft_ms = (time.perf_counter() - self.started) * 1000
                    self._record()
            elif isinstance(item, GenerationDone):
                self._record(item)
            return item

    def _record(self, done: GenerationDone | None = None) -> None:
        """Token counts for the access log (never content)."""
        prefill = self.prefill
        self.request.scope.setdefault("state", {})["tokens"] = {
            "prompt_tokens": prefill.prompt_tokens if prefill else 0,
            "cached_tokens": prefill.cached_tokens if prefill else 0,
            "completion_tokens": done.stats.completion_tokens if done else self.n_tokens,
            "ttft_ms": self.ttft_ms,
        }

    def usage_now(self) -> dict[str, Any]:
        prefill = self.prefill
        assert prefill is not None
        return usage(prefill.prompt_tokens, prefill.cached_tokens, self.n_tokens)

    async def whole(self, envelope: Envelope) -> dict[str, Any]:
        """Wait for the whole reply; the non-streamed response body."""
        parsed = self.parsed
        entries: list[dict[str, Any]] = []
        legacy = CompletionLogprobs(parsed.top_logprobs)
        text = ""
        while True:
            item = await self.next()
            if isinstance(item, JobFailed):
                raise _api_error(item.error)
            if isinstance(item, TokenPiece) and parsed.logprobs:
                if parsed.kind == "chat":
                    entries.append(chat_logprob(item, parsed.top_logprobs))
                else:
                    legacy.add(item, len(text))
                text += item.event.text
            elif isinstance(item, TokenPiece):
                text += item.event.text
            elif isinstance(item, GenerationDone):
                logprobs: Any = None
                if parsed.logprobs:
                    logprobs = {"content": entries} if parsed.kind == "chat" else legacy.body()
                return envelope.whole(
                    item.text, logprobs, finish_reason(item.stats.stop_reason), usage_of(item.stats)
                )

    async def stream(self, envelope: Envelope) -> AsyncIterator[dict[str, str]]:
        """Server-Sent Events: role, content pieces, finish, usage, [DONE]."""
        parsed = self.parsed
        chat = parsed.kind == "chat"
        legacy = CompletionLogprobs(parsed.top_logprobs)
        sent = 0
        try:
            if chat:
                yield _data(envelope.chunk("", role=True))
            while True:
                item = await self.next()
                if isinstance(item, JobFailed):
                    yield _data(_api_error(item.error).body())
                    break
                if isinstance(item, TokenPiece):
                    text = item.event.text
                    logprobs: Any = None
                    if parsed.logprobs:
                        logprobs = (
                            {"content": [chat_logprob(item, parsed.top_logprobs)]}
                            if chat
                            else legacy.add(item, sent)
                        )
                    elif not text:
                        continue
                    sent += len(text)
                    yield _data(envelope.chunk(text, logprobs=logprobs))
                elif isinstance(item, GenerationDone):
                    if item.tail:
                        yield _data(envelope.chunk(item.tail))
                    reason = finish_reason(item.stats.stop_reason)
                    yield _data(envelope.chunk(None if chat else "", finish=reason))
                    if parsed.include_usage:
                        yield _data(envelope.usage_chunk(usage_of(item.stats)))
                    break
            yield {"data": "[DONE]"}
        finally:
            self.job.cancel.set()  # a client that left mid-stream stops its generation


def _data(payload: dict[str, Any]) -> dict[str, str]:
    return {"data": json.dumps(payload, ensure_ascii=False, separators=(",", ":"))}


def _names(wanted: str, model: ModelFacts) -> bool:
    """Whether the client's model name means the loaded model (names only, never paths)."""
    folded = wanted.casefold()
    return folded == model.id.casefold() or any(folded == a.casefold() for a in model.aliases)


def _unknown_model(wanted: str) -> ApiError:
    return ApiError(
        404,
        f"The model '{wanted}' does not exist on this server; GET /v1/models lists the one "
        "it serves.",
        param="model",
        code="model_not_found",
    )


def _api_error(error: BaseException) -> ApiError:
    """The HTTP error for what stopped a job."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, ContextOverflowError):
        return ApiError(400, str(error), param="messages", code="context_length_exceeded")
    if isinstance(error, ChatTemplateError | InvalidSettingError):
        return ApiError(400, str(error), param="messages")
    if isinstance(error, NotReady):
        return unavailable(f"The server stopped this request ({error}).", "not_ready")
    if isinstance(error, HearthError):
        return ApiError(500, str(error), code="generation_failed")
    return ApiError(500, "The server failed to generate a reply; see its log.", code="internal")
