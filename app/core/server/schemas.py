"""Check an OpenAI request body and turn it into a `GenerationRequest`.

Every 400 names the parameter at fault. Unknown fields are ignored (as llama-server does),
except the ones that would change the answer and that Hearth cannot honour (tools,
logit_bias, n > 1, echo, suffix): those are refused rather than silently dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from app.core.errors import InvalidSettingError
from app.core.inference.messages import Message, Role
from app.core.inference.sampling import MAX_SEED, SamplingSettings
from app.core.server.errors import bad_param
from app.core.server.grammar import grammar_for

MAX_TOP_LOGPROBS = 20
MAX_STOPS = 16
API_DEFAULTS = SamplingSettings(
    temperature=0.8,
    top_k=40,
    top_p=0.95,
    min_p=0.05,
    repeat_penalty=1.0,
    max_tokens=None,
)
"""llama-server's defaults: what a request gets for each sampler it does not set."""

_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
}
# Request field -> (SamplingSettings field, low, high, whole number).
_SAMPLERS: dict[str, tuple[str, float, float, bool]] = {
    "temperature": ("temperature", 0.0, 2.0, False),
    "top_p": ("top_p", 0.0, 1.0, False),
    "presence_penalty": ("presence_penalty", -2.0, 2.0, False),
    "frequency_penalty": ("frequency_penalty", -2.0, 2.0, False),
    "top_k": ("top_k", 0, 1_000_000, True),
    "min_p": ("min_p", 0.0, 1.0, False),
    "typical_p": ("typical_p", 0.0, 1.0, False),
    "repeat_penalty": ("repeat_penalty", 0.0, 10.0, False),
    "repeat_last_n": ("repeat_last_n", -1, 1_000_000, True),
    "mirostat": ("mirostat", 0, 2, True),
    "mirostat_mode": ("mirostat", 0, 2, True),
    "mirostat_tau": ("mirostat_tau", 0.0, 100.0, False),
    "mirostat_eta": ("mirostat_eta", 0.0, 1.0, False),
}
_REFUSED = ("tools", "functions", "logit_bias", "tool_choice", "function_call")


@dataclass(frozen=True)
class GenerationRequest:
    """A checked request: what to generate and how to answer.

    Attributes:
        kind: "chat" (messages through the chat template) or "completion" (raw prompt).
        model: The model name the client asked for.
        messages: The conversation (chat).
        prompt: The raw prompt (completion).
        settings: Samplers, seed, max tokens and stop strings.
        grammar: GBNF from `response_format`, or None.
        stream: Answer with Server-Sent Events.
        include_usage: Streamed: send a last chunk with the usage.
        logprobs: Return each token's log probability.
        top_logprobs: And this many alternatives per token (0-20).
    """

    kind: Literal["chat", "completion"]
    model: str
    messages: tuple[Message, ...]
    prompt: str
    settings: SamplingSettings
    grammar: str | None
    stream: bool
    include_usage: bool
    logprobs: bool
    top_logprobs: int


def parse_chat(body: Any, n_ctx: int) -> GenerationRequest:
    """Check a /v1/chat/completions body.

    Raises:
        ApiError: 400 naming the parameter at fault.
    """
    body = _object(body)
    messages = _messages(body.get("messages"))
    logprobs = _bool(body, "logprobs")
    top = _int(body, "top_logprobs", 0, MAX_TOP_LOGPROBS)
    if top and not logprobs:
        raise bad_param("top_logprobs", "top_logprobs needs logprobs: true")
    return GenerationRequest(
        kind="chat",
        model=_model(body),
        messages=messages,
        prompt="",
        settings=_settings(body, n_ctx, ("max_completion_tokens", "max_tokens")),
        grammar=grammar_for(body.get("response_format")),
        stream=_bool(body, "stream"),
        include_usage=_include_usage(body),
        logprobs=logprobs,
        top_logprobs=top or 0,
    )


def parse_completion(body: Any, n_ctx: int) -> GenerationRequest:
    """Check a /v1/completions body (a raw prompt; `logprobs` is the alternatives count).

    Raises:
        ApiError: 400 naming the parameter at fault.
    """
    body = _object(body)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise bad_param("prompt", "prompt must be a non-empty string (one prompt per request)")
    for name in ("echo",):
        if body.get(name):
            raise bad_param(name, f"{name} is not supported by Hearth")
    if body.get("suffix"):
        raise bad_param("suffix", "suffix (fill in the middle) is not supported by Hearth")
    if body.get("best_of") not in (None, 1):
        raise bad_param("best_of", "best_of must be 1")
    top = _int(body, "logprobs", 0, MAX_TOP_LOGPROBS)
    return GenerationRequest(
        kind="completion",
        model=_model(body),
        messages=(),
        prompt=prompt,
        settings=_settings(body, n_ctx, ("max_tokens",)),
        grammar=grammar_for(body.get("response_format")),
        stream=_bool(body, "stream"),
        include_usage=_include_usage(body),
        logprobs=top is not None,
        top_logprobs=top or 0,
    )


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_param("body", "the request body must be a JSON object")
    for name in _REFUSED:
        if body.get(name):
            raise bad_param(name, f"{name} is not supported by Hearth yet")
    if body.get("n") not in (None, 1):
        raise bad_param("n", "n must be 1: Hearth generates one choice per request")
    return body


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_param("model", "model must be the name of a model from GET /v1/models")
    return model


def _messages(raw: Any) -> tuple[Message, ...]:
    if not isinstance(raw, list) or not raw:
        raise bad_param("messages", "messages must be a non-empty list")
    out = []
    for i, item in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(item, dict):
            raise bad_param(where, f"{where} must be an object with role and content")
        role = _ROLES.get(item.get("role", ""))
        if role is None:
            raise bad_param(
                f"{where}.role",
                f"{where}.role must be system, developer, user or assistant "
                f"(got {item.get('role')!r})",
            )
        out.append(Message(role, _content(item.get("content"), f"{where}.content")))
    return tuple(out)


def _content(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise bad_param(where, f"{where}: only text parts are supported")
            texts.append(str(part.get("text", "")))
        return "".join(texts)
    raise bad_param(where, f"{where} must be a string or a list of text parts")


def _settings(body: dict[str, Any], n_ctx: int, max_names: tuple[str, ...]) -> SamplingSettings:
    values: dict[str, Any] = {}
    for name, (field, low, high, whole) in _SAMPLERS.items():
        value = _number(body, name, low, high, whole)
        if value is not None:
            values[field] = value
    if values.get("top_p") == 0.0:
        values["top_p"] = 1e-6  # OpenAI allows 0; llama.cpp needs > 0: keep only the best
    if values.get("typical_p") == 0.0:
        values["typical_p"] = 1e-6
    if values.get("repeat_penalty") == 0.0:
        raise bad_param("repeat_penalty", "repeat_penalty must be greater than 0")
    for name in max_names:
        value = _int(body, name, 1, n_ctx)
        if value is not None:
            values["max_tokens"] = value
            break
    seed = body.get("seed")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise bad_param("seed", f"seed must be an integer (got {seed!r})")
        values["seed"] = seed % (MAX_SEED + 1)
    values["stop"] = _stops(body.get("stop"))
    try:
        return API_DEFAULTS.with_changes(**values)
    except InvalidSettingError as exc:  # ranges above mirror SamplingSettings'; belt and braces
        raise bad_param("body", str(exc)) from exc


def _stops(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    stops = [raw] if isinstance(raw, str) else raw
    if (
        not isinstance(stops, list)
        or len(stops) > MAX_STOPS
        or not all(isinstance(s, str) and s for s in stops)
    ):
        raise bad_param(
            "stop", f"stop must be a non-empty string or a list of up to {MAX_STOPS} of them"
        )
    return tuple(stops)


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise bad_param("stream_options", "stream_options must be an object")
    return bool(options.get("include_usage", False))


def _bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_param(name, f"{name} must be true or false (got {value!r})")
    return value


def _int(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = _number(body, name, low, high, True)
    return None if value is None else int(value)


def _number(
    body: dict[str, Any], name: str, low: float, high: float, whole: bool
) -> int | float | None:
    value = body.get(name)
    if value is None:
        return None
    kind = "an integer" if whole else "a number"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_param(name, f"{name} must be {kind} (got {value!r})")
    if whole and not isinstance(value, int):
        raise bad_param(name, f"{name} must be {kind} (got {value!r})")
    if not math.isfinite(value) or not low <= value <= high:
        raise bad_param(name, f"{name} must be between {low} and {high} (got {value!r})")
    return value if whole else float(value)
