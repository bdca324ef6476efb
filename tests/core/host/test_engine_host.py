"""The engine host: the real engine in a child process, driven over pipes.

What crosses must be what the in-process engine gives (tokens, records, errors with their
attributes, live settings, cancel, KV snapshots), and what kills llama.cpp must kill the
child only, with a message naming the file and llama.cpp's last line.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.errors import ContextOverflowError, EngineCrashedError, EngineStateError
from app.core.host.engine_host import EngineHost, Notice
from app.core.host.protocol import TokenBatch
from app.core.inference.engine import Engine
from app.core.inference.events import GenerationDone, StopReason, TokenEvent
from app.core.inference.load_options import LoadOptions
from app.core.inference.messages import Message
from app.core.inference.sampling import SamplingSettings, SettingsHolder
from app.core.inference.token_data import TokenRecord, record_from_event
from app.core.server.app import ServerConfig
from tests.gguf_fuzz import write_crashing_gguf

OPTIONS = LoadOptions(n_ctx=512, n_threads=1)
GREEDY = SamplingSettings(temperature=0.0, repeat_penalty=1.0, max_tokens=24, seed=7)
HELLO = (Message("user", "Name three colours."),)
COUNT = (Message("user", "Count from 1 to 300, one number per line."),)


@pytest.fixture
def host(starter_model: Path) -> Iterator[EngineHost]:
    notices: list[Notice] = []
    engine_host = EngineHost(on_notice=notices.append)
    engine_host.notices = notices  # type: ignore[attr-defined]
    engine_host.load(starter_model, OPTIONS)
    yield engine_host
    engine_host.shutdown()
    assert not engine_host.running


def tokens_of(events: Iterator[object]) -> tuple[list[str], list[TokenRecord], GenerationDone]:
    texts: list[str] = []
    records: list[TokenRecord] = []
    done: GenerationDone | None = None
    for event in events:
        if isinstance(event, TokenBatch):
            texts.append(event.text)
            records.extend(event.records)
        elif isinstance(event, GenerationDone):
            done = event
    assert done is not None
    return texts, records, done


def test_a_reply_from_the_host_is_the_in_process_engines_token_for_token(
    host: EngineHost, starter_model: Path
) -> None:
    assert host.pid is not None and host.pid != os.getpid()
    texts, records, done = tokens_of(host.generate(HELLO, GREEDY))
    engine = Engine()
    try:
        engine.load(starter_model, OPTIONS)
        local = [e for e in engine.generate(HELLO, GREEDY) if isinstance(e, TokenEvent)]
        # Each token's inspector record was built in the host, with its bytes and
        # alternatives: exactly the record the app would build from the engine's event.
        expected = [record_from_event(e, engine.token_bytes) for e in local]
    finally:
        engine.close()
    assert [r.token_id for r in records] == [t.token_id for t in local]
    assert done.tokens == tuple(t.token_id for t in local)
    assert "".join(texts) == "".join(t.text for t in local)
    assert "".join(texts) + done.tail == done.text
    assert records == expected
    assert records[0].piece and records[0].top and records[0].top[0].piece
    assert host.cached_tokens[-len(done.tokens) + 1 :] == done.tokens[:-1]


def test_errors_cross_with_their_type_and_attributes(host: EngineHost) -> None:
    huge = (Message("user", "word " * 2000),)
    with pytest.raises(ContextOverflowError) as raised:
        list(host.generate(huge, GREEDY))
    assert raised.value.limit == 512 and raised.value.needed > 512
    assert "512" in raised.value.message
    # The host is still there, with its model.
    assert host.loaded is not None
    _texts, records, _done = tokens_of(host.generate(HELLO, GREEDY.with_changes(max_tokens=3)))
    assert records


def test_a_settings_change_mid_reply_reaches_the_host_before_its_next_token(
    host: EngineHost,
) -> None:
    holder = SettingsHolder(GREEDY.with_changes(max_tokens=300))
    seen = 0
    cut = GREEDY.with_changes(max_tokens=40)
    for event in host.generate(COUNT, holder):
        if isinstance(event, TokenBatch):
            seen += len(event.records)
            if seen >= 10 and holder.get() is not cut:
                holder.set(cut)
        elif isinstance(event, GenerationDone):
            assert event.stats.stop_reason is StopReason.MAX_TOKENS
            assert 10 <= event.stats.completion_tokens <= 40


def test_the_settings_are_watched_only_while_their_reply_runs(host: EngineHost) -> None:
    # A change wakes the waiting call at once (no polling); after the reply, nothing holds
    # on to the holder.
    holder = SettingsHolder(GREEDY.with_changes(max_tokens=8))
    watched: list[bool] = []
    for event in host.generate(HELLO, holder):
        if isinstance(event, TokenBatch):
            watched.append(holder.watched)
    assert watched and all(watched)
    assert not holder.watched


@pytest.mark.parametrize("mode", ["overlap", "inline"])
def test_tokens_leave_at_the_pace_asked_and_the_end_leaves_at_once(
    host: EngineHost, mode: str
) -> None:
    # Token data computed beside the decode or inline: the same batches and records.
    host.set_token_data_mode(mode)
    # A pace longer than any test: the first token leaves alone, the rest with the end of
    # the reply, which does not wait out the pace (else this test would time out).
    batches = [
        event.records
        for event in host.generate(HELLO, GREEDY.with_changes(max_tokens=12), batch_s=3600.0)
        if isinstance(event, TokenBatch)
    ]
    assert [len(records) for records in batches] == [1, 11]
    paced = [
        event
        for event in host.generate(HELLO, GREEDY.with_changes(max_tokens=12), batch_s=0.0)
        if isinstance(event, TokenBatch)
    ]
    assert len(paced) > 2
    host.set_token_data_mode("auto")
    assert [r for batch in paced for r in batch.records] == [r for b in batches for r in b]


def test_cancel_stops_a_reply_and_the_host_stays_usable(host: EngineHost) -> None:
    cancel = threading.Event()
    done: GenerationDone | None = None
    count = 0
    for event in host.generate(COUNT, GREEDY.with_changes(max_tokens=300), cancel=cancel):
        if isinstance(event, TokenBatch):
            count += len(event.records)
            cancel.set()
        elif isinstance(event, GenerationDone):
            done = event
    assert done is not None and done.stats.stop_reason is StopReason.CANCELLED
    assert done.stats.completion_tokens < 300
    assert host.loaded is not None


def test_a_kv_snapshot_round_trips_through_the_host(host: EngineHost) -> None:
    tokens_of(host.generate(HELLO, GREEDY.with_changes(max_tokens=4)))
    cached = host.cached_tokens
    snapshot = host.save_snapshot()
    assert snapshot.tokens == cached and snapshot.state
    host.clear_cache()
    assert host.cached_tokens == ()
    assert host.restore_snapshot(snapshot)
    assert host.cached_tokens == cached


def test_a_model_that_aborts_llama_cpp_ends_the_host_not_the_process(
    starter_model: Path, tmp_path: Path
) -> None:
    bad = write_crashing_gguf(tmp_path / "int-embeddings.gguf", "abort")
    host = EngineHost()
    try:
        with pytest.raises(EngineCrashedError) as raised:
            host.load(bad, OPTIONS)  # no probe here: straight into llama.cpp
        message = raised.value.message
        assert "int-embeddings.gguf" in message and "while loading" in message
        assert "abort" in raised.value.reason and "GGML" in raised.value.reason
        assert not host.running and host.loaded is None
        with pytest.raises(EngineStateError):
            host.n_ctx  # noqa: B018 - the property raises
        # The next load starts a fresh host.
        host.load(starter_model, OPTIONS)
        _texts, records, _done = tokens_of(host.generate(HELLO, GREEDY.with_changes(max_tokens=3)))
        assert records
    finally:
        host.shutdown()


def test_a_crash_mid_reply_is_an_error_after_the_tokens_already_sent(host: EngineHost) -> None:
    pid = host.pid
    assert pid is not None
    count = 0
    with pytest.raises(EngineCrashedError) as raised:
        for event in host.generate(COUNT, GREEDY.with_changes(max_tokens=300)):
            if isinstance(event, TokenBatch):
                count += len(event.records)
                if count >= 5:
                    os.kill(pid, signal.SIGSEGV)
    assert count >= 5
    assert "segmentation fault" in raised.value.reason
    assert "while writing a reply with SmolLM2" in raised.value.message
    assert host.loaded is None and not host.running


def test_the_api_server_runs_in_the_host_on_its_model(host: EngineHost) -> None:
    notices: list[Notice] = host.notices  # type: ignore[attr-defined]
    host.serve(ServerConfig(port=0), parallel=1)
    url = wait_for(notices, "serving")[1]
    with urllib.request.urlopen(f"{url}/models", timeout=30) as response:
        assert len(json.loads(response.read())["data"]) == 1
    wait_for(notices, "served")
    host.unserve()
    wait_for(notices, "unserved")
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/models", timeout=5)


def test_after_shutdown_no_thread_of_the_host_holds_it_or_its_owner(starter_model: Path) -> None:
    """The notice reader holds the host and, through `on_notice`, its owner (the app's
    worker, a Qt object). Once `shutdown` returns it must be gone, or it could drop the
    last reference to that Qt object on its own thread. A slow handler makes the reader
    finish late: the server's last notice arrives as the host stops."""
    notices: list[Notice] = []

    def slow_handler(notice: Notice) -> None:
        notices.append(notice)
        if notice[0] == "unserved":
            time.sleep(1.0)

    def readers() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "hearth-host-notices"}

    before = readers()
    host = EngineHost(on_notice=slow_handler)
    host.load(starter_model, OPTIONS)
    host.serve(ServerConfig(port=0), parallel=1)
    wait_for(notices, "serving")
    started = readers() - before
    assert len(started) == 1
    host.shutdown()
    assert not any(t.is_alive() for t in started)
    assert ("unserved",) in notices


def test_serving_without_a_model_says_so() -> None:
    notices: list[Notice] = []
    host = EngineHost(on_notice=notices.append)
    host.serve(ServerConfig(port=0), parallel=1)
    assert notices == [("serve_failed", "Load a model first: the API serves the model in use.")]


def wait_for(notices: list[Notice], kind: str, timeout: float = 60.0) -> Notice:
    """The first notice of `kind` (notices arrive on the host's reader thread)."""
    deadline = threading.Event()
    timer = threading.Timer(timeout, deadline.set)
    timer.start()
    try:
        while not deadline.is_set():
            for notice in list(notices):
                if notice[0] == kind:
                    return notice
            deadline.wait(0.02)
    finally:
        timer.cancel()
    raise AssertionError(f"no {kind!r} notice in {timeout} s: {notices}")


def test_a_reply_left_unread_is_cancelled_and_the_next_request_gets_its_own_answers(
    host: EngineHost,
) -> None:
    events = host.generate(COUNT, GREEDY.with_changes(max_tokens=300))
    assert isinstance(next(events), object)
    events.close()  # the caller walks away mid-reply
    _texts, records, done = tokens_of(host.generate(HELLO, GREEDY))
    assert records and done.stats.stop_reason is not StopReason.CANCELLED
    assert host.cached_tokens  # an answer of its own, not a leftover event


def test_a_host_that_never_answers_a_walked_away_reply_is_ended_not_waited_on(
    host: EngineHost, starter_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Closing a reply's stream waits for the host to answer its cancel, on whatever
    thread closes it (a garbage collection's, too): a hung host must not hold it forever."""
    monkeypatch.setattr("app.core.host.engine_host._ABANDON_S", 1.5)
    events = host.generate(COUNT, GREEDY.with_changes(max_tokens=300))
    next(events)
    pid = host.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # the host hangs mid-reply
    events.close()
    assert not host.running and host.loaded is None
    crash = host.take_crash()
    assert crash is not None and "stopped" in crash.message
    host.load(starter_model, OPTIONS)  # a new host, and it works
    _texts, records, _done = tokens_of(host.generate(HELLO, GREEDY))
    assert records


def test_the_cache_s_tokens_are_asked_of_the_host_only_after_they_may_have_changed(
    host: EngineHost,
) -> None:
    tokens_of(host.generate(HELLO, GREEDY.with_changes(max_tokens=4)))
    first = host.cached_tokens
    assert first and host.cached_tokens is first  # known: no second round trip
    tokens_of(host.generate(COUNT, GREEDY.with_changes(max_tokens=4)))
    after = host.cached_tokens
    assert after is not first and after != first  # a reply changed the cache: asked again
    host.clear_cache()
    assert host.cached_tokens == ()
