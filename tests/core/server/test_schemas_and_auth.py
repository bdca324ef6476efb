"""Request checking (every 400 names its parameter), response_format grammars, API keys."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from app.core.server.app import ServerConfig
from app.core.server.auth import ServerConfigError, is_loopback, key_matches, stored_key
from app.core.server.errors import ApiError
from app.core.server.grammar import grammar_for
from app.core.server.schemas import API_DEFAULTS, parse_chat, parse_completion

N_CTX = 2048
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def chat(**changes: Any) -> dict[str, Any]:
    return {**CHAT, **changes}


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"n": 2}, "n"),
        ({"temperature": 3}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": N_CTX + 1}, "max_tokens"),
        ({"max_completion_tokens": 2.5}, "max_completion_tokens"),
        ({"top_logprobs": 21, "logprobs": True}, "top_logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"stop": ["a"] * 17}, "stop"),
        ({"stop": [""]}, "stop"),
        ({"seed": "x"}, "seed"),
        ({"mirostat": 3}, "mirostat"),
        ({"tools": [{"type": "function"}]}, "tools"),
        ({"logit_bias": {"1": 5}}, "logit_bias"),
        ({"model": ""}, "model"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content",
        ),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"stream": "yes"}, "stream"),
    ],
)
def test_bad_parameters_are_400s_that_name_them(changes: dict[str, Any], param: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_chat(chat(**changes), N_CTX)
    assert caught.value.status == 400
    assert caught.value.param == param
    assert caught.value.body()["error"]["param"] == param


def test_a_good_request_maps_onto_sampling_settings() -> None:
    parsed = parse_chat(
        chat(
            temperature=0,
            top_p=0.5,
            max_completion_tokens=7,
            max_tokens=99,
            stop="END",
            seed=2**40,
            top_k=5,
            min_p=0.1,
            typical_p=0.9,
            repeat_penalty=1.2,
            mirostat=2,
            mirostat_tau=4.0,
            presence_penalty=0.5,
            frequency_penalty=-0.5,
            logprobs=True,
            top_logprobs=20,
            stream=True,
            stream_options={"include_usage": True},
            messages=[
                {"role": "developer", "content": "Be brief."},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                },
            ],
        ),
        N_CTX,
    )
    s = parsed.settings
    assert (s.temperature, s.top_p, s.max_tokens, s.stop) == (0.0, 0.5, 7, ("END",))
    assert s.seed == 2**40 % (2**32 - 1)
    assert (s.top_k, s.min_p, s.typical_p, s.repeat_penalty) == (5, 0.1, 0.9, 1.2)
    assert (s.mirostat, s.mirostat_tau, s.presence_penalty, s.frequency_penalty) == (
        2,
        4.0,
        0.5,
        -0.5,
    )
    assert [(m.role, m.content) for m in parsed.messages] == [
        ("system", "Be brief."),
        ("user", "ab"),
    ]
    assert parsed.stream and parsed.include_usage and parsed.logprobs
    assert parsed.top_logprobs == 20


def test_unset_samplers_get_llama_server_defaults() -> None:
    parsed = parse_chat(CHAT, N_CTX)
    assert parsed.settings == API_DEFAULTS
    assert parsed.settings.repeat_penalty == 1.0 and parsed.settings.max_tokens is None


def test_completions_take_one_prompt_and_a_logprobs_count() -> None:
    parsed = parse_completion({"model": "m", "prompt": ["Once"], "logprobs": 3}, N_CTX)
    assert (parsed.kind, parsed.prompt, parsed.logprobs, parsed.top_logprobs) == (
        "completion",
        "Once",
        True,
        3,
    )
    for body, param in (
        ({"model": "m", "prompt": ["a", "b"]}, "prompt"),
        ({"model": "m", "prompt": "a", "echo": True}, "echo"),
        ({"model": "m", "prompt": "a", "suffix": "z"}, "suffix"),
        ({"model": "m", "prompt": "a", "logprobs": 21}, "logprobs"),
    ):
        with pytest.raises(ApiError) as caught:
            parse_completion(body, N_CTX)
        assert caught.value.param == param


def test_response_formats_become_grammars() -> None:
    assert grammar_for(None) is None
    assert grammar_for({"type": "text"}) is None
    assert "root" in (grammar_for({"type": "json_object"}) or "")
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    gbnf = grammar_for({"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert gbnf is not None and "root ::=" in gbnf and '\\"n\\"' in gbnf


def test_the_stored_key_is_owner_only_and_kept(tmp_path: Path) -> None:
    key, path, created = stored_key(tmp_path / "config")
    assert created and key.startswith("hearth-") and len(key) > 30
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again, _, created_again = stored_key(tmp_path / "config")
    assert again == key and not created_again


def test_key_checks() -> None:
    assert key_matches("Bearer s3cret", "s3cret")
    assert key_matches("bearer s3cret", "s3cret")
    assert not key_matches("Bearer s3cre", "s3cret")
    assert not key_matches("Basic s3cret", "s3cret")
    assert not key_matches(None, "s3cret")


def test_a_public_bind_needs_a_key() -> None:
    from app.core.server.handle import ServerHandle
    from app.core.server.scheduler import Scheduler

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")
    service = Scheduler(lambda engine: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(ServerConfigError, match="needs an API key"):
        ServerHandle(service, ServerConfig(host="0.0.0.0"))


@pytest.mark.parametrize("origins", [(), ("http://localhost:3000",)])
def test_cors_only_for_the_origins_given(origins: tuple[str, ...]) -> None:
    import httpx2 as httpx

    from app.core.server.handle import ServerHandle
    from app.core.server.scheduler import Scheduler

    service = Scheduler(lambda engine: None)  # type: ignore[arg-type,return-value]
    handle = ServerHandle(service, ServerConfig(port=0, cors_origins=origins))
    url = handle.start()
    try:
        preflight = httpx.options(
            url + "/chat/completions",
            headers={
                "Origin": "http://localhost:3000",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        allowed = preflight.headers.get("access-control-allow-origin")
        assert allowed == (origins[0] if origins else None)
        evil = httpx.get(url + "/models", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in evil.headers
        health = httpx.get(url.removesuffix("/v1") + "/health")
        assert health.status_code == 503 and health.json() == {"status": "loading"}
    finally:
        handle.stop()
