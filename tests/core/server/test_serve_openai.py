"""The official `openai` client against `hearth serve` (a real subprocess, the real model)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest

from tests.core.server.conftest import CTX, Served

HELLO = [{"role": "user", "content": "Name three colours."}]
PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about snow.",
    "Count from one to five.",
    "Give me a fun fact about cats.",
]


_CLIENTS: dict[tuple[str, str], openai.OpenAI] = {}


@pytest.fixture(autouse=True, scope="module")
def _close_clients() -> Iterator[None]:
    yield
    for c in _CLIENTS.values():
        c.close()
    _CLIENTS.clear()


def client(served: Served, key: str | None = None) -> openai.OpenAI:
    """One client per server and key (closed after the module; thread-safe)."""
    ident = (served.url, key or "none")
    if ident not in _CLIENTS:
        _CLIENTS[ident] = openai.OpenAI(
            base_url=served.url, api_key=ident[1], max_retries=0, timeout=300
        )
    return _CLIENTS[ident]


def ask(served: Served, prompt: str, **kw: Any) -> Any:
    return client(served).chat.completions.create(
        model=served.model, messages=[{"role": "user", "content": prompt}], **kw
    )


def test_the_banner_has_the_url_model_and_examples(served: Served) -> None:
    assert served.url.startswith("http://127.0.0.1:") and served.url.endswith("/v1")
    assert "curl " + served.url + "/chat/completions" in served.banner
    assert f'base_url="{served.url}"' in served.banner
    assert served.key is None


def test_models_lists_the_loaded_model(served: Served) -> None:
    models = client(served).models.list()
    assert [m.id for m in models.data] == [served.model]
    assert client(served).models.retrieve(served.model).id == served.model
    assert httpx.get(served.url.removesuffix("/v1") + "/health").json()["status"] == "ok"


def test_chat_streamed_equals_chat_whole_with_usage(served: Served) -> None:
    whole = client(served).chat.completions.create(
        model=served.model, messages=HELLO, temperature=0, max_tokens=30
    )
    text = whole.choices[0].message.content
    assert text and whole.choices[0].finish_reason in ("stop", "length")
    assert whole.usage is not None and whole.usage.prompt_tokens > 5
    assert whole.usage.completion_tokens > 0
    assert whole.usage.prompt_tokens_details is not None
    chunks = list(
        client(served).chat.completions.create(
            model=served.model,
            messages=HELLO,
            temperature=0,
            max_tokens=30,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    assert chunks[-2].choices[0].finish_reason == whole.choices[0].finish_reason
    usage = chunks[-1].usage
    assert usage is not None and not chunks[-1].choices
    assert usage.completion_tokens == whole.usage.completion_tokens
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens > 0  # the same prompt again


def test_logprobs_equal_hearth_ask_for_the_same_seed(
    either: Served, starter_model: Path, tmp_path: Path
) -> None:
    reply = client(either).chat.completions.create(
        model=either.model, messages=HELLO, seed=7, max_tokens=12, logprobs=True, top_logprobs=5
    )
    content = reply.choices[0].logprobs.content
    assert content and all(len(entry.top_logprobs) == 5 for entry in content)
    # The same samplers as the API's defaults (llama-server's: no repeat penalty).
    ask = subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "ask",
            "--model",
            str(starter_model),
            "--ctx",
            CTX,
            "--threads",
            "1",
            "--seed",
            "7",
            "--max-tokens",
            "12",
            "--repeat-penalty",
            "1.0",
            "--logprobs",
            "5",
            "--json",
            HELLO[0]["content"],
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HEARTH_HOME": str(tmp_path)},
        timeout=300,
        check=True,
    )
    record = json.loads(ask.stdout.strip().splitlines()[-1])
    expected = record["logprobs"]["content"]
    assert [e.token for e in content] == [e["token"] for e in expected]
    assert [e.bytes for e in content] == [e["bytes"] for e in expected]
    for got, want in zip(content, expected, strict=True):
        assert got.logprob == pytest.approx(want["logprob"], abs=1e-4)
        assert [t.token for t in got.top_logprobs] == [t["token"] for t in want["top_logprobs"]]
        for alt, want_alt in zip(got.top_logprobs, want["top_logprobs"], strict=True):
            assert alt.logprob == pytest.approx(want_alt["logprob"], abs=1e-4)


def test_json_schema_output_parses_and_validates(either: Served) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    reply = ask(
        either,
        "Invent a person. Answer in JSON with name and age.",
        temperature=0,
        max_tokens=80,
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": schema}},
    )
    data = json.loads(reply.choices[0].message.content)
    assert set(data) == {"name", "age"}
    assert isinstance(data["name"], str) and isinstance(data["age"], int)
    anything = ask(
        either,
        "Say hi in JSON.",
        temperature=0,
        max_tokens=200,
        response_format={"type": "json_object"},
    )
    assert anything.choices[0].finish_reason == "stop"  # a reply cut by max_tokens may not
    assert isinstance(json.loads(anything.choices[0].message.content), dict)


def test_stop_strings_end_the_reply_before_them(either: Served) -> None:
    free = ask(either, PROMPTS[2], temperature=0, max_tokens=40).choices[0].message.content
    words = free.split()
    assert len(words) > 3, free
    stop = words[len(words) // 2]
    stopped = ask(either, PROMPTS[2], temperature=0, max_tokens=40, stop=[stop])
    text = stopped.choices[0].message.content
    assert stop not in text and free.startswith(text)
    assert stopped.choices[0].finish_reason == "stop"


def test_a_seed_reproduces_a_sampled_reply(either: Served) -> None:
    kw: dict[str, Any] = {"temperature": 1.2, "max_tokens": 20}
    first = ask(either, PROMPTS[1], seed=1234, **kw).choices[0].message.content
    second = ask(either, PROMPTS[1], seed=1234, **kw).choices[0].message.content
    assert first == second


def test_raw_completions_stream_and_not(served: Served) -> None:
    c = client(served)
    whole = c.completions.create(
        model=served.model, prompt="1, 2, 3,", temperature=0, max_tokens=8, logprobs=2
    )
    assert whole.choices[0].text and whole.usage is not None
    assert whole.choices[0].finish_reason == "length"
    assert len(whole.choices[0].logprobs.tokens) == 8
    streamed = c.completions.create(
        model=served.model, prompt="1, 2, 3,", temperature=0, max_tokens=8, stream=True
    )
    assert "".join(ch.choices[0].text for ch in streamed if ch.choices) == whole.choices[0].text


@pytest.mark.parametrize(
    ("kw", "param"),
    [
        ({"n": 2}, "n"),
        ({"temperature": 9}, "temperature"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"max_tokens": 10**6}, "max_tokens"),
    ],
)
def test_bad_parameters_are_400_naming_them(served: Served, kw: dict[str, Any], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(served).chat.completions.create(model=served.model, messages=HELLO, **kw)
    assert caught.value.status_code == 400
    assert caught.value.body["param"] == param  # type: ignore[index]


def test_other_errors_have_their_status(either: Served) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client(either).chat.completions.create(model="../../etc/passwd", messages=HELLO)
    assert caught.value.body["code"] == "model_not_found"  # type: ignore[index]
    huge = {"model": either.model, "messages": [{"role": "user", "content": "x" * 5_000_000}]}
    response = httpx.post(either.url + "/chat/completions", json=huge, timeout=30)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    too_long = "word " * 3000
    with pytest.raises(openai.BadRequestError) as over:
        client(either).chat.completions.create(
            model=either.model, messages=[{"role": "user", "content": too_long}]
        )
    assert over.value.body["code"] == "context_length_exceeded"  # type: ignore[index]
    response = httpx.post(either.url + "/chat/completions", content=b"{nope", timeout=30)
    assert response.status_code == 400 and response.json()["error"]["param"] == "body"


def test_auth_on(served_with_key: Served) -> None:
    assert served_with_key.key == "s3cret-key"
    with pytest.raises(openai.AuthenticationError):
        client(served_with_key, "wrong").models.list()
    missing = httpx.get(served_with_key.url + "/models")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "invalid_api_key"
    models = client(served_with_key, "s3cret-key").models.list()
    assert [m.id for m in models.data] == [served_with_key.model]
    health = httpx.get(served_with_key.url.removesuffix("/v1") + "/health")
    assert health.status_code == 200  # no content, no key needed


def test_concurrent_clients_get_their_own_greedy_replies(either: Served) -> None:
    alone = [
        ask(either, p, temperature=0, max_tokens=12).choices[0].message.content for p in PROMPTS
    ]
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        together = list(
            pool.map(
                lambda p: ask(either, p, temperature=0, max_tokens=12).choices[0].message.content,
                PROMPTS,
            )
        )
    assert together == alone
    assert len(set(alone)) == len(alone)


def test_curl_streams(served: Served) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    body = json.dumps({"model": served.model, "messages": HELLO, "stream": True, "max_tokens": 8})
    result = subprocess.run(
        [
            curl,
            "-sN",
            served.url + "/chat/completions",
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    events = [line[6:] for line in result.stdout.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    first = json.loads(events[0])
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"][0]["delta"]["role"] == "assistant"
