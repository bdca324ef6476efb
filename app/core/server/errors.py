"""Errors as OpenAI's error JSON: `{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    500: "server_error",
    503: "server_error",
}
RETRY_AFTER_S = 2
"""What a 503 tells the client to wait, in seconds."""


class ApiError(Exception):
    """A request the server answers with an error status.

    Args:
        status: The HTTP status.
        message: What is wrong and what to do, for a person.
        param: The request parameter at fault (400s).
        code: OpenAI-style machine code ("model_not_found", "invalid_api_key"...).
        headers: Extra headers (Retry-After on 503).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        return {
            "error": {
                "message": self.message,
                "type": _TYPES.get(self.status, "invalid_request_error"),
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        """The HTTP response."""
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def bad_param(param: str, message: str, code: str | None = None) -> ApiError:
    """A 400 naming the parameter at fault."""
    return ApiError(400, message, param=param, code=code)


def unavailable(message: str, code: str) -> ApiError:
    """A 503 with Retry-After (model loading, queue full)."""
    return ApiError(503, message, code=code, headers={"Retry-After": str(RETRY_AFTER_S)})
