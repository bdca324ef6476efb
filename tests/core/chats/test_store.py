"""The SQLite store, on a real file: conversations, branches, streaming, search, migrations."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.chats import schema as schema_module
from app.core.chats.conversation import StoredMessage
from app.core.chats.reply_writer import ReplyWriter
from app.core.chats.search import fts_query
from app.core.chats.store import DB_FILE_NAME, Store
from app.core.errors import InvalidPresetNameError, RecordNotFoundError, StoreError
from app.core.inference.events import GenerationDone, GenerationStats, StopReason
from app.core.inference.sampling import SamplingSettings
from app.core.paths import app_paths

REPO = Path(__file__).resolve().parents[2]
WARM = SamplingSettings(temperature=1.2, seed=5)
COOL = SamplingSettings(temperature=0.2)


class Ticks:
    """A clock that moves one second per reading: ordering without sleeps."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / DB_FILE_NAME


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    with Store(db, clock=Ticks()) as opened:
        yield opened


def stats(text_tokens: int = 3, stop: StopReason = StopReason.END_OF_TURN) -> GenerationStats:
    return GenerationStats(
        prompt_tokens=10,
        cached_tokens=0,
        prefill_ms=5.0,
        prefill_tps=2000.0,
        ttft_ms=12.0,
        completion_tokens=text_tokens,
        decode_ms=30.0,
        decode_tps=100.0,
        stop_reason=stop,
        seed=1234,
    )


def turn(store: Store, conversation_id: int, question: str, answer: str) -> StoredMessage:
    """A user message and a finished reply; returns the reply."""
    user = store.add_user_message(conversation_id, question)
    reply = store.start_reply(user.id, model="tiny.gguf", settings=WARM)
    finished = store.finish_reply(reply.id, answer, "complete", stats=stats())
    assert finished is not None
    return finished


def ids(path: tuple[StoredMessage, ...]) -> list[int]:
    return [m.id for m in path]


def contents(path: tuple[StoredMessage, ...]) -> list[str]:
    return [m.content for m in path]


# --- opening ------------------------------------------------------------------------------


def test_the_file_lives_in_the_data_dir_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    paths = app_paths(tmp_path / "home").ensure()
    with Store.open(paths) as store, store.transaction(write=False) as conn:
        assert store.path == paths.data / "hearth.sqlite3"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert store.schema_version == len(schema_module.MIGRATIONS)
    assert (paths.data / "hearth.sqlite3").is_file()


def test_a_file_that_is_not_a_database_is_named_in_the_error(tmp_path: Path) -> None:
    bad = tmp_path / "hearth.sqlite3"
    bad.write_bytes(b"this is not sqlite " * 100)
    with pytest.raises(StoreError, match=r"hearth\.sqlite3") as caught:
        Store(bad)
    assert caught.value.path == bad


def test_closed_store_says_so(db: Path) -> None:
    store = Store(db)
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.list_conversations()


# --- migrations ---------------------------------------------------------------------------


def test_an_empty_version_0_database_is_migrated_to_the_latest(db: Path) -> None:
    db.parent.mkdir(parents=True)
    sqlite3.connect(db).close()
    with Store(db) as store:
        assert store.schema_version == len(schema_module.MIGRATIONS) >= 1
        conversation = store.create_conversation("works")
        assert store.list_conversations() == (conversation,)


def make_version_1_database(db: Path) -> None:
    """A database as Hearth's first schema left it, with one conversation and message."""
    db.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db, isolation_level=None)
    schema_module.MIGRATIONS[0](conn)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO conversations (id, title, created_at, updated_at) VALUES (1, 'Old', 1, 1)"
    )
    conn.execute(
        "INSERT INTO messages (id, conversation_id, role, content, created_at) "
        "VALUES (1, 1, 'user', 'an old lighthouse', 1)"
    )
    conn.close()


def test_a_version_1_database_gets_only_the_migrations_it_lacks(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_version_1_database(db)

    def add_archived_column(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE conversations ADD COLUMN archived INTEGER NOT NULL DEFAULT 0")

    # Migration 1 re-run would fail: its CREATE TABLEs have no IF NOT EXISTS.
    monkeypatch.setattr(
        schema_module, "MIGRATIONS", [*schema_module.MIGRATIONS, add_archived_column]
    )
    with Store(db) as store:
        assert store.schema_version == len(schema_module.MIGRATIONS)
        assert [c.title for c in store.list_conversations()] == ["Old"]
        assert store.messages(1)[0].content == "an old lighthouse"
        assert [h.message_id for h in store.search("lighthouse")] == [1]
        with store.transaction(write=False) as conn:
            assert conn.execute("SELECT archived FROM conversations").fetchone() == (0,)


def test_a_failing_migration_leaves_the_database_as_it_was(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_version_1_database(db)

    def half_done(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half (x)")
        raise sqlite3.OperationalError("disk trouble")

    known = len(schema_module.MIGRATIONS)
    monkeypatch.setattr(schema_module, "MIGRATIONS", [*schema_module.MIGRATIONS, half_done])
    with pytest.raises(StoreError, match=f"version {known + 1} failed"):
        Store(db)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone() == (known,)  # the good ones stay
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'half'").fetchone() is None
    conn.close()


def test_a_database_from_a_newer_hearth_is_refused(db: Path) -> None:
    make_version_1_database(db)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        Store(db)


# --- conversations ------------------------------------------------------------------------


def test_conversations_list_pinned_first_then_most_recently_active(store: Store) -> None:
    first = store.create_conversation("first")
    second = store.create_conversation("second")
    third = store.create_conversation("third")
    assert [c.title for c in store.list_conversations()] == ["third", "second", "first"]
    store.add_user_message(first.id, "bump")
    assert [c.title for c in store.list_conversations()] == ["first", "third", "second"]
    store.set_pinned(second.id, True)
    assert [c.title for c in store.list_conversations()] == ["second", "first", "third"]
    renamed = store.rename_conversation(third.id, "Third, renamed")
    assert renamed.title == "Third, renamed"
    assert [c.id for c in store.list_conversations()] == [second.id, first.id, third.id]
    assert store.set_pinned(second.id, False).pinned is False


def test_unknown_ids_raise_record_not_found(store: Store) -> None:
    with pytest.raises(RecordNotFoundError, match="42"):
        store.conversation(42)
    with pytest.raises(RecordNotFoundError):
        store.rename_conversation(42, "x")
    with pytest.raises(RecordNotFoundError):
        store.add_user_message(42, "hello")
    with pytest.raises(RecordNotFoundError):
        store.start_reply(42, model="m", settings=WARM)


def test_soft_delete_can_be_undone_and_purge_removes_for_good(store: Store) -> None:
    keep = store.create_conversation("keep")
    gone = store.create_conversation("gone")
    turn(store, gone.id, "q", "a")
    store.delete_conversation(gone.id)
    assert [c.id for c in store.list_conversations()] == [keep.id]
    assert [c.id for c in store.list_conversations(deleted=True)] == [gone.id]
    store.restore_conversation(gone.id)
    assert {c.id for c in store.list_conversations()} == {keep.id, gone.id}
    assert len(store.messages(gone.id)) == 2

    store.delete_conversation(gone.id)
    assert store.purge_deleted() == 1
    with pytest.raises(RecordNotFoundError):
        store.conversation(gone.id)
    assert store.messages(gone.id) == ()
    assert store.purge_deleted() == 0
    assert store.conversation(keep.id).title == "keep"


def test_purge_can_keep_recently_deleted_conversations(db: Path) -> None:
    clock = Ticks()
    with Store(db, clock=clock) as store:
        old = store.create_conversation("old")
        recent = store.create_conversation("recent")
        store.delete_conversation(old.id)
        cutoff = clock.now + 0.5  # between the two deletions
        store.delete_conversation(recent.id)
        assert store.purge_deleted(deleted_before=cutoff) == 1
        assert [c.id for c in store.list_conversations(deleted=True)] == [recent.id]


# --- messages and branches ----------------------------------------------------------------


def test_messages_append_to_the_branch_on_show(store: Store) -> None:
    chat = store.create_conversation()
    turn(store, chat.id, "Hi", "Hello!")
    turn(store, chat.id, "How are you?", "Fine.")
    path = store.active_path(chat.id)
    assert contents(path) == ["Hi", "Hello!", "How are you?", "Fine."]
    assert [m.role for m in path] == ["user", "assistant", "user", "assistant"]
    assert path[0].parent_id is None
    assert [m.parent_id for m in path[1:]] == [m.id for m in path[:-1]]


@pytest.mark.parametrize("stored_leaf", ["question", None])
def test_a_stale_or_missing_leaf_still_appends_at_the_newest_branch_end(
    store: Store, stored_leaf: str | None
) -> None:
    chat = store.create_conversation()
    reply = turn(store, chat.id, "Q", "A")
    leaf = reply.parent_id if stored_leaf else None
    with store.transaction() as conn:
        conn.execute("UPDATE conversations SET active_leaf_id = ? WHERE id = ?", (leaf, chat.id))
    follow_up = store.add_user_message(chat.id, "Q2")
    assert follow_up.parent_id == reply.id


def test_editing_a_user_message_forks_a_branch_and_switching_is_persisted(db: Path) -> None:
    with Store(db) as store:
        chat = store.create_conversation()
        turn(store, chat.id, "Hi", "Hello!")
        question = store.add_user_message(chat.id, "Capital of France?")
        reply = store.start_reply(question.id, model="m", settings=WARM)
        store.finish_reply(reply.id, "Paris.", "complete")

        edited = store.edit_user_message(question.id, "Capital of Spain?")
        assert edited.parent_id == question.parent_id
        assert contents(store.active_path(chat.id)) == ["Hi", "Hello!", "Capital of Spain?"]
        answer = store.start_reply(edited.id, model="m", settings=WARM)
        store.finish_reply(answer.id, "Madrid.", "complete")

        snapshot = store.snapshot(chat.id)
        assert snapshot.tree.sibling_position(edited.id) == (1, 2)
        back = store.select_branch(question.id)
        assert contents(back) == ["Hi", "Hello!", "Capital of France?", "Paris."]

    with Store(db) as reopened:
        assert contents(reopened.active_path(chat.id))[-1] == "Paris."
        assert reopened.conversation(chat.id).active_leaf_id == reply.id


def test_regenerating_a_reply_makes_a_sibling_version_with_its_own_settings(
    store: Store,
) -> None:
    chat = store.create_conversation()
    first = turn(store, chat.id, "Tell a joke", "Joke one.")
    second = store.regenerate(first.id, model="other.gguf", settings=COOL, seed=99)
    assert second.status == "streaming" and second.parent_id == first.parent_id
    store.finish_reply(second.id, "Joke two.", "complete")

    tree = store.tree(chat.id)
    assert [m.content for m in tree.siblings(second.id)] == ["Joke one.", "Joke two."]
    assert contents(store.active_path(chat.id))[-1] == "Joke two."
    again = store.message(second.id)
    assert (again.model, again.settings, again.seed) == ("other.gguf", COOL, 99)
    assert store.message(first.id).settings == WARM

    store.select_branch(first.id)
    assert contents(store.active_path(chat.id))[-1] == "Joke one."
    with pytest.raises(StoreError, match="reply"):
        store.regenerate(first.parent_id or 0, model="m", settings=WARM)
    with pytest.raises(StoreError, match="user messages"):
        store.edit_user_message(first.id, "not allowed")


def test_deleting_a_message_removes_its_subtree_and_shows_a_remaining_branch(
    store: Store,
) -> None:
    chat = store.create_conversation()
    first = turn(store, chat.id, "Q", "A1")
    second = store.regenerate(first.id, model="m", settings=WARM)
    store.finish_reply(second.id, "A2", "complete")
    follow_up = turn(store, chat.id, "Q2", "A3")
    assert contents(store.active_path(chat.id)) == ["Q", "A2", "Q2", "A3"]

    assert store.delete_message(second.id) == 3  # A2, Q2, A3
    assert contents(store.active_path(chat.id)) == ["Q", "A1"]
    with pytest.raises(RecordNotFoundError):
        store.message(follow_up.id)
    assert store.search("A3") == ()

    assert store.delete_message(first.parent_id or 0) == 2
    assert store.active_path(chat.id) == ()
    assert store.conversation(chat.id).active_leaf_id is None


def test_deleting_a_message_off_the_shown_branch_keeps_the_branch(store: Store) -> None:
    chat = store.create_conversation()
    first = turn(store, chat.id, "Q", "A1")
    second = store.regenerate(first.id, model="m", settings=WARM)
    store.finish_reply(second.id, "A2", "complete")
    store.select_branch(first.id)
    store.delete_message(second.id)
    assert contents(store.active_path(chat.id)) == ["Q", "A1"]


# --- streaming ----------------------------------------------------------------------------


def test_a_streaming_reply_is_saved_as_it_grows_then_finished(store: Store) -> None:
    chat = store.create_conversation()
    user = store.add_user_message(chat.id, "Count to three")
    reply = store.start_reply(user.id, model="/models/tiny.gguf", settings=WARM, seed=5)
    assert (reply.status, reply.content, reply.stats) == ("streaming", "", None)

    assert store.update_streaming_reply(reply.id, "one")
    assert store.update_streaming_reply(reply.id, "one two")
    assert store.message(reply.id).content == "one two"

    moved = WARM.with_changes(temperature=0.5)
    done = store.finish_reply(reply.id, "one two three", "complete", settings=moved, stats=stats())
    assert done is not None
    assert (done.status, done.content, done.settings) == ("complete", "one two three", moved)
    assert done.seed == 1234  # the seed the engine reports wins over the requested one
    assert done.stats == stats().to_dict()
    assert not store.update_streaming_reply(reply.id, "late text")
    assert store.message(reply.id).content == "one two three"


def test_finishing_keeps_start_settings_and_takes_the_seed_from_stats(store: Store) -> None:
    chat = store.create_conversation()
    user = store.add_user_message(chat.id, "Hi")
    reply = store.start_reply(user.id, model="m", settings=WARM)
    done = store.finish_reply(reply.id, "", "cancelled", stats=stats(0, StopReason.CANCELLED))
    assert done is not None
    assert (done.settings, done.seed, done.status) == (WARM, 1234, "cancelled")
    with pytest.raises(ValueError, match="streaming"):
        store.finish_reply(reply.id, "", "streaming")  # type: ignore[arg-type]


def test_a_reply_deleted_while_streaming_is_reported_stale(store: Store) -> None:
    chat = store.create_conversation()
    user = store.add_user_message(chat.id, "Hi")
    reply = store.start_reply(user.id, model="m", settings=WARM)
    store.delete_message(reply.id)
    assert not store.update_streaming_reply(reply.id, "text")
    assert store.finish_reply(reply.id, "text", "complete") is None


CRASHING_CHILD = textwrap.dedent(
    """
    import os, sys
    from app.core.inference.sampling import SamplingSettings
    from app.core.chats.store import Store

    store = Store(sys.argv[1])
    chat = store.create_conversation("crash")
    user = store.add_user_message(chat.id, "Write a poem")
    reply = store.start_reply(user.id, model="m", settings=SamplingSettings())
    store.update_streaming_reply(reply.id, "Roses are red, violets")
    print(reply.id, flush=True)
    os._exit(9)  # no close, no checkpoint: as if killed
    """
)


def test_a_reply_cut_off_by_a_crash_is_marked_interrupted_with_its_text(db: Path) -> None:
    db.parent.mkdir(parents=True)
    child = subprocess.run(
        [sys.executable, "-c", CRASHING_CHILD, str(db)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert child.returncode == 9, child.stderr
    reply_id = int(child.stdout)

    with Store(db) as store:
        assert store.message(reply_id).status == "streaming"
        assert store.search("violets") == ()  # streaming text is not indexed
        assert store.mark_interrupted_replies() == 1
        reply = store.message(reply_id)
        assert (reply.status, reply.content) == ("interrupted", "Roses are red, violets")
        assert [h.message_id for h in store.search("violets")] == [reply_id]
        assert store.mark_interrupted_replies() == 0


def test_closing_mid_reply_leaves_it_streaming_until_marked(db: Path) -> None:
    with Store(db) as store:
        chat = store.create_conversation()
        user = store.add_user_message(chat.id, "Hi")
        reply = store.start_reply(user.id, model="m", settings=WARM)
        store.update_streaming_reply(reply.id, "Hel")
    with Store(db) as store:
        store.mark_interrupted_replies()
        assert contents(store.active_path(chat.id)) == ["Hi", "Hel"]
        assert store.active_path(chat.id)[-1].status == "interrupted"


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_reply_writer_saves_at_most_once_per_interval(store: Store) -> None:
    chat = store.create_conversation()
    user = store.add_user_message(chat.id, "Hi")
    reply = store.start_reply(user.id, model="m", settings=WARM)
    clock = ManualClock()
    writer = ReplyWriter(store, reply.id, interval=1.0, clock=clock)

    writer.append("Hel")
    clock.now = 0.5
    writer.append("lo")
    assert store.message(reply.id).content == ""
    clock.now = 1.0
    writer.append(",")
    assert store.message(reply.id).content == "Hello,"
    writer.append(" world")
    writer.flush()
    assert store.message(reply.id).content == "Hello, world"
    assert writer.text == "Hello, world" and not writer.stale

    done = GenerationDone(text="Hello, world!", tail="!", tokens=(1, 2, 3), stats=stats())
    finished = writer.finish_generation(done, settings=COOL)
    assert finished is not None
    assert (finished.content, finished.status, finished.settings, finished.seed) == (
        "Hello, world!",
        "complete",
        COOL,
        1234,
    )


def test_reply_writer_turns_stale_when_its_reply_is_deleted(store: Store) -> None:
    chat = store.create_conversation()
    user = store.add_user_message(chat.id, "Hi")
    reply = store.start_reply(user.id, model="m", settings=WARM)
    writer = ReplyWriter(store, reply.id, interval=0.0)
    writer.append("a")
    assert not writer.stale
    store.delete_message(reply.id)
    writer.append("b")
    assert writer.stale
    assert writer.finish("cancelled") is None


def test_the_store_can_be_shared_by_a_worker_thread(store: Store) -> None:
    chat = store.create_conversation()
    user = store.add_user_message(chat.id, "Hi")
    reply = store.start_reply(user.id, model="m", settings=WARM)
    errors: list[BaseException] = []

    def stream() -> None:
        try:
            for i in range(300):
                store.update_streaming_reply(reply.id, "x" * i)
            store.finish_reply(reply.id, "done", "complete")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    worker = threading.Thread(target=stream)
    worker.start()
    while worker.is_alive():
        store.snapshot(chat.id)
        store.list_conversations()
        turn(store, store.create_conversation().id, "q", "a")
    worker.join()
    assert errors == []
    assert store.message(reply.id).content == "done"


def test_a_failed_transaction_writes_nothing(store: Store) -> None:
    chat = store.create_conversation("before")
    with pytest.raises(RuntimeError), store.transaction():
        store.rename_conversation(chat.id, "during")
        store.add_user_message(chat.id, "lost")
        raise RuntimeError("boom")
    assert store.conversation(chat.id).title == "before"
    assert store.messages(chat.id) == ()

    with store.transaction():
        store.rename_conversation(chat.id, "outer")
        with pytest.raises(RuntimeError), store.transaction():
            store.rename_conversation(chat.id, "inner")
            raise RuntimeError("inner only")
    assert store.conversation(chat.id).title == "outer"


# --- search -------------------------------------------------------------------------------


def test_search_finds_words_across_conversations_with_the_match_highlighted(
    store: Store,
) -> None:
    boats = store.create_conversation("Boats")
    turn(store, boats.id, "How do sailboats tack?", "The sailboat turns its bow through the wind.")
    lamps = store.create_conversation("Lamps")
    turn(store, lamps.id, "Who kept the lighthouse?", "The keeper trimmed the lamp each night.")

    hits = store.search("lighthouse")
    assert [(h.conversation_id, h.conversation_title, h.role) for h in hits] == [
        (lamps.id, "Lamps", "user")
    ]
    assert hits[0].marked() == "Who kept the [lighthouse]?"
    assert hits[0].segments() == (("Who kept the ", False), ("lighthouse", True), ("?", False))
    assert {h.conversation_id for h in store.search("the")} == {lamps.id, boats.id}
    assert [h.conversation_id for h in store.search("sail")] == [boats.id, boats.id]
    assert store.search("keeper lamp")[0].message_id == store.active_path(lamps.id)[-1].id
    assert store.search("keeper boats") == ()


def test_search_respects_deletion_and_restore(store: Store) -> None:
    chat = store.create_conversation()
    turn(store, chat.id, "quokka facts", "Quokkas smile.")
    store.delete_conversation(chat.id)
    assert store.search("quokka") == ()
    store.restore_conversation(chat.id)
    assert len(store.search("quokka")) == 2
    store.delete_conversation(chat.id)
    store.purge_deleted()
    assert store.search("quokka") == ()


def test_search_text_cannot_break_the_query(store: Store) -> None:
    chat = store.create_conversation()
    turn(store, chat.id, 'He said "NEAR" AND left - (quickly)', "ok")
    for text in ['"', "AND", "-", "(quickly", "NEAR(", "*", 'said "near', "   "]:
        store.search(text)
    assert len(store.search('"NEAR" AND')) == 1
    assert store.search("*") == ()
    assert fts_query('a "b" c') == '"a" """b""" "c"*'
    assert fts_query(" - * ") == ""


def test_search_ignores_case_and_accents(store: Store) -> None:
    chat = store.create_conversation()
    turn(store, chat.id, "Un café à Montréal", "Oui.")
    assert len(store.search("CAFE montreal")) == 1


# --- settings and presets -----------------------------------------------------------------


def test_conversation_settings_fall_back_to_the_global_default(db: Path) -> None:
    with Store(db) as store:
        chat = store.create_conversation()
        assert store.conversation_settings(chat.id) == SamplingSettings()
        store.set_default_settings(COOL)
        assert store.conversation_settings(chat.id) == COOL
        assert store.set_conversation_settings(chat.id, WARM).settings == WARM
        assert store.conversation_settings(chat.id) == WARM
    with Store(db) as store:
        assert store.conversation_settings(chat.id) == WARM
        store.set_conversation_settings(chat.id, None)
        assert store.conversation_settings(chat.id) == COOL
        assert store.default_settings() == COOL


def test_new_conversations_start_with_the_default_system_prompt(store: Store) -> None:
    assert store.create_conversation().system_prompt == ""
    store.set_default_system_prompt("You are terse.")
    assert store.create_conversation().system_prompt == "You are terse."
    assert store.create_conversation(system_prompt="Pirate.").system_prompt == "Pirate."
    chat = store.create_conversation()
    assert store.set_system_prompt(chat.id, "Poet.").system_prompt == "Poet."


def test_presets_can_be_saved_renamed_overwritten_and_deleted(db: Path) -> None:
    with Store(db) as store:
        assert store.presets() == {}
        store.save_preset("Story time", WARM)
        store.save_preset(" Code ", COOL)
        assert store.presets() == {"Code": COOL, "Story time": WARM}
        store.save_preset("story TIME", COOL)
        assert store.presets() == {"Code": COOL, "story TIME": COOL}
    with Store(db) as store:
        store.rename_preset("code", "Coding")
        assert store.presets() == {"Coding": COOL, "story TIME": COOL}
        assert store.delete_preset("Coding")
        assert not store.delete_preset("Coding")
        assert list(store.presets()) == ["story TIME"]
        with pytest.raises(RecordNotFoundError):
            store.rename_preset("missing", "x")
        with pytest.raises(InvalidPresetNameError, match="built-in"):
            store.save_preset("balanced", WARM)
        with pytest.raises(InvalidPresetNameError):
            store.save_preset("  ", WARM)


# --- a long conversation ------------------------------------------------------------------


def test_a_500_message_conversation_loads_with_its_branch(store: Store) -> None:
    chat = store.create_conversation("long")
    with store.transaction():
        for i in range(250):
            turn(store, chat.id, f"question {i}", f"answer {i} " * 20)
    # A regenerated reply halfway down, then the newest branch selected again.
    middle = store.active_path(chat.id)[249]
    side = store.regenerate(middle.id, model="m", settings=COOL)
    store.finish_reply(side.id, "a side branch", "complete")
    last = store.messages(chat.id)[-2]
    store.select_branch(last.id)

    snapshot = store.snapshot(chat.id)
    assert len(snapshot.tree) == 501
    assert len(snapshot.path) == 500
    assert snapshot.path[0].content == "question 0"
    assert snapshot.path[-1].content.startswith("answer 249")
    assert snapshot.tree.sibling_position(snapshot.path[249].id) == (0, 2)
