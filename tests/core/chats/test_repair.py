"""`repair_database` on a real file with a damaged page: keep every readable row."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from app.core.chats.repair import RECOVERED_TITLE, check_database, repair_database
from app.core.chats.store import DB_FILE_NAME, Store
from app.core.errors import DatabaseDamagedError, StoreError

PAGE = 4096
T0 = 1_780_000_000.0


def build(db: Path, chats: int = 6, messages: int = 4) -> dict[int, list[str]]:
    """Conversations whose messages fill about a page each; returns their texts by id."""
    texts: dict[int, list[str]] = {}
    with Store(db) as store:
        for c in range(chats):
            chat = store.create_conversation(f"Chat {c}")
            texts[chat.id] = []
            for m in range(messages):
                text = f"chat{c}msg{m} " + "lorem ipsum " * 300
                store.add_user_message(chat.id, text)
                texts[chat.id].append(text)
        store.set_default_system_prompt("Be brief.")
    return texts


def damage_page_holding(db: Path, needle: str) -> int:
    """Overwrite the table page that holds `needle` with garbage; returns its page number."""
    data = bytearray(db.read_bytes())
    at = data.find(needle.encode())
    assert at > 0, "the text should be in the main file after a clean close"
    start = at - at % PAGE
    data[start : start + PAGE] = bytes((i * 37 + 11) % 256 for i in range(PAGE))
    db.write_bytes(bytes(data))
    return start // PAGE + 1


@pytest.fixture
def damaged(tmp_path: Path) -> tuple[Path, dict[int, list[str]]]:
    db = tmp_path / DB_FILE_NAME
    texts = build(db)
    damage_page_holding(db, "chat2msg1 ")
    return db, texts


def test_the_check_finds_the_damage(damaged: tuple[Path, dict[int, list[str]]]) -> None:
    db, _ = damaged
    assert check_database(db) != []
    with Store(db) as store, pytest.raises(DatabaseDamagedError, match="hearth repair"):
        store.messages(3)


def test_repair_recovers_every_readable_row_and_keeps_the_damaged_file(
    damaged: tuple[Path, dict[int, list[str]]],
) -> None:
    db, texts = damaged
    report = repair_database(db, now=T0)

    assert report.damaged_copy.name.startswith(f"{DB_FILE_NAME}.damaged-")
    assert report.damaged_copy.read_bytes()  # kept aside, as it was
    assert check_database(db) == []
    messages = next(t for t in report.tables if t.table == "messages")
    assert messages.lost >= 1 and messages.recovered >= 20
    assert report.lost == messages.lost  # conversations, presets, preferences: all intact

    with Store(db) as store:
        assert [c.title for c in store.list_conversations()] == [
            f"Chat {n}" for n in reversed(range(6))
        ]
        recovered = {chat: [m.content for m in store.messages(chat)] for chat in texts}
        # every conversation but the damaged one is whole; that one lost only what was on
        # the damaged page
        for chat, expected in texts.items():
            if chat != 3:
                assert recovered[chat] == expected
        assert "chat2msg1 " not in "".join(recovered[3])
        assert set(recovered[3]) <= set(texts[3])
        assert len(recovered[3]) >= 1
        assert store.default_system_prompt() == "Be brief."
        assert [h.conversation_id for h in store.search("chat4msg2")] == [5]  # index rebuilt
        snapshot = store.snapshot(3)  # the damaged chat opens: its tree is consistent
        assert snapshot.path

    lines = "\n".join(report.lines())
    assert f"messages: {messages.recovered} recovered, {messages.lost} lost" in lines
    assert str(report.damaged_copy) in lines


def test_messages_whose_conversation_was_lost_are_adopted(tmp_path: Path) -> None:
    db = tmp_path / DB_FILE_NAME
    build(db, chats=2, messages=2)
    with sqlite3.connect(db) as conn:  # as if the conversation's row had been unreadable
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("DELETE FROM conversations WHERE id = 1")
    conn.close()

    report = repair_database(db, now=T0)
    assert report.adopted_messages == 2
    with Store(db) as store:
        titles = sorted(c.title for c in store.list_conversations())
        assert titles == ["Chat 1", RECOVERED_TITLE]
        assert len(store.messages(1)) == 2


def test_a_file_that_is_not_a_database_is_set_aside_and_a_fresh_one_made(tmp_path: Path) -> None:
    db = tmp_path / DB_FILE_NAME
    db.write_bytes(b"garbage " * 1000)
    report = repair_database(db, now=T0)
    assert report.recovered == 0
    assert report.damaged_copy.read_bytes() == b"garbage " * 1000
    with Store(db) as store:
        assert store.list_conversations() == ()


def test_there_must_be_a_database_to_repair(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no database"):
        repair_database(tmp_path / DB_FILE_NAME)
