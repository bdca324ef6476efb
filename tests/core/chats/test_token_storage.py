"""Token data beside replies: saved with the streaming text, finished in one chunk, migrated."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.chats import schema as schema_module
from app.core.chats.reply_writer import ReplyWriter
from app.core.chats.store import Store
from app.core.errors import StoreError
from app.core.inference.sampling import SamplingSettings
from app.core.inference.token_data import TokenRecord, TopToken

COOL = SamplingSettings(temperature=0.2)
WARM = SamplingSettings(temperature=1.4)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def record(i: int, settings: SamplingSettings = COOL) -> TokenRecord:
    top = tuple(TopToken(i * 3 + k, f"t{i}.{k}".encode(), -0.5 * (k + 1)) for k in range(10))
    return TokenRecord(i * 3, f"t{i}.0".encode(), -0.5, top, settings)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "db.sqlite3") as opened:
        yield opened


def start(store: Store) -> int:
    chat = store.create_conversation("c")
    user = store.add_user_message(chat.id, "hi")
    return store.start_reply(user.id, model="m.gguf", settings=COOL).id


def test_streaming_saves_keep_the_records_with_the_text_and_finish_packs_one_chunk(
    store: Store,
) -> None:
    reply = start(store)
    clock = Clock()
    writer = ReplyWriter(store, reply, interval=1.0, clock=clock)
    writer.append("a", [record(0), record(1)])
    assert store.token_data(reply) is None  # under a second: nothing written yet
    clock.now += 1.0
    writer.append("b", [record(2)])  # saves text "ab" and three records
    writer.append("c", [record(3, WARM)])  # unsaved
    saved = store.token_data(reply)
    assert saved is not None and store.message(reply).content == "ab"
    assert [r.token_id for r in saved.records] == [0, 3, 6]
    clock.now += 1.0
    writer.flush()
    saved = store.token_data(reply)
    assert saved is not None and [r.token_id for r in saved.records] == [0, 3, 6, 9]
    assert len(store.packed_token_data(reply)) == 2  # one chunk per save

    writer.finish("complete")
    final = store.token_data(reply)
    assert final is not None and final.records == tuple(writer.records)
    assert final.top_n == 10
    assert [(c.index, c.settings) for c in final.changes] == [(0, COOL), (3, WARM)]
    assert len(store.packed_token_data(reply)) == 1
    assert store.messages_with_token_data(store.message(reply).conversation_id) == {reply}


def test_tokens_without_text_are_kept_and_a_reply_without_records_has_no_token_data(
    store: Store,
) -> None:
    reply = start(store)
    writer = ReplyWriter(store, reply, interval=0.0)
    writer.append("", [record(0)])  # half a character: no text yet, still a token
    assert store.token_data(reply) is not None
    plain = start(store)
    other = ReplyWriter(store, plain, interval=0.0)
    other.append("text only")
    other.finish("complete")
    assert store.token_data(plain) is None


def test_zero_tokens_with_token_data_on_is_empty_not_missing(store: Store) -> None:
    reply = start(store)
    writer = ReplyWriter(store, reply)
    writer.append("", [])
    writer.finish("cancelled")
    data = store.token_data(reply)
    assert data is not None and len(data) == 0


def test_deleting_a_reply_deletes_its_token_data(store: Store) -> None:
    reply = start(store)
    writer = ReplyWriter(store, reply, interval=0.0)
    writer.append("x", [record(0)])
    writer.finish("complete")
    store.delete_message(reply)
    with store.transaction(write=False) as conn:
        assert conn.execute("SELECT count(*) FROM token_data").fetchone() == (0,)


def test_damaged_token_data_is_a_store_error_naming_the_message(store: Store) -> None:
    reply = start(store)
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO token_data (message_id, first_token, data) VALUES (?, 0, ?)",
            (reply, b"garbage"),
        )
    with pytest.raises(StoreError, match=f"message {reply} is damaged"):
        store.token_data(reply)


def test_opening_a_conversation_reads_no_token_data(store: Store) -> None:
    reply = start(store)
    with store.transaction() as conn:  # unreadable token data must not matter until asked
        conn.execute(
            "INSERT INTO token_data (message_id, first_token, data) VALUES (?, 0, ?)",
            (reply, b"garbage"),
        )
    conversation = store.message(reply).conversation_id
    assert [m.id for m in store.snapshot(conversation).path][-1] == reply


def test_an_old_database_migrates_and_its_replies_have_no_token_data(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(db, isolation_level=None)
    schema_module.MIGRATIONS[0](conn)  # schema version 1, as Hearth 0.1 wrote it
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO conversations (id, title, created_at, updated_at) VALUES (1, 'Old', 1, 1)"
    )
    conn.execute(
        "INSERT INTO messages (id, conversation_id, role, content, created_at) "
        "VALUES (1, 1, 'user', 'hello', 1)"
    )
    conn.execute(
        "INSERT INTO messages (id, conversation_id, parent_id, role, content, created_at) "
        "VALUES (2, 1, 1, 'assistant', 'an old reply', 2)"
    )
    conn.close()
    with Store(db) as store:
        assert store.schema_version == len(schema_module.MIGRATIONS) >= 2
        assert store.message(2).content == "an old reply"
        assert store.token_data(2) is None
        assert store.messages_with_token_data(1) == frozenset()
        new = store.start_reply(1, model="m.gguf", settings=COOL)
        writer = ReplyWriter(store, new.id)
        writer.append("new", [record(0)])
        writer.finish("complete")
        data = store.token_data(new.id)
        assert data is not None and data.records[0].piece == b"t0.0"
