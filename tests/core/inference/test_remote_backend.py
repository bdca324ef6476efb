"""`RemoteBackend` against real servers on loopback: `hearth serve` and llama-cpp-python's
server with the starter model, a server killed mid-reply, one that never answers, and a
TLS endpoint with its own certificate authority."""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.core.errors import (
    RemoteAuthError,
    RemoteModelNotFoundError,
    RemoteTimeoutError,
    RemoteTLSError,
    RemoteUnreachableError,
)
from app.core.inference.backend import Backend
from app.core.inference.events import GenerationDone, StopReason, TokenEvent
from app.core.inference.messages import Message
from app.core.inference.remote import RemoteBackend
from app.core.inference.remote_http import Endpoint
from app.core.inference.sampling import SamplingSettings
from tests.core.inference.remote_servers import (
    SilentServer,
    llama_cpp_server,
    llama_cpp_server_available,
    make_tls_files,
)
from tests.core.server.conftest import Served, start_serve, stop_serve

HELLO = [Message("user", "Name three colours.")]
GREEDY = SamplingSettings(temperature=0.0, max_tokens=24, seed=5)


@pytest.fixture(scope="module")
def keyed(starter_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`hearth serve --api-key-file` (key "s3cret-key")."""
    home = tmp_path_factory.mktemp("remote-home")
    key_file = home.parent / "key.txt"
    key_file.write_text("s3cret-key\n")
    server = start_serve(home, starter_model, "--api-key-file", str(key_file))
    yield server
    stop_serve(server)


def connect(served: Served, **kw: Any) -> RemoteBackend:
    return RemoteBackend(Endpoint(served.url, api_key="s3cret-key", **kw), served.model)


def run(backend: RemoteBackend, **kw: Any) -> tuple[list[TokenEvent], GenerationDone]:
    events = list(backend.generate(HELLO, kw.pop("settings", GREEDY), **kw))
    done = events[-1]
    assert isinstance(done, GenerationDone)
    return [e for e in events if isinstance(e, TokenEvent)], done


def test_streamed_reply_with_probabilities_usage_and_client_timings(keyed: Served) -> None:
    backend = connect(keyed)
    try:
        assert isinstance(backend, Backend)
        assert backend.kind == "hearth" and backend.n_ctx == 2048
        tokens, done = run(backend, top_n=5)
        assert done.text == "".join(t.text for t in tokens) and done.text
        assert all(len(t.alternatives) == 5 for t in tokens)
        assert all(0 < t.prob <= 1 for t in tokens)
        assert tokens[0].alternatives[0].prob >= tokens[0].alternatives[-1].prob
        assert backend.token_text(tokens[0].token_id).strip()
        stats = done.stats
        assert stats.completion_tokens == len(tokens) and stats.prompt_tokens > 10
        assert stats.ttft_ms > 0 and stats.decode_tps > 0
        assert stats.stop_reason in (StopReason.MAX_TOKENS, StopReason.END_OF_TURN)
        caps = backend.capabilities
        assert caps.token_probabilities and not caps.full_distribution
        assert not caps.kv_snapshots and not caps.live_settings
        assert not caps.exact_token_counts  # hearth serve has no /tokenize
        assert {"top_k", "min_p", "repeat_penalty"} <= caps.samplers
        # The same request not streamed (plain HTTP, the same sampler fields) gives the
        # same greedy text.
        body = {**backend._body(HELLO, GREEDY, 5, 0), "stream": False}
        del body["stream_options"]
        whole = httpx.post(
            keyed.url + "/chat/completions",
            headers={"Authorization": "Bearer s3cret-key"},
            json=body,
            timeout=120,
        ).json()
        assert whole["choices"][0]["message"]["content"] == done.text
        assert whole["usage"]["completion_tokens"] == done.stats.completion_tokens
    finally:
        backend.close()


def test_stop_closes_the_stream_at_once(keyed: Served) -> None:
    backend = connect(keyed)
    cancel = threading.Event()
    long = SamplingSettings(max_tokens=1500, seed=1, temperature=1.0)
    stopped_at = 0.0
    try:
        for event in backend.generate(
            [Message("user", "Tell a very long story.")], long, cancel=cancel
        ):
            if isinstance(event, TokenEvent) and not cancel.is_set():
                cancel.set()
                stopped_at = time.perf_counter()
            if isinstance(event, GenerationDone):
                assert event.stats.stop_reason is StopReason.CANCELLED
                assert time.perf_counter() - stopped_at < 1.0
        # The server is free again at once: the next reply is not queued behind it.
        _, done = run(backend, settings=SamplingSettings(max_tokens=4, seed=2))
        assert done.stats.completion_tokens >= 1
    finally:
        backend.close()


def test_wrong_key_and_unknown_model(keyed: Served) -> None:
    with pytest.raises(RemoteAuthError, match="refused the API key") as wrong:
        RemoteBackend(Endpoint(keyed.url, api_key="nope"), keyed.model)
    assert wrong.value.status == 401 and "nope" not in wrong.value.message
    with pytest.raises(RemoteAuthError, match="needs an API key"):
        RemoteBackend(Endpoint(keyed.url), keyed.model)
    with pytest.raises(RemoteModelNotFoundError, match="no-such-model"):
        RemoteBackend(Endpoint(keyed.url, api_key="s3cret-key"), "no-such-model")


def test_no_connection_goes_anywhere_but_the_endpoint(keyed: Served) -> None:
    seen: list[Any] = []
    recording = threading.Event()

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if recording.is_set() and event == "socket.connect":
            seen.append(args[1])

    sys.addaudithook(hook)  # hooks cannot be removed: it records only while `recording`
    port = int(keyed.url.split(":")[2].split("/")[0])
    recording.set()
    try:
        backend = connect(keyed)
        run(backend, settings=SamplingSettings(max_tokens=4, seed=3))
        backend.tokenize("hello")
        backend.close()
    finally:
        recording.clear()
    assert seen and all(address == ("127.0.0.1", port) for address in seen), seen


def test_a_server_killed_mid_reply_keeps_the_partial_text(
    starter_model: Path, tmp_path: Path
) -> None:
    served = start_serve(tmp_path / "home", starter_model)
    backend = RemoteBackend(Endpoint(served.url), served.model)
    texts: list[str] = []
    try:
        for event in backend.generate(
            [Message("user", "Tell a very long story.")],
            SamplingSettings(max_tokens=1500, seed=1),
        ):
            if isinstance(event, TokenEvent):
                texts.append(event.text)
                if len(texts) == 3:
                    served.process.send_signal(signal.SIGKILL)
            elif isinstance(event, GenerationDone):
                done = event
    finally:
        backend.close()
        served.process.wait()
        assert served.process.stdout is not None
        served.process.stdout.close()
    assert done.stats.stop_reason is StopReason.INTERRUPTED
    assert done.text == "".join(texts) and len(texts) >= 3
    assert "broke mid-reply" in done.note and "partial reply is kept" in done.note
    with pytest.raises(RemoteUnreachableError, match="connection refused"):
        RemoteBackend(Endpoint(served.url), served.model)


class _Hanging(BaseHTTPRequestHandler):
    """Lists one model, then accepts a chat request and never answers it."""

    release = threading.Event()

    def do_GET(self) -> None:
        body = json.dumps({"data": [{"id": "m", "owned_by": "x"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        if "/tokenize" in self.path:
            self.send_error(404)
            return
        self.release.wait(30)

    def log_message(self, *_: object) -> None:
        pass


def test_a_server_that_never_answers_times_out_before_the_first_token() -> None:
    silent = SilentServer()
    try:
        with pytest.raises(RemoteTimeoutError, match="sent nothing for 1 s"):
            RemoteBackend(Endpoint(f"http://127.0.0.1:{silent.port}", read_timeout_s=1), "m")
    finally:
        silent.close()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hanging)
    thread = threading.Thread(target=server.serve_forever, name="hanging-server")
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        backend = RemoteBackend(Endpoint(url, read_timeout_s=1), "m")
        assert backend.kind == "openai" and not backend.capabilities.exact_token_counts
        assert backend.capabilities.samplers == {
            "temperature", "top_p", "presence_penalty", "frequency_penalty", "seed",
            "max_tokens", "stop",
        }  # fmt: skip
        with pytest.raises(RemoteTimeoutError, match="sent no token for 1 s"):
            run(backend)
        # Stop reaches a request still waiting for its first byte.
        cancel = threading.Event()
        timer = threading.Timer(0.3, cancel.set)
        timer.start()
        started = time.perf_counter()
        _, done = run(RemoteBackend(Endpoint(url, read_timeout_s=20), "m"), cancel=cancel)
        assert done.stats.stop_reason is StopReason.CANCELLED
        assert time.perf_counter() - started < 3
        backend.close()
    finally:
        _Hanging.release.set()
        server.shutdown()
        server.server_close()
        thread.join()


needs_llama_cpp_server = pytest.mark.skipif(
    llama_cpp_server_available() is not None, reason=str(llama_cpp_server_available())
)


@needs_llama_cpp_server
def test_llama_cpp_python_server_tokens_probabilities_and_exact_counts(
    starter_model: Path, tmp_path: Path
) -> None:
    with llama_cpp_server(starter_model, tmp_path / "server.log") as server:
        backend = RemoteBackend(Endpoint(server.url), None)
        try:
            assert backend.model == "smol" and backend.kind == "llama-cpp-python"
            assert backend.capabilities.exact_token_counts  # /extras/tokenize
            assert len(backend.tokenize("Hello world, again")) == 4
            tokens, done = run(backend, top_n=3)
            assert done.text == "".join(t.text for t in tokens) and done.text
            # no usage in its stream: the counts are the plan's (its tokenizer) and ours
            assert done.stats.completion_tokens == len(tokens) and done.stats.prompt_tokens > 4
            assert backend.capabilities.token_probabilities == any(t.alternatives for t in tokens)
            if backend.capabilities.token_probabilities:
                assert all(0 < t.prob <= 1 for t in tokens)
            else:
                assert all(math.isnan(t.prob) for t in tokens)
        finally:
            backend.close()


@needs_llama_cpp_server
def test_self_signed_tls_is_refused_then_accepted_with_its_ca(
    starter_model: Path, tmp_path: Path
) -> None:
    ca, cert, key = make_tls_files(tmp_path)
    with llama_cpp_server(starter_model, tmp_path / "server.log", cert=cert, key=key) as server:
        with pytest.raises(RemoteTLSError, match="certificate was refused") as refused:
            RemoteBackend(Endpoint(server.url), None)
        assert "issuer certificate" in refused.value.problem
        backend = RemoteBackend(Endpoint(server.url, ca_bundle=ca), None)
        try:
            _, done = run(backend, settings=SamplingSettings(max_tokens=3, seed=1))
            assert done.stats.completion_tokens >= 1
        finally:
            backend.close()
