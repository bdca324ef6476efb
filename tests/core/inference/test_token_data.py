"""Token records pack into a compact blob and come back: ids, bytes, logprobs, settings."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

from app.core.inference.sampling import SamplingSettings
from app.core.inference.token_data import (
    MIN_LOGPROB,
    Rivals,
    SettingsChange,
    TokenDataError,
    TokenRecord,
    TopToken,
    join_chunks,
    logprob_of,
    make_record,
    make_top,
    pack,
    to_openai,
    token_data,
    unpack,
)

COOL = SamplingSettings(temperature=0.2)
WARM = SamplingSettings(temperature=1.3, top_k=0)


def records(count: int, top_n: int = 10, seed: int = 0) -> list[TokenRecord]:
    """Records with a vocabulary-like spread of ids and pieces, chosen mostly among the top."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        ids = rng.choice(50_000, size=top_n + 1, replace=False)
        logprobs = np.sort(np.log(rng.dirichlet(np.ones(top_n + 1))))[::-1]
        top = tuple(
            TopToken(int(t), f"p{t % 700}".encode(), float(lp))
            for t, lp in zip(ids[:top_n], logprobs[:top_n], strict=True)
        )
        chosen = top[0] if i % 4 else TopToken(int(ids[-1]), b"\xe2\x82", float(logprobs[-1]))
        settings = COOL if i < count // 2 else WARM
        out.append(TokenRecord(chosen.token_id, chosen.piece, chosen.logprob, top, settings))
    return out


def test_pack_unpack_round_trip_keeps_ids_bytes_and_logprobs() -> None:
    original = records(200)
    chunk = unpack(pack(original))
    assert chunk.first_token == 0 and chunk.top_n == 10
    assert len(chunk.records) == 200
    for a, b in zip(original, chunk.records, strict=True):
        assert (a.token_id, a.piece) == (b.token_id, b.piece)
        assert b.logprob == pytest.approx(a.logprob, abs=1e-6)  # float32
        assert [t.token_id for t in b.top] == [t.token_id for t in a.top]
        assert [t.piece for t in b.top] == [t.piece for t in a.top]
        for x, y in zip(a.top, b.top, strict=True):
            assert y.logprob == pytest.approx(x.logprob, rel=1e-3, abs=1e-3)  # float16
        if a.top and a.top[0].token_id == a.token_id:
            assert b.top[0].logprob == b.logprob  # the chosen one keeps its exact value
    assert chunk.records[0].settings == COOL and chunk.records[-1].settings == WARM
    assert [c.index for c in chunk.changes] == [0, 100]


def test_non_utf8_pieces_survive_and_read_as_escapes() -> None:
    [record] = unpack(pack(records(4)[:1])).records
    assert record.piece == b"\xe2\x82"
    assert record.text == "\\xe2\\x82"


def test_fewer_alternatives_than_top_n_and_none_at_all() -> None:
    short = TokenRecord(5, b"a", -0.1, (TopToken(5, b"a", -0.1),))
    bare = TokenRecord(6, b"b", -2.0)
    chunk = unpack(pack([short, bare], top_n=3))
    assert chunk.top_n == 3
    assert [len(r.top) for r in chunk.records] == [1, 0]
    assert unpack(pack([bare], top_n=0)).records == (bare,)


def test_an_empty_reply_packs() -> None:
    chunk = unpack(pack([], top_n=10))
    assert chunk.records == () and chunk.top_n == 10


def test_many_distinct_pieces_switch_to_wide_indices() -> None:
    many = [
        TokenRecord(
            i, str(i).encode(), -1.0, tuple(TopToken(i * 20 + k, b"x", -2.0) for k in range(5))
        )
        for i in range(14_000)
    ]
    chunk = unpack(pack(many))
    assert [r.token_id for r in chunk.records] == list(range(14_000))
    assert chunk.records[-1].top[-1].token_id == 13_999 * 20 + 4


def test_probabilities_of_zero_are_a_finite_floor() -> None:
    assert logprob_of(0.0) == MIN_LOGPROB
    assert logprob_of(1.0) == 0.0
    record = TokenRecord(1, b"z", MIN_LOGPROB)
    assert record.prob == 0.0
    [back] = unpack(pack([record])).records
    assert math.isfinite(back.logprob)


def test_chunks_join_into_one_reply_and_gaps_are_refused() -> None:
    original = records(30)
    first = unpack(pack(original[:10], first_token=0))
    second = unpack(pack(original[10:], first_token=10))
    joined = join_chunks([first, second])
    assert [r.token_id for r in joined.records] == [r.token_id for r in original]
    assert [(c.index, c.settings) for c in joined.changes] == [(0, COOL), (15, WARM)]
    assert joined.settings_at(14) == COOL and joined.settings_at(15) == WARM
    with pytest.raises(TokenDataError, match="gap"):
        join_chunks([second])


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"not zlib at all",
        zlib.compress(b"XYZ" + bytes(40)),
        zlib.compress(zlib.decompress(pack(records(5)))[:-30]),
    ],
)
def test_damaged_blobs_raise_token_data_error(blob: bytes) -> None:
    with pytest.raises(TokenDataError):
        unpack(blob)


def test_top_n_above_the_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="top_n"):
        pack(records(1), top_n=21)


def test_openai_shape() -> None:
    data = token_data(records(3, top_n=2))
    shape = to_openai(data)
    content = shape["content"]
    assert isinstance(content, list) and len(content) == 3
    entry = content[1]
    assert set(entry) == {"token", "logprob", "bytes", "id", "top_logprobs"}
    assert entry["bytes"] == list(data.records[1].piece)
    assert [set(t) for t in entry["top_logprobs"]] == [{"token", "logprob", "bytes", "id"}] * 2
    assert shape["settings"] == [
        {"from_token": 0, "settings": COOL.to_dict()},
        {"from_token": 1, "settings": WARM.to_dict()},
    ]


def test_settings_changes_are_found_in_the_records() -> None:
    data = token_data(records(8))
    assert data.changes == (SettingsChange(0, COOL), SettingsChange(4, WARM))


def test_records_survive_pickling_whole() -> None:
    """They cross the engine host's pipe pickled (through their constructors)."""
    import pickle

    settings = SamplingSettings(temperature=0.3)
    record = TokenRecord(
        5, b"ab", -0.25, (TopToken(5, b"ab", -0.25), TopToken(-1, b"", -9.0)), settings
    )
    back = pickle.loads(pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL))
    assert back == record and back.settings == settings
    assert back.top[1].token_id == -1 and isinstance(back.top[1], TopToken)


def test_the_fast_constructors_make_the_same_frozen_records() -> None:
    import dataclasses
    import pickle

    for made in records(12, top_n=3, seed=4):
        fast = make_record(
            made.token_id,
            made.piece,
            made.logprob,
            tuple(make_top(t.token_id, t.piece, t.logprob) for t in made.top),
            made.settings,
        )
        assert fast == made and hash(fast.top) == hash(made.top) and repr(fast) == repr(made)
        assert fast.settings is made.settings
        assert pickle.loads(pickle.dumps(made)) == made
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.logprob = 0.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.top[0].piece = b""  # type: ignore[misc]
    assert make_record(1, b"x", -1.0) == TokenRecord(1, b"x", -1.0)  # the defaults


def test_pickled_records_make_their_rivals_only_when_read() -> None:
    """Across the pipe the alternatives stay columns: packing reads those; the inspector's
    first read makes the `TopToken`s, equal to (and hashed like) the originals."""
    import pickle

    made = records(6, top_n=4, seed=9)
    back = pickle.loads(pickle.dumps(tuple(made), protocol=pickle.HIGHEST_PROTOCOL))
    assert all(isinstance(r.top, Rivals) for r in back)
    assert pack(back) == pack(made)  # from the columns alone
    assert all(r.top._made is None for r in back)
    first = back[0]
    assert len(first.top) == 4 and first.top and not Rivals((), (), ())
    assert first.top[1:3] == made[0].top[1:3] and isinstance(first.top[1:3], tuple)
    assert list(first.top) == list(made[0].top) and first.top[0] == made[0].top[0]
    assert first == made[0] and made[0] == first and hash(first) == hash(made[0])
    assert repr(first) == repr(made[0])
    top = made[0].top
    columns = (
        tuple(t.token_id for t in top),
        tuple(t.piece for t in top),
        tuple(t.logprob for t in top),
    )
    assert first.top == Rivals(*columns)
    assert first.top != made[1].top and first.top != [*made[0].top]
    assert pickle.loads(pickle.dumps(first)) == first  # a second crossing, as columns again
    with pytest.raises(ValueError, match="differ in length"):
        Rivals((1, 2), (b"a",), (0.0, 0.0))
