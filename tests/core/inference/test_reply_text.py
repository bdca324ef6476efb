"""Streaming text assembly: UTF-8 never split, stop strings never shown."""

from __future__ import annotations

from app.core.inference.reply_text import ReplyText


def test_multibyte_characters_are_released_whole() -> None:
    reply = ReplyText()
    data = "café 🔥".encode()
    pieces = [reply.add(data[i : i + 1]) for i in range(len(data))]
    assert "".join(pieces) + reply.finish() == "café 🔥"
    assert all(p in ("c", "a", "f", "é", " ", "🔥", "") for p in pieces)
    assert pieces[data.index("é".encode())] == ""  # first byte of é alone shows nothing


def test_stop_string_split_across_tokens_is_held_then_cut() -> None:
    reply = ReplyText(stops=["User:"])
    out = [reply.add(p) for p in (b"Hello ", b"Us", b"er", b": next")]
    assert out == ["Hello ", "", "", ""]
    assert reply.stopped
    assert reply.text == "Hello "
    assert reply.finish() == ""


def test_false_alarm_is_released_when_it_stops_matching() -> None:
    reply = ReplyText(stops=["User:"])
    assert reply.add(b"Use") == ""
    assert reply.add(b"ful") == "Useful"
    assert not reply.stopped


def test_held_text_is_released_at_the_end() -> None:
    reply = ReplyText(stops=["###"])
    assert reply.add(b"done #") == "done "
    assert reply.finish() == "#"
    assert reply.text == "done #"


def test_invalid_bytes_become_replacement_characters() -> None:
    reply = ReplyText()
    assert reply.add(b"ok\xff") == "ok\ufffd"
    assert reply.add(b"\xe2\x82") == ""
    assert reply.finish() == "\ufffd"
