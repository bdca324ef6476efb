"""The message tree: active path, siblings, what the engine reads, reply summaries."""

from __future__ import annotations

import pytest

from app.core.chats.conversation import (
    DEFAULT_TITLE,
    MessageTree,
    StoredMessage,
    active_path,
    reply_end,
    reply_summary,
    sibling_position,
    siblings,
    title_from_text,
    to_engine_messages,
)
from app.core.inference.events import GenerationStats, StopReason
from app.core.inference.messages import Message
from app.core.inference.sampling import SamplingSettings


def msg(
    id: int, parent: int | None, role: str = "user", content: str | None = None, **fields: object
) -> StoredMessage:
    return StoredMessage(
        id=id,
        conversation_id=1,
        parent_id=parent,
        role=role,  # type: ignore[arg-type]
        content=f"m{id}" if content is None else content,
        created_at=float(id),
        **fields,  # type: ignore[arg-type]
    )


# 1 user -> 2 reply -> 3 user -> 4 reply
#                   \-> 5 user (edit of 3) -> 6 reply -> 7 reply (regenerated 6)
# 8 user (a second root: the first message edited)
TREE = [
    msg(1, None),
    msg(2, 1, "assistant"),
    msg(3, 2),
    msg(4, 3, "assistant"),
    msg(5, 2),
    msg(6, 5, "assistant"),
    msg(7, 5, "assistant"),
    msg(8, None),
]


def ids(path: tuple[StoredMessage, ...]) -> list[int]:
    return [m.id for m in path]


def test_active_path_runs_from_the_root_to_the_selected_leaf() -> None:
    assert ids(active_path(TREE, 4)) == [1, 2, 3, 4]
    assert ids(active_path(TREE, 6)) == [1, 2, 5, 6]


def test_a_selected_inner_message_continues_down_the_newest_replies() -> None:
    assert ids(active_path(TREE, 2)) == [1, 2, 5, 7]
    assert ids(active_path(TREE, 1)) == [1, 2, 5, 7]


def test_no_or_unknown_selection_shows_the_newest_branch() -> None:
    assert ids(active_path(TREE, None)) == [8]
    assert ids(active_path(TREE, 99)) == [8]
    assert active_path([], None) == ()


def test_siblings_are_the_versions_under_one_parent_oldest_first() -> None:
    assert ids(siblings(TREE, 7)) == [6, 7]
    assert ids(siblings(TREE, 3)) == [3, 5]
    assert ids(siblings(TREE, 8)) == [1, 8]
    assert ids(siblings(TREE, 2)) == [2]
    assert sibling_position(TREE, 7) == (1, 2)
    assert sibling_position(TREE, 3) == (0, 2)
    assert sibling_position(TREE, 4) == (0, 1)


def test_tree_order_does_not_depend_on_input_order() -> None:
    tree = MessageTree(reversed(TREE))
    assert ids(tree.messages) == list(range(1, 9))
    assert ids(tree.children(None)) == [1, 8]
    assert sorted(tree.subtree_ids(2)) == [2, 3, 4, 5, 6, 7]
    assert tree.newest_leaf(3) == 4
    assert 5 in tree and 42 not in tree
    assert len(tree) == 8


def test_a_long_chain_needs_no_recursion() -> None:
    chain = [
        msg(i, i - 1 if i > 1 else None, "user" if i % 2 else "assistant") for i in range(1, 3001)
    ]
    tree = MessageTree(chain)
    assert len(tree.active_path(None)) == 3000
    assert len(tree.subtree_ids(1)) == 3000


def test_engine_messages_start_with_the_system_prompt_and_skip_errors() -> None:
    path = (
        msg(1, None, content="Hi"),
        msg(2, 1, "assistant", content="Oops", status="error"),
        msg(3, 1, "assistant", content="Hello!"),
        msg(4, 3, content="Tell me more"),
        msg(5, 4, "assistant", content="", status="cancelled"),
    )
    assert to_engine_messages(path, "Be brief.") == (
        Message("system", "Be brief."),
        Message("user", "Hi"),
        Message("assistant", "Hello!"),
        Message("user", "Tell me more"),
    )
    assert to_engine_messages(path)[0] == Message("user", "Hi")


def test_cancelled_and_interrupted_partial_replies_are_kept_for_the_model() -> None:
    path = (
        msg(1, None, content="Hi"),
        msg(2, 1, "assistant", content="Hel", status="interrupted"),
    )
    assert to_engine_messages(path)[-1] == Message("assistant", "Hel")


def test_stored_messages_reject_system_roles_and_unknown_statuses() -> None:
    with pytest.raises(ValueError, match="user"):
        msg(1, None, "system")
    with pytest.raises(ValueError, match="status"):
        msg(1, None, status="done")


def stats(stop: StopReason = StopReason.END_OF_TURN) -> GenerationStats:
    return GenerationStats(
        prompt_tokens=20,
        cached_tokens=0,
        prefill_ms=10.0,
        prefill_tps=2000.0,
        ttft_ms=123.4,
        completion_tokens=42,
        decode_ms=1000.0,
        decode_tps=41.96,
        stop_reason=stop,
        seed=7,
    )


def test_reply_end_follows_the_stop_reason() -> None:
    assert reply_end(stats()) == "complete"
    assert reply_end(stats(StopReason.MAX_TOKENS)) == "complete"
    assert reply_end(stats(StopReason.CANCELLED)) == "cancelled"


def test_reply_summary_names_tokens_speed_first_token_stop_seed_and_settings() -> None:
    reply = msg(
        2,
        1,
        "assistant",
        stats=stats().to_dict(),
        seed=7,
        settings=SamplingSettings(temperature=0.3, presence_penalty=0.5),
    )
    assert reply_summary(reply) == (
        "42 tokens · prompt 20 tokens (0 cached, 20 read) · 42.0 tokens/s · first token 123 ms · "
        "stop: end of turn · seed 7 · "
        "temperature 0.3, top-k 40, top-p 0.95, min-p 0.05, repeat penalty 1.1, "
        "presence penalty 0.5, max tokens 1024"
    )


def test_reply_summary_shows_where_it_ran_with_prefill_and_decode_speed() -> None:
    where = {"placement": "GPU 16/33 + CPU", "n_gpu_layers": 16, "n_layers_total": 33}
    reply = msg(2, 1, "assistant", stats={**stats().to_dict(), **where}, seed=7)
    assert reply_summary(reply) == (
        "42 tokens · prompt 20 tokens (0 cached, 20 read) · GPU 16/33 + CPU · "
        "prefill 2000.0 tokens/s · decode 42.0 tokens/s · first token 123 ms · "
        "stop: end of turn · seed 7"
    )
    cached = {**stats().to_dict(), "prefill_tps": 0.0, "placement": "CPU · 2 threads"}
    assert reply_summary(msg(2, 1, "assistant", stats=cached)) == (
        "42 tokens · prompt 20 tokens (0 cached, 20 read) · CPU · 2 threads · "
        "decode 42.0 tokens/s · first token 123 ms · stop: end of turn"
    )
    branched = {**stats().to_dict(), "cached_tokens": 19}
    branched |= {"branched_at": 3, "branched_from": " cat", "branched_to": " dog"}
    assert reply_summary(msg(2, 1, "assistant", stats=branched)).startswith(
        "42 tokens · prompt 20 tokens (19 cached, 1 read) · branched at token 3: ' cat' → ' dog' · "
    )


def test_reply_summary_shows_an_unusual_status_and_ignores_bad_stats() -> None:
    reply = msg(2, 1, "assistant", status="interrupted", stats={"decode_tps": "fast"})
    assert reply_summary(reply) == "interrupted"
    assert reply_summary(msg(1, None)) == ""


def test_titles_come_from_the_first_line_shortened_at_a_word() -> None:
    assert title_from_text("\n  Plan a   trip to Lisbon \nwith kids") == "Plan a trip to Lisbon"
    long = title_from_text("word " * 40, limit=20)
    assert long.endswith("…") and len(long) <= 20 and "wor…" not in long
    assert title_from_text("   ") == DEFAULT_TITLE
