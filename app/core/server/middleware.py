"""ASGI middleware: the access log (never content), API key checks, body size limit."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.server.auth import key_matches
from app.core.server.config import DEFAULT_MAX_BODY as DEFAULT_MAX_BODY  # re-exported
from app.core.server.errors import ApiError

log = logging.getLogger("hearth.server.access")


@dataclass(frozen=True)
class RequestRecord:
    """What the access log and the request counter see about one request: no content."""

    method: str
    path: str
    status: int
    duration_ms: float
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    ttft_ms: float = 0.0


RequestCallback = Callable[[RequestRecord], None]


class AccessLog:
    """Logs method, path, status, token counts and timings; calls `on_request` after each."""

    def __init__(self, app: ASGIApp, on_request: RequestCallback | None = None) -> None:
        self.app = app
        self.on_request = on_request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0
        scope.setdefault("state", {})

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            tokens: dict[str, Any] = scope["state"].get("tokens", {})
            record = RequestRecord(
                method=scope["method"],
                path=scope["path"],
                status=status or 499,
                duration_ms=(time.perf_counter() - start) * 1000,
                **tokens,
            )
            log.info(
                "%s %s %d %.0f ms prompt=%d cached=%d completion=%d ttft=%.0f ms",
                record.method,
                record.path,
                record.status,
                record.duration_ms,
                record.prompt_tokens,
                record.cached_tokens,
                record.completion_tokens,
                record.ttft_ms,
            )
            if self.on_request is not None:
                try:
                    self.on_request(record)
                except Exception:
                    log.exception("the request callback failed")


class RequireKey:
    """Answers 401 to /v1 requests without the right Bearer key (None: no key needed)."""

    def __init__(self, app: ASGIApp, key: str | None) -> None:
        self.app = app
        self.key = key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and self.key is not None
            and scope["path"].startswith("/v1")
            and scope["method"] != "OPTIONS"
        ):
            headers = dict(scope["headers"])
            header = headers.get(b"authorization", b"").decode("latin-1")
            if not key_matches(header, self.key):
                said = "wrong" if header else "missing"
                error = ApiError(
                    401,
                    f"The API key is {said}: send 'Authorization: Bearer KEY' with the key "
                    "`hearth serve` printed (or the one in its --api-key-file).",
                    code="invalid_api_key",
                )
                await error.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes with a 413 (at once when
    Content-Length says so, else as soon as the body grows past it)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def too_large(limit: int) -> ApiError:
    """The 413 for a body over `limit` bytes."""
    return ApiError(
        413,
        f"The request body is larger than the server's limit of {limit:,} bytes; send a "
        "shorter prompt.",
        code="request_too_large",
    )
