"""The server core in this process: loading, queue limits, disconnects, the request counter."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from app.core.inference.engine import Engine
from app.core.inference.events import GenerationDone
from app.core.inference.load_options import LoadOptions
from app.core.inference.messages import Message
from app.core.server.app import ServerConfig
from app.core.server.handle import ServerHandle
from app.core.server.middleware import RequestRecord
from app.core.server.scheduler import ModelFacts, Scheduler, State, describe_loaded
from app.core.server.schemas import API_DEFAULTS
from tests.core.server.conftest import probed

OPTIONS = LoadOptions(n_ctx=1024, n_threads=1)
COUNTING = {"prompt": "1, 2, 3, 4, 5,", "temperature": 0, "max_tokens": 400, "stream": True}


class Served:
    def __init__(
        self,
        model: Path,
        queue_size: int,
        gate: threading.Event | None = None,
        parallel: int = 1,
    ) -> None:
        def opener(engine: Engine) -> ModelFacts:
            if gate is not None:
                gate.wait(60)
            engine.load(model, probed(model, OPTIONS))
            return describe_loaded(engine)

        self.records: list[RequestRecord] = []
        self.counted = threading.Event()  # set as each request's record arrives

        def count(record: RequestRecord) -> None:
            self.records.append(record)
            self.counted.set()

        self.scheduler = Scheduler(opener, queue_size=queue_size, parallel=parallel)
        self.handle = ServerHandle(self.scheduler, ServerConfig(port=0), count)
        self.scheduler.start()
        self.url = self.handle.start()

    def body(self, **changes: Any) -> dict[str, Any]:
        model = self.scheduler.model
        return {"model": model.id if model else "x", **changes}

    def close(self) -> None:
        self.scheduler.cancel_all()
        self.handle.stop()
        self.scheduler.stop()


@pytest.fixture(params=[1])
def served(starter_model: Path, request: pytest.FixtureRequest) -> Iterator[Served]:
    """A server generating `request.param` replies at once (1 unless parametrized)."""
    server = Served(starter_model, queue_size=1, parallel=request.param)
    assert server.scheduler.wait_loaded(120) is State.READY
    yield server
    server.close()


def wait_until(condition: Any, timeout: float = 60.0) -> float:
    start = time.perf_counter()
    while not condition():
        assert time.perf_counter() - start < timeout, "timed out"
        time.sleep(0.005)
    return time.perf_counter() - start


def test_503_with_retry_after_while_loading(starter_model: Path) -> None:
    gate = threading.Event()
    server = Served(starter_model, queue_size=1, gate=gate)
    try:
        health = httpx.get(server.url.removesuffix("/v1") + "/health")
        assert health.status_code == 503 and health.headers["Retry-After"]
        chat = httpx.post(
            server.url + "/chat/completions",
            json=server.body(messages=[{"role": "user", "content": "hi"}]),
        )
        assert chat.status_code == 503 and chat.headers["Retry-After"]
        assert chat.json()["error"]["code"] == "model_loading"
        gate.set()
        assert server.scheduler.wait_loaded(120) is State.READY
        assert httpx.get(server.url.removesuffix("/v1") + "/health").status_code == 200
    finally:
        gate.set()
        server.close()


@pytest.mark.parametrize("served", [1, 2], indirect=True, ids=["one-by-one", "parallel"])
def test_a_client_that_disconnects_cancels_its_generation(served: Served) -> None:
    with httpx.stream("POST", served.url + "/completions", json=served.body(**COUNTING)) as r:
        lines = r.iter_lines()  # held: dropping the iterator would close the stream
        assert next(line for line in lines if line.startswith("data: "))
        assert served.scheduler.busy
        closed = time.perf_counter()
    wait_until(lambda: not served.scheduler.busy, timeout=5)
    elapsed = time.perf_counter() - closed
    print(f"generation stopped {elapsed * 1000:.0f} ms after the client left")
    assert elapsed < 0.5  # target 100 ms; a loaded 2-core machine needs slack


def test_a_full_queue_answers_503_and_a_slow_reader_stalls_no_one(served: Served) -> None:
    url = served.url + "/completions"
    with httpx.stream("POST", url, json=served.body(**COUNTING)) as slow:
        lines = slow.iter_lines()  # held: dropping the iterator would close the stream
        assert next(line for line in lines if line.startswith("data: "))
        results: list[httpx.Response] = []
        queued = threading.Thread(
            target=lambda: results.append(
                httpx.post(url, json=served.body(prompt="Hi", max_tokens=4), timeout=300)
            )
        )
        queued.start()
        wait_until(lambda: served.scheduler.queued == 1)
        full = httpx.post(url, json=served.body(prompt="Hi", max_tokens=4))
        assert full.status_code == 503 and full.headers["Retry-After"] == "2"
        assert full.json()["error"]["code"] == "queue_full"
        # `slow` is not read any further: its reply still finishes, then the queued one runs.
        queued.join(300)
    assert results and results[0].status_code == 200
    assert results[0].json()["usage"]["completion_tokens"] == 4


def test_the_request_counter_sees_counts_never_content(served: Served) -> None:
    secret = "my secret prompt"
    reply = httpx.post(
        served.url + "/chat/completions",
        json=served.body(messages=[{"role": "user", "content": secret}], max_tokens=3),
        timeout=300,
    )
    assert reply.status_code == 200
    assert served.counted.wait(60)  # counted once the response has gone out
    assert served.handle.requests == len(served.records) == 1
    [record] = served.records
    assert (record.method, record.path, record.status) == ("POST", "/v1/chat/completions", 200)
    assert record.completion_tokens == 3 and record.prompt_tokens > 3
    assert secret not in json.dumps(record.__dict__)


def test_a_shared_model_serves_while_its_owner_keeps_its_conversation(starter_model: Path) -> None:
    """The app's case: the owner's engine keeps its KV cache and replies while the server
    answers from the same weights in a context of its own."""
    owner = Engine()
    owner.load(starter_model, probed(starter_model, OPTIONS))
    greedy = API_DEFAULTS.with_changes(temperature=0, max_tokens=16)
    chat = [Message("user", "Tell me about owls.")]
    try:
        before = done_of(owner.generate(chat, greedy))
        cached = owner.cached_tokens
        scheduler = Scheduler.sharing(owner, queue_size=2)
        handle = ServerHandle(scheduler, ServerConfig(port=0))
        scheduler.start()
        try:
            url = handle.start()
            assert scheduler.wait_loaded(60) is State.READY
            assert scheduler.model is not None
            body = {
                "model": scheduler.model.id,
                "messages": [{"role": "user", "content": "Tell me about owls."}],
                "temperature": 0,
                "max_tokens": 16,
            }
            results: list[httpx.Response] = []
            api = threading.Thread(
                target=lambda: results.append(
                    httpx.post(url + "/chat/completions", json=body, timeout=300)
                )
            )
            api.start()
            during = done_of(owner.generate(chat, greedy))  # the owner generates meanwhile
            api.join(300)
        finally:
            handle.stop()
            scheduler.stop()
        assert owner.cached_tokens[: len(cached)] == cached
        assert during.text == before.text
        assert results[0].status_code == 200
        assert results[0].json()["choices"][0]["message"]["content"] == before.text
    finally:
        owner.close()


def done_of(events: Iterator[Any]) -> GenerationDone:
    *_, done = events
    assert isinstance(done, GenerationDone)
    return done
