"""Export to JSON and Markdown, import back: branches, settings and stats survive."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.core.chats.export_import import (
    FORMAT,
    VERSION,
    TransferError,
    export_document,
    export_json,
    export_markdown,
    import_document,
    import_file,
    parse_document,
)
from app.core.chats.reply_writer import ReplyWriter
from app.core.chats.store import Store
from app.core.inference.events import GenerationStats, StopReason
from app.core.inference.sampling import SamplingSettings
from app.core.inference.token_data import TokenRecord, TopToken

WARM = SamplingSettings(temperature=1.2, top_k=80, seed=5, stop=("END",))
COOL = SamplingSettings(temperature=0.2, max_tokens=None)


class Clock:
    """Times with fractions of a second, so rounding in the format would show."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 0.3337
        return self.now


def stats(tokens: int, stop: StopReason = StopReason.END_OF_TURN) -> GenerationStats:
    return GenerationStats(
        prompt_tokens=30,
        cached_tokens=12,
        prefill_ms=8.5,
        prefill_tps=2117.6,
        ttft_ms=15.25,
        completion_tokens=tokens,
        decode_ms=200.0,
        decode_tps=31.46,
        stop_reason=stop,
        seed=4242,
        dropped_messages=(1,),
    )


def fill(store: Store) -> tuple[int, int]:
    """Two conversations: one with an edit branch, a regeneration and odd statuses."""
    trip = store.create_conversation("Trip to Lisbon", system_prompt="You are a travel guide.")
    store.set_conversation_settings(trip.id, COOL)
    store.set_pinned(trip.id, True)
    q1 = store.add_user_message(trip.id, "Where should I eat? 🍽️")
    a1 = store.start_reply(q1.id, model="/models/tiny-Q4_K_M.gguf", settings=WARM)
    store.finish_reply(a1.id, "Try the *pastéis* in Belém.", "complete", stats=stats(9))
    a2 = store.regenerate(a1.id, model="/models/other.gguf", settings=COOL, seed=7)
    store.finish_reply(a2.id, "Time Out Market.", "cancelled", stats=stats(3, StopReason.CANCELLED))
    store.select_branch(a1.id)  # back to the first version, and go on from there
    q2 = store.add_user_message(trip.id, "And for dessert?")
    a3 = store.start_reply(q2.id, model="/models/tiny-Q4_K_M.gguf", settings=WARM)
    store.finish_reply(a3.id, "Model failed", "error")
    edited = store.edit_user_message(q2.id, "And for coffee?")
    a4 = store.start_reply(edited.id, model="/models/tiny-Q4_K_M.gguf", settings=WARM)
    store.update_streaming_reply(a4.id, "A bica at")
    store.mark_interrupted_replies()

    notes = store.create_conversation("Notes")
    q = store.add_user_message(notes.id, "Remember: milk")
    r = store.start_reply(q.id, model="tiny.gguf", settings=SamplingSettings())
    store.finish_reply(r.id, "Noted.", "complete", stats=stats(2))
    return trip.id, notes.id


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "a.sqlite3", clock=Clock()) as opened:
        yield opened


@pytest.fixture
def other(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "b.sqlite3", clock=Clock()) as opened:
        yield opened


def comparable(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The document without its ids (parents and the active leaf become positions)."""
    result = []
    for conversation in document["conversations"]:
        position = {m["id"]: i for i, m in enumerate(conversation["messages"])}
        messages = [
            {**{k: v for k, v in m.items() if k != "id"}, "parent": position.get(m["parent"])}
            for m in conversation["messages"]
        ]
        result.append(
            {
                **{k: v for k, v in conversation.items() if k != "id"},
                "active_leaf": position.get(conversation["active_leaf"]),
                "messages": messages,
            }
        )
    return result


def test_export_import_export_reproduces_branches_settings_and_stats(
    store: Store, other: Store
) -> None:
    fill(store)
    first = export_document(store)
    imported = import_document(other, json.loads(json.dumps(first)))
    second = export_document(other)

    assert comparable(second) == comparable(first)
    assert [c.title for c in imported] == ["Trip to Lisbon", "Notes"]
    assert [c["title"] for c in first["conversations"]] == ["Trip to Lisbon", "Notes"]
    trip = first["conversations"][0]
    assert len(trip["messages"]) == 7
    assert trip["settings"] == COOL.to_dict() and trip["pinned"] is True


def test_imported_trees_have_the_same_shape_and_branch_on_show(store: Store, other: Store) -> None:
    trip_id, _ = fill(store)
    [trip, _notes] = import_document(other, export_document(store))
    original, copy = store.snapshot(trip_id), other.snapshot(trip.id)

    assert [m.content for m in copy.path] == [m.content for m in original.path]
    assert [m.content for m in copy.path] == [
        "Where should I eat? 🍽️",
        "Try the *pastéis* in Belém.",
        "And for coffee?",
        "A bica at",
    ]
    for a, b in zip(original.tree.messages, copy.tree.messages, strict=True):
        assert original.tree.sibling_position(a.id) == copy.tree.sibling_position(b.id)
        assert (a.role, a.status, a.model, a.settings, a.seed, a.stats) == (
            b.role,
            b.status,
            b.model,
            b.settings,
            b.seed,
            b.stats,
        )
    statuses = [m.status for m in copy.tree.messages]
    assert statuses.count("interrupted") == 1 and statuses.count("error") == 1
    assert copy.conversation.system_prompt == "You are a travel guide."
    assert other.conversation_settings(trip.id) == COOL


def test_json_messages_carry_openai_role_and_content_first(store: Store) -> None:
    fill(store)
    document = json.loads(export_json(store))
    assert (document["format"], document["version"]) == (FORMAT, VERSION)
    message = document["conversations"][1]["messages"][1]
    assert list(message)[:2] == ["role", "content"]
    assert message["role"] == "assistant" and message["content"] == "Noted."
    assert message["settings"] == SamplingSettings().to_dict()
    assert message["stats"]["completion_tokens"] == 2
    assert message["created_at"].endswith("Z")


def test_export_picks_conversations_and_skips_the_bin(store: Store) -> None:
    trip_id, notes_id = fill(store)
    assert [c["title"] for c in export_document(store, [notes_id])["conversations"]] == ["Notes"]
    store.delete_conversation(notes_id)
    assert [c["id"] for c in export_document(store)["conversations"]] == [trip_id]


def test_importing_twice_makes_copies(store: Store, tmp_path: Path) -> None:
    fill(store)
    path = tmp_path / "export.json"
    path.write_text(export_json(store), encoding="utf-8")
    import_file(store, path)
    assert [c.title for c in store.list_conversations()].count("Notes") == 2


def test_markdown_shows_the_branch_on_show_with_reply_stats(store: Store) -> None:
    trip_id, _ = fill(store)
    text = export_markdown(store, [trip_id])
    assert text.startswith("# Trip to Lisbon\n")
    assert "> You are a travel guide." in text
    assert "## You\n\nWhere should I eat? 🍽️\n" in text
    assert "## Assistant · tiny-Q4_K_M.gguf\n\nTry the *pastéis* in Belém.\n" in text
    assert (
        "*9 tokens · prompt 30 tokens (12 cached, 18 read) · 31.5 tokens/s · "
        "first token 15 ms · stop: end of turn · seed 4242 · "
        "temperature 1.2, top-k 80, top-p 0.95, min-p 0.05, repeat penalty 1.1, "
        "max tokens 1024*"
    ) in text
    assert "A bica at\n\n*interrupted · temperature 1.2" in text
    # Other versions are not on show.
    assert "Time Out Market" not in text and "dessert" not in text


def test_markdown_of_several_conversations_separates_them(store: Store) -> None:
    fill(store)
    text = export_markdown(store)
    assert text.count("\n---\n") == 1
    assert text.index("# Trip to Lisbon") < text.index("# Notes")


def doc(**conversation: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"title": "t", "messages": []}
    return {"format": FORMAT, "version": 1, "conversations": [{**base, **conversation}]}


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ([], "must be a JSON object"),
        ({"format": "chatgpt"}, "not a Hearth export"),
        ({"format": FORMAT, "version": 99, "conversations": []}, "newer"),
        ({"format": FORMAT, "version": "1", "conversations": []}, "whole number"),
        ({"format": FORMAT, "version": 1, "conversations": {}}, "must be a JSON list"),
        (doc(messages=[{"id": 1, "role": "system", "content": "x"}]), '"role"'),
        (doc(messages=[{"id": 1, "role": "user", "content": 3}]), "content must be text"),
        (doc(messages=[{"id": 2, "parent": 1, "role": "user", "content": "x"}]), "parent 1"),
        (
            doc(
                messages=[
                    {"id": 1, "role": "user", "content": "x"},
                    {"id": 1, "role": "user", "content": "y"},
                ]
            ),
            "repeats id 1",
        ),
        (doc(settings={"temperature": 9}), "temperature must be between"),
        (doc(messages=[{"role": "user", "content": "x"}]), 'needs an "id"'),
        (doc(created_at="yesterday"), "ISO 8601"),
        (doc(messages=[{"id": 1, "role": "user", "content": "x", "status": "ok"}]), "status"),
    ],
)
def test_bad_documents_are_refused_naming_the_source_and_place(document: Any, problem: str) -> None:
    with pytest.raises(TransferError, match=r"^chats\.json: ") as caught:
        parse_document(document, source="chats.json")
    assert problem in str(caught.value)
    assert "\n" not in str(caught.value)


def test_nothing_is_imported_when_any_conversation_is_bad(store: Store) -> None:
    good = {"title": "good", "messages": [{"id": 1, "role": "user", "content": "hi"}]}
    bad = {"title": "bad", "messages": [{"id": 1, "role": "robot", "content": "hi"}]}
    document = {"format": FORMAT, "version": 1, "conversations": [good, bad]}
    with pytest.raises(TransferError, match=r"conversations\[1\]\.messages\[0\]"):
        import_document(store, document)
    assert store.list_conversations() == ()


def test_a_minimal_document_imports_with_defaults(store: Store) -> None:
    document = doc(
        messages=[
            {"id": 10, "role": "user", "content": "hi"},
            {"id": 11, "parent": 10, "role": "assistant", "content": "he", "status": "streaming"},
        ]
    )
    [conversation] = import_document(store, document)
    path = store.active_path(conversation.id)
    assert [(m.role, m.content, m.status) for m in path] == [
        ("user", "hi", "complete"),
        ("assistant", "he", "interrupted"),
    ]
    assert conversation.settings is None and conversation.system_prompt == ""


def test_unreadable_files_are_named(store: Store, tmp_path: Path) -> None:
    with pytest.raises(TransferError, match=r"missing\.json: no such file"):
        import_file(store, tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": ', encoding="utf-8")
    with pytest.raises(TransferError, match=r"broken\.json is not valid JSON \(line 1"):
        import_file(store, broken)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(TransferError, match=r"binary\.json"):
        import_file(store, binary)


# --- token data -----------------------------------------------------------------------------

COOL_TOKENS = SamplingSettings(temperature=0.3)


def token_records(count: int) -> list[TokenRecord]:
    out = []
    for i in range(count):
        top = tuple(TopToken(100 + i + k, f" w{i}{k}".encode(), -0.25 * (k + 1)) for k in range(4))
        piece = b"\xf0\x9f" if i == 1 else f" w{i}0".encode()  # half an emoji at token 1
        out.append(TokenRecord(100 + i, piece, -0.25, top, COOL_TOKENS))
    return out


def reply_with_tokens(store: Store, count: int = 5) -> int:
    chat = store.create_conversation("Tokens")
    user = store.add_user_message(chat.id, "go")
    reply = store.start_reply(user.id, model="m.gguf", settings=COOL_TOKENS)
    writer = ReplyWriter(store, reply.id)
    writer.append("text", token_records(count))
    writer.finish("complete")
    return reply.id


def test_json_export_carries_token_data_in_the_openai_shape_and_imports_back(
    store: Store, other: Store
) -> None:
    reply_id = reply_with_tokens(store)
    document = json.loads(export_json(store))
    [_user, reply] = document["conversations"][0]["messages"]
    assert "logprobs" not in _user
    content = reply["logprobs"]["content"]
    assert [c["token"] for c in content[:2]] == [" w00", "\\xf0\\x9f"]
    assert content[1]["bytes"] == [0xF0, 0x9F]
    assert content[0]["logprob"] == -0.25
    assert [t["logprob"] for t in content[0]["top_logprobs"]] == [-0.25, -0.5, -0.75, -1.0]
    assert reply["logprobs"]["settings"] == [{"from_token": 0, "settings": COOL_TOKENS.to_dict()}]

    [copy] = import_document(other, document)
    copied_reply = other.active_path(copy.id)[-1]
    original, back = store.token_data(reply_id), other.token_data(copied_reply.id)
    assert original is not None and back is not None
    assert back.records == original.records and back.changes == original.changes
    assert comparable(export_document(other)) == comparable(document)


def test_markdown_leaves_token_data_out(store: Store) -> None:
    reply_with_tokens(store)
    text = export_markdown(store)
    assert "text" in text and "logprob" not in text and "w00" not in text


def test_openai_logprobs_without_ids_or_bytes_import(store: Store) -> None:
    logprobs = {
        "content": [
            {"token": "Hi", "logprob": -0.1, "top_logprobs": [{"token": "Hi", "logprob": -0.1}]},
            {"token": "!", "logprob": -2.5, "bytes": [33], "top_logprobs": []},
        ]
    }
    document = doc(
        messages=[
            {"id": 1, "role": "user", "content": "x"},
            {"id": 2, "parent": 1, "role": "assistant", "content": "Hi!", "logprobs": logprobs},
        ]
    )
    [conversation] = import_document(store, document)
    data = store.token_data(store.active_path(conversation.id)[-1].id)
    assert data is not None
    assert [(r.token_id, r.piece) for r in data.records] == [(-1, b"Hi"), (-1, b"!")]
    assert data.records[1].logprob == pytest.approx(-2.5)


# --- hostile imports (issue 16 §5) ----------------------------------------------------------


def reply_doc(**reply: Any) -> dict[str, Any]:
    base = {"id": 2, "parent": 1, "role": "assistant", "content": "r"}
    return doc(messages=[{"id": 1, "role": "user", "content": "x"}, {**base, **reply}])


@pytest.mark.parametrize(
    ("document", "place", "problem"),
    [
        (reply_doc(seed=2**70), "messages[1].seed", "between 0 and"),
        (reply_doc(seed=-1), "messages[1].seed", "between 0 and"),
        (reply_doc(content="bad \ud800 text"), "messages[1].content", "lone surrogate"),
        (doc(title="\udcff"), "conversations[0].title", "lone surrogate"),
        (reply_doc(model="m\ud800"), "messages[1].model", "lone surrogate"),
        (reply_doc(created_at=1e308), "messages[1].created_at", "out of range"),
        (reply_doc(created_at=float("nan")), "messages[1].created_at", "finite"),
        (doc(updated_at=-1e20), "conversations[0].updated_at", "out of range"),
        (doc(pinned="yes"), "conversations[0].pinned", "true or false"),
        (reply_doc(stats={"x": float("inf")}), "messages[1].stats", "cannot be written back"),
        (reply_doc(stats={"\ud800": 1}), "messages[1].stats", "lone surrogate"),
        (doc(settings={"stop": "END"}), "conversations[0].settings.stop", "JSON list"),
        (doc(settings={"stop": ["\ud800"]}), "settings.stop[0]", "lone surrogate"),
        (reply_doc(logprobs={"content": "no"}), "messages[1].logprobs.content", "JSON list"),
        (
            reply_doc(logprobs={"content": [{"token": "a", "logprob": 0.5}]}),
            "logprobs.content[0].logprob",
            "<= 0",
        ),
        (
            reply_doc(logprobs={"content": [{"token": "a", "logprob": -1, "bytes": [300]}]}),
            "logprobs.content[0].bytes",
            "0 to 255",
        ),
        (
            reply_doc(
                logprobs={
                    "content": [
                        {
                            "token": "a",
                            "logprob": -1,
                            "top_logprobs": [{"token": "a", "logprob": -1}] * 21,
                        }
                    ]
                }
            ),
            "top_logprobs",
            "more than 20",
        ),
        (
            doc(
                messages=[
                    {
                        "id": 1,
                        "role": "user",
                        "content": "x",
                        "logprobs": {"content": []},
                    }
                ]
            ),
            "messages[0].logprobs",
            "replies only",
        ),
    ],
)
def test_values_export_could_not_write_back_are_refused_by_name(
    document: Any, place: str, problem: str
) -> None:
    with pytest.raises(TransferError) as caught:
        parse_document(document, source="chats.json")
    message = str(caught.value)
    assert message.startswith("chats.json: ") and place in message and problem in message
    assert '(in conversation 1, "t")' in message or "title" in place
    assert "\n" not in message


def test_a_deeply_nested_file_is_a_clear_error_not_a_recursion_error(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(TransferError, match=r"deep\.json is nested too deeply"):
        import_file(store, path)
    deep: Any = {}
    for _ in range(50_000):
        deep = {"x": deep}
    with pytest.raises(TransferError, match="nested too deeply"):
        parse_document(reply_doc(stats=deep), source="deep")


def test_nan_in_a_file_is_refused(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "nan.json"
    path.write_text(json.dumps(reply_doc(stats={"x": 1})).replace("1}", "NaN}"), encoding="utf-8")
    with pytest.raises(TransferError, match="NaN"):
        import_file(store, path)


def test_import_is_all_or_nothing_and_names_the_conversation(store: Store) -> None:
    good = {"title": "good", "messages": [{"id": 1, "role": "user", "content": "hi"}]}
    bad = {
        "title": "Seeds",
        "messages": [
            {"id": 1, "role": "user", "content": "hi"},
            {"id": 2, "parent": 1, "role": "assistant", "content": "r", "seed": 2**70},
        ],
    }
    document = {"format": FORMAT, "version": 1, "conversations": [good, good, bad, good]}
    with pytest.raises(TransferError, match=r'conversations\[2\]\.messages\[1\]\.seed .*"Seeds"'):
        import_document(store, document)
    assert store.list_conversations() == ()


def test_a_write_that_fails_midway_leaves_nothing(store: Store) -> None:
    good = {"title": "good", "messages": [{"id": 1, "role": "user", "content": "hi"}]}
    document = {"format": FORMAT, "version": 1, "conversations": [good, good]}
    with store.transaction() as conn:  # make the second insert fail inside the transaction
        conn.execute(
            "CREATE TRIGGER only_one BEFORE INSERT ON conversations "
            "WHEN (SELECT count(*) FROM conversations) >= 1 "
            "BEGIN SELECT RAISE(ABORT, 'disk trouble'); END"
        )
    with pytest.raises(TransferError, match=r"nothing was imported: .*disk trouble"):
        import_document(store, document)
    assert store.list_conversations() == ()


# --- damaged rows on export ---------------------------------------------------------------


def test_export_skips_and_reports_a_damaged_conversation_keeping_the_rest(store: Store) -> None:
    trip_id, notes_id = fill(store)
    with store.transaction() as conn:
        conn.execute(
            "UPDATE messages SET stats = '{not json' WHERE conversation_id = ? AND role = "
            "'assistant'",
            (notes_id,),
        )
    skipped: list[str] = []
    document = json.loads(export_json(store, skipped=skipped))
    assert [c["id"] for c in document["conversations"]] == [trip_id]
    assert len(skipped) == 1 and f"conversation {notes_id} was left out" in skipped[0]
    markdown_skipped: list[str] = []
    assert "Trip to Lisbon" in export_markdown(store, skipped=markdown_skipped)
    assert len(markdown_skipped) == 1


def test_export_keeps_a_reply_whose_token_data_is_damaged_without_it(store: Store) -> None:
    reply_id = reply_with_tokens(store)
    with store.transaction() as conn:
        conn.execute("UPDATE token_data SET data = x'00' WHERE message_id = ?", (reply_id,))
    skipped: list[str] = []
    document = export_document(store, skipped=skipped)
    [_user, reply] = document["conversations"][0]["messages"]
    assert reply["content"] == "text" and "logprobs" not in reply
    assert skipped and f"token data of message {reply_id}" in skipped[0]


def test_an_exported_time_far_in_the_future_is_skipped_not_fatal(store: Store) -> None:
    fill(store)
    broken = store.create_conversation("Far future")
    with store.transaction() as conn:
        conn.execute("UPDATE conversations SET created_at = 1e308 WHERE id = ?", (broken.id,))
    skipped: list[str] = []
    text = export_json(store, skipped=skipped)
    assert "Far future" not in text and "Trip to Lisbon" in text
    assert len(skipped) == 1
