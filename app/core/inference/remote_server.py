"""What an OpenAI-compatible server offers: its models, its kind, the samplers it accepts.

Servers say little about themselves, so the kind is read from `/v1/models` (`owned_by`,
and the extra fields each engine adds) and from `/props` (llama-server). The kind decides
which sampler fields are sent and under which names; everything else uses the OpenAI
standard fields only.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

from app.core.errors import RemoteServerError
from app.core.inference.remote_http import Endpoint, get_json, open_client

STANDARD = "openai"
"""A server known only to speak the OpenAI API."""

# SamplingSettings field -> request field, for every server.
_OPENAI_FIELDS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "seed": "seed",
    "max_tokens": "max_tokens",
    "stop": "stop",
}
_LLAMA_FIELDS = {
    "top_k": "top_k",
    "min_p": "min_p",
    "typical_p": "typical_p",
    "repeat_penalty": "repeat_penalty",
    "repeat_last_n": "repeat_last_n",
    "mirostat": "mirostat",
    "mirostat_tau": "mirostat_tau",
    "mirostat_eta": "mirostat_eta",
}
_VLLM_FIELDS = {"top_k": "top_k", "min_p": "min_p", "repeat_penalty": "repetition_penalty"}
SAMPLER_FIELDS: Mapping[str, Mapping[str, str]] = {
    STANDARD: _OPENAI_FIELDS,
    "hearth": {**_OPENAI_FIELDS, **_LLAMA_FIELDS},
    "llama-server": {**_OPENAI_FIELDS, **_LLAMA_FIELDS},
    # llama-cpp-python's server: no repeat window, mirostat under another name
    "llama-cpp-python": {
        **_OPENAI_FIELDS,
        **{k: v for k, v in _LLAMA_FIELDS.items() if k != "repeat_last_n"},
        "mirostat": "mirostat_mode",
    },
    "vllm": {**_OPENAI_FIELDS, **_VLLM_FIELDS},
    "sglang": {**_OPENAI_FIELDS, **_VLLM_FIELDS},
    "ollama": _OPENAI_FIELDS,
}
"""Per server kind: `SamplingSettings` field -> the request field that carries it."""

_OWNERS = {
    "hearth": "hearth",
    "llamacpp": "llama-server",
    "me": "llama-cpp-python",
    "vllm": "vllm",
    "sglang": "sglang",
    "library": "ollama",
    "ollama": "ollama",
}
KINDS_WITH_LOGPROBS = frozenset({"hearth", "llama-server", "llama-cpp-python", "vllm", "sglang"})


@dataclass(frozen=True)
class RemoteModel:
    """One model a server lists: its id, context length when the server says, its owner."""

    id: str
    n_ctx: int | None
    owned_by: str


@dataclass(frozen=True)
class ServerFacts:
    """What `/v1/models` told about a server."""

    kind: str
    models: tuple[RemoteModel, ...]
    round_trip_ms: float


def _context_length(entry: Mapping[str, Any]) -> int | None:
    """The context length a models entry states (Hearth, vLLM, llama-server, SGLang)."""
    meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
    for value in (
        entry.get("context_length"),
        entry.get("max_model_len"),
        entry.get("context_window"),
        meta.get("n_ctx") if meta else None,
        meta.get("n_ctx_train") if meta else None,
    ):
        if isinstance(value, int) and value > 0:
            return value
    return None


def server_kind(entries: Sequence[Mapping[str, Any]]) -> str:
    """The kind of server from its `/v1/models` entries (STANDARD when unsure)."""
    for entry in entries:
        owner = str(entry.get("owned_by", "")).lower()
        if owner in _OWNERS:
            return _OWNERS[owner]
        if "max_model_len" in entry:
            return "vllm"
    return STANDARD


def fetch_server_facts(endpoint: Endpoint, client: httpx.Client | None = None) -> ServerFacts:
    """List the server's models (`GET /v1/models`) and time the round trip.

    Raises:
        RemoteError: (subclasses) the server could not be reached or refused.
    """
    own = client is None
    http = client or open_client(endpoint)
    try:
        start = time.perf_counter()
        body = get_json(http, endpoint, "/models")
        elapsed_ms = (time.perf_counter() - start) * 1000
    finally:
        if own:
            http.close()
    data = body.get("data")
    if not isinstance(data, list):
        raise RemoteServerError(
            f"{endpoint.label}: /models did not return a model list. Check the base URL.",
            endpoint=endpoint.base_url,
        )
    entries = [e for e in data if isinstance(e, dict) and isinstance(e.get("id"), str)]
    models = tuple(
        RemoteModel(str(e["id"]), _context_length(e), str(e.get("owned_by", ""))) for e in entries
    )
    return ServerFacts(server_kind(entries), models, elapsed_ms)


def request_fields(kind: str) -> Mapping[str, str]:
    """`SamplingSettings` field -> request field for a server kind."""
    return SAMPLER_FIELDS.get(kind, _OPENAI_FIELDS)


def samplers_of(kind: str) -> frozenset[str]:
    """The `SamplingSettings` fields (Capabilities.samplers names) a server kind honours."""
    fields = set(request_fields(kind))
    fields.discard("mirostat_tau")
    fields.discard("mirostat_eta")
    return frozenset(fields)
